/**
 * @module agent/ui/map
 * The pool map (`GET /v1/map`): every pool as a window of its addresses, each address with a state
 * and, for held ones, its holder; plus, for pools larger than the window, an overview of the whole
 * pool in `BLOCK_COUNT` blocks. Built from the engine's cache (`IpamState`), so it may lag the store
 * by a watch event, like `/v1/usage`.
 *
 * A pool's *addresses* here are the ones an operator thinks of as "the pool": its `spec.ips` (or the
 * usable addresses of the subnet) — the allocatable set with the excluded ones put back, so they can
 * be shown as excluded (a gateway outside them is named in the pool's header, not drawn):
 *
 * ```
 *   domain      = spec.ips ∩ subnet, or usable(subnet)
 *   excluded    = domain − allocatable            (excludeIPs, a gateway inside the domain)
 *   reserved    = allocatable ∩ ReservedIPs
 *   window      = domain.nth(at) .. domain.nth(at + CELL_LIMIT − 1)
 *   block i     = domain.nth(⌊i·size/B⌋) .. domain.nth(⌊(i+1)·size/B⌋ − 1)
 * ```
 *
 * Nothing loops over a pool's addresses: the window is at most `CELL_LIMIT` cells and every block is
 * counted with interval arithmetic, so a /64 costs what a /24 costs. Counts are decimal strings
 * because a /64 holds more addresses than a JSON number carries exactly.
 */
import { formatValue, parseAddr, type Family } from '../../net/addr.ts';
import { IntervalSet } from '../../net/interval-set.ts';
import { prefixFirst, prefixLast } from '../../net/prefix.ts';
import { usableOf, type CompiledPool } from '../../ipam/pools.ts';
import { CLAIM_PREFIX, type IpamState } from '../../ipam/state.ts';
import { claimName } from '../../ipam/engine.ts';
import type { IPClaim } from '../../api/kinds.ts';
import type { AgentEvent } from './events.ts';

/** Addresses shown per pool at once. */
export const CELL_LIMIT = 1024;
/** Blocks in the overview of a pool larger than the window. */
export const BLOCK_COUNT = 128;

/**
 * The states an address can be in, in legend order. The page draws its legend from this list, so a
 * new state (fixed IPs kept for a workload, VIPs) is one entry here plus its rule in `classify`.
 * `produced: false` would mark a state the engine does not make yet (the legend greys it); today
 * every state is produced.
 */
export const CELL_STATES = [
  { id: 'free', label: 'free', color: '#dff3e4', produced: true, description: 'can be handed out' },
  {
    id: 'used',
    label: 'used',
    color: '#2d6cdf',
    produced: true,
    description: 'held by a claim (a pod interface)',
  },
  {
    id: 'reserved',
    label: 'reserved',
    color: '#f0a030',
    produced: true,
    description: 'reserved by a ReservedIP: never handed out',
  },
  {
    id: 'excluded',
    label: 'excluded',
    color: '#9aa0a6',
    produced: true,
    description: 'in spec.excludeIPs, or the gateway',
  },
  {
    id: 'conflict',
    label: 'conflict',
    color: '#d93025',
    produced: true,
    description: 'held although reserved or excluded — see `ipkeeper check`',
  },
  {
    id: 'fixed',
    label: 'fixed (retained)',
    color: '#8e44ad',
    produced: true,
    description:
      'a fixed IP of a StatefulSet/VM pod: kept across its restarts, and after it for its retention',
  },
  { id: 'vip', label: 'VIP', color: '#0f9d9a', produced: true, description: 'the address of a VIP object' },
] as const;

export type CellState = (typeof CELL_STATES)[number]['id'];

export interface Holder {
  /** `Pod ns/name`, `VIP name`, ... */
  owner: string;
  ownerKind: string;
  namespace?: string;
  name: string;
  uid?: string;
  containerId?: string;
  ifName?: string;
  node?: string;
  cniNetwork?: string;
  /** The pool the claim names (another pool's claim on this address shows here). */
  pool: string;
  createdAt: string;
  claim: string;
  version: string;
}

export interface MapCell {
  ip: string;
  state: CellState;
  holder?: Holder;
  /** Why the address is not free for allocation (reserved, excluded, conflict). */
  why?: string;
}

export interface MapBlock {
  /** Index of the block's first address among the pool's addresses (use as `at`). */
  at: string;
  first: string;
  last: string;
  size: string;
  used: string;
  reserved: string;
  excluded: string;
}

export interface PoolCounts {
  /** Allocatable addresses (as in `ipkeeper usage`: excluded ones are not counted). */
  total: string;
  used: string;
  reserved: string;
  free: string;
  excluded: string;
  claims: number;
}

