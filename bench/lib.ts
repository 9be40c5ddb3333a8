/**
 * @module bench/lib
 * What every benchmark section shares: the result shape (a figure measured together with its anchor
 * in the same run), statistics, clocks, the child-process environment, and the ipkeeper agent as a
 * process.
 *
 * Benchmarks are not tests: nothing here asserts on timing. A goal is printed as met or missed, never
 * turned into an exit code.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { call } from '../src/cli/client.ts';
import { AGENT_BUNDLE, AGENT_NODE_FLAGS } from '../scripts/build.ts';
import { socketGet } from '../test/lib/socket-get.ts';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const NODE = process.execPath;
export const CLI = join(ROOT, 'bin/ipkeeper.ts');

/** One measured figure. `ratio` compares `median` with the anchor's median (figure / anchor). */
export interface Row {
  figure: string;
  unit: string;
  /** Which way is better, so the table can say how to read the ratio. */
  better: 'higher' | 'lower';
  median: number | undefined;
  /** Only for latencies. */
  p99?: number;
  /** How many samples the median is over (rounds, runs or requests). */
  samples?: number;
  /** The figure this one is compared with, measured in the same run (absent on the anchor itself). */
  anchor?: string;
  ratio?: number;
  goal?: string;
  /** Whether the goal holds for this run (informative only). */
  met?: boolean;
  /** Why there is no figure (skipped, failed). */
  skipped?: string;
  /** What else was measured for this figure (spread, counts, the CPU behind it). */
  detail?: string;
}

export interface SectionResult {
  name: string;
  title: string;
  rows: Row[];
  notes: string[];
  seconds: number;
  load: { start: number[]; end: number[] };
  error?: string;
}

export interface SectionOptions {
  quick: boolean;
  log: (line: string) => void;
}

/** The value at quantile `q` (nearest rank) of an unsorted sample. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i] as number;
}

export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
export const p99 = (xs: readonly number[]): number => quantile(xs, 0.99);

/** Milliseconds since an arbitrary origin, sub-microsecond resolution. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** This process's CPU time (user + system) in milliseconds. */
export function cpuMs(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

/**
 * CPU time (user + system, ms) of this process's waited-for children, from /proc/self/stat fields 16
 * and 17 (cutime, cstime, in clock ticks of 10 ms). Coarse per child, exact enough summed over many.
 */
export function childrenCpuMs(): number {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // The command name (field 2) may hold spaces: split after its closing parenthesis.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3; cutime is field 16, cstime field 17.
    return (Number(f[13]) + Number(f[14])) * 10;
  } catch {
    return NaN;
  }
}

/** The most resident memory (MB) a live process has had so far, from /proc/<pid>/status; NaN if gone. */
export function procPeakRssMb(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** CPU time (user + system, ms) a live process has used so far, from /proc/<pid>/stat; NaN if gone. */
export function procCpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime is field 14, stime field 15 (f[0] is field 3).
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Sums `procCpuMs` over several processes. */
export function cpuOf(pids: (number | undefined)[]): number {
  return pids.reduce<number>((a, p) => a + procCpuMs(p), 0);
}

/** A row comparing `value` with `anchor`; ratio = value / anchor. */
export function compared(
  row: Omit<Row, 'ratio'> & { anchor: string },
  anchorMedian: number | undefined,
): Row {
  const ratio =
    row.median !== undefined && anchorMedian !== undefined && anchorMedian !== 0
      ? row.median / anchorMedian
      : undefined;
  return { ...row, ...(ratio !== undefined ? { ratio } : {}) };
}

/**
 * The agent's Prometheus samples on its socket's /metrics, by series (`name{labels}` as printed):
 * e.g. `ipkeeper_store_watch_restarts_total{reason="closed"}` -> 3.
 * @throws Error on a connection failure or a status other than 200.
 */
export async function agentMetrics(socket: string): Promise<Map<string, number>> {
  const r = await socketGet(socket, '/metrics');
  if (r.status !== 200) throw new Error(`GET /metrics on ${socket}: HTTP ${r.status}`);
  const out = new Map<string, number>();
  for (const line of r.text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The environment for processes we time: ours minus what would change their start-up. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  // Loading extra CA certificates costs every Node process start; a node does not have them.
  delete env.NODE_EXTRA_CA_CERTS;
  delete env.NODE_OPTIONS;
  return env;
}

/** A temp dir, removed by `cleanup` (and at exit). */
export function tempDir(prefix: string): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), `ipk-bench-${prefix}-`));
  const cleanup = (): void => rmSync(path, { recursive: true, force: true });
  process.once('exit', cleanup);
  return { path, cleanup };
}

