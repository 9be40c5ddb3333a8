import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IpamError } from '../errors.ts';
import { MemoryStore } from '../store/memory.ts';
import { API_VERSION } from '../api/kinds.ts';
import { toCniResult } from '../cni/result.ts';
import type { IpamResult } from '../cni/protocol.ts';
import { MemoryClusterView } from './cluster-view.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import {
  defaultRouteNic,
  endpointRouting,
  interfaceRouting,
  routeTable,
  type RoutingInput,
} from './routing.ts';

describe('routing: table numbers', () => {
  const cases: { ifName: string; table: number }[] = [
    { ifName: 'net1', table: 100 },
    { ifName: 'net2', table: 101 },
    { ifName: 'net153', table: 252 },
    { ifName: 'eth0', table: 1000 },
    { ifName: 'eth1', table: 1001 },
  ];
  for (const c of cases) it(`${c.ifName} -> ${c.table}`, () => assert.equal(routeTable(c.ifName), c.table));

  it('never a kernel table (253 default, 254 main, 255 local), and stable', () => {
    for (const n of ['net0', 'net154', 'net999', 'net01', 'storage', 'eth01', 'data1', 'a', 'x'.repeat(15)]) {
      const t = routeTable(n);
      assert.ok(t >= 100 && ![253, 254, 255].includes(t), `${n} -> ${t}`);
      assert.ok(t >= 20000 && t < 60000, `${n} hashes into 20000..59999, got ${t}`);
      assert.equal(routeTable(n), t);
    }
  });
});

describe('routing: the default-route NIC', () => {
  const cases: { name: string; ann?: Record<string, string>; override?: string; want: string }[] = [
    { name: 'eth0 when nothing says otherwise', want: 'eth0' },
    { name: 'ipkeeper.io annotation', ann: { 'ipkeeper.io/default-route-nic': 'net1' }, want: 'net1' },
    { name: 'Spiderpool alias', ann: { 'ipam.spidernet.io/default-route-nic': 'net2' }, want: 'net2' },
    {
      name: 'ipkeeper.io wins over the alias',
      ann: { 'ipkeeper.io/default-route-nic': 'net1', 'ipam.spidernet.io/default-route-nic': 'net2' },
      want: 'net1',
    },
    {
      name: "the request's own wins",
      ann: { 'ipkeeper.io/default-route-nic': 'net1' },
      override: 'eth0',
      want: 'eth0',
    },
  ];
  for (const c of cases) it(c.name, () => assert.equal(defaultRouteNic(c.ann, c.override), c.want));

  for (const bad of ['', 'net/1', 'a b', 'x'.repeat(16), '..']) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      assert.throws(
        () => defaultRouteNic({ 'ipkeeper.io/default-route-nic': bad }),
        (e: unknown) =>
          e instanceof IpamError &&
          e.code === 'INVALID_OBJECT' &&
          /ipkeeper\.io\/default-route-nic: .* is not an interface name; write/.test(e.message),
      );
    });
  }
});

