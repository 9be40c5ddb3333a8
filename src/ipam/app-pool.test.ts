import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IpamError } from '../errors.ts';
import { IntervalSet } from '../net/interval-set.ts';
import { API_VERSION, type IPPool, type Subnet } from '../api/kinds.ts';
import { objectErrors } from '../api/validate.ts';
import { parseManifests } from '../api/manifests.ts';
import { IpamState } from './state.ts';
import { choosePools } from './choose.ts';
import type { PodInfo } from './cluster-view.ts';
import {
  appPoolName,
  appsOfPod,
  buildAppPool,
  chooseAppPools,
  desiredSize,
  labelValue,
  parseAppPoolAnnotations,
  replicasOf,
  resize,
  selectorOf,
  subnetAddresses,
} from './app-pool.ts';

const set = (...items: string[]): IntervalSet => IntervalSet.parse(4, items);
const subnet = (spec: Subnet['spec'], name = 'subnet-6'): Subnet => ({
  apiVersion: API_VERSION,
  kind: 'Subnet',
  metadata: { name },
  spec,
});

function fails(f: () => unknown, code: string, re: RegExp): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof IpamError, String(e));
    assert.equal(e.code, code);
    assert.match(e.message, re);
    return;
  }
  assert.fail('expected an error');
}

describe('app-pool annotations', () => {
  it("reads seed 001's multi-NIC annotation with +1 and the default (+1, reclaim)", () => {
    const r = parseAppPoolAnnotations({
      'ipam.spidernet.io/subnets':
        '[{"interface": "eth0", "ipv4": ["subnet-6"]},\n {"interface": "net1", "ipv4": ["subnet-7"]}]',
      'ipam.spidernet.io/ippool-ip-number': '+1',
    });
    assert.deepEqual(r, {
      interfaces: [
        { ifName: 'eth0', ipv4: 'subnet-6' },
        { ifName: 'net1', ipv4: 'subnet-7' },
      ],
      size: { extra: 1 },
      reclaim: true,
      source: 'ipam.spidernet.io/subnets',
    });
    const d = parseAppPoolAnnotations({ 'ipkeeper.io/subnet': '{"ipv4": ["a"], "ipv6": ["b"]}' });
    assert.deepEqual(d, {
      interfaces: [{ ifName: 'eth0', ipv4: 'a', ipv6: 'b' }],
      size: { extra: 1 },
      reclaim: true,
      source: 'ipkeeper.io/subnet',
    });
    assert.equal(parseAppPoolAnnotations({ 'ipkeeper.io/ippool': '{}' }), undefined);
  });

  it('fixed N, +0 and ippool-reclaim "false"', () => {
    const base = { 'ipkeeper.io/subnet': '{"ipv4": ["a"]}' };
    assert.deepEqual(parseAppPoolAnnotations({ ...base, 'ipkeeper.io/ippool-ip-number': '3' })?.size, {
      fixed: 3,
    });
    assert.deepEqual(parseAppPoolAnnotations({ ...base, 'ipkeeper.io/ippool-ip-number': '+0' })?.size, {
      extra: 0,
    });
    assert.equal(parseAppPoolAnnotations({ ...base, 'ipkeeper.io/ippool-reclaim': 'false' })?.reclaim, false);
  });

  const badCases: [string, Record<string, string>, RegExp][] = [
    [
      'not JSON',
      { 'ipkeeper.io/subnet': 'subnet-a' },
      /ipkeeper\.io\/subnet: "subnet-a" is not valid; it is not JSON/,
    ],
    ['no family', { 'ipkeeper.io/subnet': '{"interface": "eth0"}' }, /name a subnet for "ipv4" or "ipv6"/],
    [
      'ipv4 not a list of names',
      { 'ipkeeper.io/subnet': '{"ipv4": [1]}' },
      /"ipv4" must be a list of Subnet names/,
    ],
    [
      'subnets entry without interface',
      { 'ipkeeper.io/subnets': '[{"ipv4": ["a"]}]' },
      /every entry needs "interface"/,
    ],
    [
      'interface twice',
      { 'ipkeeper.io/subnets': '[{"interface":"eth0","ipv4":["a"]},{"interface":"eth0","ipv4":["b"]}]' },
      /listed twice/,
    ],
    [
      'ip-number word',
      { 'ipkeeper.io/subnet': '{"ipv4":["a"]}', 'ipkeeper.io/ippool-ip-number': 'two' },
      /ippool-ip-number: "two" is not valid; use a number of addresses \("3"\) or replicas plus a number \("\+1"\)/,
    ],
    [
      'ip-number 0',
      { 'ipkeeper.io/subnet': '{"ipv4":["a"]}', 'ipkeeper.io/ippool-ip-number': '0' },
      /at least 1 address/,
    ],
    [
      'ip-number negative',
      { 'ipkeeper.io/subnet': '{"ipv4":["a"]}', 'ipkeeper.io/ippool-ip-number': '-1' },
      /is not valid/,
    ],
    [
      'reclaim yes',
      { 'ipkeeper.io/subnet': '{"ipv4":["a"]}', 'ipam.spidernet.io/ippool-reclaim': 'yes' },
      /ipam\.spidernet\.io\/ippool-reclaim: "yes" is not valid; use "true"/,
    ],
  ];
  for (const [name, ann, re] of badCases) {
    it(`refuses ${name}, naming the annotation, the value and the fix`, () => {
      fails(() => parseAppPoolAnnotations(ann), 'INVALID_OBJECT', re);
    });
  }
});

