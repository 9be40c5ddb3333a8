/**
 * @module cni/result
 * Converts the agent's `IpamResult` into the CNI result for the version the runtime asked for.
 *
 *   0.3.0, 0.3.1, 0.4.0   ips[i] = { version: "4" | "6", address, gateway? }
 *   1.0.0, 1.1.0          ips[i] = { address, gateway? }            (no `version`)
 *   1.1.0                 routes[i].table (policy routing of a non-default NIC); older versions
 *                         get none of the table routes
 *
 * An IPAM plugin knows no interfaces: the result has no `interfaces` and no `interface` index in its
 * ips; the main plugin (bridge, macvlan, ...) adds those. The agent's `pool` is ours, not CNI's, and
 * is left out.
 */

import { IpamError } from '../errors.ts';
import type { IpamResult } from './protocol.ts';
import { compareVersions } from './config.ts';
import type { CniVersion } from './config.ts';
import { checkCidr, checkIp } from './ip.ts';

export interface Route {
  dst: string;
  gw?: string;
  /** Only in 1.1.0 and later (the spec added it then). */
  table?: number;
}

export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniIp {
  /** Only in 0.3.x and 0.4.0. */
  version?: '4' | '6';
  address: string;
  gateway?: string;
}

export interface CniResult {
  cniVersion: CniVersion;
  ips: CniIp[];
  routes: Route[];
  dns?: Dns;
}

/**
 * Builds the CNI result. `extraRoutes` (the config's `ipam.routes`) are appended unless the agent
 * already returned the same route, so it does not matter which side adds them.
 *
 * @throws IpamError INTERNAL when the agent's result is malformed (an address without a prefix, ...):
 *   handing the runtime a result it cannot apply is worse than failing the ADD.
 */
export function toCniResult(
  result: IpamResult,
  cniVersion: CniVersion,
  extraRoutes: readonly Route[] = [],
): CniResult {
  const withVersion = compareVersions(cniVersion, '1.0.0') < 0;
  if (!Array.isArray(result?.ips) || result.ips.length === 0) {
    throw badResult('has no ips', result);
  }
  const ips = result.ips.map((ip, i): CniIp => {
    const why = checkCidr(ip?.address);
    if (why !== undefined) throw badResult(`ips[${i}].address ${JSON.stringify(ip?.address)} ${why}`, result);
    if (ip.gateway !== undefined && checkIp(ip.gateway) !== undefined) {
      throw badResult(`ips[${i}].gateway ${JSON.stringify(ip.gateway)} is not an address`, result);
    }
    const out: CniIp = withVersion
      ? { version: ip.address.includes(':') ? '6' : '4', address: ip.address }
      : { address: ip.address };
    if (ip.gateway !== undefined) out.gateway = ip.gateway;
    return out;
  });

  const routes: Route[] = [];
  const seen = new Set<string>();
  const withTable = compareVersions(cniVersion, '1.1.0') >= 0;
  for (const r of [...(Array.isArray(result.routes) ? result.routes : []), ...extraRoutes]) {
    // A policy-table route cannot be said before 1.1.0; dropping its `table` would put a second
    // default route into the main table, so the whole route stays out of an older result.
    if (r.table !== undefined && !withTable) continue;
    const key = `${r.dst} ${r.gw ?? ''} ${r.table ?? ''}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const out: Route = r.gw === undefined ? { dst: r.dst } : { dst: r.dst, gw: r.gw };
    if (r.table !== undefined) out.table = r.table;
    routes.push(out);
  }

  const out: CniResult = { cniVersion, ips, routes };
  const dns = pickDns(result.dns);
  if (dns !== undefined) out.dns = dns;
  return out;
}

function pickDns(d: IpamResult['dns']): Dns | undefined {
  if (d === undefined || d === null) return undefined;
  const dns: Dns = {};
  if (d.nameservers !== undefined && d.nameservers.length > 0) dns.nameservers = [...d.nameservers];
  if (d.domain !== undefined && d.domain !== '') dns.domain = d.domain;
  if (d.search !== undefined && d.search.length > 0) dns.search = [...d.search];
  if (d.options !== undefined && d.options.length > 0) dns.options = [...d.options];
  return Object.keys(dns).length > 0 ? dns : undefined;
}

function badResult(why: string, result: unknown): IpamError {
  return new IpamError(
    'INTERNAL',
    `the agent's result ${why}; this is a bug in the ipkeeper agent, please report it with the agent log`,
    { result },
  );
}
