/**
 * @module net/used-set
 * The addresses currently claimed in one network and family, shaped for the allocation hot path.
 *
 * `nextFree` steps over a long run of used addresses in a few lookups, not a probe per address, and
 * adding or releasing an address costs O(log runs) at most, however large the pool or the set.
 *
 * Representation. IPv4: one `BitRuns` of the addresses themselves (`bit-runs.ts`: bitmaps of 1,024
 * addresses, and runs of whole ones), so that an address at a random place is found in a few word
 * operations. IPv6: maximal runs of consecutive used addresses (`run-blocks.ts`), in windows: the
 * address space is cut into windows of 2^52 addresses, aligned on multiples of 2^52, and an address
 * is split into three doubles: the window's key (a, b) — a = bits 104..127, b = bits 52..103 — and
 * the offset in the window, bits 0..51. A sorted list of segments, keyed by their first window,
 * holds the members:
 *
 * ```
 *   key (a, b):  (0xfd0000, 0)           (0xfd0000, 1)               (0xfd0000, 3)
 *   segments:    [window: NumberRuns of  [full: windows 1 to 2,      [window: ...]
 *                 offsets 0..2^52-1]      every address used]
 * ```
 *
 * - A window segment holds the members of one window as offsets in a `NumberRuns`: never empty,
 *   never the whole window.
 * - A full segment is a span of whole windows, every address of them used, so a run of 2^63
 *   addresses costs three segments (its partial first window, the full span, its partial last
 *   window), not 2^11. Two full segments are never adjacent.
 *
 * A run crossing a window boundary is thus cut there; `runs()`, `runCount` and `nextUnused` join the
 * pieces again, so callers see the maximal runs as before. There are at most three segments per run,
 * so every cost is bounded by the number of runs, never by the number of windows a run covers.
 *
 * Speed. The two window segments used last are cached with their bounds: an address in one of them
 * costs two bigint comparisons and a `BigUint64Array` store to read its offset back as two 32-bit
 * halves (no allocation), then the `NumberRuns` operation — what an IPv4 address costs. Otherwise
 * the window key is read the same way (bits 64..127 cached per 2^64-aligned block) and the segment
 * found by a binary search on the numeric keys. A result other than the argument itself costs one
 * bigint operation (the window's first address OR the offset). A set within one window — the usual
 * IPv6 pool, /76 and smaller — is a single segment.
 */
import type { Family } from './addr.ts';
import { NetError, familyName, formatValue, maxValue } from './addr.ts';
import { IntervalSet } from './interval-set.ts';
import type { Run } from './interval-set.ts';
import { BitRuns } from './bit-runs.ts';
import { NumberRuns } from './run-blocks.ts';

/** Addresses per IPv6 window; offsets are 0..W-1, so `offset + 1` and every count are exact. */
const W = 2 ** 52;
const WB = 1n << 52n;
const TWO32 = 2 ** 32;
const MAX4 = maxValue(4);
/** `#sizeNum` is folded into `#sizeBig` when it reaches ±FOLD, so it stays exact. */
const FOLD = 2 ** 52;

// Bigint -> doubles without allocating: store into a BigUint64Array (truncates to 64 bits), read
// the 32-bit halves back. L0/H0: the low/high half of element 0, per the platform's byte order.
const SCRATCH = new ArrayBuffer(8);
const U64 = new BigUint64Array(SCRATCH);
const U32 = new Uint32Array(SCRATCH);
const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const L0 = LITTLE ? 0 : 1;
const H0 = LITTLE ? 1 : 0;

/** The IPv4 address `x` (0..2^32) as a bigint: through U64, cheaper than `BigInt(x)`. */
function v4(x: number): bigint {
  U32[L0] = x;
  U32[H0] = x / TWO32;
  return U64[0]!;
}

/** Whether window (a, b) is at or before window (c, d). */
function le(a: number, b: number, c: number, d: number): boolean {
  return a < c || (a === c && b <= d);
}

/** The first address of window (a, b). */
function windowBase(a: number, b: number): bigint {
  return (BigInt(a) << 104n) | (BigInt(b) << 52n);
}

