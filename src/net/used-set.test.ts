import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { NetError, maxValue, parseAddr } from './addr.ts';
import { IntervalSet } from './interval-set.ts';
import { UsedSet, nextFree } from './used-set.ts';

const ip = (s: string): bigint => parseAddr(s).value;
/** IPv6 sets are cut into 2^52-aligned windows of this many addresses. */
const W52 = 1n << 52n;
const MAX6 = maxValue(6);

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

test('representation: one window in doubles, several as windows, one again once emptied', () => {
  const v4 = new UsedSet(4);
  v4.add(0n);
  v4.add(maxValue(4));
  assert.equal(v4.representation, 'number', 'IPv4 always fits');
  assert.equal(v4.nextUnused(maxValue(4)), maxValue(4) + 1n);

  const u = new UsedSet(6);
  const a = ip('fd00::1'); // fd00:: starts a window
  const near = a + W52 - 2n; // the window's last address
  const far = a + W52 - 1n; // the next window's first
  const low = a - 2n; // the previous window's last
  u.add(a);
  u.add(near);
  assert.equal(u.representation, 'number', 'one window');
  assert.equal(u.nextUnused(near), near + 1n);
  assert.equal(u.ceil(a + 1n), near);
  assert.equal(u.ceil(far), undefined, 'beyond the window: nothing stored there');
  assert.equal(u.ceil(0n), a, 'below the window: the first member');
  assert.equal(u.nextUnused(far + 5n), far + 5n);
  assert.equal(u.has(far), false);
  assert.equal(u.delete(far), false);
  assert.equal(u.countIn(IntervalSet.parse(6, ['::/0'])), 2n);
  assert.equal(u.add(far), true);
  assert.equal(u.representation, 'windows');
  u.add(low);
  assert.deepEqual([...u.values()], [low, a, near, far]);
  assert.equal(u.nextUnused(near), far + 1n, 'near and far joined into one run');
  assert.equal(u.countIn(IntervalSet.parse(6, ['::/0'])), 4n);
  assert.equal(u.runCount, 3);
  u.add(low + 1n); // joins low's run (window before) with a's (this window)
  assert.equal(u.runCount, 2);
  assert.deepEqual(
    [...u.runs()],
    [
      { first: low, last: a },
      { first: near, last: far },
    ],
  );
  u.add(0n); // a new lowest run, far below
  assert.equal(u.runCount, 3);
  assert.equal(u.ceil(1n), low);
  for (const v of [0n, low, low + 1n, a, near, far]) u.delete(v);
  assert.equal(u.count, 0);
  assert.equal(u.representation, 'number', 'an emptied set starts over');
  u.add(ip('2001:db8::1'));
  assert.equal(u.representation, 'number');
  assert.equal(u.has(ip('2001:db8::1')), true);
  // A bulk load wider than a window: windows, whole ones held as one span.
  assert.equal(UsedSet.of(6, [{ first: 0n, last: 1n << 60n }]).representation, 'windows');
  assert.equal(UsedSet.of(6, [{ first: 5n, last: 6n }]).representation, 'number');
  assert.equal(
    UsedSet.of(6, [{ first: W52, last: 2n * W52 - 1n }]).representation,
    'windows',
    'a whole window',
  );
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
 * the universe is held too, in another window, which puts an IPv6 set in its windows form.
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
  assert.equal(u.representation, expectedRepresentation(u.family, members));
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

/**
 * IPv4 and IPv6 universes; the IPv6 ones in one window (number form), or with an anchor in another
 * window (windows form), or straddling window boundaries (either form, by what is held).
 */
function subject(base: bigint, n: number, windows: boolean): Subject {
  const family = base > maxValue(4) ? 6 : 4;
  const s: Subject = { u: new UsedSet(family), m: new Model(n), base };
  if (windows) {
    s.anchor = base - (1n << 60n);
    s.u.add(s.anchor);
    s.u.add(base - 1n); // just below the universe (another window), and gone again
    assert.equal(s.u.representation, 'windows');
    s.u.delete(base - 1n);
  }
  assert.equal(s.u.representation, 'number');
  return s;
}

/** The representation a set of these (ascending) members should have. */
function expectedRepresentation(family: 4 | 6, members: readonly bigint[]): 'number' | 'windows' {
  if (family === 4 || members.length === 0) return 'number';
  return members[0]! >> 52n === members[members.length - 1]! >> 52n ? 'number' : 'windows';
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
    // Straddling a window boundary; a 2^64 boundary; a 2^104 boundary (all of a window's key changes).
    [ip('fd00::') + 7n * W52 - BigInt(N / 2), false],
    [ip('fd00::') + (1n << 64n) - 3n, true],
    [(0xfdn << 104n) - BigInt(N / 2), false],
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
      ([base, windows], ops, allowedSpecs) => {
        const s = subject(base, N, windows);
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
        fullCheck(s, allowed);
      },
    ),
    { numRuns: 24 },
  );
});

