/**
 * StatefulSet fixed IPs against a real API server WITH its controllers (issue #5, seeds 001 and
 * 003): kube-controller-manager makes the StatefulSet's pods and recreates a deleted one (new uid),
 * kube-scheduler binds them to the two Node objects the test creates, and the test plays the
 * kubelet of both nodes: one agent per node (`--store kubernetes:`, informers), CNI ADD/DEL with the
 * pod's K8S_POD_* args. The check of the issue: "delete StatefulSet pods repeatedly and watch the
 * addresses; reclaim by hand". State (IPClaims, Endpoints) lives in the CRDs.
 *
 * Runs against IPKEEPER_TEST_KUBECONFIG as well: unique names, its own uniqueness domain
 * (`spec.network`) for the pools, and everything it made is deleted at the end.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type Agent } from '../../src/agent/server.ts';
import { call } from '../../src/cli/client.ts';
import { IpamError } from '../../src/errors.ts';
import type { CniRequest, IpamResult } from '../../src/cni/protocol.ts';
import type { ReclaimReport } from '../../src/ipam/endpoint.ts';
import { reclaimDecision } from '../../src/ipam/retention.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds, readyNode, until } from './crds.ts';

const suffix = randomBytes(3).toString('hex');
const NS = `ipk-fixed-${suffix}`;
const NODES = [`ipk-fixed-a-${suffix}`, `ipk-fixed-b-${suffix}`];
const POOL4 = `fixed-v4-${suffix}`;
const POOL6 = `fixed-v6-${suffix}`;
const NETWORK = `fixed-${suffix}`;
const API = '/apis/ipkeeper.io/v1alpha1';
const STS = `/apis/apps/v1/namespaces/${NS}/statefulsets`;
/** Controllers and the scheduler on a shared 2-core machine: generous, and only a bound. */
const SLOW_MS = 90_000;
const ROUNDS = 20;

