/**
 * @module ipam/state
 * The engine's in-memory view of the store: pools (compiled), reservations, and every claim indexed
 * by address, by attachment and by pool. It is a cache fed by the store's list + watch and by the
 * engine's own acknowledged writes; it only ever *proposes* a free address. Uniqueness is decided by
 * the store's create-if-absent of the claim (DESIGN invariant 1), so a stale cache costs a retry,
 * never a duplicate.
 *
 * Events are applied by version: an event older than what the cache holds for that key (including a
 * remembered deletion) is dropped, so an own write applied directly is never undone by a late watch
 * event of an earlier revision.
 */
import { versionNewer, type StoredText, type Version } from '../store/store.ts';
import { decodeValue } from '../store/codec.ts';
import { readClaimDigest } from '../store/claim-digest.ts';
import { parseAddr, type Family } from '../net/addr.ts';
import { IntervalSet } from '../net/interval-set.ts';
import { ClaimTable } from './claim-table.ts';
import { UsedSet } from '../net/used-set.ts';
import { parseRange } from '../net/range.ts';
import type { IPClaim, IPPool, ReservedIP } from '../api/kinds.ts';
import { compilePool, type CompiledPool } from './pools.ts';

export const POOL_PREFIX = 'ippools/';
export const RESERVED_PREFIX = 'reservedips/';
export const CLAIM_PREFIX = 'ipclaims/';

export interface HeldClaim {
  key: string;
  claim: IPClaim;
  version: Version;
  value: bigint;
}

/** What the cache's indexes need of a claim: its spec's fields, without the rest. */
export interface ClaimDigest {
  ip: string;
  network: string;
  family: Family;
  pool: string;
  cniNetwork?: string | undefined;
  containerId?: string | undefined;
  ifName?: string | undefined;
}

/**
 * A claim indexed from its digest and kept as its JSON text until something reads it: parsing
 * 100k claims' JSON was most of an agent's start. The text is the whole claim (the claims cache's
 * start: src/ipam/claims-cache.ts) or, `compact`, its stored form (the etcd store's start:
 * `Store.scanText`, the digest read by src/store/claim-digest.ts), which `decodeValue` reads.
 */
export class LazyClaim implements HeldClaim, ClaimDigest {
  readonly key: string;
  readonly version: Version;
  readonly value: bigint;
  readonly ip: string;
  readonly network: string;
  readonly family: Family;
  readonly pool: string;
  readonly cniNetwork: string | undefined;
  readonly containerId: string | undefined;
  readonly ifName: string | undefined;
  /** The claim's JSON as UTF-8 bytes `#start`..`#end` of `#source`, until parsed. */
  #source: Buffer | undefined;
  readonly #start: number;
  readonly #end: number;
  readonly #compact: boolean;
  #claim: IPClaim | undefined;

  constructor(
    key: string,
    version: Version,
    value: bigint,
    digest: ClaimDigest,
    source: Buffer,
    start: number,
    end: number,
    compact = false,
  ) {
    this.key = key;
    this.version = version;
    this.value = value;
    this.ip = digest.ip;
    this.network = digest.network;
    this.family = digest.family;
    this.pool = digest.pool;
    this.cniNetwork = digest.cniNetwork;
    this.containerId = digest.containerId;
    this.ifName = digest.ifName;
    this.#source = source;
    this.#start = start;
    this.#end = end;
    this.#compact = compact;
  }

  get claim(): IPClaim {
    if (this.#claim === undefined) {
      const text = this.#source?.toString('utf8', this.#start, this.#end) as string;
      this.#claim = (this.#compact ? decodeValue(this.key, text) : JSON.parse(text)) as IPClaim;
      this.#source = undefined;
    }
    return this.#claim;
  }

  /** The whole claim's JSON text until it is parsed (to write it again as it was read); undefined for a compact one. */
  get text(): string | undefined {
    return this.#compact ? undefined : this.#source?.toString('utf8', this.#start, this.#end);
  }

  /** The whole claim's JSON as UTF-8 bytes (a view, not a copy) until it is parsed; undefined for a compact one. */
  get bytes(): Buffer | undefined {
    return this.#compact ? undefined : this.#source?.subarray(this.#start, this.#end);
  }

  /** Whether the JSON is still unparsed. */
  get unparsed(): boolean {
    return this.#source !== undefined;
  }
}

export interface PoolEntry {
  obj: IPPool;
  version: Version;
  compiled: CompiledPool;
}

export interface ReservationEntry {
  obj: ReservedIP;
  version: Version;
  sets: Record<Family, IntervalSet>;
}