for (const [name, base, windows] of [
  ['IPv4, doubles', 0n, false],
  ['IPv6, windows', ip('fd00::'), true],
  ['IPv6, across a window boundary', ip('fd00::') + W52 - 1500n, false],
] as const) {
  test(`many runs (${name}): blocks split and merge without losing the order or the counts`, () => {
    // Every even address of 0..N: N/2 runs, many blocks. Then random fills and releases, checked against
    // the model; a seeded generator keeps the sequence reproducible.
    const N = 3000;
    const s = subject(base, N, windows);
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
    // For windows, an anchor run far above the universe gets a window of its own.
    const RUNS = 192;
    const anchor = base + (1n << 60n);
    const runs = Array.from({ length: RUNS }, (_, k) => ({
      first: base + BigInt(3 * k),
      last: base + BigInt(3 * k + 1),
    }));
    const u = UsedSet.of(
      base > maxValue(4) ? 6 : 4,
      windows ? [...runs, { first: anchor, last: anchor }] : runs,
    );
    assert.equal(u.representation, windows ? 'windows' : 'number');
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
    if (windows) assert.equal(u.delete(anchor), true);
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

// ---- IPv6 windows: boundaries, whole-window spans, the ends of the space ----

/** Checks `u` against its runs as listed, ascending and maximal (all the read-only queries). */
function checkRuns(u: UsedSet, want: { first: bigint; last: bigint }[], msg = ''): void {
  assert.deepEqual([...u.runs()], want, `runs ${msg}`);
  assert.equal(u.runCount, want.length, `runCount ${msg}`);
  const size = want.reduce((n, r) => n + r.last - r.first + 1n, 0n);
  assert.equal(u.size(), size, `size ${msg}`);
  assert.equal(u.count, Number(size), `count ${msg}`);
  assert.equal(u.toIntervalSet().size(), size, `snapshot ${msg}`);
  for (const [k, r] of want.entries()) {
    // Around both ends of every run, and every window boundary near them.
    const probes = [r.first - 1n, r.first, r.first + 1n, r.last - 1n, r.last, r.last + 1n];
    for (const p of [r.first, r.last]) {
      const b = (p >> 52n) << 52n;
      probes.push(b - 1n, b, b + W52 - 1n, b + W52);
    }
    for (const p of probes) {
      if (p < 0n || p > MAX6) continue;
      const inRun = want.find((x) => x.first <= p && p <= x.last);
      assert.equal(u.has(p), inRun !== undefined, `has ${p} ${msg}`);
      assert.equal(u.nextUnused(p), inRun === undefined ? p : inRun.last + 1n, `nextUnused ${p} ${msg}`);
      const next = want.find((x) => x.last >= p);
      assert.equal(
        u.ceil(p),
        next === undefined ? undefined : next.first > p ? next.first : p,
        `ceil ${p} ${msg}`,
      );
    }
    assert.equal(u.countIn(IntervalSet.of(6, [r])), r.last - r.first + 1n, `countIn run ${k} ${msg}`);
  }
  assert.equal(u.countIn(IntervalSet.of(6, [{ first: 0n, last: MAX6 }])), size, `countIn all ${msg}`);
}

test('windows: a run across a window boundary is one run; adds and deletes at the boundary', () => {
  const B = ip('fd00::') + 3n * W52; // a window boundary: B - 1 and B are in different windows
  const u = new UsedSet(6);
  u.add(B - 1n);
  checkRuns(u, [{ first: B - 1n, last: B - 1n }], 'last of a window');
  u.add(B);
  assert.equal(u.representation, 'windows');
  checkRuns(u, [{ first: B - 1n, last: B }], 'joined across the boundary');
  assert.equal(u.describe(), '2 used in 1 run: fd00::2f:ffff:ffff:ffff-fd00::30:0:0:0');
  assert.deepEqual([...u.values()], [B - 1n, B]);
  // Extend on both sides, then cut at the boundary from either side.
  u.add(B - 2n);
  u.add(B + 1n);
  checkRuns(u, [{ first: B - 2n, last: B + 1n }], 'four across');
  assert.equal(u.delete(B), true);
  checkRuns(
    u,
    [
      { first: B - 2n, last: B - 1n },
      { first: B + 1n, last: B + 1n },
    ],
    'cut after the boundary',
  );
  assert.equal(u.add(B), true, 'and joined again');
  assert.equal(u.delete(B - 1n), true);
  checkRuns(
    u,
    [
      { first: B - 2n, last: B - 2n },
      { first: B, last: B + 1n },
    ],
    'cut before the boundary',
  );
  assert.equal(u.delete(B - 1n), false, 'twice');
  assert.equal(u.add(B - 1n), true);
  checkRuns(u, [{ first: B - 2n, last: B + 1n }], 'joined again');
  // Empty one side: the other window alone holds the rest.
  assert.equal(u.delete(B - 2n), true);
  assert.equal(u.delete(B - 1n), true);
  assert.equal(u.representation, 'number');
  checkRuns(u, [{ first: B, last: B + 1n }], 'one window left');
  assert.equal(u.ceil(B - 1n), B);
  assert.equal(u.ceil(0n), B);
  assert.equal(u.nextUnused(B - 1n), B - 1n);
  // Runs over three windows, each joined with its neighbours: one run of W52 + 4 addresses.
  const v = new UsedSet(6);
  for (const x of [B - 1n, B, B + W52 - 1n, B + W52]) v.add(x);
  checkRuns(
    v,
    [
      { first: B - 1n, last: B },
      { first: B + W52 - 1n, last: B + W52 },
    ],
    'two boundary runs',
  );
  assert.equal(nextFree(IntervalSet.of(6, [{ first: B - 1n, last: B + W52 }]), v, B - 1n), B + 1n);
  assert.equal(
    nextFree(IntervalSet.of(6, [{ first: B - 1n, last: B + W52 }]), v, B + W52 - 1n),
    B + 1n,
    'wraps',
  );
});

test('windows: a bulk load across many windows is a few segments, however many windows it covers', () => {
  const B = ip('fd00::') + 8n * W52;
  const first = B - 3n;
  const last = B + 5n * W52 + 7n; // 3 addresses before B, five whole windows, 8 after
  const u = UsedSet.of(6, [{ first, last }]);
  checkRuns(u, [{ first, last }], 'loaded');
  assert.equal(u.size(), 5n * W52 + 11n);
  assert.equal(u.nextUnused(first), last + 1n);
  assert.equal(u.nextUnused(B + 2n * W52 + 5n), last + 1n, 'from inside a whole window');
  assert.equal(u.ceil(0n), first);
  assert.equal(u.ceil(B + 3n * W52), B + 3n * W52);
  assert.equal(u.countIn(IntervalSet.of(6, [{ first: B + W52 - 1n, last: B + W52 }])), 2n);
  assert.equal(u.countIn(IntervalSet.of(6, [{ first: 0n, last: B + W52 }])), W52 + 4n);
  assert.equal(u.countIn(IntervalSet.of(6, [{ first: last, last: MAX6 }])), 1n);
  // Release one address inside a whole window, at a window's first and last addresses, and at the ends.
  const x = B + 2n * W52 + 17n;
  assert.equal(u.delete(x), true);
  checkRuns(
    u,
    [
      { first, last: x - 1n },
      { first: x + 1n, last },
    ],
    'hole in a whole window',
  );
  assert.equal(u.has(x), false);
  assert.equal(u.nextUnused(first), x);
  assert.equal(u.ceil(x), x + 1n);
  assert.equal(nextFree(IntervalSet.of(6, [{ first, last: last + 1n }]), u, first), x);
  assert.equal(u.add(x), true, 'the window is whole again');
  checkRuns(u, [{ first, last }], 'filled');
  const y = B + W52; // first address of the second whole window
  const z = B + 4n * W52 - 1n; // last address of the fourth
  assert.equal(u.delete(y), true);
  assert.equal(u.delete(z), true);
  assert.equal(u.delete(first), true);
  assert.equal(u.delete(last), true);
  checkRuns(
    u,
    [
      { first: first + 1n, last: y - 1n },
      { first: y + 1n, last: z - 1n },
      { first: z + 1n, last: last - 1n },
    ],
    'holes at window edges',
  );
  for (const v of [y, z, first, last]) assert.equal(u.add(v), true);
  checkRuns(u, [{ first, last }], 'all back');
  // Whole windows split and rejoined: the neighbours merge into one span again, still correct after.
  const w = UsedSet.of(6, [{ first: B - W52, last: B + 2n * W52 - 1n }]); // three whole windows
  assert.equal(w.delete(B + 7n), true);
  assert.equal(w.add(B + 7n), true);
  checkRuns(w, [{ first: B - W52, last: B + 2n * W52 - 1n }], 'rejoined');
  assert.equal(w.delete(B + W52), true);
  checkRuns(
    w,
    [
      { first: B - W52, last: B + W52 - 1n },
      { first: B + W52 + 1n, last: B + 2n * W52 - 1n },
    ],
    'cut',
  );
});

test('windows: the whole IPv6 space, its first and last addresses', () => {
  // 2^76 windows: anything per window would never finish.
  const all = UsedSet.of(6, [{ first: 0n, last: MAX6 }]);
  checkRuns(all, [{ first: 0n, last: MAX6 }], 'everything');
  assert.equal(all.size(), 1n << 128n);
  assert.equal(all.nextUnused(0n), MAX6 + 1n);
  assert.equal(all.nextUnused(1n << 100n), MAX6 + 1n);
  assert.equal(all.ceil(123n), 123n);
  assert.equal(nextFree(IntervalSet.parse(6, ['fd00::/64']), all, ip('fd00::5')), undefined);
  const mid = 1n << 127n;
  assert.equal(all.delete(mid), true);
  checkRuns(
    all,
    [
      { first: 0n, last: mid - 1n },
      { first: mid + 1n, last: MAX6 },
    ],
    'one hole',
  );
  assert.equal(nextFree(IntervalSet.parse(6, ['::/0']), all, 0n), mid);
  assert.equal(nextFree(IntervalSet.parse(6, ['::/0']), all, mid + 1n), mid, 'wraps to it');
  assert.equal(all.delete(0n), true);
  assert.equal(all.delete(MAX6), true);
  checkRuns(
    all,
    [
      { first: 1n, last: mid - 1n },
      { first: mid + 1n, last: MAX6 - 1n },
    ],
    'ends released',
  );
  assert.equal(all.nextUnused(MAX6 - 1n), MAX6);
  assert.equal(all.ceil(0n), 1n);
  for (const v of [0n, mid, MAX6]) assert.equal(all.add(v), true);
  checkRuns(all, [{ first: 0n, last: MAX6 }], 'whole again');

  // The two ends, added one by one.
  const u = new UsedSet(6);
  for (const v of [MAX6, MAX6 - 1n, 0n, 1n]) assert.equal(u.add(v), true);
  checkRuns(
    u,
    [
      { first: 0n, last: 1n },
      { first: MAX6 - 1n, last: MAX6 },
    ],
    'ends',
  );
  assert.equal(u.nextUnused(MAX6 - 1n), MAX6 + 1n, 'past the top');
  assert.equal(u.nextUnused(MAX6 + 1n), MAX6 + 1n);
  assert.equal(u.ceil(2n), MAX6 - 1n);
  assert.equal(u.ceil(MAX6 + 1n), undefined);
  assert.equal(u.ceil(-5n), 0n);
  assert.equal(u.nextUnused(-5n), -5n);
  assert.equal(u.has(-1n), false);
  assert.equal(u.has(MAX6 + 1n), false);
  assert.equal(u.delete(-1n), false);
  assert.equal(u.delete(MAX6 + 1n), false);
  assert.throws(() => u.add(MAX6 + 1n), /not an IPv6 address/);
  assert.throws(() => u.add(-1n), NetError);
  assert.equal(u.countIn(IntervalSet.of(6, [{ first: 1n, last: MAX6 - 1n }])), 2n);
  assert.equal(nextFree(IntervalSet.of(6, [{ first: MAX6 - 2n, last: MAX6 }]), u, MAX6), MAX6 - 2n);
  for (const v of [0n, 1n, MAX6 - 1n, MAX6]) assert.equal(u.delete(v), true);
  checkRuns(u, [], 'emptied');
  assert.equal(u.representation, 'number');
  assert.equal(u.ceil(0n), undefined);
  assert.equal(u.nextUnused(7n), 7n);
  assert.equal(u.describe(), '0 used in 0 runs');
  assert.equal(u.countIn(IntervalSet.of(6, [{ first: 0n, last: MAX6 }])), 0n);
  assert.equal(new UsedSet(6).countIn(IntervalSet.of(6, [{ first: 0n, last: MAX6 }])), 0n);
});

// ---- IPv6 against a model of runs, over the whole space ----

/** A naive model: the canonical runs, in a plain array, each operation done the obvious way. */
class RunModel {
  runs: { first: bigint; last: bigint }[] = [];

  static of(ranges: { first: bigint; last: bigint }[]): RunModel {
    const m = new RunModel();
    for (const r of [...ranges].sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))) {
      const top = m.runs[m.runs.length - 1];
      if (top !== undefined && r.first <= top.last + 1n) {
        if (r.last > top.last) top.last = r.last;
      } else {
        m.runs.push({ ...r });
      }
    }
    return m;
  }

  holding(v: bigint): { first: bigint; last: bigint } | undefined {
    return this.runs.find((r) => r.first <= v && v <= r.last);
  }

  add(v: bigint): boolean {
    if (this.holding(v) !== undefined) return false;
    this.runs = RunModel.of([...this.runs, { first: v, last: v }]).runs;
    return true;
  }

  delete(v: bigint): boolean {
    const r = this.holding(v);
    if (r === undefined) return false;
    const parts = [
      { first: r.first, last: v - 1n },
      { first: v + 1n, last: r.last },
    ].filter((p) => p.first <= p.last);
    this.runs.splice(this.runs.indexOf(r), 1, ...parts);
    return true;
  }

  nextUnused(v: bigint): bigint {
    return this.holding(v)?.last === undefined ? v : this.holding(v)!.last + 1n;
  }

  ceil(v: bigint): bigint | undefined {
    const r = this.runs.find((x) => x.last >= v);
    return r === undefined ? undefined : r.first > v ? r.first : v;
  }

  countIn(set: IntervalSet): bigint {
    let n = 0n;
    for (const a of set.runs()) {
      for (const r of this.runs) {
        const lo = a.first > r.first ? a.first : r.first;
        const hi = a.last < r.last ? a.last : r.last;
        if (lo <= hi) n += hi - lo + 1n;
      }
    }
    return n;
  }

  /** The first allowed, unused address in [lo, hi], or undefined: walking the allowed runs. */
  #firstFree(allowed: IntervalSet, lo: bigint, hi: bigint): bigint | undefined {
    for (const a of allowed.runs()) {
      let x = a.first > lo ? a.first : lo;
      const end = a.last < hi ? a.last : hi;
      while (x <= end) {
        const r = this.holding(x);
        if (r === undefined) return x;
        x = r.last + 1n;
      }
    }
    return undefined;
  }

  nextFree(allowed: IntervalSet, from: bigint): bigint | undefined {
    return (
      this.#firstFree(allowed, from, MAX6) ??
      (from > 0n ? this.#firstFree(allowed, 0n, from - 1n) : undefined)
    );
  }
}

/** Addresses where windows and the other cut points meet, and the ends of the space. */
const POINTS = [
  0n,
  W52,
  3n * W52,
  1n << 64n,
  (1n << 64n) + W52,
  1n << 104n,
  ip('fd00::'),
  ip('fd00::') + W52,
  ip('fd00::') + 2n * W52,
  ip('fd00::') + (1n << 64n),
  MAX6 - W52 + 1n,
  MAX6 + 1n,
];
const clamp = (v: bigint): bigint => (v < 0n ? 0n : v > MAX6 ? MAX6 : v);
/** Mostly a few addresses either side of a cut point, so that operations meet; sometimes anywhere. */
const addrArb = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.constantFrom(...POINTS), fc.integer({ min: -3, max: 3 }))
      .map(([p, d]) => clamp(p + BigInt(d))),
  },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: MAX6 }) },
);
/** Run lengths: short, about a window, or anything up to 2^70. */
const lenArb = fc.oneof(
  fc.bigInt({ min: 0n, max: 6n }),
  fc.constantFrom(W52 - 2n, W52 - 1n, W52, W52 + 1n, 3n * W52),
  fc.bigInt({ min: 0n, max: 1n << 70n }),
);
const rangeArb = fc.tuple(addrArb, lenArb).map(([first, len]) => ({ first, last: clamp(first + len) }));

