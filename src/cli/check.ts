/**
 * @module cli/check
 * `ipkeeper check` — the problem claims of the store (like `calicoctl ipam check`) — and
 * `ipkeeper release --from-report FILE`, which releases exactly the claims of a saved
 * `check -o json` report, each only at the version the report saw (see `src/agent/ui/check.ts`).
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { IpamError } from '../errors.ts';
import { DEFAULT_SOCKET } from '../cni/protocol.ts';
import type { CheckReport } from '../agent/ui/check.ts';
import type { ReleaseItem, ReleaseResult } from '../agent/ui/release.ts';
import { call, SOCKET_ENV } from './client.ts';
import { renderTable } from './table.ts';
import { progressOption, withProgress } from './progress.ts';

export function socketOf(opts: { socket?: string }): string {
  return opts.socket ?? process.env[SOCKET_ENV] ?? DEFAULT_SOCKET;
}

export function socketOption(): Option {
  return new Option('--socket <path>', `agent socket (env ${SOCKET_ENV})`).default(undefined, DEFAULT_SOCKET);
}

/** The report as a table, one row per problem, and a summary line. */
export function formatReport(r: CheckReport): string {
  const s = r.summary;
  const lines: string[] = [];
  if (r.problems.length > 0) {
    const rows = r.problems.flatMap((p) =>
      p.problems.map((x) => [p.ip, p.pool, x.kind, p.owner, p.node ?? '', x.detail]),
    );
    lines.push(renderTable(['IP', 'POOL', 'PROBLEM', 'OWNER', 'NODE', 'DETAIL'], rows), '');
  }
  if (r.invalidObjects.length > 0) {
    lines.push('Objects the agents ignore because they are invalid (fix them with ipkeeper apply):');
    for (const o of r.invalidObjects) lines.push(`  ${o.key}: ${o.reason}`);
    lines.push('');
  }
  const kinds = Object.entries(s.byKind)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  const scope = `${s.claims} claim(s) in ${s.pools} pool(s) and ${s.reservations} reservation(s) checked`;
  if (s.problemClaims === 0) {
    lines.push(`No problem claims: ${scope}.`);
  } else {
    lines.push(`${s.problemClaims} problem claim(s) (${kinds}); ${scope}.`);
    lines.push(
      'To release them: ipkeeper check -o json > report.json, remove from report.json the claims to keep, then ipkeeper release --from-report report.json',
    );
  }
  return lines.join('\n');
}

/**
 * The claims a saved report lists.
 * @throws IpamError INVALID_OBJECT when `text` is not a `check -o json` report.
 */