/** `<cni network>/<container id>/<interface>`: one CNI attachment. */
export function attachmentKey(cniNetwork: string, containerId: string, ifName: string): string {
  return `${cniNetwork}/${containerId}/${ifName}`;
}

const TOMBSTONE_LIMIT = 100_000;

/**
 * The claims of one attachment: one key as a string (nearly every attachment: one per family is
 * two at most), several as an array — no Set per attachment, which with 100k claims is most of the
 * garbage an agent's start makes.
 */
interface Attachment {
  readonly cniNetwork: string;
  readonly ifName: string;
  keys: string | string[];
}

/** A container's attachment on `cniNetwork` with `ifName` (a container has one per interface). */
function findAttachment(list: Attachment[], cniNetwork: string, ifName: string): Attachment | undefined {
  for (const a of list) if (a.ifName === ifName && a.cniNetwork === cniNetwork) return a;
  return undefined;
}

export class IpamState {
  readonly pools = new Map<string, PoolEntry>();
  readonly reservations = new Map<string, ReservationEntry>();
  /** Claims by store key, with the tombstones of their recent deletes (see claim-table.ts). */
  readonly claims = new ClaimTable(TOMBSTONE_LIMIT);
  private readonly used = new Map<string, UsedSet>();
  /**
   * Claim keys per attachment, found by container id, then network and interface. Keyed by the
   * container id itself rather than a `network/id/interface` string: that string was made anew
   * for every lookup, and hashing its ~90 characters three times per ADD+DEL was a sixth of the
   * allocation decision (bench/engine.ts, the decision alone); the id string is the claim's own,
   * its hash computed once.
   */
  private readonly byContainer = new Map<string, Attachment[]>();
  private readonly byPool = new Map<string, number>();
  /** The set `usedSet` found last, and for which network and family (most claims share them). */
  private lastNetwork: string | undefined;
  private lastFamily: Family | undefined;
  private lastUsed: UsedSet | undefined;
  /**
   * Deleted pool and reservation keys and the revision of their deletion, so a late put of an older
   * revision is dropped (claims keep theirs in `claims`).
   */
  private readonly tombstones = new Map<string, Version>();
  private reservedUnion: Record<Family, IntervalSet> | undefined;
  private readonly allowedCache = new Map<string, IntervalSet>();
  #reservationsGeneration = 0;

  // ---- feeding ---------------------------------------------------------------------------------

  /** Whether a pool's or reservation's put at `version` is newer than what is held or was deleted. */
  private fresh(key: string, version: Version, current: Version | undefined): boolean {
    if (current !== undefined && !versionNewer(version, current)) return false;
    const dead = this.tombstones.get(key);
    if (dead !== undefined && !versionNewer(version, dead)) return false;
    return true;
  }

  private bury(key: string, version: Version): void {
    this.tombstones.set(key, version);
    // Pools and reservations are few, so this bound is seldom reached; claims, which churn, keep
    // their tombstones in `ClaimTable` (where taking the oldest key of a Map would walk its holes).
    if (this.tombstones.size > TOMBSTONE_LIMIT) {
      const first = this.tombstones.keys().next().value;
      if (first !== undefined) this.tombstones.delete(first);
    }
  }

  /** Whether the cache holds `key` at `version` or newer (a put at `version` would change nothing). */
  holds(key: string, version: Version): boolean {
    if (!key.startsWith(CLAIM_PREFIX)) return false;
    const held = this.claims.get(key);
    return held !== undefined && !versionNewer(version, held.version);
  }

  /** Applies a put of any kind we cache; returns whether it changed anything. */
  put(key: string, value: unknown, version: Version): boolean {
    if (key.startsWith(CLAIM_PREFIX)) return this.putClaim(key, value as IPClaim, version);
    if (key.startsWith(POOL_PREFIX)) return this.putPool(key, value as IPPool, version);
    if (key.startsWith(RESERVED_PREFIX)) return this.putReservation(key, value as ReservedIP, version);
    return false;
  }

  /** Applies a delete; returns whether it changed anything. */
  remove(key: string, version: Version): boolean {
    if (key.startsWith(CLAIM_PREFIX)) {
      const held = this.claims.get(key);
      if (held && !versionNewer(version, held.version)) return false;
      const dead = this.claims.tombstone(key);
      if (dead !== undefined && !versionNewer(version, dead)) return false;
      if (held) this.dropIndexes(held);
      this.claims.bury(key, version);
      return held !== undefined;
    }
    if (key.startsWith(POOL_PREFIX)) {
      const name = key.slice(POOL_PREFIX.length);
      const e = this.pools.get(name);
      if (e && !versionNewer(version, e.version)) return false;
      this.bury(key, version);
      this.pools.delete(name);
      this.allowedCache.delete(name);
      return e !== undefined;
    }
    if (key.startsWith(RESERVED_PREFIX)) {
      const name = key.slice(RESERVED_PREFIX.length);
      const e = this.reservations.get(name);
      if (e && !versionNewer(version, e.version)) return false;
      this.bury(key, version);
      this.reservations.delete(name);
      this.reservationsChanged();
      return e !== undefined;
    }
    return false;
  }