describe('app-pool sizing', () => {
  it('N is fixed, +N follows replicas', () => {
    assert.equal(desiredSize({ extra: 1 }, 2), 3);
    assert.equal(desiredSize({ extra: 1 }, 3), 4);
    assert.equal(desiredSize({ extra: 1 }, 0), 1);
    assert.equal(desiredSize({ fixed: 5 }, 30), 5);
  });
  it('replicas per kind', () => {
    assert.equal(replicasOf('Deployment', { spec: { replicas: 2 } }), 2);
    assert.equal(replicasOf('Deployment', { spec: {} }), 1);
    assert.equal(replicasOf('StatefulSet', { spec: { replicas: 0 } }), 0);
    assert.equal(replicasOf('DaemonSet', { status: { desiredNumberScheduled: 4 } }), 4);
    assert.equal(replicasOf('DaemonSet', {}), 0);
    assert.equal(replicasOf('Job', { spec: { parallelism: 3 } }), 3);
    assert.equal(replicasOf('Job', { spec: {} }), 1);
    assert.equal(replicasOf('CronJob', { spec: { jobTemplate: { spec: { parallelism: 2 } } } }), 2);
  });
  it("podAffinity follows the workload's selector (a Job's by job-name, a CronJob's by template labels)", () => {
    assert.deepEqual(selectorOf('Deployment', { spec: { selector: { matchLabels: { app: 'a' } } } }), {
      matchLabels: { app: 'a' },
    });
    assert.deepEqual(
      selectorOf('Job', {
        metadata: { name: 'j' },
        spec: { selector: { matchLabels: { 'controller-uid': 'u' } } },
      }),
      { matchLabels: { 'job-name': 'j' } },
    );
    assert.deepEqual(
      selectorOf('CronJob', {
        spec: { jobTemplate: { spec: { template: { metadata: { labels: { app: 'c' } } } } } },
      }),
      { matchLabels: { app: 'c' } },
    );
  });
});

