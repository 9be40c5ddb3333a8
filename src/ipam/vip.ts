/**
 * @module ipam/vip
 * VIPs (seed 002, Kube-OVN's `Vip`): an address reserved from a pool or a Subnet, held by an ordinary claim
 * (`ipclaims/<network>.<address key>`) whose owner is `{kind: 'VIP', name, uid}`. Because it is a
 * claim like any other, allocation never proposes it to a pod (it is in the used set) and uniqueness
 * is the store's create-if-absent (DESIGN invariant 1). This module:
 *
 * - allocates a VIP's claims — one per family of `spec.pool` / `spec.ipv6Pool`, or of `spec.subnet` /
 *   `spec.ipv6Subnet` (exactly one of pool and subnet), dynamic or at `spec.v4ip` / `spec.v6ip`
 *   (inside the pool or subnet, not reserved, free: else ADDRESS_NOT_IN_POOL, ADDRESS_RESERVED,
 *   ADDRESS_IN_USE naming the holder) — all or nothing, idempotently (a claim the VIP already holds
 *   is kept);
 * - a VIP from a Subnet takes an address of the subnet that no IPPool of its network holds (pools are
 *   carved from Subnets, and an address has one pool): its claim names `subnet/<name>` in
 *   `spec.pool` (`SUBNET_CLAIM_PREFIX`) — never an IPPool name, so no pool counts it, keeps its
 *   finalizer for it or calls it its own — and the carving of application pools skips it, as it skips
 *   every claimed address (src/controller/app-pools.ts);
 * - releases them when the VIP goes (never while a pod uses the address, see below);
 * - derives the VIP's status (addresses, MAC, ready, the pod using it);
 * - lets one pod use a VIP as its address (annotation `ipkeeper.io/vip`, alias `ovn.kubernetes.io/vip`;
 *   CNI arg `IPKEEPER_VIP` in embedded mode, where there are no annotations). The claim stays the
 *   VIP's; the pod is recorded in the claim's `spec.boundTo`, written with the claim's version as
 *   precondition (`mutate`), so of two pods asking at once exactly one wins and the other is refused
 *   with the holder's name. The same pod name (a StatefulSet or VM pod recreated, a new sandbox)
 *   takes the binding over; on DEL the binding is cleared, or kept (marked released) for a
 *   StatefulSet/VM pod, so nobody else takes the address while that pod is being recreated.
 *
 * The MAC is derived from the address (`vipMac`): the same VIP address has the same MAC wherever and
 * whenever it is computed, without storing it, so neighbours' ARP/ND caches stay right when the
 * address moves between keepalived peers or the VIP is recreated.
 *
 * Errors: IpamError POOL_NOT_FOUND, POOL_EXHAUSTED, ADDRESS_NOT_IN_POOL, ADDRESS_RESERVED,
 * ADDRESS_IN_USE, INVALID_OBJECT, NOT_FOUND, NOT_READY, CONFLICT; StoreError from the store.
 */
import { IpamError } from '../errors.ts';
import type { Store } from '../store/store.ts';
import { mutate } from '../store/retry.ts';
import { addrKey, formatValue, parseAddr, type Family } from '../net/addr.ts';
import { nextFree } from '../net/used-set.ts';
import { IntervalSet } from '../net/interval-set.ts';
import {
  API_VERSION,
  type ClaimOwner,
  type IPClaim,
  type IPPool,
  type Subnet,
  type VIP,
  type VIPStatus,
} from '../api/kinds.ts';
import { parseSelectorItems } from '../api/validate-vip.ts';
import { annotationValue } from '../api/annotations.ts';
import type { PodInfo } from './cluster-view.ts';
import { matchSelector } from './choose.ts';
import { defaultRouteNic } from './routing.ts';
import { compilePool, type CompiledPool } from './pools.ts';
import { CLAIM_PREFIX, attachmentKey, type HeldClaim, type IpamState } from './state.ts';

export const VIP_PREFIX = 'vips/';
export const VIP_ANNOTATIONS = ['ipkeeper.io/vip', 'ovn.kubernetes.io/vip'] as const;
export const AAPS_ANNOTATIONS = ['ipkeeper.io/aaps', 'ovn.kubernetes.io/aaps'] as const;
/** CNI_ARGS key naming the VIP in embedded mode (CNI_ARGS keys cannot hold `/`). */
export const VIP_CNI_ARG = 'IPKEEPER_VIP';
/** Lost create races one family of one VIP tolerates before it gives up (as the engine). */
const MAX_RACES = 64;

export interface VipDeps {
  store: Store;
  state: IpamState;
  clock: { now(): number };
  /** The node of the agent binding pods (absent in the controller). */
  node?: string;
}

/** The attachment and pod of a CNI request (a subset of the engine's AllocateRequest). */
export interface VipRequest {
  cniNetwork: string;
  containerId: string;
  ifName: string;
  owner: ClaimOwner;
  vip?: string;
  defaultRouteNic?: string;
}

// ---- MAC -------------------------------------------------------------------------------------

/**
 * The VIP's MAC, derived from its address:
 *
 *   IPv4 a.b.c.d  ->  02:00:aa:bb:cc:dd     (first octet 0x02: locally administered, unicast)
 *   IPv6 ...:wxyz ->  06:<last 5 bytes>     (0x06: also local + unicast; differs from any IPv4 one)
 *
 * Locally administered, so it can never equal a vendor-assigned (universally administered) MAC on
 * the segment; unicast, so switches learn it. A dual-stack VIP uses its IPv4 address's MAC.
 */
