import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Family } from './addr.ts';
import { NetError, maxValue } from './addr.ts';
import { IntervalSet } from './interval-set.ts';
import { parsePrefix } from './prefix.ts';

const v4 = (items: string[]): IntervalSet => IntervalSet.parse(4, items);

test('of: canonical runs from any order, overlaps and adjacency merged', () => {
  const cases: { name: string; items: string[]; want: string[] }[] = [
    { name: 'empty', items: [], want: [] },
    { name: 'single', items: ['10.0.0.1'], want: ['10.0.0.1'] },
    {
      name: 'adjacent singles merge',
      items: ['10.0.0.2', '10.0.0.1', '10.0.0.3'],
      want: ['10.0.0.1-10.0.0.3'],
    },
    {
      name: 'byte carry merges',
      items: ['10.0.0.250-10.0.0.255', '10.0.1.0-10.0.1.5'],
      want: ['10.0.0.250-10.0.1.5'],
    },
    { name: 'overlap', items: ['10.0.0.1-10.0.0.9', '10.0.0.5-10.0.0.20'], want: ['10.0.0.1-10.0.0.20'] },
    { name: 'contained', items: ['10.0.0.0/24', '10.0.0.7-10.0.0.9'], want: ['10.0.0.0-10.0.0.255'] },
    { name: 'gap of one stays', items: ['10.0.0.1', '10.0.0.3'], want: ['10.0.0.1', '10.0.0.3'] },
    { name: 'whole family', items: ['0.0.0.0/1', '128.0.0.0/1'], want: ['0.0.0.0-255.255.255.255'] },
    { name: 'duplicates', items: ['10.0.0.1', '10.0.0.1'], want: ['10.0.0.1'] },
  ];
  for (const c of cases) assert.deepEqual(v4(c.items).toStrings(), c.want, c.name);
  assert.deepEqual(IntervalSet.parse(6, ['fd00::10-fd00::20', 'fd00::21']).toStrings(), [
    'fd00::10-fd00::21',
  ]);
});

test('errors: other family, reversed, out of range', () => {
  assert.throws(
    () => IntervalSet.parse(4, ['10.0.0.1', 'fd00::1']),
    (e: unknown) => e instanceof NetError && /"fd00::1" is IPv6, but this list holds IPv4/.test(e.message),
  );
  assert.throws(() => IntervalSet.parse(6, ['10.0.0.1']), /"10\.0\.0\.1" is IPv4, but this list holds IPv6/);
  assert.throws(() => IntervalSet.parse(4, ['10.0.0.9-10.0.0.1']), /reversed/);
  assert.throws(() => IntervalSet.of(4, [{ first: 5n, last: 4n }]), /reversed/);
  assert.throws(() => IntervalSet.of(4, [{ first: 0n, last: maxValue(4) + 1n }]), /not an IPv4 address/);
  assert.throws(() => IntervalSet.of(4, [{ first: -1n, last: 0n }]), /not an IPv4 address/);
  const a = IntervalSet.empty(4);
  const b = IntervalSet.empty(6);
  assert.throws(() => a.union(b), NetError);
  assert.throws(() => a.difference(b), NetError);
  assert.throws(() => a.intersect(b), NetError);
  assert.equal(a.equals(b), false);
});