function checkAgainst(u: UsedSet, m: RunModel, probes: bigint[], sets: IntervalSet[]): void {
  assert.deepEqual([...u.runs()], m.runs, 'runs');
  assert.equal(u.runCount, m.runs.length, 'runCount');
  const size = m.runs.reduce((n, r) => n + r.last - r.first + 1n, 0n);
  assert.equal(u.size(), size, 'size');
  assert.equal(u.count, Number(size), 'count');
  const members = m.runs.length === 0 ? [] : [m.runs[0]!.first, m.runs[m.runs.length - 1]!.last];
  const wholeWindow = m.runs.length === 1 && size === W52; // one whole window: a span, not runs
  assert.equal(
    u.representation,
    wholeWindow ? 'windows' : expectedRepresentation(6, members),
    'representation',
  );
  for (const p of probes) {
    assert.equal(u.has(p), m.holding(p) !== undefined, `has ${p}`);
    assert.equal(u.nextUnused(p), m.nextUnused(p), `nextUnused ${p}`);
    assert.equal(u.ceil(p), m.ceil(p), `ceil ${p}`);
  }
  for (const set of sets) {
    assert.equal(u.countIn(set), m.countIn(set), 'countIn');
    for (const from of probes.slice(0, 4))
      assert.equal(nextFree(set, u, from), m.nextFree(set, from), `nextFree ${from}`);
  }
}