export function vipMac(ip: string): string {
  const a = parseAddr(ip);
  const bytes: number[] = [];
  if (a.family === 4) {
    bytes.push(0x02, 0x00);
    for (let i = 3; i >= 0; i--) bytes.push(Number((a.value >> BigInt(i * 8)) & 0xffn));
  } else {
    bytes.push(0x06);
    for (let i = 4; i >= 0; i--) bytes.push(Number((a.value >> BigInt(i * 8)) & 0xffn));
  }
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

// ---- the VIP's claims --------------------------------------------------------------------------

function ownsClaim(c: IPClaim, name: string, uid: string | undefined): boolean {
  const o = c.spec.owner;
  // A claim made before the VIP had a uid (applied through the agent) belongs to it by name.
  return o.kind === 'VIP' && o.name === name && (o.uid === undefined || uid === undefined || o.uid === uid);
}

/** Every VIP claim in the cache, by VIP name (one pass over the claims). */
export function vipClaimIndex(state: IpamState): Map<string, HeldClaim[]> {
  const out = new Map<string, HeldClaim[]>();
  for (const h of state.claims.values()) {
    if (h.claim.spec.owner.kind !== 'VIP') continue;
    const list = out.get(h.claim.spec.owner.name);
    if (list) list.push(h);
    else out.set(h.claim.spec.owner.name, [h]);
  }
  return out;
}

/**
 * The claims VIP `name` (of `uid`) holds, IPv4 first: from `index` when given (one `vipClaimIndex`
 * for a whole pass), else by a pass over the cache's claims.
 */
export function claimsOfVip(
  state: IpamState,
  name: string,
  uid?: string,
  index?: Map<string, HeldClaim[]>,
): HeldClaim[] {
  const out: HeldClaim[] = [];
  // The index may be older than the cache: each of its claims is read again from the cache.
  const from = index
    ? (index.get(name) ?? []).flatMap((h) => {
        const now = state.claims.get(h.key);
        return now ? [now] : [];
      })
    : state.claims.values();
  for (const h of from) if (ownsClaim(h.claim, name, uid)) out.push(h);
  // Oldest first, so that of two claims one VIP got in a race every reader keeps the same one.
  return out.sort(
    (a, b) =>
      a.claim.spec.family - b.claim.spec.family ||
      a.claim.spec.createdAt.localeCompare(b.claim.spec.createdAt) ||
      a.key.localeCompare(b.key),
  );
}

function what(vip: VIP): string {
  return `VIP "${vip.metadata.name}"`;
}

/** Store prefix of Subnet objects (as src/controller/app-pools.ts). */
export const SUBNET_KEY_PREFIX = 'subnets/';
/**
 * The `spec.pool` of a claim made for a VIP from a Subnet: `subnet/<Subnet name>`. A `/` is never in
 * an IPPool's name, so pool status, the pool-in-use finalizer and pool-change checks (which match
 * claims to pools by this field) never take it for a pool's claim.
 */
export const SUBNET_CLAIM_PREFIX = 'subnet/';

/** The Subnet a claim's address was taken from directly (a VIP from a Subnet), or undefined. */
export function claimSubnet(c: IPClaim): string | undefined {
  return c.spec.pool.startsWith(SUBNET_CLAIM_PREFIX)
    ? c.spec.pool.slice(SUBNET_CLAIM_PREFIX.length)
    : undefined;
}

type SourceField = 'pool' | 'ipv6Pool' | 'subnet' | 'ipv6Subnet';

/**
 * Where one family of a VIP comes from: an IPPool, or a Subnet compiled as a pool named
 * `subnet/<name>` (so the claim's `spec.pool` is that name, see SUBNET_CLAIM_PREFIX).
 */
interface Source {
  field: SourceField;
  kind: 'IPPool' | 'Subnet';
  /** The object's own name. */
  name: string;
  pool: CompiledPool;
}

/** Whether the VIP's address comes from a Subnet (`spec.subnet`) rather than an IPPool. */
export function vipFromSubnet(vip: VIP): boolean {
  return vip.spec.subnet !== undefined;
}

/** How many address families the VIP holds (two for a dual-stack one). */
export function vipFamilies(vip: VIP): number {
  return vip.spec.ipv6Pool !== undefined || vip.spec.ipv6Subnet !== undefined ? 2 : 1;
}

/** `pool "x"` / `Subnet "x"`, for messages. */
function sourceText(s: Source): string {
  return s.kind === 'IPPool' ? `pool "${s.name}"` : `Subnet "${s.name}"`;
}

export type SubnetLookup = (name: string) => Subnet | undefined;

/** The Subnets a VIP names, read from the store (those not in `known`). */
async function subnetsOf(
  store: Store,
  vips: VIP[],
  known: ReadonlyMap<string, Subnet> = new Map(),
): Promise<Map<string, Subnet>> {
  const out = new Map(known);
  for (const v of vips) {
    for (const n of [v.spec.subnet, v.spec.ipv6Subnet]) {
      if (n === undefined || out.has(n)) continue;
      const e = await store.get<Subnet>(SUBNET_KEY_PREFIX + n);
      if (e) out.set(n, e.value);
    }
  }
  return out;
}

/** A Subnet as a pool named `subnet/<name>` (its addresses, gateway, routes), for VIPs taken from it. */
export function compileSubnet(subnet: Subnet): CompiledPool {
  return compilePool({
    apiVersion: API_VERSION,
    kind: 'IPPool',
    metadata: { name: SUBNET_CLAIM_PREFIX + subnet.metadata.name },
    spec: subnet.spec,
  });
}

/**
 * The sources of a VIP per family, checked against what exists.
 * @throws IpamError INVALID_OBJECT (neither or both of spec.pool and spec.subnet, families that do
 *   not fit), POOL_NOT_FOUND (no such IPPool or Subnet), ADDRESS_NOT_IN_POOL (a static address of a
 *   family the VIP has no source for).
 */
function sourcesOf(
  state: IpamState,
  vip: VIP,
  subnets: SubnetLookup,
  lookup: (name: string) => CompiledPool | undefined = (n) => state.pools.get(n)?.compiled,
): Map<Family, Source> {
  const out = new Map<Family, Source>();
  const s = vip.spec;
  const fromSubnet = s.subnet !== undefined;
  if ((s.pool === undefined) === (s.subnet === undefined) || (fromSubnet && s.ipv6Pool !== undefined)) {
    throw new IpamError(
      'INVALID_OBJECT',
      `${what(vip)}: ${s.pool === undefined && s.subnet === undefined ? 'neither spec.pool nor spec.subnet is set' : 'both an IPPool (spec.pool/ipv6Pool) and a Subnet (spec.subnet) are named'}; name exactly one: spec.pool (an IPPool) or spec.subnet (a Subnet)`,
      { field: 'spec.pool', pool: s.pool, subnet: s.subnet },
    );
  }
  if (!fromSubnet && s.ipv6Subnet !== undefined) {
    throw new IpamError(
      'INVALID_OBJECT',
      `${what(vip)}: spec.ipv6Subnet "${s.ipv6Subnet}" goes with spec.subnet; with spec.pool name the IPv6 pool in spec.ipv6Pool`,
      { field: 'spec.ipv6Subnet' },
    );
  }
  const get = (field: SourceField, name: string): Source => {
    if (field === 'pool' || field === 'ipv6Pool') {
      const p = lookup(name);
      if (!p) {
        throw new IpamError(
          'POOL_NOT_FOUND',
          `${what(vip)}: spec.${field} "${name}" is not an IPPool; create the pool or name an existing one (ipkeeper get ippools)`,
          { field: `spec.${field}`, pool: name },
        );
      }
      return { field, kind: 'IPPool', name, pool: p };
    }
    const sub = subnets(name);
    if (!sub) {
      throw new IpamError(
        'POOL_NOT_FOUND',
        `${what(vip)}: spec.${field} "${name}" is not a Subnet; create the Subnet or name an existing one (ipkeeper get subnets)`,
        { field: `spec.${field}`, subnet: name },
      );
    }
    return { field, kind: 'Subnet', name, pool: compileSubnet(sub) };
  };
  const [f1, f6] = fromSubnet ? (['subnet', 'ipv6Subnet'] as const) : (['pool', 'ipv6Pool'] as const);
  const firstName = (fromSubnet ? s.subnet : s.pool) as string;
  const first = get(f1, firstName);
  out.set(first.pool.family, first);
  const sixName = s[f6];
  if (sixName !== undefined) {
    const six = get(f6, sixName);
    if (six.pool.family !== 6 || first.pool.family !== 4) {
      throw new IpamError(
        'INVALID_OBJECT',
        `${what(vip)}: spec.${f6} "${sixName}" must be an IPv6 ${first.kind} and spec.${f1} "${firstName}" an IPv4 one for a dual-stack VIP`,
        { field: `spec.${f6}` },
      );
    }
    out.set(6, six);
  }
  for (const [field, fam] of [
    ['v4ip', 4],
    ['v6ip', 6],
  ] as const) {
    const ip = s[field];
    if (ip !== undefined && ip !== '' && !out.has(fam)) {
      throw new IpamError(
        'ADDRESS_NOT_IN_POOL',
        `${what(vip)}: spec.${field} ${ip} is IPv${fam} but spec.${f1} "${firstName}" is IPv${first.pool.family}; ${fam === 6 ? `add an IPv6 ${first.kind} as spec.${f6}` : `name an IPv4 ${first.kind} in spec.${f1}`}`,
        { field: `spec.${field}`, ip },
      );
    }
  }
  return out;
}

/**
 * The addresses every IPPool of `network` and `family` holds (`extra`: pools of an apply batch, not
 * stored yet, which take precedence over stored ones of the same name).
 */
function poolAddresses(
  state: IpamState,
  network: string,
  family: Family,
  extra: ReadonlyMap<string, CompiledPool> = new Map(),
): IntervalSet {
  let all = IntervalSet.empty(family);
  const add = (p: CompiledPool): void => {
    if (p.network === network && p.family === family) all = all.union(p.allocatable);
  };
  for (const [name, e] of state.pools) if (!extra.has(name)) add(e.compiled);
  for (const p of extra.values()) add(p);
  return all;
}

/** The IPPool of `network`/`family` that holds `value`, if any. */
function poolHolding(
  state: IpamState,
  network: string,
  family: Family,
  value: bigint,
  extra: ReadonlyMap<string, CompiledPool> = new Map(),
): string | undefined {
  for (const [name, p] of extra) {
    if (p.network === network && p.family === family && p.allocatable.contains(value)) return name;
  }
  for (const [name, e] of state.pools) {
    const p = e.compiled;
    if (!extra.has(name) && p.network === network && p.family === family && p.allocatable.contains(value))
      return name;
  }
  return undefined;
}

/** What a source may hand out now: a pool's allowed set; a Subnet's addresses minus every pool's and every reservation. */
function allowedOf(state: IpamState, src: Source): IntervalSet {
  if (src.kind === 'IPPool') return state.allowed(src.pool);
  const p = src.pool;
  return p.allocatable
    .difference(state.reserved(p.family))
    .difference(poolAddresses(state, p.network, p.family));
}

function newClaim(deps: VipDeps, vip: VIP, pool: CompiledPool, value: bigint): IPClaim {
  const owner: ClaimOwner = {
    kind: 'VIP',
    name: vip.metadata.name,
    ...(vip.metadata.uid ? { uid: vip.metadata.uid } : {}),
  };
  return {
    apiVersion: API_VERSION,
    kind: 'IPClaim',
    metadata: { name: `${pool.network}.${addrKey({ family: pool.family, value })}` },
    spec: {
      network: pool.network,
      ip: formatValue(pool.family, value),
      family: pool.family,
      pool: pool.name,
      owner,
      createdAt: new Date(deps.clock.now()).toISOString(),
    },
  };
}

function holderText(c: IPClaim): string {
  const o = c.spec.owner;
  return `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
}

/**
 * Creates the claim of `value` for the VIP. Returns it, or undefined when another owner holds the
 * address (the cache then knows the holder).
 */
async function tryClaim(
  deps: VipDeps,
  vip: VIP,
  pool: CompiledPool,
  value: bigint,
): Promise<HeldClaim | undefined> {
  const claim = newClaim(deps, vip, pool, value);
  const key = CLAIM_PREFIX + claim.metadata.name;
  const r = await deps.store.create(key, claim);
  if (r.created) {
    deps.state.put(key, claim, r.version);
    return deps.state.claims.get(key);
  }
  deps.state.put(key, r.existing.value, r.existing.version);
  const other = r.existing.value as IPClaim;
  // Ours already (an earlier attempt whose answer was lost, or the controller and the agent racing).
  return ownsClaim(other, vip.metadata.name, vip.metadata.uid) ? deps.state.claims.get(key) : undefined;
}

/**
 * What can be known of a static address before the claim is made: inside the pool (or the Subnet,
 * and then in no IPPool), not reserved, and (as far as the cache knows) not held by another owner.
 * `batchPools`: pools of the same apply, not stored yet.
 * @throws IpamError ADDRESS_NOT_IN_POOL, ADDRESS_RESERVED, ADDRESS_IN_USE.
 */
function checkStatic(
  state: IpamState,
  vip: VIP,
  src: Source,
  field: string,
  ip: string,
  batchPools?: ReadonlyMap<string, CompiledPool>,
): void {
  const pool = src.pool;
  const value = parseAddr(ip).value;
  if (!pool.allocatable.contains(value)) {
    throw new IpamError(
      'ADDRESS_NOT_IN_POOL',
      `${what(vip)}: spec.${field} ${ip} is not an address of ${sourceText(src)} (${formatValue(pool.family, pool.subnet.base)}/${pool.subnet.bits}, ${pool.allocatable.toStrings().slice(0, 3).join(', ')}${pool.allocatable.runs().length > 3 ? ', ...' : ''}); pick an address inside the ${src.kind === 'IPPool' ? 'pool' : 'subnet'}`,
      { field: `spec.${field}`, ip, ...(src.kind === 'IPPool' ? { pool: src.name } : { subnet: src.name }) },
    );
  }
  // Not state.allowed(pool): the pool may be a batch's, not yet stored, and must not enter its cache.
  if (state.reserved(pool.family).contains(value)) {
    const by = [...state.reservations.entries()]
      .filter(([, e]) => e.sets[pool.family].contains(value))
      .map(([n]) => `"${n}"`);
    throw new IpamError(
      'ADDRESS_RESERVED',
      `${what(vip)}: spec.${field} ${ip} is reserved by ReservedIP ${by.join(', ')}; pick another address or delete the reservation`,
      { field: `spec.${field}`, ip, reservedBy: by },
    );
  }
  const holder = state.claims.get(
    CLAIM_PREFIX + `${pool.network}.${addrKey({ family: pool.family, value })}`,
  );
  if (holder && !ownsClaim(holder.claim, vip.metadata.name, vip.metadata.uid))
    throw inUse(vip, field, ip, holder);
  if (src.kind === 'Subnet' && !holder) {
    // An address of a pool is that pool's to give (one address, one pool); a VIP from the Subnet
    // takes only what no pool holds. (An address the VIP already holds stays its own.)
    const p = poolHolding(state, pool.network, pool.family, value, batchPools);
    if (p !== undefined) {
      throw new IpamError(
        'ADDRESS_IN_USE',
        `${what(vip)}: spec.${field} ${ip} belongs to IPPool "${p}" (carved from or inside Subnet "${src.name}"); take it from the pool with spec.pool: ${p}, or pick an address of the subnet that no pool holds`,
        { field: `spec.${field}`, ip, holder: { kind: 'IPPool', name: p } },
      );
    }
  }
}

function inUse(vip: VIP, field: string, ip: string, holder: HeldClaim | undefined): IpamError {
  return new IpamError(
    'ADDRESS_IN_USE',
    `${what(vip)}: spec.${field} ${ip} is held by ${holder ? holderText(holder.claim) : 'another owner'}; pick a free address or release it first`,
    { field: `spec.${field}`, ip, holder: holder?.claim.spec.owner },
  );
}

async function claimStatic(
  deps: VipDeps,
  vip: VIP,
  src: Source,
  field: string,
  ip: string,
): Promise<HeldClaim> {
  checkStatic(deps.state, vip, src, field, ip);
  const pool = src.pool;
  const value = parseAddr(ip).value;
  const h = await tryClaim(deps, vip, pool, value);
  if (!h)
    throw inUse(
      vip,
      field,
      ip,
      deps.state.claims.get(CLAIM_PREFIX + `${pool.network}.${addrKey({ family: pool.family, value })}`),
    );
  return h;
}

async function claimDynamic(deps: VipDeps, vip: VIP, src: Source): Promise<HeldClaim> {
  const pool = src.pool;
  if (pool.disabled) {
    throw new IpamError(
      'POOL_EXHAUSTED',
      `${what(vip)}: pool "${pool.name}" is disabled (spec.disable: true) and hands out no new address; enable it or name another pool`,
      { pool: pool.name },
    );
  }
  const allowed = allowedOf(deps.state, src);
  const used = deps.state.usedSet(pool.network, pool.family);
  let from = allowed.nth(0n) ?? 0n;
  for (let races = 0; races < MAX_RACES; races++) {
    const v = nextFree(allowed, used, from);
    if (v === undefined) break;
    const h = await tryClaim(deps, vip, pool, v);
    if (h) return h;
    from = v + 1n;
  }
  if (src.kind === 'Subnet') {
    const total = pool.allocatable.size();
    const inPools = poolAddresses(deps.state, pool.network, pool.family).intersect(pool.allocatable).size();
    const reserved = deps.state.reserved(pool.family).intersect(pool.allocatable).size();
    throw new IpamError(
      'POOL_EXHAUSTED',
      `${what(vip)}: Subnet "${src.name}" has no free address outside its pools (${total} addresses, ${inPools} in IPPools, ${reserved} reserved, ${used.countIn(allowed)} in use); add addresses to the Subnet's spec.ips, or take the VIP from a pool with spec.pool`,
      { subnet: src.name },
    );
  }
  const u = deps.state.usage(pool);
  throw new IpamError(
    'POOL_EXHAUSTED',
    `${what(vip)}: pool "${pool.name}" has no free address (${u.total} addresses, ${u.reserved} reserved, ${u.used} in use); add addresses to the pool or name another one`,
    { pool: pool.name },
  );
}

