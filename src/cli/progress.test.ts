import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryStore } from '../store/memory.ts';
import { startAgent, type Agent } from '../agent/server.ts';
import { claimName } from '../ipam/engine.ts';
import { parseAddr } from '../net/addr.ts';
import { API_VERSION, type IPClaim } from '../api/kinds.ts';
import type { CheckReport } from '../agent/ui/check.ts';
import {
  Progress,
  REDRAW_MS,
  TICK_MS,
  formatDuration,
  withProgress,
  type ProgressStream,
} from './progress.ts';

/** A stream that records writes, and a clock and timer the test moves by hand. */
function rig(opts: { isTTY?: boolean; columns?: number } = {}) {
  const writes: string[] = [];
  const stream: ProgressStream = { write: (s: string) => writes.push(s), ...opts };
  let t = 1_000;
  const timers: { fn: () => void; ms: number; stopped: boolean }[] = [];
  return {
    writes,
    stream,
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
    every: (fn: () => void, ms: number) => {
      const timer = { fn, ms, stopped: false };
      timers.push(timer);
      return () => {
        timer.stopped = true;
      };
    },
    timers,
    /** What a terminal shows: `\r` returns to the line's start, later text overwrites. */
    screen: () => {
      const lines: string[][] = [[]];
      let col = 0;
      for (const ch of writes.join('')) {
        if (ch === '\n') {
          lines.push([]);
          col = 0;
        } else if (ch === '\r') col = 0;
        else (lines.at(-1) as string[])[col++] = ch;
      }
      return lines.map((l) => l.join('').trimEnd());
    },
  };
}

describe('Progress', () => {
  it('on a terminal: N/M done, rate and eta on one rewritten line, then the summary', () => {
    const r = rig({ isTTY: true });
    const p = new Progress({ label: 'release', total: 1000, stream: r.stream, now: r.now, every: r.every });
    assert.equal(p.live, true);
    r.advance(2_000);
    p.add(250);
    assert.equal(r.writes.at(-1), '\rrelease: 250/1,000 done, 125/s, eta 6.0s');
    r.advance(4_000);
    p.add(500);
    assert.equal(p.line(), 'release: 750/1,000 done, 125/s, eta 2.0s');
    r.advance(2_000);
    p.add(250);
    p.done();
    assert.deepEqual(r.screen(), ['release: 1,000/1,000 done in 8.0s, 125/s', '']);
    assert.ok(
      r.writes.every((w) => !w.includes('\u001b')),
      'no escape codes',
    );
    assert.equal(r.timers[0]?.stopped, true, 'the redraw timer is stopped');
  });

  it('redraws a fast loop at most every REDRAW_MS, and always at completion', () => {
    const r = rig({ isTTY: true });
    const p = new Progress({ label: 'apply', total: 100, stream: r.stream, now: r.now, every: r.every });
    const before = r.writes.length;
    for (let i = 0; i < 99; i++) p.add();
    assert.equal(r.writes.length, before, 'no time passed: no redraw');
    r.advance(REDRAW_MS);
    p.add(0);
    assert.equal(r.writes.length, before + 1);
    p.add();
    assert.match(r.writes.at(-1) ?? '', /100\/100 done/);
  });

  it('a shorter line overwrites the whole previous one', () => {
    const r = rig({ isTTY: true });
    const p = new Progress({
      label: 'x',
      phase: 'waiting for the agent',
      stream: r.stream,
      now: r.now,
      every: r.every,
    });
    p.stage('done', 2);
    assert.equal(r.screen()[0], 'x: 0/2 done, 0.0/s, eta ?');
    p.stage('ok');
    assert.equal(r.screen()[0], 'x: ok, 0.0s');
  });

  it('not a terminal: no live line, only the summary', () => {
    const r = rig();
    const p = new Progress({
      label: 'check',
      phase: 'waiting for the agent',
      stream: r.stream,
      now: r.now,
      every: r.every,
    });
    assert.equal(p.live, false);
    assert.equal(r.timers.length, 0);
    r.advance(3_200);
    p.add(5);
    p.done('50,000 claim(s) checked');
    assert.deepEqual(r.writes, ['check: 50,000 claim(s) checked in 3.2s\n']);
  });

  it('--progress forces the live line on a pipe', () => {
    const r = rig();
    const p = new Progress({
      label: 'check',
      force: true,
      phase: 'waiting for the agent',
      stream: r.stream,
      now: r.now,
      every: r.every,
    });
    assert.equal(p.live, true);
    assert.equal(r.writes[0], '\rcheck: waiting for the agent, 0.0s');
    r.advance(1_500);
    r.timers[0]?.fn();
    assert.equal(r.writes.at(-1), '\rcheck: waiting for the agent, 1.5s');
    assert.equal(r.timers[0]?.ms, TICK_MS);
  });

  it('cuts the live line to the terminal width', () => {
    const r = rig({ isTTY: true, columns: 20 });
    new Progress({ label: 'release', total: 123456, stream: r.stream, now: r.now, every: r.every });
    assert.equal(r.writes[0], '\rrelease: 0/123,456 ');
  });

  it('stop clears the line and writes no summary; done and stop are idempotent', () => {
    const r = rig({ isTTY: true });
    const p = new Progress({ label: 'apply', total: 3, stream: r.stream, now: r.now, every: r.every });
    p.stop();
    p.stop();
    p.done();
    assert.deepEqual(r.screen(), ['']);
    r.timers[0]?.fn();
    assert.deepEqual(r.screen(), [''], 'no redraw after the end');
  });

  it('counts each stage from its own start', () => {
    const r = rig();
    const p = new Progress({ label: 'apply', total: 10, stream: r.stream, now: r.now, every: r.every });
    r.advance(10_000);
    p.add(10);
    p.stage('sending', 4);
    r.advance(2_000);
    p.add(4);
    p.done();
    assert.deepEqual(r.writes, ['apply: 4/4 done in 12s, 2.0/s\n']);
  });
});

