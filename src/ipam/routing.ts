/**
 * @module ipam/routing
 * Routes of one pod interface, multi-NIC aware, so that replies leave by the interface the request
 * came in on (seed 001: a client reaching net1's address from outside net1's subnet must not get
 * its answer through eth0's default route). Pure; the engine's result and the Endpoint writer both
 * call `interfaceRouting`.
 *
 *   default-route NIC (eth0, or pod annotation ipkeeper.io/default-route-nic):
 *     main table:  the pool routes, and 0.0.0.0/0 (::/0) via the pool gateway
 *   every other NIC (net1, ...):
 *     main table:  the pool routes only (one default route per pod)
 *     table T:     <subnet> dev <nic>, 0.0.0.0/0 via the pool gateway, the pool routes
 *     rules:       from <address>/32 (/128) lookup T, one per address of the NIC
 *
 * Table numbers, stable per interface name so every component computes the same one without
 * talking to the others:
 *
 *   net<n>, 1 <= n <= 153     T = 99 + n     net1 -> 100, net2 -> 101 (Multus names; the first one
 *                                             is the table Spiderpool's coordinator and the CNI
 *                                             `sbr` plugin pick)
 *   eth<n>, n <= 9999         T = 1000 + n   eth0 -> 1000 (when another NIC has the default route)
 *   any other name            T = 20000 + (FNV-1a(name) mod 40000)
 *
 * so the kernel's own tables (253 default, 254 main, 255 local) are never used. Two unusual names in
 * one pod may share a hashed table; name such NICs net<n>.
 *
 * Where it goes: the CNI result carries the table routes (with `table`) only for cniVersion 1.1.0
 * and later (`src/cni/result.ts`; older results cannot say "table" and get none of them, never a
 * second default route in main). No CNI result can carry a rule: the rules are data for whoever
 * applies them (the Endpoint's interfaces[].table + routes, see `endpointRouting`; or the `sbr`
 * meta plugin, which installs this same table and rule from the result's gateway).
 *
 * Errors: IpamError INVALID_OBJECT for a malformed default-route-nic annotation.
 */
import { IpamError } from '../errors.ts';
import { parseAddr, type Family } from '../net/addr.ts';
import { formatPrefix, prefixOf } from '../net/prefix.ts';
import type { Route } from '../api/kinds.ts';

export const DEFAULT_ROUTE_NIC_ANNOTATION = [
  'ipkeeper.io/default-route-nic',
  'ipam.spidernet.io/default-route-nic',
] as const;
export const DEFAULT_ROUTE_NIC = 'eth0';

/** Linux IFNAMSIZ is 16 with the NUL. */
const MAX_IFNAME = 15;

export interface TableRoute extends Route {
  table: number;
}

export interface PolicyRule {
  /** `<address>/32` or `<address>/128`. */
  from: string;
  table: number;
}

/** One address of the interface, with what its pool says about routing. */
export interface InterfaceAddress {
  ip: string;
  /** The pool's prefix length. */
  bits: number;
  gateway?: string;
  /** The pool's routes (`gw` defaults to the pool gateway). */
  routes?: readonly Route[];
}

export interface RoutingInput {
  ifName: string;
  /** The pod's default-route interface (see `defaultRouteNic`). */
  defaultRouteNic: string;
  addresses: readonly InterfaceAddress[];
}

export interface InterfaceRouting {
  /** Routes for the main table. */
  routes: Route[];
  /** The interface's policy-routing table; absent on the default-route NIC. */
  table?: number;
  /** Routes in `table` (empty on the default-route NIC). */
  tableRoutes: TableRoute[];
  /** `from <address> lookup <table>`, one per address (empty on the default-route NIC). */
  rules: PolicyRule[];
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The policy-routing table of a non-default interface (see the module comment). */
export function routeTable(ifName: string): number {
  let m = /^net([1-9]\d{0,2})$/.exec(ifName);
  if (m && Number(m[1]) <= 153) return 99 + Number(m[1]);
  m = /^eth(0|[1-9]\d{0,3})$/.exec(ifName);
  if (m) return 1000 + Number(m[1]);
  return 20000 + (fnv1a(ifName) % 40000);
}

/**
 * The pod's default-route interface: `override` (the request's own), else the pod annotation, else
 * eth0.
 * @throws IpamError INVALID_OBJECT when the annotation is not an interface name.
 */
export function defaultRouteNic(annotations: Record<string, string> | undefined, override?: string): string {
  if (override !== undefined && override !== '') return override;
  for (const name of DEFAULT_ROUTE_NIC_ANNOTATION) {
    const v = annotations?.[name];
    if (v === undefined) continue;
    if (v === '' || v.length > MAX_IFNAME || v === '.' || v === '..' || /[/:\s]/.test(v)) {
      throw new IpamError(
        'INVALID_OBJECT',
        `pod annotation ${name}: ${JSON.stringify(v)} is not an interface name; write the pod interface that gets the default route, e.g. eth0 or net1 (at most ${MAX_IFNAME} characters, no / : or whitespace)`,
        { annotation: name, value: v },
      );
    }
    return v;
  }
  return DEFAULT_ROUTE_NIC;
}

function defaultDst(f: Family): string {
  return f === 4 ? '0.0.0.0/0' : '::/0';
}

/** The routes of one interface in the main table and, off the default-route NIC, in its own table. */
export function interfaceRouting(input: RoutingInput): InterfaceRouting {
  const isDefault = input.ifName === input.defaultRouteNic;
  const table = isDefault ? undefined : routeTable(input.ifName);
  const routes: Route[] = [];
  const tableRoutes: TableRoute[] = [];
  const rules: PolicyRule[] = [];
  const add = <R extends Route>(list: R[], r: R): void => {
    if (!list.some((x) => x.dst === r.dst && x.gw === r.gw)) list.push(r);
  };
  for (const a of input.addresses) {
    const addr = parseAddr(a.ip);
    const full = addr.family === 4 ? 32 : 128;
    const poolRoutes = (a.routes ?? []).map((r): Route => {
      const gw = r.gw ?? a.gateway;
      return gw ? { dst: r.dst, gw } : { dst: r.dst };
    });
    for (const r of poolRoutes) add(routes, r);
    if (isDefault) {
      if (a.gateway && !routes.some((r) => r.dst === defaultDst(addr.family))) {
        routes.push({ dst: defaultDst(addr.family), gw: a.gateway });
      }
      continue;
    }
    const t = table as number;
    // The on-link subnet first: replies to a neighbour on this NIC's own subnet go straight to it.
    if (a.bits < full) add(tableRoutes, { dst: formatPrefix(prefixOf(addr, a.bits)), table: t });
    if (a.gateway) add(tableRoutes, { dst: defaultDst(addr.family), gw: a.gateway, table: t });
    for (const r of poolRoutes) add(tableRoutes, { ...r, table: t });
    rules.push({ from: `${a.ip}/${full}`, table: t });
  }
  return { routes, ...(table !== undefined ? { table } : {}), tableRoutes, rules };
}

/**
 * What the Endpoint records for the interface (`EndpointInterface.routes` / `.table`): on a
 * non-default NIC the routes of its table (the rules are `from <each address> lookup table`); on
 * the default-route NIC the main-table routes and no table.
 */
export function endpointRouting(r: InterfaceRouting): { routes: Route[]; table?: number } {
  if (r.table === undefined) return { routes: r.routes.map((x) => ({ ...x })) };
  return { routes: r.tableRoutes.map(({ dst, gw }) => (gw ? { dst, gw } : { dst })), table: r.table };
}
