/** Seed 002's Kube-OVN Vip YAML and seed 004's CiliumNode YAML, converted and validated. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IpamError } from '../errors.ts';
import { parseManifests } from './manifests.ts';
import { validateObject } from './validate.ts';

export const SEED_002_VIPS = `apiVersion: kubeovn.io/v1
kind: Vip
metadata:
  name: vip-dynamic-01
spec:
  subnet: ovn-default
  type: ""
---
apiVersion: kubeovn.io/v1
kind: Vip
metadata:
  name: static-vip01
spec:
  subnet: ovn-default 
  v4ip: "10.16.0.121"
---
apiVersion: kubeovn.io/v1
kind: Vip
metadata:
  name: vip-aap
spec:
  subnet: ovn-default
  namespace: default
  selector:
    - "app: aap1"
---
apiVersion: kubeovn.io/v1
kind: Vip
metadata:
  name: slr-01
spec:
  subnet: ovn-default
  type: switch_lb_vip
---
apiVersion: kubeovn.io/v1
kind: Vip
metadata:
  name: pod-use-vip
spec:
  subnet: ovn-default
  type: ""
`;

export const SEED_004_CILIUM_NODE = `apiVersion: "cilium.io/v2"
kind: CiliumNode
metadata:
  name: "k8s1"
spec:
  ipam:
    pool:
      192.168.1.1: {}
      192.168.1.2: {}
      192.168.1.3: {}
      192.168.1.4: {}
`;

describe('convert: Kube-OVN Vip (seed 002)', () => {
  it('every Vip of the seed becomes a valid VIP', () => {
    const out = parseManifests(SEED_002_VIPS, 'seed-002.yaml');
    assert.equal(out.length, 5);
    for (const c of out) validateObject(c.object);
    const byName = Object.fromEntries(out.map((c) => [c.object.metadata.name, c.object.spec]));
    // type "" is the default (an IPAM placeholder): left out.
    assert.deepEqual(byName['vip-dynamic-01'], { pool: 'ovn-default' });
    assert.deepEqual(byName['static-vip01'], { pool: 'ovn-default', v4ip: '10.16.0.121' });
    assert.deepEqual(byName['vip-aap'], {
      pool: 'ovn-default',
      namespace: 'default',
      selector: ['app: aap1'],
    });
    assert.deepEqual(byName['slr-01'], { pool: 'ovn-default', type: 'switch_lb_vip' });
    assert.equal(out[0]?.from, 'Vip vip-dynamic-01 (kubeovn.io/v1)');
  });
  it('macAddress becomes mac; empty strings are "not set"; unknown fields are refused by name', () => {
    const [c] = parseManifests(
      'apiVersion: kubeovn.io/v1\nkind: Vip\nmetadata: {name: m}\nspec: {subnet: s, macAddress: "00:00:00:F0:DB:25", v6ip: ""}\n',
    );
    assert.deepEqual(c?.object.spec, { pool: 's', mac: '00:00:00:F0:DB:25' });
    assert.throws(
      () =>
        parseManifests(
          'apiVersion: kubeovn.io/v1\nkind: Vip\nmetadata: {name: m}\nspec: {subnet: s, attachSubnets: [a]}\n',
        ),
      (e: unknown) => e instanceof IpamError && /spec\.attachSubnets is not supported/.test(e.message),
    );
  });
});

describe('convert: CiliumNode (seed 004)', () => {
  it('spec.ipam.pool becomes a NodePool named after the node', () => {
    const [c] = parseManifests(SEED_004_CILIUM_NODE);
    assert.deepEqual(c?.object, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'NodePool',
      metadata: { name: 'k8s1' },
      spec: { pool: { '192.168.1.1': {}, '192.168.1.2': {}, '192.168.1.3': {}, '192.168.1.4': {} } },
    });
    validateObject(c?.object);
  });
  it('the kubectl get output (with status) converts; status is left to the agent', () => {
    const [c] = parseManifests(
      `${SEED_004_CILIUM_NODE}status:\n  ipam:\n    used:\n      192.168.1.1:\n        owner: router\n`,
    );
    assert.equal(c?.object.status, undefined);
  });
  it('keeps resources, merges ipv6-pool, refuses another IPAM mode', () => {
    const [c] = parseManifests(
      'apiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata: {name: n}\nspec:\n  ipam:\n    pool: {10.0.0.1: {resource: eni-1, owner: x}}\n    ipv6-pool: {"fd00::1": {}}\n  health: {ipv4: 10.0.0.1}\n',
    );
    assert.deepEqual(c?.object.spec, { pool: { '10.0.0.1': { resource: 'eni-1' }, 'fd00::1': {} } });
    assert.throws(
      () =>
        parseManifests(
          'apiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata: {name: n}\nspec: {ipam: {podCIDRs: [10.0.0.0/24]}}\n',
        ),
      (e: unknown) =>
        e instanceof IpamError && /spec\.ipam\.podCIDRs belongs to another Cilium IPAM mode/.test(e.message),
    );
    assert.throws(
      () =>
        parseManifests('apiVersion: cilium.io/v2\nkind: CiliumNode\nmetadata: {name: n}\nspec: {eni: {}}\n'),
      (e: unknown) => e instanceof IpamError && /spec\.eni is not supported/.test(e.message),
    );
  });
});