export function loadNow(): number[] {
  return loadavg().map((x) => Math.round(x * 100) / 100);
}

/** xorshift32: reproducible pseudo-random numbers in [0, 1). */
export function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

// ---- the agent as a process ---------------------------------------------------------------------

export interface AgentProc {
  pid: number;
  socket: string;
  child: ChildProcess;
  /** Milliseconds from spawn until /readyz answered. */
  readyMs: number;
  /** CPU milliseconds (user + system) the agent had used when /readyz answered. */
  readyCpuMs: number;
  /** The agent's peak resident memory (MB) when /readyz answered. */
  readyPeakRssMb: number;
  log(): string;
  stop(): Promise<void>;
}

const agents = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of agents) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
});

/**
 * Starts `ipkeeper agent` and waits until `/readyz` on its socket answers, polling every `pollMs`.
 * @throws Error with the agent's log when it exits or is not ready within `timeoutMs`.
 */
export async function startAgent(opts: {
  store: string;
  /** The CLI to run (default bin/ipkeeper.ts, the TypeScript sources; or the bundle). */
  cli?: string;
  socket: string;
  node: string;
  extra?: string[];
  /** More environment variables for the agent. */
  env?: NodeJS.ProcessEnv;
  pollMs?: number;
  timeoutMs?: number;
}): Promise<AgentProc> {
  // BENCH_AGENT_NODE_ARGS: extra Node flags for the agents, to look inside a run (e.g.
  // `--cpu-prof --cpu-prof-dir=/tmp/prof`); unset when timing.
  // The bundle runs with the flags the image gives it (scripts/build.ts AGENT_NODE_FLAGS).
  const nodeArgs = [
    ...(opts.cli === AGENT_BUNDLE ? AGENT_NODE_FLAGS : []),
    ...(process.env.BENCH_AGENT_NODE_ARGS ?? '').split(' ').filter(Boolean),
  ];
  const args = [
    ...nodeArgs,
    opts.cli ?? CLI,
    'agent',
    '--store',
    opts.store,
    '--socket',
    opts.socket,
    '--node',
    opts.node,
  ];
  args.push('--log-level', 'warn', ...(opts.extra ?? []));
  const t0 = nowMs();
  const child = spawn(NODE, args, { stdio: ['ignore', 'ignore', 'pipe'], env: cleanEnv(opts.env) });
  agents.add(child);
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (log.length < 64_000) log += d.toString();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = t0 + (opts.timeoutMs ?? 120_000);
  const poll = opts.pollMs ?? 5;
  let readyMs: number;
  let readyCpuMs: number;
  let readyPeakRssMb: number;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`agent ${opts.node} exited (${child.exitCode ?? child.signalCode}): ${log}`);
    }
    try {
      await call(opts.socket, 'GET', '/readyz');
      readyMs = nowMs() - t0;
      readyCpuMs = procCpuMs(child.pid);
      readyPeakRssMb = procPeakRssMb(child.pid);
      break;
    } catch {
      if (nowMs() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`agent ${opts.node} not ready after ${opts.timeoutMs ?? 120_000} ms: ${log}`);
      }
      await sleep(poll);
    }
  }
  return {
    pid: child.pid as number,
    socket: opts.socket,
    child,
    readyMs,
    readyCpuMs,
    readyPeakRssMb,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid as number, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null)
          process.kill(child.pid as number, 'SIGKILL');
      }, 10_000);
      await exited;
      clearTimeout(timer);
      agents.delete(child);
    },
  };
}

// ---- formatting ---------------------------------------------------------------------------------

/** A number with about three significant digits and thousands separators. */
export function fmt(x: number | undefined): string {
  if (x === undefined || Number.isNaN(x)) return '—';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a === 0) return '0';
  return x.toPrecision(3);
}

export function fmtRatio(r: number | undefined): string {
  if (r === undefined || Number.isNaN(r)) return '—';
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}
