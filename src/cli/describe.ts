/**
 * @module cli/describe
 * `ipkeeper describe ippool NAME` — the pool's addresses, exclusions, the reservations that touch it,
 * gateway, routes, counts and who holds what — and `ipkeeper describe ipclaim IP` — every claim of
 * one address with its owner and any problem `ipkeeper check` would report. kubectl-describe style
 * text, or `-o json|yaml` for the agent's answer as is.
 *
 * An endpoint also shows the VIPs its pod is bound to (`vipsOfPod`): read from the VIPs when asked —
 * their `status.pod` (the pod uses the VIP as its address) and `status.pods` (allowed address
 * pairs) — never stored in the Endpoint, whose writer rebuilds its spec on every ADD.
 */
import { Option, type Command } from 'commander';
import { yamlText } from './yaml-out.ts';
import { IpamError } from '../errors.ts';
import { resolveKind } from '../api/kinds.ts';
import type { ClaimDescription, PoolDescription } from '../agent/ui/inspect.ts';
import { call } from './client.ts';
import { renderTable } from './table.ts';
import { socketOf, socketOption } from './check.ts';
import { formatEndpoint } from './reclaim.ts';
import type { EndpointDescription } from '../ipam/endpoint.ts';
import { describeNodePool, describeVip } from './vip-nodepool.ts';
import type { Endpoint, NodePool, VIP } from '../api/kinds.ts';

const fmt = (n: string | number): string => BigInt(n).toLocaleString('en-US');

