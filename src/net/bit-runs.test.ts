import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BitRuns, CHUNK } from './bit-runs.ts';

const TOP = 2 ** 32 - 1;

/** A plain array of flags over [base, base + n): the model every answer is checked against. */
class Model {
  readonly used: boolean[];
  readonly base: number;
  readonly n: number;
  constructor(base: number, n: number) {
    this.base = base;
    this.n = n;
    this.used = new Array<boolean>(n).fill(false);
  }
  has(v: number): boolean {
    return v >= this.base && v < this.base + this.n && this.used[v - this.base]!;
  }
  runs(): { first: number; last: number }[] {
    const out: { first: number; last: number }[] = [];
    for (let k = 0; k < this.n; k++) {
      if (!this.used[k]) continue;
      const l = out[out.length - 1];
      if (l !== undefined && l.last === this.base + k - 1) l.last++;
      else out.push({ first: this.base + k, last: this.base + k });
    }
    return out;
  }
  nextUnused(v: number): number {
    let x = Math.max(v, this.base);
    if (v < this.base) return v;
    while (this.has(x)) x++;
    return x;
  }
  ceil(v: number): number | undefined {
    for (let x = Math.max(Math.ceil(v), this.base); x < this.base + this.n; x++) if (this.has(x)) return x;
    return undefined;
  }
  countUpTo(v: number): number {
    let n = 0;
    for (let k = 0; k < this.n && this.base + k <= v; k++) if (this.used[k]) n++;
    return n;
  }
}

/** Every query at and around each chunk edge and run edge, and the extremes. */
function check(b: BitRuns, m: Model, what: string): void {
  const runs = m.runs();
  assert.deepEqual([...b.runs()], runs, `${what}: runs`);
  assert.equal(b.runCount, runs.length, `${what}: runCount`);
  assert.equal(b.size, m.countUpTo(Infinity), `${what}: size`);
  assert.equal(b.min(), runs[0]?.first, `${what}: min`);
  assert.equal(b.max(), runs[runs.length - 1]?.last, `${what}: max`);
  const probes = new Set<number>([
    -Infinity,
    Infinity,
    -1,
    0,
    m.base - 1,
    m.base,
    m.base + m.n,
    m.base + m.n - 1,
  ]);
  for (let c = Math.floor(m.base / CHUNK); c * CHUNK <= m.base + m.n; c++) {
    for (const d of [-1, 0, 1]) probes.add(c * CHUNK + d);
  }
  for (const r of runs) for (const x of [r.first - 1, r.first, r.last, r.last + 1]) probes.add(x);
  for (const x of probes) {
    if (Number.isFinite(x) && x > TOP + 1) continue;
    assert.equal(b.has(x), m.has(x), `${what}: has(${x})`);
    assert.equal(b.nextUnused(x), m.nextUnused(x), `${what}: nextUnused(${x})`);
    assert.equal(b.ceil(x), m.ceil(x), `${what}: ceil(${x})`);
    assert.equal(b.countUpTo(x), m.countUpTo(x), `${what}: countUpTo(${x})`);
  }
}

test('one chunk: bits set and cleared, runs joined and split', () => {
  const b = new BitRuns();
  assert.equal(b.add(5), true);
  assert.equal(b.add(5), false, 'double add');
  assert.equal(b.add(7), true);
  assert.deepEqual(
    [...b.runs()],
    [
      { first: 5, last: 5 },
      { first: 7, last: 7 },
    ],
  );
  assert.equal(b.add(6), true);
  assert.deepEqual([...b.runs()], [{ first: 5, last: 7 }]);
  assert.equal(b.nextUnused(5), 8);
  assert.equal(b.ceil(0), 5);
  assert.equal(b.ceil(8), undefined);
  assert.equal(b.delete(6), true);
  assert.equal(b.delete(6), false, 'double delete');
  assert.equal(b.countUpTo(6), 1);
  assert.equal(b.size, 2);
  assert.equal(b.delete(5), true);
  assert.equal(b.delete(7), true);
  assert.equal(b.size, 0);
  assert.deepEqual([...b.runs()], []);
  assert.equal(b.min(), undefined);
  assert.equal(b.max(), undefined);
  assert.equal(b.ceil(-Infinity), undefined);
});

test('a chunk filled address by address becomes whole, and partial again when one address leaves', () => {
  const base = 3 * CHUNK;
  const b = new BitRuns();
  const m = new Model(base - CHUNK, 3 * CHUNK);
  for (let x = base; x < base + CHUNK; x++) {
    assert.equal(b.add(x), true);
    m.used[x - m.base] = true;
  }
  check(b, m, 'whole');
  assert.equal(b.nextUnused(base), base + CHUNK, 'a whole chunk is stepped over at once');
  assert.equal(b.add(base + 17), false, 'a member of a whole chunk');
  assert.equal(b.delete(base + 17), true);
  m.used[base + 17 - m.base] = false;
  check(b, m, 'cut');
  assert.equal(b.add(base + 17), true);
  m.used[base + 17 - m.base] = true;
  // Whole chunks side by side are one run; the address after them starts the next chunk.
  for (let x = base + CHUNK; x < base + 2 * CHUNK; x++) {
    b.add(x);
    m.used[x - m.base] = true;
  }
  check(b, m, 'two whole');
  assert.equal(b.nextUnused(base + 1), base + 2 * CHUNK);
  for (let x = base; x < base + 2 * CHUNK; x++) assert.equal(b.delete(x), true);
  m.used.fill(false);
  check(b, m, 'emptied');
});

