/**
 * @module test/docs/guide.test
 * docs/GUIDE.md followed word by word: every runnable block (see test/docs/guide.ts) is run in
 * order, in one bash per environment, and what each command prints is compared with the `# ` lines
 * the guide shows after it. `ipkeeper` on the PATH is bin/ipkeeper.ts; `kubectl` is Debian's
 * (kubernetes-client, the same release as the test API server).
 *
 * - `embedded`: no cluster; the guide's `daemons` block starts the agent on sqlite.
 * - `kube`: a real kube-apiserver, etcd, kube-controller-manager and kube-scheduler
 *   (startTestCluster), Multus' NetworkAttachmentDefinition CRD (a precondition the guide names),
 *   and the test kubelet (test/kube/kubelet.ts) running the installed CNI plugin for the pods bound
 *   to each node. The guide's `daemons` block starts one agent per node and the controller, as the
 *   DaemonSet and Deployment would; a node gets registered (by the kubelet) before its agent starts.
 *
 * The commands run from a temp directory holding links to the checkout's examples/ and deploy/, so
 * relative paths work as they do in a checkout and files the guide writes go away. Every process
 * started here is stopped by its process group id. GUIDE_PRINT=1 prints each command's output.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call } from '../../src/cli/client.ts';
import { installCni } from '../../src/cni/install.ts';
import { ensureKubectl } from '../../scripts/lib/system.ts';
import { kubeRequest, startTestCluster, type TestCluster } from '../kube/cluster.ts';
import { installCrd, until } from '../kube/crds.ts';
import { loadFixture } from '../kube/fixtures/fixtures.ts';
import { startKubelet, type Kubelet } from '../kube/kubelet.ts';
import { compareOutput, parseGuide, type Block, type Step } from './guide.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const GUIDE = join(ROOT, 'docs/GUIDE.md');
const STEP_TIMEOUT_MS = 180_000;
const DAEMON_READY_MS = 60_000;
const PRINT = process.env.GUIDE_PRINT === '1';

const blocks = parseGuide(readFileSync(GUIDE, 'utf8'));

/** One long-lived bash: variables and the current directory carry from step to step. */
class Shell {
  private readonly child: ChildProcess;
  private buf = '';
  private waiter?: () => void;

  constructor(cwd: string, env: NodeJS.ProcessEnv) {
    this.child = spawn('bash', ['--noprofile', '--norc'], {
      cwd,
      env,
      stdio: ['pipe', 'pipe', 'inherit'],
      detached: true,
    });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      this.waiter?.();
    });
  }

  /** Runs `command` (stderr merged into stdout) and returns its output and exit status. */
  async run(command: string, timeoutMs = STEP_TIMEOUT_MS): Promise<{ output: string; status: number }> {
    const end = `__guide_end_${randomBytes(6).toString('hex')}__`;
    this.buf = '';
    this.child.stdin!.write(`{\n${command}\n} 2>&1 </dev/null; echo "${end} $?"\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = new RegExp(`${end} (\\d+)\\n`).exec(this.buf);
      if (m) return { output: this.buf.slice(0, m.index), status: Number(m[1]) };
      if (Date.now() > deadline) throw new Error(`no end after ${timeoutMs} ms; output so far:\n${this.buf}`);
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 500);
      });
    }
  }

  stop(): void {
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
}

interface Env {
  dir: string;
  shell: Shell;
  env: NodeJS.ProcessEnv;
  daemons: { pid: number; name: string; log: string }[];
  /** Called before an agent for `node` starts (the kubelet registers the node). */
  onAgent?(node: string): Promise<void>;
  /** The socket of the first agent started: the shell's `ipkeeper` talks to it. */
  firstAgent?: string;
  /** Line of the first step that failed. */
  failed?: number;
}

function makeEnv(extra: NodeJS.ProcessEnv): Env {
  const dir = mkdtempSync(join(tmpdir(), 'ipk-guide-'));
  for (const d of ['examples', 'deploy']) symlinkSync(join(ROOT, d), join(dir, d));
  const bin = join(dir, '.bin');
  mkdirSync(bin);
  writeFileSync(
    join(bin, 'ipkeeper'),
    `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, 'bin/ipkeeper.ts')}" "$@"\n`,
  );
  chmodSync(join(bin, 'ipkeeper'), 0o755);
  // Debian's kubectl 1.20 (cached, see ensureKubectl), ahead of any other kubectl on the machine.
  if (extra.KUBECONFIG !== undefined) symlinkSync(ensureKubectl(), join(bin, 'kubectl'));
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin`,
    HOME: dir,
    LANG: 'C.UTF-8',
    TERM: 'dumb',
    NO_COLOR: '1',
    IPKEEPER_SOCKET: join(dir, 'ipkeeper.sock'),
    ...extra,
  };
  return { dir, env, shell: new Shell(dir, env), daemons: [] };
}

async function startDaemons(e: Env, step: Step, kube: TestCluster | undefined): Promise<void> {
  for (const raw of step.command.split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const node = /--node[ =](\S+)/.exec(line)?.[1];
    const isAgent = /^ipkeeper agent\b/.test(line);
    const socket = isAgent && node ? join(e.dir, `${node}.sock`) : e.env.IPKEEPER_SOCKET!;
    if (isAgent && node) await e.onAgent?.(node);
    const log = join(e.dir, `${node ?? line.split(' ')[1]}.log`);
    const fd = openSync(log, 'w');
    const child = spawn('bash', ['-c', `exec ${line}`], {
      cwd: e.dir,
      env: { ...e.env, IPKEEPER_SOCKET: socket },
      stdio: ['ignore', fd, fd],
      detached: true,
    });
    e.daemons.push({ pid: child.pid!, name: line, log });
    const dead = () => child.exitCode !== null || child.signalCode !== null;
    const tail = () => readFileSync(log, 'utf8').split('\n').slice(-30).join('\n');
    if (isAgent) {
      await until(
        `${line} ready`,
        async () => {
          if (dead()) throw new Error(`GUIDE.md:${step.line}: \`${line}\` exited:\n${tail()}`);
          return call(socket, 'GET', '/readyz').then(
            () => true,
            () => undefined,
          );
        },
        DAEMON_READY_MS,
      );
      if (!e.firstAgent) {
        e.firstAgent = socket;
        await e.shell.run(`export IPKEEPER_SOCKET=${socket}`);
      }
    } else if (/^ipkeeper controller\b/.test(line) && kube) {
      await until(
        `${line} to lead`,
        async () => {
          if (dead()) throw new Error(`GUIDE.md:${step.line}: \`${line}\` exited:\n${tail()}`);
          const r = await kubeRequest(kube, 'GET', '/apis/coordination.k8s.io/v1/leases');
          const held = (r.body.items ?? []).some(
            (l: any) => l.metadata.name === 'ipkeeper-controller' && l.spec?.holderIdentity,
          );
          return held ? true : undefined;
        },
        DAEMON_READY_MS,
      );
    }
  }
}

