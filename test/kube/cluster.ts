/**
 * @module test/kube/cluster
 * A real Kubernetes control plane for the Kubernetes-mode tests: etcd, kube-apiserver v1.20.2 and,
 * on request, kube-controller-manager and kube-scheduler, all on 127.0.0.1 ports picked at
 * random, in a temp dir, stopped by PID. The binaries come from scripts/kube/build.sh (built once
 * from Debian's source package, cached outside the repo). There is no kubelet: tests create Node
 * objects and play the kubelet themselves.
 *
 * With IPKEEPER_TEST_KUBECONFIG set, tests run against that cluster instead and nothing is started.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { freePorts } from '../lib/ports.ts';

export interface TestCluster {
  kubeconfigPath: string;
  /** `https://127.0.0.1:PORT` */
  server: string;
  /** Bearer token of a `system:masters` user. */
  token: string;
  /** PEM file the server's certificate verifies against. */
  caFile: string;
  /** PIDs of the processes this cluster started (empty when external), so tests can see them go. */
  pids: readonly number[];
  /** Stops every process (SIGTERM, then SIGKILL) and removes the temp dirs. Idempotent. */
  stop(): Promise<void>;
  /** True when the cluster came from IPKEEPER_TEST_KUBECONFIG and is not ours to stop. */
  external: boolean;
}

export interface StartOptions {
  /** Also run kube-controller-manager (Deployments make pods, GC, namespace deletion...). */
  controllerManager?: boolean;
  /** Also run kube-scheduler (pods get bound to the Node objects the tests create). */
  scheduler?: boolean;
  /**
   * Authorize by RBAC (`--authorization-mode=RBAC`) instead of allowing everything, for tests that
   * run a component as its service account with the chart's roles (test/kube/identities.ts). The
   * admin token stays in system:masters. An external cluster authorizes as it is set up.
   */
  rbac?: boolean;
}

const BUILD_SCRIPT = new URL('../../scripts/kube/build.sh', import.meta.url).pathname;
const ETCD_BIN = '/usr/bin/etcd';
/** A fresh apiserver is ready in ~4 s; this is only the bound before we give up and show the log. */
const READY_TIMEOUT_MS = 120_000;
const POLL_INTERVAL_MS = 100;
const STOP_GRACE_MS = 10_000;
const LOG_TAIL_LINES = 40;
/** Temp dirs are `<tmp>/ipkeeper-kube-<pid>-*` and `/dev/shm/ipkeeper-kube-<pid>-etcd-*`. */
const DIR_PREFIX = 'ipkeeper-kube-';
const SHM = '/dev/shm';

/** Extra TLS material for external clusters that authenticate by client certificate. */
const clientTls = new WeakMap<TestCluster, { cert?: Buffer; key?: Buffer }>();

/**
 * Starts a control plane (or wraps IPKEEPER_TEST_KUBECONFIG). Runs scripts/kube/build.sh first when
 * the binaries are not cached yet (minutes, once per machine; its progress goes to stderr).
 * @throws Error when the build fails, a component exits or is not healthy in time (the message
 *   carries the tail of its log), or the external kubeconfig has no usable server/credentials.
 */
