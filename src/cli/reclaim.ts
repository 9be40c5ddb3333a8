/**
 * @module cli/reclaim
 * `ipkeeper reclaim endpoint NS/NAME [--force]` and `ipkeeper reclaim ip ADDRESS [--network N]
 * [--force]`: release kept (fixed) addresses by hand (seed 003, "手动回收Pod IP"), through the
 * agent's `POST /v1/reclaim`. The agent refuses while a live pod uses an address, saying which pod,
 * unless --force. Also `ipkeeper describe endpoint NS/NAME` (`describeEndpoint`, called by describe.ts).
 */
import { Option, type Command } from 'commander';
import { yamlText } from './yaml-out.ts';
import { IpamError } from '../errors.ts';
import type { Endpoint } from '../api/kinds.ts';
import type { EndpointDescription, ReclaimReport } from '../ipam/endpoint.ts';
import { renderTable } from './table.ts';
import { call } from './client.ts';
import { socketOf, socketOption } from './check.ts';

/** The report as lines a person reads: one per address, then the endpoint. */
export function formatReclaim(r: ReclaimReport): string {
  const out: string[] = [];
  if (r.forcedOver) out.push(`warning: --force: ${r.forcedOver}`);
  for (const x of r.released) out.push(`released ${x.ip} (network ${x.network}, ${x.claim})`);
  for (const x of r.skipped) out.push(`skipped ${x.ip}: ${x.reason}`);
  if (r.endpoint) {
    out.push(r.endpointDeleted ? `endpoint ${r.endpoint} deleted` : `endpoint ${r.endpoint} kept`);
  }
  if (out.length === 0) out.push('nothing to reclaim');
  return out.join('\n');
}