/**
 * One entry of the IPv6 segment list: windows (a, b) to (a2, b2), the same window for a window
 * segment. `first` is the first address of window (a, b), `end` one past the last of (a2, b2).
 */
interface Seg {
  readonly a: number;
  readonly b: number;
  readonly a2: number;
  readonly b2: number;
  /** The members as offsets in the window; undefined for a full segment (every address used). */
  readonly runs: NumberRuns | undefined;
  readonly first: bigint;
  readonly end: bigint;
}

function windowSeg(a: number, b: number, runs: NumberRuns, first: bigint): Seg {
  return { a, b, a2: a, b2: b, runs, first, end: first + WB };
}

function fullSeg(a: number, b: number, a2: number, b2: number, first: bigint, end: bigint): Seg {
  return { a, b, a2, b2, runs: undefined, first, end };
}

// splitAddr's results (module scratch: read them right after the call).
let SA = 0;
let SB = 0;
let SO = 0;

/** Splits an IPv6 address 0..2^128-1 into SA, SB (its window) and SO (its offset). Not hot. */
function splitAddr(v: bigint): void {
  U64[0] = v >> 64n;
  const hh = U32[H0]!;
  const hl = U32[L0]!;
  U64[0] = v;
  const h = U32[H0]!;
  SA = hh >>> 8;
  SB = ((hh & 0xff) * TWO32 + hl) * 4096 + (h >>> 20);
  SO = (h & 0xfffff) * TWO32 + U32[L0]!;
}

export class UsedSet {
  readonly family: Family;
  readonly #max: bigint;
  /** IPv4: the addresses. Unused for IPv6. */
  #v4 = new BitRuns();

