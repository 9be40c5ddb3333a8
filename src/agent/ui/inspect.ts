/**
 * @module agent/ui/inspect
 * What `ipkeeper describe` shows (`GET /v1/describe/ippools/:name`, `GET /v1/describe/ipclaims/:ip`):
 * one pool with its reservations and holders, or the claims of one address with their problems.
 * Built from the engine's cache, like `/v1/usage`.
 *
 * Errors: IpamError NOT_FOUND, INVALID_OBJECT (an IP that does not parse).
 */
import { IpamError } from '../../errors.ts';
import { formatValue, parseAddr, parseAddrKey, type Addr, type Family } from '../../net/addr.ts';
import type { IPClaim, IPPool, Route } from '../../api/kinds.ts';
import { CLAIM_PREFIX, POOL_PREFIX, RESERVED_PREFIX, type IpamState } from '../../ipam/state.ts';
import { findProblems, type Problem } from './check.ts';
import { holderOf, mapPool, poolDomain, type Holder, type PoolCounts } from './map.ts';

export interface HolderRow extends Holder {
  ip: string;
}

export interface PoolDescription {
  pool: IPPool;
  version: string;
  family: Family;
  network: string;
  subnet: string;
  gateway?: string;
  vlan?: number;
  routes: Route[];
  default: boolean;
  disabled: boolean;
  /** What the pool spans: `spec.ips` ∩ subnet, or the usable subnet. */
  ranges: string[];
  /** What it hands out: ranges − excludeIPs − gateway (before reservations). */
  allocatable: string[];
  excludeIPs: string[];
  reservations: { name: string; ips: string[]; count: string }[];
  counts: PoolCounts;
  holders: HolderRow[];
}

export interface ClaimDescription {
  ip: string;
  family: Family;
  claims: {
    key: string;
    version: string;
    claim: IPClaim;
    poolExists: boolean;
    gateway?: string;
    problems: Problem[];
  }[];
}

/** @throws IpamError NOT_FOUND */
export function describePool(state: IpamState, name: string): PoolDescription {
  const e = state.pools.get(name);
  if (!e)
    throw new IpamError('NOT_FOUND', `IPPool "${name}" not found (ipkeeper get ippools lists them)`, {
      kind: 'IPPool',
      name,
    });
  const p = e.compiled;
  const held = [...state.claims.values()].filter((h) => h.claim.spec.pool === name);
  held.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  const holders = held.map((h) => ({ ip: h.claim.spec.ip, ...holderOf(h.key, h.claim, h.version) }));
  const reservations: PoolDescription['reservations'] = [];
  for (const [rname, r] of state.reservations) {
    const both = r.sets[p.family].intersect(p.allocatable);
    if (!both.isEmpty())
      reservations.push({ name: rname, ips: both.toStrings(), count: String(both.size()) });
  }
  // The counts come from the map builder with an empty window: one definition of every figure.
  const counts = mapPool(state, p, 0n, 0, 0).counts;
  return {
    pool: e.obj,
    version: e.version,
    family: p.family,
    network: p.network,
    subnet: `${formatValue(p.family, p.subnet.base)}/${p.subnet.bits}`,
    ...(p.gateway ? { gateway: p.gateway } : {}),
    ...(p.vlan !== undefined ? { vlan: p.vlan } : {}),
    routes: p.routes,
    default: p.isDefault,
    disabled: p.disabled,
    ranges: poolDomain(p).toStrings(),
    allocatable: p.allocatable.toStrings(),
    excludeIPs: p.spec.excludeIPs ?? [],
    reservations,
    counts,
    holders,
  };
}

/** An address as typed (`10.0.0.5`, `fd00::5`) or as a claim name (`default.10.0.0.5`). */
function parseTarget(text: string): { addr: Addr; network?: string } {
  try {
    return { addr: parseAddr(text) };
  } catch {
    const name = text.startsWith(CLAIM_PREFIX) ? text.slice(CLAIM_PREFIX.length) : text;
    const dot = name.indexOf('.');
    if (dot > 0) {
      try {
        return { addr: parseAddrKey(name.slice(dot + 1)), network: name.slice(0, dot) };
      } catch {
        // fall through to the error naming both forms
      }
    }
    throw new IpamError(
      'INVALID_OBJECT',
      `"${text}" is neither an IP address (10.6.168.133, fd00::5) nor a claim name (default.10.6.168.133)`,
    );
  }
}

/**
 * Every claim of one address (one per network that holds it), with its problems.
 * @param deadNode as in `CheckInput` (why the claim's node looks gone).
 * @throws IpamError NOT_FOUND, INVALID_OBJECT.
 */
export function describeClaim(
  state: IpamState,
  text: string,
  deadNode?: (c: IPClaim) => string | undefined,
): ClaimDescription {
  const { addr, network } = parseTarget(text);
  const ip = formatValue(addr.family, addr.value);
  const mine = [...state.claims.values()].filter(
    (h) =>
      h.value === addr.value &&
      h.claim.spec.family === addr.family &&
      (network === undefined || h.claim.spec.network === network),
  );
  if (mine.length === 0) {
    throw new IpamError(
      'NOT_FOUND',
      `no claim holds ${ip}${network ? ` in network "${network}"` : ''}: the address is free (or not in any pool)`,
      { ip },
    );
  }
  // Problems need the whole picture (duplicates are relative to the other claims): run the check
  // over the cache and keep this address's entries.
  const report = findProblems(
    {
      claims: [...state.claims.values()].map((h) => ({ key: h.key, value: h.claim, version: h.version })),
      pools: [...state.pools.entries()].map(([n, e]) => ({
        key: POOL_PREFIX + n,
        value: e.obj,
        version: e.version,
      })),
      reservations: [...state.reservations.entries()].map(([n, e]) => ({
        key: RESERVED_PREFIX + n,
        value: e.obj,
        version: e.version,
      })),
      ...(deadNode ? { deadNode } : {}),
    },
    { agent: '', store: '', now: 0 },
  );
  const problems = new Map(report.problems.map((p) => [p.key, p.problems]));
  return {
    ip,
    family: addr.family,
    claims: mine
      .sort((a, b) => a.key.localeCompare(b.key))
      .map((h) => {
        const pool = state.pools.get(h.claim.spec.pool)?.compiled;
        return {
          key: h.key,
          version: h.version,
          claim: h.claim,
          poolExists: pool !== undefined,
          ...(pool?.gateway ? { gateway: pool.gateway } : {}),
          problems: problems.get(h.key) ?? [],
        };
      }),
  };
}
