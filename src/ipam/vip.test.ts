import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import type { IpamError } from '../errors.ts';
import { API_VERSION, type IPClaim, type VIP } from '../api/kinds.ts';
import { MemoryClusterView } from './cluster-view.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import {
  aapPods,
  aapsOf,
  allocateVip,
  claimsOfVip,
  dropClaims,
  vipClaimIndex,
  vipMac,
  vipRequested,
} from './vip.ts';
import { rejects } from './test-util.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function pool(name: string, spec: Record<string, unknown>) {
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name }, spec };
}
function vip(name: string, spec: Record<string, unknown>): VIP {
  return { apiVersion: API_VERSION, kind: 'VIP', metadata: { name }, spec } as VIP;
}

async function setup(objects: unknown[], view?: MemoryClusterView) {
  const store = new MemoryStore();
  const clock = { now: () => T0 };
  const ipam = new Ipam({ store, node: 'node1', clock, ...(view ? { view } : {}) });
  await ipam.start();
  const objs = new ObjectService(store, ipam, clock.now);
  if (objects.length > 0) await objs.apply(objects);
  return { store, ipam, objs };
}

const ovnDefault = pool('ovn-default', {
  subnet: '10.16.0.0/16',
  gateway: '10.16.0.1',
  ips: ['10.16.0.2-10.16.0.200'],
});

let seq = 0;
function req(name: string, over: Partial<AllocateRequest> = {}): AllocateRequest {
  seq++;
  return {
    cniNetwork: 'net1',
    containerId: `c${seq}`,
    ifName: 'eth0',
    owner: { kind: 'Pod', namespace: 'default', name, uid: `uid-${seq}` },
    ...over,
  };
}

describe('vipMac', () => {
  const cases: [string, string][] = [
    ['10.16.0.12', '02:00:0a:10:00:0c'],
    ['255.255.255.255', '02:00:ff:ff:ff:ff'],
    ['0.0.0.0', '02:00:00:00:00:00'],
    ['fd00::1:2:3', '06:01:00:02:00:03'],
    ['fd00::ab:cdef', '06:00:00:ab:cd:ef'],
  ];
  for (const [ip, mac] of cases) {
    it(`${ip} -> ${mac}`, () => assert.equal(vipMac(ip), mac));
  }
  it('is locally administered and unicast, and stable', () => {
    for (const ip of ['10.1.2.3', '2001:db8::1']) {
      const first = parseInt(vipMac(ip).slice(0, 2), 16);
      assert.equal(first & 0x02, 0x02, 'locally administered bit');
      assert.equal(first & 0x01, 0, 'unicast');
      assert.equal(vipMac(ip), vipMac(ip));
    }
    assert.notEqual(vipMac('10.0.0.1'), vipMac('10.0.0.2'));
  });
});