export async function startTestCluster(opts: StartOptions = {}): Promise<TestCluster> {
  const external = process.env.IPKEEPER_TEST_KUBECONFIG;
  if (external) return externalCluster(external);

  const binDir = await ensureBinaries();
  sweepStaleDirs();
  const dir = mkdtempSync(join(tmpdir(), `${DIR_PREFIX}${process.pid}-`));
  // etcd fsyncs every write; on tmpfs that costs nothing, and the data is thrown away anyway.
  const etcdDir = existsSync(SHM)
    ? mkdtempSync(join(SHM, `${DIR_PREFIX}${process.pid}-etcd-`))
    : join(dir, 'etcd');
  liveDirs.add(dir).add(etcdDir);
  const procs: Proc[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Clients of the apiserver first, then the apiserver, etcd last, so nobody logs a dead backend.
    const byStage = [
      procs.filter((p) => p.name === 'kube-controller-manager' || p.name === 'kube-scheduler'),
      procs.filter((p) => p.name === 'kube-apiserver'),
      procs.filter((p) => p.name === 'etcd'),
    ];
    for (const stage of byStage) await Promise.all(stage.map(stopProc));
    for (const d of [dir, etcdDir]) {
      rmSync(d, { recursive: true, force: true });
      liveDirs.delete(d);
    }
  };

  try {
    const [etcdClient, etcdPeer, apiPort, cmPort, schedPort] = await freePorts(5);
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    procs.push(
      startProc('etcd', ETCD_BIN, dir, [
        '--name=test',
        `--data-dir=${etcdDir}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=test=http://127.0.0.1:${etcdPeer}`,
        '--initial-cluster-state=new',
        '--logger=zap',
        '--log-level=warn',
      ]),
    );
    await waitFor(procs[0]!, async () => (await httpGet(`${etcdUrl}/health`)).status === 200);

    const saKey = join(dir, 'sa.key');
    const saPub = join(dir, 'sa.pub');
    openssl(['genrsa', '-out', saKey, '2048']);
    openssl(['rsa', '-in', saKey, '-pubout', '-out', saPub]);
    const token = randomBytes(24).toString('hex');
    writeFileSync(join(dir, 'tokens.csv'), `${token},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });
    const certDir = join(dir, 'certs');
    const caFile = join(certDir, 'apiserver.crt');
    const server = `https://127.0.0.1:${apiPort}`;

    const apiserver = startProc('kube-apiserver', join(binDir, 'kube-apiserver'), dir, [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      '--insecure-port=0',
      `--cert-dir=${certDir}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${saPub}`,
      `--service-account-signing-key-file=${saKey}`,
      '--api-audiences=https://kubernetes.default.svc',
      `--authorization-mode=${opts.rbac ? 'RBAC' : 'AlwaysAllow'}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--anonymous-auth=false',
      '--profiling=false',
      // 127.0.0.1 may not be advertised as the `kubernetes` Service endpoint; without this the
      // reconciler logs an error every 10 s.
      '--endpoint-reconciler-type=none',
    ]);
    procs.push(apiserver);
    await waitFor(apiserver, async () => {
      if (!existsSync(caFile)) return false;
      const r = await httpsGet(`${server}/readyz`, { ca: readFileSync(caFile), token });
      return r.status === 200;
    });

    const kubeconfigPath = join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, kubeconfigYaml(server, readFileSync(caFile), token), { mode: 0o600 });

    const healthChecks: Promise<void>[] = [];
    if (opts.controllerManager) {
      const flexDir = join(dir, 'flex');
      mkdirSync(flexDir);
      const cm = startProc('kube-controller-manager', join(binDir, 'kube-controller-manager'), dir, [
        `--kubeconfig=${kubeconfigPath}`,
        `--service-account-private-key-file=${saKey}`,
        `--root-ca-file=${caFile}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${cmPort}`,
        // The old insecure port would listen on 0.0.0.0:10252 otherwise.
        '--address=127.0.0.1',
        '--port=0',
        '--leader-elect=false',
        '--controllers=*',
        '--use-service-account-credentials=false',
        // Otherwise it creates directories under /usr/libexec at start.
        `--flex-volume-plugin-dir=${flexDir}`,
        // No kubelet renews Node heartbeats: without this, test Nodes go NotReady after 40 s and
        // their pods are evicted after 5 min.
        '--node-monitor-grace-period=87600h',
      ]);
      procs.push(cm);
      healthChecks.push(waitFor(cm, () => localHealthy(cmPort!)));
    }
    if (opts.scheduler) {
      const sched = startProc('kube-scheduler', join(binDir, 'kube-scheduler'), dir, [
        `--kubeconfig=${kubeconfigPath}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${schedPort}`,
        '--address=127.0.0.1',
        '--port=0',
        '--leader-elect=false',
      ]);
      procs.push(sched);
      healthChecks.push(waitFor(sched, () => localHealthy(schedPort!)));
    }
    await Promise.all(healthChecks);

    return {
      kubeconfigPath,
      server,
      token,
      caFile,
      pids: procs.map((p) => p.child.pid!),
      stop,
      external: false,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * One request to the API server as the cluster's admin. `body` is sent as JSON (a PATCH as a JSON
 * merge patch); the answer's body is parsed as JSON when it is JSON, else returned as text.
 * @throws Error on a connection or TLS failure — HTTP error statuses are returned, not thrown.
 */
export async function kubeRequest(
  c: TestCluster,
  method: string,
  path: string,
  body?: unknown,
  // Tests read deep into arbitrary Kubernetes objects; typing every one would be noise.
): Promise<{ status: number; body: any }> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (c.token) headers.Authorization = `Bearer ${c.token}`;
  if (payload) {
    headers['Content-Type'] =
      method.toUpperCase() === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    headers['Content-Length'] = String(payload.length);
  }
  const url = new URL(path, c.server);
  const extra = clientTls.get(c) ?? {};
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        headers,
        ca: c.caFile ? readFileSync(c.caFile) : undefined,
        cert: extra.cert,
        key: extra.key,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON (e.g. /readyz's "ok"): the text is the body.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

// --- external cluster -----------------------------------------------------------------------------

interface Kubeconfig {
  'current-context'?: string;
  contexts?: { name: string; context: { cluster: string; user: string } }[];
  clusters?: {
    name: string;
    cluster: { server: string; 'certificate-authority'?: string; 'certificate-authority-data'?: string };
  }[];
  users?: {
    name: string;
    user: {
      token?: string;
      tokenFile?: string;
      'client-certificate'?: string;
      'client-certificate-data'?: string;
      'client-key'?: string;
      'client-key-data'?: string;
    };
  }[];
}

/** @throws Error when the kubeconfig cannot be read or its current context is incomplete. */
function externalCluster(kubeconfigPath: string): TestCluster {
  const kc = parseYaml(readFileSync(kubeconfigPath, 'utf8')) as Kubeconfig;
  const base = dirname(kubeconfigPath);
  const rel = (p: string): string => (isAbsolute(p) ? p : join(base, p));
  const ctxName = kc['current-context'];
  const ctx = kc.contexts?.find((c) => c.name === ctxName)?.context;
  const cluster = kc.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  const user = kc.users?.find((u) => u.name === ctx?.user)?.user ?? {};
  if (!ctx || !cluster?.server) {
    throw new Error(
      `IPKEEPER_TEST_KUBECONFIG ${kubeconfigPath}: current context \`${ctxName}\` names no cluster server`,
    );
  }
  // The interface hands out a CA *file*; inline CA data goes to a private temp file.
  let caFile = cluster['certificate-authority'] ? rel(cluster['certificate-authority']) : '';
  let tmp: string | undefined;
  if (cluster['certificate-authority-data']) {
    tmp = mkdtempSync(join(tmpdir(), 'ipkeeper-kube-ext-'));
    caFile = join(tmp, 'ca.crt');
    writeFileSync(caFile, Buffer.from(cluster['certificate-authority-data'], 'base64'));
  }
  const token = user.token ?? (user.tokenFile ? readFileSync(rel(user.tokenFile), 'utf8').trim() : '');
  const pem = (data?: string, file?: string): Buffer | undefined =>
    data ? Buffer.from(data, 'base64') : file ? readFileSync(rel(file)) : undefined;
  const cert = pem(user['client-certificate-data'], user['client-certificate']);
  const key = pem(user['client-key-data'], user['client-key']);
  if (!token && !(cert && key)) {
    throw new Error(
      `IPKEEPER_TEST_KUBECONFIG ${kubeconfigPath}: user \`${ctx.user}\` has neither a token nor a client certificate`,
    );
  }
  const c: TestCluster = {
    kubeconfigPath,
    server: cluster.server.replace(/\/+$/, ''),
    token,
    caFile,
    pids: [],
    // Not ours to stop; only our CA copy goes.
    stop: async () => {
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    },
    external: true,
  };
  if (cert && key) clientTls.set(c, { cert, key });
  return c;
}

// --- processes ----------------------------------------------------------------------------------

interface Proc {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** Set once the process has exited. */
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  exited: Promise<void>;
}

/** Everything still running, killed when this process exits however the tests end. */
const live = new Set<ChildProcess>();
/** Temp dirs of clusters not stopped yet, removed on exit too. */
const liveDirs = new Set<string>();
let exitHookInstalled = false;
/**
 * util-linux's setpriv sets PR_SET_PDEATHSIG and then execs the component (same PID), so the
 * kernel kills it even when this process dies by SIGKILL and no exit hook runs.
 */
const SETPRIV = '/usr/bin/setpriv';

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone: nothing to clean up.
      }
    }
    live.clear();
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
    liveDirs.clear();
  };
  process.on('exit', killAll);
  // 'exit' does not run on a deadly signal; kill the children, then die of the signal as before.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

