/**
 * @module net/used-set
 * The addresses currently claimed in one network and family, shaped for the allocation hot path.
 *
 * Held as maximal runs of consecutive used addresses (see `run-blocks.ts`), so `nextFree` steps over
 * a run of 59,000 used addresses in one binary search instead of 59,000 probes, and adding or
 * releasing an address costs O(log runs) however large the pool or the set.
 *
 * Representation: addresses are kept as offsets from a base address in plain doubles (`NumberRuns`)
 * while every member lies within 2^52 of the base — always for IPv4 (base 0), and for IPv6 whenever
 * the claims cluster as they do in practice (base = the first address added). A member outside that
 * window moves the set to bigints (`BigRuns`): same algorithm, two to four times slower. An emptied set
 * starts over in the fast form.
 */
import type { Family } from './addr.ts';
import { NetError, familyName, formatValue, maxValue } from './addr.ts';
import { IntervalSet } from './interval-set.ts';
import type { Run } from './interval-set.ts';
import { BigRuns, NumberRuns } from './run-blocks.ts';

/** Number mode holds offsets in [-WINDOW, WINDOW]: `x + 1` and every count stay below 2^53, exact. */
const WINDOW = (1n << 52n) - 1n;
const MAX4 = maxValue(4);

export class UsedSet {
  readonly family: Family;
  readonly #max: bigint;
  /** Number mode: address = #base + offset. Always 0 for IPv4. */
  #base = 0n;
  #num = new NumberRuns();
  /** Set when some member lies outside the number window; then #num is empty and unused. */
  #big: BigRuns | undefined;

  constructor(family: Family) {
    if (family !== 4 && family !== 6) throw new NetError(`address family ${String(family)}: must be 4 or 6`);
    this.family = family;
    this.#max = maxValue(family);
  }

