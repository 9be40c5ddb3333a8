/**
 * @module ipam/node-pool
 * Node pools (seed 004, Cilium's CRD-backed IPAM): a `NodePool` named after a node lists the exact
 * addresses that node may use (`spec.pool`, ip -> {resource}); the node's agent, in node-pool mode,
 * allocates only from it and reports `status.used` (ip -> {owner, resource}).
 *
 * How the engine is made to allocate only from it: in node-pool mode the agent gives the engine a
 * `NodePoolStore`, a `Store` that passes everything through except the `ippools/` prefix, which it
 * answers with the IPPools compiled from this node's NodePool (`nodePoolPools`). So the engine,
 * unchanged, sees exactly those pools (all marked default) and nothing else; claims, uniqueness,
 * reservations and release work as for any pool. The compiled pools:
 *
 *   a family with a subnet in spec.subnets  ->  one pool `nodepool.<node>.v4|v6`: that subnet, the
 *                                               listed addresses as ips, the family's gateway
 *   a family without one                    ->  one pool per address, `nodepool.<node>.<address key>`,
 *                                               subnet <ip>/32 (or /128): pods get host addresses, as
 *                                               with Cilium, whose datapath routes them
 *
 * An address removed from spec.pool while in use leaves the compiled pools, so it is never proposed
 * again, but nothing deletes its claim: it stays with its owner until released (its result keeps a
 * /32 or the subnet's length) — Cilium's rule.
 *
 * `status.used` is derived from the claims of those pools and written batched and throttled
 * (`StatusThrottle`: at most one write per interval, 15 s by default), so a burst of pods costs one
 * write; it may lag by up to one interval. Readiness (`nodePoolReadiness`): at least one address
 * listed (two when the agent health-checks, which takes one).
 *
 * Errors: none thrown of its own; StoreError from the store passes through.
 */
import { addrKey, parseAddr, type Family } from '../net/addr.ts';
import type { Store, Version, Versioned, WatchEvent, Watcher } from '../store/store.ts';
import { API_VERSION, type IPPool, type NodePool } from '../api/kinds.ts';
import { DEFAULT_NETWORK } from './pools.ts';
import { CLAIM_PREFIX, POOL_PREFIX, type IpamState } from './state.ts';

export const NODE_POOL_PREFIX = 'nodepools/';
/** Default of `--node-pool-status-interval`: Cilium's "at most every 15 seconds". */
export const NODE_POOL_STATUS_INTERVAL_MS = 15_000;

/** Every compiled pool of node `node` is named `nodepool.<node>.<...>` (node names hold no dots). */
export function nodePoolPrefix(node: string): string {
  return `nodepool.${node}.`;
}

/**
 * The IPPools node pool `np` compiles to (see the module comment), in name order. Entries that do
 * not parse are skipped (validation refuses them on apply; a hand-edited object must not stop the
 * agent).
 */
