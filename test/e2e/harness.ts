/**
 * @module test/e2e/harness
 * Real processes for end-to-end tests: the agent (`ipkeeper agent`), the CLI, the installed CNI
 * plugin executable, Debian's bridge/macvlan plugins, and network namespaces made with iproute2.
 * Everything started here is stopped by its PID; namespaces and links are removed by `cleanup`.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from '../../src/cli/client.ts';

export const ROOT = new URL('../..', import.meta.url).pathname;
export const NODE = process.execPath;
export const CLI = join(ROOT, 'bin/ipkeeper.ts');
export const SYSTEM_CNI = '/usr/lib/cni';

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** A temp dir removed at exit. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `ipk-${prefix}-`));
  process.once('exit', () => rmSync(d, { recursive: true, force: true }));
  return d;
}

export interface AgentProcess {
  pid: number;
  socket: string;
  child: ChildProcess;
  /** Everything the agent wrote to stderr so far. */
  log(): string;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** Starts `ipkeeper agent` and waits until /readyz answers. */
export async function startAgent(opts: {
  store: string;
  socket: string;
  node?: string;
  extra?: string[];
  /** The CLI to run (default: bin/ipkeeper.ts; e.g. the bundled dist/agent/ipkeeper.mjs). */
  cli?: string;
  cwd?: string;
  /** Variables added to the agent's environment. */
  env?: NodeJS.ProcessEnv;
}): Promise<AgentProcess> {
  const args = [
    opts.cli ?? CLI,
    'agent',
    '--store',
    opts.store,
    '--socket',
    opts.socket,
    '--node',
    opts.node ?? 'node1',
    ...(opts.extra ?? []),
  ];
  const child = spawn(NODE, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}),
  });
  running.add(child);
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      running.delete(child);
      throw new Error(`agent exited with ${child.exitCode ?? child.signalCode}: ${log}`);
    }
    try {
      await call(opts.socket, 'GET', '/readyz');
      break;
    } catch {
      if (Date.now() > deadline) {
        // Never leave an agent behind that nobody tracks: it would hold the test process open.
        child.kill('SIGKILL');
        await exited;
        running.delete(child);
        throw new Error(`agent not ready after 20 s: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    pid: child.pid as number,
    socket: opts.socket,
    child,
    log: () => log,
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
      running.delete(child);
    },
  };
}

/**
 * Runs `ipkeeper agent ARGS` until it exits, for tests of an agent that must not start; kills it
 * (and says so in `code`) if it is still running after `ms`.
 */
export function runAgentToExit(
  args: string[],
  ms: number,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | string; stderr: string }> {
  const child = spawn(NODE, [CLI, 'agent', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? `killed (${signal}): still running after ${ms} ms`, stderr });
    });
  });
}

/** Runs the CLI to completion. */
export function cli(args: string[], input?: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [CLI, ...args], { input, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The same, without blocking: for tests whose agent runs in the test's own process (spawnSync would
 * stop the event loop the agent answers on).
 */
export function cliAsync(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(NODE, [CLI, ...args], { cwd: ROOT }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export interface CniCall {
  command: 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  config: unknown;
  /** Sent on stdin instead of JSON.stringify(config) (for malformed input). */
  rawStdin?: string;
  cniPath?: string;
}

export interface CniOutcome {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

function cniEnv(c: CniCall, cniPath: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, CNI_COMMAND: c.command, CNI_PATH: cniPath };
  if (c.containerId !== undefined) env.CNI_CONTAINERID = c.containerId;
  if (c.netns !== undefined) env.CNI_NETNS = c.netns;
  if (c.ifName !== undefined) env.CNI_IFNAME = c.ifName;
  if (c.args !== undefined) env.CNI_ARGS = c.args;
  return env;
}

function outcome(code: number | null, stdout: string, stderr: string): CniOutcome {
  let json: any;
  try {
    json = stdout.trim() === '' ? undefined : JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code: code ?? -1, stdout, stderr, json };
}

/** Runs a CNI plugin executable (synchronously). */
export function runPlugin(path: string, c: CniCall): CniOutcome {
  const r = spawnSync(path, [], {
    input: c.rawStdin ?? JSON.stringify(c.config),
    env: cniEnv(c, c.cniPath ?? ''),
    encoding: 'utf8',
    timeout: 60_000,
  });
  return outcome(r.status, r.stdout, r.stderr);
}

/** Runs a CNI plugin executable without blocking the event loop (for concurrent calls). */
export function runPluginAsync(path: string, c: CniCall): Promise<CniOutcome> {
  return new Promise((resolve) => {
    const child = spawn(path, [], { env: cniEnv(c, c.cniPath ?? ''), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('close', (code) => resolve(outcome(code, out, err)));
    child.stdin.on('error', () => {});
    child.stdin.end(c.rawStdin ?? JSON.stringify(c.config));
  });
}

export function sh(cmd: string, args: string[], opts: { allowFail?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  }
  return r.stdout;
}

/**
 * Network namespaces and links for one test file, all named with a short unique tag so parallel
 * files never collide; `cleanup` removes every one.
 */
export class Lab {
  readonly tag: string;
  private readonly netns: string[] = [];
  private readonly links: string[] = [];

  constructor() {
    this.tag = `${process.pid % 100000}`.padStart(5, '0');
  }

  addNetns(name: string): string {
    const full = `ipk-${this.tag}-${name}`;
    sh('ip', ['netns', 'add', full]);
    this.netns.push(full);
    sh('ip', ['-n', full, 'link', 'set', 'lo', 'up']);
    return `/var/run/netns/${full}`;
  }

  /** A link name of at most 15 characters. */
  linkName(base: string): string {
    const n = `${base}${this.tag}`.slice(0, 15);
    this.links.push(n);
    return n;
  }

  /** A veth pair in the root namespace, both ends up (a master for macvlan). */
  addVeth(a: string, b: string): void {
    sh('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
    sh('ip', ['link', 'set', a, 'up']);
    sh('ip', ['link', 'set', b, 'up']);
  }

  exec(netnsPath: string, cmd: string[]): { code: number; stdout: string; stderr: string } {
    const name = netnsPath.split('/').pop() as string;
    const r = spawnSync('ip', ['netns', 'exec', name, ...cmd], { encoding: 'utf8', timeout: 20_000 });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  cleanup(): void {
    for (const n of this.netns.splice(0)) sh('ip', ['netns', 'del', n], { allowFail: true });
    for (const l of this.links.splice(0)) sh('ip', ['link', 'del', l], { allowFail: true });
  }
}

/** Writes YAML/JSON text to a temp file and returns its path. */
export function writeTemp(dir: string, name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

export function have(path: string): boolean {
  return existsSync(path);
}