export interface PoolMap {
  name: string;
  family: Family;
  network: string;
  subnet: string;
  gateway?: string;
  vlan?: number;
  default: boolean;
  disabled: boolean;
  /** The pool's addresses (`spec.ips`, or the usable subnet), as ranges. */
  ranges: string[];
  excludeIPs: string[];
  counts: PoolCounts;
  window: { at: string; shown: number; size: string; truncated: boolean };
  cells: MapCell[];
  /** Only when the pool has more addresses than the window. */
  blocks?: MapBlock[];
}

export interface PoolMapPage {
  node: string;
  store: string;
  generatedAt: string;
  cellLimit: number;
  states: typeof CELL_STATES;
  totals: { pools: number; claims: number; used: string; reserved: string; free: string; total: string };
  pools: PoolMap[];
  events: AgentEvent[];
}

export interface MapOptions {
  node: string;
  store: string;
  now?: () => number;
  /** Window start per pool (index among the pool's addresses); default 0. */
  at?: Map<string, bigint>;
  events?: AgentEvent[];
  cellLimit?: number;
  blockCount?: number;
}

/**
 * The pool's addresses as an operator sees them (see the module comment): what the pool spans,
 * `spec.ips` ∩ subnet or the usable subnet, excluded addresses and a gateway inside it included.
 */
export function poolDomain(pool: CompiledPool): IntervalSet {
  const subnet = pool.subnet;
  const whole = IntervalSet.of(pool.family, [{ first: prefixFirst(subnet), last: prefixLast(subnet) }]);
  return pool.spec.ips ? IntervalSet.parse(pool.family, pool.spec.ips).intersect(whole) : usableOf(subnet);
}

