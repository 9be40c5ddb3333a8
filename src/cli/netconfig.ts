/**
 * @module cli/netconfig
 * `ipkeeper netconfig render -f FILE`: prints the Multus NetworkAttachmentDefinition(s) a
 * NetworkConfig (or Spiderpool SpiderMultusConfig) generates, without a cluster — to review, or to
 * `kubectl apply -f -` where no ipkeeper controller runs. And the `ipkeeper get networkconfigs` table.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { NetworkConfig } from '../api/kinds.ts';
import { IpamError } from '../errors.ts';
import { renderTable } from './table.ts';

/**
 * The NAD YAML (documents joined by `---`) and notes for every NetworkConfig in `text`.
 * @throws IpamError INVALID_OBJECT for a document that is not a NetworkConfig or SpiderMultusConfig,
 *   or an invalid one (every field error named).
 */
export async function renderNetconfigs(
  text: string,
  source: string,
): Promise<{ yaml: string; notes: string[] }> {
  const { renderNad, renderNotes } = await import('../controller/netconfig.ts');
  const { validateObject } = await import('../api/validate.ts');
  const { parseManifests } = await import('../api/manifests.ts');
  const { stringify } = await import('yaml');
  const converted = parseManifests(text, source);
  if (converted.length === 0) throw new IpamError('INVALID_OBJECT', `${source}: no objects found`);
  const docs: string[] = [];
  const notes: string[] = [];
  converted.forEach((c, i) => {
    if (c.object.kind !== 'NetworkConfig') {
      throw new IpamError(
        'INVALID_OBJECT',
        `${source}: document ${i + 1} is a ${c.object.kind} "${c.object.metadata?.name}"; netconfig render takes NetworkConfig (or SpiderMultusConfig) objects`,
        { document: i + 1, kind: c.object.kind },
      );
    }
    const nc = validateObject<NetworkConfig>(c.object);
    docs.push(stringify(renderNad(nc), { lineWidth: 0 }));
    notes.push(...renderNotes(nc));
  });
  return { yaml: docs.join('---\n'), notes };
}

export function registerNetconfig(program: Command): void {
  const netconfig = program
    .command('netconfig')
    .description('NetworkConfig: the Multus NetworkAttachmentDefinitions it generates');
  netconfig
    .command('render')
    .description(
      'print the NetworkAttachmentDefinition YAML of NetworkConfig (or SpiderMultusConfig) objects',
    )
    .requiredOption('-f, --filename <path>', 'a YAML/JSON file, or - for stdin')
    .addHelpText(
      'after',
      '\nExamples:\n  ipkeeper netconfig render -f macvlan-ens192.yaml\n  ipkeeper netconfig render -f spidermultusconfig.yaml | kubectl apply -f -',
    )
    .action(async (o: { filename: string }) => {
      let text: string;
      try {
        text = readFileSync(o.filename === '-' ? 0 : o.filename, 'utf8');
      } catch (e) {
        throw new IpamError(
          'INVALID_OBJECT',
          `-f ${o.filename}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
        );
      }
      const r = await renderNetconfigs(text, o.filename === '-' ? 'stdin' : o.filename);
      for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
      process.stdout.write(r.yaml);
    });
}

/** `ipkeeper get networkconfigs` */
export function networkConfigTable(items: NetworkConfig[], wide: boolean): string {
  const head = ['NAMESPACE', 'NAME', 'TYPE', 'MASTER', 'VLAN'];
  if (wide) head.push('MODE', 'MTU', 'IPV4 POOLS', 'IPV6 POOLS');
  return renderTable(
    head,
    items.map((n) => {
      const s = n.spec;
      const row = [
        n.metadata.namespace ?? 'default',
        n.metadata.name,
        s.type,
        s.master ?? s.resourceName ?? s.bridge ?? '',
        s.vlan !== undefined ? String(s.vlan) : '',
      ];
      if (wide)
        row.push(
          s.mode ?? '',
          s.mtu !== undefined ? String(s.mtu) : '',
          (s.ippools?.ipv4 ?? []).join(','),
          (s.ippools?.ipv6 ?? []).join(','),
        );
      return row;
    }),
  );
}
