/**
 * @module net/interval-set
 * An immutable set of addresses of one family, held as canonical runs: sorted, non-overlapping, and
 * with adjacent runs merged, so two sets with the same members have the same runs. Every operation
 * works on runs — a /8 or a /64 costs what a /28 costs; nothing loops over the addresses of a run.
 *
 * ```
 *   runs:    [10 .. 12]   [20 .. 20]   [30 .. 39]
 *   index:    0  1  2      3            4 .. 13        nth(4) = 30, indexOf(31) = 5
 *   cum:      0            3            4            14 (= size)
 * ```
 * `cum[k]` is the number of members before run `k`; `nth` and `indexOf` binary-search it.
 */
import type { Family } from './addr.ts';
import { NetError, checkValue, familyName, formatValue } from './addr.ts';
import type { Prefix } from './prefix.ts';
import { prefixFirst, prefixLast } from './prefix.ts';
import { formatRange, parseRange } from './range.ts';

/** One run of consecutive addresses, both ends inclusive. */
export interface Run {
  readonly first: bigint;
  readonly last: bigint;
}

function byFirst(a: Run, b: Run): number {
  return a.first < b.first ? -1 : a.first > b.first ? 1 : 0;
}

export class IntervalSet {
  readonly family: Family;
  // Parallel arrays: run k is [#firsts[k], #lasts[k]]. Canonical: #lasts[k] + 1 < #firsts[k + 1].
  readonly #firsts: readonly bigint[];
  readonly #lasts: readonly bigint[];
  #runs: readonly Run[] | undefined;
  #cum: bigint[] | undefined;

  private constructor(family: Family, firsts: bigint[], lasts: bigint[]) {
    this.family = family;
    this.#firsts = firsts;
    this.#lasts = lasts;
  }

  /** The empty set of `family`. */
  static empty(family: Family): IntervalSet {
    return new IntervalSet(family, [], []);
  }

  /**
   * The set of all addresses in `ranges`, given in any order, overlapping or not.
   * @throws NetError when a range has `first > last` or an end outside the family.
   */
  static of(family: Family, ranges: Iterable<{ first: bigint; last: bigint }>): IntervalSet {
    const list: Run[] = [];
    for (const r of ranges) {
      checkValue(family, r.first);
      checkValue(family, r.last);
      if (r.first > r.last) {
        throw new NetError(
          `range ${formatValue(family, r.first)}-${formatValue(family, r.last)} is reversed (write ${formatValue(family, r.last)}-${formatValue(family, r.first)})`,
        );
      }
      list.push(r);
    }
    list.sort(byFirst);
    const firsts: bigint[] = [];
    const lasts: bigint[] = [];
    for (const r of list) {
      const n = lasts.length;
      if (n > 0 && r.first <= lasts[n - 1]! + 1n) {
        if (r.last > lasts[n - 1]!) lasts[n - 1] = r.last;
      } else {
        firsts.push(r.first);
        lasts.push(r.last);
      }
    }
    return new IntervalSet(family, firsts, lasts);
  }

  /** The whole of `p`, network and broadcast addresses included. */
  static fromPrefix(p: Prefix): IntervalSet {
    return new IntervalSet(p.family, [prefixFirst(p)], [prefixLast(p)]);
  }

  /**
   * The union of `items`, each in `parseRange` syntax (`a-b`, an address, or a CIDR).
   * @throws NetError from `parseRange`, or when an item is of the other family (naming the item).
   */
  static parse(family: Family, items: readonly string[]): IntervalSet {
    const ranges = items.map((item) => {
      const r = parseRange(item);
      if (r.family !== family) {
        throw new NetError(
          `range ${JSON.stringify(item)} is ${familyName(r.family)}, but this list holds ${familyName(family)} addresses`,
        );
      }
      return r;
    });
    return IntervalSet.of(family, ranges);
  }