  /**
   * Drops a claim the store was found not to hold (read back by the engine): its tombstone is at
   * the version the cache had, so a late event of that version changes nothing and a newer one does.
   */
  forget(key: string): void {
    const held = this.claims.get(key);
    if (held === undefined) return;
    this.dropIndexes(held);
    this.claims.bury(key, held.version);
  }

  private putPool(key: string, obj: IPPool, version: Version): boolean {
    const name = key.slice(POOL_PREFIX.length);
    if (!this.fresh(key, version, this.pools.get(name)?.version)) return false;
    let compiled: CompiledPool;
    try {
      compiled = compilePool(obj);
    } catch {
      // An invalid pool can only come from a write that bypassed validation (a hand edit of the
      // store); it must not stop the agent, so it is ignored (and shown as invalid by `check`).
      return false;
    }
    this.pools.set(name, { obj, version, compiled });
    this.allowedCache.delete(name);
    return true;
  }

  private putReservation(key: string, obj: ReservedIP, version: Version): boolean {
    const name = key.slice(RESERVED_PREFIX.length);
    if (!this.fresh(key, version, this.reservations.get(name)?.version)) return false;
    const r4: { first: bigint; last: bigint }[] = [];
    const r6: { first: bigint; last: bigint }[] = [];
    for (const item of obj.spec?.ips ?? []) {
      try {
        const r = parseRange(item);
        (r.family === 4 ? r4 : r6).push(r);
      } catch {
        // Same as for pools: validated on apply; a bad hand-written item reserves nothing.
      }
    }
    this.reservations.set(name, {
      obj,
      version,
      sets: { 4: IntervalSet.of(4, r4), 6: IntervalSet.of(6, r6) },
    });
    this.reservationsChanged();
    return true;
  }

  private reservationsChanged(): void {
    this.reservedUnion = undefined;
    this.allowedCache.clear();
    this.#reservationsGeneration++;
  }

  /**
   * Goes up with every change to the reservations (a put, a delete, a clear): what is derived from
   * them (a Subnet's free addresses) can tell when to look again.
   */
  get reservationsGeneration(): number {
    return this.#reservationsGeneration;
  }

  private putClaim(key: string, claim: IPClaim, version: Version): boolean {
    let value: bigint;
    try {
      value = parseAddr(claim.spec.ip).value;
    } catch {
      return false;
    }
    return this.index({ key, claim, version, value }, claim.spec);
  }

  /**
   * A claim known by its digest, its JSON text parsed only when read. The digest must be the
   * text's spec (the claims cache writes both from one claim and checks its file whole).
   */
  putLazy(held: LazyClaim): boolean {
    return this.index(held, held);
  }

  /**
   * A claim as its stored text (`Store.scanText`): indexed from its digest and kept as text
   * (`LazyClaim`) when the digest reader takes it (src/store/claim-digest.ts), else decoded by
   * `decode` and put. Returns whether it changed anything.
   */
  putStored(e: StoredText, decode: (e: StoredText) => unknown): boolean {
    const d = readClaimDigest(e.bytes, e.start, e.end);
    if (d === undefined) return this.put(e.key, decode(e), e.version);
    let value: bigint;
    try {
      value = parseAddr(d.ip).value;
    } catch {
      return false; // as `putClaim` skips a claim whose address does not parse
    }
    return this.index(new LazyClaim(e.key, e.version, value, d, e.bytes, e.start, e.end, true), d);
  }

  private index(held: HeldClaim, s: ClaimDigest): boolean {
    const key = held.key;
    const prev = this.claims.putIfNewer(held);
    if (prev === false) return false;
    if (prev) this.dropIndexes(prev);
    this.usedSet(s.network, s.family).add(held.value);
    if (s.cniNetwork !== undefined && s.containerId !== undefined && s.ifName !== undefined) {
      const list = this.byContainer.get(s.containerId);
      const a = list && findAttachment(list, s.cniNetwork, s.ifName);
      if (a === undefined) {
        const fresh: Attachment = { cniNetwork: s.cniNetwork, ifName: s.ifName, keys: key };
        if (list) list.push(fresh);
        else this.byContainer.set(s.containerId, [fresh]);
      } else if (typeof a.keys === 'string') {
        if (a.keys !== key) a.keys = [a.keys, key];
      } else if (!a.keys.includes(key)) a.keys.push(key);
    }
    this.byPool.set(s.pool, (this.byPool.get(s.pool) ?? 0) + 1);
    return true;
  }