describe('withProgress', () => {
  it('writes the summary on success, clears the line and rethrows on failure', async () => {
    const ok = rig({ isTTY: true });
    const v = await withProgress(
      { label: 'a', stream: ok.stream, now: ok.now, every: ok.every },
      async (p) => {
        p.stage('n', 1);
        p.add();
        return { result: 42, summary: '1 thing' };
      },
    );
    assert.equal(v, 42);
    assert.deepEqual(ok.screen(), ['a: 1 thing in 0.0s', '']);
    assert.match(ok.writes.at(-1) ?? '', /^a: 1 thing in 0\.0s\n$/);
    const bad = rig({ isTTY: true });
    await assert.rejects(
      withProgress({ label: 'b', stream: bad.stream, now: bad.now, every: bad.every }, async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.deepEqual(bad.screen(), ['']);
    assert.equal(bad.timers[0]?.stopped, true);
  });
});

describe('formatDuration', () => {
  for (const [ms, want] of [
    [0, '0.0s'],
    [400, '0.4s'],
    [9_949, '9.9s'],
    [12_000, '12s'],
    [184_000, '3m04s'],
    [3_720_000, '1h02m'],
  ] as const) {
    it(`${ms} ms is ${want}`, () => assert.equal(formatDuration(ms), want));
  }
});

it('clear removes the live line before stdout output; done still writes the summary', () => {
  const writes: string[] = [];
  let t = 0;
  const p = new Progress({
    label: 'apply',
    phase: 'waiting for the agent',
    stream: { write: (s: string) => writes.push(s), isTTY: true },
    now: () => t,
    every: () => () => {},
  });
  t = 500;
  p.clear();
  p.add();
  p.stage('more', 3);
  assert.deepEqual(
    writes,
    ['\rapply: waiting for the agent, 0.0s', `\r${' '.repeat(34)}\r`],
    'nothing drawn after clear',
  );
  p.done('3 object(s)');
  assert.equal(writes.at(-1), 'apply: 3 object(s) in 0.5s\n');
});

/**
 * The commands as a user runs them: the CLI as a process against a real agent (memory store) in
 * this process. stdout must stay exactly the answer; progress and summaries go to stderr.
 */
describe('progress in apply, check and release', () => {
  const root = new URL('../..', import.meta.url).pathname;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-progress-'));
  const socket = join(dir, 'agent.sock');
  const store = new MemoryStore();
  let agent: Agent;
  const N = 1_200;

  const cli = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((resolve) => {
      execFile(
        process.execPath,
        [join(root, 'bin/ipkeeper.ts'), ...args, '--socket', socket],
        { cwd: root },
        (err, stdout, stderr) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });

  before(async () => {
    agent = await startAgent({
      store,
      socket,
      node: 'n1',
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
    });
    // N claims of a pool that does not exist: check reports each, release frees each.
    for (let i = 0; i < N; i++) {
      const ip = `10.9.${Math.floor(i / 250)}.${(i % 250) + 1}`;
      const a = parseAddr(ip);
      const name = claimName('default', a.family, a.value);
      const claim: IPClaim = {
        apiVersion: API_VERSION,
        kind: 'IPClaim',
        metadata: { name },
        spec: {
          network: 'default',
          ip,
          family: 4,
          pool: 'gone',
          owner: { kind: 'Pod', namespace: 'ns', name: `p${i}` },
          containerId: `c${i}`,
          ifName: 'eth0',
          node: 'n1',
          createdAt: new Date().toISOString(),
        },
      };
      assert.ok((await store.create(`ipclaims/${name}`, claim)).created);
    }
  });
  after(async () => {
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('apply -f of many files: the objects on stdout, reading progress (--progress) and the summary on stderr', async () => {
    const files = join(dir, 'pools');
    mkdirSync(files);
    for (let i = 0; i < 3; i++) {
      writeFileSync(
        join(files, `p${i}.yaml`),
        `apiVersion: ${API_VERSION}\nkind: IPPool\nmetadata:\n  name: pool-${i}\nspec:\n  subnet: 10.${20 + i}.0.0/24\n`,
      );
    }
    const r = await cli(['apply', '-f', files, '--progress']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'ippool/pool-0 created\nippool/pool-1 created\nippool/pool-2 created\n');
    assert.match(r.stderr, /\rapply: 3\/3 done, /);
    assert.match(r.stderr, /\rapply: waiting for the agent to apply 3 object\(s\), /);
    assert.match(r.stderr, /\rapply: 3 object\(s\): 3 created, 0 configured, 0 unchanged in \d/);
    // Not a terminal and no --progress: only the summary.
    const again = await cli(['apply', '-f', files]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /^apply: 3 object\(s\): 0 created, 0 configured, 3 unchanged in [\d.]+s\n$/);
  });

  it('check -o json keeps stdout parseable with --progress; release refuses a bad entry before releasing any', async () => {
    const c = await cli(['check', '-o', 'json', '--progress']);
    assert.equal(c.code, 0, c.stderr);
    const report = JSON.parse(c.stdout) as CheckReport;
    assert.equal(report.problems.length, N);
    assert.match(c.stderr, /\rcheck: waiting for the agent, /);
    assert.match(c.stderr, new RegExp(`check: ${N} claim\\(s\\) checked, ${N} with problems in `));

    const bad = structuredClone(report);
    (bad.problems[700] as { key: string }).key = 'ipclaims/';
    writeFileSync(join(dir, 'bad.json'), JSON.stringify(bad));
    const refused = await cli(['release', '--from-report', join(dir, 'bad.json')]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /bad\.json: problems\[700\]\.key/);
    assert.equal((await store.list('ipclaims/')).length, N, 'nothing released');

    writeFileSync(join(dir, 'report.json'), c.stdout);
    const r = await cli(['release', '--from-report', join(dir, 'report.json'), '--progress']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`\\nreleased ${N}, skipped 0 \\(changed since the report\\), 0 already released\\n$`),
    );
    // Which intermediate counts are drawn depends on timing (REDRAW_MS); the first and last are sure.
    assert.match(r.stderr, /^\rrelease: 0\/1,200 done, 0\.0\/s, eta \?/);
    assert.match(r.stderr, /\rrelease: 1,200\/1,200 done, /);
    assert.match(r.stderr, /\rrelease: 1,200\/1,200 done in [\d.]+s/);
    assert.equal((await store.list('ipclaims/')).length, 0);
  });
});