export function itemsOfReport(text: string, source: string): ReleaseItem[] {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch (e) {
    throw new IpamError(
      'INVALID_OBJECT',
      `${source} is not JSON (${e instanceof Error ? e.message : String(e)}); save the report with ipkeeper check -o json > ${source}`,
    );
  }
  const rep = r as Partial<CheckReport> | null;
  if (!rep || rep.kind !== 'CheckReport' || !Array.isArray(rep.problems)) {
    throw new IpamError(
      'INVALID_OBJECT',
      `${source} is not a check report (kind: CheckReport with a "problems" list); save one with ipkeeper check -o json > ${source}`,
    );
  }
  return rep.problems.map((p, i) => {
    if (!p || typeof p.key !== 'string' || typeof p.version !== 'string') {
      throw new IpamError(
        'INVALID_OBJECT',
        `${source}: problems[${i}] needs "key" and "version" as check wrote them`,
        { field: `problems[${i}]` },
      );
    }
    return { key: p.key, version: p.version };
  });
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description(
      'report problem claims: pool gone, outside their pool, on reserved addresses, duplicates, dead nodes',
    )
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'),
    )
    .addOption(socketOption())
    .addOption(progressOption())
    .addHelpText(
      'after',
      `
Problems (one claim may have several):
  invalid        the claim does not parse, or is stored under another address's key
  pool-missing   its pool does not exist (or is invalid)
  outside-pool   its address is not one its pool hands out (excluded, gateway, outside spec.ips, other network)
  reserved       its address is reserved by a ReservedIP
  duplicate      a second address of one family for one container + interface (the one kept is not listed)
  dead-node      its node's agent stopped renewing its lease

Examples:
  ipkeeper check
  ipkeeper check -o json > report.json      # then: ipkeeper release --from-report report.json`,
    )
    .action(async (o: { output: string; socket?: string; progress?: boolean }) => {
      // The agent checks its whole store in one request: the wait is timed, not counted.
      await withProgress(
        { label: 'check', phase: 'waiting for the agent', force: o.progress === true },
        async (p) => {
          const r = await call<CheckReport>(socketOf(o), 'GET', '/v1/check');
          p.clear();
          if (o.output === 'json') console.log(JSON.stringify(r, null, 2));
          else console.log(formatReport(r));
          const s = r.summary;
          return {
            result: undefined,
            summary: `${s.claims} claim(s) checked, ${s.problemClaims} with problems`,
          };
        },
      );
    });

  program
    .command('release')
    .description(
      'release the claims listed in a saved `ipkeeper check -o json` report, each only if unchanged since',
    )
    .requiredOption(
      '--from-report <file>',
      'the report (- for stdin); delete entries from it to keep those claims',
    )
    .option('--dry-run', 'show what would be released, change nothing')
    .addOption(socketOption())
    .addOption(progressOption())
    .addHelpText(
      'after',
      `
Each claim is deleted only at the version the report saw: a claim released and made again, or
changed in any way, since the report is skipped and said so — its address may have a new holder.

Examples:
  ipkeeper check -o json > report.json
  ipkeeper release --from-report report.json --dry-run
  ipkeeper release --from-report report.json`,
    )
    .action(async (o: { fromReport: string; dryRun?: boolean; socket?: string; progress?: boolean }) => {
      const text = o.fromReport === '-' ? readFileSync(0, 'utf8') : readSourceFile(o.fromReport);
      const items = itemsOfReport(text, o.fromReport);
      if (items.length === 0) {
        console.log('The report lists no claims: nothing to release.');
        return;
      }
      if (o.dryRun) {
        for (const it of items) console.log(`would release ${it.key} at version ${it.version}`);
        console.log(`${items.length} claim(s) would be released (if unchanged since the report).`);
        return;
      }
      await releaseInBatches(socketOf(o), items, o.fromReport, o.progress === true);
    });
}

/** Claims per `/v1/release` request: progress moves, and a report of any size stays under the agent's limit. */
export const RELEASE_BATCH = 500;

/**
 * Releases `items` in batches of `RELEASE_BATCH`, with progress on stderr, and prints each outcome
 * and the counts on stdout. Every item is checked first, as the agent will check it, so a bad entry
 * refuses the whole report before anything is released (each claim's release stands on its own:
 * batching changes nothing else).
 * @throws IpamError INVALID_OBJECT naming the report entry; the agent's errors.
 */
async function releaseInBatches(
  socket: string,
  items: ReleaseItem[],
  source: string,
  force: boolean,
): Promise<void> {
  const { parseReleaseItems } = await import('../agent/ui/release.ts');
  items.forEach((it, i) => {
    try {
      parseReleaseItems({ items: [it] });
    } catch (e) {
      const msg = e instanceof Error ? e.message.replace(/^items\[0\]\.?/, '') : String(e);
      throw new IpamError('INVALID_OBJECT', `${source}: problems[${i}].${msg}`, { field: `problems[${i}]` });
    }
  });
  await withProgress({ label: 'release', total: items.length, force }, async (p) => {
    const results: ReleaseResult[] = [];
    for (let at = 0; at < items.length; at += RELEASE_BATCH) {
      const batch = items.slice(at, at + RELEASE_BATCH);
      const r = await call<{ results: ReleaseResult[] }>(socket, 'POST', '/v1/release', { items: batch });
      results.push(...r.results);
      p.add(batch.length);
    }
    p.clear();
    for (const r of results) console.log(r.message);
    const n = (k: ReleaseResult['outcome']): number => results.filter((r) => r.outcome === k).length;
    console.log(
      `released ${n('released')}, skipped ${n('changed')} (changed since the report), ${n('gone')} already released`,
    );
    return { result: undefined };
  });
}

function readSourceFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new IpamError(
      'INVALID_OBJECT',
      `--from-report ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String(e)}`,
    );
  }
}
