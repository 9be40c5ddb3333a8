import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { startAgent } from '../agent/server.ts';
import { MemoryStore } from '../store/memory.ts';
import { renderNetconfigs } from './netconfig.ts';

const NODE = process.execPath;
const CLI = new URL('../../bin/ipkeeper.ts', import.meta.url).pathname;

const TWO = `apiVersion: ipkeeper.io/v1alpha1
kind: NetworkConfig
metadata: {name: macvlan-100, namespace: net}
spec: {type: macvlan, master: ens192, vlan: 100, ippools: {ipv4: [pool-a]}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderMultusConfig
metadata: {name: sriov-a, namespace: net}
spec: {cniType: sriov, sriov: {resourceName: intel.com/vf}}
`;

describe('ipkeeper netconfig render', () => {
  it('renders one NAD per NetworkConfig, Spiderpool ones converted', async () => {
    const r = await renderNetconfigs(TWO, 'two.yaml');
    const docs = parseAllDocuments(r.yaml).map((d) => d.toJS());
    assert.deepEqual(
      docs.map((d) => `${d.kind} ${d.metadata.namespace}/${d.metadata.name}`),
      ['NetworkAttachmentDefinition net/macvlan-100', 'NetworkAttachmentDefinition net/sriov-a'],
    );
    assert.equal(JSON.parse(docs[0].spec.config).plugins[0].master, 'ens192.100');
    assert.equal(docs[1].metadata.annotations['k8s.v1.cni.cncf.io/resourceName'], 'intel.com/vf');
    assert.deepEqual(r.notes, [
      'net/macvlan-100: the VLAN sub-interface ens192.100 must exist on every node (ipkeeper does not create it)',
    ]);
  });

  it('refuses a document of another kind, naming it', async () => {
    await assert.rejects(
      renderNetconfigs(
        'apiVersion: ipkeeper.io/v1alpha1\nkind: ReservedIP\nmetadata: {name: r}\nspec: {ips: [10.0.0.1]}\n',
        'r.yaml',
      ),
      /r\.yaml: document 1 is a ReservedIP "r"; netconfig render takes NetworkConfig/,
    );
  });

  it('as a process: YAML on stdout, exit 0; an invalid spec: the field on stderr, exit 1, nothing on stdout', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipk-ncr-'));
    try {
      const ok = join(dir, 'ok.yaml');
      writeFileSync(ok, TWO);
      const a = spawnSync(NODE, [CLI, 'netconfig', 'render', '-f', ok], { encoding: 'utf8' });
      assert.equal(a.status, 0, a.stderr);
      assert.match(a.stdout, /^apiVersion: k8s\.cni\.cncf\.io\/v1\nkind: NetworkAttachmentDefinition/);
      const bad = spawnSync(NODE, [CLI, 'netconfig', 'render', '-f', '-'], {
        encoding: 'utf8',
        input:
          'apiVersion: ipkeeper.io/v1alpha1\nkind: NetworkConfig\nmetadata: {name: x}\nspec: {type: bridge, bridge: br0, vlan: 5000}\n',
      });
      assert.equal(bad.status, 1);
      assert.equal(bad.stdout, '');
      assert.match(bad.stderr, /^error: NetworkConfig "x" is invalid: spec\.vlan: 5000 must be <= 4094/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('embedded mode: ipkeeper apply -f stores a NetworkConfig (nothing renders it there)', () => {
  it("seed 000's SpiderMultusConfig applies as a NetworkConfig, lists with get, deletes by NAMESPACE/NAME", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipk-nca-'));
    const socket = join(dir, 'a.sock');
    const store = new MemoryStore();
    const agent = await startAgent({ store, socket, node: 'n1', logLevel: 'silent', defaultMetrics: false });
    try {
      const file = join(dir, 'seed.yaml');
      writeFileSync(
        file,
        'apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderMultusConfig\nmetadata:\n  name: macvlan-ens192\n  namespace: kube-system\nspec:\n  cniType: macvlan\n  enableCoordinator: true\n  macvlan:\n    master:\n    - ens192\n',
      );
      // Asynchronously: the agent answers from this very process.
      const run = async (args: string[]): Promise<{ status: number; stdout: string; stderr: string }> => {
        try {
          const r = await promisify(execFile)(NODE, [CLI, ...args, '--socket', socket], { encoding: 'utf8' });
          return { status: 0, ...r };
        } catch (e) {
          const x = e as { code?: number; stdout?: string; stderr?: string };
          return { status: x.code ?? -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
        }
      };
      const a = await run(['apply', '-f', file]);
      assert.equal(a.status, 0, a.stderr);
      assert.equal(a.stdout.trim(), 'networkconfig/macvlan-ens192 created');
      const stored = await store.get<{ spec: unknown }>('networkconfigs/kube-system/macvlan-ens192');
      assert.deepEqual(stored?.value.spec, { type: 'macvlan', master: 'ens192', enableCoordinator: true });
      const g = await run(['get', 'networkconfigs']);
      assert.equal(g.status, 0, g.stderr);
      assert.match(g.stdout, /kube-system\s+macvlan-ens192\s+macvlan\s+ens192/);
      // Deleted by NAMESPACE/NAME, as `get` names it.
      const d = await run(['delete', 'networkconfig', 'kube-system/macvlan-ens192']);
      assert.equal(d.status, 0, d.stderr);
      assert.equal(await store.get('networkconfigs/kube-system/macvlan-ens192'), undefined);
    } finally {
      await agent.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
