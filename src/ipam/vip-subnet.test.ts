/**
 * VIPs taken from a Subnet (`spec.subnet` / `spec.ipv6Subnet`, issue #6): an address of the subnet
 * that no IPPool of its network holds, static or dynamic, single or dual stack; the refusals name the
 * field, the value and the holder; the claim names `subnet/<name>` so no pool takes it for its own.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import { API_VERSION, type VIP } from '../api/kinds.ts';
import { Ipam } from './engine.ts';
import { ObjectService } from './objects.ts';
import { allocateVip, claimSubnet, claimsOfVip, SUBNET_CLAIM_PREFIX } from './vip.ts';
import { rejects } from './test-util.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

function obj(kind: string, name: string, spec: Record<string, unknown>) {
  return { apiVersion: API_VERSION, kind, metadata: { name }, spec };
}
const vip = (name: string, spec: Record<string, unknown>): VIP => obj('VIP', name, spec) as VIP;

/** Subnet lb-net: 10.7.0.10-10.7.0.20; IPPool app1 holds 10.7.0.10-10.7.0.12 of it. */
const lbNet = obj('Subnet', 'lb-net', {
  subnet: '10.7.0.0/24',
  ips: ['10.7.0.10-10.7.0.20'],
  gateway: '10.7.0.1',
});
const app1 = obj('IPPool', 'app1', {
  subnet: '10.7.0.0/24',
  ips: ['10.7.0.10-10.7.0.12'],
  gateway: '10.7.0.1',
});
const lbNet6 = obj('Subnet', 'lb-net6', { subnet: 'fd00:7::/64', ips: ['fd00:7::10-fd00:7::20'] });

async function setup(objects: unknown[]) {
  const store = new MemoryStore();
  const clock = { now: () => T0 };
  const ipam = new Ipam({ store, node: 'node1', clock });
  await ipam.start();
  const objs = new ObjectService(store, ipam, clock.now);
  if (objects.length > 0) await objs.apply(objects);
  return { store, ipam, objs, clock };
}

