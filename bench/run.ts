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
import { ROOT, cleanEnv, fmt, fmtRatio, loadNow, type Row, type SectionResult } from './lib.ts';
import { SECTIONS } from './section.ts';

interface Machine {
  date: string;
  command: string;
  cpus: string;
  memory: string;
  kernel: string;
  node: string;
  uptimeStart: string;
  uptimeEnd: string;
  loadStart: number[];
  loadEnd: number[];
}

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

const QUIET_BUSY = 0.1;
const QUIET_WINDOW_MS = 500;
const QUIET_MAX_MS = 30_000;

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

function unitOf(r: Row): string {
  return r.unit;
}

function resultText(r: Row): string {
  if (r.skipped) return `skipped: ${r.skipped}`;
  if (r.met === undefined) return '';
  return r.met ? 'met' : 'MISSED';
}

function cells(r: Row): string[] {
  const ratio =
    r.ratio === undefined
      ? r.anchor === undefined && !r.skipped
        ? 'anchor'
        : '—'
      : `${fmtRatio(r.ratio)} (${r.better === 'higher' ? 'higher' : 'lower'} is better)`;
  return [
    r.figure,
    r.median === undefined ? '—' : `${fmt(r.median)} ${unitOf(r)}`,
    r.samples === undefined ? '' : String(r.samples),
    r.p99 === undefined ? '—' : `${fmt(r.p99)} ${unitOf(r)}`,
    r.anchor ?? '—',
    ratio,
    r.goal ?? '—',
    resultText(r),
    r.detail ?? '',
  ];
}

const HEAD = ['figure', 'median', 'n', 'p99', 'anchor', 'ratio to anchor', 'goal', 'result', 'detail'];

function consoleSection(s: SectionResult): string {
  const lines = [
    `\n== ${s.name}: ${s.title}  (${s.seconds.toFixed(0)} s, load ${s.load.start.join(' ')} -> ${s.load.end.join(' ')})`,
  ];
  if (s.rows.length > 0) lines.push(renderTable(HEAD, s.rows.map(cells)));
  if (s.error) lines.push(`ERROR: ${s.error.split('\n')[0]}`);
  return lines.join('\n');
}

const md = (x: string): string => x.replace(/\|/g, '\\|');

const ANALYSIS_START = '<!-- analysis: written by hand, kept by npm run bench -->';
const ANALYSIS_END = '<!-- /analysis -->';

/** The hand-written analysis of an earlier file at `path` (markers included), if it has one. */
function keptAnalysis(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const a = text.indexOf(ANALYSIS_START);
  const b = text.indexOf(ANALYSIS_END, a);
  return a >= 0 && b > a ? text.slice(a, b + ANALYSIS_END.length) : undefined;
}

/** Whether a row carries one of the issue's goals (what the summaries list). */
function hasGoal(r: Row): r is Row & { goal: string } {
  return r.goal !== undefined && r.goal !== '—' && (r.met !== undefined || !!r.skipped);
}

/** A goal's figure in one pass: "27,419 cycles/CPU-s (0.91×) met". */
function passCell(r: Row | undefined): string {
  if (!r) return '—';
  const value = r.median === undefined ? '—' : `${fmt(r.median)} ${r.unit}`;
  return `${value}${r.ratio !== undefined ? ` (${fmtRatio(r.ratio)})` : ''} ${resultText(r)}`.trim();
}

/**
 * The goals across passes (`--repeat`): per goal, its figure and result in every pass and in how
 * many passes it was met, keyed by section and figure (a figure's name is the same in every pass).
 */
function repeatedSummary(passes: SectionResult[][]): { head: string[]; rows: string[][]; met: number[] } {
  const rows: string[][] = [];
  const met: number[] = [];
  const last = passes[passes.length - 1] ?? [];
  for (const s of last) {
    for (const r of s.rows) {
      if (!hasGoal(r)) continue;
      const per = passes.map((p) =>
        p.find((x) => x.name === s.name)?.rows.find((x) => x.figure === r.figure),
      );
      const k = per.filter((x) => x?.met === true).length;
      met.push(k);
      rows.push([s.name, r.goal, r.figure, ...per.map(passCell), `${k} of ${passes.length}`]);
    }
  }
  return { head: ['section', 'goal', 'figure', ...passes.map((_, i) => `pass ${i + 1}`), 'met'], rows, met };
}