  /** Takes a claim out of the indexes (used set, attachments, pool counts); `claims` is the caller's. */
  private dropIndexes(held: HeldClaim): void {
    // A claim still as text is dropped by its digest, without parsing it.
    const s: ClaimDigest = held instanceof LazyClaim ? held : held.claim.spec;
    this.usedSet(s.network, s.family).delete(held.value);
    if (s.cniNetwork !== undefined && s.containerId !== undefined && s.ifName !== undefined) {
      const list = this.byContainer.get(s.containerId);
      const a = list && findAttachment(list, s.cniNetwork, s.ifName);
      if (list !== undefined && a !== undefined) {
        if (a.keys === held.key) {
          if (list.length === 1) this.byContainer.delete(s.containerId);
          else list.splice(list.indexOf(a), 1);
        } else if (Array.isArray(a.keys)) {
          const rest = a.keys.filter((k) => k !== held.key);
          a.keys = rest.length === 1 ? (rest[0] as string) : rest;
        }
      }
    }
    const n = (this.byPool.get(s.pool) ?? 1) - 1;
    if (n <= 0) this.byPool.delete(s.pool);
    else this.byPool.set(s.pool, n);
  }

  /** Forgets everything (before a full re-list after a watch reset). */
  clear(): void {
    this.pools.clear();
    this.reservations.clear();
    this.claims.clear();
    this.used.clear();
    this.lastNetwork = this.lastFamily = this.lastUsed = undefined;
    this.byContainer.clear();
    this.byPool.clear();
    this.tombstones.clear();
    this.reservationsChanged();
  }

  // ---- queries ---------------------------------------------------------------------------------

  usedSet(network: string, family: Family): UsedSet {
    if (network === this.lastNetwork && family === this.lastFamily) return this.lastUsed!;
    const k = `${network}/${family}`;
    let s = this.used.get(k);
    if (!s) this.used.set(k, (s = new UsedSet(family)));
    this.lastNetwork = network;
    this.lastFamily = family;
    this.lastUsed = s;
    return s;
  }

  reserved(family: Family): IntervalSet {
    if (!this.reservedUnion) {
      let r4 = IntervalSet.empty(4);
      let r6 = IntervalSet.empty(6);
      for (const e of this.reservations.values()) {
        r4 = r4.union(e.sets[4]);
        r6 = r6.union(e.sets[6]);
      }
      this.reservedUnion = { 4: r4, 6: r6 };
    }
    return this.reservedUnion[family];
  }

  /** What a pool may hand out now: its allocatable addresses minus every reservation. */
  allowed(pool: CompiledPool): IntervalSet {
    let s = this.allowedCache.get(pool.name);
    if (!s) {
      s = pool.allocatable.difference(this.reserved(pool.family));
      this.allowedCache.set(pool.name, s);
    }
    return s;
  }

  /** Which reservations cover addresses of this pool, and how many each. */
  reservationsIn(pool: CompiledPool): { name: string; count: bigint }[] {
    const out: { name: string; count: bigint }[] = [];
    for (const [name, e] of this.reservations) {
      const n = e.sets[pool.family].intersect(pool.allocatable).size();
      if (n > 0n) out.push({ name, count: n });
    }
    return out;
  }

  claimsOf(cniNetwork: string, containerId: string, ifName: string): HeldClaim[] {
    const list = this.byContainer.get(containerId);
    const keys = list && findAttachment(list, cniNetwork, ifName)?.keys;
    if (keys === undefined) return [];
    const out: HeldClaim[] = [];
    for (const k of typeof keys === 'string' ? [keys] : keys) {
      const h = this.claims.get(k);
      if (h) out.push(h);
    }
    return out;
  }

  claimCountOf(pool: string): number {
    return this.byPool.get(pool) ?? 0;
  }

  /** Usage of one pool: every figure counts addresses, not claims of other pools. */
  usage(pool: CompiledPool): { total: bigint; used: bigint; reserved: bigint; free: bigint } {
    const total = pool.allocatable.size();
    const allowed = this.allowed(pool);
    const used = this.usedSet(pool.network, pool.family);
    const usedInPool = used.countIn(pool.allocatable);
    const usedAllowed = used.countIn(allowed);
    return {
      total,
      used: usedInPool,
      reserved: total - allowed.size(),
      free: allowed.size() - usedAllowed,
    };
  }
}
