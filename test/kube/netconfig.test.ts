/**
 * NetworkConfig → Multus NetworkAttachmentDefinition against a real API server: ipkeeper's CRDs and
 * Multus's NAD CRD (fixtures/nad-crd.yaml, as Multus ships it), the reconciler run with
 * `makeContext` as the controller runs it. NetworkConfigs are created, changed and deleted as
 * `kubectl` would; the NAD must follow. No controller-manager runs, so no garbage collector: a NAD
 * that goes with its NetworkConfig was deleted by the reconciler (its ownerReference is checked so a
 * real cluster's GC would do the same).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { parseManifests } from '../../src/api/manifests.ts';
import { makeContext, type ControllerContext } from '../../src/controller/context.ts';
import { NetworkConfigReconciler } from '../../src/controller/netconfig.ts';
import { openKubernetesStore } from '../../src/store/kubernetes.ts';
import type { Store } from '../../src/store/store.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrd, installCrds, until } from './crds.ts';
import { loadFixture } from './fixtures/fixtures.ts';

const suffix = randomBytes(3).toString('hex');
const NS = `ipk-nc-${suffix}`;
const NC_API = `/apis/ipkeeper.io/v1alpha1/namespaces/${NS}/networkconfigs`;
const NAD_API = `/apis/k8s.cni.cncf.io/v1/namespaces/${NS}/network-attachment-definitions`;
const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';
/** Resync this often, so hand-made damage is repaired within the test's patience. */
const RESYNC_MS = 300;