describe('routing: per-interface routes', () => {
  const eth0v4 = { ip: '10.6.0.5', bits: 24, gateway: '10.6.0.1', routes: [{ dst: '172.16.0.0/16' }] };
  const net1v4 = {
    ip: '10.7.0.5',
    bits: 24,
    gateway: '10.7.0.1',
    routes: [{ dst: '10.70.0.0/16', gw: '10.7.0.254' }],
  };
  const net1v6 = { ip: 'fd00:7::5', bits: 64, gateway: 'fd00:7::1' };
  const cases: { name: string; in: RoutingInput; want: ReturnType<typeof interfaceRouting> }[] = [
    {
      name: 'default NIC: pool routes and the default route in main, no table',
      in: { ifName: 'eth0', defaultRouteNic: 'eth0', addresses: [eth0v4] },
      want: {
        routes: [
          { dst: '172.16.0.0/16', gw: '10.6.0.1' },
          { dst: '0.0.0.0/0', gw: '10.6.0.1' },
        ],
        tableRoutes: [],
        rules: [],
      },
    },
    {
      name: 'other NIC, dual stack: pool routes in main; subnet, default and pool routes in its table; one rule per address',
      in: { ifName: 'net1', defaultRouteNic: 'eth0', addresses: [net1v4, net1v6] },
      want: {
        routes: [{ dst: '10.70.0.0/16', gw: '10.7.0.254' }],
        table: 100,
        tableRoutes: [
          { dst: '10.7.0.0/24', table: 100 },
          { dst: '0.0.0.0/0', gw: '10.7.0.1', table: 100 },
          { dst: '10.70.0.0/16', gw: '10.7.0.254', table: 100 },
          { dst: 'fd00:7::/64', table: 100 },
          { dst: '::/0', gw: 'fd00:7::1', table: 100 },
        ],
        rules: [
          { from: '10.7.0.5/32', table: 100 },
          { from: 'fd00:7::5/128', table: 100 },
        ],
      },
    },
    {
      name: 'default moved to net1: eth0 gets table 1000, net1 the main default route',
      in: {
        ifName: 'eth0',
        defaultRouteNic: 'net1',
        addresses: [{ ip: '10.6.0.5', bits: 24, gateway: '10.6.0.1' }],
      },
      want: {
        routes: [],
        table: 1000,
        tableRoutes: [
          { dst: '10.6.0.0/24', table: 1000 },
          { dst: '0.0.0.0/0', gw: '10.6.0.1', table: 1000 },
        ],
        rules: [{ from: '10.6.0.5/32', table: 1000 }],
      },
    },
    {
      name: 'a /32 pool without gateway: no subnet route, no default, still a rule',
      in: { ifName: 'net2', defaultRouteNic: 'eth0', addresses: [{ ip: '10.9.9.9', bits: 32 }] },
      want: { routes: [], table: 101, tableRoutes: [], rules: [{ from: '10.9.9.9/32', table: 101 }] },
    },
    {
      name: 'a pool route to 0.0.0.0/0 on the default NIC is not doubled',
      in: {
        ifName: 'eth0',
        defaultRouteNic: 'eth0',
        addresses: [
          { ip: '10.6.0.5', bits: 24, gateway: '10.6.0.1', routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.254' }] },
        ],
      },
      want: { routes: [{ dst: '0.0.0.0/0', gw: '10.6.0.254' }], tableRoutes: [], rules: [] },
    },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(interfaceRouting(c.in), c.want));

  it('the Endpoint gets the table and its routes off the default NIC, the main routes on it', () => {
    const net1 = interfaceRouting({ ifName: 'net1', defaultRouteNic: 'eth0', addresses: [net1v4] });
    assert.deepEqual(endpointRouting(net1), {
      table: 100,
      routes: [
        { dst: '10.7.0.0/24' },
        { dst: '0.0.0.0/0', gw: '10.7.0.1' },
        { dst: '10.70.0.0/16', gw: '10.7.0.254' },
      ],
    });
    const eth0 = interfaceRouting({ ifName: 'eth0', defaultRouteNic: 'eth0', addresses: [eth0v4] });
    assert.deepEqual(endpointRouting(eth0), { routes: eth0.routes });
  });
});

describe('cni result: table routes only where the version can say so', () => {
  const ipam: IpamResult = {
    ips: [{ address: '10.7.0.5/24', gateway: '10.7.0.1', pool: 'p' }],
    routes: [
      { dst: '10.70.0.0/16', gw: '10.7.0.254' },
      { dst: '0.0.0.0/0', gw: '10.7.0.1', table: 100 },
      { dst: '10.70.0.0/16', gw: '10.7.0.254', table: 100 },
    ],
  };
  const cases: { v: '0.3.1' | '0.4.0' | '1.0.0' | '1.1.0'; routes: unknown[] }[] = [
    { v: '0.3.1', routes: [{ dst: '10.70.0.0/16', gw: '10.7.0.254' }] },
    { v: '0.4.0', routes: [{ dst: '10.70.0.0/16', gw: '10.7.0.254' }] },
    { v: '1.0.0', routes: [{ dst: '10.70.0.0/16', gw: '10.7.0.254' }] },
    {
      v: '1.1.0',
      routes: [
        { dst: '10.70.0.0/16', gw: '10.7.0.254' },
        { dst: '0.0.0.0/0', gw: '10.7.0.1', table: 100 },
        { dst: '10.70.0.0/16', gw: '10.7.0.254', table: 100 },
      ],
    },
  ];
  for (const c of cases) {
    it(`${c.v}: ${c.routes.length} routes`, () => {
      const r = toCniResult(ipam, c.v);
      assert.deepEqual(r.routes, c.routes);
      // No older result carries a field its version does not define.
      if (c.v !== '1.1.0') assert.ok(!JSON.stringify(r).includes('"table"'));
    });
  }
});

// ---- through the engine -----------------------------------------------------------------------------

describe('engine: multi-NIC results', () => {
  async function setup() {
    const store = new MemoryStore();
    const view = new MemoryClusterView(true);
    const ipam = new Ipam({ store, node: 'node1', view, clock: { now: () => 0 } });
    await ipam.start();
    await new ObjectService(store, ipam, () => 0).apply([
      {
        apiVersion: API_VERSION,
        kind: 'IPPool',
        metadata: { name: 'eth0-v4' },
        spec: { subnet: '10.6.0.0/24', gateway: '10.6.0.1' },
      },
      {
        apiVersion: API_VERSION,
        kind: 'IPPool',
        metadata: { name: 'net1-v4' },
        spec: { subnet: '10.7.0.0/24', gateway: '10.7.0.1' },
      },
      {
        apiVersion: API_VERSION,
        kind: 'IPPool',
        metadata: { name: 'net1-v6' },
        spec: { subnet: 'fd00:7::/64', gateway: 'fd00:7::1' },
      },
    ]);
    return { ipam, view };
  }
  const pools =
    '[{"interface":"eth0","ipv4":["eth0-v4"]},{"interface":"net1","ipv4":["net1-v4"],"ipv6":["net1-v6"]}]';
  const req = (ifName: string, pod: string): AllocateRequest => ({
    cniNetwork: ifName === 'eth0' ? 'eth0-net' : 'net1-net',
    containerId: `sandbox-${pod}`,
    ifName,
    owner: { kind: 'Pod', namespace: 'default', name: pod },
  });

  it('eth0 has the default route; net1 has its own table with its gateway, dual stack', async () => {
    const { ipam, view } = await setup();
    view.setPod({ namespace: 'default', name: 'app', annotations: { 'ipkeeper.io/ippools': pools } });
    const eth0 = await ipam.add(req('eth0', 'app'));
    const net1 = await ipam.add(req('net1', 'app'));
    assert.deepEqual(eth0.routes, [{ dst: '0.0.0.0/0', gw: '10.6.0.1' }]);
    assert.deepEqual(net1.routes, [
      { dst: '0.0.0.0/0', gw: '10.7.0.1', table: 100 },
      { dst: '::/0', gw: 'fd00:7::1', table: 100 },
    ]);
    assert.deepEqual(toCniResult(net1, '1.0.0').routes, [], 'a 1.0.0 result gets no second default route');
  });

  it('ipkeeper.io/default-route-nic: net1 moves the main default route to net1 and eth0 into table 1000', async () => {
    const { ipam, view } = await setup();
    view.setPod({
      namespace: 'default',
      name: 'app2',
      annotations: { 'ipkeeper.io/ippools': pools, 'ipkeeper.io/default-route-nic': 'net1' },
    });
    const eth0 = await ipam.add(req('eth0', 'app2'));
    const net1 = await ipam.add(req('net1', 'app2'));
    assert.deepEqual(eth0.routes, [{ dst: '0.0.0.0/0', gw: '10.6.0.1', table: 1000 }]);
    assert.deepEqual(net1.routes, [
      { dst: '0.0.0.0/0', gw: '10.7.0.1' },
      { dst: '::/0', gw: 'fd00:7::1' },
    ]);
  });

  it('a malformed default-route-nic annotation is refused before any claim is made', async () => {
    const { ipam, view } = await setup();
    view.setPod({
      namespace: 'default',
      name: 'app3',
      annotations: { 'ipkeeper.io/ippools': pools, 'ipkeeper.io/default-route-nic': 'net 1' },
    });
    await assert.rejects(
      ipam.add(req('eth0', 'app3')),
      (e: unknown) => e instanceof IpamError && e.code === 'INVALID_OBJECT',
    );
    assert.equal(
      ipam.usage().reduce((n, p) => n + p.used, 0),
      0,
    );
  });
});