async function deleteHeld(deps: VipDeps, h: HeldClaim): Promise<boolean> {
  const r = await mutate<IPClaim>(deps.store, h.key, (cur) => {
    // Delete only while it is still this VIP's and no pod uses it (a pod's address must not be freed
    // under it); otherwise leave it.
    if (!cur || cur.spec.owner.kind !== 'VIP' || cur.spec.owner.name !== h.claim.spec.owner.name) return cur;
    if (cur.spec.boundTo && !cur.spec.boundTo.releasedAt) return cur;
    return undefined;
  });
  if (r.action === 'deleted') {
    deps.state.remove(h.key, r.version);
    return true;
  }
  return false;
}

export interface VipAllocation {
  /** The VIP's claims now, IPv4 first. */
  claims: HeldClaim[];
  /** Claims made by this call. */
  made: HeldClaim[];
  /** Claims the VIP held at addresses it no longer asks for: release them once the change is stored. */
  stale: HeldClaim[];
}

/**
 * Makes the VIP hold one claim per family of its pools or subnets (at `v4ip`/`v6ip` when given).
 * Claims it already holds at the right address are kept; one at an address the spec no longer asks
 * for is returned as `stale`. All or nothing: on failure the claims made here are deleted.
 * `subnets`: the Subnets by name when the caller has listed them (else the ones named are read from
 * the store).
 * @throws IpamError POOL_NOT_FOUND, POOL_EXHAUSTED, ADDRESS_NOT_IN_POOL, ADDRESS_RESERVED,
 *   ADDRESS_IN_USE, INVALID_OBJECT; StoreError.
 */
