/**
 * @module agent/ui/check
 * `ipkeeper check` (`GET /v1/check`): a report of the claims that should not be there, in the spirit
 * of `calicoctl ipam check`. Read from the store, not the cache, so every listed claim carries the
 * version it was read at: `ipkeeper release --from-report` deletes with that version as the
 * precondition (DESIGN invariant 3), and a claim that changed since the report is left alone.
 *
 * Problems, one entry per claim (a claim may have several):
 *
 * | kind           | the claim ...                                                              |
 * |----------------|----------------------------------------------------------------------------|
 * | `invalid`      | does not parse, or is stored under another address's key                   |
 * | `pool-missing` | names a pool that is not in the store (or is there but invalid)             |
 * | `outside-pool` | holds an address its pool does not hand out (other network or family, outside spec.ips, excluded, the gateway) |
 * | `reserved`     | holds an address a ReservedIP reserves (invariant 5)                       |
 * | `duplicate`    | is a second address of one family for one container + interface (the oldest one without other problems is kept and not listed) |
 * | `dead-node`    | was made on a node whose lease is dead (`NodeLeaseSource`)                  |
 *
 * Objects the agent ignores because they are invalid (a hand edit of the store) are listed in
 * `invalidObjects`; they are not releasable from the report.
 */
import { formatValue, parseAddr, type Family } from '../../net/addr.ts';
import { IntervalSet } from '../../net/interval-set.ts';
import { prefixContains } from '../../net/prefix.ts';
import { parseRange } from '../../net/range.ts';
import { API_VERSION, type IPClaim, type IPPool, type ReservedIP, type Subnet } from '../../api/kinds.ts';
import { objectErrors } from '../../api/validate.ts';
import { compilePool, type CompiledPool } from '../../ipam/pools.ts';
import { CLAIM_PREFIX, POOL_PREFIX, RESERVED_PREFIX } from '../../ipam/state.ts';
import { claimName } from '../../ipam/engine.ts';
import { SUBNET_CLAIM_PREFIX, SUBNET_KEY_PREFIX, claimSubnet, compileSubnet } from '../../ipam/vip.ts';
import { NODE_DEAD_MS, NodeLeaseSource } from '../../ipam/reclaim.ts';
import type { Store, Versioned } from '../../store/store.ts';
import { ownerText } from './map.ts';

export const PROBLEM_KINDS = [
  'invalid',
  'pool-missing',
  'outside-pool',
  'reserved',
  'duplicate',
  'dead-node',
] as const;
export type ProblemKind = (typeof PROBLEM_KINDS)[number];

export interface Problem {
  kind: ProblemKind;
  detail: string;
}

/** One problem claim: enough to find it, to judge it, and to release it at this version. */
export interface ProblemClaim {
  key: string;
  version: string;
  ip: string;
  network: string;
  pool: string;
  owner: string;
  containerId?: string;
  ifName?: string;
  cniNetwork?: string;
  node?: string;
  createdAt?: string;
  problems: Problem[];
}

export interface CheckReport {
  apiVersion: typeof API_VERSION;
  kind: 'CheckReport';
  generatedAt: string;
  /** The agent that wrote the report, and its store. */
  agent: string;
  store: string;
  summary: {
    claims: number;
    pools: number;
    reservations: number;
    /** Claims with at least one problem (= `problems.length`). */
    problemClaims: number;
    /** Claims per problem kind (a claim with two problems counts under both). */
    byKind: Record<ProblemKind, number>;
    invalidObjects: number;
  };
  problems: ProblemClaim[];
  invalidObjects: { key: string; reason: string }[];
}

export interface CheckInput {
  claims: Versioned<unknown>[];
  pools: Versioned<unknown>[];
  reservations: Versioned<unknown>[];
  /**
   * Subnets (`subnets/<name>`), for claims of VIPs taken from a Subnet (`spec.pool` is
   * `subnet/<name>`). Absent: such claims' source is not checked (the agent's cache holds no Subnets).
   */
  subnets?: Versioned<unknown>[];
  /** Why the claim's node looks gone, or undefined (`NodeLeaseSource.why`). */
  deadNode?: (c: IPClaim) => string | undefined;
}

interface Parsed {
  entry: Versioned<unknown>;
  claim: IPClaim;
  family: Family;
  value: bigint;
  out: ProblemClaim;
}

const NS = (f: Family): string => (f === 4 ? 'IPv4' : 'IPv6');

function errorsText(obj: unknown): string | undefined {
  const errs = objectErrors(obj);
  return errs.length === 0 ? undefined : errs.map((e) => `${e.field}: ${e.message}`).join('; ');
}

