/**
 * @module test/e2e/multinic
 * End to end, as root, seed 001's multi-NIC pod with real parts: one network namespace, eth0 and
 * net1 each made by Debian's `bridge` plugin on its own bridge with ipkeeper as IPAM, each NIC from
 * its own pools (net1 dual stack). What is checked is what landed in the namespace (`ip -j`):
 *
 *   - the routes of each result are in the main table; only eth0 has a default route;
 *   - the CNI `sbr` meta plugin, chained after bridge on net1, installs the policy routing that
 *     ipkeeper's 1.1.0 result and `interfaceRouting` describe (table 100, `from <net1 address> lookup
 *     100`, default via net1's gateway), so a reply from net1's address leaves by net1;
 *   - an exact address by CNI_ARGS `IP=`, and one already held, refused naming the holder.
 *
 * Debian's plugins (1.1.1) speak CNI up to 1.0.0 and apply no `table` routes and no rules from a
 * result; a 1.0.0 result therefore carries none of net1's table routes (they would be a second
 * default route in main), and the rules are applied here by `sbr`, never by this test itself.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { installCni } from '../../src/cni/install.ts';
import { ensurePackages } from '../../scripts/lib/system.ts';
import { interfaceRouting } from '../../src/ipam/routing.ts';
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

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
}
interface IpRule {
  src?: string;
  srclen?: number;
  table: string;
}

describe('e2e: multi-NIC pod (eth0 + net1) with policy routing', { skip }, () => {
  let dir: string;
  let binDir: string;
  let socket: string;
  let agent: AgentProcess;
  let lab: Lab;
  let br0: string;
  let br1: string;
  let pod: string;
  const cniPath = () => `${binDir}:${SYSTEM_CNI}`;
  const args = (name: string, extra = '') =>
    `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name};K8S_POD_UID=uid-${name}${extra}`;

  const conf = (
    name: string,
    bridge: string,
    pools: { ipv4?: string[]; ipv6?: string[] },
    cniVersion = '1.0.0',
  ) => ({
    cniVersion,
    name,
    type: 'bridge',
    bridge,
    ipam: { type: 'ipkeeper', socket, pools },
  });
  const eth0Conf = () => conf('mn-eth0', br0, { ipv4: ['mn-eth0-v4'] });
  const net1Conf = () => conf('mn-net1', br1, { ipv4: ['mn-net1-v4'], ipv6: ['mn-net1-v6'] });

  const call = (
    plugin: string,
    command: 'ADD' | 'DEL',
    netns: string,
    id: string,
    ifName: string,
    config: unknown,
    cniArgs: string,
  ): CniOutcome =>
    runPlugin(plugin, { command, containerId: id, netns, ifName, args: cniArgs, config, cniPath: cniPath() });
  const ipj = <T>(netns: string, cmd: string[]): T => {
    const r = lab.exec(netns, ['ip', '-j', ...cmd]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout || '[]') as T;
  };
  const routes = (netns: string, family: '-4' | '-6', table: string): IpRoute[] =>
    ipj<IpRoute[]>(netns, [family, 'route', 'show', 'table', table]).filter(
      (r) => !String(r.dst).startsWith('fe80'),
    );

  before(async () => {
    ensurePackages(['containernetworking-plugins', 'iproute2']);
    dir = tempDir('multinic');
    binDir = join(dir, 'bin');
    await installCni(binDir);
    socket = join(dir, 'run', 'agent.sock');
    agent = await startAgent({ store: `sqlite:${join(dir, 'ipkeeper.db')}`, socket });
    lab = new Lab();
    br0 = lab.linkName('ipkmb0');
    br1 = lab.linkName('ipkmb1');
    const r = cli(['apply', '-f', writeTemp(dir, 'pools.yaml', POOLS), '--socket', socket]);
    assert.equal(r.code, 0, r.stderr);
    pod = lab.addNetns('mnpod');
  });

  after(async () => {
    lab?.cleanup();
    await agent?.kill();
  });

  let eth0: CniOutcome;
  let net1: CniOutcome;

  it('eth0 and net1 get addresses from their own pools; only eth0 has the default route', () => {
    eth0 = call(join(SYSTEM_CNI, 'bridge'), 'ADD', pod, 'mn-sandbox', 'eth0', eth0Conf(), args('mn-app'));
    assert.equal(eth0.code, 0, eth0.stdout + eth0.stderr);
    net1 = call(join(SYSTEM_CNI, 'bridge'), 'ADD', pod, 'mn-sandbox', 'net1', net1Conf(), args('mn-app'));
    assert.equal(net1.code, 0, net1.stdout + net1.stderr);

    const ips = (o: CniOutcome) => (o.json.ips as { address: string }[]).map((i) => i.address);
    assert.match(ips(eth0)[0] as string, /^10\.252\.0\.\d+\/24$/);
    assert.equal(ips(net1).length, 2, JSON.stringify(net1.json));
    assert.match(ips(net1)[0] as string, /^10\.253\.0\.\d+\/24$/);
    assert.match(ips(net1)[1] as string, /^fd00:253::[0-9a-f]+\/64$/);

    // 1.0.0 results: eth0 carries the default route, net1 none (its table routes need 1.1.0).
    assert.deepEqual(eth0.json.routes, [{ dst: '0.0.0.0/0', gw: '10.252.0.1' }]);
    assert.deepEqual(net1.json.routes ?? [], []);

    // What landed: every result route is in main, and the only default route leaves by eth0.
    const main4 = routes(pod, '-4', 'main');
    const main6 = routes(pod, '-6', 'main');
    assert.deepEqual(
      main4.filter((r) => r.dst === 'default'),
      [{ ...main4.find((r) => r.dst === 'default'), dst: 'default', gateway: '10.252.0.1', dev: 'eth0' }],
    );
    assert.equal(main6.filter((r) => r.dst === 'default').length, 0, JSON.stringify(main6));
    assert.ok(
      main4.some((r) => r.dst === '10.253.0.0/24' && r.dev === 'net1'),
      JSON.stringify(main4),
    );
    assert.ok(
      main6.some((r) => r.dst === 'fd00:253::/64' && r.dev === 'net1'),
      JSON.stringify(main6),
    );
    // No rule yet: without a coordinator, a reply from net1's address would leave by eth0 (seed 001's problem).
    const net1v4 = (ips(net1)[0] as string).split('/')[0] as string;
    const via = ipj<{ dev: string }[]>(pod, ['route', 'get', '198.51.100.7', 'from', net1v4]);
    assert.equal(via[0]?.dev, 'eth0');
  });

  it("ipkeeper's 1.1.0 result for net1 names table 100 and net1's gateways; eth0's names no table", () => {
    // The same attachment asked again (ADD is idempotent): the same addresses, rendered for 1.1.0.
    const again = call(
      join(binDir, 'ipkeeper'),
      'ADD',
      pod,
      'mn-sandbox',
      'net1',
      { ...net1Conf(), cniVersion: '1.1.0' },
      args('mn-app'),
    );
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.deepEqual(
      (again.json.ips as { address: string }[]).map((i) => i.address),
      (net1.json.ips as { address: string }[]).map((i) => i.address),
    );
    assert.deepEqual(again.json.routes, [
      { dst: '0.0.0.0/0', gw: '10.253.0.1', table: 100 },
      { dst: '::/0', gw: 'fd00:253::1', table: 100 },
    ]);
    const e0 = call(
      join(binDir, 'ipkeeper'),
      'ADD',
      pod,
      'mn-sandbox',
      'eth0',
      { ...eth0Conf(), cniVersion: '1.1.0' },
      args('mn-app'),
    );
    assert.equal(e0.code, 0, e0.stdout + e0.stderr);
    assert.deepEqual(e0.json.routes, [{ dst: '0.0.0.0/0', gw: '10.252.0.1' }]);
  });

  it('sbr, chained after bridge on net1, lands the tables and rules ipkeeper describes: replies leave by net1', () => {
    const sbr = call(
      join(SYSTEM_CNI, 'sbr'),
      'ADD',
      pod,
      'mn-sandbox',
      'net1',
      { cniVersion: '1.0.0', name: 'mn-net1', type: 'sbr', prevResult: net1.json },
      args('mn-app'),
    );
    assert.equal(sbr.code, 0, sbr.stdout + sbr.stderr);

    const addrs = (net1.json.ips as { address: string; gateway?: string }[]).map((i) => {
      const [ip, bits] = i.address.split('/') as [string, string];
      return { ip, bits: Number(bits), ...(i.gateway ? { gateway: i.gateway } : {}) };
    });
    const want = interfaceRouting({ ifName: 'net1', defaultRouteNic: 'eth0', addresses: addrs });
    assert.equal(want.table, 100);

    // Per family, what landed must be what ipkeeper describes: a rule `from <address> lookup T` and in
    // T the subnet on-link plus the default route via net1's gateway. IPv4 uses table 100 exactly.
    // sbr 1.1.1 picks the first table with no rule and no route for each address in turn, so its
    // IPv6 rule lands in 101 (100 already holds IPv4 routes) where ipkeeper says 100 for both
    // families (Linux keeps a table's IPv4 and IPv6 routes apart, so one number serves both).
    for (const [fam, full] of [
      ['-4', 32],
      ['-6', 128],
    ] as const) {
      const rules = ipj<IpRule[]>(pod, [fam, 'rule', 'show'])
        .filter((r) => r.src !== undefined && r.src !== 'all')
        .map((r) => ({ from: `${r.src}/${r.srclen ?? full}`, table: Number(r.table) }));
      const mine = want.rules.filter((r) => r.from.endsWith(`/${full}`));
      assert.equal(rules.length, 1, JSON.stringify(rules));
      assert.equal(rules[0]?.from, mine[0]?.from);
      const table = rules[0]?.table as number;
      if (fam === '-4') assert.equal(table, want.table);
      else
        assert.ok(table === want.table || table === (want.table as number) + 1, `IPv6 rule table ${table}`);

      const landed = routes(pod, fam, String(table))
        .map((r) => ({
          dst: r.dst === 'default' ? (fam === '-4' ? '0.0.0.0/0' : '::/0') : r.dst,
          ...(r.gateway ? { gw: r.gateway } : {}),
          dev: r.dev,
        }))
        .sort((a, b) => a.dst.localeCompare(b.dst));
      const described = want.tableRoutes
        .filter((r) => r.dst.includes(':') === (fam === '-6'))
        .map((r) => ({ dst: r.dst, ...(r.gw ? { gw: r.gw } : {}), dev: 'net1' }))
        .sort((a, b) => a.dst.localeCompare(b.dst));
      assert.deepEqual(landed, described);
    }

    // The behaviour seed 001 asks for: from net1's address, out by net1; from eth0's, out by eth0.
    const fromNet1 = ipj<{ dev: string; gateway?: string }[]>(pod, [
      'route',
      'get',
      '198.51.100.7',
      'from',
      addrs[0]?.ip as string,
    ]);
    assert.equal(fromNet1[0]?.dev, 'net1');
    assert.equal(fromNet1[0]?.gateway, '10.253.0.1');
    const eth0ip = ((eth0.json.ips as { address: string }[])[0]?.address ?? '').split('/')[0] as string;
    const fromEth0 = ipj<{ dev: string }[]>(pod, ['route', 'get', '198.51.100.7', 'from', eth0ip]);
    assert.equal(fromEth0[0]?.dev, 'eth0');
  });

  it('an exact address by CNI_ARGS IP= is given; the same address for another pod is refused naming the holder', () => {
    const other = lab.addNetns('mnother');
    const exact = call(
      join(SYSTEM_CNI, 'bridge'),
      'ADD',
      other,
      'mn-other',
      'eth0',
      eth0Conf(),
      args('mn-other', ';IP=10.252.0.77'),
    );
    assert.equal(exact.code, 0, exact.stdout + exact.stderr);
    assert.equal(exact.json.ips[0].address, '10.252.0.77/24');

    const third = lab.addNetns('mnthird');
    const held = call(
      join(SYSTEM_CNI, 'bridge'),
      'ADD',
      third,
      'mn-third',
      'eth0',
      eth0Conf(),
      args('mn-third', ';IP=10.252.0.77'),
    );
    assert.notEqual(held.code, 0);
    const err = JSON.parse(held.stdout) as { code: number; msg: string };
    assert.equal(err.code, 104, held.stdout);
    assert.match(err.msg, /10\.252\.0\.77 .*held by Pod default\/mn-other/);
    assert.equal(
      call(join(SYSTEM_CNI, 'bridge'), 'DEL', other, 'mn-other', 'eth0', eth0Conf(), args('mn-other')).code,
      0,
    );
    assert.equal(
      call(join(SYSTEM_CNI, 'bridge'), 'DEL', third, 'mn-third', 'eth0', eth0Conf(), args('mn-third')).code,
      0,
    );
  });

  it('DEL (sbr, then bridge) removes the rules and releases every address', () => {
    const sbrDel = call(
      join(SYSTEM_CNI, 'sbr'),
      'DEL',
      pod,
      'mn-sandbox',
      'net1',
      { cniVersion: '1.0.0', name: 'mn-net1', type: 'sbr', prevResult: net1.json },
      args('mn-app'),
    );
    assert.equal(sbrDel.code, 0, sbrDel.stdout + sbrDel.stderr);
    assert.equal(
      call(join(SYSTEM_CNI, 'bridge'), 'DEL', pod, 'mn-sandbox', 'net1', net1Conf(), args('mn-app')).code,
      0,
    );
    assert.equal(
      call(join(SYSTEM_CNI, 'bridge'), 'DEL', pod, 'mn-sandbox', 'eth0', eth0Conf(), args('mn-app')).code,
      0,
    );
    for (const fam of ['-4', '-6']) {
      const left = ipj<IpRule[]>(pod, [fam, 'rule', 'show']).filter(
        (r) => r.src !== undefined && r.src !== 'all',
      );
      assert.deepEqual(left, [], `${fam} rules left after DEL`);
    }
    const usage = JSON.parse(cli(['usage', '-o', 'json', '--socket', socket]).stdout) as {
      name: string;
      used: number;
    }[];
    for (const p of usage.filter((u) => u.name.startsWith('mn-'))) assert.equal(p.used, 0, p.name);
  });
});

const POOLS = `apiVersion: ipkeeper.io/v1alpha1
kind: IPPool
metadata: {name: mn-eth0-v4}
spec: {subnet: 10.252.0.0/24, gateway: 10.252.0.1}
---
apiVersion: ipkeeper.io/v1alpha1
kind: IPPool
metadata: {name: mn-net1-v4}
spec: {subnet: 10.253.0.0/24, gateway: 10.253.0.1}
---
apiVersion: ipkeeper.io/v1alpha1
kind: IPPool
metadata: {name: mn-net1-v6}
spec: {subnet: "fd00:253::/64", gateway: "fd00:253::1"}
`;
