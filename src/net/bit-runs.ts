/**
 * @module net/bit-runs
 * The IPv4 address store under `UsedSet`: the addresses cut into aligned chunks of CHUNK (1,024),
 * each chunk held the way its fill makes cheapest.
 *
 * ```
 *   chunk index:  0            1            2  ...  9        10           11
 *   held as:      bitmap       whole        whole   whole    bitmap       (absent: no member)
 *                              └──── one run in #full ────┘
 * ```
 *
 * - A bitmap chunk has CHUNK bits in a slot of one shared slab (`#bits`), found through a two-level
 *   directory (`#dir`) and counted in `#n`; its index is in `#bitmaps`.
 * - A whole chunk (every address a member) has no bitmap: its index is in `#full`, a `NumberRuns`
 *   of chunk indexes, so a run of 15 million addresses costs one run there, not 15,000 bitmaps.
 *   Runs loaded whole (`fromRuns`) start so; a bitmap chunk filled address by address stays a bitmap
 *   until `nextUnused` steps over the whole of it, and a release inside a whole chunk makes it a
 *   bitmap again. (Turning every chunk whole the moment it filled cost a slot and two run updates
 *   each way as the allocation cursor filled chunks and releases reopened them: 120 against 94–102
 *   ns per cycle in a 90%-full /8.)
 * - An empty chunk is nowhere.
 *
 * Why bitmaps. The allocation cycle takes the first free address after a cursor, marks it used, and
 * releases another anywhere in the pool. With runs alone (`NumberRuns`, still under the IPv6
 * windows), each lookup at a random place is two binary searches among the pool's thousands of
 * runs, whose unpredictable branches made a 90%-full /16 run at 0.48× a /28 (172 against 82 ns per
 * cycle of these four operations on numbers; `UsedSet` adds its own ~70 ns). Here the same lookups
 * are a directory read and a few word operations: 51–59 ns for the /28, 52–58 for the /16. The
 * run lists of chunk indexes are read only where the directory cannot answer: `ceil` past the end
 * of a chunk looks at the next chunk through the directory first. (It went straight to the lists'
 * binary searches. The bench's set cycle once released the first used address after one of 4,096
 * fixed random points, which widened the holes there to hundreds of addresses in a 90%-full /8, and
 * 37% of its lookups went that way: that, not the 2 MB of bitmaps, held that /8 at 0.48× the /28;
 * 0.70× after this change. Releasing uniformly chosen addresses, as the bench does now and pods do,
 * the /8 runs at 0.85–0.88× the /28 with every one of its bitmaps in use. Scratch
 * `.scratch/set9.ts`, 2026-12-07.)
 *
 * Memory: a bitmap chunk costs 128 bytes of slab, 4 of count and (per 2^20 addresses touched) a 4 KB
 * directory leaf, so a dense pool costs about a bit per address and scattered claims at most ~140
 * bytes each. IPv6 keeps runs: a /64 spread over thousands of windows would need a directory and a
 * slab per window, and cost more than it gained (measured: 1.8 → 0.8 million cycles/s).
 *
 * Members are IPv4 addresses (integers 0..2^32-1); a query may be any integer in ±(2^53 - 2) or
 * ±Infinity, and whatever lies outside 0..2^32-1 is no member.
 */
import { NumberRuns } from './run-blocks.ts';

/** Addresses per chunk: a power of two (the bit operations below assume 32-bit words). */
export const CHUNK = 1024;
const WORDS = CHUNK / 32;
/** Chunks of the IPv4 space (2^32 / CHUNK): chunk indexes are 0..CHUNKS-1. */
const CHUNKS = 2 ** 32 / CHUNK;
/** Chunk indexes per leaf of the slot directory: 2^LEAF_BITS. */
const LEAF_BITS = 10;
const LEAF = 1 << LEAF_BITS;

/** The slot directory's top level of a set with no bitmap yet: shared, never written. */
const NO_LEAVES: (Int32Array | undefined)[] = new Array<Int32Array | undefined>(CHUNKS / LEAF).fill(
  undefined,
);

