/**
 * Fixed IPs (issue #5 items 1-3, seeds 001 and 003) at the engine: Endpoint records, StatefulSet and
 * KubeVirt VM pods getting their addresses back on any node, the cases that must not (recreated
 * owner, reserved address, changed pool), non-fixed pods, retention recorded, and manual reclaim.
 * Two engines (two nodes) share one memory store; pods come from a MemoryClusterView as the
 * informers would fill it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/store.ts';
import { API_VERSION, type Endpoint, type IPClaim } from '../api/kinds.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import { MemoryClusterView, type OwnerRef } from './cluster-view.ts';
import { CLAIM_PREFIX } from './state.ts';
import { ENDPOINT_PREFIX, releaseEndpoint } from './endpoint.ts';
import { rejects } from './test-util.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const NS = 'db';

function pool(name: string, spec: Record<string, unknown>) {
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name }, spec };
}
function reserved(name: string, ips: string[]) {
  return { apiVersion: API_VERSION, kind: 'ReservedIP', metadata: { name }, spec: { ips } };
}

const POOLS = [
  pool('v4', { subnet: '10.6.0.0/24', ips: ['10.6.0.10-10.6.0.40'], gateway: '10.6.0.1' }),
  pool('v6', { subnet: 'fd00:6::/64', ips: ['fd00:6::10-fd00:6::40'] }),
  pool('v4-b', { subnet: '10.7.0.0/24', ips: ['10.7.0.10-10.7.0.40'] }),
  pool('v4-net1', { subnet: '10.8.0.0/24', ips: ['10.8.0.10-10.8.0.40'] }),
];
const DUAL = JSON.stringify({ ipv4: ['v4'], ipv6: ['v6'] });

/**
 * The store every test here runs on. fixed-one-by-one.test.ts runs them all again on a store that
 * writes keys one by one (no `createMany`, as the Kubernetes backend).
 */
export const fixture = { store: (): Store => new MemoryStore() };

/** Two nodes (two engines, each with its node's view of the pods) on one store. */
async function cluster(objects: unknown[] = POOLS) {
  const store = fixture.store();
  let now = T0;
  const clock = { now: () => now };
  const nodes = ['node-a', 'node-b'].map((node) => {
    const view = new MemoryClusterView(true);
    const ipam = new Ipam({ store, node, clock, view, random: () => 0.5 });
    return { node, view, ipam };
  });
  for (const n of nodes) await n.ipam.start();
  const objs = new ObjectService(store, nodes[0]!.ipam, clock.now);
  if (objects.length > 0) await objs.apply(objects);
  // Let the other engine's watch catch up with the apply.
  await new Promise((r) => setImmediate(r));
  return {
    store,
    objs,
    a: nodes[0]!,
    b: nodes[1]!,
    tick: (ms: number) => {
      now += ms;
    },
    async endpoint(name: string): Promise<Endpoint | undefined> {
      return (await store.get<Endpoint>(`${ENDPOINT_PREFIX}${NS}/${name}`))?.value;
    },
    async claims(): Promise<IPClaim[]> {
      return (await store.list<IPClaim>(CLAIM_PREFIX)).map((e) => e.value);
    },
  };
}

type Node = Awaited<ReturnType<typeof cluster>>['a'];

let seq = 0;
/** A pod appears on `node` (its view learns it) and the runtime ADDs its interfaces. */
function podOn(
  node: Node,
  name: string,
  opts: { owners?: OwnerRef[]; annotations?: Record<string, string>; uid?: string } = {},
) {
  const uid = opts.uid ?? `pod-uid-${++seq}`;
  node.view.setPod({
    namespace: NS,
    name,
    uid,
    nodeName: node.node,
    annotations: { 'ipkeeper.io/ippool': DUAL, ...opts.annotations },
    owners: opts.owners ?? [],
  });
  return { uid, containerId: `ctr-${++seq}` };
}