test('IPv6 windows match a model of runs under random loads, adds and deletes over the whole space', () => {
  fc.assert(
    fc.property(
      fc.array(rangeArb, { maxLength: 8 }),
      fc.array(fc.record({ add: fc.boolean(), v: addrArb, probe: addrArb }), { maxLength: 120 }),
      fc.array(addrArb, { minLength: 4, maxLength: 12 }),
      fc.array(fc.array(rangeArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 3 }),
      (load, ops, probes, setSpecs) => {
        const u = UsedSet.of(6, load);
        const m = RunModel.of(load);
        const sets = setSpecs.map((spec) => IntervalSet.of(6, spec));
        checkAgainst(u, m, probes, sets);
        for (const o of ops) {
          if (o.add) assert.equal(u.add(o.v), m.add(o.v), `add ${o.v}`);
          else assert.equal(u.delete(o.v), m.delete(o.v), `delete ${o.v}`);
          assert.equal(u.has(o.probe), m.holding(o.probe) !== undefined, `has ${o.probe}`);
          assert.equal(u.nextUnused(o.probe), m.nextUnused(o.probe), `nextUnused ${o.probe}`);
          assert.equal(u.ceil(o.probe), m.ceil(o.probe), `ceil ${o.probe}`);
          assert.equal(
            u.size(),
            m.runs.reduce((n, r) => n + r.last - r.first + 1n, 0n),
            'size',
          );
        }
        checkAgainst(u, m, [...probes, ...ops.map((o) => o.v)], sets);
      },
    ),
    { numRuns: 1000 },
  );
});

