/**
 * @module bench/run
 * `npm run bench`: the benchmark suite. Each section runs in its own Node process; every figure is
 * measured together with its anchor in the same run and printed as a table (median, p99 for
 * latencies, ratio to the anchor, the goal), then written with the machine's description to
 * docs/BENCHMARKS.md.
 *
 *   npm run bench                                   every section, full counts -> docs/BENCHMARKS.md
 *   npm run bench -- --only engine,plugin --quick   a subset, smaller counts -> a file in the temp dir
 *   npm run bench -- --out /tmp/b.md                write somewhere else
 *   npm run bench -- --repeat 3                     the whole suite 3 times: every goal's figure per pass
 *
 * Only a full run (every section, full counts) writes docs/BENCHMARKS.md unless `--out` says
 * otherwise, so iterating on one section never replaces the committed figures with partial ones.
 *
 * Benchmarks are not tests: nothing here fails on a slow figure; a goal is reported met or missed.
 * The exit code is non-zero only when a section could not run at all.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderTable } from '../src/cli/table.ts';
import { ROOT, cleanEnv, loadNow, type SectionResult } from './lib.ts';
import {
  QUIET_BUSY,
  QUIET_MAX_MS,
  QUIET_WINDOW_MS,
  consoleSection,
  keptAnalysis,
  markdown,
  repeatedSummary,
  type Machine,
} from './report.ts';
import { SECTIONS } from './section.ts';

function uptime(): string {
  const r = spawnSync('uptime', [], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : `load average: ${loadNow().join(', ')}`;
}

function commandLine(args: string[]): string {
  const tail = args.length > 0 ? ` -- ${args.join(' ')}` : '';
  return process.env.npm_lifecycle_event === 'bench'
    ? `npm run bench${tail}`
    : `node bench/run.ts ${args.join(' ')}`.trim();
}

/** Total and idle CPU time of the machine so far, in clock ticks (/proc/stat's first line). */
function cpuTicks(): { total: number; idle: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: idle + iowait is idle.
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, idle: (fields[3] ?? 0) + (fields[4] ?? 0) };
}

/**
 * Waits until the machine is quiet — at most 10% of its CPUs busy over half a second — or 30 s have
 * passed, so a section does not start while the previous one's processes (etcd members, agents)
 * are still winding down. Returns how long it waited and how busy the last window was.
 */
async function settle(): Promise<{ waitedMs: number; busy: number }> {
  const t0 = Date.now();
  for (;;) {
    const a = cpuTicks();
    await new Promise((r) => setTimeout(r, QUIET_WINDOW_MS));
    const b = cpuTicks();
    const busy = b.total > a.total ? 1 - (b.idle - a.idle) / (b.total - a.total) : 0;
    const waitedMs = Date.now() - t0;
    if (busy <= QUIET_BUSY || waitedMs >= QUIET_MAX_MS) return { waitedMs, busy };
  }
}

function runSection(name: string, quick: boolean): Promise<SectionResult> {
  const dir = mkdtempSync(join(tmpdir(), 'ipk-bench-result-'));
  const out = join(dir, 'result.json');
  const args = ['--expose-gc', join(ROOT, 'bench/section.ts'), name, out, ...(quick ? ['--quick'] : [])];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], env: cleanEnv() });
    child.once('exit', (code, signal) => {
      let result: SectionResult;
      try {
        result = JSON.parse(readFileSync(out, 'utf8')) as SectionResult;
      } catch {
        result = {
          name,
          title: SECTIONS[name]?.title ?? name,
          rows: [],
          notes: [],
          seconds: 0,
          load: { start: [], end: [] },
          error: `the section process ended with ${code ?? signal} before writing a result`,
        };
      }
      rmSync(dir, { recursive: true, force: true });
      resolve(result);
    });
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      repeat: { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const all = Object.keys(SECTIONS);
  if (values.help) {
    console.log(`usage: npm run bench -- [--only ${all.join(',')}] [--quick] [--out FILE] [--repeat N]`);
    return;
  }
  const repeat = Number(values.repeat);
  if (!Number.isInteger(repeat) || repeat < 1 || repeat > 20) {
    console.error(
      `--repeat ${values.repeat}: give how many times to run the suite, a whole number from 1 to 20`,
    );
    process.exit(2);
  }
  const only = values.only
    ? values.only
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : all;
  const unknown = only.filter((s) => !SECTIONS[s]);
  if (unknown.length > 0) {
    console.error(`unknown section(s) ${unknown.join(', ')}; choose from ${all.join(', ')}`);
    process.exit(2);
  }
  const partial = values.quick || only.length < all.length;
  const out =
    values.out ??
    (partial
      ? join(tmpdir(), `ipkeeper-bench-${new Date().toISOString().replace(/[:.]/g, '-')}.md`)
      : join(ROOT, 'docs/BENCHMARKS.md'));
  const cpuModel = cpus()[0]?.model?.trim() ?? 'unknown CPU';
  const machine: Machine = {
    date: new Date().toISOString(),
    command: commandLine(argv),
    cpus: `${availableParallelism()} CPUs (${cpuModel})`,
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    kernel: release(),
    node: process.version,
    uptimeStart: uptime(),
    uptimeEnd: '',
    loadStart: loadNow(),
    loadEnd: [],
  };
  console.log(
    `ipkeeper benchmarks — ${machine.date}\n${machine.cpus}, ${machine.memory}, Linux ${machine.kernel}, Node ${machine.node}\nuptime: ${machine.uptimeStart}`,
  );
  const passes: SectionResult[][] = [];
  const settled = new Map<string, { waitedMs: number; busy: number }>();
  for (let pass = 1; pass <= repeat; pass++) {
    const results: SectionResult[] = [];
    passes.push(results);
    for (const name of only) {
      const quiet = await settle();
      settled.set(name, quiet);
      console.log(
        `\n-- ${name}${values.quick ? ' (quick)' : ''}${repeat > 1 ? `, pass ${pass} of ${repeat}` : ''} ... (CPUs ${(quiet.busy * 100).toFixed(0)}% busy after ${(quiet.waitedMs / 1000).toFixed(1)} s of waiting for quiet)`,
      );
      const r = await runSection(name, values.quick);
      results.push(r);
      console.log(consoleSection(r));
    }
  }
  machine.uptimeEnd = uptime();
  machine.loadEnd = loadNow();
  console.log(`\nuptime at end: ${machine.uptimeEnd}`);
  if (repeat > 1) {
    const rep = repeatedSummary(passes);
    console.log(`\n== every goal in each of ${repeat} passes\n${renderTable(rep.head, rep.rows)}`);
  }
  writeFileSync(out, markdown(machine, passes, keptAnalysis(out), settled));
  console.log(
    `written to ${out}${partial && !values.out ? ' (a partial run: docs/BENCHMARKS.md is left as it was)' : ''}`,
  );
  if (passes.flat().some((r) => r.error && r.rows.length === 0)) process.exitCode = 1;
}

await main();