/** Starts `bin` with stdout and stderr into `<dir>/<name>.log`. */
function startProc(name: string, bin: string, dir: string, args: string[]): Proc {
  installExitHook();
  const logFile = join(dir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const [cmd, argv] = existsSync(SETPRIV)
    ? [SETPRIV, ['--pdeathsig', 'KILL', '--', bin, ...args]]
    : [bin, args];
  const child = spawn(cmd, argv, { cwd: dir, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  live.add(child);
  const p: Proc = { name, child, logFile, exited: Promise.resolve() };
  p.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      p.exit = { code, signal };
      live.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      // Spawn failed (binary missing): there will be no 'exit'.
      p.exit = { code: null, signal: null };
      live.delete(child);
      writeFileSync(logFile, `spawn ${bin}: ${err.message}\n`, { flag: 'a' });
      resolve();
    });
  });
  return p;
}

async function stopProc(p: Proc): Promise<void> {
  if (p.exit) return;
  p.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    p.exited.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), STOP_GRACE_MS))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

function logTail(p: Proc): string {
  let text: string;
  try {
    text = readFileSync(p.logFile, 'utf8');
  } catch {
    return '(no log)';
  }
  return text.trimEnd().split('\n').slice(-LOG_TAIL_LINES).join('\n');
}

/**
 * Polls `check` until it says true. A check that throws (connection refused) counts as not yet.
 * @throws Error with the tail of the component's log when it exits first or the time runs out.
 */