/** `Key:` padded so values line up, the way `kubectl describe` prints. */
function fields(rows: [string, string][], indent = ''): string {
  const w = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${indent}${`${k}:`.padEnd(w)}${v}`).join('\n');
}

function list(items: string[], none = '<none>'): string {
  return items.length === 0 ? none : items.join(', ');
}

export function formatPool(d: PoolDescription): string {
  const c = d.counts;
  const out = [
    fields([
      ['Name', d.pool.metadata.name],
      ['Family', d.family === 4 ? 'IPv4' : 'IPv6'],
      ['Network', d.network],
      ['Subnet', d.subnet],
      ['Gateway', d.gateway ?? '<none>'],
      ['VLAN', d.vlan === undefined ? '<none>' : String(d.vlan)],
      ['Ranges', list(d.ranges)],
      ['Excluded', list([...d.excludeIPs, ...(d.gateway ? [`${d.gateway} (gateway)`] : [])])],
      ['Allocatable', list(d.allocatable)],
      ['Routes', list(d.routes.map((r) => `${r.dst} via ${r.gw ?? d.gateway ?? '(on link)'}`))],
      ['Default', String(d.default)],
      ['Disabled', String(d.disabled)],
      ['Created', d.pool.metadata.creationTimestamp ?? '<unknown>'],
      [
        'Addresses',
        `${fmt(c.used)} used, ${fmt(c.reserved)} reserved, ${fmt(c.free)} free of ${fmt(c.total)} (${fmt(c.excluded)} excluded, not counted)`,
      ],
    ]),
    '',
    d.reservations.length === 0
      ? 'Reservations:  <none>'
      : `Reservations:\n${renderTable(
          ['RESERVEDIP', 'COUNT', 'ADDRESSES IN THIS POOL'],
          d.reservations.map((r) => [r.name, fmt(r.count), r.ips.join(', ')]),
        ).replace(/^/gm, '  ')}`,
    '',
    d.holders.length === 0
      ? 'Holders:       <none>'
      : `Holders (${d.holders.length}):\n${renderTable(
          ['IP', 'OWNER', 'INTERFACE', 'CONTAINER', 'NODE', 'NETWORK', 'CREATED'],
          d.holders.map((h) => [
            h.ip,
            h.owner,
            h.ifName ?? '',
            (h.containerId ?? '').slice(0, 12),
            h.node ?? '',
            h.cniNetwork ?? '',
            h.createdAt,
          ]),
        ).replace(/^/gm, '  ')}`,
  ];
  return out.join('\n');
}

export function formatClaims(d: ClaimDescription): string {
  return d.claims
    .map((x) => {
      const s = x.claim.spec;
      const o = s.owner;
      return [
        fields([
          ['Name', x.claim.metadata.name],
          ['IP', s.ip],
          ['Network', s.network],
          ['Pool', `${s.pool}${x.poolExists ? '' : ' (does not exist)'}`],
          ['Gateway', x.gateway ?? '<none>'],
          ['Owner', `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`],
          ['Owner UID', o.uid ?? '<none>'],
          ['Interface', s.ifName ?? '<none>'],
          ['Container', s.containerId ?? '<none>'],
          ['CNI network', s.cniNetwork ?? '<none>'],
          ['Node', s.node ?? '<none>'],
          ['Created', s.createdAt],
          ['Version', x.version],
          ['Problems', x.problems.length === 0 ? '<none>' : ''],
        ]).trimEnd(),
        ...x.problems.map((p) => `  ${p.kind}: ${p.detail}`),
      ].join('\n');
    })
    .join('\n\n');
}

/** One VIP a pod is bound to, and how. */
export interface PodVip {
  vip: string;
  /** `address`: the pod uses the VIP as its address; `allowed-address-pair`: it may send from it. */
  binding: 'address' | 'allowed-address-pair';
  ips: string[];
}

/** The VIPs that name the pod `namespace/name` in their status. Pure. */
export function vipsOfPod(vips: readonly VIP[], namespace: string, name: string): PodVip[] {
  const out: PodVip[] = [];
  for (const v of vips) {
    const st = v.status ?? {};
    const ips = [st.v4ip, st.v6ip].filter((x): x is string => typeof x === 'string');
    if (st.pod === `${namespace}/${name}`) out.push({ vip: v.metadata.name, binding: 'address', ips });
    // Allowed address pairs bind pods of spec.namespace only (src/controller/vip.ts).
    else if (v.spec.namespace === namespace && (st.pods ?? []).includes(name)) {
      out.push({ vip: v.metadata.name, binding: 'allowed-address-pair', ips });
    }
  }
  return out.sort((a, b) => a.vip.localeCompare(b.vip));
}

/** `vip1 (10.0.0.5), vip2 (aap 10.0.0.6)`, or `<none>`. */
export function formatPodVips(vs: readonly PodVip[]): string {
  return list(
    vs.map(
      (v) => `${v.vip} (${v.binding === 'address' ? '' : 'aap '}${v.ips.join(', ') || 'no address yet'})`,
    ),
  );
}

/** Every VIP, as the agent reads them. @throws IpamError from the agent (unreachable, store down). */
export async function listVips(socket: string): Promise<VIP[]> {
  return (await call<{ items: VIP[] }>(socket, 'GET', '/v1/objects/vips')).items;
}

/**
 * `text` (a table of `endpoints`, one row per endpoint after the header) with a VIPS column added
 * when a VIP names one of their pods (without VIPs in use the table stays as it was). Pure.
 */
export function withVipColumn(text: string, endpoints: readonly Endpoint[], vips: readonly VIP[]): string {
  const names = endpoints.map((e) =>
    vipsOfPod(vips, e.metadata.namespace ?? 'default', e.metadata.name).map((v) => v.vip),
  );
  if (names.every((n) => n.length === 0)) return text;
  const cells = ['VIPS', ...names.map((n) => n.join(',') || '-')];
  const lines = text.split('\n');
  const width = Math.max(...lines.map((l) => l.length));
  return lines.map((l, i) => `${l.padEnd(width)}   ${cells[i] ?? ''}`.trimEnd()).join('\n');
}

/**
 * `ipkeeper describe endpoint NS/NAME`: the agent's description, plus the VIPs of the pod.
 * @throws IpamError INVALID_OBJECT when the name is not NS/NAME; NOT_FOUND from the agent.
 */
export async function describeEndpointWithVips(socket: string, ref: string, format: string): Promise<void> {
  const m = /^([^/]+)\/([^/]+)$/.exec(ref);
  if (!m) {
    throw new IpamError(
      'INVALID_OBJECT',
      `endpoint "${ref}" must be NAMESPACE/NAME, e.g. default/web-0; list them with ipkeeper get endpoints`,
    );
  }
  const [ns, name] = [m[1] as string, m[2] as string];
  const d = await call<EndpointDescription>(
    socket,
    'GET',
    `/v1/endpoints/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`,
  );
  const vips = vipsOfPod(await listVips(socket), ns, name);
  if (format === 'json') console.log(JSON.stringify({ ...d, vips }, null, 2));
  else if (format === 'yaml') console.log(await yamlText({ ...d, vips }));
  else console.log(`${formatEndpoint(d)}\n\n${fields([['VIPs', formatPodVips(vips)]])}`);
}

export function registerDescribe(program: Command): void {
  program
    .command('describe')
    .description('show one pool (addresses, reservations, holders) or the claim of one address, in detail')
    .argument('<kind>', 'ippool | ipclaim | endpoint (plural and short names work too)')
    .argument('<name>', 'the pool name, or the address (10.6.168.133, fd00::5) or claim name of a claim')
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(['text', 'json', 'yaml']).default('text'),
    )
    .addOption(socketOption())
    .addHelpText(
      'after',
      `
Examples:
  ipkeeper describe ippool test-ippool
  ipkeeper describe ipclaim 10.6.168.133
  ipkeeper describe ipclaim fd00::5 -o yaml`,
    )
    .action(async (word: string, name: string, o: { output: string; socket?: string }) => {
      const kind = resolveKind(word)?.kind;
      if (kind === 'Endpoint') return describeEndpointWithVips(socketOf(o), name, o.output);
      if (kind === 'VIP' || kind === 'NodePool') {
        const obj = await call<VIP & NodePool>(
          socketOf(o),
          'GET',
          `/v1/objects/${kind === 'VIP' ? 'vips' : 'nodepools'}/${encodeURIComponent(name)}`,
        );
        if (o.output === 'json') console.log(JSON.stringify(obj, null, 2));
        else if (o.output === 'yaml') console.log(await yamlText(obj));
        else console.log(kind === 'VIP' ? describeVip(obj) : describeNodePool(obj));
        return;
      }
      if (kind !== 'IPPool' && kind !== 'IPClaim') {
        throw new IpamError(
          'INVALID_OBJECT',
          `describe shows ippool, ipclaim or endpoint, not "${word}"; for other kinds use ipkeeper get ${word} ${name} -o yaml`,
        );
      }
      const path = kind === 'IPPool' ? 'ippools' : 'ipclaims';
      const d = await call<PoolDescription | ClaimDescription>(
        socketOf(o),
        'GET',
        `/v1/describe/${path}/${encodeURIComponent(name)}`,
      );
      if (o.output === 'json') console.log(JSON.stringify(d, null, 2));
      else if (o.output === 'yaml') console.log(await yamlText(d));
      else
        console.log(
          kind === 'IPPool' ? formatPool(d as PoolDescription) : formatClaims(d as ClaimDescription),
        );
    });
}