export function nodePoolPools(np: NodePool): IPPool[] {
  const node = np.metadata.name;
  const spec = np.spec;
  const byFamily: Record<Family, string[]> = { 4: [], 6: [] };
  for (const ip of Object.keys(spec.pool ?? {})) {
    try {
      byFamily[parseAddr(ip).family].push(ip);
    } catch {
      // Skipped: see the doc comment.
    }
  }
  const subnetOf = (f: Family): string | undefined =>
    spec.subnets?.find((s) => (s.includes(':') ? 6 : 4) === f);
  const gatewayOf = (f: Family): string | undefined =>
    spec.gateways?.find((g) => (g.includes(':') ? 6 : 4) === f);
  const base = (name: string, subnet: string, ips: string[]): IPPool => ({
    apiVersion: API_VERSION,
    kind: 'IPPool',
    metadata: { name, labels: { 'ipkeeper.io/node-pool': node } },
    spec: {
      subnet,
      ips,
      network: spec.network ?? DEFAULT_NETWORK,
      default: true,
      nodeName: [node],
    },
  });
  const out: IPPool[] = [];
  for (const f of [4, 6] as Family[]) {
    const ips = byFamily[f];
    const subnet = subnetOf(f);
    if (subnet) {
      // Kept even when empty: the pool's subnet and gateway still serve the results of addresses
      // removed while in use.
      const p = base(`${nodePoolPrefix(node)}v${f}`, subnet, ips);
      const gw = gatewayOf(f);
      if (gw) p.spec.gateway = gw;
      if (spec.routes) p.spec.routes = spec.routes.filter((r) => (r.dst.includes(':') ? 6 : 4) === f);
      out.push(p);
      continue;
    }
    for (const ip of ips) {
      out.push(base(`${nodePoolPrefix(node)}${addrKey(parseAddr(ip))}`, `${ip}/${f === 4 ? 32 : 128}`, [ip]));
    }
  }
  return out.sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/** Readiness of a node pool: Cilium waits for 1 address, 2 with health checking (it takes one). */
export function nodePoolReadiness(
  node: string,
  np: NodePool | undefined,
  healthCheck: boolean,
): { ready: true } | { ready: false; reason: string } {
  const need = healthCheck ? 2 : 1;
  const have = Object.keys(np?.spec.pool ?? {}).length;
  if (!np) {
    return {
      ready: false,
      reason: `Waiting for initial IP to become available in '${node}' NodePool: there is no NodePool named '${node}'; create one listing this node's addresses in spec.pool`,
    };
  }
  if (have < need) {
    return {
      ready: false,
      reason: `Waiting for initial IP to become available in '${node}' NodePool: spec.pool lists ${have} address(es), ${need} needed${healthCheck ? ' (one is for health checking)' : ''}`,
    };
  }
  return { ready: true };
}

/** `status.used`: every claim of this node's compiled pools, including addresses removed from spec.pool. */
export function nodePoolUsed(
  state: IpamState,
  np: NodePool | undefined,
  node: string,
): Record<string, { owner: string; resource?: string }> {
  const prefix = nodePoolPrefix(node);
  const used: Record<string, { owner: string; resource?: string }> = {};
  const entries: [string, { owner: string; resource?: string }][] = [];
  for (const h of state.claims.values()) {
    const s = h.claim.spec;
    if (!s.pool.startsWith(prefix)) continue;
    const o = s.owner;
    const resource = np?.spec.pool?.[s.ip]?.resource;
    entries.push([
      s.ip,
      { owner: o.namespace ? `${o.namespace}/${o.name}` : o.name, ...(resource ? { resource } : {}) },
    ]);
  }
  // Address order, so the written object reads (and compares) the same however the cache is ordered.
  entries.sort((a, b) => {
    const x = parseAddr(a[0]);
    const y = parseAddr(b[0]);
    return x.family !== y.family ? x.family - y.family : x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
  });
  for (const [ip, v] of entries) used[ip] = v;
  return used;
}

/**
 * At most one write per interval, batching every change in between:
 *
 *   change ──> mark() ──> delay d = max(0, last + interval − now) ──> flushing() ──> write
 *   change during the wait: mark() returns undefined (the scheduled flush will carry it)
 *   change during the write: mark() schedules the next flush, one interval after this one
 *
 * The clock is injected, so tests drive it without sleeping.
 */
export class StatusThrottle {
  readonly intervalMs: number;
  private readonly clock: { now(): number };
  private last = Number.NEGATIVE_INFINITY;
  private pending = false;

  constructor(intervalMs: number, clock: { now(): number }) {
    this.intervalMs = intervalMs;
    this.clock = clock;
  }

  /** Something changed. @returns ms until the flush should run, or undefined when one is already due. */
  mark(): number | undefined {
    if (this.pending) return undefined;
    this.pending = true;
    return Math.max(0, this.last + this.intervalMs - this.clock.now());
  }

  /**
   * A flush starts now: it reads the state after this point, so a change from here on needs (and
   * gets, from `mark`) a flush of its own, one interval later.
   */
  flushing(): void {
    this.pending = false;
    this.last = this.clock.now();
  }
}

/**
 * A `Store` for the engine in node-pool mode: `ippools/` is this node's NodePool compiled
 * (`nodePoolPools`), every other key passes through. Listeners hear of NodePool changes and of claim
 * events (to schedule a status write).
 */
export class NodePoolStore implements Store {
  readonly backend: string;
  readonly node: string;
  private readonly inner: Store;
  private current: NodePool | undefined;
  private version: Version | undefined;
  private pools = new Map<string, IPPool>();
  private readonly poolListeners: ((np: NodePool | undefined) => void)[] = [];
  private readonly claimListeners: (() => void)[] = [];

  constructor(inner: Store, node: string) {
    this.inner = inner;
    this.node = node;
    this.backend = inner.backend;
  }

  get key(): string {
    return NODE_POOL_PREFIX + this.node;
  }

  /** The NodePool as last read or watched. */
  nodePool(): NodePool | undefined {
    return this.current;
  }

  onNodePool(fn: (np: NodePool | undefined) => void): void {
    this.poolListeners.push(fn);
  }

  onClaimEvent(fn: () => void): void {
    this.claimListeners.push(fn);
  }

  /** Takes a NodePool value (or its absence) at `version`; returns the pool events it implies. */
  private apply(np: NodePool | undefined, version: Version): WatchEvent<IPPool>[] {
    const next = new Map((np ? nodePoolPools(np) : []).map((p) => [p.metadata.name, p]));
    const events: WatchEvent<IPPool>[] = [];
    for (const name of this.pools.keys()) {
      if (!next.has(name)) events.push({ type: 'delete', key: POOL_PREFIX + name, version });
    }
    for (const [name, p] of next) events.push({ type: 'put', key: POOL_PREFIX + name, value: p, version });
    this.pools = next;
    this.current = np;
    this.version = version;
    for (const fn of this.poolListeners) fn(np);
    return events;
  }

  private newer(version: Version): boolean {
    if (this.version === undefined) return true;
    return /^\d+$/.test(version) && /^\d+$/.test(this.version)
      ? BigInt(version) > BigInt(this.version)
      : version !== this.version;
  }

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    if (!key.startsWith(POOL_PREFIX)) return this.inner.get<T>(key);
    await this.list(POOL_PREFIX);
    const p = this.pools.get(key.slice(POOL_PREFIX.length));
    return p && this.version !== undefined ? { key, value: p as T, version: this.version } : undefined;
  }

  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    if (!prefix.startsWith(POOL_PREFIX) && !POOL_PREFIX.startsWith(prefix)) return this.inner.list<T>(prefix);
    const e = await this.inner.get<NodePool>(this.key);
    // A list is a fresh read (the engine re-lists after a watch reset), but a watch event newer than
    // it may already have been applied: then that one stands.
    if (this.version === undefined || (e && (e.version === this.version || this.newer(e.version)))) {
      this.apply(e?.value, e?.version ?? '0');
    }
    const version = this.version ?? '0';
    const pools = [...this.pools.values()]
      .filter((p) => (POOL_PREFIX + p.metadata.name).startsWith(prefix))
      .map((p) => ({ key: POOL_PREFIX + p.metadata.name, value: p as T, version }));
    if (prefix.startsWith(POOL_PREFIX)) return pools;
    // A prefix wider than ippools/ ("" or a parent): the rest from the store, pools from the node pool.
    const rest = (await this.inner.list<T>(prefix)).filter((x) => !x.key.startsWith(POOL_PREFIX));
    return [...rest, ...pools].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  create<T>(key: string, value: T) {
    return this.inner.create<T>(key, value);
  }

  update<T>(key: string, value: T, version: Version) {
    return this.inner.update<T>(key, value, version);
  }

  delete(key: string, version: Version) {
    return this.inner.delete(key, version);
  }

  watch<T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, onReset?: () => void): Watcher {
    if (prefix === POOL_PREFIX) {
      return this.inner.watch<NodePool>(
        NODE_POOL_PREFIX,
        (ev) => {
          if (ev.key !== this.key || !this.newer(ev.version)) return;
          const events = this.apply(ev.type === 'put' ? ev.value : undefined, ev.version);
          for (const x of events) onEvent(x as WatchEvent<T>);
        },
        () => {
          // Events were lost: the engine re-lists, and that list is the truth (a deletion included).
          this.version = undefined;
          onReset?.();
        },
      );
    }
    if (prefix === CLAIM_PREFIX) {
      return this.inner.watch<T>(
        prefix,
        (ev) => {
          onEvent(ev);
          for (const fn of this.claimListeners) fn();
        },
        onReset,
      );
    }
    return this.inner.watch<T>(prefix, onEvent, onReset);
  }

  /** The agent closes the real store; this view owns nothing. */
  async close(): Promise<void> {}
}
