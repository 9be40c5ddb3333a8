import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IpamError } from '../errors.ts';
import { API_VERSION, type IPPool } from '../api/kinds.ts';
import { MemoryStore } from '../store/memory.ts';
import { choosePools, excludedBecause, matchSelector, type FilterContext } from './choose.ts';
import { MemoryClusterView, type PodInfo } from './cluster-view.ts';
import { IpamState } from './state.ts';
import { compilePool } from './pools.ts';
import { Ipam } from './engine.ts';
import { ObjectService } from './objects.ts';

const poolObj = (name: string, spec: Record<string, unknown>): IPPool =>
  ({ apiVersion: API_VERSION, kind: 'IPPool', metadata: { name }, spec }) as IPPool;

function stateWith(...pools: IPPool[]): IpamState {
  const s = new IpamState();
  pools.forEach((p, i) => s.put(`ippools/${p.metadata.name}`, p, String(i + 1)));
  return s;
}

const pod = (annotations: Record<string, string>, labels: Record<string, string> = {}): PodInfo => ({
  namespace: 'ns1',
  name: 'pod1',
  labels,
  annotations,
  owners: [],
});

describe('choose: the first rule that names pools wins', () => {
  const state = stateWith(
    poolObj('a4', { subnet: '10.0.0.0/24' }),
    poolObj('b4', { subnet: '10.0.1.0/24' }),
    poolObj('c4', { subnet: '10.0.2.0/24', default: true }),
    poolObj('a6', { subnet: 'fd00::/64' }),
    poolObj('rack1-x', { subnet: '10.0.3.0/24' }),
    poolObj('rack1-y', { subnet: '10.0.4.0/24' }),
  );
  const ns = { name: 'ns1', labels: {}, annotations: { 'ipkeeper.io/default-ipv4-ippool': '["b4"]' } };
  const cases: {
    name: string;
    input: Parameters<typeof choosePools>[0];
    families: Record<number, string[]>;
    rule: RegExp;
  }[] = [
    {
      name: 'ippools annotation, per interface',
      input: {
        ifName: 'net1',
        pod: pod({
          'ipkeeper.io/ippools':
            '[{"interface":"eth0","ipv4":["a4"]},{"interface":"net1","ipv4":["b4"],"ipv6":["a6"]}]',
        }),
        namespace: ns,
      },
      families: { 4: ['b4'], 6: ['a6'] },
      rule: /pod annotation ipkeeper\.io\/ippools \(interface net1\)/,
    },
    {
      name: 'Spiderpool ippools alias',
      input: {
        ifName: 'eth0',
        pod: pod({ 'ipam.spidernet.io/ippools': '[{"interface":"eth0","ipv4":["a4"]}]' }),
      },
      families: { 4: ['a4'] },
      rule: /ipam\.spidernet\.io\/ippools/,
    },
    {
      name: 'ippool annotation beats namespace and config (seed 000)',
      input: {
        pod: pod({ 'ipam.spidernet.io/ippool': '{\n  "ipv4": ["a4", "b4"]\n}' }),
        namespace: ns,
        configPools: { ipv4: ['c4'] },
      },
      families: { 4: ['a4', 'b4'] },
      rule: /pod annotation ipam\.spidernet\.io\/ippool/,
    },
    {
      name: 'ippool annotation for another interface falls through',
      input: {
        ifName: 'net1',
        pod: pod({ 'ipkeeper.io/ippool': '{"interface":"eth0","ipv4":["a4"]}' }),
        namespace: ns,
      },
      families: { 4: ['b4'] },
      rule: /namespace ns1 annotation/,
    },
    {
      name: 'namespace default, plain name form',
      input: {
        namespace: { name: 'ns1', labels: {}, annotations: { 'ipkeeper.io/default-ipv4-ippool': 'b4' } },
        configPools: { ipv4: ['c4'] },
      },
      families: { 4: ['b4'] },
      rule: /namespace ns1/,
    },
    {
      name: 'CNI config',
      input: { configPools: { ipv4: ['rack1-*'] } },
      families: { 4: ['rack1-x', 'rack1-y'] },
      rule: /CNI config/,
    },
    { name: 'default pools', input: {}, families: { 4: ['c4'] }, rule: /default: true/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = choosePools(c.input, state);
      assert.deepEqual(got.families, c.families);
      assert.match(got.rule, c.rule);
    });
  }

  for (const [name, value] of [
    ['ipkeeper.io/ippool', '{"ipv4": "a4"}'],
    ['ipkeeper.io/ippool', 'not json'],
    ['ipkeeper.io/ippools', '{"interface":"eth0"}'],
    ['ipkeeper.io/ippools', '[{"ipv4":["a4"]}]'],
  ] as const) {
    it(`refuses a broken ${name} naming it: ${value}`, () => {
      assert.throws(
        () => choosePools({ pod: pod({ [name]: value }) }, state),
        (e: unknown) =>
          e instanceof IpamError &&
          e.code === 'INVALID_OBJECT' &&
          e.message.includes(name) &&
          e.message.includes('expected'),
      );
    });
  }
});