function markdown(
  m: Machine,
  passes: SectionResult[][],
  analysis: string | undefined,
  settled: Map<string, { waitedMs: number; busy: number }>,
): string {
  const sections = passes[passes.length - 1] ?? [];
  const out: string[] = [];
  out.push(
    '# Benchmarks',
    '',
    'Written by `npm run bench` ([`bench/run.ts`](../bench/run.ts)); run it again rather than editing this file (the',
    'analysis between its markers is the one part written by hand, and a new run keeps it).',
    'Every figure is measured together with its anchor in the same run; “ratio” is figure ÷ anchor. Goals are',
    'the issue’s; “result” says whether this run met them. Nothing here is a test: the machine may be loaded',
    '(see the load averages), so compare ratios more than absolute figures. “n” is how many samples the median',
    'is over (rounds, runs or requests); “detail” holds what else was measured for the figure, e.g. the CPU behind it.',
    '',
    `- Date: ${m.date}`,
    `- Command: \`${m.command}\``,
    `- Machine: ${m.cpus}, ${m.memory} memory, Linux ${m.kernel}, Node ${m.node}`,
    `- Load average (1, 5, 15 min) at start: ${m.loadStart.join(', ')}; at end: ${m.loadEnd.join(', ')}`,
    `- \`uptime\` at start: \`${m.uptimeStart}\``,
    `- \`uptime\` at end: \`${m.uptimeEnd}\``,
    '',
  );
  const missed = sections.flatMap((s) =>
    s.rows.filter((r) => r.met === false).map((r) => `${s.name}: ${r.figure}`),
  );
  if (passes.length > 1) {
    // --repeat: every goal in every pass, then the last pass's tables.
    const rep = repeatedSummary(passes);
    const every = rep.met.filter((k) => k === passes.length).length;
    const none = rep.met.filter((k) => k === 0).length;
    out.push(
      `## Summary of ${passes.length} passes`,
      '',
      `The whole suite ran ${passes.length} times, one pass after another; each cell is that pass's figure (ratio) and result. The section tables further down are the last pass's.`,
      '',
      `| ${rep.head.join(' | ')} |`,
      `|${rep.head.map(() => '---').join('|')}|`,
      ...rep.rows.map((r) => `| ${r.map(md).join(' | ')} |`),
      '',
      `Of ${rep.met.length} goals: ${every} met in every pass, ${rep.met.length - every - none} in some, ${none} in none.`,
      '',
    );
  }
  out.push(passes.length > 1 ? `## Summary (pass ${passes.length})` : '## Summary', '');
  out.push(`| section | goal | figure | result |`, `|---|---|---|---|`);
  for (const s of sections) {
    for (const r of s.rows) {
      if (!hasGoal(r)) continue;
      out.push(
        `| ${s.name} | ${md(r.goal)} | ${md(r.figure)}: ${r.median === undefined ? '—' : `${fmt(r.median)} ${r.unit}`}${r.ratio !== undefined ? ` (${fmtRatio(r.ratio)})` : ''} | ${resultText(r)} |`,
      );
    }
    if (s.error) out.push(`| ${s.name} | — | the section failed | ERROR |`);
  }
  out.push(
    '',
    missed.length === 0 ? 'Every goal was met in this run.' : `${missed.length} goal(s) missed in this run.`,
    '',
  );
  // Kept from the previous file: it says which run its figures come from, and is revised by hand.
  if (analysis) out.push(analysis, '');
  for (const s of sections) {
    out.push(`## ${s.name} — ${s.title.replace(/^[a-z]+: /, '')}`, '');
    const quiet = settled.get(s.name);
    out.push(
      `Took ${s.seconds.toFixed(0)} s; load average at its start ${s.load.start.join(', ')}, at its end ${s.load.end.join(', ')}.` +
        (quiet
          ? ` Before it, the CPUs were ${(quiet.busy * 100).toFixed(0)}% busy over ${QUIET_WINDOW_MS} ms, after waiting ${(quiet.waitedMs / 1000).toFixed(1)} s for them to fall to ${QUIET_BUSY * 100}% or less (at most ${QUIET_MAX_MS / 1000} s).`
          : ''),
      '',
    );
    if (s.rows.length > 0) {
      out.push(`| ${HEAD.join(' | ')} |`, `|${HEAD.map(() => '---').join('|')}|`);
      for (const r of s.rows) out.push(`| ${cells(r).map(md).join(' | ')} |`);
      out.push('');
    }
    if (s.error) out.push('The section failed:', '', '```', s.error, '```', '');
    for (const n of s.notes) out.push(`- ${n}`);
    out.push('');
  }
  return out.join('\n');
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