  /**
   * A set holding every address of `ranges` (any order, overlaps fine). O(runs log runs): use it to
   * load a large, already-known state instead of adding addresses one by one.
   * @throws NetError as `IntervalSet.of`.
   */
  static of(family: Family, ranges: Iterable<{ first: bigint; last: bigint }>): UsedSet {
    const runs = IntervalSet.of(family, ranges).runs();
    const used = new UsedSet(family);
    if (runs.length === 0) return used;
    const base = family === 4 ? 0n : runs[0]!.first;
    if (runs[runs.length - 1]!.last - base <= WINDOW) {
      used.#base = base;
      used.#num = NumberRuns.fromRuns(
        runs.map((r) => ({ first: Number(r.first - base), last: Number(r.last - base) })),
      );
    } else {
      used.#big = BigRuns.fromRuns(runs);
    }
    return used;
  }

  /** Which representation holds the set now (for tests and diagnostics). */
  get representation(): 'number' | 'bigint' {
    return this.#big === undefined ? 'number' : 'bigint';
  }

  /** Number of used addresses (exact up to 2^53; see `size()` for the bigint). */
  get count(): number {
    return this.#big === undefined ? this.#num.size : Number(this.#big.size);
  }

  /** Number of used addresses. */
  size(): bigint {
    return this.#big === undefined ? BigInt(this.#num.size) : this.#big.size;
  }

  /** Number of runs of consecutive used addresses. O(blocks). */
  get runCount(): number {
    return (this.#big ?? this.#num).runCount;
  }

  /** `v` as a number-mode offset; ±Infinity when `v` lies outside the window (nothing is stored there). */
  #q(v: bigint): number {
    if (this.family === 4) return v < 0n ? -Infinity : v > MAX4 ? Infinity : Number(v);
    const d = v - this.#base;
    return d > WINDOW ? Infinity : d < -WINDOW ? -Infinity : Number(d);
  }

  /** Whether `v` is used. O(log runs). */
  has(v: bigint): boolean {
    return this.#big === undefined ? this.#num.has(this.#q(v)) : this.#big.has(v);
  }

  /**
   * Marks `v` used. O(log runs); joins the runs on either side when `v` fills the gap between them.
   * @returns false when `v` was already used (nothing changes).
   * @throws NetError when `v` is not an address of this set's family.
   */
  add(v: bigint): boolean {
    if (typeof v !== 'bigint' || v < 0n || v > this.#max) {
      throw new NetError(
        `value ${String(v)} is not an ${familyName(this.family)} address (must be 0..${this.#max})`,
      );
    }
    if (this.#big !== undefined) return this.#big.add(v);
    if (this.family === 4) return this.#num.add(Number(v));
    if (this.#num.size === 0) this.#base = v;
    const d = v - this.#base;
    if (d <= WINDOW && d >= -WINDOW) return this.#num.add(Number(d));
    // Outside the window: move everything to bigints, for good (until the set empties).
    const base = this.#base;
    const runs: Run[] = [];
    for (const r of this.#num.runs())
      runs.push({ first: base + BigInt(r.first), last: base + BigInt(r.last) });
    this.#big = BigRuns.fromRuns(runs);
    this.#num = new NumberRuns();
    return this.#big.add(v);
  }

  /**
   * Marks `v` free. O(log runs); splits its run when `v` is inside one.
   * @returns false when `v` was not used (nothing changes).
   */
  delete(v: bigint): boolean {
    const big = this.#big;
    if (big === undefined) return this.#num.delete(this.#q(v));
    const removed = big.delete(v);
    if (big.size === 0n) this.#big = undefined; // back to the fast form; #num is empty
    return removed;
  }

  /**
   * The smallest address `>= v` that is not used: `v` itself, or one past the end of the run holding
   * `v`. May be `maxValue(family) + 1` when the run reaches the top of the family. O(log runs).
   */
  nextUnused(v: bigint): bigint {
    if (this.#big !== undefined) return this.#big.nextUnused(v);
    const q = this.#q(v);
    const r = this.#num.nextUnused(q);
    return r === q ? v : this.#base + BigInt(r);
  }

  /** The smallest used address `>= v`, or undefined. O(log runs). */
  ceil(v: bigint): bigint | undefined {
    if (this.#big !== undefined) return this.#big.ceil(v);
    const q = this.#q(v);
    const r = this.#num.ceil(q);
    return r === undefined ? undefined : r === q ? v : this.#base + BigInt(r);
  }

  /**
   * How many used addresses fall inside `set`. O(runs of set × (log runs + BLOCK_MAX)), plus one
   * O(blocks) pass after the set changed.
   * @throws NetError when `set` is of the other family.
   */
  countIn(set: IntervalSet): bigint {
    if (set.family !== this.family) {
      throw new NetError(
        `cannot count ${familyName(this.family)} addresses in an ${familyName(set.family)} set`,
      );
    }
    const big = this.#big;
    if (big !== undefined) {
      let n = 0n;
      for (const r of set.runs()) n += big.countUpTo(r.last) - big.countUpTo(r.first - 1n);
      return n;
    }
    if (this.#num.size === 0) return 0n;
    // Each term is at most the set's size, which number mode keeps below 2^53: the sum is exact.
    let n = 0;
    for (const r of set.runs())
      n += this.#num.countUpTo(this.#q(r.last)) - this.#num.countUpTo(this.#q(r.first - 1n));
    return BigInt(n);
  }

  /** The runs of consecutive used addresses, ascending. */
  *runs(): IterableIterator<Run> {
    if (this.#big !== undefined) {
      yield* this.#big.runs();
      return;
    }
    const base = this.#base;
    for (const r of this.#num.runs()) yield { first: base + BigInt(r.first), last: base + BigInt(r.last) };
  }

  /** Every used address, ascending. (Per address by nature: only as long as the set itself.) */
  *values(): IterableIterator<bigint> {
    for (const r of this.runs()) {
      for (let v = r.first; v <= r.last; v++) yield v;
    }
  }

  /** A snapshot as an immutable `IntervalSet`. O(runs). */
  toIntervalSet(): IntervalSet {
    return IntervalSet.of(this.family, this.runs());
  }

  /** For messages: `3 used in 2 runs: 10.0.0.1-10.0.0.2,10.0.0.9`. Lists at most `limit` runs. */
  describe(limit = 8): string {
    const parts: string[] = [];
    let runs = 0;
    for (const r of this.runs()) {
      if (runs++ < limit) {
        const a = formatValue(this.family, r.first);
        parts.push(r.first === r.last ? a : `${a}-${formatValue(this.family, r.last)}`);
      }
    }
    const more = runs > limit ? `,... (${runs - limit} more)` : '';
    return `${this.size()} used in ${runs} run${runs === 1 ? '' : 's'}${runs ? ': ' : ''}${parts.join(',')}${more}`;
  }
}

/**
 * The next address that is in `allowed` and not in `used`, searching from `from` (inclusive) upward,
 * then wrapping around to `allowed`'s start once — so a cursor just past the last allocation hands
 * out addresses round-robin, and a released address is not reused until the range has been run
 * through. `from` may lie anywhere, inside `allowed` or not.
 *
 * Each step either returns or jumps past a whole run of used addresses (`nextUnused`) or a whole gap
 * of `allowed` (`ceil`), so the cost is O((runs stepped over) × log runs), independent of how many
 * addresses those runs hold.
 * @returns undefined when every allowed address is used.
 * @throws NetError when the two sets are of different families.
 */
export function nextFree(allowed: IntervalSet, used: UsedSet, from: bigint): bigint | undefined {
  if (allowed.family !== used.family) {
    throw new NetError(
      `cannot search an ${familyName(allowed.family)} pool with an ${familyName(used.family)} used set`,
    );
  }
  const lo = allowed.min();
  if (lo === undefined) return undefined;
  const found = firstFreeIn(allowed, used, from < lo ? lo : from, allowed.max()!);
  if (found !== undefined || from <= lo) return found;
  return firstFreeIn(allowed, used, lo, from - 1n);
}

/** The first address in [lo, hi] that is allowed and unused, or undefined. */
function firstFreeIn(allowed: IntervalSet, used: UsedSet, lo: bigint, hi: bigint): bigint | undefined {
  let c = lo;
  for (;;) {
    const a = allowed.ceil(c);
    if (a === undefined || a > hi) return undefined;
    const f = used.nextUnused(a);
    if (f === a) return a;
    c = f;
  }
}
