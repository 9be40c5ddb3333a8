/**
 * The benchmark's report (bench/report.ts) and statistics (bench/lib.ts): what docs/BENCHMARKS.md
 * says about goals must follow from the rows, and a new run must keep the hand-written analysis.
 * No benchmark runs here and nothing is timed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compared, median, p99, quantile, type Row, type SectionResult } from './lib.ts';
import {
  ANALYSIS_END,
  ANALYSIS_START,
  consoleSection,
  hasGoal,
  keptAnalysis,
  markdown,
  repeatedSummary,
  type Machine,
} from './report.ts';

const MACHINE: Machine = {
  date: '2026-12-07T00:00:00.000Z',
  command: 'npm run bench',
  cpus: '2 CPUs (test)',
  memory: '1.0 GiB',
  kernel: '6.0',
  node: 'v24.0.0',
  uptimeStart: 'up',
  uptimeEnd: 'up',
  loadStart: [0, 0, 0],
  loadEnd: [0, 0, 0],
};

const row = (figure: string, median: number, met?: boolean, extra: Partial<Row> = {}): Row => ({
  figure,
  unit: 'ms',
  better: 'lower',
  median,
  ...(met === undefined ? {} : { goal: '< 10 ms', met }),
  ...extra,
});

const section = (name: string, rows: Row[], extra: Partial<SectionResult> = {}): SectionResult => ({
  name,
  title: `${name}: test section`,
  rows,
  notes: [`a note of ${name}`],
  seconds: 1,
  load: { start: [0], end: [0] },
  ...extra,
});

describe('bench statistics', () => {
  it('takes the median of odd and even samples, unsorted', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });

  it('takes quantiles by nearest rank', () => {
    const xs = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    assert.equal(quantile(xs, 0.5), 50);
    assert.equal(p99(xs), 99);
    assert.equal(quantile(xs, 1), 100);
    assert.equal(quantile([7], 0.99), 7);
  });

  it('gives a ratio against the anchor, and none when the anchor has no figure or is zero', () => {
    assert.equal(compared({ ...row('x', 30), anchor: 'a' }, 20).ratio, 1.5);
    assert.equal(compared({ ...row('x', 30), anchor: 'a' }, undefined).ratio, undefined);
    assert.equal(compared({ ...row('x', 30), anchor: 'a' }, 0).ratio, undefined);
    assert.equal(compared({ ...row('x', 30), median: undefined, anchor: 'a' }, 20).ratio, undefined);
  });
});

describe('bench report', () => {
  it('counts a row as a goal only when it says whether the goal was met', () => {
    assert.equal(hasGoal(row('a', 1, true)), true);
    assert.equal(hasGoal(row('a', 1, false)), true);
    assert.equal(hasGoal(row('a', 1)), false);
    assert.equal(hasGoal({ ...row('a', 1), goal: '< 10 ms' }), false, 'a goal with no result is no goal row');
    assert.equal(hasGoal({ ...row('a', 1), goal: '—', met: true }), false);
  });

  it('counts each goal across passes by its figure, a pass without the row counting as missed', () => {
    const pass1 = [section('s', [row('always', 1, true), row('once', 1, true), row('never', 20, false)])];
    const pass2 = [section('s', [row('always', 2, true), row('once', 30, false), row('never', 20, false)])];
    const pass3 = [section('s', [row('always', 3, true), row('never', 20, false)])];
    const rep = repeatedSummary([pass1, pass2, pass3]);
    assert.deepEqual(rep.head, ['section', 'goal', 'figure', 'pass 1', 'pass 2', 'pass 3', 'met']);
    // Rows come from the last pass: 'once' is missing there, so it is not listed.
    assert.deepEqual(
      rep.rows.map((r) => [r[2], r.at(-1)]),
      [
        ['always', '3 of 3'],
        ['never', '0 of 3'],
      ],
    );
    assert.deepEqual(rep.met, [3, 0]);
    assert.equal(rep.rows[0]![3], '1.00 ms met');

    const rep2 = repeatedSummary([pass3, pass1]);
    const once = rep2.rows.find((r) => r[2] === 'once')!;
    assert.deepEqual(once.slice(3), ['—', '1.00 ms met', '1 of 2']);
  });

  it('writes the goals, the kept analysis, and each section with its notes', () => {
    const passes = [
      [
        section('a', [row('fast | piped', 1, true), row('slow', 20, false)]),
        section('b', [], { error: 'it broke\nsecond line' }),
      ],
      [section('a', [row('fast | piped', 2, true), row('slow', 5, true)]), section('b', [])],
    ];
    const analysis = `${ANALYSIS_START}\n## Analysis\n\nwritten by hand\n${ANALYSIS_END}`;
    const text = markdown(MACHINE, passes, analysis, new Map([['a', { waitedMs: 1500, busy: 0.05 }]]));
    assert.match(text, /^# Benchmarks\n/);
    assert.match(text, /- Command: `npm run bench`/);
    assert.match(text, /## Summary of 2 passes/);
    assert.match(text, /Of 2 goals: 1 met in every pass, 1 in some, 0 in none\./);
    // A pipe in a figure is escaped, so the table keeps its columns.
    assert.match(text, /\| a \| < 10 ms \| fast \\\| piped \| 1\.00 ms met \| 2\.00 ms met \| 2 of 2 \|/);
    assert.match(text, /Every goal was met in this run\./, 'the last pass met both');
    assert.ok(text.includes(analysis), 'the analysis is kept verbatim');
    assert.ok(text.indexOf(analysis) > text.indexOf('## Summary (pass 2)'), 'after the summaries');
    assert.ok(text.indexOf(analysis) < text.indexOf('## a — test section'), 'before the sections');
    assert.match(text, /after waiting 1\.5 s for them to fall to 10% or less/);
    assert.match(text, /- a note of a/);
    // The failed section is in the first pass only: the tables are the last pass's.
    assert.ok(!text.includes('it broke'));

    const one = markdown(MACHINE, [passes[0]!], undefined, new Map());
    assert.ok(!one.includes('Summary of'), 'one pass: no per-pass summary');
    assert.match(one, /1 goal\(s\) missed in this run\./);
    assert.match(one, /\| b \| — \| the section failed \| ERROR \|/);
    assert.match(one, /The section failed:\n\n```\nit broke\nsecond line\n```/);
    assert.ok(!one.includes(ANALYSIS_START), 'no analysis to keep: none written');
  });

  it('keeps the analysis of the file a run replaces, and only what lies between the markers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ipk-report-'));
    try {
      const file = join(dir, 'BENCHMARKS.md');
      const analysis = `${ANALYSIS_START}\n## Analysis\n\n| a | b |\n${ANALYSIS_END}`;
      writeFileSync(file, `# Benchmarks\n\nold figures 123\n\n${analysis}\n\n## old section\n`);
      assert.equal(keptAnalysis(file), analysis);
      const next = markdown(MACHINE, [[section('a', [row('new', 4, true)])]], keptAnalysis(file), new Map());
      assert.ok(next.includes(analysis));
      assert.ok(!next.includes('old figures 123') && !next.includes('## old section'));

      writeFileSync(file, `# Benchmarks\n\n${ANALYSIS_START}\nunterminated\n`);
      assert.equal(keptAnalysis(file), undefined, 'no end marker: nothing kept');
      writeFileSync(file, `${ANALYSIS_END}\n${ANALYSIS_START}\n`);
      assert.equal(keptAnalysis(file), undefined, 'markers out of order: nothing kept');
      assert.equal(keptAnalysis(join(dir, 'missing.md')), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prints a section for the console with its rows, ratios and first error line', () => {
    const anchor = row('anchor row', 10);
    const fig = compared({ ...row('figure row', 15, false), anchor: 'anchor row' }, 10);
    const out = consoleSection(section('c', [anchor, fig], { error: 'first\nsecond' }));
    assert.match(out, /== c: c: test section/);
    assert.match(out, /anchor row\s+10\.0 ms/);
    assert.match(out, /1\.50× \(lower is better\)/);
    assert.match(out, /MISSED/);
    assert.match(out, /ERROR: first$/);
  });
});