describe('choose: filters say why a pool was ruled out', () => {
  const ctx = (over: Partial<FilterContext> = {}): FilterContext => ({
    cniNetwork: 'macvlan-ens192',
    nodeName: 'node1',
    podNamespace: 'ns1',
    live: true,
    ...over,
  });
  const cases: {
    name: string;
    spec: Record<string, unknown>;
    ctx: FilterContext;
    why: RegExp | undefined;
  }[] = [
    { name: 'no filter', spec: {}, ctx: ctx(), why: undefined },
    { name: 'disabled', spec: { disable: true }, ctx: ctx(), why: /disabled/ },
    { name: 'other node', spec: { nodeName: ['node2'] }, ctx: ctx(), why: /for nodes node2/ },
    { name: 'this node', spec: { nodeName: ['node1'] }, ctx: ctx(), why: undefined },
    {
      name: 'other namespace',
      spec: { namespaceName: ['kube-system'] },
      ctx: ctx(),
      why: /namespaces kube-system/,
    },
    {
      name: 'multus name with namespace',
      spec: { multusName: ['kube-system/macvlan-ens192'] },
      ctx: ctx(),
      why: undefined,
    },
    { name: 'other network', spec: { multusName: ['sriov'] }, ctx: ctx(), why: /networks sriov/ },
    {
      name: 'pod affinity matches',
      spec: { podAffinity: { matchLabels: { app: 'web' } } },
      ctx: ctx({ pod: pod({}, { app: 'web' }) }),
      why: undefined,
    },
    {
      name: 'pod affinity does not match',
      spec: { podAffinity: { matchLabels: { app: 'db' } } },
      ctx: ctx({ pod: pod({}, { app: 'web' }) }),
      why: /podAffinity does not match/,
    },
    {
      name: 'pod labels unknown in embedded mode',
      spec: { podAffinity: { matchLabels: { app: 'db' } } },
      ctx: ctx({ live: false }),
      why: /embedded mode/,
    },
    {
      name: 'node affinity',
      spec: { nodeAffinity: { matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }] } },
      ctx: ctx({ node: { name: 'node1', labels: { zone: 'b' } } }),
      why: /nodeAffinity/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const why = excludedBecause(compilePool(poolObj('p', { subnet: '10.0.0.0/24', ...c.spec })), c.ctx);
      if (c.why === undefined) assert.equal(why, undefined);
      else assert.match(why ?? '', c.why);
    });
  }

  it('label selectors: In, NotIn, Exists, DoesNotExist, matchLabels', () => {
    const l = { app: 'web', tier: 'front' };
    assert.ok(matchSelector({}, l));
    assert.ok(
      matchSelector(
        {
          matchLabels: { app: 'web' },
          matchExpressions: [{ key: 'tier', operator: 'In', values: ['front', 'x'] }],
        },
        l,
      ),
    );
    assert.ok(
      !matchSelector({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['front'] }] }, l),
    );
    assert.ok(matchSelector({ matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] }, l));
    assert.ok(matchSelector({ matchExpressions: [{ key: 'app', operator: 'Exists' }] }, l));
    assert.ok(!matchSelector({ matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, l));
  });
});

describe('engine with a cluster view: seed 001 style annotations', () => {
  it('allocates per interface from the pod annotation and explains a refusal', async () => {
    const store = new MemoryStore();
    const view = new MemoryClusterView();
    const ipam = new Ipam({ store, node: 'node1', view });
    await ipam.start();
    await new ObjectService(store, ipam).apply([
      poolObj('eth0-v4', { subnet: '10.6.0.0/16', ips: ['10.6.168.10'] }),
      poolObj('net1-v4', { subnet: '10.7.0.0/16', ips: ['10.7.168.10'] }),
      poolObj('net1-backup', { subnet: '10.8.0.0/16', ips: ['10.8.0.10'], nodeName: ['node9'] }),
    ]);
    view.setPod({
      namespace: 'ns1',
      name: 'app-0',
      annotations: {
        'ipam.spidernet.io/ippools': JSON.stringify([
          { interface: 'eth0', ipv4: ['eth0-v4'] },
          { interface: 'net1', ipv4: ['net1-v4', 'net1-backup'] },
        ]),
      },
    });
    const req = (ifName: string, containerId = 'c0') => ({
      cniNetwork: 'n',
      containerId,
      ifName,
      owner: { kind: 'Pod', namespace: 'ns1', name: 'app-0' },
    });
    assert.equal((await ipam.add(req('eth0'))).ips[0]?.address, '10.6.168.10/16');
    assert.equal((await ipam.add(req('net1'))).ips[0]?.address, '10.7.168.10/16');
    const e = await ipam.add(req('net1', 'c1')).catch((x: unknown) => x);
    assert.ok(e instanceof IpamError);
    assert.equal(e.code, 'POOL_EXHAUSTED');
    assert.match(e.message, /chosen by pod annotation ipam\.spidernet\.io\/ippools \(interface net1\)/);
    assert.match(e.message, /pool "net1-backup" is for nodes node9/);
    assert.match(e.message, /pool "net1-v4" has no free address/);
  });
});