export async function allocateVip(
  deps: VipDeps,
  vip: VIP,
  index?: Map<string, HeldClaim[]>,
  subnets?: ReadonlyMap<string, Subnet>,
): Promise<VipAllocation> {
  const known = vipFromSubnet(vip) ? await subnetsOf(deps.store, [vip], subnets) : new Map<string, Subnet>();
  const sources = sourcesOf(deps.state, vip, (n) => known.get(n));
  let held = claimsOfVip(deps.state, vip.metadata.name, vip.metadata.uid, index);
  if (index && held.length < sources.size) {
    // A claim made after the index was built is not in it: look at the whole cache before making one.
    held = claimsOfVip(deps.state, vip.metadata.name, vip.metadata.uid);
  }
  const made: HeldClaim[] = [];
  const keep: HeldClaim[] = [];
  try {
    for (const [family, src] of [...sources.entries()].sort((a, b) => a[0] - b[0])) {
      const field = family === 4 ? 'v4ip' : 'v6ip';
      const want = vip.spec[field] || undefined;
      const mine = held.filter((h) => h.claim.spec.family === family);
      const ok = mine.find((h) =>
        want ? h.value === parseAddr(want).value : h.claim.spec.pool === src.pool.name,
      );
      if (ok) {
        keep.push(ok);
        continue;
      }
      made.push(want ? await claimStatic(deps, vip, src, field, want) : await claimDynamic(deps, vip, src));
    }
  } catch (e) {
    await dropClaims(deps, made);
    throw e;
  }
  const claims = [...keep, ...made].sort((a, b) => a.claim.spec.family - b.claim.spec.family);
  return { claims, made, stale: held.filter((h) => !claims.includes(h)) };
}