  // ---- IPv6 ----
  /** The segments, ascending and disjoint; `#ka[k]`, `#kb[k]` repeat `#segs[k].a`, `.b` for the search. */
  #segs: Seg[] = [];
  #ka: number[] = [];
  #kb: number[] = [];
  /** The segment indexes found last and before: checked first by `#find`. */
  #hit = 0;
  #hit2 = 0;
  /** Members: `#sizeBig + #sizeNum`, the number part kept within ±FOLD so that ±1 stays exact. */
  #sizeBig = 0n;
  #sizeNum = 0;
  /** `#cum[k]` = members in segments before k; rebuilt on demand after a change. */
  #cum: bigint[] | undefined;
  /**
   * The 2^64-aligned block of addresses seen last, [#gLo, #gHi], and its part of a window key: for
   * an address `v` in it, a = #gA, b = #gB + (bits 52..63 of v), offset = bits 0..51 of v.
   */
  #gLo = 1n;
  #gHi = 0n;
  #gA = 0;
  #gB = 0;
  /**
   * The window segment used last: its addresses [#wLo, #wEnd) and its runs; #x* the one used before
   * it. An address in either goes straight to the runs, as an IPv4 address does (no segment search);
   * any change to the segment list empties both.
   */
  #wLo = 1n;
  #wEnd = 0n;
  #wRuns: NumberRuns | undefined;
  #xLo = 1n;
  #xEnd = 0n;
  #xRuns: NumberRuns | undefined;

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
    if (family === 4) {
      used.#v4 = BitRuns.fromRuns(runs.map((r) => ({ first: Number(r.first), last: Number(r.last) })));
      return used;
    }
    // Cut each run at window boundaries: a partial first window, a full span, a partial last window.
    const segs: Seg[] = [];
    let pieces: { first: number; last: number }[] = [];
    let pa = -1;
    let pb = -1;
    let pFirst = 0n;
    const flush = () => {
      if (pieces.length > 0) segs.push(windowSeg(pa, pb, NumberRuns.fromRuns(pieces), pFirst));
      pieces = [];
    };
    const piece = (a: number, b: number, first: number, last: number) => {
      if (a !== pa || b !== pb) {
        flush();
        pa = a;
        pb = b;
        pFirst = windowBase(a, b);
      }
      pieces.push({ first, last });
    };
    let size = 0n;
    for (const r of runs) {
      size += r.last - r.first + 1n;
      splitAddr(r.first);
      const a1 = SA;
      const b1 = SB;
      const o1 = SO;
      splitAddr(r.last);
      const a2 = SA;
      const b2 = SB;
      const o2 = SO;
      // Whole windows (fa, fb) .. (la, lb) of the run, if any.
      let fa = a1;
      let fb = b1;
      let la = a2;
      let lb = b2;
      if (o1 > 0) {
        if (a1 === a2 && b1 === b2) {
          piece(a1, b1, o1, o2);
          continue;
        }
        piece(a1, b1, o1, W - 1);
        if (fb === W - 1) {
          fa++;
          fb = 0;
        } else {
          fb++;
        }
      }
      const tail = o2 < W - 1;
      if (tail) {
        if (lb === 0) {
          la--;
          lb = W - 1;
        } else {
          lb--;
        }
      }
      if (le(fa, fb, la, lb)) {
        flush();
        const first = windowBase(fa, fb);
        segs.push(fullSeg(fa, fb, la, lb, first, r.last + 1n - (tail ? BigInt(o2 + 1) : 0n)));
      }
      if (tail) piece(a2, b2, 0, o2);
    }
    flush();
    used.#segs = segs;
    used.#ka = segs.map((s) => s.a);
    used.#kb = segs.map((s) => s.b);
    used.#sizeBig = size;
    return used;
  }

  /**
   * Which representation holds the set now (for tests and diagnostics): 'number' when one
   * `NumberRuns` holds it all (IPv4, or IPv6 within one 2^52 window), 'windows' for IPv6 over
   * several windows (or a full span of windows).
   */
  get representation(): 'number' | 'windows' {
    const segs = this.#segs;
    return segs.length === 0 || (segs.length === 1 && segs[0]!.runs !== undefined) ? 'number' : 'windows';
  }

  /** Number of used addresses (exact up to 2^53; see `size()` for the bigint). */
  get count(): number {
    if (this.family === 4) return this.#v4.size;
    return this.#sizeBig === 0n ? this.#sizeNum : Number(this.#sizeBig + BigInt(this.#sizeNum));
  }

  /** Number of used addresses. */
  size(): bigint {
    return this.family === 4 ? BigInt(this.#v4.size) : this.#sizeBig + BigInt(this.#sizeNum);
  }

  /** Number of runs of consecutive used addresses. O(blocks + segments). */
  get runCount(): number {
    if (this.family === 4) return this.#v4.runCount;
    const segs = this.#segs;
    let n = 0;
    for (let k = 0; k < segs.length; k++) {
      const s = segs[k]!;
      n += s.runs === undefined ? 1 : s.runs.runCount;
      // One run across the boundary with the segment before counts once.
      const p = segs[k - 1];
      if (
        p !== undefined &&
        p.end === s.first &&
        (p.runs === undefined || p.runs.max() === W - 1) &&
        (s.runs === undefined || s.runs.min() === 0)
      ) {
        n--;
      }
    }
    return n;
  }

  /** An IPv4 `v` as a double; ±Infinity outside the family (nothing is stored there). */
  #q4(v: bigint): number {
    if (v < 0n) return -Infinity;
    if (v > MAX4) return Infinity;
    U64[0] = v;
    return U32[L0]!;
  }

  /*
   * Every IPv6 operation first tries the cached windows, then splits its address inline into locals
   * (a double past 2^30 passed to a call V8 does not inline is boxed, an allocation):
   *
   *   if ((v < this.#gLo || v > this.#gHi) && !this.#regroup(v)) <not an IPv6 address>;
   *   U64[0] = v;
   *   const h = U32[H0]!;                           bits 32..63 of v
   *   const a = this.#gA;                           window key: bits 104..127
   *   const b = this.#gB + (h >>> 20);              window key: bits 52..103
   *   const o = (h & 0xfffff) * TWO32 + U32[L0]!;   offset: bits 0..51
   */

  /**
   * `v` lies outside the cached 2^64 block: caches its block instead.
   * @returns false, changing nothing, when `v` is not an IPv6 address.
   */
  #regroup(v: bigint): boolean {
    if (v < 0n || v > this.#max) return false;
    const g = v >> 64n;
    U64[0] = g;
    const hh = U32[H0]!;
    this.#gA = hh >>> 8;
    this.#gB = ((hh & 0xff) * TWO32 + U32[L0]!) * 4096;
    this.#gLo = g << 64n;
    this.#gHi = this.#gLo + 0xffff_ffff_ffff_ffffn;
    return true;
  }

  /**
   * The last segment whose first window is at or before window (a, b), or -1. The two segments found
   * last are tried first (the cursor's and the last release's, in the allocation loop); else a binary
   * search, O(log segments).
   */
  #find(a: number, b: number): number {
    const ka = this.#ka;
    const kb = this.#kb;
    const n = ka.length;
    let h = this.#hit;
    if (h < n && le(ka[h]!, kb[h]!, a, b) && (h + 1 === n || !le(ka[h + 1]!, kb[h + 1]!, a, b))) return h;
    h = this.#hit2;
    this.#hit2 = this.#hit;
    if (h < n && le(ka[h]!, kb[h]!, a, b) && (h + 1 === n || !le(ka[h + 1]!, kb[h + 1]!, a, b))) {
      this.#hit = h;
      return h;
    }
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const x = ka[mid]!;
      if (x < a || (x === a && kb[mid]! <= b)) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) this.#hit = lo - 1;
    return lo - 1;
  }

  /** Makes window segment `s` the cached one used last. */
  #enter(s: Seg): void {
    this.#xLo = this.#wLo;
    this.#xEnd = this.#wEnd;
    this.#xRuns = this.#wRuns;
    this.#wLo = s.first;
    this.#wEnd = s.end;
    this.#wRuns = s.runs;
  }

  /**
   * The runs of the window used before the last one when it holds `v` (it becomes the last), or
   * undefined. Each operation tries the last window inline first.
   */
  #cachedX(v: bigint): NumberRuns | undefined {
    if (v < this.#xLo || v >= this.#xEnd) return undefined;
    const lo = this.#xLo;
    const end = this.#xEnd;
    const runs = this.#xRuns;
    this.#xLo = this.#wLo;
    this.#xEnd = this.#wEnd;
    this.#xRuns = this.#wRuns;
    this.#wLo = lo;
    this.#wEnd = end;
    this.#wRuns = runs;
    return runs;
  }

  /** The address at offset `r` of the cached window: one bigint operation, where `first + BigInt(r)` is two. */
  #wAt(r: number): bigint {
    U32[L0] = r;
    U32[H0] = r / TWO32;
    return this.#wLo | U64[0]!;
  }

  /** The index of the segment holding the IPv6 address `v` (which one must). */
  #indexOf(v: bigint): number {
    if (v < this.#gLo || v > this.#gHi) this.#regroup(v);
    U64[0] = v;
    return this.#find(this.#gA, this.#gB + (U32[H0]! >>> 20));
  }

  #changed(delta: 1 | -1): void {
    const n = (this.#sizeNum += delta);
    if (n === FOLD || n === -FOLD) {
      this.#sizeBig += BigInt(n);
      this.#sizeNum = 0;
    }
    this.#cum = undefined;
  }

  /** Replaces `count` segments at `k` with `add`. */
  #splice(k: number, count: number, ...add: Seg[]): void {
    this.#wLo = this.#xLo = 1n;
    this.#wEnd = this.#xEnd = 0n;
    this.#wRuns = this.#xRuns = undefined;
    this.#segs.splice(k, count, ...add);
    this.#ka.splice(k, count, ...add.map((s) => s.a));
    this.#kb.splice(k, count, ...add.map((s) => s.b));
  }

  /** Whether `v` is used. O(log runs). */
  has(v: bigint): boolean {
    if (this.family === 4) return this.#v4.has(this.#q4(v));
    const w = v >= this.#wLo && v < this.#wEnd ? this.#wRuns : this.#cachedX(v);
    if (w !== undefined) {
      U64[0] = v;
      return w.has((U32[H0]! & 0xfffff) * TWO32 + U32[L0]!);
    }
    if ((v < this.#gLo || v > this.#gHi) && !this.#regroup(v)) return false;
    U64[0] = v;
    const h = U32[H0]!;
    const a = this.#gA;
    const b = this.#gB + (h >>> 20);
    const k = this.#find(a, b);
    if (k < 0) return false;
    const s = this.#segs[k]!;
    if (!le(a, b, s.a2, s.b2)) return false;
    if (s.runs === undefined) return true;
    this.#enter(s);
    return s.runs.has((h & 0xfffff) * TWO32 + U32[L0]!);
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
    if (this.family === 4) {
      U64[0] = v;
      return this.#v4.add(U32[L0]!);
    }
    const w = v >= this.#wLo && v < this.#wEnd ? this.#wRuns : this.#cachedX(v);
    if (w !== undefined) {
      U64[0] = v;
      if (!w.add((U32[H0]! & 0xfffff) * TWO32 + U32[L0]!)) return false;
      this.#changed(1);
      if (w.size === W) this.#fill(this.#indexOf(v));
      return true;
    }
    if (v < this.#gLo || v > this.#gHi) this.#regroup(v);
    U64[0] = v;
    const h = U32[H0]!;
    const a = this.#gA;
    const b = this.#gB + (h >>> 20);
    const o = (h & 0xfffff) * TWO32 + U32[L0]!;
    const k = this.#find(a, b);
    if (k >= 0) {
      const s = this.#segs[k]!;
      if (le(a, b, s.a2, s.b2)) {
        const runs = s.runs;
        if (runs === undefined) return false;
        this.#enter(s);
        if (!runs.add(o)) return false;
        this.#changed(1);
        if (runs.size === W) this.#fill(k);
        return true;
      }
    }
    // A window with no member yet: a new segment after segment k.
    this.#splice(k + 1, 0, windowSeg(a, b, NumberRuns.fromRuns([{ first: o, last: o }]), windowBase(a, b)));
    this.#hit = k + 1;
    this.#changed(1);
    return true;
  }

  /** Window segment `k` has just become full: it turns into a full segment, joined with full neighbours. */
  #fill(k: number): void {
    const segs = this.#segs;
    const s = segs[k]!;
    let from = k;
    let to = k;
    let a = s.a;
    let b = s.b;
    let a2 = s.a2;
    let b2 = s.b2;
    let first = s.first;
    let end = s.end;
    const p = segs[k - 1];
    if (p !== undefined && p.runs === undefined && p.end === first) {
      from--;
      a = p.a;
      b = p.b;
      first = p.first;
    }
    const q = segs[k + 1];
    if (q !== undefined && q.runs === undefined && q.first === end) {
      to++;
      a2 = q.a2;
      b2 = q.b2;
      end = q.end;
    }
    this.#splice(from, to - from + 1, fullSeg(a, b, a2, b2, first, end));
    this.#hit = from;
  }

  /**
   * Marks `v` free. O(log runs); splits its run when `v` is inside one.
   * @returns false when `v` was not used (nothing changes).
   */
  delete(v: bigint): boolean {
    if (this.family === 4) return this.#v4.delete(this.#q4(v));
    const w = v >= this.#wLo && v < this.#wEnd ? this.#wRuns : this.#cachedX(v);
    if (w !== undefined) {
      U64[0] = v;
      if (!w.delete((U32[H0]! & 0xfffff) * TWO32 + U32[L0]!)) return false;
      if (w.size === 0) this.#splice(this.#indexOf(v), 1);
      this.#changed(-1);
      return true;
    }
    if ((v < this.#gLo || v > this.#gHi) && !this.#regroup(v)) return false;
    U64[0] = v;
    const h = U32[H0]!;
    const a = this.#gA;
    const b = this.#gB + (h >>> 20);
    const o = (h & 0xfffff) * TWO32 + U32[L0]!;
    const k = this.#find(a, b);
    if (k < 0) return false;
    const s = this.#segs[k]!;
    if (!le(a, b, s.a2, s.b2)) return false;
    const runs = s.runs;
    if (runs !== undefined) {
      this.#enter(s);
      if (!runs.delete(o)) return false;
      if (runs.size === 0) this.#splice(k, 1);
    } else {
      this.#punch(k, s, a, b, o);
    }
    this.#changed(-1);
    return true;
  }

  /** Frees offset `o` of window (a, b) inside full segment `s` (index `k`): up to three segments replace it. */
  #punch(k: number, s: Seg, a: number, b: number, o: number): void {
    const base = windowBase(a, b);
    const out: Seg[] = [];
    if (a !== s.a || b !== s.b) {
      out.push(fullSeg(s.a, s.b, b === 0 ? a - 1 : a, b === 0 ? W - 1 : b - 1, s.first, base));
    }
    const pieces: { first: number; last: number }[] = [];
    if (o > 0) pieces.push({ first: 0, last: o - 1 });
    if (o < W - 1) pieces.push({ first: o + 1, last: W - 1 });
    out.push(windowSeg(a, b, NumberRuns.fromRuns(pieces), base));
    if (a !== s.a2 || b !== s.b2) {
      out.push(fullSeg(b === W - 1 ? a + 1 : a, b === W - 1 ? 0 : b + 1, s.a2, s.b2, base + WB, s.end));
    }
    this.#splice(k, 1, ...out);
  }

  /**
   * The smallest address `>= v` that is not used: `v` itself, or one past the end of the run holding
   * `v`. May be `maxValue(family) + 1` when the run reaches the top of the family. O(log runs).
   */
  nextUnused(v: bigint): bigint {
    if (this.family === 4) {
      const q = this.#q4(v);
      const r = this.#v4.nextUnused(q);
      return r === q ? v : v4(r);
    }
    const w = v >= this.#wLo && v < this.#wEnd ? this.#wRuns : this.#cachedX(v);
    if (w !== undefined) {
      U64[0] = v;
      const o = (U32[H0]! & 0xfffff) * TWO32 + U32[L0]!;
      const r = w.nextUnused(o);
      if (r < W) return r === o ? v : this.#wAt(r);
      // The run reaches the end of the window: the general case below follows it.
    }
    if ((v < this.#gLo || v > this.#gHi) && !this.#regroup(v)) return v;
    U64[0] = v;
    const h = U32[H0]!;
    const a = this.#gA;
    const b = this.#gB + (h >>> 20);
    let k = this.#find(a, b);
    if (k < 0) return v;
    const segs = this.#segs;
    const s = segs[k]!;
    if (!le(a, b, s.a2, s.b2)) return v;
    if (s.runs !== undefined) {
      const o = (h & 0xfffff) * TWO32 + U32[L0]!;
      this.#enter(s);
      const r = s.runs.nextUnused(o);
      if (r < W) return r === o ? v : this.#wAt(r);
    }
    // The run reaches the end of s: follow it into the segments that continue it without a gap.
    let end = s.end;
    for (k++; ; k++) {
      const t = segs[k];
      if (t === undefined || t.first !== end) return end;
      if (t.runs !== undefined) {
        const r = t.runs.nextUnused(0);
        if (r < W) return r === 0 ? end : t.first + BigInt(r);
      }
      end = t.end;
    }
  }

  /** The smallest used address `>= v`, or undefined. O(log runs). */
  ceil(v: bigint): bigint | undefined {
    if (this.family === 4) {
      const q = this.#q4(v);
      const r = this.#v4.ceil(q);
      return r === undefined ? undefined : r === q ? v : v4(r);
    }
    const w = v >= this.#wLo && v < this.#wEnd ? this.#wRuns : this.#cachedX(v);
    if (w !== undefined) {
      U64[0] = v;
      const o = (U32[H0]! & 0xfffff) * TWO32 + U32[L0]!;
      const r = w.ceil(o);
      if (r !== undefined) return r === o ? v : this.#wAt(r);
      // Nothing at or after v in the window: the general case below goes on to the next segment.
    }
    let k = -1;
    if ((v >= this.#gLo && v <= this.#gHi) || this.#regroup(v)) {
      U64[0] = v;
      const h = U32[H0]!;
      const a = this.#gA;
      const b = this.#gB + (h >>> 20);
      k = this.#find(a, b);
      if (k >= 0) {
        const s = this.#segs[k]!;
        if (le(a, b, s.a2, s.b2)) {
          if (s.runs === undefined) return v;
          const o = (h & 0xfffff) * TWO32 + U32[L0]!;
          this.#enter(s);
          const r = s.runs.ceil(o);
          if (r !== undefined) return r === o ? v : this.#wAt(r);
        }
      }
    } else if (v > 0n) {
      return undefined;
    }
    // The first member of the next segment.
    const t = this.#segs[k + 1];
    if (t === undefined) return undefined;
    return t.runs === undefined ? t.first : t.first + BigInt(t.runs.min()!);
  }

  /**
   * How many used addresses fall inside `set`. O(runs of set × (log runs + BLOCK_MAX)), plus one
   * O(blocks + segments) pass after the set changed.
   * @throws NetError when `set` is of the other family.
   */
  countIn(set: IntervalSet): bigint {
    if (set.family !== this.family) {
      throw new NetError(
        `cannot count ${familyName(this.family)} addresses in an ${familyName(set.family)} set`,
      );
    }
    if (this.family === 4) {
      const num = this.#v4;
      if (num.size === 0) return 0n;
      // Each term is at most 2^32: the sum is exact.
      let n = 0;
      for (const r of set.runs())
        n += num.countUpTo(this.#q4(r.last)) - num.countUpTo(this.#q4(r.first - 1n));
      return BigInt(n);
    }
    if (this.#segs.length === 0) return 0n;
    let n = 0n;
    for (const r of set.runs()) n += this.#countUpTo(r.last) - this.#countUpTo(r.first - 1n);
    return n;
  }

  /** IPv6: the number of members `<= x`. */
  #countUpTo(x: bigint): bigint {
    if ((x < this.#gLo || x > this.#gHi) && !this.#regroup(x)) return x < 0n ? 0n : this.size();
    U64[0] = x;
    const h = U32[H0]!;
    const a = this.#gA;
    const b = this.#gB + (h >>> 20);
    const k = this.#find(a, b);
    if (k < 0) return 0n;
    let cum = this.#cum;
    if (cum === undefined) {
      const segs = this.#segs;
      cum = new Array<bigint>(segs.length + 1);
      let total = 0n;
      for (let j = 0; j < segs.length; j++) {
        cum[j] = total;
        const s = segs[j]!;
        total += s.runs === undefined ? s.end - s.first : BigInt(s.runs.size);
      }
      cum[segs.length] = total;
      this.#cum = cum;
    }
    const s = this.#segs[k]!;
    if (!le(a, b, s.a2, s.b2)) return cum[k + 1]!;
    if (s.runs === undefined) return cum[k]! + (x - s.first + 1n);
    return cum[k]! + BigInt(s.runs.countUpTo((h & 0xfffff) * TWO32 + U32[L0]!));
  }

  /** The runs of consecutive used addresses, ascending and maximal (joined across windows). */
  *runs(): IterableIterator<Run> {
    if (this.family === 4) {
      for (const r of this.#v4.runs()) yield { first: BigInt(r.first), last: BigInt(r.last) };
      return;
    }
    let first: bigint | undefined;
    let last = 0n;
    for (const s of this.#segs) {
      if (s.runs === undefined) {
        if (first !== undefined && s.first === last + 1n) {
          last = s.end - 1n;
        } else {
          if (first !== undefined) yield { first, last };
          first = s.first;
          last = s.end - 1n;
        }
        continue;
      }
      const base = s.first;
      for (const r of s.runs.runs()) {
        const f = base + BigInt(r.first);
        const l = base + BigInt(r.last);
        if (first !== undefined && f === last + 1n) {
          last = l;
        } else {
          if (first !== undefined) yield { first, last };
          first = f;
          last = l;
        }
      }
    }
    if (first !== undefined) yield { first, last };
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
  const hi = allowed.max()!;
  if (allowed.runCount === 1) {
    // One range (the usual pool): every address in [lo, hi] is allowed, so the first unused one at
    // or after the start is the answer if it is still in range; no allowed-set lookups.
    if (from <= hi) {
      const f = used.nextUnused(from < lo ? lo : from);
      if (f <= hi) return f;
      if (from <= lo) return undefined;
    }
    // Wrap around: [from, hi] is all used (or empty), so an unused address <= hi is below from.
    const g = used.nextUnused(lo);
    return g <= hi ? g : undefined;
  }
  const found = firstFreeIn(allowed, used, from < lo ? lo : from, hi);
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