describe('VIP allocation (seed 002)', () => {
  it('a dynamic VIP gets a free address of its pool, never handed to a pod', async () => {
    const { ipam, objs } = await setup([
      pool('tiny', { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.11'] }),
      vip('vip-dynamic-01', { pool: 'tiny', type: '' }),
    ]);
    const v = (await objs.get('VIP', 'vip-dynamic-01')) as VIP;
    assert.equal(v.status?.ready, true);
    assert.equal(v.status?.v4ip, '10.9.0.10');
    assert.equal(v.status?.mac, vipMac('10.9.0.10'));
    // The pod gets the other address, then the pool is full: the VIP's address is never given.
    const a = await ipam.add(req('p1', { configPools: { ipv4: ['tiny'] } }));
    assert.deepEqual(
      a.ips.map((i) => i.address),
      ['10.9.0.11/24'],
    );
    await rejects(ipam.add(req('p2', { configPools: { ipv4: ['tiny'] } })), 'POOL_EXHAUSTED');
    const c = claimsOfVip(ipam.state, 'vip-dynamic-01');
    assert.equal(c.length, 1);
    assert.deepEqual(c[0]?.claim.spec.owner, { kind: 'VIP', name: 'vip-dynamic-01' });
    assert.equal(c[0]?.claim.spec.containerId, undefined, 'a VIP claim is no attachment');
  });

  it('a static VIP takes exactly v4ip; re-applying is idempotent', async () => {
    const { ipam, objs } = await setup([
      ovnDefault,
      vip('static-vip01', { pool: 'ovn-default', v4ip: '10.16.0.121' }),
    ]);
    assert.equal(((await objs.get('VIP', 'static-vip01')) as VIP).status?.v4ip, '10.16.0.121');
    const r = await objs.apply([vip('static-vip01', { pool: 'ovn-default', v4ip: '10.16.0.121' })]);
    assert.equal(r[0]?.action, 'unchanged');
    assert.equal(claimsOfVip(ipam.state, 'static-vip01').length, 1);
  });

  it('moving a static VIP to another address releases the old one', async () => {
    const { ipam, objs } = await setup([ovnDefault, vip('mv', { pool: 'ovn-default', v4ip: '10.16.0.50' })]);
    await objs.apply([vip('mv', { pool: 'ovn-default', v4ip: '10.16.0.51' })]);
    assert.deepEqual(
      claimsOfVip(ipam.state, 'mv').map((h) => h.claim.spec.ip),
      ['10.16.0.51'],
    );
  });

  it('refuses a static address outside the pool, reserved, or held, and changes nothing', async () => {
    const { ipam, objs } = await setup([
      ovnDefault,
      {
        apiVersion: API_VERSION,
        kind: 'ReservedIP',
        metadata: { name: 'keep-out' },
        spec: { ips: ['10.16.0.99'] },
      },
      vip('first', { pool: 'ovn-default', v4ip: '10.16.0.121' }),
    ]);
    await rejects(
      objs.apply([vip('outside', { pool: 'ovn-default', v4ip: '10.17.0.1' })]),
      'ADDRESS_NOT_IN_POOL',
      /spec\.v4ip 10\.17\.0\.1 is not an address of pool "ovn-default"/,
    );
    await rejects(
      objs.apply([vip('res', { pool: 'ovn-default', v4ip: '10.16.0.99' })]),
      'ADDRESS_RESERVED',
      /"keep-out"/,
    );
    await rejects(
      objs.apply([vip('second', { pool: 'ovn-default', v4ip: '10.16.0.121' })]),
      'ADDRESS_IN_USE',
      /held by VIP first/,
    );
    await rejects(
      objs.apply([vip('nopool', { pool: 'no-such-pool' })]),
      'POOL_NOT_FOUND',
      /spec\.pool "no-such-pool"/,
    );
    await rejects(
      objs.apply([vip('fam', { pool: 'ovn-default', v6ip: 'fd00::5' })]),
      'ADDRESS_NOT_IN_POOL',
      /spec\.v6ip fd00::5 is IPv6 but spec\.pool "ovn-default" is IPv4/,
    );
    // The gateway is not an address of the pool either.
    await rejects(objs.apply([vip('gw', { pool: 'ovn-default', v4ip: '10.16.0.1' })]), 'ADDRESS_NOT_IN_POOL');
    for (const n of ['outside', 'res', 'second', 'nopool', 'fam', 'gw']) {
      await rejects(objs.get('VIP', n), 'NOT_FOUND');
    }
    assert.equal([...ipam.state.claims.values()].length, 1, 'only the first VIP holds a claim');
  });

  it('a bad batch changes nothing: the first VIP of the batch gives its address back', async () => {
    const { ipam, objs } = await setup([ovnDefault]);
    await rejects(
      objs.apply([
        vip('ok', { pool: 'ovn-default' }),
        vip('bad', { pool: 'ovn-default', v4ip: '10.99.0.1' }),
      ]),
      'ADDRESS_NOT_IN_POOL',
    );
    assert.equal(ipam.state.claims.size, 0);
  });

  it('schema and semantic errors name the field', async () => {
    const { objs } = await setup([ovnDefault]);
    await rejects(
      objs.apply([vip('v', { pool: 'ovn-default', v4ip: 'fd00::1' })]),
      'INVALID_OBJECT',
      /spec\.v4ip: "fd00::1" is IPv6; put it in spec\.v6ip/,
    );
    await rejects(
      objs.apply([vip('v', { pool: 'ovn-default', v4ip: '010.16.0.1' })]),
      'INVALID_OBJECT',
      /spec\.v4ip/,
    );
    await rejects(
      objs.apply([vip('v', { pool: 'ovn-default', type: 'lb' })]),
      'INVALID_OBJECT',
      /spec\.type/,
    );
    await rejects(
      objs.apply([vip('v', { pool: 'ovn-default', selector: ['app: aap1'] })]),
      'INVALID_OBJECT',
      /spec\.namespace is required with spec\.selector/,
    );
    await rejects(
      objs.apply([vip('v', { pool: 'ovn-default', namespace: 'default', selector: ['app'] })]),
      'INVALID_OBJECT',
      /spec\.selector\[0\]: "app" is not a label "key: value"/,
    );
  });

  it('a dual-stack VIP holds one address per family', async () => {
    const { objs } = await setup([
      ovnDefault,
      pool('v6', { subnet: 'fd00:16::/64' }),
      vip('dual', { pool: 'ovn-default', ipv6Pool: 'v6', v6ip: 'fd00:16::12' }),
    ]);
    const v = (await objs.get('VIP', 'dual')) as VIP;
    assert.equal(v.status?.v6ip, 'fd00:16::12');
    assert.match(v.status?.v4ip ?? '', /^10\.16\.0\./);
    assert.equal(v.status?.mac, vipMac(v.status?.v4ip as string));
  });

  it('deleting the VIP releases its address', async () => {
    const { ipam, objs } = await setup([ovnDefault, vip('gone', { pool: 'ovn-default', v4ip: '10.16.0.7' })]);
    await objs.delete('VIP', 'gone');
    assert.equal(ipam.state.claims.size, 0);
    const a = await ipam.add(req('p', { requestedIps: ['10.16.0.7'] }));
    assert.equal(a.ips[0]?.address, '10.16.0.7/16');
  });

  it('allocateVip is idempotent when called again (the controller and the agent racing)', async () => {
    const { ipam, store } = await setup([ovnDefault]);
    const deps = { store, state: ipam.state, clock: { now: () => T0 } };
    const v = vip('twice', { pool: 'ovn-default' });
    const a = await allocateVip(deps, v);
    const b = await allocateVip(deps, v);
    assert.equal(a.claims[0]?.key, b.claims[0]?.key);
    assert.equal(b.made.length, 0);
  });
});

describe('a pod using a VIP as its address (seed 002 §3)', () => {
  it('the pod gets the VIP address; a second pod is refused naming the holder; DEL frees it', async () => {
    const view = new MemoryClusterView(true);
    const { ipam, objs, store } = await setup(
      [ovnDefault, vip('pod-use-vip', { pool: 'ovn-default', type: '' })],
      view,
    );
    const addr = ((await objs.get('VIP', 'pod-use-vip')) as VIP).status?.v4ip;
    view.setPod({
      namespace: 'default',
      name: 'static-ip',
      annotations: { 'ovn.kubernetes.io/vip': 'pod-use-vip' },
    });
    view.setPod({ namespace: 'default', name: 'other', annotations: { 'ipkeeper.io/vip': 'pod-use-vip' } });
    const r1 = req('static-ip');
    const a = await ipam.add(r1);
    assert.deepEqual(a.ips, [{ address: `${addr}/16`, gateway: '10.16.0.1', pool: 'ovn-default' }]);
    // Idempotent ADD; CHECK passes.
    assert.deepEqual(await ipam.add(r1), a);
    await ipam.check(r1);
    assert.equal(((await objs.get('VIP', 'pod-use-vip')) as VIP).status?.pod, 'default/static-ip');
    const claim = (await store.get<IPClaim>(claimsOfVip(ipam.state, 'pod-use-vip')[0]?.key as string))?.value;
    assert.equal(claim?.spec.owner.kind, 'VIP', "the claim stays the VIP's");
    assert.equal(claim?.spec.boundTo?.pod.name, 'static-ip');
    await rejects(ipam.add(req('other')), 'ADDRESS_IN_USE', /used by pod default\/static-ip/);
    // The VIP cannot be deleted under its pod.
    await rejects(objs.delete('VIP', 'pod-use-vip'), 'CONFLICT', /default\/static-ip/);
    assert.equal(await ipam.release(r1), 1);
    assert.equal(((await objs.get('VIP', 'pod-use-vip')) as VIP).status?.pod, undefined);
    assert.equal(claimsOfVip(ipam.state, 'pod-use-vip').length, 1, 'DEL unbinds; the VIP keeps its address');
    const b = await ipam.add(req('other'));
    assert.equal(b.ips[0]?.address, `${addr}/16`);
  });

  it('concurrent ADDs of two pods: exactly one wins', async () => {
    const view = new MemoryClusterView(true);
    const { ipam } = await setup([ovnDefault, vip('race', { pool: 'ovn-default' })], view);
    for (const n of ['a', 'b'])
      view.setPod({ namespace: 'ns', name: n, annotations: { 'ipkeeper.io/vip': 'race' } });
    const r = await Promise.allSettled([
      ipam.add(req('a', { owner: { kind: 'Pod', namespace: 'ns', name: 'a' } })),
      ipam.add(req('b', { owner: { kind: 'Pod', namespace: 'ns', name: 'b' } })),
    ]);
    assert.equal(r.filter((x) => x.status === 'fulfilled').length, 1);
    const lost = r.find((x) => x.status === 'rejected') as PromiseRejectedResult;
    assert.equal((lost.reason as IpamError).code, 'ADDRESS_IN_USE');
  });

  it('a StatefulSet pod keeps its VIP over DEL: another pod is refused, the same name gets it back', async () => {
    const view = new MemoryClusterView(true);
    const { ipam, objs } = await setup([ovnDefault, vip('sts-vip', { pool: 'ovn-default' })], view);
    const ann = { 'ipkeeper.io/vip': 'sts-vip' };
    view.setPod({
      namespace: 'db',
      name: 'web-0',
      annotations: ann,
      owners: [{ kind: 'StatefulSet', name: 'web' }],
    });
    view.setPod({ namespace: 'db', name: 'intruder', annotations: ann });
    const first = req('web-0', { owner: { kind: 'Pod', namespace: 'db', name: 'web-0', uid: 'u1' } });
    const a = await ipam.add(first);
    await ipam.release(first);
    assert.equal(
      ((await objs.get('VIP', 'sts-vip')) as VIP).status?.pod,
      'db/web-0',
      'kept for the StatefulSet pod',
    );
    await rejects(
      ipam.add(req('intruder', { owner: { kind: 'Pod', namespace: 'db', name: 'intruder' } })),
      'ADDRESS_IN_USE',
      /used by pod db\/web-0 \(StatefulSet pod, kept for it while it is recreated\)/,
    );
    const again = await ipam.add(
      req('web-0', { owner: { kind: 'Pod', namespace: 'db', name: 'web-0', uid: 'u2' } }),
    );
    assert.deepEqual(again.ips, a.ips);
  });

  it('embedded mode: the IPKEEPER_VIP CNI arg names the VIP; unknown and not-ready VIPs are clear errors', async () => {
    const { ipam, objs } = await setup([ovnDefault, vip('e', { pool: 'ovn-default', v4ip: '10.16.0.30' })]);
    const a = await ipam.add(req('p', { vip: 'e' }));
    assert.equal(a.ips[0]?.address, '10.16.0.30/16');
    await rejects(ipam.add(req('q', { vip: 'nope' })), 'NOT_FOUND', /VIP "nope".*does not exist/);
    // Only the default-route interface takes the VIP.
    assert.equal(vipRequested(req('p', { vip: 'e', ifName: 'net1' }), undefined), undefined);
    void objs;
  });
});

describe('allowed address pairs', () => {
  const aap = vip('vip-aap', { pool: 'ovn-default', namespace: 'default', selector: ['app: aap1'] });
  const pod = (namespace: string, name: string, labels: Record<string, string>, aaps?: string) => ({
    namespace,
    name,
    labels,
    annotations: (aaps ? { 'ovn.kubernetes.io/aaps': aaps } : {}) as Record<string, string>,
  });
  it('binds same-namespace pods that match the selector and list the VIP', () => {
    const pods = [
      pod('default', 'busybox', { app: 'aap1' }, 'vip-aap'),
      pod('default', 'two', { app: 'aap1', x: 'y' }, 'other, vip-aap'),
      pod('default', 'no-label', { app: 'web' }, 'vip-aap'),
      pod('default', 'no-annotation', { app: 'aap1' }),
      pod('elsewhere', 'foreign', { app: 'aap1' }, 'vip-aap'),
    ];
    assert.deepEqual(aapPods(aap, pods), ['busybox', 'two']);
    assert.deepEqual(aapPods({ ...aap, spec: { ...aap.spec, namespace: undefined } } as VIP, pods), []);
    const withSel = {
      ...aap,
      spec: { ...aap.spec, podSelector: { matchExpressions: [{ key: 'x', operator: 'Exists' as const }] } },
    } as VIP;
    assert.deepEqual(aapPods(withSel, pods), ['two']);
  });
  it('parses the aaps list', () => {
    assert.deepEqual(aapsOf({ 'ipkeeper.io/aaps': ' a, b,,c ' }), ['a', 'b', 'c']);
    assert.deepEqual(aapsOf({}), []);
  });
});

describe('CNI GC and VIP bindings', () => {
  it('a binding whose attachment the runtime no longer lists is undone; a young one and a listed one stay', async () => {
    let now = T0;
    const store = new MemoryStore();
    const ipam = new Ipam({ store, node: 'node1', clock: { now: () => now }, gcMinAgeMs: 60_000 });
    await ipam.start();
    const objs = new ObjectService(store, ipam, () => now);
    await objs.apply([ovnDefault, vip('g1', { pool: 'ovn-default' }), vip('g2', { pool: 'ovn-default' })]);
    const r1 = req('p1', { vip: 'g1' });
    const r2 = req('p2', { vip: 'g2' });
    await ipam.add(r1);
    await ipam.add(r2);
    assert.equal(await ipam.gc('net1', []), 0, 'too young');
    now += 120_000;
    assert.equal(await ipam.gc('net1', [{ containerID: r2.containerId, ifname: 'eth0' }]), 1);
    assert.equal(((await objs.get('VIP', 'g1')) as VIP).status?.pod, undefined);
    assert.equal(((await objs.get('VIP', 'g2')) as VIP).status?.pod, 'default/p2');
    assert.equal(claimsOfVip(ipam.state, 'g1').length, 1, 'the VIP keeps its address');
  });
});

describe('two claims for one VIP (the controller and an agent racing)', () => {
  it('every reader keeps the oldest; the other is stale and released; a stale index makes no third', async () => {
    let now = T0;
    const store = new MemoryStore();
    const ipam = new Ipam({ store, node: 'node1', clock: { now: () => now } });
    await ipam.start();
    const objs = new ObjectService(store, ipam, () => now);
    await objs.apply([ovnDefault, vip('r', { pool: 'ovn-default' })]);
    const deps = { store, state: ipam.state, clock: { now: () => now } };
    const index = vipClaimIndex(ipam.state);
    const first = claimsOfVip(ipam.state, 'r')[0];
    assert.ok(first);
    // A second claim of the same VIP, made later elsewhere.
    now += 1000;
    const second = await allocateVip(deps, vip('r', { pool: 'ovn-default', v4ip: '10.16.0.150' }));
    assert.equal(second.claims[0]?.claim.spec.ip, '10.16.0.150');
    assert.equal(second.stale[0]?.key, first.key);
    // Without dropping the stale one, a dynamic re-allocation keeps the oldest and calls the other stale.
    const stale = await allocateVip(deps, vip('r', { pool: 'ovn-default' }), index);
    assert.equal(stale.made.length, 0, 'no new claim from a stale index');
    assert.equal(stale.claims[0]?.key, first.key);
    // A fresh look (the next pass) finds the later one stale.
    const again = await allocateVip(deps, vip('r', { pool: 'ovn-default' }));
    assert.equal(again.made.length, 0);
    assert.equal(again.claims[0]?.key, first.key);
    assert.equal(again.stale[0]?.claim.spec.ip, '10.16.0.150');
    await dropClaims(deps, again.stale);
    assert.deepEqual(
      claimsOfVip(ipam.state, 'r').map((h) => h.key),
      [first.key],
    );
  });
});
