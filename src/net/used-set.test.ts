import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NetError, maxValue, parseAddr } from './addr.ts';
import { IntervalSet } from './interval-set.ts';
import { UsedSet, nextFree } from './used-set.ts';

const ip = (s: string): bigint => parseAddr(s).value;

test('add / delete / has: run splitting and joining', () => {
  const u = new UsedSet(4);
  assert.equal(u.add(ip('10.0.0.1')), true);
  assert.equal(u.add(ip('10.0.0.1')), false, 'double add');
  assert.equal(u.add(ip('10.0.0.3')), true);
  assert.deepEqual([...u.runs()].length, 2);
  assert.equal(u.add(ip('10.0.0.2')), true, 'fills the gap');
  assert.deepEqual(u.toIntervalSet().toStrings(), ['10.0.0.1-10.0.0.3']);
  assert.equal(u.runCount, 1);
  assert.equal(u.delete(ip('10.0.0.2')), true, 'splits the run');
  assert.equal(u.delete(ip('10.0.0.2')), false, 'double release');
  assert.deepEqual(u.toIntervalSet().toStrings(), ['10.0.0.1', '10.0.0.3']);
  assert.equal(u.count, 2);
  assert.equal(u.has(ip('10.0.0.3')), true);
  assert.equal(u.has(ip('10.0.0.2')), false);
  assert.equal(u.delete(ip('9.0.0.0')), false, 'below every run');
  assert.deepEqual([...u.values()], [ip('10.0.0.1'), ip('10.0.0.3')]);
  assert.equal(u.describe(), '2 used in 2 runs: 10.0.0.1,10.0.0.3');
});

test('add: rejects values outside the family', () => {
  const u = new UsedSet(4);
  assert.throws(
    () => u.add(maxValue(4) + 1n),
    (e: unknown) => e instanceof NetError && /not an IPv4 address/.test(e.message),
  );
  assert.throws(() => u.add(-1n), NetError);
  assert.equal(u.add(maxValue(4)), true, 'last address');
  assert.equal(u.add(0n), true, 'first address');
  assert.equal(u.nextUnused(maxValue(4)), maxValue(4) + 1n, 'past the top: nothing free');
  assert.throws(() => new UsedSet(5 as 4), /family 5/);
});

test('nextFree: table', () => {
  const pool = (items: string[]) => IntervalSet.parse(4, items);
  const used = (items: string[]) => UsedSet.of(4, IntervalSet.parse(4, items).runs());
  const cases: { name: string; allowed: string[]; used: string[]; from: string; want: string | undefined }[] =
    [
      { name: 'empty pool', allowed: [], used: [], from: '10.0.0.1', want: undefined },
      { name: 'first free', allowed: ['10.0.0.1-10.0.0.5'], used: [], from: '10.0.0.1', want: '10.0.0.1' },
      { name: 'from inside', allowed: ['10.0.0.1-10.0.0.5'], used: [], from: '10.0.0.3', want: '10.0.0.3' },
      {
        name: 'skips a used run',
        allowed: ['10.0.0.1-10.0.0.5'],
        used: ['10.0.0.1-10.0.0.3'],
        from: '10.0.0.1',
        want: '10.0.0.4',
      },
      {
        name: 'wraps around',
        allowed: ['10.0.0.1-10.0.0.5'],
        used: ['10.0.0.3-10.0.0.5'],
        from: '10.0.0.4',
        want: '10.0.0.1',
      },
      {
        name: 'wrap finds one below from',
        allowed: ['10.0.0.1-10.0.0.5'],
        used: ['10.0.0.1', '10.0.0.3-10.0.0.5'],
        from: '10.0.0.3',
        want: '10.0.0.2',
      },
      {
        name: 'full',
        allowed: ['10.0.0.1-10.0.0.5'],
        used: ['10.0.0.0/24'],
        from: '10.0.0.3',
        want: undefined,
      },
      {
        name: 'from below the pool',
        allowed: ['10.0.0.10-10.0.0.20'],
        used: ['10.0.0.10'],
        from: '0.0.0.0',
        want: '10.0.0.11',
      },
      {
        name: 'from above the pool wraps',
        allowed: ['10.0.0.10-10.0.0.20'],
        used: ['10.0.0.10'],
        from: '255.255.255.255',
        want: '10.0.0.11',
      },
      {
        name: 'from in a pool gap',
        allowed: ['10.0.0.1-10.0.0.2', '10.0.0.8-10.0.0.9'],
        used: [],
        from: '10.0.0.5',
        want: '10.0.0.8',
      },
      {
        name: 'used run spans a pool gap',
        allowed: ['10.0.0.1-10.0.0.2', '10.0.0.8-10.0.0.9'],
        used: ['10.0.0.1-10.0.0.8'],
        from: '10.0.0.1',
        want: '10.0.0.9',
      },
      {
        name: 'byte carry',
        allowed: ['10.0.0.250-10.0.1.5'],
        used: ['10.0.0.250-10.0.0.255'],
        from: '10.0.0.250',
        want: '10.0.1.0',
      },
      {
        name: '/31 both usable',
        allowed: ['10.0.0.254/31'],
        used: ['10.0.0.254'],
        from: '10.0.0.254',
        want: '10.0.0.255',
      },
      { name: '/32 taken', allowed: ['10.0.0.9/32'], used: ['10.0.0.9'], from: '10.0.0.9', want: undefined },
      { name: '/32 free', allowed: ['10.0.0.9/32'], used: [], from: '10.0.0.10', want: '10.0.0.9' },
      {
        name: 'top of the family',
        allowed: ['255.255.255.254/31'],
        used: ['255.255.255.254'],
        from: '255.255.255.255',
        want: '255.255.255.255',
      },
      {
        name: 'top used, wraps to 0',
        allowed: ['0.0.0.0/0'],
        used: ['255.255.255.0/24'],
        from: '255.255.255.1',
        want: '0.0.0.0',
      },
    ];
  for (const c of cases) {
    const got = nextFree(pool(c.allowed), used(c.used), ip(c.from));
    assert.equal(got, c.want === undefined ? undefined : ip(c.want), c.name);
  }
  assert.equal(nextFree(pool(['10.0.0.1']), used([]), -5n), ip('10.0.0.1'), 'negative from');
});