function rawClaimOut(e: Versioned<unknown>): ProblemClaim {
  const spec = ((e.value as { spec?: Partial<IPClaim['spec']> } | null)?.spec ?? {}) as Partial<
    IPClaim['spec']
  >;
  const s = (v: unknown): string => (typeof v === 'string' ? v : '?');
  return {
    key: e.key,
    version: e.version,
    ip: s(spec.ip),
    network: s(spec.network),
    pool: s(spec.pool),
    owner:
      spec.owner && typeof spec.owner === 'object'
        ? `${s(spec.owner.kind)} ${spec.owner.namespace ? `${spec.owner.namespace}/` : ''}${s(spec.owner.name)}`
        : '?',
    ...(typeof spec.containerId === 'string' ? { containerId: spec.containerId } : {}),
    ...(typeof spec.ifName === 'string' ? { ifName: spec.ifName } : {}),
    ...(typeof spec.cniNetwork === 'string' ? { cniNetwork: spec.cniNetwork } : {}),
    ...(typeof spec.node === 'string' ? { node: spec.node } : {}),
    ...(typeof spec.createdAt === 'string' ? { createdAt: spec.createdAt } : {}),
    problems: [],
  };
}

/** Why `v` is not an address `pool` hands out, or undefined when it is. */
function outsideWhy(pool: CompiledPool, claim: IPClaim, family: Family, v: bigint): string | undefined {
  const ip = formatValue(family, v);
  if (claim.spec.network !== pool.network) {
    return `the claim is in network "${claim.spec.network}" but pool "${pool.name}" is in network "${pool.network}"`;
  }
  if (family !== pool.family) return `${ip} is ${NS(family)} but pool "${pool.name}" is ${NS(pool.family)}`;
  if (pool.allocatable.contains(v)) return undefined;
  const subnet = `${formatValue(pool.family, pool.subnet.base)}/${pool.subnet.bits}`;
  if (!prefixContains(pool.subnet, { family, value: v }))
    return `${ip} is outside the pool's subnet ${subnet}`;
  if (pool.gateway && parseAddr(pool.gateway).value === v)
    return `${ip} is the gateway of pool "${pool.name}"`;
  if (pool.spec.excludeIPs && IntervalSet.parse(family, pool.spec.excludeIPs).contains(v)) {
    return `${ip} is in spec.excludeIPs of pool "${pool.name}"`;
  }
  if (pool.spec.ips) return `${ip} is outside spec.ips of pool "${pool.name}" (${pool.spec.ips.join(', ')})`;
  return `${ip} is not a usable address of ${subnet} (network or broadcast address)`;
}

/**
 * Finds the problem claims of a store snapshot. Pure: time only enters through `deadNode`.
 */