test('fromRuns: runs across, within and exactly on chunk edges, and the top of the IPv4 space', () => {
  const cases: { first: number; last: number }[][] = [
    [],
    [{ first: 0, last: 0 }],
    [{ first: 0, last: CHUNK - 1 }],
    [{ first: 1, last: CHUNK }],
    [
      { first: 10, last: 20 },
      { first: 22, last: 3 * CHUNK + 5 },
      { first: 3 * CHUNK + 7, last: 4 * CHUNK - 1 },
      { first: 5 * CHUNK, last: 9 * CHUNK - 1 },
    ],
    [{ first: 0, last: TOP }],
    [{ first: TOP - 2 * CHUNK - 3, last: TOP }],
    [
      { first: TOP - 5, last: TOP - 4 },
      { first: TOP, last: TOP },
    ],
  ];
  for (const runs of cases) {
    const b = BitRuns.fromRuns(runs);
    assert.deepEqual([...b.runs()], runs);
    const lo = runs.length === 0 ? 0 : runs[0]!.first;
    const hi = runs.length === 0 ? 0 : runs[runs.length - 1]!.last;
    assert.equal(
      b.size,
      runs.reduce((n, r) => n + r.last - r.first + 1, 0),
    );
    assert.equal(b.min(), runs[0]?.first);
    assert.equal(b.max(), runs[runs.length - 1]?.last);
    if (hi - lo < 20 * CHUNK) {
      const m = new Model(
        Math.max(0, lo - CHUNK),
        Math.min(TOP + 1, hi + CHUNK + 1) - Math.max(0, lo - CHUNK),
      );
      for (const r of runs) for (let x = r.first; x <= r.last; x++) m.used[x - m.base] = true;
      check(b, m, JSON.stringify(runs));
    }
  }
  const all = BitRuns.fromRuns([{ first: 0, last: TOP }]);
  assert.equal(all.nextUnused(0), TOP + 1, 'the whole space: nothing free below 2^32');
  assert.equal(all.countUpTo(TOP), TOP + 1);
  assert.equal(all.delete(TOP), true);
  assert.equal(all.nextUnused(0), TOP);
  assert.equal(all.countUpTo(Infinity), TOP);
});

test('BitRuns matches a model under random loads, adds and deletes over several chunks', () => {
  const N = 6 * CHUNK;
  fc.assert(
    fc.property(
      // Where the universe starts: chunk-aligned or not, at 0, or ending at the top of the space.
      fc.constantFrom(0, 3 * CHUNK, 3 * CHUNK + 11, TOP + 1 - N, 77_777),
      fc.array(fc.tuple(fc.nat(N - 1), fc.nat(2 * CHUNK)), { maxLength: 6 }),
      // Adds and deletes in bursts, so that chunks fill up whole and empty out.
      fc.array(fc.record({ add: fc.boolean(), at: fc.nat(N - 1), len: fc.nat(CHUNK + 40) }), {
        minLength: 1,
        maxLength: 40,
      }),
      (base, load, bursts) => {
        const m = new Model(base, N);
        for (const [at, len] of load) for (let k = at; k < Math.min(N, at + len + 1); k++) m.used[k] = true;
        const b = BitRuns.fromRuns(m.runs());
        check(b, m, 'loaded');
        bursts.forEach((o, step) => {
          for (let k = o.at; k < Math.min(N, o.at + o.len + 1); k++) {
            const was = m.used[k]!;
            if (o.add) assert.equal(b.add(base + k), !was, `add ${base + k}`);
            else assert.equal(b.delete(base + k), was, `delete ${base + k}`);
            m.used[k] = o.add;
          }
          if (step % 8 === 7) check(b, m, `after burst ${step}`);
        });
        check(b, m, 'end');
      },
    ),
    { numRuns: 40 },
  );
});

test('many chunks: the slot slab grows and its freed slots are reused', () => {
  // One member in each of 3,000 chunks (3 directory leaves), then all released, then refilled.
  const b = new BitRuns();
  const m = new Model(0, 3000 * CHUNK);
  for (let c = 0; c < 3000; c++) {
    assert.equal(b.add(c * CHUNK + (c % CHUNK)), true);
    m.used[c * CHUNK + (c % CHUNK)] = true;
  }
  assert.equal(b.size, 3000);
  assert.equal(b.ceil(5 * CHUNK + 6), 6 * CHUNK + 6);
  assert.equal(b.countUpTo(2000 * CHUNK), 2000);
  for (let c = 0; c < 3000; c += 2) {
    assert.equal(b.delete(c * CHUNK + (c % CHUNK)), true);
    m.used[c * CHUNK + (c % CHUNK)] = false;
  }
  for (let c = 0; c < 3000; c += 2) {
    assert.equal(b.add(c * CHUNK + 1), true);
    m.used[c * CHUNK + 1] = true;
  }
  assert.deepEqual([...b.runs()], m.runs());
  assert.equal(b.countUpTo(Infinity), 3000);
  assert.equal(b.ceil(4 * CHUNK + 2), 5 * CHUNK + 5);
});
