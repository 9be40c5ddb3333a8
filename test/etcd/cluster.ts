/**
 * @module test/etcd/cluster
 * Real etcd clusters for tests: `startEtcdCluster(1 | 3)` starts `/usr/bin/etcd` members on
 * 127.0.0.1 with free ports and a temp data dir each, waits until every member answers a
 * linearizable read, and hands back a handle to stop (by PID, with SIGTERM or SIGKILL) and restart
 * members with their data.
 *
 * Members keep real durability (no `--unsafe-no-fsync`): a test that kills every member with SIGKILL
 * and starts them again checks that acknowledged writes were on disk. Elections are tuned for
 * loopback (50 ms heartbeat, 500 ms election timeout) so a leader kill costs about a second.
 *
 * Nothing outlives the test process on purpose: members are killed on `exit`, SIGINT and SIGTERM.
 * A test process that was itself killed with SIGKILL cannot clean up, so each cluster directory
 * records its owner's PID and its members' PIDs, and the next `startEtcdCluster` kills the members
 * of a dead owner (after checking, by their command line, that the PID is still that member) and
 * removes the directory.
 *
 * The harness talks to etcd only through its JSON gateway (`/v3/...` on the client port), so it does
 * not depend on the store code it is used to test. With `tls`, members serve clients over HTTPS and
 * ask them for a certificate signed by the given CA (`--client-cert-auth`); the harness presents
 * the same certificate.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TlsMaterial } from '../../src/controller/certs.ts';
import { ensurePackages } from '../../scripts/lib/system.ts';
import { freePorts } from '../lib/ports.ts';

export const ETCD_BIN = '/usr/bin/etcd';

/** Loopback election tuning: fast failover without spurious elections on a busy 2-CPU machine. */
const HEARTBEAT_MS = 50;
const ELECTION_TIMEOUT_MS = 500;
/** How long a fresh cluster (or `waitHealthy`) may take before we give up and show the logs. */
const STARTUP_TIMEOUT_MS = 20_000;
/** How long a member may take to exit after a signal before it is killed with SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 50;
const DIR_PREFIX = 'ipkeeper-etcd-';

export interface EtcdMember {
  name: string;
  /** `http://127.0.0.1:<port>` (`https://` with `tls`) */
  clientUrl: string;
  /** The etcd process while it runs; undefined once stopped. */
  pid: number | undefined;
  running: boolean;
}

export interface EtcdCluster {
  /** Live view: `pid` and `running` change as members are stopped and started. */
  members: EtcdMember[];
  /** The members' client URLs (`http://127.0.0.1:<port>`), for an etcd client's host list. */
  endpoints: string[];
  /** `etcd://127.0.0.1:<port>,127.0.0.1:<port>,...`, for `openEtcdStore`. */
  url: string;
  /** Sends `signal` (default SIGTERM) to member `i` and waits until the process has exited. */
  stop(i: number, signal?: 'SIGKILL' | 'SIGTERM'): Promise<void>;
  /**
   * Restarts stopped member `i` with its data dir and ports, and waits until it accepts connections
   * on its client port. It serves requests only once a quorum is up: use `waitHealthy` for that.
   */
  start(i: number): Promise<void>;
  /** Waits until every running member answers a linearizable read. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /**
   * Replaces the members' TLS files (CA, certificate, key) with `tls`; a member uses them from its
   * next start (`stop` + `start`), and the harness's own health checks use them from now on.
   */
  setTls(tls: TlsMaterial): void;
  /** Index of the current leader among `members`; waits (up to 10 s) while there is none. */
  leaderIndex(): Promise<number>;
  /** Kills every member and removes the data dirs. Safe to call twice. */
  stopAll(): Promise<void>;
}

interface MemberState {
  member: EtcdMember;
  args: string[];
  logPath: string;
  clientPort: number;
  child: ChildProcess | undefined;
  exited: Promise<void> | undefined;
}

/** Every live cluster of this process, for the exit handler. */
const live = new Set<ClusterImpl>();
let exitHooked = false;

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const c of live) c.killSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const c of live) c.killSync();
      // Re-raise so the process still dies of the signal (the handler was registered with once).
      process.kill(process.pid, sig);
    });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `pid` is still an etcd started for `dir` (guards against a reused PID). */
function isOurEtcd(pid: number, dir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir);
  } catch {
    return false;
  }
}

