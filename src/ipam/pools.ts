/**
 * @module ipam/pools
 * A pool compiled for allocation: its spec turned into one `IntervalSet` of the addresses it may
 * hand out, before reservations (which change independently and are subtracted by the state).
 *
 *   allocatable = (spec.ips, or the subnet's usable addresses) ∩ subnet − excludeIPs − gateway
 *
 * "Usable" follows what hosts expect of a subnet: IPv4 drops the network and broadcast addresses
 * (except /31 and /32, RFC 3021); IPv6 drops the subnet-router anycast address (the first one)
 * except /127 and /128.
 */
import { parseAddr, type Family } from '../net/addr.ts';
import { IntervalSet } from '../net/interval-set.ts';
import { parsePrefix, prefixFirst, prefixLast, type Prefix } from '../net/prefix.ts';
import type { IPPool, Route } from '../api/kinds.ts';

export const DEFAULT_NETWORK = 'default';

export interface CompiledPool {
  name: string;
  family: Family;
  /** The uniqueness domain claims of this pool are written in. */
  network: string;
  subnet: Prefix;
  allocatable: IntervalSet;
  gateway?: string;
  routes: Route[];
  vlan?: number;
  isDefault: boolean;
  disabled: boolean;
  spec: IPPool['spec'];
}

/** Every usable address of a subnet (see the module comment). */
export function usableOf(p: Prefix): IntervalSet {
  const first = prefixFirst(p);
  const last = prefixLast(p);
  if (p.family === 4) {
    if (p.bits >= 31) return IntervalSet.of(4, [{ first, last }]);
    return IntervalSet.of(4, [{ first: first + 1n, last: last - 1n }]);
  }
  if (p.bits >= 127) return IntervalSet.of(6, [{ first, last }]);
  return IntervalSet.of(6, [{ first: first + 1n, last }]);
}

/**
 * Compiles a validated pool.
 * @throws NetError if the pool was not validated first (`api/validate.ts`).
 */
export function compilePool(pool: IPPool): CompiledPool {
  const spec = pool.spec;
  const subnet = parsePrefix(spec.subnet);
  const family = subnet.family;
  const whole = IntervalSet.of(family, [{ first: prefixFirst(subnet), last: prefixLast(subnet) }]);
  let set = spec.ips ? IntervalSet.parse(family, spec.ips).intersect(whole) : usableOf(subnet);
  if (spec.excludeIPs && spec.excludeIPs.length > 0) {
    set = set.difference(IntervalSet.parse(family, spec.excludeIPs));
  }
  if (spec.gateway) {
    const gw = parseAddr(spec.gateway).value;
    set = set.difference(IntervalSet.of(family, [{ first: gw, last: gw }]));
  }
  return {
    name: pool.metadata.name,
    family,
    network: spec.network ?? DEFAULT_NETWORK,
    subnet,
    allocatable: set,
    ...(spec.gateway ? { gateway: spec.gateway } : {}),
    routes: spec.routes ?? [],
    ...(spec.vlan !== undefined ? { vlan: spec.vlan } : {}),
    isDefault: spec.default === true,
    disabled: spec.disable === true,
    spec,
  };
}