test('nextFree: IPv6 /127 and /128', () => {
  const p127 = IntervalSet.parse(6, ['fd00::/127']);
  const u = new UsedSet(6);
  assert.equal(nextFree(p127, u, ip('fd00::')), ip('fd00::'));
  u.add(ip('fd00::'));
  assert.equal(nextFree(p127, u, ip('fd00::')), ip('fd00::1'));
  u.add(ip('fd00::1'));
  assert.equal(nextFree(p127, u, ip('fd00::')), undefined);
  const top = IntervalSet.parse(6, ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128']);
  const ut = new UsedSet(6);
  assert.equal(nextFree(top, ut, 0n), maxValue(6));
  ut.add(maxValue(6));
  assert.equal(nextFree(top, ut, 0n), undefined);
});

test('nextFree: a run of used addresses is skipped whole, however long', () => {
  // 2^63 consecutive used addresses in a /64: a per-address walk would never return.
  const base = ip('fd00::');
  const allowed = IntervalSet.parse(6, ['fd00::/64']);
  const used = UsedSet.of(6, [{ first: base, last: base + (1n << 63n) }]);
  assert.equal(nextFree(allowed, used, base), base + (1n << 63n) + 1n);
  assert.equal(used.countIn(allowed), (1n << 63n) + 1n);
  // The hot case: a /16 with 59,000 consecutive claims, added one by one, searched from the start.
  const p16 = IntervalSet.parse(4, ['10.6.0.0/16']);
  const u16 = new UsedSet(4);
  const start = ip('10.6.0.0');
  for (let k = 0n; k < 59_000n; k++) u16.add(start + k);
  assert.equal(u16.runCount, 1);
  assert.equal(nextFree(p16, u16, start), start + 59_000n);
});

test('nextFree: family mismatch is an error', () => {
  assert.throws(() => nextFree(IntervalSet.empty(4), new UsedSet(6), 0n), /IPv4 pool with an IPv6 used set/);
  assert.throws(() => new UsedSet(4).countIn(IntervalSet.empty(6)), NetError);
});

test('representation: doubles near the first address, bigints beyond 2^52 of it, doubles again once empty', () => {
  const v4 = new UsedSet(4);
  v4.add(0n);
  v4.add(maxValue(4));
  assert.equal(v4.representation, 'number', 'IPv4 always fits');
  assert.equal(v4.nextUnused(maxValue(4)), maxValue(4) + 1n);

  const u = new UsedSet(6);
  const a = ip('fd00::1');
  const near = a + (1n << 52n) - 1n;
  const far = a + (1n << 52n);
  u.add(a);
  u.add(near);
  u.add(a - ((1n << 52n) - 1n));
  assert.equal(u.representation, 'number', 'within 2^52 - 1 either side');
  assert.equal(u.nextUnused(near), near + 1n);
  assert.equal(u.ceil(a + 1n), near);
  assert.equal(u.ceil(far), undefined, 'beyond the window: nothing stored there');
  assert.equal(u.ceil(0n), a - ((1n << 52n) - 1n), 'below the window: the first member');
  assert.equal(u.nextUnused(far + 5n), far + 5n);
  assert.equal(u.has(far), false);
  assert.equal(u.delete(far), false);
  assert.equal(u.countIn(IntervalSet.parse(6, ['::/0'])), 3n);
  assert.equal(u.add(far), true);
  assert.equal(u.representation, 'bigint');
  assert.deepEqual([...u.values()], [a - ((1n << 52n) - 1n), a, near, far]);
  assert.equal(u.nextUnused(near), far + 1n, 'near and far joined into one run');
  assert.equal(u.countIn(IntervalSet.parse(6, ['::/0'])), 4n);
  assert.equal(u.runCount, 3);
  const low = a - ((1n << 52n) - 1n);
  u.add(low - 1n); // joins the lowest run from below
  u.add(0n); // a new lowest run
  assert.equal(u.runCount, 4);
  assert.equal(u.ceil(1n), low - 1n);
  for (const v of [0n, low - 1n, low, a, near, far]) u.delete(v);
  assert.equal(u.count, 0);
  assert.equal(u.representation, 'number', 'an emptied set starts over');
  u.add(ip('2001:db8::1'));
  assert.equal(u.representation, 'number');
  assert.equal(u.has(ip('2001:db8::1')), true);
  // A bulk load wider than the window goes straight to bigints.
  assert.equal(UsedSet.of(6, [{ first: 0n, last: 1n << 60n }]).representation, 'bigint');
  assert.equal(UsedSet.of(6, [{ first: 5n, last: 6n }]).representation, 'number');
});

// ---- against a naive model ----

/** A naive UsedSet: one boolean per address of a small universe [base, base + n). */
class Model {
  readonly n: number;
  readonly used: boolean[];
  constructor(n: number) {
    this.n = n;
    this.used = new Array<boolean>(n).fill(false);
  }
  nextFree(allowed: boolean[], from: number): number | undefined {
    const ok = (k: number) => allowed[k] && !this.used[k];
    for (let k = Math.max(0, from); k < this.n; k++) if (ok(k)) return k;
    for (let k = 0; k < Math.min(from, this.n); k++) if (ok(k)) return k;
    return undefined;
  }
}

/**
 * A set under test: addresses `base + k` for the model's k. With `anchor`, one more address far below
 * the universe is held too, which puts an IPv6 set in its bigint form.
 */
interface Subject {
  u: UsedSet;
  m: Model;
  base: bigint;
  anchor?: bigint;
}

function fullCheck(s: Subject, allowedSets: { set: IntervalSet; model: boolean[] }[]): void {
  const { u, m, base } = s;
  const members: bigint[] = s.anchor === undefined ? [] : [s.anchor];
  m.used.forEach((x, k) => x && members.push(base + BigInt(k)));
  assert.deepEqual([...u.values()], members, 'values ascending');
  assert.equal(u.count, members.length);
  assert.equal(u.size(), BigInt(members.length));
  assert.deepEqual(
    [...u.runs()],
    IntervalSet.of(
      u.family,
      members.map((v) => ({ first: v, last: v })),
    ).runs(),
    'runs maximal',
  );
  for (let k = 0; k <= m.n; k++) {
    const v = base + BigInt(k);
    assert.equal(u.has(v), m.used[k] === true, `has ${k}`);
    let f = k;
    while (f < m.n && m.used[f]) f++;
    assert.equal(u.nextUnused(v), base + BigInt(f), `nextUnused ${k}`);
    assert.equal(
      u.ceil(v),
      members.find((x) => x >= v),
      `ceil ${k}`,
    );
  }
  for (const a of allowedSets) {
    const inside = m.used.filter((x, k) => x && a.model[k]).length;
    assert.equal(u.countIn(a.set), BigInt(inside), 'countIn');
    for (const from of [-1, 0, 1, m.n >> 1, m.n - 1, m.n, m.n + 5]) {
      const want = m.nextFree(a.model, from);
      assert.equal(
        nextFree(a.set, u, base + BigInt(from)),
        want === undefined ? undefined : base + BigInt(want),
        `nextFree from ${from}`,
      );
    }
  }
}

function allowedFrom(
  base: bigint,
  n: number,
  spec: [number, number][],
): { set: IntervalSet; model: boolean[] } {
  const model = new Array<boolean>(n).fill(false);
  const ranges = spec.map(([s, len]) => {
    const e = Math.min(n - 1, s + len);
    for (let k = s; k <= e; k++) model[k] = true;
    return { first: base + BigInt(s), last: base + BigInt(e) };
  });
  return { set: IntervalSet.of(base > maxValue(4) ? 6 : 4, ranges), model };
}

/** IPv4 and IPv6 universes; the IPv6 ones both in number form and (with an anchor) in bigint form. */
function subject(base: bigint, n: number, bigint: boolean): Subject {
  const family = base > maxValue(4) ? 6 : 4;
  const s: Subject = { u: new UsedSet(family), m: new Model(n), base };
  if (bigint) {
    s.anchor = base - (1n << 60n);
    s.u.add(s.anchor);
    s.u.add(base - 1n); // just below the universe, and gone again: the set stays in bigint form
    s.u.delete(base - 1n);
  }
  assert.equal(s.u.representation, bigint ? 'bigint' : 'number');
  return s;
}

test('UsedSet + nextFree match a naive model under random add/delete', () => {
  const N = 1000;
  const universes: [bigint, boolean][] = [
    [0n, false],
    [maxValue(4) - BigInt(N - 1), false],
    [ip('fd00::'), false],
    [ip('fd00::'), true],
    [maxValue(6) - BigInt(N - 1), false],
    [maxValue(6) - BigInt(N - 1), true],
  ];
  const op = fc.record({ add: fc.boolean(), k: fc.nat(N - 1), probe: fc.nat(N - 1) });
  fc.assert(
    fc.property(
      fc.constantFrom(...universes),
      // Shrinking a 2,000-step failure in full would take minutes; a bounded shrink still points at it.
      fc.limitShrink(fc.array(op, { minLength: 1, maxLength: 2000, size: 'max' }), 300),
      fc.array(fc.array(fc.tuple(fc.nat(N - 1), fc.nat(60)), { maxLength: 6 }), {
        minLength: 1,
        maxLength: 3,
      }),
      ([base, bigint], ops, allowedSpecs) => {
        const s = subject(base, N, bigint);
        const { u, m } = s;
        const allowed = allowedSpecs.map((spec) => allowedFrom(base, N, spec));
        let count = s.anchor === undefined ? 0 : 1;
        ops.forEach((o, step) => {
          const v = base + BigInt(o.k);
          const was = m.used[o.k] === true;
          if (o.add) {
            assert.equal(u.add(v), !was, `add ${o.k}`);
            m.used[o.k] = true;
            if (!was) count++;
          } else {
            assert.equal(u.delete(v), was, `delete ${o.k}`);
            m.used[o.k] = false;
            if (was) count--;
          }
          assert.equal(u.count, count);
          assert.equal(u.has(base + BigInt(o.probe)), m.used[o.probe] === true);
          const a = allowed[step % allowed.length]!;
          const want = m.nextFree(a.model, o.probe);
          assert.equal(
            nextFree(a.set, u, base + BigInt(o.probe)),
            want === undefined ? undefined : base + BigInt(want),
          );
        });
        assert.equal(u.representation, bigint ? 'bigint' : 'number');
        fullCheck(s, allowed);
      },
    ),
    { numRuns: 24 },
  );
});

for (const [name, base, bigint] of [
  ['IPv4, doubles', 0n, false],
  ['IPv6, bigints', ip('fd00::'), true],
] as const) {
  test(`many runs (${name}): blocks split and merge without losing the order or the counts`, () => {
    // Every even address of 0..N: N/2 runs, many blocks. Then random fills and releases, checked against
    // the model; a seeded generator keeps the sequence reproducible.
    const N = 3000;
    const s = subject(base, N, bigint);
    const { u, m } = s;
    for (let k = 0; k < N; k += 2) {
      u.add(base + BigInt(k));
      m.used[k] = true;
    }
    const allowed = [
      allowedFrom(base, N, [[0, N]]),
      allowedFrom(base, N, [
        [100, 700],
        [1500, 20],
        [2900, 99],
      ]),
    ];
    fullCheck(s, allowed);
    let seed = 12345;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let step = 1; step <= 6000; step++) {
      // First fill (runs merge across block boundaries), then release (runs split, blocks refill).
      const k = rand(N);
      if (step <= 3000 ? rand(4) !== 0 : rand(4) === 0) {
        assert.equal(u.add(base + BigInt(k)), !m.used[k]);
        m.used[k] = true;
      } else {
        assert.equal(u.delete(base + BigInt(k)), m.used[k] === true);
        m.used[k] = false;
      }
      if (step % 1000 === 0) fullCheck(s, allowed);
    }
    // Release all: every block empties and is removed.
    for (let k = 0; k < N; k++) u.delete(base + BigInt(k));
    if (s.anchor !== undefined) u.delete(s.anchor);
    assert.equal(u.count, 0);
    assert.equal(u.runCount, 0);
    assert.deepEqual([...u.runs()], []);
    assert.equal(u.countIn(allowed[0]!.set), 0n);
  });

  test(`block edge cases (${name}): a block emptied by a join, a small block folded into the one before`, () => {
    // Runs [3k, 3k+1] with one free address between neighbours; UsedSet.of packs them 64 to a block.
    // For bigints, an anchor run far above the universe gets a block of its own.
    const RUNS = 192;
    const anchor = base + (1n << 60n);
    const runs = Array.from({ length: RUNS }, (_, k) => ({
      first: base + BigInt(3 * k),
      last: base + BigInt(3 * k + 1),
    }));
    const u = UsedSet.of(bigint ? 6 : 4, bigint ? [...runs, { first: anchor, last: anchor }] : runs);
    assert.equal(u.representation, bigint ? 'bigint' : 'number');
    const s: Subject = { u, m: new Model(3 * RUNS), base };
    const m = s.m;
    for (let k = 0; k < RUNS; k++) m.used[3 * k] = m.used[3 * k + 1] = true;
    const release = (k: number) => {
      assert.equal(u.delete(base + BigInt(k)), true, `delete ${k}`);
      m.used[k] = false;
    };
    // Empty the second block down to its first run (run 64).
    for (let k = 65; k < 128; k++) {
      release(3 * k);
      release(3 * k + 1);
    }
    // Address 191 joins run 63 (end of the first block) with run 64 (alone in the second block).
    assert.equal(u.add(base + 191n), true);
    m.used[191] = true;
    // Shrink the first block to one run, then take one run from the last block: they fit in one block.
    for (let k = 1; k < 63; k++) {
      release(3 * k);
      release(3 * k + 1);
    }
    release(0);
    release(1);
    if (bigint) assert.equal(u.delete(anchor), true);
    release(3 * 130);
    release(3 * 130 + 1);
    fullCheck(s, [
      allowedFrom(base, m.n, [[0, m.n]]),
      allowedFrom(base, m.n, [
        [180, 20],
        [380, 50],
      ]),
    ]);
  });
}

test('UsedSet.of loads runs and agrees with adding one by one', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(5000), fc.nat(20)), { maxLength: 400 }), (spec) => {
      const ranges = spec.map(([s, len]) => ({ first: BigInt(s), last: BigInt(s + len) }));
      const bulk = UsedSet.of(4, ranges);
      const one = new UsedSet(4);
      for (const r of ranges) for (let v = r.first; v <= r.last; v++) one.add(v);
      assert.deepEqual([...bulk.runs()], [...one.runs()]);
      assert.equal(bulk.count, one.count);
      const probe = IntervalSet.of(4, [
        { first: 100n, last: 2000n },
        { first: 3000n, last: 3100n },
      ]);
      assert.equal(bulk.countIn(probe), one.countIn(probe));
      // Mutating a bulk-loaded set keeps it consistent.
      for (const r of ranges.slice(0, 20)) bulk.delete(r.first);
      for (const r of ranges.slice(0, 20)) one.delete(r.first);
      assert.deepEqual([...bulk.runs()], [...one.runs()]);
    }),
    { numRuns: 50 },
  );
});