function req(
  name: string,
  pod: { uid: string; containerId: string },
  ifName = 'eth0',
  cniNetwork = 'macvlan',
): AllocateRequest {
  return {
    cniNetwork,
    containerId: pod.containerId,
    ifName,
    owner: { kind: 'Pod', namespace: NS, name, uid: pod.uid },
  };
}

const addrs = (r: { ips: { address: string }[] }) => r.ips.map((i) => i.address).sort();
const sts = (uid = 'sts-uid-1'): OwnerRef[] => [
  { kind: 'StatefulSet', name: 'web', uid, apiVersion: 'apps/v1' },
];

/** The pod is deleted: DEL on its node, and its node's view forgets it. */
async function deletePod(node: Node, name: string, pod: { containerId: string }, ifNames = ['eth0']) {
  for (const ifName of ifNames) {
    await node.ipam.release({
      cniNetwork: ifName === 'eth0' ? 'macvlan' : 'macvlan-net1',
      containerId: pod.containerId,
      ifName,
    });
  }
  node.view.pods.delete(`${NS}/${name}`);
}

describe('fixed IPs: StatefulSet pods', () => {
  it('a StatefulSet pod deleted and recreated on either node gets the same IPv4 and IPv6 back, 20 times in a row', async () => {
    const c = await cluster();
    // A neighbour that keeps taking addresses, so a free-address allocator would hand out others.
    const first = podOn(c.a, 'web-0', { owners: sts() });
    const want = addrs(await c.a.ipam.add(req('web-0', first)));
    assert.equal(want.length, 2);
    let pod = first;
    let node = c.a;
    for (let i = 0; i < 20; i++) {
      await deletePod(node, 'web-0', pod);
      const ep = await c.endpoint('web-0');
      assert.ok(ep?.spec.releasedAt, `round ${i}: the endpoint records the release`);
      assert.equal((await c.claims()).length, 2 + 2 * i, `round ${i}: DEL kept the claims`);
      // Someone else allocates in between (the cursor moves on).
      const other = podOn(node, `other-${i}`);
      await node.ipam.add(req(`other-${i}`, other));
      node = i % 2 === 0 ? c.b : c.a;
      pod = podOn(node, 'web-0', { owners: sts() });
      const got = addrs(await node.ipam.add(req('web-0', pod)));
      assert.deepEqual(got, want, `round ${i}: same addresses on ${node.node}`);
      const after = await c.endpoint('web-0');
      assert.equal(after?.spec.releasedAt, undefined, 'a new start clears releasedAt');
      assert.equal(after?.spec.node, node.node);
      assert.equal(after?.spec.containerId, pod.containerId);
      assert.equal(after?.spec.podUid, pod.uid);
    }
    const claims = (await c.claims()).filter((x) => x.spec.endpoint === `${NS}/web-0`);
    assert.equal(claims.length, 2);
    for (const x of claims) {
      assert.equal(x.spec.containerId, pod.containerId);
      assert.equal(x.spec.owner.uid, pod.uid);
      assert.equal(x.spec.node, node.node);
      assert.equal(x.spec.fixed, true);
    }
  });

  it('a pod the live view does not know yet is refused (retry), and its kept addresses stay', async () => {
    const c = await cluster();
    const p1 = podOn(c.a, 'web-0', { owners: sts() });
    const want = addrs(await c.a.ipam.add(req('web-0', p1)));
    await deletePod(c.a, 'web-0', p1);
    // The runtime's ADD comes before the informer (and the direct read) saw the new pod.
    const p2 = { uid: 'pod-uid-unknown', containerId: 'ctr-unknown' };
    // (The CNI config names pools, so the request does not fail for want of the pod's annotation.)
    await rejects(
      c.b.ipam.add({ ...req('web-0', p2), configPools: { ipv4: ['v4-b'] } }),
      'NOT_READY',
      /pod db\/web-0 \(uid pod-uid-unknown\) is not known to this agent yet.*Endpoint db\/web-0 keeps fixed addresses/,
    );
    assert.equal((await c.claims()).length, 2, 'nothing released, nothing allocated');
    // A predecessor of the same name (old uid, here an old owner) is no better than nothing.
    c.b.view.setPod({ namespace: NS, name: 'web-0', uid: p1.uid, owners: sts('sts-uid-0') });
    await rejects(
      c.b.ipam.add({ ...req('web-0', p2), configPools: { ipv4: ['v4-b'] } }),
      'NOT_READY',
      /uid pod-uid-unknown\) is not known/,
    );
    assert.equal((await c.claims()).length, 2);
    c.b.view.setPod({
      namespace: NS,
      name: 'web-0',
      uid: p2.uid,
      annotations: { 'ipkeeper.io/ippool': DUAL },
      owners: sts(),
    });
    assert.deepEqual(addrs(await c.b.ipam.add(req('web-0', p2))), want);
  });

  it('writes one Endpoint per pod: addresses per interface, pools, owner, node, container, retention', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-1', { owners: sts() });
    await c.a.ipam.add(req('web-1', p));
    const ep = await c.endpoint('web-1');
    assert.ok(ep);
    assert.equal(ep.metadata.namespace, NS);
    assert.equal(ep.spec.fixed, 'StatefulSet');
    assert.deepEqual(ep.spec.owner, sts()[0]);
    assert.equal(ep.spec.retention, '0');
    assert.equal(ep.spec.node, 'node-a');
    assert.equal(ep.spec.podUid, p.uid);
    assert.equal(ep.spec.containerId, p.containerId);
    assert.equal(ep.spec.interfaces.length, 1);
    const eth0 = ep.spec.interfaces[0]!;
    assert.equal(eth0.ifName, 'eth0');
    assert.equal(eth0.cniNetwork, 'macvlan');
    assert.deepEqual(
      eth0.ips.map((i) => [i.family, i.pool, i.network, i.gateway]),
      [
        [4, 'v4', 'default', '10.6.0.1'],
        [6, 'v6', 'default', undefined],
      ],
    );
    for (const i of eth0.ips) assert.ok((await c.store.get(i.claim)) !== undefined, `${i.claim} exists`);
    assert.ok(eth0.routes?.some((r) => r.dst === '0.0.0.0/0' && r.gw === '10.6.0.1'));
  });

  it('ADD stays idempotent for the same container: same addresses, no second claim, one endpoint', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-0', { owners: sts() });
    const r1 = addrs(await c.a.ipam.add(req('web-0', p)));
    const r2 = addrs(await c.a.ipam.add(req('web-0', p)));
    assert.deepEqual(r2, r1);
    assert.equal((await c.claims()).length, 2);
  });

  it('a recreated StatefulSet (new uid) releases the old addresses and allocates fresh ones', async () => {
    const c = await cluster();
    const p1 = podOn(c.a, 'web-0', { owners: sts('sts-uid-1') });
    await c.a.ipam.add(req('web-0', p1));
    await deletePod(c.a, 'web-0', p1);
    c.tick(60_000);
    const p2 = podOn(c.b, 'web-0', { owners: sts('sts-uid-2') });
    await c.b.ipam.add(req('web-0', p2));
    const claims = await c.claims();
    assert.equal(claims.length, 2, 'the old claims were released, not leaked');
    // Released and allocated afresh (the free-address search may land on the same numbers again).
    for (const x of claims) assert.equal(x.spec.createdAt, new Date(T0 + 60_000).toISOString());
    assert.equal((await c.endpoint('web-0'))?.spec.owner?.uid, 'sts-uid-2');
  });

  it('an address reserved meanwhile is never handed back (seed 000, invariant 5); the other family is', async () => {
    const c = await cluster();
    const p1 = podOn(c.a, 'web-0', { owners: sts() });
    const old = await c.a.ipam.add(req('web-0', p1));
    const v4 = old.ips.find((i) => !i.address.includes(':'))!.address.split('/')[0]!;
    const v6 = old.ips.find((i) => i.address.includes(':'))!.address;
    await deletePod(c.a, 'web-0', p1);
    await c.objs.apply([reserved('firewall', [v4])]);
    await new Promise((r) => setImmediate(r));
    const p2 = podOn(c.b, 'web-0', { owners: sts() });
    const got = await c.b.ipam.add(req('web-0', p2));
    const got4 = got.ips.find((i) => !i.address.includes(':'))!.address.split('/')[0];
    assert.notEqual(got4, v4, 'the reserved address is not handed back');
    assert.equal(got.ips.find((i) => i.address.includes(':'))?.address, v6, 'IPv6 comes back');
    assert.ok(!(await c.claims()).some((x) => x.spec.ip === v4), 'the reserved address is released');
  });

  it("changing the pod's pool annotation moves it on its next start", async () => {
    const c = await cluster();
    const p1 = podOn(c.a, 'web-0', { owners: sts() });
    const old = addrs(await c.a.ipam.add(req('web-0', p1)));
    await deletePod(c.a, 'web-0', p1);
    const p2 = podOn(c.a, 'web-0', {
      owners: sts(),
      annotations: { 'ipkeeper.io/ippool': JSON.stringify({ ipv4: ['v4-b'], ipv6: ['v6'] }) },
    });
    const got = await c.a.ipam.add(req('web-0', p2));
    assert.deepEqual(
      got.ips.map((i) => i.pool),
      ['v4-b', 'v6'],
    );
    assert.equal(
      got.ips[1]?.address,
      old.find((a) => a.includes(':')),
      'IPv6 stays: its pool is still chosen',
    );
    assert.ok(!(await c.claims()).some((x) => x.spec.pool === 'v4'), 'the old IPv4 address is released');
  });

  it('a StatefulSet under an operator (full owner chain) is still fixed, and is the owner recorded', async () => {
    const c = await cluster();
    const chain: OwnerRef[] = [...sts(), { kind: 'PostgresCluster', name: 'pg', uid: 'pg-uid' }];
    const p1 = podOn(c.a, 'web-0', { owners: chain });
    const want = addrs(await c.a.ipam.add(req('web-0', p1)));
    const ep = await c.endpoint('web-0');
    assert.equal(ep?.spec.fixed, 'StatefulSet');
    assert.deepEqual(ep?.spec.owner, sts()[0]);
    await deletePod(c.a, 'web-0', p1);
    const p2 = podOn(c.b, 'web-0', { owners: chain });
    assert.deepEqual(addrs(await c.b.ipam.add(req('web-0', p2))), want);
  });

  it('a pod that is not fixed releases at once on DEL, and its Endpoint goes with it', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'api-7d9f-x2', {
      owners: [
        { kind: 'ReplicaSet', name: 'api-7d9f' },
        { kind: 'Deployment', name: 'api' },
      ],
    });
    await c.a.ipam.add(req('api-7d9f-x2', p));
    const ep = await c.endpoint('api-7d9f-x2');
    assert.equal(ep?.spec.fixed, undefined);
    assert.equal(ep?.spec.owner?.kind, 'Deployment', 'the top of the owner chain');
    assert.equal(ep?.spec.retention, undefined);
    await deletePod(c.a, 'api-7d9f-x2', p);
    assert.equal((await c.claims()).length, 0);
    assert.equal(await c.endpoint('api-7d9f-x2'), undefined);
  });

  it('an embedded-mode pod (no cluster view) gets an Endpoint from its CNI args and is not fixed', async () => {
    const store = fixture.store();
    const ipam = new Ipam({ store, node: 'n1', clock: { now: () => T0 } });
    await ipam.start();
    await new ObjectService(store, ipam, () => T0).apply(POOLS);
    const r = {
      cniNetwork: 'macvlan',
      containerId: 'c-emb',
      ifName: 'eth0',
      owner: { kind: 'Pod', namespace: NS, name: 'web-0', uid: 'u1' },
      configPools: { ipv4: ['v4'] },
    };
    await ipam.add(r);
    const ep = (await store.get<Endpoint>(`${ENDPOINT_PREFIX}${NS}/web-0`))?.value;
    assert.equal(ep?.spec.podUid, 'u1');
    assert.equal(ep?.spec.fixed, undefined);
    await ipam.release(r);
    assert.equal(await store.get(`${ENDPOINT_PREFIX}${NS}/web-0`), undefined);
  });

  it('a pod name Kubernetes could not have (free-text CNI args) gets addresses but no Endpoint', async () => {
    const store = fixture.store();
    const ipam = new Ipam({ store, node: 'n1', clock: { now: () => T0 } });
    await ipam.start();
    await new ObjectService(store, ipam, () => T0).apply(POOLS);
    const r = {
      cniNetwork: 'macvlan',
      containerId: 'c-odd',
      ifName: 'eth0',
      owner: { kind: 'Pod', namespace: 'default', name: 'Wéb_0' },
      configPools: { ipv4: ['v4'] },
    };
    assert.equal((await ipam.add(r)).ips.length, 1);
    assert.deepEqual(await store.list(ENDPOINT_PREFIX), []);
    assert.equal(await ipam.release(r), 1);
  });

  it('CNI GC leaves a kept claim alone; a claim of a deleted non-fixed pod it releases', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-0', { owners: sts() });
    await c.a.ipam.add(req('web-0', p));
    await deletePod(c.a, 'web-0', p);
    const q = podOn(c.a, 'loose');
    await c.a.ipam.add(req('loose', q));
    c.tick(3_600_000);
    const released = await c.a.ipam.gc('macvlan', []);
    assert.equal(released, 2, 'the two claims of the non-fixed pod');
    assert.equal((await c.claims()).filter((x) => x.spec.endpoint === `${NS}/web-0`).length, 2);
  });

  it('both interfaces of a multi-NIC StatefulSet pod come back', async () => {
    const c = await cluster();
    const ann = {
      'ipkeeper.io/ippools': JSON.stringify([
        { interface: 'eth0', ipv4: ['v4'] },
        { interface: 'net1', ipv4: ['v4-net1'] },
      ]),
    };
    const p1 = podOn(c.a, 'web-0', { owners: sts(), annotations: ann });
    const e1 = addrs(await c.a.ipam.add(req('web-0', p1)));
    const n1 = addrs(await c.a.ipam.add(req('web-0', p1, 'net1', 'macvlan-net1')));
    const ifs = (await c.endpoint('web-0'))?.spec.interfaces ?? [];
    assert.equal(ifs.length, 2);
    // The routing data a coordinator applies (routing.ts): eth0 routes in the main table, net1 in
    // its own table 100 with its on-link subnet, so replies from net1's address leave by net1.
    const byIf = Object.fromEntries(ifs.map((i) => [i.ifName, { routes: i.routes ?? [], table: i.table }]));
    assert.deepEqual(byIf, {
      eth0: { routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.1' }], table: undefined },
      net1: { routes: [{ dst: '10.8.0.0/24' }], table: 100 },
    });
    await deletePod(c.a, 'web-0', p1, ['eth0', 'net1']);
    const p2 = podOn(c.b, 'web-0', { owners: sts(), annotations: ann });
    assert.deepEqual(addrs(await c.b.ipam.add(req('web-0', p2))), e1);
    assert.deepEqual(addrs(await c.b.ipam.add(req('web-0', p2, 'net1', 'macvlan-net1'))), n1);
    assert.equal((await c.claims()).length, 2);
  });
});

