/**
 * The image's agent (dist/agent/ipkeeper.mjs, `npm run build`) in Kubernetes mode against a real
 * kube-apiserver: it loads the Kubernetes client from its own bundle (ipkeeper-kube.mjs), not from
 * node_modules, becomes ready, writes its claims cache at a clean stop and starts from it, and
 * writes nothing to stderr but its own log lines (a bundled dependency calling a deprecated Node
 * API would add a warning: node-fetch's url.parse() does, outside node_modules).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_BUNDLE, KUBE_BUNDLE, buildAgent } from '../../scripts/build.ts';
import { startAgent } from '../e2e/harness.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds } from './crds.ts';

describe('the agent bundle in Kubernetes mode', () => {
  let cluster: TestCluster;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-kbundle-'));
  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    await buildAgent({ log: () => {} });
  });
  after(async () => {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts with the client from ipkeeper-kube.mjs, restarts from its claims cache, quiet on stderr', async () => {
    const bundle = readFileSync(AGENT_BUNDLE.replace(/\.mjs$/, '-bundle.mjs'), 'utf8');
    assert.match(bundle, new RegExp(`import\\("\\./${KUBE_BUNDLE.replace('.', '\\.')}"\\)`));
    assert.doesNotMatch(bundle, /import\("@kubernetes\/client-node"\)/);
    // One claim (another node's), so there is something to keep.
    const r = await kubeRequest(cluster, 'POST', '/apis/ipkeeper.io/v1alpha1/ipclaims', {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'IPClaim',
      metadata: { name: 'default.10.9.9.9' },
      spec: {
        network: 'default',
        ip: '10.9.9.9',
        family: 4,
        pool: 'p',
        owner: { kind: 'Pod', namespace: 'x', name: 'y', uid: 'u' },
        node: 'elsewhere',
        createdAt: '2026-12-06T00:00:00Z',
      },
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const cache = join(dir, 'claims.json');
    const messages: string[][] = [];
    for (let run = 0; run < 2; run++) {
      const agent = await startAgent({
        store: `kubernetes:${cluster.kubeconfigPath}`,
        socket: join(dir, 'agent.sock'),
        cli: AGENT_BUNDLE,
        extra: ['--log-level', 'info', '--claims-cache', cache],
      });
      await agent.kill('SIGTERM');
      assert.equal(agent.child.exitCode, 0, agent.log());
      assert.ok(existsSync(cache), 'the clean stop wrote the claims cache');
      // Every line is the agent's own log, at info or below: no warning from Node or a dependency.
      const lines = agent.log().split('\n').filter(Boolean);
      for (const l of lines) {
        const o = JSON.parse(l) as { level: number; msg: string };
        assert.ok(o.level <= 30, l);
      }
      messages.push(lines.map((l) => (JSON.parse(l) as { msg: string }).msg));
    }
    assert.ok(messages[0]!.includes('claims cache not used; listing every claim'), messages[0]!.join('\n'));
    assert.ok(
      messages[1]!.includes('claims read from the claims cache; watching the changes since its revision'),
      messages[1]!.join('\n'),
    );
  });
});