describe('app-pool carving', () => {
  const offered = subnetAddresses(
    subnet({ subnet: '10.6.0.0/16', ips: ['10.6.168.100-10.6.168.110'], excludeIPs: ['10.6.168.101'] }),
  );
  it('a subnet offers its ips minus excludeIPs', () => {
    assert.equal(offered.toString(), '10.6.168.100,10.6.168.102-10.6.168.110');
  });
  it('grows by the lowest free addresses, skipping other pools', () => {
    const r = resize({
      offered,
      current: IntervalSet.empty(4),
      taken: set('10.6.168.102'),
      claimed: IntervalSet.empty(4),
      want: 3,
    });
    assert.equal(r.ips.toString(), '10.6.168.100,10.6.168.103-10.6.168.104');
    assert.equal(r.short, 0);
    const more = resize({
      offered,
      current: r.ips,
      taken: set('10.6.168.102'),
      claimed: IntervalSet.empty(4),
      want: 4,
    });
    assert.equal(more.ips.toString(), '10.6.168.100,10.6.168.103-10.6.168.105');
  });
  it('says how many it is short when the subnet runs out', () => {
    const r = resize({
      offered,
      current: IntervalSet.empty(4),
      taken: IntervalSet.empty(4),
      claimed: IntervalSet.empty(4),
      want: 12,
    });
    assert.equal(r.ips.size(), 10n);
    assert.equal(r.short, 2);
  });
  it('shrinks only by addresses no claim holds, highest first', () => {
    const current = set('10.6.168.100', '10.6.168.103-10.6.168.105');
    const r = resize({
      offered,
      current,
      taken: IntervalSet.empty(4),
      claimed: set('10.6.168.105'),
      want: 3,
    });
    assert.equal(r.ips.toString(), '10.6.168.100,10.6.168.103,10.6.168.105');
    const all = resize({ offered, current, taken: IntervalSet.empty(4), claimed: current, want: 1 });
    assert.equal(all.ips.toString(), current.toString());
    assert.equal(all.stuck, 3);
  });
});

describe('app-pool naming and objects', () => {
  const app = { kind: 'Deployment', namespace: 'default', name: 'test-app', uid: 'u-1' };
  it('names are deterministic per kind/namespace/name, interface and family, and valid', () => {
    const n = appPoolName(app, 4, 'eth0');
    assert.match(n, /^auto4-test-app-eth0-[0-9a-f]{5}$/);
    assert.equal(appPoolName(app, 4, 'eth0'), n);
    assert.notEqual(appPoolName({ ...app, namespace: 'other' }, 4, 'eth0'), n);
    assert.notEqual(appPoolName(app, 6, 'eth0'), appPoolName(app, 4, 'eth0'));
    const long = appPoolName({ ...app, name: 'x'.repeat(253) }, 6, 'Net_1');
    assert.ok(long.length <= 253);
    assert.equal(labelValue('a'.repeat(63)), 'a'.repeat(63));
    assert.ok(labelValue('a'.repeat(64)).length <= 63);
    assert.notEqual(labelValue(`${'a'.repeat(64)}1`), labelValue(`${'a'.repeat(64)}2`));
  });
  it('the pool is a valid IPPool with labels, podAffinity and an ownerReference unless reclaim is false', () => {
    const sn = subnet({
      subnet: '10.6.0.0/16',
      ips: ['10.6.168.100-10.6.168.110'],
      gateway: '10.6.0.1',
      vlan: 6,
    });
    const p = buildAppPool({
      app,
      ifName: 'eth0',
      family: 4,
      subnet: sn,
      ips: set('10.6.168.100-10.6.168.102'),
      size: { extra: 1 },
      reclaim: true,
      podAffinity: { matchLabels: { app: 'test-app' } },
    });
    assert.deepEqual(objectErrors(p), []);
    assert.deepEqual(p.spec, {
      subnet: '10.6.0.0/16',
      ips: ['10.6.168.100-10.6.168.102'],
      gateway: '10.6.0.1',
      vlan: 6,
      podAffinity: { matchLabels: { app: 'test-app' } },
    });
    assert.equal(p.metadata.labels?.['ipkeeper.io/owner-application'], 'Deployment_default_test-app');
    assert.equal(p.metadata.ownerReferences?.[0]?.uid, 'u-1');
    const kept = buildAppPool({
      app,
      ifName: 'eth0',
      family: 4,
      subnet: sn,
      ips: set('10.6.168.100'),
      size: { fixed: 1 },
      reclaim: false,
    });
    assert.equal(kept.metadata.ownerReferences, undefined);
    assert.equal(kept.metadata.annotations?.['ipkeeper.io/ippool-reclaim'], 'false');
  });
});

