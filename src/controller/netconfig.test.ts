import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifests } from '../api/manifests.ts';
import { API_VERSION, type NetworkConfig } from '../api/kinds.ts';
import { objectErrors, validateObject } from '../api/validate.ts';
import { parseNetConf } from '../cni/config.ts';
import { IpamError } from '../errors.ts';
import {
  cniConfigOf,
  MANAGED_BY_LABEL,
  renderNad,
  renderNotes,
  SRIOV_RESOURCE_ANNOTATION,
} from './netconfig.ts';

const nc = (spec: Record<string, unknown>, meta: Record<string, unknown> = {}): NetworkConfig =>
  validateObject<NetworkConfig>({
    apiVersion: API_VERSION,
    kind: 'NetworkConfig',
    metadata: { name: 'net1', namespace: 'kube-system', ...meta },
    spec,
  });

/** The plugin entry of the conflist inside a rendered NAD. */
const pluginOf = (n: NetworkConfig): Record<string, any> => {
  const conf = JSON.parse(renderNad(n).spec.config);
  assert.equal(conf.plugins.length, 1);
  return conf.plugins[0];
};

describe('renderNad: one plugin per type, ipkeeper as IPAM', () => {
  const pools = { ipv4: ['v4-a', 'v4-b'], ipv6: ['v6-a'] };

  it('macvlan: master, default mode bridge, pools and routes under ipam', () => {
    const n = nc({
      type: 'macvlan',
      master: 'ens192',
      ippools: pools,
      routes: [{ dst: '10.0.0.0/8', gw: '10.6.0.1' }],
      mtu: 9000,
    });
    const conf = JSON.parse(renderNad(n).spec.config);
    assert.deepEqual(conf, {
      cniVersion: '1.0.0',
      name: 'net1',
      plugins: [
        {
          type: 'macvlan',
          master: 'ens192',
          mode: 'bridge',
          mtu: 9000,
          ipam: {
            type: 'ipkeeper',
            pools: { ipv4: ['v4-a', 'v4-b'], ipv6: ['v6-a'] },
            routes: [{ dst: '10.0.0.0/8', gw: '10.6.0.1' }],
          },
        },
      ],
    });
  });

  it('macvlan with vlan attaches to <master>.<vlan>; vlan 0 means untagged', () => {
    assert.equal(
      pluginOf(nc({ type: 'macvlan', master: 'ens192', vlan: 100, mode: 'vepa' })).master,
      'ens192.100',
    );
    assert.equal(pluginOf(nc({ type: 'macvlan', master: 'ens192', vlan: 100, mode: 'vepa' })).mode, 'vepa');
    assert.equal(pluginOf(nc({ type: 'macvlan', master: 'ens192', vlan: 0 })).master, 'ens192');
  });

  it('ipvlan: default mode l2, l3s kept', () => {
    assert.deepEqual(pluginOf(nc({ type: 'ipvlan', master: 'eth1' })), {
      type: 'ipvlan',
      master: 'eth1',
      mode: 'l2',
      ipam: { type: 'ipkeeper' },
    });
    assert.equal(pluginOf(nc({ type: 'ipvlan', master: 'eth1', vlan: 7, mode: 'l3s' })).master, 'eth1.7');
    assert.equal(pluginOf(nc({ type: 'ipvlan', master: 'eth1', mode: 'l3s' })).mode, 'l3s');
  });

  it('sriov: the VF tag in the plugin, the device plugin resource as the NAD annotation', () => {
    const n = nc({
      type: 'sriov',
      resourceName: 'intel.com/sriov_netdevice',
      vlan: 200,
      ippools: { ipv4: ['sriov-v4'] },
    });
    assert.deepEqual(pluginOf(n), {
      type: 'sriov',
      vlan: 200,
      ipam: { type: 'ipkeeper', pools: { ipv4: ['sriov-v4'] } },
    });
    assert.equal(renderNad(n).metadata.annotations?.[SRIOV_RESOURCE_ANNOTATION], 'intel.com/sriov_netdevice');
  });

  it('bridge: the bridge name, vlan and mtu', () => {
    assert.deepEqual(pluginOf(nc({ type: 'bridge', bridge: 'br0', vlan: 30, mtu: 1400 })), {
      type: 'bridge',
      bridge: 'br0',
      vlan: 30,
      mtu: 1400,
      ipam: { type: 'ipkeeper' },
    });
  });

  it('the NAD: same namespace and name, controller ownerReference, our label, no kubectl copy', () => {
    const n = nc(
      { type: 'macvlan', master: 'ens192', cniVersion: '0.4.0' },
      {
        uid: 'u-1',
        labels: { team: 'net' },
        annotations: { note: 'x', 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      },
    );
    const nad = renderNad(n);
    assert.equal(nad.apiVersion, 'k8s.cni.cncf.io/v1');
    assert.equal(nad.kind, 'NetworkAttachmentDefinition');
    assert.equal(nad.metadata.name, 'net1');
    assert.equal(nad.metadata.namespace, 'kube-system');
    assert.deepEqual(nad.metadata.labels, { team: 'net', [MANAGED_BY_LABEL]: 'ipkeeper' });
    assert.deepEqual(nad.metadata.annotations, { note: 'x' });
    assert.deepEqual(nad.metadata.ownerReferences, [
      {
        apiVersion: API_VERSION,
        kind: 'NetworkConfig',
        name: 'net1',
        uid: 'u-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    assert.equal(JSON.parse(nad.spec.config).cniVersion, '0.4.0');
    // Without a uid (embedded mode, `netconfig render`) there is nothing to own it by.
    assert.equal(renderNad(nc({ type: 'macvlan', master: 'ens192' })).metadata.ownerReferences, undefined);
    assert.equal(
      renderNad(nc({ type: 'macvlan', master: 'ens192' }, { namespace: undefined })).metadata.namespace,
      'default',
    );
  });

  it("ipkeeper's own CNI plugin accepts the generated configuration (the keys src/cni/config.ts reads)", () => {
    for (const spec of [
      { type: 'macvlan', master: 'ens192', ippools: pools, routes: [{ dst: '0.0.0.0/0' }] },
      { type: 'sriov', resourceName: 'a.b/c', ippools: { ipv6: ['v6-only'] } },
    ]) {
      const conf = cniConfigOf(nc(spec));
      // Multus hands each plugin of a conflist its entry plus the list's cniVersion and name.
      const { plugins, ...top } = conf as { plugins: Record<string, unknown>[] };
      const parsed = parseNetConf(JSON.stringify({ ...top, ...plugins[0] }), 'ADD');
      assert.equal(parsed.name, 'net1');
      assert.equal(parsed.ipam.type, 'ipkeeper');
      assert.deepEqual(parsed.ipam.pools, (spec as { ippools?: unknown }).ippools);
    }
  });

  it('notes: enableCoordinator has no effect; a VLAN sub-interface must exist', () => {
    const notes = renderNotes(nc({ type: 'macvlan', master: 'ens192', vlan: 5, enableCoordinator: true }));
    assert.equal(notes.length, 2);
    assert.match(notes[0]!, /enableCoordinator has no effect/);
    assert.match(notes[1]!, /ens192\.5 must exist on every node/);
    assert.deepEqual(renderNotes(nc({ type: 'bridge', bridge: 'br0', vlan: 5 })), []);
  });
});

describe('NetworkConfig validation names the field, the value and the fix', () => {
  const errs = (spec: Record<string, unknown>) =>
    objectErrors({
      apiVersion: API_VERSION,
      kind: 'NetworkConfig',
      metadata: { name: 'n', namespace: 'ns' },
      spec,
    });
  const cases: { name: string; spec: Record<string, unknown>; field: string; match: RegExp }[] = [
    {
      name: 'macvlan without master',
      spec: { type: 'macvlan' },
      field: 'spec.master',
      match: /type macvlan needs spec\.master/,
    },
    {
      name: 'sriov without resourceName',
      spec: { type: 'sriov' },
      field: 'spec.resourceName',
      match: /intel\.com/,
    },
    { name: 'bridge without bridge', spec: { type: 'bridge' }, field: 'spec.bridge', match: /bridge: br0/ },
    {
      name: 'sriov with master',
      spec: { type: 'sriov', resourceName: 'a.b/c', master: 'eth0' },
      field: 'spec.master',
      match: /does not take spec\.master/,
    },
    {
      name: 'ipvlan mode bridge',
      spec: { type: 'ipvlan', master: 'eth0', mode: 'bridge' },
      field: 'spec.mode',
      match: /l2, l3, l3s/,
    },
    {
      name: 'macvlan mode l3',
      spec: { type: 'macvlan', master: 'eth0', mode: 'l3' },
      field: 'spec.mode',
      match: /bridge, private, vepa, passthru/,
    },
    {
      name: 'bridge has no mode',
      spec: { type: 'bridge', bridge: 'br0', mode: 'l2' },
      field: 'spec.mode',
      match: /no mode/,
    },
    {
      name: 'vlan 4095',
      spec: { type: 'macvlan', master: 'eth0', vlan: 4095 },
      field: 'spec.vlan',
      match: /4094/,
    },
    {
      name: 'sub-interface too long',
      spec: { type: 'macvlan', master: 'enp175s0f1np1', vlan: 100 },
      field: 'spec.vlan',
      match: /enp175s0f1np1\.100.*longer than 15/,
    },
    {
      name: 'master with a slash',
      spec: { type: 'macvlan', master: 'eth0/1' },
      field: 'spec.master',
      match: /eth0\/1/,
    },
    { name: 'unknown type', spec: { type: 'ovs', bridge: 'br0' }, field: 'spec.type', match: /ovs/ },
    {
      name: 'pool listed twice',
      spec: { type: 'bridge', bridge: 'br0', ippools: { ipv4: ['a', 'a'] } },
      field: 'spec.ippools.ipv4[1]',
      match: /repeats spec\.ippools\.ipv4\[0\]/,
    },
    {
      name: 'bad pool name',
      spec: { type: 'bridge', bridge: 'br0', ippools: { ipv4: ['Pool_A'] } },
      field: 'spec.ippools.ipv4[0]',
      match: /Pool_A/,
    },
    {
      name: 'misspelt family',
      spec: { type: 'bridge', bridge: 'br0', ippools: { ip4: ['a'] } },
      field: 'spec.ippools.ip4',
      match: /unknown field/,
    },
    {
      name: 'route gw of the other family',
      spec: { type: 'bridge', bridge: 'br0', routes: [{ dst: '10.0.0.0/8', gw: 'fd00::1' }] },
      field: 'spec.routes[0].gw',
      match: /same family/,
    },
    {
      name: 'route dst not a CIDR',
      spec: { type: 'bridge', bridge: 'br0', routes: [{ dst: '10.0.0.0/33' }] },
      field: 'spec.routes[0].dst',
      match: /10\.0\.0\.0\/33/,
    },
    {
      name: 'sriov mtu',
      spec: { type: 'sriov', resourceName: 'a.b/c', mtu: 9000 },
      field: 'spec.mtu',
      match: /PF/,
    },
    {
      name: 'mtu too small',
      spec: { type: 'bridge', bridge: 'br0', mtu: 10 },
      field: 'spec.mtu',
      match: /68/,
    },
    {
      name: 'unknown field',
      spec: { type: 'bridge', bridge: 'br0', isGateway: true },
      field: 'spec.isGateway',
      match: /unknown field/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const e = errs(c.spec);
      const hit = e.find((x) => x.field === c.field);
      assert.ok(hit, `no error on ${c.field}: ${JSON.stringify(e)}`);
      assert.match(hit.message, c.match);
    });
  }
  it('a valid one has no errors', () => {
    assert.deepEqual(
      errs({
        type: 'macvlan',
        master: 'ens192',
        vlan: 100,
        mode: 'passthru',
        mtu: 1500,
        ippools: { ipv4: ['a'] },
      }),
      [],
    );
  });
});

/** Seed 000's SpiderMultusConfig, as its shell snippet produces it (MACVLAN_MASTER_INTERFACE=ens192). */
const SEED_000 = `apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderMultusConfig
metadata:
  name: macvlan-ens192
  namespace: kube-system
spec:
  cniType: macvlan
  enableCoordinator: true
  macvlan:
    master:
    - ens192
`;

describe('SpiderMultusConfig → NetworkConfig', () => {
  it("seed 000's manifest converts, validates, and renders the NAD its Deployment names (kube-system/macvlan-ens192)", () => {
    const [c] = parseManifests(SEED_000, 'seed-000.yaml');
    assert.ok(c);
    assert.equal(c.from, 'SpiderMultusConfig macvlan-ens192 (spiderpool.spidernet.io/v2beta1)');
    assert.deepEqual(c.object, {
      apiVersion: API_VERSION,
      kind: 'NetworkConfig',
      metadata: { name: 'macvlan-ens192', namespace: 'kube-system' },
      spec: { type: 'macvlan', master: 'ens192', enableCoordinator: true },
    });
    const nad = renderNad(validateObject<NetworkConfig>(c.object));
    assert.equal(`${nad.metadata.namespace}/${nad.metadata.name}`, 'kube-system/macvlan-ens192');
    assert.deepEqual(JSON.parse(nad.spec.config), {
      cniVersion: '1.0.0',
      name: 'macvlan-ens192',
      plugins: [{ type: 'macvlan', master: 'ens192', mode: 'bridge', ipam: { type: 'ipkeeper' } }],
    });
  });

  it("Spiderpool's reference sample: vlanID, ippools, cr-name and cni-version annotations", () => {
    const [c] = parseManifests(`apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderMultusConfig
metadata:
  name: demo
  namespace: default
  annotations:
    multus.spidernet.io/cr-name: "macvlan-100"
    multus.spidernet.io/cni-version: 0.4.0
    team: net
spec:
  cniType: macvlan
  macvlan:
    master: ["eth0"]
    vlanID: 100
    ippools:
      ipv4: ["default-pool-v4"]
      ipv6: ["default-pool-v6"]
`);
    assert.deepEqual(c?.object, {
      apiVersion: API_VERSION,
      kind: 'NetworkConfig',
      metadata: { name: 'macvlan-100', namespace: 'default', annotations: { team: 'net' } },
      spec: {
        type: 'macvlan',
        master: 'eth0',
        vlan: 100,
        ippools: { ipv4: ['default-pool-v4'], ipv6: ['default-pool-v6'] },
        cniVersion: '0.4.0',
      },
    });
    const plugin = pluginOf(validateObject<NetworkConfig>(c!.object));
    assert.equal(plugin.master, 'eth0.100');
  });

  it('sriov converts resourceName and vlanID', () => {
    const [c] = parseManifests(`apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderMultusConfig
metadata: {name: sriov-net, namespace: ns}
spec:
  cniType: sriov
  sriov: {resourceName: spidernet.io/sriov_netdevice, vlanID: 7, ippools: {ipv4: [p]}}
`);
    assert.deepEqual(c?.object.spec, {
      type: 'sriov',
      resourceName: 'spidernet.io/sriov_netdevice',
      vlan: 7,
      ippools: { ipv4: ['p'] },
    });
  });

  const refusals: { name: string; yaml: string; match: RegExp }[] = [
    {
      name: 'two masters (a Spiderpool bond)',
      yaml: 'cniType: macvlan\n  macvlan: {master: [eth0, eth1], bond: {name: bond0, mode: 1}}',
      match: /spec\.macvlan\.(master lists 2|bond)/,
    },
    { name: 'ovs', yaml: 'cniType: ovs\n  ovs: {bridge: br1}', match: /spec\.ovs is not supported/ },
    { name: 'custom', yaml: 'cniType: custom\n  customCNI: "{}"', match: /spec\.customCNI/ },
    {
      name: 'disableIPAM',
      yaml: 'cniType: macvlan\n  disableIPAM: true\n  macvlan: {master: [eth0]}',
      match: /spec\.disableIPAM is true/,
    },
    {
      name: 'coordinator settings',
      yaml: 'cniType: macvlan\n  coordinator: {mode: underlay}\n  macvlan: {master: [eth0]}',
      match: /spec\.coordinator is not supported/,
    },
    {
      name: 'sriov rate limit',
      yaml: 'cniType: sriov\n  sriov: {resourceName: a.b/c, maxTxRateMbps: 100}',
      match: /spec\.sriov\.maxTxRateMbps/,
    },
    {
      name: 'a block of another type',
      yaml: 'cniType: macvlan\n  macvlan: {master: [eth0]}\n  ipvlan: {master: [eth1]}',
      match: /spec\.ipvlan is set but spec\.cniType is "macvlan"/,
    },
    { name: 'unknown cniType', yaml: 'cniType: weave', match: /spec\.cniType "weave" is not converted/ },
  ];
  for (const r of refusals) {
    it(`refuses ${r.name}, naming the field`, () => {
      const text = `apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderMultusConfig\nmetadata: {name: x, namespace: ns}\nspec:\n  ${r.yaml}\n`;
      assert.throws(
        () => parseManifests(text),
        (e: unknown) =>
          e instanceof IpamError &&
          e.code === 'INVALID_OBJECT' &&
          r.match.test(e.message) &&
          /SpiderMultusConfig "x"/.test(e.message),
      );
    });
  }

  it('refuses a cni-version annotation ipkeeper does not speak', () => {
    assert.throws(
      () =>
        parseManifests(
          'apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderMultusConfig\nmetadata: {name: x, namespace: ns, annotations: {multus.spidernet.io/cni-version: 0.2.0}}\nspec: {cniType: macvlan, macvlan: {master: [eth0]}}\n',
        ),
      /multus\.spidernet\.io\/cni-version.*0\.2\.0.*0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/,
    );
  });
});
