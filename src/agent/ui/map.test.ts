import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IpamState } from '../../ipam/state.ts';
import { claimName } from '../../ipam/engine.ts';
import { parseAddr } from '../../net/addr.ts';
import type { IPClaim } from '../../api/kinds.ts';
import { buildMap, mapPool, parseAt, CELL_LIMIT, CELL_STATES, BLOCK_COUNT } from './map.ts';

const V = 'ipkeeper.io/v1alpha1';
let rev = 0;

function withPool(state: IpamState, name: string, spec: Record<string, unknown>): void {
  state.put(`ippools/${name}`, { apiVersion: V, kind: 'IPPool', metadata: { name }, spec }, String(++rev));
}
function reserve(state: IpamState, name: string, ips: string[]): void {
  state.put(
    `reservedips/${name}`,
    { apiVersion: V, kind: 'ReservedIP', metadata: { name }, spec: { ips } },
    String(++rev),
  );
}
function hold(
  state: IpamState,
  ip: string,
  pool: string,
  pod = `pod-${ip}`,
  extra: { ownerKind?: string; fixed?: boolean } = {},
): string {
  const a = parseAddr(ip);
  const name = claimName('default', a.family, a.value);
  const claim: IPClaim = {
    apiVersion: V,
    kind: 'IPClaim',
    metadata: { name },
    spec: {
      network: 'default',
      ip,
      family: a.family,
      pool,
      owner: { kind: extra.ownerKind ?? 'Pod', namespace: 'ns', name: pod, uid: 'u-1' },
      ...(extra.fixed ? { fixed: true } : {}),
      cniNetwork: 'net',
      containerId: '0123456789abcdef',
      ifName: 'net1',
      node: 'node-a',
      createdAt: '2026-01-01T00:00:00.000Z',
    },
  };
  state.put(`ipclaims/${name}`, claim, String(++rev));
  return `ipclaims/${name}`;
}
function compiled(state: IpamState, name: string) {
  const e = state.pools.get(name);
  assert.ok(e, `pool ${name}`);
  return e.compiled;
}

describe('pool map: the state of each address', () => {
  const state = new IpamState();
  withPool(state, 'p', { subnet: '10.0.0.0/28', gateway: '10.0.0.1', excludeIPs: ['10.0.0.13-10.0.0.14'] });
  reserve(state, 'r', ['10.0.0.5', '10.0.0.13']);
  const key = hold(state, '10.0.0.2', 'p', 'web-0');
  hold(state, '10.0.0.5', 'p', 'squatter');
  const m = mapPool(state, compiled(state, 'p'));
  const cell = (ip: string) => m.cells.find((c) => c.ip === ip);

  const cases: { name: string; ip: string; state: string; why?: RegExp }[] = [
    { name: 'the gateway is excluded, and says so', ip: '10.0.0.1', state: 'excluded', why: /gateway/ },
    { name: 'a held address is used', ip: '10.0.0.2', state: 'used' },
    { name: 'the next one is free', ip: '10.0.0.3', state: 'free' },
    {
      name: 'a held reserved address is a conflict',
      ip: '10.0.0.5',
      state: 'conflict',
      why: /reserved by ReservedIP "r"/,
    },
    { name: 'first excluded address', ip: '10.0.0.13', state: 'excluded', why: /excludeIPs/ },
    { name: 'last excluded address', ip: '10.0.0.14', state: 'excluded', why: /excludeIPs/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const x = cell(c.ip);
      assert.ok(x, `${c.ip} shown`);
      assert.equal(x.state, c.state);
      if (c.why) assert.match(x.why ?? '', c.why);
    });
  }

  it("shows the network and broadcast addresses not at all (they are not the pool's)", () => {
    assert.equal(cell('10.0.0.0'), undefined);
    assert.equal(cell('10.0.0.15'), undefined);
    assert.equal(m.cells.length, 14);
  });

  it('names the holder of a used address: pod, container, interface, node, claim and version', () => {
    const h = cell('10.0.0.2')?.holder;
    assert.equal(h?.owner, 'Pod ns/web-0');
    assert.equal(h?.containerId, '0123456789abcdef');
    assert.equal(h?.ifName, 'net1');
    assert.equal(h?.node, 'node-a');
    assert.equal(h?.claim, key);
    assert.match(h?.version ?? '', /^\d+$/);
  });

  it('counts like `ipkeeper usage`, plus the excluded addresses', () => {
    // 14 usable − gateway − 2 excluded = 11 allocatable; reserved 10.0.0.5 (10.0.0.13 is excluded anyway).
    assert.deepEqual(
      { ...m.counts },
      { total: '11', used: '2', reserved: '1', free: '9', excluded: '3', claims: 2 },
    );
  });

  it('has a legend entry for every state', () => {
    const ids = CELL_STATES.map((s) => s.id);
    for (const c of m.cells) assert.ok(ids.includes(c.state));
    assert.deepEqual(ids, ['free', 'used', 'reserved', 'excluded', 'conflict', 'fixed', 'vip']);
  });

  it('colours a fixed IP (kept for its StatefulSet/VM pod) and a VIP apart from a plain one', () => {
    const s2 = new IpamState();
    withPool(s2, 'q', { subnet: '10.1.0.0/29' });
    hold(s2, '10.1.0.1', 'q', 'plain');
    hold(s2, '10.1.0.2', 'q', 'db-0', { fixed: true });
    hold(s2, '10.1.0.3', 'q', 'vip-1', { ownerKind: 'VIP' });
    const q = mapPool(s2, compiled(s2, 'q'));
    const at = (ip: string) => q.cells.find((c) => c.ip === ip);
    assert.deepEqual(
      ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.4'].map((ip) => [at(ip)?.state, at(ip)?.holder?.name]),
      [
        ['used', 'plain'],
        ['fixed', 'db-0'],
        ['vip', 'vip-1'],
        ['free', undefined],
      ],
    );
    assert.equal(q.counts.used, '3', 'all three are held');
  });
});