describe('app-pool choice', () => {
  const rsPod = (annotations: Record<string, string>): PodInfo => ({
    namespace: 'default',
    name: 'test-app-6f4594ff67-fkqbw',
    labels: { app: 'test-app', 'pod-template-hash': '6f4594ff67' },
    annotations,
    owners: [{ kind: 'ReplicaSet', name: 'test-app-6f4594ff67' }],
  });
  const dep = { kind: 'Deployment', namespace: 'default', name: 'test-app' };
  const ann = {
    'ipam.spidernet.io/subnets':
      '[{"interface":"eth0","ipv4":["subnet-6"]},{"interface":"net1","ipv4":["subnet-7"]}]',
  };
  const sn = subnet({ subnet: '10.6.0.0/16' });
  const state = (...pools: IPPool[]): IpamState => {
    const s = new IpamState();
    pools.forEach((p, i) => s.put(`ippools/${p.metadata.name}`, p, String(i + 1)));
    return s;
  };
  it("finds the Deployment's pool from a chain that stops at its ReplicaSet, per interface", () => {
    const eth0 = buildAppPool({
      app: dep,
      ifName: 'eth0',
      family: 4,
      subnet: sn,
      ips: set('10.6.0.10'),
      size: { extra: 1 },
      reclaim: true,
    });
    const net1 = buildAppPool({
      app: dep,
      ifName: 'net1',
      family: 4,
      subnet: subnet({ subnet: '10.7.0.0/16' }, 'subnet-7'),
      ips: set('10.7.0.10'),
      size: { extra: 1 },
      reclaim: true,
    });
    // Only eth0's pool so far: neither interface takes an address (eth0 waits for net1's pool, so
    // a sandbox never takes eth0's address and fails on net1).
    const st = state(eth0);
    for (const ifName of ['eth0', 'net1']) {
      fails(
        () => chooseAppPools(rsPod(ann), ifName, st),
        'APP_POOL_PENDING',
        /has not created the application pool "auto4-test-app-net1-[0-9a-f]{5}" of Deployment default\/test-app \(interface net1/,
      );
    }
    const both = state(eth0, net1);
    const c = choosePools({ ifName: 'eth0', pod: rsPod(ann) }, both);
    assert.deepEqual(c.families, { 4: [eth0.metadata.name] });
    assert.match(c.rule, /application pool of Deployment default\/test-app/);
    assert.deepEqual(choosePools({ ifName: 'net1', pod: rsPod(ann) }, both).families, {
      4: [net1.metadata.name],
    });
    assert.deepEqual(
      appsOfPod(rsPod({})).map((a) => a.kind),
      ['ReplicaSet', 'Deployment'],
    );
  });
  it("the pod's own ippool annotation still wins; a bare pod asking for a subnet is told why not", () => {
    const st = state();
    const c = choosePools(
      { ifName: 'eth0', pod: rsPod({ ...ann, 'ipkeeper.io/ippool': '{"ipv4":["manual"]}' }) },
      st,
    );
    assert.equal(c.rule, 'pod annotation ipkeeper.io/ippool');
    fails(() => chooseAppPools({ ...rsPod(ann), owners: [] }, 'eth0', st), 'INVALID_OBJECT', /no controller/);
    assert.equal(chooseAppPools(rsPod({}), 'eth0', st), undefined);
  });
  it('SpiderSubnet YAML converts to a valid Subnet', () => {
    const [c] = parseManifests(`apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderSubnet
metadata:
  name: subnet-6
spec:
  ipVersion: 4
  subnet: 10.6.0.0/16
  gateway: 10.6.0.1
  ips:
    - 10.6.168.101-10.6.168.110
  vlan: 0
`);
    assert.equal(c?.object.kind, 'Subnet');
    assert.deepEqual(objectErrors(c?.object), []);
    assert.deepEqual(c?.object.spec, {
      subnet: '10.6.0.0/16',
      gateway: '10.6.0.1',
      ips: ['10.6.168.101-10.6.168.110'],
      vlan: 0,
    });
    assert.match(
      objectErrors({ ...c?.object, spec: { subnet: '10.6.0.0/16', ips: ['10.7.0.1'] } })
        .map((e) => e.message)
        .join(';'),
      /outside the subnet/,
    );
  });
});