describe('a VIP from a Subnet', () => {
  it('a dynamic one takes the lowest address of the subnet that no pool holds', async () => {
    const { ipam, objs } = await setup([lbNet, app1, vip('lb', { subnet: 'lb-net' })]);
    const v = (await objs.get('VIP', 'lb')) as VIP;
    assert.equal(v.status?.ready, true, v.status?.message);
    assert.equal(v.status?.v4ip, '10.7.0.13');
    const [c] = claimsOfVip(ipam.state, 'lb');
    assert.equal(c?.claim.spec.pool, `${SUBNET_CLAIM_PREFIX}lb-net`);
    assert.equal(c?.claim.spec.network, 'default');
    assert.equal(claimSubnet(c!.claim), 'lb-net');
    // No pool counts it: not app1 (its addresses are untouched), not a pool named like the Subnet.
    const pool = (await objs.get('IPPool', 'app1')) as { status?: { used?: bigint | number } };
    assert.equal(Number(pool.status?.used), 0);
    assert.equal(ipam.state.claimCountOf('lb-net'), 0);
    assert.equal(ipam.state.claimCountOf('app1'), 0);
    // Re-applying is unchanged and keeps the address.
    const r = await objs.apply([vip('lb', { subnet: 'lb-net' })]);
    assert.equal(r[0]?.action, 'unchanged');
    assert.equal(claimsOfVip(ipam.state, 'lb')[0]?.claim.spec.ip, '10.7.0.13');
  });

  it('a second dynamic one skips the first; a Subnet and its VIP may come in one apply', async () => {
    const { objs } = await setup([
      lbNet,
      app1,
      vip('lb1', { subnet: 'lb-net' }),
      vip('lb2', { subnet: 'lb-net' }),
    ]);
    assert.equal(((await objs.get('VIP', 'lb1')) as VIP).status?.v4ip, '10.7.0.13');
    assert.equal(((await objs.get('VIP', 'lb2')) as VIP).status?.v4ip, '10.7.0.14');
  });

  it('a static one takes v4ip when it is in the subnet, in no pool and free', async () => {
    const { objs } = await setup([lbNet, app1, vip('lb', { subnet: 'lb-net', v4ip: '10.7.0.20' })]);
    assert.equal(((await objs.get('VIP', 'lb')) as VIP).status?.v4ip, '10.7.0.20');
  });

  it('refuses a static address inside a pool, held, reserved or outside the subnet, and changes nothing', async () => {
    const { objs, ipam } = await setup([
      lbNet,
      app1,
      obj('ReservedIP', 'keep', { ips: ['10.7.0.15'] }),
      vip('first', { subnet: 'lb-net', v4ip: '10.7.0.16' }),
    ]);
    const cases: [string, string, string, RegExp][] = [
      [
        'in a pool',
        '10.7.0.11',
        'ADDRESS_IN_USE',
        /spec\.v4ip 10\.7\.0\.11 belongs to IPPool "app1".*spec\.pool: app1/,
      ],
      ['held', '10.7.0.16', 'ADDRESS_IN_USE', /spec\.v4ip 10\.7\.0\.16 is held by VIP first/],
      ['reserved', '10.7.0.15', 'ADDRESS_RESERVED', /reserved by ReservedIP "keep"/],
      [
        'outside ips',
        '10.7.0.21',
        'ADDRESS_NOT_IN_POOL',
        /10\.7\.0\.21 is not an address of Subnet "lb-net"/,
      ],
      ['the gateway', '10.7.0.1', 'ADDRESS_NOT_IN_POOL', /Subnet "lb-net"/],
      ['another subnet', '10.8.0.5', 'ADDRESS_NOT_IN_POOL', /Subnet "lb-net" \(10\.7\.0\.0\/24/],
    ];
    for (const [what, ip, code, re] of cases) {
      const before = ipam.state.claims.size;
      const e = await rejects(
        objs.apply([vip(`v-${what.replace(/ /g, '-')}`, { subnet: 'lb-net', v4ip: ip })]),
        code,
        re,
      );
      assert.equal(e.details?.field, 'spec.v4ip', what);
      assert.equal(ipam.state.claims.size, before, `${what}: nothing claimed`);
      await rejects(objs.get('VIP', `v-${what.replace(/ /g, '-')}`), 'NOT_FOUND');
    }
  });

  it('dual stack: spec.subnet (IPv4) and spec.ipv6Subnet, one address each', async () => {
    const { ipam, objs } = await setup([
      lbNet,
      lbNet6,
      app1,
      vip('dual', { subnet: 'lb-net', ipv6Subnet: 'lb-net6', v6ip: 'fd00:7::12' }),
    ]);
    const v = (await objs.get('VIP', 'dual')) as VIP;
    assert.equal(v.status?.ready, true, v.status?.message);
    assert.equal(v.status?.v4ip, '10.7.0.13');
    assert.equal(v.status?.v6ip, 'fd00:7::12');
    assert.deepEqual(
      claimsOfVip(ipam.state, 'dual').map((h) => h.claim.spec.pool),
      ['subnet/lb-net', 'subnet/lb-net6'],
    );
    await rejects(
      objs.apply([vip('dual2', { subnet: 'lb-net6', ipv6Subnet: 'lb-net' })]),
      'INVALID_OBJECT',
      /spec\.ipv6Subnet "lb-net" must be an IPv6 Subnet and spec\.subnet "lb-net6" an IPv4 one/,
    );
    await rejects(
      objs.apply([vip('v6only', { subnet: 'lb-net', v6ip: 'fd00:7::13' })]),
      'ADDRESS_NOT_IN_POOL',
      /add an IPv6 Subnet as spec\.ipv6Subnet/,
    );
  });

  it('neither or both of spec.pool and spec.subnet: INVALID_OBJECT naming both fields', async () => {
    const { objs, ipam } = await setup([lbNet, app1]);
    const neither = await rejects(objs.apply([vip('x', {})]), 'INVALID_OBJECT', /spec\.pool.*spec\.subnet/);
    assert.match(neither.message, /neither spec\.pool nor spec\.subnet/);
    await rejects(
      objs.apply([vip('x', { pool: 'app1', subnet: 'lb-net' })]),
      'INVALID_OBJECT',
      /spec\.pool "app1" and spec\.subnet "lb-net" are both set/,
    );
    await rejects(
      objs.apply([vip('x', { subnet: 'lb-net', ipv6Pool: 'app1' })]),
      'INVALID_OBJECT',
      /spec\.ipv6Pool goes with spec\.pool/,
    );
    await rejects(
      objs.apply([vip('x', { pool: 'app1', ipv6Subnet: 'lb-net' })]),
      'INVALID_OBJECT',
      /spec\.ipv6Subnet goes with spec\.subnet/,
    );
    // Written around validation (a CR without the webhook): the allocation refuses it the same way.
    const deps = { store: new MemoryStore(), state: ipam.state, clock: { now: () => T0 } };
    await rejects(
      allocateVip(deps, vip('y', { pool: 'app1', subnet: 'lb-net' })),
      'INVALID_OBJECT',
      /spec\.pool.*spec\.subnet/,
    );
    await rejects(allocateVip(deps, vip('y', {})), 'INVALID_OBJECT', /neither spec\.pool nor spec\.subnet/);
  });

  it('a Subnet that does not exist is POOL_NOT_FOUND naming spec.subnet', async () => {
    const { objs } = await setup([]);
    await rejects(
      objs.apply([vip('x', { subnet: 'nope' })]),
      'POOL_NOT_FOUND',
      /spec\.subnet "nope" is not a Subnet; create the Subnet/,
    );
  });

  it('a Subnet whose addresses are all in pools is exhausted, and says so', async () => {
    const { objs } = await setup([
      obj('Subnet', 'small', { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.12'] }),
      obj('IPPool', 'all', { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.11'] }),
      vip('a', { subnet: 'small' }),
    ]);
    assert.equal(((await objs.get('VIP', 'a')) as VIP).status?.v4ip, '10.9.0.12');
    await rejects(
      objs.apply([vip('b', { subnet: 'small' })]),
      'POOL_EXHAUSTED',
      /Subnet "small" has no free address outside its pools \(3 addresses, 2 in IPPools, 0 reserved, 1 in use\)/,
    );
  });

  it("takes the claim in the Subnet's network", async () => {
    const { ipam } = await setup([
      obj('Subnet', 'other', { subnet: '10.7.0.0/24', ips: ['10.7.0.10-10.7.0.20'], network: 'blue' }),
      app1, // network default: does not hold addresses of network blue
      vip('b', { subnet: 'other' }),
    ]);
    const [c] = claimsOfVip(ipam.state, 'b');
    assert.equal(c?.claim.spec.network, 'blue');
    assert.equal(c?.claim.spec.ip, '10.7.0.10');
    assert.equal(c?.key, 'ipclaims/blue.10.7.0.10');
  });

  it('deleting the VIP releases its address, which the next VIP may take', async () => {
    const { ipam, objs } = await setup([lbNet, app1, vip('lb', { subnet: 'lb-net' })]);
    assert.equal(claimsOfVip(ipam.state, 'lb').length, 1);
    await objs.delete('VIP', 'lb');
    assert.equal(claimsOfVip(ipam.state, 'lb').length, 0);
    assert.equal(ipam.state.claims.has('ipclaims/default.10.7.0.13'), false);
    await objs.apply([vip('lb2', { subnet: 'lb-net', v4ip: '10.7.0.13' })]);
    assert.equal(claimsOfVip(ipam.state, 'lb2')[0]?.claim.spec.ip, '10.7.0.13');
  });

  it('a pool VIP and a Subnet VIP never share an address (one claim per network and address)', async () => {
    const { objs } = await setup([
      lbNet,
      obj('IPPool', 'outside', { subnet: '10.7.0.0/24', ips: ['10.7.0.30-10.7.0.31'] }),
      vip('from-pool', { pool: 'outside', v4ip: '10.7.0.30' }),
    ]);
    // 10.7.0.30 is outside the Subnet's ips; a Subnet with wider ips still finds it held.
    await objs.apply([obj('Subnet', 'wide', { subnet: '10.7.0.0/24', ips: ['10.7.0.25-10.7.0.35'] })]);
    await rejects(
      objs.apply([vip('s', { subnet: 'wide', v4ip: '10.7.0.30' })]),
      'ADDRESS_IN_USE',
      /is held by VIP from-pool/,
    );
    await objs.apply([vip('s', { subnet: 'wide' })]);
    assert.equal(((await objs.get('VIP', 's')) as VIP).status?.v4ip, '10.7.0.25');
  });

  it("a pod using a VIP from a Subnet as its address gets the subnet's prefix and gateway", async () => {
    const { ipam, store } = await setup([lbNet, app1, vip('own', { subnet: 'lb-net', v4ip: '10.7.0.15' })]);
    const r = await ipam.add({
      cniNetwork: 'net1',
      containerId: 'c-own',
      ifName: 'eth0',
      owner: { kind: 'Pod', namespace: 'default', name: 'p-own', uid: 'u-own' },
      vip: 'own',
    });
    assert.deepEqual(
      r.ips.map((i) => [i.address, i.gateway]),
      [['10.7.0.15/24', '10.7.0.1']],
    );
    // The Subnet gone: the address alone, as for a pool that no longer exists.
    const sub = await store.get('subnets/lb-net');
    assert.ok(sub);
    assert.equal((await store.delete('subnets/lb-net', sub.version)).ok, true);
    const again = await ipam.add({
      cniNetwork: 'net1',
      containerId: 'c-own',
      ifName: 'eth0',
      owner: { kind: 'Pod', namespace: 'default', name: 'p-own', uid: 'u-own' },
      vip: 'own',
    });
    assert.deepEqual(
      again.ips.map((i) => i.address),
      ['10.7.0.15/32'],
    );
  });
});