/** Kills the members of clusters whose owning test process died without cleaning up. */
function sweepStale(): void {
  let names: string[];
  try {
    names = readdirSync(tmpdir()).filter((n) => n.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(tmpdir(), name);
    let owner: { ownerPid: number; pids: number[] };
    try {
      owner = JSON.parse(readFileSync(join(dir, 'owner.json'), 'utf8')) as typeof owner;
    } catch {
      continue; // still being set up by its owner, or not ours: leave it alone
    }
    if (owner.ownerPid === process.pid || alive(owner.ownerPid)) continue;
    for (const pid of owner.pids) if (isOurEtcd(pid, dir)) process.kill(pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

function tail(path: string, lines = 25): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** POSTs to etcd's JSON gateway; undefined when the member does not answer (yet). */
async function gateway(clientUrl: string, path: string, body: unknown, tls?: TlsMaterial): Promise<unknown> {
  if (tls) return gatewayTls(clientUrl, path, body, tls);
  try {
    const res = await fetch(`${clientUrl}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(1000),
    });
    if (!res.ok) return undefined;
    return (await res.json()) as unknown;
  } catch {
    return undefined;
  }
}

/** `gateway` over HTTPS with a client certificate (fetch cannot present one). */
function gatewayTls(clientUrl: string, path: string, body: unknown, tls: TlsMaterial): Promise<unknown> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      `${clientUrl}${path}`,
      { method: 'POST', ca: tls.ca, cert: tls.cert, key: tls.key, timeout: 1000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          if (res.statusCode !== 200) return resolve(undefined);
          try {
            resolve(JSON.parse(text) as unknown);
          } catch {
            resolve(undefined);
          }
        });
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end(JSON.stringify(body));
  });
}

function tcpReachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port });
    sock.setTimeout(500);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
    sock.once('timeout', () => {
      sock.destroy();
      resolve(false);
    });
  });
}

class PortInUse extends Error {}

class ClusterImpl implements EtcdCluster {
  readonly members: EtcdMember[];
  readonly endpoints: string[];
  readonly url: string;
  private readonly states: MemberState[];
  private readonly dir: string;
  private tls: TlsMaterial | undefined;
  private stopped = false;

  constructor(dir: string, states: MemberState[], tls?: TlsMaterial) {
    this.dir = dir;
    this.tls = tls;
    this.states = states;
    this.members = states.map((s) => s.member);
    this.endpoints = this.members.map((m) => m.clientUrl);
    this.url = `etcd://${states.map((s) => `127.0.0.1:${s.clientPort}`).join(',')}`;
  }

  setTls(tls: TlsMaterial): void {
    if (!this.tls) throw new Error('setTls: this cluster was started without TLS');
    writeTlsFiles(this.dir, tls);
    this.tls = tls;
  }

  private state(i: number): MemberState {
    const s = this.states[i];
    if (!s) throw new Error(`etcd cluster has no member ${i} (it has ${this.states.length})`);
    return s;
  }

  private writeOwner(): void {
    const pids = this.states.flatMap((s) => (s.member.pid === undefined ? [] : [s.member.pid]));
    writeFileSync(join(this.dir, 'owner.json'), JSON.stringify({ ownerPid: process.pid, pids }));
  }

  /** Spawns member `i`; the returned promise settles when the process exits. */
  spawnMember(i: number): void {
    const s = this.state(i);
    const fd = openSync(s.logPath, 'a');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
    const child = spawn(ETCD_BIN, s.args, { stdio: ['ignore', fd, fd], env });
    closeSync(fd);
    // The harness never keeps the test process alive: members die with it (see hookExit).
    child.unref();
    s.child = child;
    s.member.pid = child.pid;
    s.member.running = child.pid !== undefined;
    s.exited = new Promise<void>((resolve) => {
      const done = (): void => {
        if (s.child === child) {
          s.child = undefined;
          s.member.pid = undefined;
          s.member.running = false;
        }
        resolve();
      };
      child.once('exit', done);
      child.once('error', done);
    });
    this.writeOwner();
  }

  async stop(i: number, signal: 'SIGKILL' | 'SIGTERM' = 'SIGTERM'): Promise<void> {
    const s = this.state(i);
    const child = s.child;
    if (!child || child.pid === undefined) return;
    child.kill(signal);
    const exited = s.exited ?? Promise.resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
    this.writeOwner();
  }

  async start(i: number): Promise<void> {
    const s = this.state(i);
    if (this.stopped) throw new Error('etcd cluster was stopped with stopAll()');
    if (s.child) throw new Error(`etcd member ${s.member.name} is already running (pid ${s.member.pid})`);
    this.spawnMember(i);
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    while (!(await tcpReachable(s.clientPort))) {
      if (!s.child) {
        throw new Error(`etcd member ${s.member.name} exited on restart; log:\n${tail(s.logPath)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`etcd member ${s.member.name} does not listen on ${s.member.clientUrl}`);
      }
      await sleep(POLL_MS);
    }
  }

  async waitHealthy(timeoutMs = STARTUP_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const key = Buffer.from('ipkeeper-harness-health').toString('base64');
    for (const s of this.states) {
      if (!s.child) continue;
      for (;;) {
        const r = (await gateway(s.member.clientUrl, '/v3/kv/range', { key }, this.tls)) as {
          header?: unknown;
        } | null;
        if (r?.header) break;
        const log = tail(s.logPath);
        if (!s.child) {
          if (/address already in use/.test(log)) throw new PortInUse(log);
          throw new Error(`etcd member ${s.member.name} exited; log:\n${log}`);
        }
        if (Date.now() > deadline) {
          throw new Error(
            `etcd member ${s.member.name} (${s.member.clientUrl}) not healthy after ${timeoutMs} ms; log:\n${log}`,
          );
        }
        await sleep(POLL_MS);
      }
    }
  }

  async leaderIndex(): Promise<number> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const statuses = await Promise.all(
        this.states.map(async (s) =>
          s.child
            ? ((await gateway(s.member.clientUrl, '/v3/maintenance/status', {}, this.tls)) as {
                header?: { member_id?: string };
                leader?: string;
              } | null)
            : undefined,
        ),
      );
      const leaderIds = new Set(statuses.map((st) => st?.leader).filter((l) => l && l !== '0'));
      if (leaderIds.size === 1) {
        const [leader] = [...leaderIds];
        const i = statuses.findIndex((st) => st?.header?.member_id === leader);
        if (i >= 0) return i;
      }
      if (Date.now() > deadline) {
        throw new Error(`etcd cluster has no single leader after 10 s: ${JSON.stringify(statuses)}`);
      }
      await sleep(POLL_MS);
    }
  }

  /** Synchronous last-resort cleanup for the exit handler. */
  killSync(): void {
    for (const s of this.states) {
      if (s.child?.pid !== undefined) {
        try {
          process.kill(s.child.pid, 'SIGKILL');
        } catch {
          // already gone: nothing to clean up
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }

  async stopAll(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all(this.states.map((_, i) => this.stop(i, 'SIGKILL')));
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

/** The members' TLS files, which their --cert-file, --key-file and --trusted-ca-file name. */
function writeTlsFiles(dir: string, tls: TlsMaterial): void {
  for (const [file, pem] of [
    ['ca.crt', tls.ca],
    ['tls.crt', tls.cert],
    ['tls.key', tls.key],
  ] as const) {
    writeFileSync(join(dir, file), pem, { mode: 0o600 });
  }
}

async function tryStart(
  size: number,
  extraArgs: readonly string[],
  tls: TlsMaterial | undefined,
): Promise<ClusterImpl> {
  const ports = await freePorts(2 * size);
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  writeFileSync(join(dir, 'owner.json'), JSON.stringify({ ownerPid: process.pid, pids: [] }));
  const tlsArgs: string[] = [];
  if (tls) {
    writeTlsFiles(dir, tls);
    tlsArgs.push(
      `--cert-file=${join(dir, 'tls.crt')}`,
      `--key-file=${join(dir, 'tls.key')}`,
      `--trusted-ca-file=${join(dir, 'ca.crt')}`,
      '--client-cert-auth',
    );
  }
  const names = Array.from({ length: size }, (_, i) => `m${i}`);
  const peer = (i: number): string => `http://127.0.0.1:${ports[2 * i + 1]}`;
  const initialCluster = names.map((n, i) => `${n}=${peer(i)}`).join(',');
  const token = `ipkeeper-${process.pid}-${Date.now().toString(36)}`;
  const states: MemberState[] = names.map((name, i) => {
    const clientPort = ports[2 * i]!;
    const clientUrl = `${tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
    return {
      member: { name, clientUrl, pid: undefined, running: false },
      clientPort,
      logPath: join(dir, `${name}.log`),
      child: undefined,
      exited: undefined,
      args: [
        `--name=${name}`,
        `--data-dir=${join(dir, `${name}.data`)}`,
        `--listen-client-urls=${clientUrl}`,
        `--advertise-client-urls=${clientUrl}`,
        `--listen-peer-urls=${peer(i)}`,
        `--initial-advertise-peer-urls=${peer(i)}`,
        `--initial-cluster=${initialCluster}`,
        `--initial-cluster-token=${token}`,
        '--initial-cluster-state=new',
        `--heartbeat-interval=${HEARTBEAT_MS}`,
        `--election-timeout=${ELECTION_TIMEOUT_MS}`,
        '--logger=zap',
        '--log-outputs=stderr',
        '--log-level=warn',
        ...tlsArgs,
        ...extraArgs,
      ],
    };
  });
  const cluster = new ClusterImpl(dir, states, tls);
  live.add(cluster);
  try {
    for (let i = 0; i < size; i++) cluster.spawnMember(i);
    await cluster.waitHealthy();
    return cluster;
  } catch (e) {
    await cluster.stopAll();
    throw e;
  }
}

/**
 * Starts a fresh etcd cluster of `size` members on 127.0.0.1 and waits until it is healthy.
 * Installs etcd-server first when `/usr/bin/etcd` is missing.
 * @throws Error with the member's log tail when a member exits or does not become healthy.
 */
export async function startEtcdCluster(
  size: 1 | 3,
  opts: {
    /** More etcd flags for every member, e.g. `--experimental-watch-progress-notify-interval=200ms`. */
    args?: readonly string[];
    /**
     * Serve clients over HTTPS with this certificate (made with clientAuth: the harness presents it
     * too), asking them for one signed by `ca`.
     */
    tls?: TlsMaterial;
  } = {},
): Promise<EtcdCluster> {
  if (!existsSync(ETCD_BIN)) ensurePackages(['etcd-server']);
  hookExit();
  sweepStale();
  // A port found free can be taken by someone else before etcd binds it (parallel test files):
  // start again on new ports in that case.
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryStart(size, opts.args ?? [], opts.tls);
    } catch (e) {
      if (!(e instanceof PortInUse) || attempt >= 3) throw e;
    }
  }
}