  /** The canonical runs, ascending. */
  runs(): readonly Run[] {
    if (this.#runs === undefined) {
      const out: Run[] = [];
      for (let k = 0; k < this.#firsts.length; k++) {
        out.push(Object.freeze({ first: this.#firsts[k]!, last: this.#lasts[k]! }));
      }
      this.#runs = Object.freeze(out);
    }
    return this.#runs;
  }

  /** Number of runs. */
  get runCount(): number {
    return this.#firsts.length;
  }

  isEmpty(): boolean {
    return this.#firsts.length === 0;
  }

  /** Number of addresses. */
  size(): bigint {
    return this.#cumulative()[this.#firsts.length]!;
  }

  /** The lowest member, or undefined when empty. */
  min(): bigint | undefined {
    return this.#firsts[0];
  }

  /** The highest member, or undefined when empty. */
  max(): bigint | undefined {
    return this.#lasts[this.#lasts.length - 1];
  }

  /** Index of the run containing `v`, or -1. O(log runs). */
  #runOf(v: bigint): number {
    // Largest k with firsts[k] <= v.
    let lo = 0;
    let hi = this.#firsts.length - 1;
    let k = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#firsts[mid]! <= v) {
        k = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return k >= 0 && this.#lasts[k]! >= v ? k : -1;
  }

  /** Whether `v` is a member. O(log runs). */
  contains(v: bigint): boolean {
    return this.#runOf(v) >= 0;
  }

  /** The smallest member `>= v`, or undefined. O(log runs). */
  ceil(v: bigint): bigint | undefined {
    // Smallest k with lasts[k] >= v.
    let lo = 0;
    let hi = this.#lasts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#lasts[mid]! < v) lo = mid + 1;
      else hi = mid;
    }
    if (lo === this.#lasts.length) return undefined;
    const f = this.#firsts[lo]!;
    return f > v ? f : v;
  }

  /** The largest member `<= v`, or undefined. O(log runs). */
  floor(v: bigint): bigint | undefined {
    // Largest k with firsts[k] <= v.
    let lo = 0;
    let hi = this.#firsts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#firsts[mid]! <= v) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) return undefined;
    const l = this.#lasts[lo - 1]!;
    return l < v ? l : v;
  }

  #sameFamily(o: IntervalSet, op: string): void {
    if (o.family !== this.family) {
      throw new NetError(
        `cannot ${op} an ${familyName(this.family)} set with an ${familyName(o.family)} set`,
      );
    }
  }

  /** Members of either set. O(runs). @throws NetError when the families differ. */
  union(o: IntervalSet): IntervalSet {
    this.#sameFamily(o, 'union');
    if (o.isEmpty()) return this;
    if (this.isEmpty()) return o;
    const af = this.#firsts;
    const al = this.#lasts;
    const bf = o.#firsts;
    const bl = o.#lasts;
    const firsts: bigint[] = [];
    const lasts: bigint[] = [];
    let i = 0;
    let j = 0;
    while (i < af.length || j < bf.length) {
      let f: bigint;
      let l: bigint;
      if (j >= bf.length || (i < af.length && af[i]! <= bf[j]!)) {
        f = af[i]!;
        l = al[i++]!;
      } else {
        f = bf[j]!;
        l = bl[j++]!;
      }
      const n = lasts.length;
      if (n > 0 && f <= lasts[n - 1]! + 1n) {
        if (l > lasts[n - 1]!) lasts[n - 1] = l;
      } else {
        firsts.push(f);
        lasts.push(l);
      }
    }
    return new IntervalSet(this.family, firsts, lasts);
  }

  /** Members of this set that are not in `o`. O(runs). @throws NetError when the families differ. */
  difference(o: IntervalSet): IntervalSet {
    this.#sameFamily(o, 'subtract');
    if (o.isEmpty() || this.isEmpty()) return this;
    const bf = o.#firsts;
    const bl = o.#lasts;
    const firsts: bigint[] = [];
    const lasts: bigint[] = [];
    let j = 0;
    for (let i = 0; i < this.#firsts.length; i++) {
      let f = this.#firsts[i]!;
      const l = this.#lasts[i]!;
      // Skip the runs of `o` that end before this run starts; they cannot touch later runs either.
      while (j < bf.length && bl[j]! < f) j++;
      // Cut out each run of `o` that overlaps [f, l]; the last one may also overlap the next run.
      let k = j;
      while (k < bf.length && bf[k]! <= l && f <= l) {
        if (bf[k]! > f) {
          firsts.push(f);
          lasts.push(bf[k]! - 1n);
        }
        if (bl[k]! >= l) {
          f = l + 1n; // the rest of this run is covered
          break;
        }
        f = bl[k]! + 1n;
        k++;
      }
      j = k;
      if (f <= l) {
        firsts.push(f);
        lasts.push(l);
      }
    }
    return new IntervalSet(this.family, firsts, lasts);
  }

  /** Members of both sets. O(runs). @throws NetError when the families differ. */
  intersect(o: IntervalSet): IntervalSet {
    this.#sameFamily(o, 'intersect');
    const af = this.#firsts;
    const al = this.#lasts;
    const bf = o.#firsts;
    const bl = o.#lasts;
    const firsts: bigint[] = [];
    const lasts: bigint[] = [];
    let i = 0;
    let j = 0;
    while (i < af.length && j < bf.length) {
      const f = af[i]! > bf[j]! ? af[i]! : bf[j]!;
      const l = al[i]! < bl[j]! ? al[i]! : bl[j]!;
      if (f <= l) {
        firsts.push(f);
        lasts.push(l);
      }
      // Pieces come out canonical: between two of them lies an address missing from one input.
      if (al[i]! < bl[j]!) i++;
      else j++;
    }
    return new IntervalSet(this.family, firsts, lasts);
  }

  /** Whether every member of this set is in `o`. O(runs). @throws NetError when the families differ. */
  isSubsetOf(o: IntervalSet): boolean {
    return this.difference(o).isEmpty();
  }

  /** Whether the sets share a member. O(runs). @throws NetError when the families differ. */
  overlaps(o: IntervalSet): boolean {
    return !this.intersect(o).isEmpty();
  }

  /** `cum[k]` = members in runs before `k`; `cum[runCount]` = size. Built once, on first need. */
  #cumulative(): bigint[] {
    if (this.#cum === undefined) {
      const cum = new Array<bigint>(this.#firsts.length + 1);
      let total = 0n;
      cum[0] = 0n;
      for (let k = 0; k < this.#firsts.length; k++) {
        total += this.#lasts[k]! - this.#firsts[k]! + 1n;
        cum[k + 1] = total;
      }
      this.#cum = cum;
    }
    return this.#cum;
  }

  /** The `i`-th member in ascending order (0-based), or undefined when `i` is out of range. O(log runs). */
  nth(i: bigint): bigint | undefined {
    const cum = this.#cumulative();
    if (i < 0n || i >= cum[this.#firsts.length]!) return undefined;
    // Largest k with cum[k] <= i; k < runCount because i < size.
    let lo = 0;
    let hi = this.#firsts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (cum[mid]! <= i) lo = mid;
      else hi = mid - 1;
    }
    return this.#firsts[lo]! + (i - cum[lo]!);
  }

  /** The position of `v` among the members (0-based), or undefined when `v` is not a member. O(log runs). */
  indexOf(v: bigint): bigint | undefined {
    const k = this.#runOf(v);
    if (k < 0) return undefined;
    return this.#cumulative()[k]! + (v - this.#firsts[k]!);
  }

  /** Same family and same members. */
  equals(o: IntervalSet): boolean {
    if (o.family !== this.family || o.#firsts.length !== this.#firsts.length) return false;
    for (let k = 0; k < this.#firsts.length; k++) {
      if (o.#firsts[k] !== this.#firsts[k] || o.#lasts[k] !== this.#lasts[k]) return false;
    }
    return true;
  }

  /** Each run in `formatRange` form: `10.0.0.5`, `10.0.0.7-10.0.0.9`. */
  toStrings(): string[] {
    const out: string[] = [];
    for (let k = 0; k < this.#firsts.length; k++) {
      out.push(formatRange({ family: this.family, first: this.#firsts[k]!, last: this.#lasts[k]! }));
    }
    return out;
  }

  /** `toStrings()` joined by commas, for messages and logs. */
  toString(): string {
    return this.toStrings().join(',');
  }
}