async function runStep(e: Env, b: Block, s: Step, kube?: TestCluster): Promise<void> {
  // The steps build on each other: after one fails, the rest would only wait out their timeouts.
  if (e.failed) assert.fail(`not run: the earlier step at GUIDE.md:${e.failed} failed`);
  try {
    await runOneStep(e, b, s, kube);
  } catch (err) {
    e.failed = s.line;
    throw err;
  }
}

async function runOneStep(e: Env, b: Block, s: Step, kube?: TestCluster): Promise<void> {
  if (b.daemons) return startDaemons(e, s, kube);
  const { output, status } = await e.shell.run(s.command);
  if (PRINT)
    console.log(`--- GUIDE.md:${s.line} (exit ${status})\n${s.command}\n${output.replace(/^/gm, '# ')}`);
  assert.equal(
    status,
    s.exitStatus,
    `GUIDE.md:${s.line}: \`${s.command.split('\n')[0]}\` exited with ${status}, the guide expects ${s.exitStatus}:\n${output}`,
  );
  if (s.expected) {
    const diff = compareOutput(s.expected, output);
    assert.equal(diff, undefined, `GUIDE.md:${s.line}: \`${s.command.split('\n')[0]}\`: ${diff}`);
  }
}

function stopEnv(e: Env | undefined): void {
  if (!e) return;
  for (const d of e.daemons.reverse()) {
    try {
      process.kill(-d.pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
  }
  e.shell.stop();
}

function stepsOf(env: string): { b: Block; s: Step }[] {
  return blocks.filter((b) => b.env === env).flatMap((b) => b.steps.map((s) => ({ b, s })));
}

const title = (s: Step) => `GUIDE.md:${s.line} ${s.command.split('\n')[0]!.slice(0, 90)}`;

describe('docs/GUIDE.md, followed word by word', () => {
  it('has runnable blocks for one machine and for Kubernetes, each with steps', () => {
    assert.ok(stepsOf('embedded').length > 0, 'no <!-- guide-test: embedded --> steps');
    assert.ok(stepsOf('kube').length > 0, 'no <!-- guide-test: kube --> steps');
    for (const b of blocks) {
      assert.ok(['embedded', 'kube'].includes(b.env), `GUIDE.md:${b.line}: unknown environment ${b.env}`);
    }
  });

  describe('on one machine (embedded store)', () => {
    let e: Env;
    before(() => {
      e = makeEnv({});
    });
    after(() => {
      stopEnv(e);
      rmSync(e.dir, { recursive: true, force: true });
    });
    for (const { b, s } of stepsOf('embedded')) it(title(s), () => runStep(e, b, s));
  });

  describe('in Kubernetes (real kube-apiserver, controller, agents, test kubelet)', () => {
    let e: Env;
    let cluster: TestCluster;
    let kubelet: Kubelet;
    before(async () => {
      cluster = await startTestCluster({ controllerManager: true, scheduler: true });
      // Multus is a precondition of the guide's Kubernetes part: its CRD, as Multus ships it.
      const [nad] = loadFixture('nad-crd.yaml');
      await installCrd(cluster, nad!);
      e = makeEnv({ KUBECONFIG: cluster.kubeconfigPath });
      const plugin = await installCni(join(e.dir, '.cni-bin'));
      kubelet = await startKubelet({
        cluster,
        nodes: [],
        plugin,
        socketOf: (node) => join(e.dir, `${node}.sock`),
        // The node's default network (/etc/cni/net.d), as the guide describes it.
        defaultNetwork: {
          cniVersion: '1.0.0',
          name: 'macvlan-ens192',
          type: 'macvlan',
          master: 'ens192',
          ipam: { type: 'ipkeeper' },
        },
      });
      e.onAgent = (node) => kubelet.addNode(node);
    });
    after(async () => {
      await kubelet?.stop();
      stopEnv(e);
      const problems = kubelet?.errors() ?? [];
      await cluster?.stop();
      if (e) rmSync(e.dir, { recursive: true, force: true });
      assert.deepEqual(problems, [], 'the test kubelet met problems');
    });
    for (const { b, s } of stepsOf('kube')) it(title(s), () => runStep(e, b, s, cluster));
  });
});
