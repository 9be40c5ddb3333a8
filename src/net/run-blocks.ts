/**
 * @module net/run-blocks
 * The mutable run store under `UsedSet`: a sorted set of maximal runs of consecutive integers, in a
 * two-level sorted list so that lookups are two binary searches and an insert or removal shifts at
 * most BLOCK_MAX entries, however many runs there are.
 *
 * ```
 *   mins:    [ 10          , 900            , ... ]      first start of each block
 *   blocks:  [ {starts: [10, 40, 77, ...],               up to BLOCK_MAX runs each;
 *               ends:   [12, 60, 80, ...],               run k is [starts[k], ends[k]]
 *               size:   3 + 21 + 4 + ...},               members in the block
 *              {starts: [900, ...], ...}, ... ]
 * ```
 *
 * Invariants: runs ascend across blocks and never touch (`end + 1 < next start`, also across a block
 * boundary), so the integer after a run's end is never a member; no block is empty.
 *
 * Values are plain doubles (unboxed, compared in one instruction). `UsedSet` keeps every value and
 * every query within [-(2^53 - 2), 2^53 - 2] — IPv4 addresses, or offsets inside one 2^52-address
 * window of IPv6 — so that `x + 1` and every size stay exact; a query may also be ±Infinity.
 */

/** Runs per block before it splits in half. Small enough that a shift is a short memmove. */
export const BLOCK_MAX = 128;
/** Two neighbouring blocks whose runs fit in this many are merged after a removal. */
export const BLOCK_MERGE = BLOCK_MAX / 2;

/**
 * An empty array in V8's unboxed-double form, which it keeps whatever numbers it later holds. Every
 * array here starts so: small integers (IPv4) would otherwise make small-integer arrays and large
 * ones (IPv6 window offsets) double arrays, and code that sees both kinds is slower for both.
 */
function doubles(): number[] {
  const xs = [0.5];
  xs.pop();
  return xs;
}

/** `[x]`, in double form. */
function doubles1(x: number): number[] {
  const xs = [0.5];
  xs[0] = x;
  return xs;
}

