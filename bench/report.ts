/**
 * @module bench/report
 * What `npm run bench` prints and writes: a section's table for the console, and docs/BENCHMARKS.md —
 * the machine, the goals of every pass (`--repeat`), the hand-written analysis kept from the file
 * it replaces, then each section's table and notes. Pure functions of the results (no clocks, no
 * processes), so that they are tested (`report.test.ts`) without running a benchmark.
 */
import { readFileSync } from 'node:fs';
import { renderTable } from '../src/cli/table.ts';
import { fmt, fmtRatio, type Row, type SectionResult } from './lib.ts';

export interface Machine {
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

/**
 * A section starts once at most this share of the CPUs was busy over `QUIET_WINDOW_MS`, or after
 * `QUIET_MAX_MS` (`settle` in run.ts); the report says how long each waited.
 */
export const QUIET_BUSY = 0.1;
export const QUIET_WINDOW_MS = 500;
export const QUIET_MAX_MS = 30_000;

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

export function consoleSection(s: SectionResult): string {
  const lines = [
    `\n== ${s.name}: ${s.title}  (${s.seconds.toFixed(0)} s, load ${s.load.start.join(' ')} -> ${s.load.end.join(' ')})`,
  ];
  if (s.rows.length > 0) lines.push(renderTable(HEAD, s.rows.map(cells)));
  if (s.error) lines.push(`ERROR: ${s.error.split('\n')[0]}`);
  return lines.join('\n');
}

const md = (x: string): string => x.replace(/\|/g, '\\|');

export const ANALYSIS_START = '<!-- analysis: written by hand, kept by npm run bench -->';
export const ANALYSIS_END = '<!-- /analysis -->';

/** The hand-written analysis of an earlier file at `path` (markers included), if it has one. */
export function keptAnalysis(path: string): string | undefined {
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
export function hasGoal(r: Row): r is Row & { goal: string } {
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
export function repeatedSummary(passes: SectionResult[][]): {
  head: string[];
  rows: string[][];
  met: number[];
} {
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

export function markdown(
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