describe('fixed IPs: KubeVirt VMs', () => {
  const vmi = (uid: string): OwnerRef => ({
    kind: 'VirtualMachineInstance',
    name: 'vm1',
    uid,
    apiVersion: 'kubevirt.io/v1',
  });
  const vm = (uid: string): OwnerRef => ({
    kind: 'VirtualMachine',
    name: 'vm1',
    uid,
    apiVersion: 'kubevirt.io/v1',
  });

  it('the Endpoint is named after the VM; a restarted VM (new launcher pod, new VMI) gets its addresses back', async () => {
    const c = await cluster();
    // Direct owner only (the view knows the VMI), then the full chain (VMI -> VM): both name vm1.
    const p1 = podOn(c.a, 'virt-launcher-vm1-abcde', { owners: [vmi('vmi-1')] });
    const want = addrs(await c.a.ipam.add(req('virt-launcher-vm1-abcde', p1)));
    const ep = await c.endpoint('vm1');
    assert.equal(ep?.spec.fixed, 'VirtualMachine');
    await deletePod(c.a, 'virt-launcher-vm1-abcde', p1);
    const p2 = podOn(c.b, 'virt-launcher-vm1-fghij', { owners: [vmi('vmi-2'), vm('vm-uid-1')] });
    assert.deepEqual(addrs(await c.b.ipam.add(req('virt-launcher-vm1-fghij', p2))), want);
    assert.equal((await c.endpoint('vm1'))?.spec.owner?.kind, 'VirtualMachine');
    await deletePod(c.b, 'virt-launcher-vm1-fghij', p2);
    const p3 = podOn(c.a, 'virt-launcher-vm1-klmno', { owners: [vmi('vmi-3'), vm('vm-uid-1')] });
    assert.deepEqual(addrs(await c.a.ipam.add(req('virt-launcher-vm1-klmno', p3))), want);
    // A new VM of the same name (new uid) starts afresh.
    await deletePod(c.a, 'virt-launcher-vm1-klmno', p3);
    c.tick(60_000);
    const p4 = podOn(c.b, 'virt-launcher-vm1-pqrst', { owners: [vmi('vmi-4'), vm('vm-uid-2')] });
    await c.b.ipam.add(req('virt-launcher-vm1-pqrst', p4));
    const claims = await c.claims();
    assert.equal(claims.length, 2);
    for (const x of claims)
      assert.equal(x.spec.createdAt, new Date(T0 + 60_000).toISOString(), 'allocated afresh');
  });
});