describe('StatefulSet fixed IPs with real controllers: recreate, move nodes, reclaim by hand', () => {
  let cluster: TestCluster;
  const agents = new Map<string, Agent>();
  const dir = mkdtempSync(join(tmpdir(), 'ipk-kfixed-'));
  const sockets = new Map(NODES.map((n) => [n, join(dir, `${n}.sock`)]));

  const create = async (path: string, body: unknown): Promise<any> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.ok([201, 409].includes(r.status), `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    return r.body;
  };
  const cni = (node: string, command: 'ADD' | 'DEL', pod: { name: string; uid: string }, ifName = 'eth0') =>
    call<IpamResult>(sockets.get(node)!, 'POST', `/v1/cni/${command.toLowerCase()}`, {
      command,
      // The runtime's sandbox id: a new one for every pod (uid).
      containerId: `sandbox-${pod.uid}`,
      ifName,
      network: 'macvlan-underlay',
      cniVersion: '1.0.0',
      args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: pod.name, K8S_POD_UID: pod.uid },
      ipam: { type: 'ipkeeper' },
    } satisfies CniRequest);
  /** The pod once the scheduler has bound it, optionally a different one than `notUid`. */
  const bound = (name: string, notUid?: string) =>
    until(
      `pod ${name} bound to a node${notUid ? ` (a new one, not uid ${notUid})` : ''}`,
      async () => {
        const r = await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${NS}/pods/${name}`);
        const p = r.body;
        if (r.status !== 200 || !p.spec?.nodeName || p.metadata.deletionTimestamp) return undefined;
        if (notUid && p.metadata.uid === notUid) return undefined;
        return { name, uid: p.metadata.uid as string, node: p.spec.nodeName as string };
      },
      SLOW_MS,
    );
  const cordon = (node: string, unschedulable: boolean) =>
    kubeRequest(cluster, 'PATCH', `/api/v1/nodes/${node}`, { spec: { unschedulable } });
  /** Deletes the pod at once (there is no kubelet to finish a graceful deletion). */
  const forceDelete = (name: string) =>
    kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}/pods/${name}`, { gracePeriodSeconds: 0 });
  const endpoint = async (name: string): Promise<any> =>
    (await kubeRequest(cluster, 'GET', `${API}/namespaces/${NS}/endpoints/${name}`)).body;
  const claimsOf = async (ref: string): Promise<any[]> =>
    ((await kubeRequest(cluster, 'GET', `${API}/ipclaims`)).body.items ?? []).filter(
      (c: any) => c.spec.endpoint === ref,
    );
  const addrs = (r: IpamResult) => r.ips.map((i) => i.address).sort();

  before(async () => {
    cluster = await startTestCluster({ controllerManager: true, scheduler: true });
    await installCrds(cluster);
    for (const name of NODES) await create('/api/v1/nodes', readyNode(name, { 'ipk-fixed': suffix }));
    await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    await until(
      'the default ServiceAccount',
      async () =>
        (await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${NS}/serviceaccounts/default`)).status === 200
          ? true
          : undefined,
      SLOW_MS,
    );
    for (const [name, subnet, ips] of [
      [POOL4, '10.60.0.0/24', ['10.60.0.10-10.60.0.30']],
      [POOL6, 'fd00:60::/64', ['fd00:60::10-fd00:60::30']],
    ] as const) {
      await create(`${API}/ippools`, {
        apiVersion: 'ipkeeper.io/v1alpha1',
        kind: 'IPPool',
        metadata: { name },
        spec: { subnet, ips, network: NETWORK },
      });
    }
    for (const node of NODES) {
      agents.set(
        node,
        await startAgent({
          store: `kubernetes:${cluster.kubeconfigPath}`,
          socket: sockets.get(node)!,
          node,
          logLevel: 'silent',
          defaultMetrics: false,
          reclaimIntervalMs: 0,
        }),
      );
    }
    await create(STS, statefulSet(2));
  });

  const statefulSet = (replicas: number) => ({
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name: 'sts' },
    spec: {
      replicas,
      serviceName: 'sts',
      // No kubelet: pods never become Ready, so OrderedReady would never start sts-1.
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: { app: 'sts' } },
      template: {
        metadata: {
          labels: { app: 'sts' },
          annotations: {
            'ipkeeper.io/ippool': JSON.stringify({ ipv4: [POOL4], ipv6: [POOL6] }),
            'ipkeeper.io/ip-retention': '24h',
          },
        },
        spec: {
          nodeSelector: { 'ipk-fixed': suffix },
          automountServiceAccountToken: false,
          containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
        },
      },
    },
  });

  after(async () => {
    for (const a of agents.values()) await a.close();
    if (cluster) {
      await kubeRequest(cluster, 'DELETE', STS + '/sts');
      for (const p of ['sts-0', 'sts-1']) await forceDelete(p);
      for (const c of (await kubeRequest(cluster, 'GET', `${API}/ipclaims`)).body.items ?? []) {
        if (c.spec.network === NETWORK)
          await kubeRequest(cluster, 'DELETE', `${API}/ipclaims/${c.metadata.name}`);
      }
      for (const p of [POOL4, POOL6]) await kubeRequest(cluster, 'DELETE', `${API}/ippools/${p}`);
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
      for (const n of NODES) await kubeRequest(cluster, 'DELETE', `/api/v1/nodes/${n}`);
      await cluster.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  let want: string[] = [];
  let sts1Addrs: string[] = [];

  it('each pod gets one IPv4 and one IPv6 address and an Endpoint naming its StatefulSet', async () => {
    const p0 = await bound('sts-0');
    const p1 = await bound('sts-1');
    want = addrs(await cni(p0.node, 'ADD', p0));
    sts1Addrs = addrs(await cni(p1.node, 'ADD', p1));
    assert.equal(want.length, 2);
    assert.equal(sts1Addrs.length, 2);
    assert.equal(want.filter((a) => sts1Addrs.includes(a)).length, 0);
    const set = (await kubeRequest(cluster, 'GET', `${STS}/sts`)).body;
    const ep = await endpoint('sts-0');
    assert.equal(ep.spec.fixed, 'StatefulSet');
    assert.equal(ep.spec.owner.kind, 'StatefulSet');
    assert.equal(ep.spec.owner.uid, set.metadata.uid);
    assert.equal(ep.spec.retention, '24h');
    assert.equal(ep.spec.podUid, p0.uid);
    assert.equal(ep.spec.node, p0.node);
    assert.deepEqual(
      ep.spec.interfaces[0].ips.map((i: any) => i.pool),
      [POOL4, POOL6],
    );
  });

  it(`sts-0 deleted ${ROUNDS} times: the controller recreates it (new uid) on the other node, and it gets the same addresses`, async () => {
    let pod = await bound('sts-0');
    for (let i = 0; i < ROUNDS; i++) {
      const from = pod.node;
      const to = NODES.find((n) => n !== from)!;
      // The kubelet tears the sandbox down (CNI DEL), the pod goes; the other node is the only one left.
      await cni(from, 'DEL', pod);
      assert.ok((await endpoint('sts-0')).spec.releasedAt, `round ${i}: DEL recorded`);
      assert.equal((await claimsOf(`${NS}/sts-0`)).length, 2, `round ${i}: DEL kept both claims`);
      await cordon(to, false);
      await cordon(from, true);
      await forceDelete('sts-0');
      const next = await bound('sts-0', pod.uid);
      assert.equal(next.node, to, `round ${i}: the new pod is on the other node`);
      const got = addrs(await cni(to, 'ADD', next));
      assert.deepEqual(got, want, `round ${i}: same addresses on ${to}`);
      const ep = await endpoint('sts-0');
      assert.equal(ep.spec.podUid, next.uid);
      assert.equal(ep.spec.node, to);
      assert.equal(ep.spec.releasedAt, undefined);
      for (const c of await claimsOf(`${NS}/sts-0`)) {
        assert.equal(c.spec.node, to);
        assert.equal(c.spec.owner.uid, next.uid);
      }
      pod = next;
    }
    for (const n of NODES) await cordon(n, false);
  });

  it('reclaim by hand: refused while sts-1 is live; after scale-down and DEL its addresses are released', async () => {
    const p1 = await bound('sts-1');
    const refused = await call<ReclaimReport>(sockets.get(p1.node)!, 'POST', '/v1/reclaim', {
      endpoint: `${NS}/sts-1`,
    }).catch((e: unknown) => e);
    assert.ok(refused instanceof IpamError, String(refused));
    assert.equal(refused.code, 'ADDRESS_IN_USE_BY_LIVE_POD');
    assert.match(refused.message, new RegExp(`pod ${NS}/sts-1 has had no CNI DEL|pod ${NS}/sts-1 exists`));
    const ip = sts1Addrs[0]!.split('/')[0]!;
    const byIp = await call(sockets.get(p1.node)!, 'POST', '/v1/reclaim', { ip }).catch((e: unknown) => e);
    assert.ok(byIp instanceof IpamError && byIp.code === 'ADDRESS_IN_USE_BY_LIVE_POD', String(byIp));
    // Scale down below ordinal 1: the controller deletes sts-1; the kubelet tears it down.
    await kubeRequest(cluster, 'PATCH', `${STS}/sts`, { spec: { replicas: 1 } });
    await until(
      'sts-1 marked for deletion',
      async () => {
        const r = await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${NS}/pods/sts-1`);
        return r.status === 404 || r.body.metadata?.deletionTimestamp ? true : undefined;
      },
      SLOW_MS,
    );
    await cni(p1.node, 'DEL', p1);
    await forceDelete('sts-1');
    assert.equal(
      (await claimsOf(`${NS}/sts-1`)).length,
      2,
      'kept for the retention GC (24h) until reclaimed',
    );
    // What the GC decides from these real objects: held for 24h from the DEL, then reclaimed.
    const ep = await endpoint('sts-1');
    const set = (await kubeRequest(cluster, 'GET', `${STS}/sts`)).body;
    const facts = {
      podExists: false,
      owner: { exists: true, uid: set.metadata.uid, replicas: set.spec.replicas },
    };
    const released = Date.parse(ep.spec.releasedAt);
    const hold = reclaimDecision(ep, { ...facts, now: released + 3_600_000 });
    assert.equal(hold.reclaim, false, hold.reason);
    assert.equal(!hold.reclaim && hold.until, released + 24 * 3_600_000);
    assert.match(hold.reason, /scaled to 1 replicas, below ordinal 1/);
    const lapsed = reclaimDecision(ep, { ...facts, now: released + 24 * 3_600_000 });
    assert.equal(lapsed.reclaim, true, lapsed.reason);
    // Any agent may do it: the other node's agent here.
    const other = NODES.find((n) => n !== p1.node)!;
    const r = await call<ReclaimReport>(sockets.get(other)!, 'POST', '/v1/reclaim', {
      endpoint: `${NS}/sts-1`,
    });
    assert.deepEqual(r.released.map((x) => `${x.ip}`).sort(), sts1Addrs.map((a) => a.split('/')[0]).sort());
    assert.equal(r.endpointDeleted, true);
    assert.equal((await claimsOf(`${NS}/sts-1`)).length, 0);
    assert.equal((await kubeRequest(cluster, 'GET', `${API}/namespaces/${NS}/endpoints/sts-1`)).status, 404);
    // sts-0 is untouched.
    assert.equal((await claimsOf(`${NS}/sts-0`)).length, 2);
  });

  it("a recreated StatefulSet (new uid) does not inherit the old one's addresses: they are released", async () => {
    const p0 = await bound('sts-0');
    const before = await claimsOf(`${NS}/sts-0`);
    assert.equal(before.length, 2);
    await cni(p0.node, 'DEL', p0);
    const del = await kubeRequest(cluster, 'DELETE', `${STS}/sts`, { propagationPolicy: 'Orphan' });
    assert.equal(del.status, 200, JSON.stringify(del.body).slice(0, 300));
    await forceDelete('sts-0');
    await until(
      'the old StatefulSet gone',
      async () => ((await kubeRequest(cluster, 'GET', `${STS}/sts`)).status === 404 ? true : undefined),
      SLOW_MS,
    );
    const set = await create(STS, statefulSet(1));
    const p = await bound('sts-0', p0.uid);
    await cni(p.node, 'ADD', p);
    const ep = await endpoint('sts-0');
    assert.equal(ep.spec.owner.uid, set.metadata.uid);
    const after = await claimsOf(`${NS}/sts-0`);
    assert.equal(after.length, 2, 'the old claims were released, not leaked');
    const oldUids = new Set(before.map((c) => c.metadata.uid));
    for (const c of after)
      assert.ok(!oldUids.has(c.metadata.uid), `${c.spec.ip}: a new claim, not the old one handed back`);
  });
});
