/**
 * @module ipam/reclaim
 * Safe reclaim of leaked claims, in the style of the careful anchors: a claim is first only a
 * *candidate* (a leak source says its owner looks gone); it must stay a candidate, at the same
 * version, for a grace period; then it is re-checked against fresh data; only then is it deleted —
 * with the version read as the precondition, so an address reused meanwhile is never freed
 * (DESIGN invariant 3). Several reclaimers (one per agent) may run at once: the version
 * precondition makes the second delete a no-op.
 *
 * Leak sources are pluggable (`LeakSource`): here, the node lease (an agent that stopped renewing
 * `nodelease/<node>` for longer than NODE_DEAD_MS left its claims behind); Kubernetes mode adds pod
 * liveness. The CNI GC verb is separate (the runtime's list is authoritative; see `Ipam.gc`).
 */
import type { Store } from '../store/store.ts';
import type { IPClaim } from '../api/kinds.ts';
import type { Clock, Logger } from './engine.ts';
import type { HeldClaim, IpamState } from './state.ts';

export const NODE_LEASE_PREFIX = 'nodeleases/';
/** How often an agent renews its node lease. */
export const LEASE_RENEW_MS = 10_000;
/** A node whose lease is older than this is presumed gone. */
export const NODE_DEAD_MS = 5 * 60_000;
/** A candidate must stay a candidate this long before it is reclaimed. */
export const RECLAIM_GRACE_MS = 2 * 60_000;

export interface NodeLease {
  node: string;
  renewedAt: string;
}

/** Says why a claim looks leaked, or undefined. `fresh` asks for a re-check against the store. */
export interface LeakSource {
  name: string;
  /** Refresh whatever the source reads (once per scan). */
  refresh(): Promise<void>;
  why(claim: IPClaim): string | undefined;
}

/** Claims of nodes whose lease has not been renewed for `deadMs`. */
export class NodeLeaseSource implements LeakSource {
  readonly name = 'node-lease';
  private leases = new Map<string, number>();
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly deadMs: number;
  constructor(store: Store, clock: Clock, deadMs = NODE_DEAD_MS) {
    this.store = store;
    this.clock = clock;
    this.deadMs = deadMs;
  }
  async refresh(): Promise<void> {
    const all = await this.store.list<NodeLease>(NODE_LEASE_PREFIX);
    this.leases = new Map(all.map((e) => [e.value.node, Date.parse(e.value.renewedAt)]));
  }
  why(claim: IPClaim): string | undefined {
    // A fixed claim (StatefulSet/VM pod, retention) outlives its pod and its node on purpose: its
    // pod comes back on another node and re-attaches it. Only the retention decision releases it.
    if (claim.spec.fixed === true) return undefined;
    const node = claim.spec.node;
    if (node === undefined) return undefined;
    const at = this.leases.get(node);
    const age = at === undefined ? Infinity : this.clock.now() - at;
    if (age <= this.deadMs) return undefined;
    return at === undefined
      ? `node "${node}" has no lease (its agent is gone)`
      : `node "${node}" has not renewed its lease for ${Math.round(age / 1000)} s`;
  }
}

/** Writes this node's lease (one key per node: no key is shared by agents). */
export async function renewLease(store: Store, node: string, clock: Clock): Promise<void> {
  const key = `${NODE_LEASE_PREFIX}${node}`;
  const value: NodeLease = { node, renewedAt: new Date(clock.now()).toISOString() };
  const cur = await store.get<NodeLease>(key);
  if (!cur) await store.create(key, value);
  else await store.update(key, value, cur.version);
}

interface Candidate {
  version: string;
  since: number;
  reason: string;
}

export interface ReclaimReport {
  candidates: number;
  released: { ip: string; pool: string; reason: string }[];
}

export class Reclaimer {
  private readonly candidates = new Map<string, Candidate>();
  private readonly store: Store;
  private readonly state: IpamState;
  private readonly sources: LeakSource[];
  private readonly clock: Clock;
  private readonly graceMs: number;
  private readonly log: Logger | undefined;

  constructor(opts: {
    store: Store;
    state: IpamState;
    sources: LeakSource[];
    clock: Clock;
    graceMs?: number;
    log?: Logger;
  }) {
    this.store = opts.store;
    this.state = opts.state;
    this.sources = opts.sources;
    this.clock = opts.clock;
    this.graceMs = opts.graceMs ?? RECLAIM_GRACE_MS;
    this.log = opts.log;
  }

  private why(c: IPClaim): string | undefined {
    for (const s of this.sources) {
      const r = s.why(c);
      if (r) return `${s.name}: ${r}`;
    }
    return undefined;
  }

  /**
   * One pass: new candidates are noted, candidates past their grace are re-checked and released.
   * @throws StoreError when the store cannot be read (the next pass tries again).
   */
  async scan(): Promise<ReclaimReport> {
    for (const s of this.sources) await s.refresh();
    const now = this.clock.now();
    const seen = new Set<string>();
    const due: HeldClaim[] = [];
    for (const h of this.state.claims.values()) {
      const reason = this.why(h.claim);
      if (!reason) continue;
      seen.add(h.key);
      const c = this.candidates.get(h.key);
      if (!c || c.version !== h.version) {
        this.candidates.set(h.key, { version: h.version, since: now, reason });
      } else if (now - c.since >= this.graceMs) {
        due.push(h);
      }
    }
    for (const k of this.candidates.keys()) if (!seen.has(k)) this.candidates.delete(k);

    const released: ReclaimReport['released'] = [];
    if (due.length > 0) for (const s of this.sources) await s.refresh();
    for (const h of due) {
      // Re-check against the store, not the cache: the claim must be unchanged and still leaked.
      const fresh = await this.store.get<IPClaim>(h.key);
      if (!fresh || fresh.version !== h.version) {
        this.candidates.delete(h.key);
        continue;
      }
      const reason = this.why(fresh.value);
      if (!reason) {
        this.candidates.delete(h.key);
        continue;
      }
      const r = await this.store.delete(h.key, fresh.version);
      this.candidates.delete(h.key);
      if (r.ok) {
        this.state.remove(h.key, r.version);
        released.push({ ip: fresh.value.spec.ip, pool: fresh.value.spec.pool, reason });
        this.log?.info(
          { event: 'reclaim', ip: fresh.value.spec.ip, pool: fresh.value.spec.pool, reason },
          'reclaimed a leaked address',
        );
      }
    }
    return { candidates: this.candidates.size, released };
  }
}