test('IPv6 windows: adding and releasing every address around boundaries matches the model', () => {
  // Dense, deterministic: all 2^k subsets would be too many, so every address of a small range around
  // each cut point is added then released in an order that crosses the boundary back and forth.
  for (const p of POINTS) {
    const lo = clamp(p - 6n);
    const hi = clamp(p + 5n);
    const u = new UsedSet(6);
    const m = new RunModel();
    const order: bigint[] = [];
    for (let v = lo; v <= hi; v++) order.push(v);
    order.sort((a, b) => Number(((a * 7n) % 13n) - ((b * 7n) % 13n)) || (a < b ? -1 : 1));
    const probes = order.concat(lo > 0n ? [lo - 1n] : [], hi < MAX6 ? [hi + 1n] : []);
    for (const v of order) {
      assert.equal(u.add(v), m.add(v));
      checkAgainst(u, m, probes, []);
    }
    for (const v of order.reverse()) {
      assert.equal(u.delete(v), m.delete(v));
      checkAgainst(u, m, probes, []);
    }
  }
});

test('windows: a window emptied, refilled, made whole and cut again stays consistent', () => {
  const B = ip('fd00::') + 5n * W52;
  // A window emptied and used again: a new segment for it, not the old one.
  const u = new UsedSet(6);
  u.add(ip('fd00::1'));
  for (let round = 0; round < 3; round++) {
    assert.equal(u.add(B + 9n), true);
    assert.equal(u.has(B + 9n), true);
    assert.equal(u.delete(B + 9n), true);
    assert.equal(u.has(B + 9n), false);
    checkRuns(u, [{ first: ip('fd00::1'), last: ip('fd00::1') }], `round ${round}`);
  }
  assert.equal(u.add(B + 9n), true);
  assert.equal(u.add(B + 10n), true);
  checkRuns(
    u,
    [
      { first: ip('fd00::1'), last: ip('fd00::1') },
      { first: B + 9n, last: B + 10n },
    ],
    'used again',
  );
  // Whole windows B-2W, and B..B+2W (B-W is free): a cut window made whole again joins only B+W.
  const v = UsedSet.of(6, [
    { first: B - 2n * W52, last: B - W52 - 1n },
    { first: B, last: B + 2n * W52 - 1n },
  ]);
  const spans = [
    { first: B - 2n * W52, last: B - W52 - 1n },
    { first: B, last: B + 2n * W52 - 1n },
  ];
  checkRuns(v, spans, 'two spans');
  for (const x of [B, B + 3n, B + W52 - 1n]) {
    assert.equal(v.delete(x), true);
    assert.equal(v.has(x), false);
    assert.equal(v.add(x), true, `whole again after ${x - B}`);
    checkRuns(v, spans, `rejoined after ${x - B}`);
    assert.equal(v.has(B - W52), false, 'the free window stays free');
    assert.equal(v.nextUnused(B - 2n * W52), B - W52);
    // Then a release in the window just made whole (through the cached window, if any).
    assert.equal(v.delete(x + 1n), true);
    assert.equal(v.has(x + 1n), false);
    assert.equal(v.add(x + 1n), true);
    checkRuns(v, spans, `and again after ${x - B}`);
  }
});