test('boundaries: /0, /32, /128, first and last address', () => {
  const all4 = IntervalSet.fromPrefix(parsePrefix('0.0.0.0/0'));
  assert.equal(all4.size(), 1n << 32n);
  assert.equal(all4.nth(0n), 0n);
  assert.equal(all4.nth((1n << 32n) - 1n), maxValue(4));
  assert.equal(all4.nth(1n << 32n), undefined);
  assert.equal(all4.indexOf(maxValue(4)), maxValue(4));
  assert.equal(all4.contains(maxValue(4)), true);
  assert.equal(all4.ceil(maxValue(4) + 1n), undefined);

  const all6 = IntervalSet.fromPrefix(parsePrefix('::/0'));
  assert.equal(all6.size(), 1n << 128n);
  assert.equal(all6.nth(maxValue(6)), maxValue(6));
  const top = IntervalSet.parse(6, ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128']);
  assert.deepEqual(all6.difference(top).toStrings(), ['::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe']);
  assert.equal(all6.difference(top).union(top).equals(all6), true);

  const p32 = v4(['10.0.0.255/32']);
  assert.equal(p32.size(), 1n);
  assert.deepEqual(v4(['10.0.0.0/24']).difference(p32).toStrings(), ['10.0.0.0-10.0.0.254']);
  assert.deepEqual(
    v4(['10.0.0.254/31'])
      .difference(v4(['10.0.0.254']))
      .toStrings(),
    ['10.0.0.255'],
  );

  // A /64 pool minus a few exclusions costs a handful of runs, not 2^64 of anything.
  const pool = IntervalSet.parse(6, ['fd00::/64']).difference(
    IntervalSet.parse(6, ['fd00::', 'fd00::1', 'fd00::ffff:ffff:ffff:ffff']),
  );
  assert.equal(pool.size(), (1n << 64n) - 3n);
  assert.deepEqual(pool.toStrings(), ['fd00::2-fd00::ffff:ffff:ffff:fffe']);
  assert.equal(pool.nth(0n), pool.min());
  assert.equal(pool.indexOf(pool.max()!), pool.size() - 1n);
});

test('pool arithmetic from the seeds: ranges minus excludeIPs minus reservations', () => {
  const ranges = v4(['10.6.168.131-10.6.168.133', '10.6.168.140-10.6.168.150']);
  const exclude = v4(['10.6.168.141', '10.6.168.145-10.6.168.200']);
  const reserved = v4(['10.6.168.132']);
  const allowed = ranges.difference(exclude).difference(reserved);
  assert.deepEqual(allowed.toStrings(), [
    '10.6.168.131',
    '10.6.168.133',
    '10.6.168.140',
    '10.6.168.142-10.6.168.144',
  ]);
  assert.equal(allowed.size(), 6n);
  assert.equal(allowed.toString(), '10.6.168.131,10.6.168.133,10.6.168.140,10.6.168.142-10.6.168.144');
  assert.equal(allowed.isSubsetOf(ranges), true);
  assert.equal(ranges.isSubsetOf(allowed), false);
  assert.equal(allowed.overlaps(reserved), false);
  assert.equal(ranges.overlaps(reserved), true);
});

// ---- against a naive model on a small universe (64 addresses, at the bottom or top of a family) ----

const U = 64;

interface Universe {
  family: Family;
  base: bigint;
}
const universe: fc.Arbitrary<Universe> = fc.constantFrom<Universe>(
  { family: 4, base: 0n },
  { family: 4, base: maxValue(4) - BigInt(U - 1) },
  { family: 6, base: maxValue(6) - BigInt(U - 1) },
);
const offsets = fc.array(fc.tuple(fc.nat(U - 1), fc.nat(7)), { maxLength: 12 });

function build(u: Universe, rs: [number, number][]): { set: IntervalSet; model: boolean[] } {
  const model = new Array<boolean>(U).fill(false);
  const ranges = rs.map(([start, len]) => {
    const end = Math.min(U - 1, start + len);
    for (let k = start; k <= end; k++) model[k] = true;
    return { first: u.base + BigInt(start), last: u.base + BigInt(end) };
  });
  return { set: IntervalSet.of(u.family, ranges), model };
}

function modelRuns(u: Universe, m: boolean[]): { first: bigint; last: bigint }[] {
  const out: { first: bigint; last: bigint }[] = [];
  for (let k = 0; k < U; k++) {
    if (!m[k]) continue;
    let j = k;
    while (j + 1 < U && m[j + 1]) j++;
    out.push({ first: u.base + BigInt(k), last: u.base + BigInt(j) });
    k = j;
  }
  return out;
}

function checkAgainst(u: Universe, set: IntervalSet, m: boolean[]): void {
  assert.deepEqual(set.runs(), modelRuns(u, m), 'canonical runs');
  const members = m.flatMap((x, k) => (x ? [u.base + BigInt(k)] : []));
  assert.equal(set.size(), BigInt(members.length));
  assert.equal(set.isEmpty(), members.length === 0);
  assert.equal(set.min(), members[0]);
  assert.equal(set.max(), members.at(-1));
  for (let k = 0; k < U; k++) {
    const v = u.base + BigInt(k);
    assert.equal(set.contains(v), m[k], `contains ${k}`);
    assert.equal(set.indexOf(v), m[k] ? BigInt(members.indexOf(v)) : undefined, `indexOf ${k}`);
    assert.equal(
      set.ceil(v),
      members.find((x) => x >= v),
      `ceil ${k}`,
    );
    assert.equal(
      set.floor(v),
      members.findLast((x) => x <= v),
      `floor ${k}`,
    );
  }
  for (let i = 0; i <= members.length; i++) assert.equal(set.nth(BigInt(i)), members[i], `nth ${i}`);
  assert.equal(set.nth(-1n), undefined);
  assert.equal(set.contains(u.base - 1n), false);
}

test('algebra matches a naive model: union, difference, intersect, size, nth, indexOf, contains', () => {
  fc.assert(
    fc.property(universe, offsets, offsets, (u, ra, rb) => {
      const a = build(u, ra);
      const b = build(u, rb);
      checkAgainst(u, a.set, a.model);
      checkAgainst(
        u,
        a.set.union(b.set),
        a.model.map((x, k) => x || b.model[k]!),
      );
      checkAgainst(
        u,
        a.set.difference(b.set),
        a.model.map((x, k) => x && !b.model[k]!),
      );
      checkAgainst(
        u,
        a.set.intersect(b.set),
        a.model.map((x, k) => x && b.model[k]!),
      );
      const sameMembers = a.model.every((x, k) => x === b.model[k]);
      assert.equal(a.set.equals(b.set), sameMembers);
      assert.equal(
        a.set.isSubsetOf(b.set),
        a.model.every((x, k) => !x || b.model[k]),
      );
      assert.equal(
        a.set.overlaps(b.set),
        a.model.some((x, k) => x && b.model[k]),
      );
      assert.deepEqual(
        IntervalSet.parse(u.family, a.set.toStrings()).runs(),
        a.set.runs(),
        'toStrings round trip',
      );
    }),
    { numRuns: 300 },
  );
});
