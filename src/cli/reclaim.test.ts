/**
 * `ipkeeper reclaim` and `ipkeeper describe endpoint` as a user runs them: the CLI as a process
 * against a real agent (in this process, memory store, embedded mode: a pod is live until its DEL).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../store/memory.ts';
import { startAgent, type Agent } from '../agent/server.ts';
import type { CniRequest, IpamResult } from '../cni/protocol.ts';
import type { ReclaimReport } from '../ipam/endpoint.ts';
import { call } from './client.ts';
import { formatReclaim } from './reclaim.ts';
import { cliAsync as cli } from '../../test/e2e/harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipk-reclaim-'));
process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
const V = 'ipkeeper.io/v1alpha1';

describe('ipkeeper reclaim', () => {
  let agent: Agent;
  const socket = join(dir, 'agent.sock');
  const s = ['--socket', socket];
  const add = (name: string, containerId: string) =>
    call<IpamResult>(socket, 'POST', '/v1/cni/add', {
      command: 'ADD',
      containerId,
      ifName: 'eth0',
      network: 'macvlan',
      cniVersion: '1.0.0',
      args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: name, K8S_POD_UID: `uid-${name}` },
      ipam: { type: 'ipkeeper', pools: { ipv4: ['p4'] } },
    } satisfies CniRequest);

  before(async () => {
    agent = await startAgent({
      store: new MemoryStore(),
      socket,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
    });
    await call(socket, 'POST', '/v1/apply', {
      objects: [
        {
          apiVersion: V,
          kind: 'IPPool',
          metadata: { name: 'p4' },
          spec: { subnet: '10.0.0.0/24', ips: ['10.0.0.236-10.0.0.240'] },
        },
      ],
    });
  });
  after(async () => {
    await agent?.close();
  });

  it('reclaim endpoint: refused while the pod is live (exit 1, the reason and --force), then forced', async () => {
    const r = await add('sts-0', 'c-sts-0');
    const ip = r.ips[0]!.address.split('/')[0]!;
    const refused = await cli(['reclaim', 'endpoint', 'default/sts-0', ...s]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^error: not reclaiming Endpoint default\/sts-0 \(10\.0\.0\.236\): pod default\/sts-0 has had no CNI DEL since its ADD \(container c-sts-0 on node n1\)\. Delete the pod first, or pass --force/,
    );
    const desc = await cli(['describe', 'endpoint', 'default/sts-0', ...s]);
    assert.equal(desc.code, 0, desc.stderr);
    assert.match(desc.stdout, /Name:\s+sts-0/);
    assert.match(
      desc.stdout,
      new RegExp(`eth0 \\(macvlan\\):\\n\\s+${ip.replace(/\./g, '\\.')} pool p4 network default \\[held\\]`),
    );
    const forced = await cli(['reclaim', 'endpoint', 'default/sts-0', '--force', ...s]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /^warning: --force: pod default\/sts-0 has had no CNI DEL/m);
    assert.match(
      forced.stdout,
      new RegExp(`^released ${ip.replace(/\./g, '\\.')} \\(network default, ipclaims/default\\.`, 'm'),
    );
    assert.match(forced.stdout, /^endpoint default\/sts-0 deleted$/m);
    const gone = await cli(['describe', 'endpoint', 'default/sts-0', ...s]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /Endpoint default\/sts-0 not found/);
  });

  it('reclaim ip -o json: refused for a live pod, forced, and the address is free again', async () => {
    const r = await add('web-1', 'c-web-1');
    const ip = r.ips[0]!.address.split('/')[0]!;
    const refused = await cli(['reclaim', 'ip', ip, ...s]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /pod default\/web-1 has had no CNI DEL/);
    const out = await cli(['reclaim', 'ip', ip, '--force', '-o', 'json', ...s]);
    assert.equal(out.code, 0, out.stderr);
    const rep = JSON.parse(out.stdout) as ReclaimReport;
    assert.deepEqual(
      rep.released.map((x) => x.ip),
      [ip],
    );
    assert.equal(rep.endpoint, 'default/web-1');
    assert.equal(rep.endpointDeleted, true, 'its only address');
    const yaml = await cli(['reclaim', 'ip', ip, '-o', 'yaml', ...s]);
    assert.equal(yaml.code, 1);
    assert.match(yaml.stderr, /no claim holds/);
  });

  it('get endpoints lists one row per pod: its addresses per interface, node, and no release yet', async () => {
    const r = await add('db-0', 'c-db-0');
    const ip = r.ips[0]!.address.split('/')[0]!;
    const out = await cli(['get', 'endpoints', ...s]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^NAMESPACE\s+NAME\s+IPS\s+FIXED\s+RETENTION\s+NODE\s+RELEASED/);
    assert.match(
      out.stdout,
      new RegExp(`^default\\s+db-0\\s+eth0:${ip.replace(/\./g, '\\.')}\\s+-\\s+-\\s+n1\\s+-$`, 'm'),
    );
  });

  it('usage errors: a bad NS/NAME and a bad address say the fix', async () => {
    const a = await cli(['reclaim', 'endpoint', 'sts-0', ...s]);
    assert.equal(a.code, 1);
    assert.match(a.stderr, /must be NAMESPACE\/NAME/);
    const b = await cli(['reclaim', 'ip', '10.0.0.300', ...s]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /reclaim ip: .*10\.0\.0\.300/);
    const body = await call(socket, 'POST', '/v1/reclaim', { ip: '10.0.0.1', endpoint: 'a/b' }).catch(
      (e: unknown) => e,
    );
    assert.match(String((body as Error).message), /body must be/);
  });

  it('formatReclaim says when nothing was released', () => {
    assert.equal(formatReclaim({ released: [], skipped: [], endpointDeleted: false }), 'nothing to reclaim');
    assert.equal(
      formatReclaim({
        endpoint: 'a/b',
        released: [],
        skipped: [{ ip: '10.0.0.1', claim: 'ipclaims/x', reason: 'already released' }],
        endpointDeleted: true,
      }),
      'skipped 10.0.0.1: already released\nendpoint a/b deleted',
    );
  });
});
