/**
 * @module ipam/claim-table
 * The engine cache's claims by store key, together with the tombstones of recent deletes: one Map
 * whose entries are overwritten in place — a delete turns a claim into its tombstone, a put turns a
 * tombstone back into a claim — so the allocation hot path never deletes a Map entry.
 *
 * Why not `Map.delete` + `Map.set`: a V8 Map keeps a deleted entry as a hole in its bucket chain
 * until the table is rebuilt, and a re-added key is appended as a new entry. A small pool whose few
 * addresses are claimed and released over and over, in a cache holding many other claims (rebuilt
 * rarely), grows the chains of those few buckets by one hole per cycle, and every lookup of a key
 * that is not there walks them. Measured (bench/engine.ts, the decision alone on a /28 beside
 * 58,981 claims of another pool): 63k cycles/s falling to 40k within 300k cycles, 7 µs per
 * `get`; with slots overwritten in place the lookups stay flat.
 *
 * Tombstones are bounded (`limit`, oldest first); only evicting one deletes an entry, and those keys
 * are the least recently deleted, not the hot ones.
 */
import { versionNewer, type Version } from '../store/store.ts';
import type { HeldClaim } from './state.ts';

/** The tombstone of a deleted claim: the revision of its deletion. */
interface Tomb {
  readonly dead: Version;
}

type Slot = HeldClaim | Tomb;

function isTomb(s: Slot): s is Tomb {
  return (s as Tomb).dead !== undefined;
}

export class ClaimTable {
  readonly #limit: number;
  #slots = new Map<string, Slot>();
  #live = 0;
  #tombs = 0;
  /** Tombstones in the order they were made (possibly since replaced): eviction order. */
  #order: { key: string; tomb: Tomb }[] = [];
  #head = 0;
  #changes = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /**
   * Goes up with every change to the claims held (a put, a delete, a clear): what was written from
   * them (the claims cache) can tell it is behind.
   */
  get changes(): number {
    return this.#changes;
  }

  /** Claims held (tombstones not counted). */
  get size(): number {
    return this.#live;
  }

  get(key: string): HeldClaim | undefined {
    const s = this.#slots.get(key);
    return s === undefined || isTomb(s) ? undefined : s;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** The revision at which `key` was deleted, while its tombstone is kept. */
  tombstone(key: string): Version | undefined {
    const s = this.#slots.get(key);
    return s !== undefined && isTomb(s) ? s.dead : undefined;
  }

  /** Holds `held` under `key`, replacing a claim or a tombstone there. */
  set(key: string, held: HeldClaim): void {
    const s = this.#slots.get(key);
    if (s === undefined || isTomb(s)) this.#live++;
    if (s !== undefined && isTomb(s)) this.#tombs--;
    this.#slots.set(key, held);
    this.#changes++;
  }

  /**
   * Holds `held` under `held.key` unless what is there (a claim, or the tombstone of its delete) is
   * as new as `held.version`: one lookup, for the cache's put of every claim at an agent's start.
   * @returns the claim it replaced, undefined when there was none, false when it changed nothing.
   */
  putIfNewer(held: HeldClaim): HeldClaim | undefined | false {
    const s = this.#slots.get(held.key);
    if (s === undefined) this.#live++;
    else if (!versionNewer(held.version, isTomb(s) ? s.dead : s.version)) return false;
    else if (isTomb(s)) {
      this.#live++;
      this.#tombs--;
    }
    this.#slots.set(held.key, held);
    this.#changes++;
    return s === undefined || isTomb(s) ? undefined : s;
  }

  /** Replaces what `key` holds (a claim, a tombstone or nothing) with the tombstone of a delete at `version`. */
  bury(key: string, version: Version): void {
    const s = this.#slots.get(key);
    if (s !== undefined && !isTomb(s)) this.#live--;
    if (s === undefined || !isTomb(s)) this.#tombs++;
    const tomb: Tomb = { dead: version };
    this.#slots.set(key, tomb);
    if (s !== undefined && !isTomb(s)) this.#changes++;
    this.#order.push({ key, tomb });
    while (this.#tombs > this.#limit && this.#head < this.#order.length) {
      const oldest = this.#order[this.#head++] as { key: string; tomb: Tomb };
      // Only if that tombstone is still the one there (not replaced by a claim or a later delete).
      if (this.#slots.get(oldest.key) === oldest.tomb) {
        this.#slots.delete(oldest.key);
        this.#tombs--;
      }
    }
    // The order list holds an entry per bury; drop what was consumed, and entries of tombstones
    // that were replaced, once they are most of it.
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    }
    if (this.#order.length > 2 * this.#tombs + 1024) {
      this.#order = this.#order.slice(this.#head).filter((o) => this.#slots.get(o.key) === o.tomb);
      this.#head = 0;
    }
  }

  /** The claims held, in no promised order. */
  *values(): IterableIterator<HeldClaim> {
    for (const s of this.#slots.values()) if (!isTomb(s)) yield s;
  }

  clear(): void {
    this.#changes++;
    this.#slots = new Map();
    this.#live = 0;
    this.#tombs = 0;
    this.#order = [];
    this.#head = 0;
  }
}
