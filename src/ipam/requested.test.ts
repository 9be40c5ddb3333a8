import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IpamError } from '../errors.ts';
import { MemoryStore } from '../store/memory.ts';
import { API_VERSION } from '../api/kinds.ts';
import { MemoryClusterView, type OwnerRef } from './cluster-view.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import { mergeRequested, requestedByAnnotation, statefulSetOrdinal, type RequestInput } from './requested.ts';
import { rejects } from './test-util.ts';

const STS: OwnerRef[] = [{ kind: 'StatefulSet', name: 'db' }];
const RS: OwnerRef[] = [
  { kind: 'ReplicaSet', name: 'web-6f4594ff67' },
  { kind: 'Deployment', name: 'web' },
];

function input(annotations: Record<string, string>, over: Partial<RequestInput> = {}): RequestInput {
  return { annotations, ifName: 'eth0', podName: 'web-abc', owners: RS, ...over };
}

function refusal(fn: () => unknown, re: RegExp, code = 'INVALID_OBJECT'): IpamError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof IpamError, String(e));
    assert.equal(e.code, code, e.message);
    assert.equal(e.cniCode, 106);
    assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected ${code}`);
}

describe('requested: what the annotations ask for', () => {
  const cases: { name: string; in: RequestInput; ips: string[] | undefined; source?: RegExp }[] = [
    { name: 'nothing asked', in: input({}), ips: undefined },
    {
      name: 'one IPv4',
      in: input({ 'ipkeeper.io/ip-address': '10.0.0.5' }),
      ips: ['10.0.0.5'],
      source: /ipkeeper\.io\/ip-address/,
    },
    {
      name: 'one IPv6, canonical form',
      in: input({ 'ipkeeper.io/ip-address': 'FD00:0:0:0:0:0:0:5' }),
      ips: ['fd00::5'],
    },
    {
      name: 'dual stack, v6 first in the text',
      in: input({ 'ipkeeper.io/ip-address': 'fd00::5, 10.0.0.5' }),
      ips: ['10.0.0.5', 'fd00::5'],
    },
    {
      name: 'plain form is for eth0 only',
      in: input({ 'ipkeeper.io/ip-address': '10.0.0.5' }, { ifName: 'net1' }),
      ips: undefined,
    },
    {
      name: 'per interface JSON, net1 dual stack',
      in: input(
        { 'ipkeeper.io/ip-address': '{"eth0":"10.0.0.5","net1":"10.1.0.5,fd01::5"}' },
        { ifName: 'net1' },
      ),
      ips: ['10.1.0.5', 'fd01::5'],
    },
    {
      name: 'per interface JSON with a list value',
      in: input({ 'ipkeeper.io/ip-address': '{"net1":["fd01::5","10.1.0.5"]}' }, { ifName: 'net1' }),
      ips: ['10.1.0.5', 'fd01::5'],
    },
    {
      name: 'per interface JSON that does not name this interface',
      in: input({ 'ipkeeper.io/ip-address': '{"net1":"10.1.0.5"}' }),
      ips: undefined,
    },
    {
      name: 'Kube-OVN ip_address alias',
      in: input({ 'ovn.kubernetes.io/ip_address': '10.16.0.15,fd00:10:16::15' }),
      ips: ['10.16.0.15', 'fd00:10:16::15'],
      source: /ovn\.kubernetes\.io\/ip_address/,
    },
    {
      name: 'Calico ipAddrs alias',
      in: input({ 'cni.projectcalico.org/ipAddrs': '["192.168.0.1"]' }),
      ips: ['192.168.0.1'],
      source: /cni\.projectcalico\.org\/ipAddrs/,
    },
    {
      name: 'ipkeeper.io wins over an alias',
      in: input({ 'ovn.kubernetes.io/ip_address': '10.16.0.15', 'ipkeeper.io/ip-address': '10.0.0.5' }),
      ips: ['10.0.0.5'],
    },
    {
      name: 'StatefulSet ordinal 0 takes entry 0',
      in: input({ 'ipkeeper.io/ip-list': '10.0.0.10,10.0.0.11,10.0.0.12' }, { podName: 'db-0', owners: STS }),
      ips: ['10.0.0.10'],
      source: /ordinal 0/,
    },
    {
      name: 'StatefulSet ordinal 2 takes entry 2',
      in: input({ 'ipkeeper.io/ip-list': '10.0.0.10,10.0.0.11,10.0.0.12' }, { podName: 'db-2', owners: STS }),
      ips: ['10.0.0.12'],
    },
    {
      name: 'dual-stack list pairs the i-th of each family',
      in: input(
        { 'ipkeeper.io/ip-list': '10.0.0.10,10.0.0.11,fd00::10,fd00::11' },
        { podName: 'db-1', owners: STS },
      ),
      ips: ['10.0.0.11', 'fd00::11'],
    },
    {
      name: 'dual-stack list with ";" entries',
      in: input({ 'ipkeeper.io/ip-list': '10.0.0.10,fd00::10; 10.0.0.11' }, { podName: 'db-1', owners: STS }),
      ips: ['10.0.0.11'],
    },
    {
      name: 'Kube-OVN ip_pool alias, per interface JSON list',
      in: input(
        { 'ovn.kubernetes.io/ip_pool': '{"net1":["10.1.0.10","10.1.0.11"]}' },
        { podName: 'db-1', owners: STS, ifName: 'net1' },
      ),
      ips: ['10.1.0.11'],
    },
    {
      name: 'a list for another interface does not need an ordinal here',
      in: input({ 'ipkeeper.io/ip-list': '{"net1":"10.1.0.10"}' }),
      ips: undefined,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = requestedByAnnotation(c.in);
      assert.deepEqual(got?.ips, c.ips);
      if (c.source) assert.match(got?.source ?? '', c.source);
    });
  }
});

describe('requested: refusals name the annotation, the value and the fix', () => {
  const cases: { name: string; in: RequestInput; re: RegExp }[] = [
    {
      name: 'not an address',
      in: input({ 'ipkeeper.io/ip-address': 'ten.0.0.5' }),
      re: /ipkeeper\.io\/ip-address: "ten\.0\.0\.5" has "ten\.0\.0\.5", which is not an IP address; expected/,
    },
    {
      name: 'octal-looking 010.0.0.1',
      in: input({ 'ipkeeper.io/ip-address': '010.0.0.1' }),
      re: /"010\.0\.0\.1", which is not an IP address/,
    },
    {
      name: 'a prefix where an address belongs',
      in: input({ 'ipkeeper.io/ip-address': '10.0.0.5/24' }),
      re: /without a prefix length/,
    },
    {
      name: 'two IPv4 for one interface',
      in: input({ 'ipkeeper.io/ip-address': '10.0.0.5,10.0.0.6' }),
      re: /names 2 IPv4 addresses \(10\.0\.0\.5, 10\.0\.0\.6\)/,
    },
    { name: 'empty', in: input({ 'ipkeeper.io/ip-address': '' }), re: /names no address/ },
    { name: 'broken JSON', in: input({ 'ipkeeper.io/ip-address': '{"eth0":' }), re: /is not valid JSON/ },
    {
      name: 'JSON value of the wrong type',
      in: input({ 'ipkeeper.io/ip-address': '{"eth0":5}' }),
      re: /"eth0": 5, which is neither a string nor a list/,
    },
    {
      name: 'Calico form not a list',
      in: input({ 'cni.projectcalico.org/ipAddrs': '192.168.0.1' }),
      re: /cni\.projectcalico\.org\/ipAddrs.*not valid JSON.*JSON list/,
    },
    {
      name: 'ordinal beyond the list names the ordinal and the length',
      in: input({ 'ipkeeper.io/ip-list': '10.0.0.10,10.0.0.11' }, { podName: 'db-2', owners: STS }),
      re: /lists 2 address entries for interface eth0, but pod db-2 has StatefulSet ordinal 2.*scale the StatefulSet to at most 2 replicas/,
    },
    {
      name: 'a list on a Deployment pod',
      in: input({ 'ipkeeper.io/ip-list': '10.0.0.10,10.0.0.11' }),
      re: /not a StatefulSet pod.*ipkeeper\.io\/ippool/,
    },
    {
      name: 'a StatefulSet pod whose name has no ordinal',
      in: input({ 'ipkeeper.io/ip-list': '10.0.0.10' }, { podName: 'db', owners: STS }),
      re: /no -<ordinal> suffix/,
    },
    {
      name: 'families that do not pair up',
      in: input({ 'ipkeeper.io/ip-list': '10.0.0.10,10.0.0.11,fd00::10' }, { podName: 'db-0', owners: STS }),
      re: /2 IPv4 and 1 IPv6 addresses, which do not pair up/,
    },
    {
      name: 'address and list for one interface',
      in: input(
        { 'ipkeeper.io/ip-address': '10.0.0.5', 'ipkeeper.io/ip-list': '10.0.0.10' },
        { podName: 'db-0', owners: STS },
      ),
      re: /twice: annotation ipkeeper\.io\/ip-address \(10\.0\.0\.5\) and annotation ipkeeper\.io\/ip-list \(10\.0\.0\.10\); keep one/,
    },
  ];
  for (const c of cases) it(c.name, () => void refusal(() => requestedByAnnotation(c.in), c.re));
});

describe('requested: StatefulSet ordinal', () => {
  const cases: { name: string; pod: string; owners: OwnerRef[] | undefined; want: number | undefined }[] = [
    { name: 'sts pod 0', pod: 'db-0', owners: STS, want: 0 },
    { name: 'sts pod 12', pod: 'my-db-12', owners: STS, want: 12 },
    { name: 'leading zero is no ordinal', pod: 'db-01', owners: STS, want: undefined },
    { name: 'deployment pod', pod: 'web-1', owners: RS, want: undefined },
    { name: 'bare pod', pod: 'web-1', owners: undefined, want: undefined },
    {
      name: 'top owner decides (sts under a custom operator)',
      pod: 'x-3',
      owners: [...STS, { kind: 'Operator', name: 'o' }],
      want: undefined,
    },
  ];
  for (const c of cases) it(c.name, () => assert.equal(statefulSetOrdinal(c.pod, c.owners), c.want));
});

describe('requested: merging the annotation with the runtime request', () => {
  const ann = { ips: ['10.0.0.5'], source: 'pod annotation ipkeeper.io/ip-address' };
  it('runtime only', () => assert.deepEqual(mergeRequested(undefined, ['10.0.0.7/24']), ['10.0.0.7/24']));
  it('annotation only', () => assert.deepEqual(mergeRequested(ann, []), ['10.0.0.5']));
  it('both agree (prefix length ignored)', () =>
    assert.deepEqual(mergeRequested(ann, ['10.0.0.5/24']), ['10.0.0.5']));
  it('families from both', () => assert.deepEqual(mergeRequested(ann, ['fd00::5']), ['10.0.0.5', 'fd00::5']));
  it('a disagreement is refused naming both', () =>
    void refusal(
      () => mergeRequested(ann, ['10.0.0.6']),
      /runtime asks for 10\.0\.0\.6 .* but pod annotation ipkeeper\.io\/ip-address asks for 10\.0\.0\.5/,
    ));
});

// ---- through the engine: requested addresses are claims like any other ------------------------------

function pool(name: string, spec: Record<string, unknown>) {
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name }, spec };
}

async function setup(objects: unknown[]) {
  const store = new MemoryStore();
  const view = new MemoryClusterView(true);
  const ipam = new Ipam({
    store,
    node: 'node1',
    view,
    clock: { now: () => Date.parse('2026-01-01T00:00:00Z') },
  });
  await ipam.start();
  await new ObjectService(store, ipam, () => Date.parse('2026-01-01T00:00:00Z')).apply(objects);
  return { ipam, view };
}

let seq = 0;
function podReq(
  view: MemoryClusterView,
  name: string,
  annotations: Record<string, string>,
  over: Partial<AllocateRequest> = {},
  owners: OwnerRef[] = RS,
): AllocateRequest {
  seq++;
  view.setPod({ namespace: 'default', name, annotations, owners });
  return {
    cniNetwork: 'underlay',
    containerId: `c${seq}`,
    ifName: 'eth0',
    owner: { kind: 'Pod', namespace: 'default', name, uid: `uid-${name}` },
    ...over,
  };
}

const addrs = (r: { ips: { address: string }[] }) => r.ips.map((i) => i.address);

describe('engine: requested addresses by annotation', () => {
  const objects = [
    pool('v4', { subnet: '10.6.0.0/24', gateway: '10.6.0.1', default: true }),
    pool('v6', { subnet: 'fd00:6::/64', gateway: 'fd00:6::1', default: true }),
    pool('net1-v4', { subnet: '10.7.0.0/24', gateway: '10.7.0.1' }),
    pool('net1-v6', { subnet: 'fd00:7::/64', gateway: 'fd00:7::1' }),
    pool('other', { subnet: '10.8.0.0/24' }),
    {
      apiVersion: API_VERSION,
      kind: 'ReservedIP',
      metadata: { name: 'firewall' },
      spec: { ips: ['10.6.0.200'] },
    },
  ];

  it('gives the exact dual-stack address the annotation asks for', async () => {
    const { ipam, view } = await setup(objects);
    const r = await ipam.add(podReq(view, 'exact', { 'ipkeeper.io/ip-address': '10.6.0.50,fd00:6::50' }));
    assert.deepEqual(addrs(r), ['10.6.0.50/24', 'fd00:6::50/64']);
  });

  it('refuses an address already held, naming the holder', async () => {
    const { ipam, view } = await setup(objects);
    await ipam.add(podReq(view, 'first', { 'ipkeeper.io/ip-address': '10.6.0.60' }));
    const e = await rejects(
      ipam.add(podReq(view, 'second', { 'ipkeeper.io/ip-address': '10.6.0.60' })),
      'ADDRESS_IN_USE',
      /requested address 10\.6\.0\.60 in pool "v4" is held by Pod default\/first/,
    );
    assert.equal(e.cniCode, 104);
  });

  it('refuses a reserved address, naming the reservation', async () => {
    const { ipam, view } = await setup(objects);
    await rejects(
      ipam.add(podReq(view, 'res', { 'ipkeeper.io/ip-address': '10.6.0.200' })),
      'ADDRESS_RESERVED',
      /10\.6\.0\.200 is reserved by ReservedIP "firewall"/,
    );
  });

  it('refuses an address outside the pools the pod may use, and leaves nothing behind', async () => {
    const { ipam, view } = await setup(objects);
    await rejects(
      ipam.add(
        podReq(view, 'outside', {
          'ipkeeper.io/ip-address': '10.8.0.5,fd00:6::70',
          'ipkeeper.io/ippool': '{"ipv4":["v4"],"ipv6":["v6"]}',
        }),
      ),
      'ADDRESS_NOT_IN_POOL',
      /requested address 10\.8\.0\.5 is not in any allowed pool \("v4"\)/,
    );
    // All or nothing: the IPv6 address was not kept either (another pod can take it).
    const r = await ipam.add(podReq(view, 'after', { 'ipkeeper.io/ip-address': 'fd00:6::70' }));
    assert.deepEqual(
      addrs(r).filter((a) => a.includes(':')),
      ['fd00:6::70/64'],
    );
  });

  it('with a pool annotation, the address must be in one of the chosen pools', async () => {
    const { ipam, view } = await setup(objects);
    const r = await ipam.add(
      podReq(view, 'chosen', {
        'ipkeeper.io/ip-address': '10.7.0.9',
        'ipkeeper.io/ippool': '{"ipv4":["net1-v4"]}',
      }),
    );
    assert.deepEqual(addrs(r), ['10.7.0.9/24']);
  });

  it('a StatefulSet pod with ordinal i takes entry i of ipkeeper.io/ip-list', async () => {
    const { ipam, view } = await setup(objects);
    const list = {
      'ipkeeper.io/ip-list': '10.6.0.10,10.6.0.11,10.6.0.12',
      'ipkeeper.io/ippool': '{"ipv4":["v4"]}',
    };
    for (const i of [2, 0, 1]) {
      const r = await ipam.add(podReq(view, `db-${i}`, list, {}, STS));
      assert.deepEqual(addrs(r), [`10.6.0.1${i}/24`]);
    }
    await rejects(
      ipam.add(podReq(view, 'db-3', list, {}, STS)),
      'INVALID_OBJECT',
      /lists 3 address entries .* ordinal 3/,
    );
  });

  it('accepts the Kube-OVN and Calico aliases', async () => {
    const { ipam, view } = await setup(objects);
    assert.deepEqual(
      addrs(await ipam.add(podReq(view, 'ovn', { 'ovn.kubernetes.io/ip_address': '10.6.0.15,fd00:6::15' }))),
      ['10.6.0.15/24', 'fd00:6::15/64'],
    );
    const cal = await ipam.add(
      podReq(view, 'calico', {
        'cni.projectcalico.org/ipAddrs': '["10.6.0.16"]',
        'ipkeeper.io/ippool': '{"ipv4":["v4"]}',
      }),
    );
    assert.deepEqual(addrs(cal), ['10.6.0.16/24']);
    const sts = await ipam.add(
      podReq(
        view,
        'ovn-1',
        { 'ovn.kubernetes.io/ip_pool': '10.6.0.20,10.6.0.21', 'ipkeeper.io/ippool': '{"ipv4":["v4"]}' },
        {},
        STS,
      ),
    );
    assert.deepEqual(addrs(sts), ['10.6.0.21/24']);
  });

  it('dual stack per interface: eth0 and net1 each get their own exact pair', async () => {
    const { ipam, view } = await setup(objects);
    const ann = {
      'ipkeeper.io/ip-address': '{"eth0":"10.6.0.30,fd00:6::30","net1":"10.7.0.30,fd00:7::30"}',
      'ipkeeper.io/ippools':
        '[{"interface":"eth0","ipv4":["v4"],"ipv6":["v6"]},{"interface":"net1","ipv4":["net1-v4"],"ipv6":["net1-v6"]}]',
    };
    const eth0 = await ipam.add(podReq(view, 'multi', ann));
    const net1 = await ipam.add(podReq(view, 'multi', ann, { ifName: 'net1', cniNetwork: 'underlay-net1' }));
    assert.deepEqual(addrs(eth0), ['10.6.0.30/24', 'fd00:6::30/64']);
    assert.deepEqual(addrs(net1), ['10.7.0.30/24', 'fd00:7::30/64']);
  });

  it('merges with the runtime request and refuses a disagreement before claiming anything', async () => {
    const { ipam, view } = await setup(objects);
    const ok = await ipam.add(
      podReq(
        view,
        'agree',
        { 'ipkeeper.io/ip-address': '10.6.0.40' },
        { requestedIps: ['10.6.0.40/24', 'fd00:6::40'] },
      ),
    );
    assert.deepEqual(addrs(ok), ['10.6.0.40/24', 'fd00:6::40/64']);
    await rejects(
      ipam.add(
        podReq(view, 'disagree', { 'ipkeeper.io/ip-address': '10.6.0.41' }, { requestedIps: ['10.6.0.42'] }),
      ),
      'INVALID_OBJECT',
      /runtime asks for 10\.6\.0\.42 .* asks for 10\.6\.0\.41/,
    );
    assert.equal(ipam.usage().find((p) => p.name === 'v4')?.used, 1);
  });

  it('a malformed annotation is refused and changes nothing', async () => {
    const { ipam, view } = await setup(objects);
    await rejects(
      ipam.add(podReq(view, 'broken', { 'ipkeeper.io/ip-address': '10.6.0.300' })),
      'INVALID_OBJECT',
      /"10\.6\.0\.300", which is not an IP address/,
    );
    assert.equal(
      ipam.usage().reduce((n, p) => n + p.used, 0),
      0,
    );
  });
});
