/**
 * @module cli/describe
 * `ipkeeper describe ippool NAME` — the pool's addresses, exclusions, the reservations that touch it,
 * gateway, routes, counts and who holds what — and `ipkeeper describe ipclaim IP` — every claim of
 * one address with its owner and any problem `ipkeeper check` would report. kubectl-describe style
 * text, or `-o json|yaml` for the agent's answer as is.
 */
import { Option, type Command } from 'commander';
import { stringify } from 'yaml';
import { IpamError } from '../errors.ts';
import { resolveKind } from '../api/kinds.ts';
import type { ClaimDescription, PoolDescription } from '../agent/ui/inspect.ts';
import { call } from './client.ts';
import { renderTable } from './table.ts';
import { socketOf, socketOption } from './check.ts';
import { describeEndpoint } from './reclaim.ts';
import { describeNodePool, describeVip } from './vip-nodepool.ts';
import type { NodePool, VIP } from '../api/kinds.ts';

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
      if (kind === 'Endpoint') return describeEndpoint(socketOf(o), name, o.output);
      if (kind === 'VIP' || kind === 'NodePool') {
        const obj = await call<VIP & NodePool>(
          socketOf(o),
          'GET',
          `/v1/objects/${kind === 'VIP' ? 'vips' : 'nodepools'}/${encodeURIComponent(name)}`,
        );
        if (o.output === 'json') console.log(JSON.stringify(obj, null, 2));
        else if (o.output === 'yaml') console.log(stringify(obj).trimEnd());
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
      else if (o.output === 'yaml') console.log(stringify(d).trimEnd());
      else
        console.log(
          kind === 'IPPool' ? formatPool(d as PoolDescription) : formatClaims(d as ClaimDescription),
        );
    });
}