describe('retention recorded on the Endpoint', () => {
  it('the pod annotation wins over the pool default; the pool default over 0', async () => {
    const c = await cluster([
      ...POOLS.slice(2),
      pool('v4', { subnet: '10.6.0.0/24', ips: ['10.6.0.10-10.6.0.40'], ipRetention: '24h' }),
      pool('v6', { subnet: 'fd00:6::/64', ips: ['fd00:6::10-fd00:6::40'], ipRetention: '7d' }),
    ]);
    const p = podOn(c.a, 'web-0', { owners: sts(), annotations: { 'ipkeeper.io/ip-retention': 'forever' } });
    await c.a.ipam.add(req('web-0', p));
    assert.equal((await c.endpoint('web-0'))?.spec.retention, 'forever');
    const q = podOn(c.a, 'web-1', { owners: sts() });
    await c.a.ipam.add(req('web-1', q));
    assert.equal((await c.endpoint('web-1'))?.spec.retention, '7d', 'the longest of its pools');
  });

  it('a malformed retention annotation fails the ADD, naming it, and allocates nothing', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-0', { owners: sts(), annotations: { 'ipkeeper.io/ip-retention': '1 day' } });
    await rejects(
      c.a.ipam.add(req('web-0', p)),
      'INVALID_OBJECT',
      /pod db\/web-0 annotation ipkeeper\.io\/ip-retention: "1 day" is not a retention; use 0, a duration such as/,
    );
    assert.equal((await c.claims()).length, 0);
    assert.equal(await c.endpoint('web-0'), undefined);
  });

  it("KCE's k8s.ksyun.com/pod-ip-fixed makes a bare pod fixed, kept forever unless told", async () => {
    const c = await cluster();
    const p1 = podOn(c.a, 'static-1', { annotations: { 'k8s.ksyun.com/pod-ip-fixed': 'true' } });
    const want = addrs(await c.a.ipam.add(req('static-1', p1)));
    assert.equal((await c.endpoint('static-1'))?.spec.fixed, 'Pod');
    assert.equal((await c.endpoint('static-1'))?.spec.retention, 'forever');
    await deletePod(c.a, 'static-1', p1);
    const p2 = podOn(c.b, 'static-1', { annotations: { 'k8s.ksyun.com/pod-ip-fixed': 'true' } });
    assert.deepEqual(addrs(await c.b.ipam.add(req('static-1', p2))), want);
  });
});