/**
 * Checks every VIP of an apply before anything is written: its pools or subnets exist (in the store
 * or in the same batch) and its static addresses are inside them, not reserved, not held by another
 * owner, and — from a Subnet — in no pool.
 * @throws IpamError POOL_NOT_FOUND, ADDRESS_NOT_IN_POOL, ADDRESS_RESERVED, ADDRESS_IN_USE,
 *   INVALID_OBJECT; StoreError reading Subnets.
 */
export async function checkVips(
  deps: { state: IpamState; store: Store },
  batch: { kind: string; metadata: { name: string } }[],
): Promise<void> {
  const { state } = deps;
  const batchPools = new Map<string, CompiledPool>();
  const batchSubnets = new Map<string, Subnet>();
  for (const o of batch) {
    if (o.kind === 'IPPool') batchPools.set(o.metadata.name, compilePool(o as IPPool));
    if (o.kind === 'Subnet') batchSubnets.set(o.metadata.name, o as Subnet);
  }
  const vips = batch.filter((o) => o.kind === 'VIP') as VIP[];
  const subnets = await subnetsOf(deps.store, vips.filter(vipFromSubnet), batchSubnets);
  for (const vip of vips) {
    const sources = sourcesOf(
      state,
      vip,
      (n) => subnets.get(n),
      (n) => batchPools.get(n) ?? state.pools.get(n)?.compiled,
    );
    for (const [family, src] of sources) {
      const field = family === 4 ? 'v4ip' : 'v6ip';
      const ip = vip.spec[field];
      if (ip) checkStatic(state, vip, src, field, ip, batchPools);
    }
  }
}