test('windows: releases next to the 2^64 and 2^104 cut points inside whole windows', () => {
  // Window keys change in all their parts at 2^104 (and in the cached 2^64 block at 2^64): a span of
  // whole windows across either, cut in the windows on both sides of it.
  for (const cut of [1n << 104n, 1n << 64n, ip('fd00::') + (1n << 64n)]) {
    const span = { first: cut - 2n * W52, last: cut + 2n * W52 - 1n };
    for (const x of [cut, cut + 5n, cut - 1n, cut - 6n, cut - W52, cut + W52 - 1n, span.first, span.last]) {
      const u = UsedSet.of(6, [span]);
      assert.equal(u.delete(x), true);
      checkRuns(
        u,
        [
          { first: span.first, last: x - 1n },
          { first: x + 1n, last: span.last },
        ].filter((r) => r.first <= r.last),
        `cut ${cut} at ${x - cut}`,
      );
      assert.equal(u.add(x), true);
      checkRuns(u, [span], `whole again ${cut} at ${x - cut}`);
    }
  }
  // One whole window alone: a span (windows form); cut, it is one window's runs (number form).
  const B = ip('fd00::') + 9n * W52;
  const one = UsedSet.of(6, [{ first: B, last: B + W52 - 1n }]);
  assert.equal(one.representation, 'windows');
  assert.equal(one.delete(B + 3n), true);
  assert.equal(one.representation, 'number');
  assert.equal(one.add(B + 3n), true);
  assert.equal(one.representation, 'windows', 'whole again');
  assert.equal(one.delete(B + 4n), true);
  assert.equal(one.has(B + 5n), true); // a lookup first, then the add (another path to the runs)
  assert.equal(one.add(B + 4n), true);
  assert.equal(one.representation, 'windows', 'whole again, after a lookup');
  checkRuns(one, [{ first: B, last: B + W52 - 1n }], 'one whole window');
});
