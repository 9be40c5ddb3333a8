/**
 * @module store/slot-map
 * `SlotMap`: a string-keyed map for keys that are deleted and written again and again (an address's
 * claim in a small busy pool), held beside many others. A delete empties the key's slot instead of
 * calling `Map.delete`; writing the key again fills the same slot.
 *
 * Why: a V8 Map keeps a deleted entry as a hole in its bucket's chain until the table is rebuilt,
 * and appends a key written again as a new entry in the same bucket. The table is rebuilt only when
 * it is full, so in a Map of N keys the chain of a key deleted and written again grows by one hole
 * per cycle, up to ~N holes, and every lookup of that key walks them. Measured on Node 24 (a Map of
 * N string keys, 14 keys set and deleted in turn): 0.17 µs per set + delete at N = 100, 3.9 µs at
 * 10,000, 7.9 µs at 59,000 — linear in N (the claim table, `ipam/claim-table.ts`, met the same).
 *
 * Empty slots are dropped all at once, by building a new Map, when they outnumber the keys held by
 * more than `COMPACT_SLACK`: O(1) amortized per delete, and never more than twice the keys held
 * plus that slack in memory. Iteration is in the order keys were first written since the last
 * rebuild (a key written again keeps its place); callers that need an order sort.
 */

/** Empty slots allowed beyond the keys held before a rebuild. */
export const COMPACT_SLACK = 1024;

const EMPTY: unique symbol = Symbol('empty slot');

/** A map from strings to values that are never `undefined` (a value of `undefined` would read as absent). */
export class SlotMap<V extends NonNullable<unknown> | null> {
  #m = new Map<string, V | typeof EMPTY>();
  #size = 0;
  #empty = 0;

  /** Keys held (empty slots not counted). */
  get size(): number {
    return this.#size;
  }

  /** Empty slots kept (for tests and diagnostics). */
  get emptySlots(): number {
    return this.#empty;
  }

  get(key: string): V | undefined {
    const v = this.#m.get(key);
    return v === EMPTY ? undefined : v;
  }

  has(key: string): boolean {
    const v = this.#m.get(key);
    return v !== undefined && v !== EMPTY;
  }

  set(key: string, value: V): this {
    const v = this.#m.get(key);
    if (v === undefined) {
      this.#size++;
    } else if (v === EMPTY) {
      this.#size++;
      this.#empty--;
    }
    this.#m.set(key, value);
    return this;
  }

  /** @returns whether `key` was held. */
  delete(key: string): boolean {
    const v = this.#m.get(key);
    if (v === undefined || v === EMPTY) return false;
    this.#m.set(key, EMPTY);
    this.#size--;
    if (++this.#empty > this.#size + COMPACT_SLACK) this.#compact();
    return true;
  }

  *keys(): IterableIterator<string> {
    for (const [k, v] of this.#m) if (v !== EMPTY) yield k;
  }

  #compact(): void {
    const m = new Map<string, V | typeof EMPTY>();
    for (const [k, v] of this.#m) if (v !== EMPTY) m.set(k, v);
    this.#m = m;
    this.#empty = 0;
  }
}