/**
 * `allocateVip` for every VIP of an apply, all or nothing across them.
 * @throws as allocateVip.
 */
export async function allocateVips(deps: VipDeps, objects: { kind: string }[]): Promise<VipAllocation> {
  const all: VipAllocation = { claims: [], made: [], stale: [] };
  try {
    for (const o of objects) {
      if (o.kind !== 'VIP') continue;
      const a = await allocateVip(deps, o as VIP);
      all.claims.push(...a.claims);
      all.made.push(...a.made);
      all.stale.push(...a.stale);
    }
  } catch (e) {
    await dropClaims(deps, all.made);
    throw e;
  }
  return all;
}

/** Deletes VIP claims that no pod uses (a used one is left: a pod's address is never freed under it). */
export async function dropClaims(deps: VipDeps, claims: HeldClaim[]): Promise<number> {
  let n = 0;
  for (const h of claims) if (await deleteHeld(deps, h)) n++;
  return n;
}

/** A VIP with its status derived from the claims in the cache (embedded mode, `ipkeeper get vip`). */
export function withVipStatus(state: IpamState, vip: VIP): VIP {
  return {
    ...vip,
    status: vipStatus(vip, claimsOfVip(state, vip.metadata.name, vip.metadata.uid), vip.status),
  };
}

/** The pods using the VIP's addresses (a binding not released), `namespace/name`. */
export function vipUsers(state: IpamState, name: string): string[] {
  return claimsOfVip(state, name)
    .filter((h) => h.claim.spec.boundTo && !h.claim.spec.boundTo.releasedAt)
    .map((h) => boundPod(h.claim) as string);
}

/**
 * Releases every claim of the VIP `name` that no pod uses.
 * @returns how many were released, and the ones kept because a pod still uses them.
 */
export async function releaseVip(
  deps: VipDeps,
  name: string,
  uid?: string,
): Promise<{ released: number; kept: HeldClaim[] }> {
  let released = 0;
  const kept: HeldClaim[] = [];
  for (const h of claimsOfVip(deps.state, name, uid)) {
    if (await deleteHeld(deps, h)) released++;
    else if (deps.state.claims.has(h.key)) kept.push(h);
  }
  return { released, kept };
}

/** `namespace/name` of the pod using the claim, or undefined. */
export function boundPod(c: IPClaim): string | undefined {
  const b = c.spec.boundTo;
  if (!b) return undefined;
  return `${b.pod.namespace ? `${b.pod.namespace}/` : ''}${b.pod.name}`;
}

/**
 * The VIP's status from its claims: ready when it holds an address for every family it asks for.
 * `pods` (allowed address pairs) is kept from `prev`: the controller computes it.
 */
export function vipStatus(vip: VIP, claims: HeldClaim[], prev?: VIPStatus, message?: string): VIPStatus {
  const families = vipFamilies(vip);
  const v4 = claims.find((h) => h.claim.spec.family === 4)?.claim.spec.ip;
  const v6 = claims.find((h) => h.claim.spec.family === 6)?.claim.spec.ip;
  const first = v4 ?? v6;
  const pod = claims.map((h) => boundPod(h.claim)).find((p) => p !== undefined);
  const ready = claims.length >= families && message === undefined;
  return {
    ready,
    ...(v4 ? { v4ip: v4 } : {}),
    ...(v6 ? { v6ip: v6 } : {}),
    ...(first ? { mac: vip.spec.mac ?? vipMac(first) } : {}),
    ...(pod ? { pod } : {}),
    ...(prev?.pods && prev.pods.length > 0 ? { pods: prev.pods } : {}),
    ...(message !== undefined ? { message } : !ready ? { message: 'no address allocated yet' } : {}),
  };
}

// ---- a pod using a VIP as its address ----------------------------------------------------------

/**
 * The VIP a request asks for: the pod's `ipkeeper.io/vip` (or `ovn.kubernetes.io/vip`) annotation,
 * else the embedded-mode CNI arg. Only the default-route interface (eth0, or the pod's
 * default-route-nic annotation) takes the VIP; other interfaces of the pod are allocated as usual.
 * @throws IpamError INVALID_OBJECT for a malformed default-route-nic annotation.
 */
export function vipRequested(req: VipRequest, pod: PodInfo | undefined): string | undefined {
  if (req.ifName !== defaultRouteNic(pod?.annotations, req.defaultRouteNic)) return undefined;
  return annotationValue(pod?.annotations, 'ipkeeper.io/vip')?.value.trim() || req.vip;
}