describe('pool map: large pools', () => {
  const state = new IpamState();
  withPool(state, 'big', { subnet: '10.8.0.0/16' });
  withPool(state, 'huge', { subnet: 'fd00::/64' });
  hold(state, '10.8.0.1', 'big');
  hold(state, '10.8.200.7', 'big');
  hold(state, 'fd00::ffff:1', 'huge');

  it('shows the first CELL_LIMIT addresses of a /16 and says how many there are', () => {
    const m = mapPool(state, compiled(state, 'big'));
    assert.equal(m.cells.length, CELL_LIMIT);
    assert.deepEqual(m.window, { at: '0', shown: CELL_LIMIT, size: '65534', truncated: true });
    assert.equal(m.cells[0]?.ip, '10.8.0.1');
    assert.equal(m.cells[0]?.state, 'used');
  });

  it('covers the whole pool with blocks whose sizes and counts add up', () => {
    const m = mapPool(state, compiled(state, 'big'));
    assert.equal(m.blocks?.length, BLOCK_COUNT);
    const sum = (k: 'size' | 'used') => m.blocks!.reduce((a, b) => a + BigInt(b[k]), 0n);
    assert.equal(sum('size'), 65534n);
    assert.equal(sum('used'), 2n);
    assert.equal(m.blocks![0]?.first, '10.8.0.1');
    assert.equal(m.blocks![BLOCK_COUNT - 1]?.last, '10.8.255.254');
    const withSecond = m.blocks!.find((b) => b.used === '1' && b.first !== '10.8.0.1');
    assert.ok(withSecond, 'the block holding 10.8.200.7 counts it');
  });

  it('moves the window to a block and clamps a window past the end to the last page', () => {
    const at = mapPool(state, compiled(state, 'big'), 51_000n);
    assert.equal(at.cells[0]?.ip, '10.8.199.57'); // index 51000 = 10.8.0.1 + 51000
    const end = mapPool(state, compiled(state, 'big'), 10n ** 9n);
    assert.equal(end.window.at, String(63n * 1024n)); // 65,534 addresses: the last page starts at 64,512
    assert.equal(end.cells.at(-1)?.ip, '10.8.255.254');
  });

  it('maps a /64 with exact counts past 2^53', () => {
    const m = mapPool(state, compiled(state, 'huge'));
    assert.equal(m.window.size, String((1n << 64n) - 1n));
    assert.equal(m.counts.used, '1');
    assert.equal(m.counts.free, String((1n << 64n) - 2n));
    assert.equal(m.cells.length, CELL_LIMIT);
    assert.equal(
      m.blocks!.reduce((a, b) => a + BigInt(b.used), 0n),
      1n,
    );
  });

  it('sums the totals of every pool on the page', () => {
    const page = buildMap(state, { node: 'n1', store: 'memory', now: () => 0 });
    assert.deepEqual(
      page.pools.map((p) => p.name),
      ['big', 'huge'],
    );
    assert.equal(page.totals.used, '3');
    assert.equal(page.totals.total, String(65534n + (1n << 64n) - 1n));
    assert.equal(page.generatedAt, '1970-01-01T00:00:00.000Z');
  });
});

describe('pool map: window positions from the query', () => {
  const cases: { name: string; q: unknown; want: [string, bigint][] }[] = [
    {
      name: 'two pools',
      q: 'a:0,b.c:1024',
      want: [
        ['a', 0n],
        ['b.c', 1024n],
      ],
    },
    { name: 'missing', q: undefined, want: [] },
    { name: 'negative or junk ignored', q: 'a:-1,b:x,:5,c:7', want: [['c', 7n]] },
    { name: 'an array (repeated parameter) ignored', q: ['a:1'], want: [] },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual([...parseAt(c.q)], c.want));
  }
});