describe('manual reclaim', () => {
  it('reclaim endpoint refuses while the pod is live, says why, and --force releases anyway', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-0', { owners: sts() });
    const ips = addrs(await c.a.ipam.add(req('web-0', p))).map((a) => a.split('/')[0]);
    const e = await rejects(c.a.ipam.endpoints.reclaimEndpoint(`${NS}/web-0`), 'ADDRESS_IN_USE_BY_LIVE_POD');
    assert.match(e.message, /pod db\/web-0 exists and uses it \(container ctr-\d+ on node node-a\)/);
    for (const ip of ips) assert.ok(e.message.includes(ip!), `the message lists ${ip}`);
    assert.match(e.message, /--force/);
    assert.equal((await c.claims()).length, 2, 'a refusal changes nothing');
    const r = await c.a.ipam.endpoints.reclaimEndpoint(`${NS}/web-0`, { force: true });
    assert.deepEqual(r.released.map((x) => x.ip).sort(), [...ips].sort());
    assert.equal(r.endpointDeleted, true);
    assert.match(r.forcedOver ?? '', /exists/);
    assert.equal((await c.claims()).length, 0);
    assert.equal(await c.endpoint('web-0'), undefined);
  });

  it('reclaim endpoint of a deleted StatefulSet pod releases its kept addresses; the next pod gets new ones', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-0', { owners: sts() });
    const old = addrs(await c.a.ipam.add(req('web-0', p)));
    await deletePod(c.a, 'web-0', p);
    const r = await c.a.ipam.endpoints.reclaimEndpoint(`${NS}/web-0`);
    assert.equal(r.released.length, 2);
    assert.equal(r.forcedOver, undefined);
    assert.equal((await c.claims()).length, 0);
    // Another pod takes the first address meanwhile; web-0 starts with new addresses.
    const other = podOn(c.b, 'other');
    const taken = addrs(await c.b.ipam.add(req('other', other)));
    assert.deepEqual(taken, old);
    const q = podOn(c.b, 'web-0', { owners: sts() });
    const got = addrs(await c.b.ipam.add(req('web-0', q)));
    assert.equal(got.length, 2);
    assert.equal(got.filter((g) => old.includes(g)).length, 0);
  });

  it("releaseEndpoint (the GC's and reclaim's core) never frees a claim an ADD handed on after the endpoint was read", async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-0', { owners: sts() });
    const want = addrs(await c.a.ipam.add(req('web-0', p)));
    await deletePod(c.a, 'web-0', p);
    const read = await c.store.get<Endpoint>(`${ENDPOINT_PREFIX}${NS}/web-0`);
    assert.ok(read?.value.spec.releasedAt);
    // The decision to reclaim was taken on `read`; meanwhile the pod is recreated and started.
    const q = podOn(c.b, 'web-0', { owners: sts() });
    assert.deepEqual(addrs(await c.b.ipam.add(req('web-0', q))), want);
    const r = await releaseEndpoint(c.store, read);
    assert.equal(r.released.length, 0);
    assert.equal(r.skipped.length, 2);
    for (const x of r.skipped)
      assert.match(x.reason, new RegExp(`handed to container ${q.containerId} on node node-b`));
    assert.equal(r.endpointDeleted, false);
    assert.equal((await c.claims()).length, 2);
    // Read again (the pod is live now) it would go: the version rule is what protected it.
    const again = await releaseEndpoint(
      c.store,
      (await c.store.get<Endpoint>(`${ENDPOINT_PREFIX}${NS}/web-0`))!,
    );
    assert.equal(again.released.length, 2);
    assert.equal(again.endpointDeleted, true);
  });

  it('reclaim ip refuses for a live pod, releases a kept address after DEL and drops it from the Endpoint', async () => {
    const c = await cluster();
    const p = podOn(c.a, 'web-0', { owners: sts() });
    const res = await c.a.ipam.add(req('web-0', p));
    const v4 = res.ips[0]!.address.split('/')[0]!;
    await rejects(c.a.ipam.endpoints.reclaimIp(v4), 'ADDRESS_IN_USE_BY_LIVE_POD', /pod db\/web-0 exists/);
    await deletePod(c.a, 'web-0', p);
    const r = await c.a.ipam.endpoints.reclaimIp(v4);
    assert.deepEqual(
      r.released.map((x) => x.ip),
      [v4],
    );
    assert.equal(r.endpoint, `${NS}/web-0`);
    assert.equal(r.endpointDeleted, false, 'the IPv6 address is still listed');
    const ep = await c.endpoint('web-0');
    assert.deepEqual(
      ep?.spec.interfaces[0]?.ips.map((i) => i.family),
      [6],
    );
    // The next pod gets its IPv6 back and a new IPv4 address.
    const q = podOn(c.b, 'web-0', { owners: sts() });
    const got = await c.b.ipam.add(req('web-0', q));
    assert.equal(got.ips[1]?.address, res.ips[1]?.address);
  });

  it('reclaim ip: a malformed address, an unknown address, and a non-pod owner are refused with the reason', async () => {
    const c = await cluster();
    await rejects(c.a.ipam.endpoints.reclaimIp('010.6.0.1'), 'INVALID_OBJECT', /reclaim ip/);
    await rejects(c.a.ipam.endpoints.reclaimIp('10.6.0.99'), 'NOT_FOUND', /no claim holds 10\.6\.0\.99/);
    await rejects(c.a.ipam.endpoints.reclaimEndpoint('web-0'), 'INVALID_OBJECT', /must be NAMESPACE\/NAME/);
    await rejects(
      c.a.ipam.endpoints.reclaimEndpoint(`${NS}/nobody`),
      'NOT_FOUND',
      /Endpoint db\/nobody not found/,
    );
    await c.a.ipam.add({
      cniNetwork: 'macvlan',
      containerId: 'raw',
      ifName: 'eth0',
      owner: { kind: 'Container', name: 'raw' },
      configPools: { ipv4: ['v4'] },
    });
    const ip = (await c.claims())[0]!.spec.ip;
    await rejects(c.a.ipam.endpoints.reclaimIp(ip), 'ADDRESS_IN_USE', /held by Container raw, not a pod/);
    const r = await c.a.ipam.endpoints.reclaimIp(ip, { force: true });
    assert.equal(r.released.length, 1);
  });

  it('in embedded mode (no cluster view), a pod without a CNI DEL counts as live', async () => {
    const store = fixture.store();
    const ipam = new Ipam({ store, node: 'n1', clock: { now: () => T0 } });
    await ipam.start();
    await new ObjectService(store, ipam, () => T0).apply(POOLS);
    await ipam.add({
      cniNetwork: 'macvlan',
      containerId: 'c1',
      ifName: 'eth0',
      owner: { kind: 'Pod', namespace: NS, name: 'p', uid: 'u' },
      configPools: { ipv4: ['v4'] },
    });
    await rejects(
      ipam.endpoints.reclaimEndpoint(`${NS}/p`),
      'ADDRESS_IN_USE_BY_LIVE_POD',
      /no CNI DEL since its ADD/,
    );
  });
});