export function ownerText(c: IPClaim): string {
  const o = c.spec.owner;
  return `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
}

export function holderOf(key: string, c: IPClaim, version: string): Holder {
  const s = c.spec;
  return {
    owner: ownerText(c),
    ownerKind: s.owner.kind,
    ...(s.owner.namespace ? { namespace: s.owner.namespace } : {}),
    name: s.owner.name,
    ...(s.owner.uid ? { uid: s.owner.uid } : {}),
    ...(s.containerId ? { containerId: s.containerId } : {}),
    ...(s.ifName ? { ifName: s.ifName } : {}),
    ...(s.node ? { node: s.node } : {}),
    ...(s.cniNetwork ? { cniNetwork: s.cniNetwork } : {}),
    pool: s.pool,
    createdAt: s.createdAt,
    claim: key,
    version,
  };
}

/** Context shared by the cells of one pool. */
class PoolView {
  readonly pool: CompiledPool;
  readonly domain: IntervalSet;
  readonly excludeSet: IntervalSet;
  private readonly state: IpamState;

  constructor(state: IpamState, pool: CompiledPool) {
    this.state = state;
    this.pool = pool;
    this.domain = poolDomain(pool);
    this.excludeSet = pool.spec.excludeIPs
      ? IntervalSet.parse(pool.family, pool.spec.excludeIPs)
      : IntervalSet.empty(pool.family);
  }

  /** Names of the reservations holding `v`. */
  reservedBy(v: bigint): string[] {
    const out: string[] = [];
    for (const [name, e] of this.state.reservations) if (e.sets[this.pool.family].contains(v)) out.push(name);
    return out;
  }

  excludedWhy(v: bigint): string | undefined {
    const p = this.pool;
    if (p.allocatable.contains(v)) return undefined;
    if (p.gateway && parseAddr(p.gateway).value === v) return 'the gateway of the pool';
    if (this.excludeSet.contains(v)) return 'in spec.excludeIPs';
    return 'not allocatable';
  }

  cell(v: bigint): MapCell {
    const p = this.pool;
    const ip = formatValue(p.family, v);
    const key = CLAIM_PREFIX + claimName(p.network, p.family, v);
    const held = this.state.claims.get(key);
    const excluded = this.excludedWhy(v);
    const reserved = this.state.reserved(p.family).contains(v) ? this.reservedBy(v) : [];
    const blocked =
      excluded !== undefined
        ? `excluded: ${excluded}`
        : reserved.length > 0
          ? `reserved by ReservedIP ${reserved.map((n) => `"${n}"`).join(', ')}`
          : undefined;
    if (held) {
      const holder = holderOf(key, held.claim, held.version);
      if (blocked) return { ip, state: 'conflict', holder, why: `held although ${blocked}` };
      // Held either way; the colour says why it outlives a pod: a VIP's own, or a fixed IP.
      if (held.claim.spec.owner.kind === 'VIP') return { ip, state: 'vip', holder };
      if (held.claim.spec.fixed === true) return { ip, state: 'fixed', holder };
      return { ip, state: 'used', holder };
    }
    if (excluded !== undefined) return { ip, state: 'excluded', why: blocked };
    if (reserved.length > 0) return { ip, state: 'reserved', why: blocked };
    return { ip, state: 'free' };
  }

  /** Counts of the domain addresses in `slice` (a subset of the domain). */
  blockOf(at: bigint, slice: IntervalSet): MapBlock {
    const p = this.pool;
    const alloc = slice.intersect(p.allocatable);
    const reserved = alloc.intersect(this.state.reserved(p.family));
    const used = this.state.usedSet(p.network, p.family).countIn(slice);
    return {
      at: String(at),
      first: formatValue(p.family, slice.min() ?? 0n),
      last: formatValue(p.family, slice.max() ?? 0n),
      size: String(slice.size()),
      used: String(used),
      reserved: String(reserved.size()),
      excluded: String(slice.size() - alloc.size()),
    };
  }
}

/** The map of one pool. */
export function mapPool(
  state: IpamState,
  pool: CompiledPool,
  at = 0n,
  cellLimit = CELL_LIMIT,
  blockCount = BLOCK_COUNT,
): PoolMap {
  const view = new PoolView(state, pool);
  const domain = view.domain;
  const size = domain.size();
  const start =
    size === 0n ? 0n : at < 0n ? 0n : at >= size ? ((size - 1n) / BigInt(cellLimit)) * BigInt(cellLimit) : at;
  const cells: MapCell[] = [];
  for (let i = start; i < size && cells.length < cellLimit; i++) cells.push(view.cell(domain.nth(i)!));
  const u = state.usage(pool);
  const out: PoolMap = {
    name: pool.name,
    family: pool.family,
    network: pool.network,
    subnet: `${formatValue(pool.family, pool.subnet.base)}/${pool.subnet.bits}`,
    ...(pool.gateway ? { gateway: pool.gateway } : {}),
    ...(pool.vlan !== undefined ? { vlan: pool.vlan } : {}),
    default: pool.isDefault,
    disabled: pool.disabled,
    ranges: domain.toStrings(),
    excludeIPs: pool.spec.excludeIPs ?? [],
    counts: {
      total: String(u.total),
      used: String(u.used),
      reserved: String(u.reserved),
      free: String(u.free),
      excluded: String(size - pool.allocatable.size()),
      claims: state.claimCountOf(pool.name),
    },
    window: {
      at: String(start),
      shown: cells.length,
      size: String(size),
      truncated: size > BigInt(cells.length),
    },
    cells,
  };
  if (size > BigInt(cellLimit)) {
    const n = BigInt(blockCount);
    const blocks: MapBlock[] = [];
    for (let i = 0n; i < n; i++) {
      const lo = (i * size) / n;
      const hi = ((i + 1n) * size) / n;
      if (hi <= lo) continue;
      const first = domain.nth(lo)!;
      const last = domain.nth(hi - 1n)!;
      blocks.push(view.blockOf(lo, domain.intersect(IntervalSet.of(pool.family, [{ first, last }]))));
    }
    out.blocks = blocks;
  }
  return out;
}

/** The whole page's data: every pool, sorted by name, with totals and recent events. */
export function buildMap(state: IpamState, opts: MapOptions): PoolMapPage {
  const pools = [...state.pools.values()]
    .map((e) => e.compiled)
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((p) => mapPool(state, p, opts.at?.get(p.name) ?? 0n, opts.cellLimit, opts.blockCount));
  const sum = (k: 'used' | 'reserved' | 'free' | 'total'): string =>
    String(pools.reduce((acc, p) => acc + BigInt(p.counts[k]), 0n));
  return {
    node: opts.node,
    store: opts.store,
    generatedAt: new Date((opts.now ?? Date.now)()).toISOString(),
    cellLimit: opts.cellLimit ?? CELL_LIMIT,
    states: CELL_STATES,
    totals: {
      pools: pools.length,
      claims: state.claims.size,
      used: sum('used'),
      reserved: sum('reserved'),
      free: sum('free'),
      total: sum('total'),
    },
    pools,
    events: opts.events ?? [],
  };
}

/**
 * Parses `at=pool:index,pool:index` (the page's window positions).
 * @returns an empty map for a missing or malformed value: a bad position only resets the window.
 */
export function parseAt(q: unknown): Map<string, bigint> {
  const out = new Map<string, bigint>();
  if (typeof q !== 'string') return out;
  for (const part of q.split(',')) {
    const m = /^([a-z0-9.-]{1,253}):(\d{1,40})$/.exec(part);
    if (m) out.set(m[1] as string, BigInt(m[2] as string));
  }
  return out;
}