/** Top owner kinds whose pods keep their VIP over a DEL (the next pod of the same name gets it). */
export function fixedKind(pod: PodInfo | undefined): 'StatefulSet' | 'VirtualMachine' | undefined {
  for (const o of pod?.owners ?? []) {
    if (o.kind === 'StatefulSet') return 'StatefulSet';
    if (o.kind === 'VirtualMachine' || o.kind === 'VirtualMachineInstance') return 'VirtualMachine';
  }
  return undefined;
}

/** Claim keys bound to attachments of this agent, per attachment: so DEL finds them without a scan. */
const bindings = new WeakMap<IpamState, Map<string, Set<string>>>();

function bindingIndex(state: IpamState): Map<string, Set<string>> {
  let idx = bindings.get(state);
  if (!idx) {
    // First use after start: learn the bindings an earlier run of this agent made (one pass).
    idx = new Map();
    for (const h of state.claims.values()) {
      const b = h.claim.spec.boundTo;
      if (b) addBinding(idx, attachmentKey(b.cniNetwork, b.containerId, b.ifName), h.key);
    }
    bindings.set(state, idx);
  }
  return idx;
}

function addBinding(idx: Map<string, Set<string>>, ak: string, key: string): void {
  let set = idx.get(ak);
  if (!set) idx.set(ak, (set = new Set()));
  set.add(key);
}

function samePod(a: ClaimOwner, b: ClaimOwner): boolean {
  return a.name === b.name && (a.namespace ?? '') === (b.namespace ?? '');
}

/**
 * Gives the requesting pod the VIP's address(es): binds each claim of the VIP to the attachment.
 * Idempotent for the same attachment; a pod of the same name takes a binding over (a new sandbox, a
 * StatefulSet/VM pod recreated); any other pod holding it is a refusal. All or nothing.
 * @returns the VIP's claims (the engine builds the CNI result from them).
 * @throws IpamError NOT_FOUND (no such VIP), NOT_READY (no address yet), ADDRESS_IN_USE (another
 *   pod uses it, named), CONFLICT; StoreError.
 */
export async function bindVip(
  deps: VipDeps,
  req: VipRequest,
  name: string,
  pod?: PodInfo,
): Promise<HeldClaim[]> {
  const who = `pod ${req.owner.namespace ? `${req.owner.namespace}/` : ''}${req.owner.name}`;
  const e = await deps.store.get<VIP>(VIP_PREFIX + name);
  if (!e) {
    throw new IpamError(
      'NOT_FOUND',
      `${who} asks for VIP "${name}" (annotation ipkeeper.io/vip), which does not exist; create the VIP (ipkeeper apply -f vip.yaml) or fix the annotation`,
      { vip: name },
    );
  }
  const vip = e.value;
  const claims = claimsOfVip(deps.state, name, vip.metadata.uid);
  const families = vipFamilies(vip);
  if (claims.length < families) {
    throw new IpamError(
      'NOT_READY',
      `${who} asks for VIP "${name}", which has no address yet${vip.status?.message ? ` (${vip.status.message})` : ''}; retry once it is ready (ipkeeper get vip ${name})`,
      { vip: name },
    );
  }
  const fixed = fixedKind(pod);
  const binding = {
    pod: req.owner,
    cniNetwork: req.cniNetwork,
    containerId: req.containerId,
    ifName: req.ifName,
    ...(deps.node ? { node: deps.node } : {}),
    ...(fixed ? { fixed } : {}),
    boundAt: new Date(deps.clock.now()).toISOString(),
  };
  const changed: HeldClaim[] = [];
  const out: HeldClaim[] = [];
  try {
    for (const h of claims) {
      const r = await mutate<IPClaim>(deps.store, h.key, (cur) => {
        if (!cur || !ownsClaim(cur, name, vip.metadata.uid)) {
          throw new IpamError(
            'NOT_READY',
            `VIP "${name}" is changing its address (${h.claim.spec.ip}); retry`,
            { vip: name },
          );
        }
        const b = cur.spec.boundTo;
        if (b && !samePod(b.pod, req.owner)) {
          throw new IpamError(
            'ADDRESS_IN_USE',
            `${who} asks for VIP "${name}" (${cur.spec.ip}), which is used by pod ${boundPod(cur)}${b.releasedAt ? ` (${b.fixed} pod, kept for it while it is recreated)` : ''}; a VIP is one pod's address: delete that pod or use another VIP`,
            { vip: name, ip: cur.spec.ip, holder: b.pod },
          );
        }
        if (
          b &&
          !b.releasedAt &&
          b.containerId === req.containerId &&
          b.cniNetwork === req.cniNetwork &&
          b.ifName === req.ifName
        ) {
          return cur;
        }
        return { ...cur, spec: { ...cur.spec, boundTo: binding } };
      });
      if (r.action === 'created' || r.action === 'updated') {
        deps.state.put(h.key, r.value, r.version);
        changed.push(h);
      }
      const now = deps.state.claims.get(h.key);
      if (now) out.push(now);
    }
  } catch (err) {
    for (const h of changed) await unbindKey(deps, h.key, binding, true);
    throw err;
  }
  const idx = bindingIndex(deps.state);
  for (const h of out) addBinding(idx, attachmentKey(req.cniNetwork, req.containerId, req.ifName), h.key);
  return out;
}

type Binding = NonNullable<IPClaim['spec']['boundTo']>;