/** Largest k with xs[k] <= v, or -1. */
function lastAtOrBelowN(xs: readonly number[], v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

function insertAtN(xs: number[], i: number, x: number): void {
  let j = xs.length;
  xs.push(x);
  for (; j > i; j--) xs[j] = xs[j - 1]!;
  xs[i] = x;
}

function removeAtN(xs: number[], i: number): void {
  const n = xs.length - 1;
  for (let j = i; j < n; j++) xs[j] = xs[j + 1]!;
  xs.pop();
}

interface NumberBlock {
  starts: number[];
  ends: number[];
  size: number;
}

/**
 * Runs of integers held as doubles. Callers keep every member and every query within
 * ±(2^53 - 2), so that `x + 1` and all sizes stay exact.
 */
export class NumberRuns {
  #blocks: NumberBlock[] = [];
  #mins: number[] = doubles();
  #size = 0;
  /** `#cum[b]` = members in blocks before `b`; rebuilt on demand after a change. */
  #cum: number[] | undefined;
  /** The run `#locate` found last (run `#fi` of block `#fb`): tried before searching. */
  #fb = 0;
  #fi = 0;

  /** Builds from canonical runs (ascending, non-touching), as `IntervalSet` produces them. */
  static fromRuns(runs: readonly { first: number; last: number }[]): NumberRuns {
    const out = new NumberRuns();
    for (let k = 0; k < runs.length; k += BLOCK_MERGE) {
      const blk: NumberBlock = { starts: doubles(), ends: doubles(), size: 0 };
      for (const r of runs.slice(k, k + BLOCK_MERGE)) {
        blk.starts.push(r.first);
        blk.ends.push(r.last);
        blk.size += r.last - r.first + 1;
      }
      out.#blocks.push(blk);
      out.#mins.push(blk.starts[0]!);
      out.#size += blk.size;
    }
    return out;
  }

  get size(): number {
    return this.#size;
  }

  get runCount(): number {
    let n = 0;
    for (const b of this.#blocks) n += b.starts.length;
    return n;
  }

  /** The smallest member, or undefined when empty. */
  min(): number | undefined {
    return this.#blocks[0]?.starts[0];
  }

  /** The largest member, or undefined when empty. */
  max(): number | undefined {
    const blk = this.#blocks[this.#blocks.length - 1];
    return blk === undefined ? undefined : blk.ends[blk.ends.length - 1];
  }

  /**
   * The block of the run with the largest start `<= v`, leaving the run's index in the block in
   * `#fi`; -1 when `v` is below every run. The run found last is tried first — an add or delete
   * mostly follows a lookup of the same place — and is right whenever `v` lies between its start and
   * the next run's start, however the runs changed since; else two binary searches.
   */
  #locate(v: number): number {
    const blocks = this.#blocks;
    const b = this.#fb;
    if (b < blocks.length) {
      const starts = blocks[b]!.starts;
      const i = this.#fi;
      if (
        i < starts.length &&
        starts[i]! <= v &&
        (i + 1 < starts.length ? v < starts[i + 1]! : b + 1 === blocks.length || v < this.#mins[b + 1]!)
      ) {
        return b;
      }
    }
    const nb = lastAtOrBelowN(this.#mins, v);
    if (nb < 0) return -1;
    this.#fb = nb;
    this.#fi = lastAtOrBelowN(blocks[nb]!.starts, v);
    return nb;
  }

  has(v: number): boolean {
    const b = this.#locate(v);
    return b >= 0 && this.#blocks[b]!.ends[this.#fi]! >= v;
  }

  /** @returns false when `v` was already a member. */
  add(v: number): boolean {
    const blocks = this.#blocks;
    const b = this.#locate(v);
    if (b < 0) {
      // Below every run (or empty).
      const first = blocks[0];
      if (first === undefined) {
        blocks.push({ starts: doubles1(v), ends: doubles1(v), size: 1 });
        this.#mins.push(v);
      } else {
        if (first.starts[0] === v + 1) {
          first.starts[0] = v;
        } else {
          insertAtN(first.starts, 0, v);
          insertAtN(first.ends, 0, v);
        }
        first.size++;
        this.#mins[0] = v;
        this.#splitIfFull(0);
      }
    } else {
      const blk = blocks[b]!;
      const i = this.#fi;
      const end = blk.ends[i]!;
      if (end >= v) return false;
      // The next run, possibly the first one of the next block.
      let nb = b;
      let ni = i + 1;
      if (ni === blk.starts.length) {
        nb = b + 1;
        ni = 0;
      }
      const next = blocks[nb];
      const joinPrev = end + 1 === v;
      const joinNext = next !== undefined && next.starts[ni] === v + 1;
      if (joinPrev && joinNext) {
        // v fills a one-member gap: run i absorbs the next run.
        const nextEnd = next.ends[ni]!;
        const nextSize = nextEnd - v;
        blk.ends[i] = nextEnd;
        removeAtN(next.starts, ni);
        removeAtN(next.ends, ni);
        next.size -= nextSize;
        blk.size += nextSize + 1;
        if (next.starts.length === 0) {
          blocks.splice(nb, 1);
          this.#mins.splice(nb, 1);
        } else {
          if (ni === 0) this.#mins[nb] = next.starts[0]!;
          this.#mergeIfSmall(nb);
        }
      } else if (joinPrev) {
        blk.ends[i] = v;
        blk.size++;
      } else if (joinNext) {
        next.starts[ni] = v;
        next.size++;
        if (ni === 0) this.#mins[nb] = v;
      } else {
        insertAtN(blk.starts, i + 1, v);
        insertAtN(blk.ends, i + 1, v);
        blk.size++;
        this.#splitIfFull(b);
      }
    }
    this.#size++;
    this.#cum = undefined;
    return true;
  }

  /** @returns false when `v` was not a member. */
  delete(v: number): boolean {
    const b = this.#locate(v);
    if (b < 0) return false;
    const blk = this.#blocks[b]!;
    const i = this.#fi;
    const start = blk.starts[i]!;
    const end = blk.ends[i]!;
    if (end < v) return false;
    // Count first: a merge below may fold this block into its neighbour.
    blk.size--;
    if (start === end) {
      removeAtN(blk.starts, i);
      removeAtN(blk.ends, i);
      if (blk.starts.length === 0) {
        this.#blocks.splice(b, 1);
        this.#mins.splice(b, 1);
      } else {
        if (i === 0) this.#mins[b] = blk.starts[0]!;
        this.#mergeIfSmall(b);
      }
    } else if (start === v) {
      blk.starts[i] = v + 1;
      if (i === 0) this.#mins[b] = v + 1;
    } else if (end === v) {
      blk.ends[i] = v - 1;
    } else {
      blk.ends[i] = v - 1;
      insertAtN(blk.starts, i + 1, v + 1);
      insertAtN(blk.ends, i + 1, end);
      this.#splitIfFull(b);
    }
    this.#size--;
    this.#cum = undefined;
    return true;
  }

  #splitIfFull(b: number): void {
    const blk = this.#blocks[b]!;
    if (blk.starts.length <= BLOCK_MAX) return;
    const half = blk.starts.length >>> 1;
    const starts = blk.starts.splice(half);
    const ends = blk.ends.splice(half);
    let size = 0;
    for (let k = 0; k < starts.length; k++) size += ends[k]! - starts[k]! + 1;
    blk.size -= size;
    this.#blocks.splice(b + 1, 0, { starts, ends, size });
    this.#mins.splice(b + 1, 0, starts[0]!);
  }

  /** After a run left block `b`: fold it into a neighbour when both are small, so blocks stay dense. */
  #mergeIfSmall(b: number): void {
    const blocks = this.#blocks;
    const blk = blocks[b]!;
    const after = blocks[b + 1];
    if (after !== undefined && blk.starts.length + after.starts.length <= BLOCK_MERGE) {
      blk.starts.push(...after.starts);
      blk.ends.push(...after.ends);
      blk.size += after.size;
      blocks.splice(b + 1, 1);
      this.#mins.splice(b + 1, 1);
      return;
    }
    const before = blocks[b - 1];
    if (before !== undefined && before.starts.length + blk.starts.length <= BLOCK_MERGE) {
      before.starts.push(...blk.starts);
      before.ends.push(...blk.ends);
      before.size += blk.size;
      blocks.splice(b, 1);
      this.#mins.splice(b, 1);
    }
  }

  /** The smallest non-member `>= v`: `v`, or one past the end of the run holding `v`. */
  nextUnused(v: number): number {
    const b = this.#locate(v);
    if (b < 0) return v;
    const end = this.#blocks[b]!.ends[this.#fi]!;
    return end >= v ? end + 1 : v;
  }

  /** The smallest member `>= v`, or undefined. */
  ceil(v: number): number | undefined {
    const blocks = this.#blocks;
    const b = this.#locate(v);
    if (b < 0) {
      this.#fb = 0;
      this.#fi = 0;
      return blocks[0]?.starts[0];
    }
    const blk = blocks[b]!;
    const i = this.#fi;
    if (blk.ends[i]! >= v) return v;
    // The next run's start; found there next (a delete of it mostly follows).
    if (i + 1 < blk.starts.length) {
      this.#fi = i + 1;
      return blk.starts[i + 1];
    }
    if (b + 1 === blocks.length) return undefined;
    this.#fb = b + 1;
    this.#fi = 0;
    return blocks[b + 1]!.starts[0];
  }

  /** Number of members `<= x`. O(log runs + BLOCK_MAX), plus O(blocks) once after a change. */
  countUpTo(x: number): number {
    const b = this.#locate(x);
    if (b < 0) return 0;
    if (this.#cum === undefined) {
      const cum = new Array<number>(this.#blocks.length);
      let total = 0;
      for (let k = 0; k < this.#blocks.length; k++) {
        cum[k] = total;
        total += this.#blocks[k]!.size;
      }
      this.#cum = cum;
    }
    const blk = this.#blocks[b]!;
    const i = this.#fi;
    let n = this.#cum[b]!;
    for (let k = 0; k < i; k++) n += blk.ends[k]! - blk.starts[k]! + 1;
    const end = blk.ends[i]!;
    return n + (end < x ? end : x) - blk.starts[i]! + 1;
  }

  /** The runs, ascending. */
  *runs(): IterableIterator<{ first: number; last: number }> {
    for (const blk of this.#blocks) {
      for (let k = 0; k < blk.starts.length; k++) yield { first: blk.starts[k]!, last: blk.ends[k]! };
    }
  }
}
