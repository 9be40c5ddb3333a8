/**
 * End to end on one machine, with real processes: `ipkeeper agent` on the embedded store, the CLI,
 * the installed ipkeeper CNI plugin (and Debian's bridge plugin in network namespaces, as root).
 *
 * Seed 002 (Kube-OVN VIPs) with its own YAML through `ipkeeper apply -f`: dynamic and static VIPs, a
 * selector VIP, a switch LB VIP, a pod using a VIP (CNI arg IPKEEPER_VIP: embedded mode has no pod
 * annotations) and a second pod refused naming the holder.
 *
 * Seed 004 (Cilium CRD-backed IPAM) with its own CiliumNode YAML: an agent in node-pool mode is not
 * ready until its NodePool lists an address (and says why), hands out only those 4 addresses, reports
 * status.used after the throttle window, and keeps an address removed while in use with its owner
 * but never hands it out again.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { installCni } from '../../src/cni/install.ts';
import { call } from '../../src/cli/client.ts';
import { SEED_002_VIPS, SEED_004_CILIUM_NODE } from '../../src/api/convert-vip.test.ts';
import {
  CLI,
  Lab,
  NODE,
  SYSTEM_CNI,
  cli,
  isRoot,
  runPlugin,
  startAgent,
  tempDir,
  writeTemp,
  type AgentProcess,
} from './harness.ts';
import { until as untilDone } from '../lib/until.ts';

const OVN_DEFAULT = `apiVersion: ipkeeper.io/v1alpha1
kind: IPPool
metadata: {name: ovn-default}
spec:
  subnet: 10.16.0.0/16
  gateway: 10.16.0.1
`;

describe('e2e seed 002: VIPs through the CLI and the CNI plugin', () => {
  let dir: string;
  let binDir: string;
  let socket: string;
  let agent: AgentProcess;
  let lab: Lab | undefined;

  before(async () => {
    dir = tempDir('vip');
    binDir = join(dir, 'bin');
    await installCni(binDir);
    socket = join(dir, 'run', 'agent.sock');
    agent = await startAgent({ store: `sqlite:${join(dir, 'ipkeeper.db')}`, socket });
    if (isRoot()) lab = new Lab();
  });
  after(async () => {
    lab?.cleanup();
    await agent?.kill();
  });

  const apply = (yaml: string) =>
    cli(['apply', '-f', writeTemp(dir, `m${Date.now()}${Math.random()}.yaml`, yaml), '--socket', socket]);
  const getVip = (name: string) =>
    JSON.parse(cli(['get', 'vip', name, '-o', 'json', '--socket', socket]).stdout);
  const ipam = (command: 'ADD' | 'DEL', id: string, pod: string, vip?: string) =>
    runPlugin(join(binDir, 'ipkeeper'), {
      command,
      containerId: id,
      netns: '/var/run/netns/none',
      ifName: 'eth0',
      args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod};K8S_POD_UID=uid-${pod}${vip ? `;IPKEEPER_VIP=${vip}` : ''}`,
      config: {
        cniVersion: '1.0.0',
        name: 'ovn-net',
        ipam: { type: 'ipkeeper', socket, pools: { ipv4: ['ovn-default'] } },
      },
    });

  it("applies the seed's Vip YAML verbatim; get vip shows address, MAC and ready", () => {
    const a = apply(OVN_DEFAULT);
    assert.equal(a.code, 0, a.stderr);
    const r = apply(SEED_002_VIPS);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /vip\/vip-dynamic-01 created/);
    assert.match(r.stdout, /vip\/static-vip01 created/);
    const t = cli(['get', 'vip', '--socket', socket]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /^NAME\s+V4IP\s+MAC\s+V6IP\s+POOL\s+READY/);
    assert.match(t.stdout, /static-vip01\s+10\.16\.0\.121\s+02:00:0a:10:00:79\s+ovn-default\s+true/);
    const dyn = getVip('vip-dynamic-01');
    assert.equal(dyn.status.ready, true);
    assert.match(dyn.status.v4ip, /^10\.16\.\d+\.\d+$/);
    assert.match(dyn.status.mac, /^02:00:0a:10(:[0-9a-f]{2}){2}$/);
    const slr = getVip('slr-01');
    assert.equal(slr.spec.type, 'switch_lb_vip');
    assert.equal(slr.status.ready, true);
    // The AAP VIP gets its address; binding pods needs their labels (Kubernetes mode, test/kube/vip.test.ts).
    const aap = getVip('vip-aap');
    assert.equal(aap.spec.namespace, 'default');
    assert.deepEqual(aap.spec.selector, ['app: aap1']);
    assert.equal(aap.status.ready, true);
    const d = cli(['describe', 'vip', 'vip-aap', '--socket', socket]);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /AAP selector:\s+app: aap1/);
  });

  it('a static address that is taken or outside the pool is a clear error, and nothing is created', () => {
    const taken = apply(`apiVersion: kubeovn.io/v1
kind: Vip
metadata: {name: static-vip02}
spec: {subnet: ovn-default, v4ip: "10.16.0.121"}
`);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /spec\.v4ip 10\.16\.0\.121 is held by VIP static-vip01/);
    const outside = apply(`apiVersion: kubeovn.io/v1
kind: Vip
metadata: {name: static-vip03}
spec: {subnet: ovn-default, v4ip: "10.17.0.1"}
`);
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /10\.17\.0\.1 is not an address of pool "ovn-default"/);
    assert.match(cli(['get', 'vip', 'static-vip02', '--socket', socket]).stderr, /not found/);
  });

  it('no pod is ever given a VIP address by allocation', () => {
    const vips = new Set(
      JSON.parse(cli(['get', 'vips', '-o', 'json', '--socket', socket]).stdout).items.map(
        (v: any) => v.status.v4ip,
      ),
    );
    for (let i = 0; i < 5; i++) {
      const r = ipam('ADD', `plain-${i}`, `plain-${i}`);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.ok(!vips.has(r.json.ips[0].address.split('/')[0]), r.stdout);
    }
  });

  it('a pod uses a VIP as its address; a second pod is refused naming the holder; DEL frees the VIP for it', () => {
    const vip = getVip('pod-use-vip').status.v4ip as string;
    const a = ipam('ADD', 'static-ip-c1', 'static-ip', 'pod-use-vip');
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.equal(a.json.ips[0].address, `${vip}/16`);
    assert.equal(getVip('pod-use-vip').status.pod, 'default/static-ip');
    const b = ipam('ADD', 'other-c1', 'other', 'pod-use-vip');
    assert.equal(b.code, 1);
    assert.equal(b.json.code, 104, b.stdout);
    assert.match(b.json.msg, /VIP "pod-use-vip" \(.*\), which is used by pod default\/static-ip/);
    const del = cli(['delete', 'vip', 'pod-use-vip', '--socket', socket]);
    assert.equal(del.code, 1, 'a VIP in use by a pod is not deleted under it');
    assert.match(del.stderr, /is the address of pod default\/static-ip/);
    assert.equal(ipam('DEL', 'static-ip-c1', 'static-ip').code, 0);
    assert.equal(getVip('pod-use-vip').status.pod, undefined);
    const c = ipam('ADD', 'other-c1', 'other', 'pod-use-vip');
    assert.equal(c.code, 0, c.stdout);
    assert.equal(c.json.ips[0].address, `${vip}/16`);
    assert.equal(ipam('DEL', 'other-c1', 'other').code, 0);
  });

  it(
    'as root: a pod in a network namespace gets the VIP on its interface through the bridge plugin',
    { skip: isRoot() ? false : 'needs root' },
    () => {
      const l = lab as Lab;
      const bridge = l.linkName('ipkvb');
      const ns = l.addNetns('vip1');
      const conf = {
        cniVersion: '1.0.0',
        name: 'ovn-bridge',
        type: 'bridge',
        bridge,
        ipam: { type: 'ipkeeper', socket, pools: { ipv4: ['ovn-default'] } },
      };
      const vip = getVip('vip-dynamic-01');
      const pre = apply(`apiVersion: ipkeeper.io/v1alpha1
kind: VIP
metadata: {name: netns-vip}
spec: {pool: ovn-default, v4ip: 10.16.0.200}
`);
      assert.equal(pre.code, 0, pre.stderr);
      const r = runPlugin(join(SYSTEM_CNI, 'bridge'), {
        command: 'ADD',
        containerId: 'vip-netns-c1',
        netns: ns,
        ifName: 'eth0',
        args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=vip-pod;IPKEEPER_VIP=netns-vip',
        config: conf,
        cniPath: `${binDir}:${SYSTEM_CNI}`,
      });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const addrs = l.exec(ns, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']).stdout;
      assert.match(addrs, /inet 10\.16\.0\.200\/16/);
      assert.notEqual(vip.status.v4ip, '10.16.0.200');
      const d = runPlugin(join(SYSTEM_CNI, 'bridge'), {
        command: 'DEL',
        containerId: 'vip-netns-c1',
        netns: ns,
        ifName: 'eth0',
        args: 'IgnoreUnknown=1',
        config: conf,
        cniPath: `${binDir}:${SYSTEM_CNI}`,
      });
      assert.equal(d.code, 0, d.stdout + d.stderr);
    },
  );

  it('deleting a VIP releases its address', () => {
    const ip = getVip('static-vip01').status.v4ip;
    assert.equal(cli(['delete', 'vip', 'static-vip01', '--socket', socket]).code, 0);
    const claims = JSON.parse(cli(['get', 'ipclaims', '-o', 'json', '--socket', socket]).stdout).items;
    assert.ok(!claims.some((c: any) => c.spec.ip === ip));
  });
});

/** An agent that may start not ready: waits for /healthz, not /readyz (the harness waits for ready). */
async function startUnreadyAgent(
  args: string[],
  socket: string,
): Promise<{ child: ChildProcess; log: () => string; kill: () => Promise<void> }> {
  const child = spawn(NODE, [CLI, 'agent', ...args, '--socket', socket], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  process.once('exit', () => child.kill('SIGKILL'));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`agent exited: ${log}`);
    try {
      await call(socket, 'GET', '/healthz');
      return { child, log: () => log, kill };
    } catch {
      if (Date.now() > deadline) {
        await kill();
        throw new Error(`agent not up after 20 s: ${log}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function until<T>(what: string, f: () => T | undefined, ms = 20_000): Promise<T> {
  return untilDone(what, f, ms, 100);
}

describe('e2e seed 004: node-pool mode from a CiliumNode', () => {
  let dir: string;
  let binDir: string;
  let socket: string;
  let agent: Awaited<ReturnType<typeof startUnreadyAgent>>;

  before(async () => {
    dir = tempDir('nodepool');
    binDir = join(dir, 'bin');
    await installCni(binDir);
    socket = join(dir, 'run', 'agent.sock');
    agent = await startUnreadyAgent(
      [
        '--store',
        `sqlite:${join(dir, 'ipkeeper.db')}`,
        '--node',
        'k8s1',
        '--node-pool',
        '--node-pool-status-interval',
        '300ms',
      ],
      socket,
    );
  });
  after(async () => {
    await agent?.kill();
  });

  const apply = (yaml: string) =>
    cli(['apply', '-f', writeTemp(dir, `m${Date.now()}${Math.random()}.yaml`, yaml), '--socket', socket]);
  const add = (id: string, pod: string) =>
    runPlugin(join(binDir, 'ipkeeper'), {
      command: 'ADD',
      containerId: id,
      netns: '/var/run/netns/none',
      ifName: 'eth0',
      args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`,
      // The config's pools do not apply in node-pool mode: the node's pool is the only one.
      config: {
        cniVersion: '1.0.0',
        name: 'cilium-net',
        ipam: { type: 'ipkeeper', socket, pools: { ipv4: ['nope'] } },
      },
    });
  const del = (id: string) =>
    runPlugin(join(binDir, 'ipkeeper'), {
      command: 'DEL',
      containerId: id,
      netns: '/var/run/netns/none',
      ifName: 'eth0',
      args: 'IgnoreUnknown=1',
      config: { cniVersion: '1.0.0', name: 'cilium-net', ipam: { type: 'ipkeeper', socket } },
    });
  const nodePool = () =>
    JSON.parse(cli(['get', 'nodepool', 'k8s1', '-o', 'json', '--socket', socket]).stdout);

  it('is not ready, and says why, until the NodePool lists an address', async () => {
    const r = await call(socket, 'GET', '/readyz').catch((e: unknown) => e);
    assert.ok(r instanceof Error, 'not ready');
    assert.match(r.message, /Waiting for initial IP to become available in 'k8s1' NodePool/);
    assert.match(agent.log(), /Waiting for initial IP to become available in 'k8s1' NodePool/);
  });

  let first: string;
  let second: string;

  it("applies the seed's CiliumNode YAML; becomes ready; two pods get two of its 4 addresses", async () => {
    const a = apply(SEED_004_CILIUM_NODE);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /nodepool\/k8s1 created/);
    const ready = await (async () => {
      for (let i = 0; i < 200; i++) {
        try {
          return await call<{ ready: boolean }>(socket, 'GET', '/readyz');
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      return undefined;
    })();
    assert.equal(ready?.ready, true);
    const r1 = add('np-c1', 'router');
    const r2 = add('np-c2', 'health');
    assert.equal(r1.code, 0, r1.stdout + r1.stderr);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    first = r1.json.ips[0].address;
    second = r2.json.ips[0].address;
    for (const x of [first, second]) assert.match(x, /^192\.168\.1\.[1-4]\/32$/);
    assert.notEqual(first, second);
  });

  it('after the throttle window, status.used lists the two addresses with their owners', async () => {
    const used = await until('status.used with 2 entries', () => {
      const u = nodePool().status?.used;
      return u && Object.keys(u).length === 2 ? u : undefined;
    });
    assert.deepEqual(
      Object.fromEntries(Object.entries(used).map(([ip, v]: [string, any]) => [ip, v.owner])),
      {
        [first.split('/')[0] as string]: 'default/router',
        [second.split('/')[0] as string]: 'default/health',
      },
    );
    const t = cli(['get', 'nodepools', '--socket', socket]);
    assert.match(t.stdout, /k8s1\s+4\s+2/);
  });

  it('an address removed while in use stays with its owner and is never handed out again', async () => {
    const removed = first.split('/')[0] as string;
    const remaining = ['192.168.1.1', '192.168.1.2', '192.168.1.3', '192.168.1.4'].filter(
      (ip) => ip !== removed,
    );
    const a = apply(`apiVersion: "cilium.io/v2"
kind: CiliumNode
metadata:
  name: "k8s1"
spec:
  ipam:
    pool:
${remaining.map((ip) => `      ${ip}: {}`).join('\n')}
`);
    assert.equal(a.code, 0, a.stderr);
    // Still the owner's: its status entry stays after the next write.
    const d = await until('describe to show the removed address', () => {
      const out = cli(['describe', 'nodepool', 'k8s1', '--socket', socket]).stdout;
      return out.includes('removed, still in use') ? out : undefined;
    });
    assert.match(
      d,
      new RegExp(`${removed.replaceAll('.', '\\.')}\\s+removed, still in use\\s+default/router`),
    );
    assert.ok(nodePool().status.used[removed], 'still in status.used');
    // The owner releases it; the two remaining free addresses go to new pods, then the pool is full.
    assert.equal(del('np-c1').code, 0);
    const got = [add('np-c3', 'p3'), add('np-c4', 'p4')].map((r) => {
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return r.json.ips[0].address;
    });
    assert.ok(!got.includes(first), `${first} was handed out again`);
    const full = add('np-c5', 'p5');
    assert.equal(full.code, 1);
    assert.equal(full.json.code, 100, full.stdout);
    const used = await until('status.used without the removed address', () => {
      const u = nodePool().status?.used;
      return u && !u[removed] && Object.keys(u).length === 3 ? u : undefined;
    });
    assert.deepEqual(Object.keys(used).sort(), remaining);
  });
});