/** Clears (or, for a fixed pod, marks released) the binding of `key` if it is still `attachment`'s. */
async function unbindKey(
  deps: VipDeps,
  key: string,
  att: { cniNetwork: string; containerId: string; ifName: string },
  clear: boolean,
): Promise<boolean> {
  const r = await mutate<IPClaim>(deps.store, key, (cur) => {
    const b: Binding | undefined = cur?.spec.boundTo;
    if (
      !cur ||
      !b ||
      b.containerId !== att.containerId ||
      b.cniNetwork !== att.cniNetwork ||
      b.ifName !== att.ifName
    ) {
      return cur;
    }
    if (b.fixed && !clear) {
      if (b.releasedAt) return cur;
      return {
        ...cur,
        spec: { ...cur.spec, boundTo: { ...b, releasedAt: new Date(deps.clock.now()).toISOString() } },
      };
    }
    const { boundTo: _b, ...spec } = cur.spec;
    return { ...cur, spec };
  });
  if (r.action === 'updated') {
    deps.state.put(key, r.value, r.version);
    return true;
  }
  return false;
}

/**
 * DEL: the VIP claims bound to this attachment are unbound (kept, marked released, for a
 * StatefulSet/VM pod). The claims stay the VIP's.
 * @returns how many claims changed.
 */
export async function unbindVip(
  deps: VipDeps,
  att: { cniNetwork: string; containerId: string; ifName: string },
): Promise<number> {
  const idx = bindingIndex(deps.state);
  const ak = attachmentKey(att.cniNetwork, att.containerId, att.ifName);
  const keys = idx.get(ak);
  if (!keys) return 0;
  let n = 0;
  for (const key of keys) if (await unbindKey(deps, key, att, false)) n++;
  idx.delete(ak);
  return n;
}

/**
 * CNI GC: this node's VIP bindings on `cniNetwork` whose attachment the runtime no longer has are
 * unbound as on DEL (kept, released, for a StatefulSet/VM pod); bindings made after `cutoff` are
 * left alone, their ADD may be in flight.
 * @returns how many claims changed.
 */
export async function gcVipBindings(
  deps: VipDeps,
  cniNetwork: string,
  keep: Set<string>,
  cutoff: number,
): Promise<number> {
  let n = 0;
  for (const keys of [...bindingIndex(deps.state).values()]) {
    for (const key of [...keys]) {
      const b = deps.state.claims.get(key)?.claim.spec.boundTo;
      if (!b || b.releasedAt || b.cniNetwork !== cniNetwork || b.node !== deps.node) continue;
      if (keep.has(`${b.containerId}/${b.ifName}`)) continue;
      if (b.boundAt !== undefined && Date.parse(b.boundAt) > cutoff) continue;
      if (await unbindKey(deps, key, b, false)) n++;
    }
  }
  return n;
}

/** Whether this attachment uses a VIP (CHECK). */
export function vipBound(
  state: IpamState,
  att: { cniNetwork: string; containerId: string; ifName: string },
): boolean {
  const keys = bindingIndex(state).get(attachmentKey(att.cniNetwork, att.containerId, att.ifName));
  for (const k of keys ?? []) {
    const b = state.claims.get(k)?.claim.spec.boundTo;
    if (b && !b.releasedAt && b.containerId === att.containerId && b.ifName === att.ifName) return true;
  }
  return false;
}

/**
 * Clears a binding whose pod is gone (the controller, when the DEL never came): only a binding that
 * still names that pod (and, when both are known, its uid) is cleared.
 */
export async function clearBinding(deps: VipDeps, key: string, pod: ClaimOwner): Promise<boolean> {
  const r = await mutate<IPClaim>(deps.store, key, (cur) => {
    const b = cur?.spec.boundTo;
    if (!cur || !b || !samePod(b.pod, pod) || (pod.uid && b.pod.uid && b.pod.uid !== pod.uid)) return cur;
    const { boundTo: _b, ...spec } = cur.spec;
    return { ...cur, spec };
  });
  if (r.action === 'updated') deps.state.put(key, r.value, r.version);
  return r.action === 'updated';
}

// ---- allowed address pairs ------------------------------------------------------------------------

/** The VIP names a pod lists in `ipkeeper.io/aaps` (or `ovn.kubernetes.io/aaps`). */
export function aapsOf(annotations: Record<string, string> | undefined): string[] {
  const v = annotationValue(annotations, 'ipkeeper.io/aaps')?.value;
  if (!v) return [];
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Whether a pod's labels satisfy the VIP's selector (Kube-OVN `key: value` items and podSelector). */
export function aapSelects(vip: VIP, labels: Record<string, string>): boolean {
  const items = parseSelectorItems(vip.spec.selector ?? []);
  if (!items) return false;
  for (const [k, v] of Object.entries(items)) if (labels[k] !== v) return false;
  return vip.spec.podSelector ? matchSelector(vip.spec.podSelector, labels) : true;
}

/**
 * The pods bound to a VIP by allowed address pairs: pods of `spec.namespace` (only that namespace:
 * a pod elsewhere listing the VIP is ignored) whose labels match the selector and that list the VIP
 * in `ipkeeper.io/aaps`. A VIP without `spec.namespace` binds no pod.
 * @returns pod names, sorted.
 */
export function aapPods(
  vip: VIP,
  pods: Iterable<{
    namespace: string;
    name: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  }>,
): string[] {
  const ns = vip.spec.namespace;
  if (!ns) return [];
  const out: string[] = [];
  for (const p of pods) {
    if (p.namespace !== ns) continue;
    if (!aapsOf(p.annotations).includes(vip.metadata.name)) continue;
    if (aapSelects(vip, p.labels)) out.push(p.name);
  }
  return out.sort();
}
