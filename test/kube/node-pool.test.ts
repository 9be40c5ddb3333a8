/**
 * Seed 004 in Kubernetes mode, against a real kube-apiserver: the seed's CiliumNode YAML, converted as
 * `ipkeeper apply -f` converts it, created as a NodePool CR named after the node; an agent in
 * node-pool mode on the `kubernetes` store is not ready until it lists an address, hands out only its
 * addresses, writes status.used through the status subresource after the throttle window, and keeps
 * an address removed while in use with its owner without ever handing it out again.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type Agent } from '../../src/agent/server.ts';
import { call } from '../../src/cli/client.ts';
import { IpamError } from '../../src/errors.ts';
import type { CniRequest, IpamResult } from '../../src/cni/protocol.ts';
import { parseManifests } from '../../src/api/manifests.ts';
import { validateObject } from '../../src/api/validate.ts';
import type { NodePool } from '../../src/api/kinds.ts';
import { SEED_004_CILIUM_NODE } from '../../src/api/convert-vip.test.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds, until } from './crds.ts';

const TAG = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
const NODE = `ipk-np-${TAG}`;
const NETWORK = `np-${TAG}`;
const NS = `ipk-np-${TAG}`;
const API = '/apis/ipkeeper.io/v1alpha1';

describe('seed 004 in Kubernetes mode: a NodePool CR and an agent in node-pool mode', () => {
  let cluster: TestCluster;
  let agent: Agent;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-knp-'));
  const socket = join(dir, 'agent.sock');

  const add = (pod: string, containerId: string): Promise<IpamResult> =>
    call<IpamResult>(socket, 'POST', '/v1/cni/add', {
      command: 'ADD',
      containerId,
      ifName: 'eth0',
      network: 'cilium-net',
      cniVersion: '1.0.0',
      args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: pod },
      ipam: { type: 'ipkeeper' },
    } satisfies CniRequest);
  const del = (containerId: string) =>
    call(socket, 'POST', '/v1/cni/del', {
      command: 'DEL',
      containerId,
      ifName: 'eth0',
      network: 'cilium-net',
      cniVersion: '1.0.0',
      args: {},
      ipam: { type: 'ipkeeper' },
    } satisfies CniRequest);
  const nodePool = async (): Promise<NodePool> =>
    (await kubeRequest(cluster, 'GET', `${API}/nodepools/${NODE}`)).body;

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    // The agent records each pod's Endpoint in the pod's namespace.
    const ns = await kubeRequest(cluster, 'POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    });
    assert.ok([201, 409].includes(ns.status), JSON.stringify(ns.body));
    agent = await startAgent({
      store: `kubernetes:${cluster.kubeconfigPath}`,
      socket,
      node: NODE,
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
      nodePool: true,
      nodePoolStatusIntervalMs: 300,
    });
  });

  after(async () => {
    await agent?.close();
    if (cluster) {
      await kubeRequest(cluster, 'DELETE', `${API}/nodepools/${NODE}`);
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
      const claims = (await kubeRequest(cluster, 'GET', `${API}/ipclaims`)).body.items ?? [];
      for (const c of claims) {
        if (c.spec.network === NETWORK)
          await kubeRequest(cluster, 'DELETE', `${API}/ipclaims/${c.metadata.name}`);
      }
      await cluster.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  let first = '';

  it('is not ready until the NodePool exists; the converted CiliumNode makes it ready', async () => {
    const e = await call(socket, 'GET', '/readyz').catch((x: unknown) => x);
    assert.ok(e instanceof IpamError);
    assert.match(e.message, new RegExp(`Waiting for initial IP to become available in '${NODE}' NodePool`));
    const [c] = parseManifests(SEED_004_CILIUM_NODE);
    const np = validateObject<NodePool>({
      ...c?.object,
      metadata: { name: NODE },
      spec: { ...(c?.object.spec as NodePool['spec']), network: NETWORK },
    });
    const r = await kubeRequest(cluster, 'POST', `${API}/nodepools`, np);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await until('ready', async () =>
      call(socket, 'GET', '/readyz')
        .then(() => true)
        .catch(() => undefined),
    );
  });

  it('two pods get two of the 4 addresses; status.used names them after the throttle window', async () => {
    const a = await add('router', 'np-k1');
    const b = await add('health', 'np-k2');
    first = a.ips[0]?.address.split('/')[0] as string;
    for (const r of [a, b]) assert.match(r.ips[0]?.address ?? '', /^192\.168\.1\.[1-4]\/32$/);
    const np = await until('status.used with 2 entries', async () => {
      const x = await nodePool();
      return Object.keys(x.status?.used ?? {}).length === 2 ? x : undefined;
    });
    assert.deepEqual(
      Object.values(np.status?.used ?? {})
        .map((u) => u.owner)
        .sort(),
      [`${NS}/health`, `${NS}/router`],
    );
  });

  it('an address removed while in use stays with its owner and is never handed out again', async () => {
    const cur = await nodePool();
    const pool = { ...cur.spec.pool };
    delete pool[first];
    const r = await kubeRequest(cluster, 'PUT', `${API}/nodepools/${NODE}`, {
      ...cur,
      spec: { ...cur.spec, pool },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // It stays in status.used, its owner's, after the next write.
    await until('the removed address in status.used', async () => {
      const x = await nodePool();
      return x.status?.used?.[first]?.owner === `${NS}/router` && x.spec.pool?.[first] === undefined
        ? true
        : undefined;
    });
    await del('np-k1');
    const got = [(await add('p3', 'np-k3')).ips[0]?.address, (await add('p4', 'np-k4')).ips[0]?.address];
    assert.ok(!got.includes(`${first}/32`), `${first} was handed out again`);
    const full = await add('p5', 'np-k5').catch((x: unknown) => x);
    assert.ok(full instanceof IpamError);
    assert.equal(full.code, 'POOL_EXHAUSTED');
    const np = await until('status.used of the 3 remaining', async () => {
      const x = await nodePool();
      const u = x.status?.used ?? {};
      return !u[first] && Object.keys(u).length === 3 ? x : undefined;
    });
    assert.deepEqual(Object.keys(np.status?.used ?? {}).sort(), Object.keys(pool).sort());
  });
});