async function waitFor(p: Proc, check: () => Promise<boolean>): Promise<void> {
  const started = Date.now();
  let lastErr = '';
  while (Date.now() - started < READY_TIMEOUT_MS) {
    if (p.exit) {
      throw new Error(
        `${p.name} exited (code ${p.exit.code}, signal ${p.exit.signal}) before it was ready; ${p.logFile}:\n${logTail(p)}`,
      );
    }
    try {
      if (await check()) return;
      lastErr = '';
    } catch (err) {
      lastErr = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  throw new Error(
    `${p.name} not ready after ${READY_TIMEOUT_MS} ms${lastErr ? ` (last error: ${lastErr})` : ''}; ${p.logFile}:\n${logTail(p)}`,
  );
}

// --- helpers -------------------------------------------------------------------------------------

/**
 * Removes the temp dirs of test processes that died without cleaning up (SIGKILL runs no exit
 * hook; their components died with them through PDEATHSIG). Left alone, each holds an etcd data
 * dir in /dev/shm, i.e. memory.
 */
function sweepStaleDirs(): void {
  const pattern = new RegExp(`^${DIR_PREFIX}(\\d+)-`);
  for (const parent of [tmpdir(), SHM]) {
    let names: string[];
    try {
      names = readdirSync(parent);
    } catch {
      continue; // No /dev/shm here: nothing of ours in it either.
    }
    for (const name of names) {
      const pid = Number(pattern.exec(name)?.[1]);
      if (pid && pid !== process.pid && !pidAlive(pid))
        rmSync(join(parent, name), { recursive: true, force: true });
    }
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, someone else's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs scripts/kube/build.sh, which prints the cached bin dir at once or builds it first.
 * @throws Error when the script fails (its stderr has already gone to ours).
 */
async function ensureBinaries(): Promise<string> {
  const child = spawn('bash', [BUILD_SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    // 'close', not 'exit': 'exit' may come before the last stdout data, leaving `out` empty.
    child.once('close', (c) => resolve(c));
  });
  const binDir = out.trim().split('\n').pop() ?? '';
  if (code !== 0 || !binDir) throw new Error(`${BUILD_SCRIPT} failed (exit ${code}); its output is above`);
  return binDir;
}

function openssl(args: string[]): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (exit ${r.status}): ${r.stderr}`);
}

/** A kubeconfig for `server` (verified against `ca`; empty: the system's roots) as the holder of `token`. */
export function kubeconfigYaml(server: string, ca: Buffer, token: string): string {
  return stringifyYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'ipkeeper-test',
        cluster: {
          server,
          ...(ca.length > 0 ? { 'certificate-authority-data': ca.toString('base64') } : {}),
        },
      },
    ],
    users: [{ name: 'admin', user: { token } }],
    contexts: [{ name: 'ipkeeper-test', context: { cluster: 'ipkeeper-test', user: 'admin' } }],
    'current-context': 'ipkeeper-test',
  });
}

interface Answer {
  status: number;
  text: string;
}

function collect(res: http.IncomingMessage, resolve: (a: Answer) => void, reject: (e: Error) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (d: Buffer) => chunks.push(d));
  res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
  res.on('error', reject);
}

function httpGet(url: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => collect(res, resolve, reject)).on('error', reject);
  });
}

function httpsGet(
  url: string,
  o: { ca?: Buffer; token?: string; rejectUnauthorized?: boolean },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    https
      .get(
        url,
        {
          ca: o.ca,
          rejectUnauthorized: o.rejectUnauthorized ?? true,
          headers: o.token ? { Authorization: `Bearer ${o.token}` } : {},
        },
        (res) => collect(res, resolve, reject),
      )
      .on('error', reject);
  });
}

/**
 * Whether controller-manager's or scheduler's /healthz answers 200. Their serving certificate is
 * self-signed in memory at start, so there is nothing to pin; this probes our own child on
 * 127.0.0.1 and sends no credentials, so not verifying it loses nothing.
 */
async function localHealthy(port: number): Promise<boolean> {
  const r = await httpsGet(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false });
  return r.status === 200;
}