function fields(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(w)}${v}`).join('\n');
}

/** `ipkeeper get endpoints`: one row per pod or VM. */
export function endpointTable(items: Endpoint[], wide: boolean): string {
  const head = ['NAMESPACE', 'NAME', 'IPS', 'FIXED', 'RETENTION', 'NODE', 'RELEASED'];
  if (wide) head.push('OWNER', 'CONTAINER', 'POD UID');
  return renderTable(
    head,
    items.map((e) => {
      const s = e.spec;
      const row = [
        e.metadata.namespace ?? 'default',
        e.metadata.name,
        (s.interfaces ?? []).flatMap((i) => (i.ips ?? []).map((ip) => `${i.ifName}:${ip.ip}`)).join(',') ||
          '<none>',
        s.fixed ?? '-',
        s.retention ?? '-',
        s.node ?? '',
        s.releasedAt ?? '-',
      ];
      if (wide)
        row.push(
          s.owner ? `${s.owner.kind}/${s.owner.name}` : '-',
          (s.containerId ?? '').slice(0, 12),
          s.podUid ?? '',
        );
      return row;
    }),
  );
}

/** `ipkeeper describe endpoint`, kubectl-describe style. */
export function formatEndpoint(d: EndpointDescription): string {
  const s = d.endpoint.spec;
  const o = s.owner;
  const head = fields([
    ['Name', d.endpoint.metadata.name],
    ['Namespace', d.endpoint.metadata.namespace ?? 'default'],
    ['Owner', o ? `${o.kind} ${o.name}${o.uid ? ` (uid ${o.uid})` : ''}` : '<none>'],
    ['Fixed', s.fixed ?? 'no (released with the pod)'],
    ['Retention', s.retention ?? '<none>'],
    ['Pod UID', s.podUid ?? '<none>'],
    ['Node', s.node ?? '<none>'],
    ['Container', s.containerId ?? '<none>'],
    ['Released', s.releasedAt ?? '<not released: the pod uses it>'],
    ['Updated', s.updatedAt ?? '<unknown>'],
  ]);
  const ifaces = (s.interfaces ?? []).map((i) => {
    const ips = i.ips.map((ip) => {
      const c = d.claims.find((x) => x.claim === ip.claim);
      return `    ${ip.ip} pool ${ip.pool} network ${ip.network}${ip.gateway ? ` gateway ${ip.gateway}` : ''} [${c?.state ?? 'unknown'}]`;
    });
    const routes = (i.routes ?? []).map(
      (r) =>
        `    route ${r.dst}${r.gw ? ` via ${r.gw}` : ''}${i.table !== undefined ? ` table ${i.table}` : ''}`,
    );
    return [`  ${i.ifName} (${i.cniNetwork}):`, ...ips, ...routes].join('\n');
  });
  return [head, '', ifaces.length === 0 ? 'Interfaces:  <none>' : `Interfaces:\n${ifaces.join('\n')}`].join(
    '\n',
  );
}

export function registerReclaim(program: Command): void {
  const reclaim = program
    .command('reclaim')
    .description(
      "release kept (fixed) addresses by hand: an endpoint's, or one address; refused while a live pod uses them",
    )
    .addHelpText(
      'after',
      '\nExamples:\n  ipkeeper reclaim endpoint default/sts-0\n  ipkeeper reclaim ip 10.0.0.236\n  ipkeeper reclaim ip 10.0.0.236 --force -o json',
    );
  const output = () =>
    new Option('-o, --output <format>', 'output format').choices(['text', 'json', 'yaml']).default('text');
  const show = async (r: ReclaimReport, format: string): Promise<void> => {
    if (format === 'json') console.log(JSON.stringify(r, null, 2));
    else if (format === 'yaml') console.log(await yamlText(r));
    else console.log(formatReclaim(r));
  };
  reclaim
    .command('endpoint')
    .description("release every address of a pod's (or VM's) Endpoint and delete it")
    .argument('<namespace/name>', 'the pod name, or the VM name for a KubeVirt VM')
    .option('--force', 'release even though a live pod uses the addresses')
    .addOption(output())
    .addOption(socketOption())
    .addHelpText(
      'after',
      '\nExamples:\n  ipkeeper reclaim endpoint default/sts-0\n  ipkeeper reclaim endpoint default/sts-0 --force -o yaml',
    )
    .action(async (ref: string, o: { force?: boolean; output: string; socket?: string }) => {
      const r = await call<ReclaimReport>(socketOf(o), 'POST', '/v1/reclaim', {
        endpoint: ref,
        force: o.force === true,
      });
      await show(r, o.output);
    });
  reclaim
    .command('ip')
    .description('release one address and drop it from its Endpoint')
    .argument('<address>', 'an IPv4 or IPv6 address, e.g. 10.0.0.236')
    .option(
      '--network <name>',
      'the uniqueness domain (IPPool spec.network), when the address is held in several',
    )
    .option('--force', 'release even though a live pod uses the address')
    .addOption(output())
    .addOption(socketOption())
    .addHelpText(
      'after',
      '\nExamples:\n  ipkeeper reclaim ip 10.0.0.236\n  ipkeeper reclaim ip fd00::5 --network dc2 --force',
    )
    .action(async (ip: string, o: { network?: string; force?: boolean; output: string; socket?: string }) => {
      const r = await call<ReclaimReport>(socketOf(o), 'POST', '/v1/reclaim', {
        ip,
        force: o.force === true,
        ...(o.network ? { network: o.network } : {}),
      });
      await show(r, o.output);
    });
}

/**
 * `ipkeeper describe endpoint NS/NAME`.
 * @throws IpamError INVALID_OBJECT when the name is not NS/NAME; NOT_FOUND from the agent.
 */
export async function describeEndpoint(socket: string, ref: string, format: string): Promise<void> {
  const m = /^([^/]+)\/([^/]+)$/.exec(ref);
  if (!m) {
    throw new IpamError(
      'INVALID_OBJECT',
      `endpoint "${ref}" must be NAMESPACE/NAME, e.g. default/web-0; list them with ipkeeper get endpoints`,
    );
  }
  const d = await call<EndpointDescription>(
    socket,
    'GET',
    `/v1/endpoints/${encodeURIComponent(m[1] as string)}/${encodeURIComponent(m[2] as string)}`,
  );
  if (format === 'json') console.log(JSON.stringify(d, null, 2));
  else if (format === 'yaml') console.log(await yamlText(d));
  else console.log(formatEndpoint(d));
}
