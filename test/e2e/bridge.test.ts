/**
 * End to end, as root: the real agent process on the embedded store, the installed CNI plugin
 * executable, and Debian's `bridge` and `macvlan` plugins delegating IPAM to it inside real network
 * namespaces. Seed 000's walkthrough is replayed step by step with its own YAML.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { installCni } from '../../src/cni/install.ts';
import {
  Lab,
  SYSTEM_CNI,
  cli,
  isRoot,
  runPlugin,
  startAgent,
  tempDir,
  writeTemp,
  type AgentProcess,
  type CniOutcome,
} from './harness.ts';

const skip = isRoot() ? false : 'needs root (network namespaces)';

describe('e2e: bridge and macvlan plugins with ipkeeper as IPAM', { skip }, () => {
  let dir: string;
  let binDir: string;
  let socket: string;
  let agent: AgentProcess;
  let lab: Lab;
  let bridge: string;

  before(async () => {
    dir = tempDir('e2e');
    binDir = join(dir, 'bin');
    await installCni(binDir);
    socket = join(dir, 'run', 'agent.sock');
    agent = await startAgent({ store: `sqlite:${join(dir, 'ipkeeper.db')}`, socket });
    lab = new Lab();
    bridge = lab.linkName('ipkbr');
  });

  after(async () => {
    lab?.cleanup();
    await agent?.kill();
  });

  const bridgeConf = (pools: string[]) => ({
    cniVersion: '1.0.0',
    name: 'e2e-bridge',
    type: 'bridge',
    bridge,
    ipam: { type: 'ipkeeper', socket, pools: { ipv4: pools } },
  });

  const add = (netns: string, id: string, pod: string, conf: unknown, plugin = 'bridge'): CniOutcome =>
    runPlugin(join(SYSTEM_CNI, plugin), {
      command: 'ADD',
      containerId: id,
      netns,
      ifName: 'eth0',
      args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod};K8S_POD_UID=uid-${pod}`,
      config: conf,
      cniPath: `${binDir}:${SYSTEM_CNI}`,
    });
  const del = (netns: string, id: string, conf: unknown, plugin = 'bridge'): CniOutcome =>
    runPlugin(join(SYSTEM_CNI, plugin), {
      command: 'DEL',
      containerId: id,
      netns,
      ifName: 'eth0',
      args: 'IgnoreUnknown=1',
      config: conf,
      cniPath: `${binDir}:${SYSTEM_CNI}`,
    });
  const addrIn = (netns: string): string[] =>
    lab
      .exec(netns, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])
      .stdout.split('\n')
      .map((l) => /inet (\S+)/.exec(l)?.[1])
      .filter((x): x is string => x !== undefined);
  const apply = (yaml: string): void => {
    const r = cli(['apply', '-f', writeTemp(dir, `m${Date.now()}.yaml`, yaml), '--socket', socket]);
    assert.equal(r.code, 0, r.stderr);
  };

  it('two namespaces get addresses through bridge, ping each other, and DEL releases them', () => {
    apply(`apiVersion: ipkeeper.io/v1alpha1
kind: IPPool
metadata: {name: e2e-ping}
spec:
  subnet: 10.250.0.0/24
  gateway: 10.250.0.1
`);
    const ns1 = lab.addNetns('ping1');
    const ns2 = lab.addNetns('ping2');
    const conf = bridgeConf(['e2e-ping']);
    const r1 = add(ns1, 'ping-c1', 'ping-1', conf);
    const r2 = add(ns2, 'ping-c2', 'ping-2', conf);
    assert.equal(r1.code, 0, r1.stdout + r1.stderr);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    const ip1 = r1.json.ips[0].address as string;
    const ip2 = r2.json.ips[0].address as string;
    assert.notEqual(ip1, ip2);
    assert.deepEqual(addrIn(ns1), [ip1]);
    assert.deepEqual(addrIn(ns2), [ip2]);
    // The default route via the pool's gateway is in the result and in the namespace.
    assert.ok(
      r1.json.routes.some((r: { dst: string; gw: string }) => r.dst === '0.0.0.0/0' && r.gw === '10.250.0.1'),
    );
    const ping = lab.exec(ns1, ['ping', '-c', '2', '-W', '2', ip2.split('/')[0] as string]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);

    const used = () =>
      JSON.parse(cli(['usage', '-o', 'json', '--socket', socket]).stdout).find(
        (p: { name: string }) => p.name === 'e2e-ping',
      ).used;
    assert.equal(used(), 2);
    assert.equal(del(ns1, 'ping-c1', conf).code, 0);
    assert.equal(del(ns1, 'ping-c1', conf).code, 0, 'DEL is idempotent');
    assert.equal(del(ns2, 'ping-c2', conf).code, 0);
    assert.equal(used(), 0);
  });

  it('macvlan on a veth master: two namespaces get addresses and ping each other', () => {
    apply(`apiVersion: ipkeeper.io/v1alpha1
kind: IPPool
metadata: {name: e2e-macvlan}
spec:
  subnet: 10.251.0.0/24
  ips: [10.251.0.10-10.251.0.20]
`);
    const master = lab.linkName('ipkm');
    const peer = lab.linkName('ipkp');
    lab.addVeth(master, peer);
    const conf = {
      cniVersion: '1.0.0',
      name: 'e2e-macvlan',
      type: 'macvlan',
      master,
      mode: 'bridge',
      ipam: { type: 'ipkeeper', socket, pools: { ipv4: ['e2e-macvlan'] } },
    };
    const ns1 = lab.addNetns('mv1');
    const ns2 = lab.addNetns('mv2');
    const r1 = add(ns1, 'mv-c1', 'mv-1', conf, 'macvlan');
    const r2 = add(ns2, 'mv-c2', 'mv-2', conf, 'macvlan');
    assert.equal(r1.code, 0, r1.stdout + r1.stderr);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    assert.match(r1.json.ips[0].address, /^10\.251\.0\.(1\d|20)\/24$/);
    const ping = lab.exec(ns1, ['ping', '-c', '2', '-W', '2', r2.json.ips[0].address.split('/')[0]]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    assert.equal(del(ns1, 'mv-c1', conf, 'macvlan').code, 0);
    assert.equal(del(ns2, 'mv-c2', conf, 'macvlan').code, 0);
  });

  it("replays seed 000's ReservedIP walkthrough with its own YAML", () => {
    // Step 1: the SpiderReservedIP and SpiderIPPool exactly as the seed writes them.
    apply(`apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderReservedIP
metadata:
  name: test-reservedip
spec:
  ips:
  - 10.6.168.131-10.6.168.132
`);
    apply(`apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata:
  name: test-ippool
spec:
  subnet: 10.6.0.0/16
  ips:
  - 10.6.168.131-10.6.168.133
`);
    const conf = bridgeConf(['test-ippool']);
    const nsA = lab.addNetns('seedA');
    const nsB = lab.addNetns('seedB');
    // Step 2: a Deployment of 2 replicas: one pod runs with .133, the other cannot start.
    const a = add(nsA, 'seed-a1', 'test-app-67dd9f645-dv8xz', conf);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.equal(a.json.ips[0].address, '10.6.168.133/16');
    const b = add(nsB, 'seed-b1', 'test-app-67dd9f645-lpjgs', conf);
    assert.notEqual(b.code, 0);
    assert.equal(b.json.code, 100, b.stdout);
    assert.match(b.json.msg, /no free IPv4 address/);
    assert.match(
      b.json.msg,
      /"test-ippool" has no free address \(3 addresses, 2 reserved by "test-reservedip", 1 in use\)/,
    );
    assert.deepEqual(addrIn(nsB), [], 'a failed ADD leaves no address in the namespace');
    // As a runtime does after a failed ADD: tear the sandbox down with DEL.
    assert.equal(del(nsB, 'seed-b1', conf).code, 0);

    // Step 3: reserve .133 too (the seed's kubectl patch), delete the running pod: its replacement fails.
    apply(`apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderReservedIP
metadata:
  name: test-reservedip
spec:
  ips: ["10.6.168.131-10.6.168.133"]
`);
    assert.equal(del(nsA, 'seed-a1', conf).code, 0);
    const a2 = add(nsA, 'seed-a2', 'test-app-67dd9f645-fvx4m', conf);
    assert.equal(a2.json?.code, 100, a2.stdout);
    assert.match(a2.json.msg, /3 reserved by "test-reservedip"/);
    assert.equal(del(nsA, 'seed-a2', conf).code, 0);
    const b2 = add(nsB, 'seed-b2', 'test-app-67dd9f645-lpjgs', conf);
    assert.equal(b2.json?.code, 100, b2.stdout);
    assert.equal(del(nsB, 'seed-b2', conf).code, 0);

    // Step 4: delete the reservation (the seed's `kubectl delete sr`): both pods get addresses.
    const d = cli(['delete', 'sr', 'test-reservedip', '--socket', socket]);
    assert.equal(d.code, 0, d.stderr);
    const a3 = add(nsA, 'seed-a3', 'test-app-67dd9f645-fvx4m', conf);
    const b3 = add(nsB, 'seed-b3', 'test-app-67dd9f645-lpjgs', conf);
    assert.equal(a3.code, 0, a3.stdout);
    assert.equal(b3.code, 0, b3.stdout);
    const got = [a3.json.ips[0].address, b3.json.ips[0].address].sort();
    assert.equal(new Set(got).size, 2);
    for (const g of got) assert.match(g, /^10\.6\.168\.13[1-3]\/16$/);
    const pools = cli(['get', 'ippool', 'test-ippool', '--socket', socket]);
    assert.match(pools.stdout, /test-ippool\s+10\.6\.0\.0\/16\s+2\s+3\s+1\s+0/);
    assert.equal(del(nsA, 'seed-a3', conf).code, 0);
    assert.equal(del(nsB, 'seed-b3', conf).code, 0);
  });
});