describe('NetworkConfig reconciler: the NAD follows its NetworkConfig', () => {
  let cluster: TestCluster;
  let store: Store;
  let ctx: ControllerContext;
  let rec: NetworkConfigReconciler;
  let nadCrdOurs = false;

  const create = async (path: string, body: unknown): Promise<any> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.equal(r.status, 201, `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    return r.body;
  };
  const nad = async (name: string): Promise<any | undefined> => {
    const r = await kubeRequest(cluster, 'GET', `${NAD_API}/${name}`);
    return r.status === 200 ? r.body : undefined;
  };
  const pluginOf = (n: any): Record<string, any> => JSON.parse(n.spec.config).plugins[0];
  const event = (name: string, reason: string, match?: RegExp) =>
    until(`a ${reason} event on NetworkConfig ${name}`, async () => {
      const r = await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${NS}/events`);
      return (r.body.items ?? []).find(
        (e: any) =>
          e.involvedObject.kind === 'NetworkConfig' &&
          e.involvedObject.name === name &&
          e.reason === reason &&
          (!match || match.test(e.message)),
      );
    });

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    store = await openKubernetesStore(`kubernetes:${cluster.kubeconfigPath}`);
    ctx = await makeContext({ kubeconfig: cluster.kubeconfigPath, store, namespace: NS });
    rec = new NetworkConfigReconciler({ resyncMs: RESYNC_MS });
  });

  after(async () => {
    await rec?.stop();
    await store?.close();
    if (cluster) {
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
      if (nadCrdOurs)
        await kubeRequest(cluster, 'DELETE', `${CRD_PATH}/network-attachment-definitions.k8s.cni.cncf.io`);
      await cluster.stop();
    }
  });

  it('without Multus the NetworkConfig gets a Warning saying so; installing the NAD CRD brings the NAD', async (t) => {
    const [crd] = loadFixture('nad-crd.yaml');
    const preinstalled =
      (await kubeRequest(cluster, 'GET', `${CRD_PATH}/${crd!.metadata.name}`)).status === 200;
    await rec.start(ctx);
    // Seed 000's SpiderMultusConfig, converted as `ipkeeper apply` converts it, created as its CR.
    const [c] = parseManifests(
      `apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderMultusConfig
metadata:
  name: macvlan-ens192
  namespace: ${NS}
spec:
  cniType: macvlan
  enableCoordinator: true
  macvlan:
    master:
    - ens192
`,
    );
    const nc = await create(NC_API, c!.object);
    if (preinstalled) {
      t.diagnostic('external cluster already has Multus: the missing-CRD warning cannot be shown');
    } else {
      await event(
        'macvlan-ens192',
        'NetworkAttachmentFailed',
        /network-attachment-definitions\.k8s\.cni\.cncf\.io\) is not installed; install Multus/,
      );
      await installCrd(cluster, crd!);
      nadCrdOurs = true;
    }
    const n = await until('the NAD of seed 000', () => nad('macvlan-ens192'), 60_000);
    assert.deepEqual(JSON.parse(n.spec.config), {
      cniVersion: '1.0.0',
      name: 'macvlan-ens192',
      plugins: [{ type: 'macvlan', master: 'ens192', mode: 'bridge', ipam: { type: 'ipkeeper' } }],
    });
    assert.deepEqual(n.metadata.ownerReferences, [
      {
        apiVersion: 'ipkeeper.io/v1alpha1',
        kind: 'NetworkConfig',
        name: 'macvlan-ens192',
        uid: nc.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    assert.equal(n.metadata.labels['app.kubernetes.io/managed-by'], 'ipkeeper');
    await event('macvlan-ens192', 'NetworkAttachmentCreated');
  });

  it('a NetworkConfig applied → its NAD; changed → the NAD updated; deleted → the NAD gone', async () => {
    await create(NC_API, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'NetworkConfig',
      metadata: { name: 'vlan100', labels: { team: 'net' } },
      spec: {
        type: 'macvlan',
        master: 'ens192',
        vlan: 100,
        ippools: { ipv4: ['pool-v4'], ipv6: ['pool-v6'] },
        routes: [{ dst: '10.0.0.0/8', gw: '10.6.0.1' }],
      },
    });
    const first = await until('the NAD', () => nad('vlan100'));
    assert.deepEqual(pluginOf(first), {
      type: 'macvlan',
      master: 'ens192.100',
      mode: 'bridge',
      ipam: {
        type: 'ipkeeper',
        pools: { ipv4: ['pool-v4'], ipv6: ['pool-v6'] },
        routes: [{ dst: '10.0.0.0/8', gw: '10.6.0.1' }],
      },
    });
    assert.equal(first.metadata.labels.team, 'net');

    const p = await kubeRequest(cluster, 'PATCH', `${NC_API}/vlan100`, {
      spec: { type: 'ipvlan', mode: 'l3', vlan: 200, mtu: 9000 },
    });
    assert.equal(p.status, 200, JSON.stringify(p.body));
    const changed = await until('the NAD updated to ipvlan', async () => {
      const n = await nad('vlan100');
      return n && pluginOf(n).type === 'ipvlan' ? n : undefined;
    });
    assert.deepEqual(pluginOf(changed), {
      type: 'ipvlan',
      master: 'ens192.200',
      mode: 'l3',
      mtu: 9000,
      ipam: {
        type: 'ipkeeper',
        pools: { ipv4: ['pool-v4'], ipv6: ['pool-v6'] },
        routes: [{ dst: '10.0.0.0/8', gw: '10.6.0.1' }],
      },
    });
    assert.equal(changed.metadata.uid, first.metadata.uid, 'updated in place, not recreated');
    await event('vlan100', 'NetworkAttachmentUpdated');

    const d = await kubeRequest(cluster, 'DELETE', `${NC_API}/vlan100`);
    assert.equal(d.status, 200);
    await until('the NAD gone', async () => ((await nad('vlan100')) ? undefined : true));
  });

  it('a NAD deleted or edited by hand is put back', async () => {
    await create(NC_API, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'NetworkConfig',
      metadata: { name: 'br' },
      spec: { type: 'bridge', bridge: 'br0', vlan: 30 },
    });
    const n = await until('the NAD', () => nad('br'));
    assert.deepEqual(pluginOf(n), { type: 'bridge', bridge: 'br0', vlan: 30, ipam: { type: 'ipkeeper' } });
    const edit = await kubeRequest(cluster, 'PATCH', `${NAD_API}/br`, {
      spec: { config: '{"cniVersion":"1.0.0","name":"br","plugins":[{"type":"bridge","bridge":"evil"}]}' },
    });
    assert.equal(edit.status, 200);
    await until('the edit undone', async () =>
      (await nad('br')) && pluginOf((await nad('br'))!).bridge === 'br0' ? true : undefined,
    );
    assert.equal((await kubeRequest(cluster, 'DELETE', `${NAD_API}/br`)).status, 200);
    const back = await until('the NAD recreated', () => nad('br'));
    assert.notEqual(back.metadata.uid, n.metadata.uid);
  });

  it("someone else's NAD of the same name is not overwritten: a Warning says how to fix it", async () => {
    const config =
      '{"cniVersion":"0.3.1","name":"theirs","type":"macvlan","master":"eth9","ipam":{"type":"whereabouts"}}';
    await create(NAD_API, {
      apiVersion: 'k8s.cni.cncf.io/v1',
      kind: 'NetworkAttachmentDefinition',
      metadata: { name: 'theirs' },
      spec: { config },
    });
    await create(NC_API, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'NetworkConfig',
      metadata: { name: 'theirs' },
      spec: { type: 'macvlan', master: 'eth0' },
    });
    await event(
      'theirs',
      'NetworkAttachmentRefused',
      /was not made from this NetworkConfig; ipkeeper does not overwrite it — delete it \(kubectl -n ipk-nc-\w+ delete net-attach-def theirs\)/,
    );
    assert.equal((await nad('theirs'))?.spec.config, config);
    // Deleting our NetworkConfig must not take their NAD with it.
    assert.equal((await kubeRequest(cluster, 'DELETE', `${NC_API}/theirs`)).status, 200);
    await rec.sync(); // a whole pass after the delete, which must leave their NAD alone
    assert.equal((await nad('theirs'))?.spec.config, config);
  });

  it('a NetworkConfig the CRD schema admits but ipkeeper refuses (macvlan without master) gets a Warning and no NAD', async () => {
    await create(NC_API, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'NetworkConfig',
      metadata: { name: 'no-master' },
      spec: { type: 'macvlan', vlan: 5 },
    });
    await event('no-master', 'NetworkAttachmentRefused', /spec\.master: type macvlan needs spec\.master/);
    assert.equal(await nad('no-master'), undefined);
    // Fixing it brings the NAD.
    assert.equal(
      (await kubeRequest(cluster, 'PATCH', `${NC_API}/no-master`, { spec: { master: 'eth1' } })).status,
      200,
    );
    const n = await until('the NAD after the fix', () => nad('no-master'));
    assert.equal(pluginOf(n).master, 'eth1.5');
  });

  it('a NAD of ours whose NetworkConfig vanished while no controller ran is deleted on start', async () => {
    await rec.stop();
    await create(NC_API, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'NetworkConfig',
      metadata: { name: 'offline' },
      spec: { type: 'ipvlan', master: 'eth0' },
    });
    rec = new NetworkConfigReconciler({ resyncMs: RESYNC_MS });
    await rec.start(ctx);
    assert.ok(await nad('offline'), 'start resolves after the first pass, which created it');
    await rec.stop();
    assert.equal((await kubeRequest(cluster, 'DELETE', `${NC_API}/offline`)).status, 200);
    assert.ok(await nad('offline'), 'nobody deleted it meanwhile (no GC here)');
    rec = new NetworkConfigReconciler({ resyncMs: RESYNC_MS });
    await rec.start(ctx);
    assert.equal(await nad('offline'), undefined);
  });
});