/** The index of the lowest set bit of a non-zero 32-bit word. */
function lowBit(x: number): number {
  return 31 - Math.clz32(x & -x);
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

// The bitmap helpers take the slab and the chunk's first word `at`; offsets are 0..CHUNK-1.

/** The first clear bit at or after `o`, or CHUNK. */
function nextZero(bits: Int32Array, at: number, o: number): number {
  let w = o >>> 5;
  let x = ~bits[at + w]! & (-1 << (o & 31));
  while (x === 0) {
    if (++w === WORDS) return CHUNK;
    x = ~bits[at + w]!;
  }
  return (w << 5) + lowBit(x);
}

/** The first set bit at or after `o`, or CHUNK. */
function nextOne(bits: Int32Array, at: number, o: number): number {
  let w = o >>> 5;
  let x = bits[at + w]! & (-1 << (o & 31));
  while (x === 0) {
    if (++w === WORDS) return CHUNK;
    x = bits[at + w]!;
  }
  return (w << 5) + lowBit(x);
}

/** The last set bit of a chunk that has one. */
function lastOne(bits: Int32Array, at: number): number {
  let w = WORDS - 1;
  while (bits[at + w] === 0) w--;
  return (w << 5) + 31 - Math.clz32(bits[at + w]!);
}

/** Set bits at or below `o`. */
function countTo(bits: Int32Array, at: number, o: number): number {
  const last = o >>> 5;
  let n = 0;
  for (let w = 0; w < last; w++) n += popcount(bits[at + w]!);
  const r = o & 31;
  return n + popcount(r === 31 ? bits[at + last]! : bits[at + last]! & ((1 << (r + 1)) - 1));
}

/** Sets bits lo..hi (inclusive), which are clear. */
function setRange(bits: Int32Array, at: number, lo: number, hi: number): void {
  for (let w = lo >>> 5; w <= hi >>> 5; w++) {
    const from = w === lo >>> 5 ? lo & 31 : 0;
    const to = w === hi >>> 5 ? hi & 31 : 31;
    bits[at + w]! |= (to === 31 ? -1 : (1 << (to + 1)) - 1) & (-1 << from);
  }
}

/** Canonical runs (ascending, not touching) of a sorted list of integers. */
function runsOf(xs: readonly number[]): { first: number; last: number }[] {
  const out: { first: number; last: number }[] = [];
  for (const x of xs) {
    const l = out[out.length - 1];
    if (l !== undefined && l.last + 1 === x) l.last = x;
    else out.push({ first: x, last: x });
  }
  return out;
}

export class BitRuns {
  /**
   * Bitmap chunks: chunk index c -> slot + 1 (0: none) at `#dir[c / LEAF][c % LEAF]`, a leaf made
   * when a chunk in it first needs a slot. The top level (32 KB, its entries in place so that V8
   * keeps it a plain array) is a shared empty one until the first leaf. Slot k's bitmap is
   * `#bits[k * WORDS .. k * WORDS + WORDS - 1]`.
   */
  #dir = NO_LEAVES;
  #bits = new Int32Array(WORDS);
  /** Members per slot: 1..CHUNK while in use (a bitmap chunk may be whole; see the module note). */
  #n = new Int32Array(1);
  /** Slots not in use. */
  #free: number[] = [0];
  /** Indexes of the bitmap chunks. */
  #bitmaps = new NumberRuns();
  /** Indexes of the whole chunks. */
  #full = new NumberRuns();
  #size = 0;
  /**
   * The two chunks `#slot` found last and their slots, tried first: the allocation cursor's chunk
   * (its next free address is taken, then marked used) and the chunk of the last release.
   */
  #lc = NaN;
  #ls = -1;
  #lc2 = NaN;
  #ls2 = -1;
  /** The bitmap chunks' indexes, ascending, and the members in the ones before each; rebuilt after a change. */
  #cumIdx: number[] | undefined;
  #cum: number[] = [];

  /** Builds from canonical runs (ascending, non-touching), as `IntervalSet` produces them. */
  static fromRuns(runs: readonly { first: number; last: number }[]): BitRuns {
    const out = new BitRuns();
    const full: { first: number; last: number }[] = [];
    const partial: number[] = [];
    const bitsOf = (c: number, lo: number, hi: number): void => {
      let k = out.#slot(c);
      if (k < 0) {
        k = out.#take(c, 0);
        partial.push(c);
      }
      setRange(out.#bits, k * WORDS, lo, hi);
      out.#n[k]! += hi - lo + 1;
    };
    for (const r of runs) {
      out.#size += r.last - r.first + 1;
      const cf = Math.floor(r.first / CHUNK);
      const cl = Math.floor(r.last / CHUNK);
      let lo = cf;
      let hi = cl;
      if (r.first !== cf * CHUNK) {
        bitsOf(cf, r.first - cf * CHUNK, cf === cl ? r.last - cf * CHUNK : CHUNK - 1);
        lo = cf + 1;
      }
      if (cl >= lo && r.last !== cl * CHUNK + CHUNK - 1) {
        bitsOf(cl, 0, r.last - cl * CHUNK);
        hi = cl - 1;
      }
      if (lo <= hi) {
        const l = full[full.length - 1];
        if (l !== undefined && l.last + 1 === lo) l.last = hi;
        else full.push({ first: lo, last: hi });
      }
    }
    // Runs never touch, so no chunk is filled by two of them: a chunk is whole only through one run.
    out.#bitmaps = NumberRuns.fromRuns(runsOf(partial));
    out.#full = NumberRuns.fromRuns(full);
    return out;
  }

  get size(): number {
    return this.#size;
  }

  /** O(runs): counted by walking them. */
  get runCount(): number {
    let n = 0;
    for (const _ of this.runs()) n++;
    return n;
  }

  /** The smallest member, or undefined when empty. */
  min(): number | undefined {
    const p = this.#bitmaps.min();
    const f = this.#full.min();
    if (p === undefined) return f === undefined ? undefined : f * CHUNK;
    if (f !== undefined && f < p) return f * CHUNK;
    return p * CHUNK + nextOne(this.#bits, this.#slot(p) * WORDS, 0);
  }

  /** The largest member, or undefined when empty. */
  max(): number | undefined {
    const p = this.#bitmaps.max();
    const f = this.#full.max();
    if (p === undefined) return f === undefined ? undefined : f * CHUNK + CHUNK - 1;
    if (f !== undefined && f > p) return f * CHUNK + CHUNK - 1;
    return p * CHUNK + lastOne(this.#bits, this.#slot(p) * WORDS);
  }

  /** The slot of bitmap chunk `c`, or -1. */
  #slot(c: number): number {
    if (c === this.#lc) return this.#ls;
    if (c === this.#lc2) {
      const k = this.#ls2;
      this.#lc2 = this.#lc;
      this.#ls2 = this.#ls;
      this.#lc = c;
      this.#ls = k;
      return k;
    }
    // Not an integer in 0..CHUNKS-1 (below 0, past the top, ±Infinity): no chunk.
    if (!(c >= 0 && c < CHUNKS)) return -1;
    const leaf = this.#dir[c >>> LEAF_BITS];
    if (leaf === undefined) return -1;
    const k = leaf[c & (LEAF - 1)]! - 1;
    if (k >= 0) this.#remember(c, k);
    return k;
  }

  #remember(c: number, k: number): void {
    this.#lc2 = this.#lc;
    this.#ls2 = this.#ls;
    this.#lc = c;
    this.#ls = k;
  }

  /** Records chunk c's slot (k + 1; 0 for none). */
  #setSlot(c: number, k1: number): void {
    if (this.#dir === NO_LEAVES) this.#dir = NO_LEAVES.slice();
    let leaf = this.#dir[c >>> LEAF_BITS];
    if (leaf === undefined) {
      leaf = new Int32Array(LEAF);
      this.#dir[c >>> LEAF_BITS] = leaf;
    }
    leaf[c & (LEAF - 1)] = k1;
  }

  /** A slot for chunk `c`, its bits all `fill` (0 or -1); the caller sets its count and `#bitmaps`. */
  #take(c: number, fill: 0 | -1): number {
    let k = this.#free.pop();
    if (k === undefined) {
      // Double the slab; the new slots go on the free list, highest first, so the lowest is taken.
      k = this.#n.length;
      const bits = new Int32Array(2 * k * WORDS);
      bits.set(this.#bits);
      this.#bits = bits;
      const n = new Int32Array(2 * k);
      n.set(this.#n);
      this.#n = n;
      for (let j = 2 * k - 1; j > k; j--) this.#free.push(j);
    }
    this.#bits.fill(fill, k * WORDS, k * WORDS + WORDS);
    this.#setSlot(c, k + 1);
    this.#remember(c, k);
    return k;
  }

  /** Chunk `c` is no longer a bitmap (emptied, or kept whole). */
  #release(c: number, k: number): void {
    this.#setSlot(c, 0);
    this.#bitmaps.delete(c);
    this.#free.push(k);
    this.#n[k] = 0;
    if (c === this.#lc) {
      this.#lc = this.#lc2;
      this.#ls = this.#ls2;
    }
    this.#lc2 = NaN;
    this.#ls2 = -1;
  }

  has(v: number): boolean {
    const c = Math.floor(v / CHUNK);
    const k = this.#slot(c);
    if (k < 0) return this.#full.has(c);
    const o = v - c * CHUNK;
    return (this.#bits[k * WORDS + (o >>> 5)]! & (1 << (o & 31))) !== 0;
  }

  /** @returns false when `v` was already a member. */
  add(v: number): boolean {
    const c = Math.floor(v / CHUNK);
    let k = this.#slot(c);
    if (k < 0) {
      if (this.#full.has(c)) return false;
      k = this.#take(c, 0);
      this.#bitmaps.add(c);
    }
    const o = v - c * CHUNK;
    const i = k * WORDS + (o >>> 5);
    const m = 1 << (o & 31);
    const bits = this.#bits;
    const x = bits[i]!;
    if ((x & m) !== 0) return false;
    bits[i] = x | m;
    this.#n[k]!++;
    this.#size++;
    this.#cumIdx = undefined;
    return true;
  }

  /** @returns false when `v` was not a member. */
  delete(v: number): boolean {
    const c = Math.floor(v / CHUNK);
    let k = this.#slot(c);
    if (k < 0) {
      if (!this.#full.delete(c)) return false;
      k = this.#take(c, -1);
      this.#n[k] = CHUNK;
      this.#bitmaps.add(c);
    }
    const o = v - c * CHUNK;
    const i = k * WORDS + (o >>> 5);
    const m = 1 << (o & 31);
    const bits = this.#bits;
    const x = bits[i]!;
    if ((x & m) === 0) return false;
    bits[i] = x & ~m;
    if (--this.#n[k]! === 0) this.#release(c, k);
    this.#size--;
    this.#cumIdx = undefined;
    return true;
  }

  /** The smallest non-member `>= v`. */
  nextUnused(v: number): number {
    // At most a bitmap chunk's used tail, a run of whole chunks, then a chunk with a free value.
    for (;;) {
      const c = Math.floor(v / CHUNK);
      const k = this.#slot(c);
      if (k >= 0) {
        const base = c * CHUNK;
        const from = v - base;
        const o = nextZero(this.#bits, k * WORDS, from);
        if (o < CHUNK) return base + o;
        if (from === 0) {
          // Stepped over whole: kept as a whole chunk from now on, so the next step over it (and
          // its whole neighbours) is one run lookup.
          this.#release(c, k);
          this.#full.add(c);
          this.#cumIdx = undefined;
        }
        v = base + CHUNK;
      } else {
        const f = this.#full.nextUnused(c);
        if (f === c) return v;
        v = f * CHUNK;
      }
    }
  }

  /** The smallest member `>= v`, or undefined. */
  ceil(v: number): number | undefined {
    const c = Math.floor(v / CHUNK);
    const k = this.#slot(c);
    if (k >= 0) {
      const base = c * CHUNK;
      const o = nextOne(this.#bits, k * WORDS, v - base);
      if (o < CHUNK) return base + o;
    } else if (this.#full.has(c)) {
      return v;
    }
    // The first member of the next chunk that has one: mostly the very next chunk, a bitmap, found
    // through the directory without the run lists' binary searches.
    const k1 = this.#slot(c + 1);
    if (k1 >= 0) return (c + 1) * CHUNK + nextOne(this.#bits, k1 * WORDS, 0);
    const p = this.#bitmaps.ceil(c + 1);
    const f = this.#full.ceil(c + 1);
    if (p === undefined) return f === undefined ? undefined : f * CHUNK;
    if (f !== undefined && f < p) return f * CHUNK;
    return p * CHUNK + nextOne(this.#bits, this.#slot(p) * WORDS, 0);
  }

  /** Number of members `<= x`. O(log runs + CHUNK/32), plus O(bitmap chunks) once after a change. */
  countUpTo(x: number): number {
    const c = Math.floor(x / CHUNK);
    let n = this.#full.countUpTo(c - 1) * CHUNK;
    if (this.#cumIdx === undefined) {
      const idx: number[] = [];
      const cum: number[] = [];
      let total = 0;
      for (const r of this.#bitmaps.runs()) {
        for (let j = r.first; j <= r.last; j++) {
          idx.push(j);
          cum.push(total);
          total += this.#n[this.#slot(j)]!;
        }
      }
      idx.push(Infinity);
      cum.push(total);
      this.#cumIdx = idx;
      this.#cum = cum;
    }
    // The first bitmap chunk at or after c: the members of those before it.
    const idx = this.#cumIdx;
    let lo = 0;
    let hi = idx.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (idx[mid]! < c) lo = mid + 1;
      else hi = mid;
    }
    n += this.#cum[lo]!;
    const k = this.#slot(c);
    if (k >= 0) n += countTo(this.#bits, k * WORDS, x - c * CHUNK);
    else if (this.#full.has(c)) n += x - c * CHUNK + 1;
    return n;
  }

  /** The maximal runs, ascending. */
  *runs(): IterableIterator<{ first: number; last: number }> {
    let open = false;
    let first = 0;
    let last = 0;
    for (const p of this.#pieces()) {
      if (open && last + 1 === p.first) {
        last = p.last;
        continue;
      }
      if (open) yield { first, last };
      open = true;
      first = p.first;
      last = p.last;
    }
    if (open) yield { first, last };
  }

  /**
   * Runs of members within each chunk and of whole chunks, ascending; touching ones not joined.
   * Works on a copy of the chunk lists: a `nextUnused` while iterating may turn a bitmap chunk
   * into a whole one (the members stay the same), which is then read as whole.
   */
  *#pieces(): IterableIterator<{ first: number; last: number }> {
    const full = [...this.#full.runs()];
    const partial = [...this.#bitmaps.runs()];
    let f = 0;
    for (const r of partial) {
      for (let c = r.first; c <= r.last; c++) {
        for (; f < full.length && full[f]!.first < c; f++) {
          yield { first: full[f]!.first * CHUNK, last: full[f]!.last * CHUNK + CHUNK - 1 };
        }
        const base = c * CHUNK;
        const k = this.#slot(c);
        if (k < 0) {
          yield { first: base, last: base + CHUNK - 1 };
          continue;
        }
        const bits = this.#bits;
        const at = k * WORDS;
        let o = nextOne(bits, at, 0);
        while (o < CHUNK) {
          const end = nextZero(bits, at, o);
          yield { first: base + o, last: base + end - 1 };
          o = end < CHUNK ? nextOne(bits, at, end) : CHUNK;
        }
      }
    }
    for (; f < full.length; f++) {
      yield { first: full[f]!.first * CHUNK, last: full[f]!.last * CHUNK + CHUNK - 1 };
    }
  }
}