export function findProblems(
  input: CheckInput,
  meta: { agent: string; store: string; now: number },
): CheckReport {
  const invalidObjects: CheckReport['invalidObjects'] = [];
  const pools = new Map<string, CompiledPool>();
  const badPools = new Map<string, string>();
  for (const e of input.pools) {
    const name = e.key.slice(POOL_PREFIX.length);
    const why = errorsText(e.value);
    try {
      if (why) throw new Error(why);
      pools.set(name, compilePool(e.value as IPPool));
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      badPools.set(name, reason);
      invalidObjects.push({ key: e.key, reason });
    }
  }
  for (const e of input.subnets ?? []) {
    const name = SUBNET_CLAIM_PREFIX + e.key.slice(SUBNET_KEY_PREFIX.length);
    const why = errorsText(e.value);
    try {
      if (why) throw new Error(why);
      pools.set(name, compileSubnet(e.value as Subnet));
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      badPools.set(name, reason);
      invalidObjects.push({ key: e.key, reason });
    }
  }
  const reserved: { name: string; sets: Record<Family, IntervalSet> }[] = [];
  for (const e of input.reservations) {
    const why = errorsText(e.value);
    if (why) {
      invalidObjects.push({ key: e.key, reason: why });
      continue;
    }
    const r4: { first: bigint; last: bigint }[] = [];
    const r6: { first: bigint; last: bigint }[] = [];
    for (const item of (e.value as ReservedIP).spec.ips) {
      const r = parseRange(item);
      (r.family === 4 ? r4 : r6).push(r);
    }
    reserved.push({
      name: e.key.slice(RESERVED_PREFIX.length),
      sets: { 4: IntervalSet.of(4, r4), 6: IntervalSet.of(6, r6) },
    });
  }

  const all: ProblemClaim[] = [];
  const parsed: Parsed[] = [];
  for (const e of input.claims) {
    const out = rawClaimOut(e);
    all.push(out);
    const why = errorsText(e.value);
    if (why) {
      out.problems.push({ kind: 'invalid', detail: `the claim does not parse: ${why}` });
      continue;
    }
    const claim = e.value as IPClaim;
    let family: Family;
    let value: bigint;
    try {
      const a = parseAddr(claim.spec.ip);
      family = a.family;
      value = a.value;
    } catch (err) {
      out.problems.push({
        kind: 'invalid',
        detail: `spec.ip: ${err instanceof Error ? err.message : String(err)}`,
      });
      continue;
    }
    out.ip = formatValue(family, value);
    out.owner = ownerText(claim);
    const want = CLAIM_PREFIX + claimName(claim.spec.network, family, value);
    if (family !== claim.spec.family) {
      out.problems.push({
        kind: 'invalid',
        detail: `spec.family is ${claim.spec.family} but ${out.ip} is ${NS(family)}`,
      });
    } else if (e.key !== want) {
      // The uniqueness of an address rests on one key per address; a claim elsewhere is not seen by
      // the create-if-absent that guards its address, so the address may have a second holder.
      out.problems.push({
        kind: 'invalid',
        detail: `stored under "${e.key}" but the key of ${out.ip} in network "${claim.spec.network}" is "${want}"`,
      });
    }
    parsed.push({ entry: e, claim, family, value, out });

    const pool = pools.get(claim.spec.pool);
    const subnet = claimSubnet(claim);
    if (!pool && subnet !== undefined && input.subnets === undefined) {
      // A VIP's claim from a Subnet, and no Subnets to check it against.
    } else if (!pool) {
      const bad = badPools.get(claim.spec.pool);
      out.problems.push({
        kind: 'pool-missing',
        detail: bad
          ? `${subnet !== undefined ? `Subnet "${subnet}"` : `pool "${claim.spec.pool}"`} is in the store but invalid, so no agent uses it (${bad})`
          : subnet !== undefined
            ? `Subnet "${subnet}" (the source of this VIP's address) does not exist`
            : `pool "${claim.spec.pool}" does not exist`,
      });
    } else {
      const o = outsideWhy(pool, claim, family, value);
      if (o) out.problems.push({ kind: 'outside-pool', detail: o });
    }
    const by = reserved.filter((r) => r.sets[family].contains(value)).map((r) => `"${r.name}"`);
    if (by.length > 0)
      out.problems.push({ kind: 'reserved', detail: `${out.ip} is reserved by ReservedIP ${by.join(', ')}` });
    const dead = input.deadNode?.(claim);
    if (dead) out.problems.push({ kind: 'dead-node', detail: dead });
  }

  // Duplicates: one container + interface holding several addresses of one family.
  const groups = new Map<string, Parsed[]>();
  for (const p of parsed) {
    const s = p.claim.spec;
    if (s.cniNetwork === undefined || s.containerId === undefined || s.ifName === undefined) continue;
    const k = `${s.cniNetwork}/${s.containerId}/${s.ifName}/${p.family}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(p);
  }
  for (const g of groups.values()) {
    if (g.length < 2) continue;
    // Keep the claim least likely to be wrong: no other problem first, then the oldest.
    g.sort(
      (a, b) =>
        a.out.problems.length - b.out.problems.length ||
        a.claim.spec.createdAt.localeCompare(b.claim.spec.createdAt) ||
        a.entry.key.localeCompare(b.entry.key),
    );
    const kept = g[0] as Parsed;
    const s = kept.claim.spec;
    for (const p of g.slice(1)) {
      p.out.problems.push({
        kind: 'duplicate',
        detail: `container ${(s.containerId ?? '').slice(0, 12)} interface ${s.ifName} on network "${s.cniNetwork}" also holds ${kept.out.ip} (kept: ${kept.out.problems.length === 0 ? 'no other problem, ' : ''}claimed ${s.createdAt})`,
      });
    }
  }

  const problems = all.filter((p) => p.problems.length > 0);
  const byKind = Object.fromEntries(PROBLEM_KINDS.map((k) => [k, 0])) as Record<ProblemKind, number>;
  for (const p of problems) for (const k of new Set(p.problems.map((x) => x.kind))) byKind[k]++;
  return {
    apiVersion: API_VERSION,
    kind: 'CheckReport',
    generatedAt: new Date(meta.now).toISOString(),
    agent: meta.agent,
    store: meta.store,
    summary: {
      claims: input.claims.length,
      pools: input.pools.length,
      reservations: input.reservations.length,
      problemClaims: problems.length,
      byKind,
      invalidObjects: invalidObjects.length,
    },
    problems,
    invalidObjects,
  };
}

/**
 * Reads pools, reservations, claims and node leases from the store and finds the problems.
 * @throws StoreError when the store cannot be read.
 */
export async function runCheck(
  store: Store,
  opts: { agent: string; now?: () => number; nodeDeadMs?: number },
): Promise<CheckReport> {
  const now = opts.now ?? Date.now;
  // Claims before leases: a lease read after a claim is at least as fresh as the claim, so a node
  // that started (and wrote its first lease) while we read is never taken for dead.
  const claims = await store.list(CLAIM_PREFIX);
  const pools = await store.list(POOL_PREFIX);
  const reservations = await store.list(RESERVED_PREFIX);
  const subnets = await store.list(SUBNET_KEY_PREFIX);
  const leases = new NodeLeaseSource(store, { now }, opts.nodeDeadMs ?? NODE_DEAD_MS);
  await leases.refresh();
  return findProblems(
    { pools, reservations, subnets, claims, deadNode: (c) => leases.why(c) },
    { agent: opts.agent, store: store.backend, now: now() },
  );
}
