/**
 * Seed 002 in Kubernetes mode, against a real kube-apiserver: the seed's Kube-OVN Vip YAML,
 * converted as `ipkeeper apply -f` converts it and created as VIP custom resources (as kubectl would);
 * the VIP reconciler (`makeContext`, as the controller runs it) fills their status — dynamic and
 * static addresses, MAC, ready, a refusal for a taken address — and binds the pods of the VIP's
 * namespace that match its selector and list it in ovn.kubernetes.io/aaps. The agent, in Kubernetes
 * mode and driven as a kubelet drives it, gives a pod annotated ovn.kubernetes.io/vip the VIP's
 * address and refuses a second pod, naming the first.
 *
 * Names carry a per-run tag and live in their own network, so the file also runs against a shared
 * cluster (IPKEEPER_TEST_KUBECONFIG) and cleans up after itself.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent, type Agent } from '../../src/agent/server.ts';
import { call } from '../../src/cli/client.ts';
import { IpamError } from '../../src/errors.ts';
import type { CniRequest, IpamResult } from '../../src/cni/protocol.ts';
import { parseManifests } from '../../src/api/manifests.ts';
import { validateObject } from '../../src/api/validate.ts';
import type { AnyObject, VIP } from '../../src/api/kinds.ts';
import { makeContext } from '../../src/controller/context.ts';
import { VipReconciler } from '../../src/controller/vip.ts';
import { openKubernetesStore } from '../../src/store/kubernetes.ts';
import type { Store } from '../../src/store/store.ts';
import { vipMac } from '../../src/ipam/vip.ts';
import { SEED_002_VIPS } from '../../src/api/convert-vip.test.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds, until } from './crds.ts';

const TAG = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
const NS = `ipk-vip-${TAG}`;
const OTHER_NS = `ipk-vip-other-${TAG}`;
const NODE = `ipk-vip-node-${TAG}`;
const NETWORK = `vip-${TAG}`;
const POOL = `ovn-default-${TAG}`;
/** A second network for the VIP from a Subnet (POOL holds every address of NETWORK's /16). */
const NETWORK2 = `vips-${TAG}`;
const POOL2 = `lb-app-${TAG}`;
const API = '/apis/ipkeeper.io/v1alpha1';
const n = (name: string): string => `${name}-${TAG}`;

describe('seed 002 in Kubernetes mode: VIP CRs, the reconciler, allowed address pairs, a pod using a VIP', () => {
  let cluster: TestCluster;
  let store: Store;
  let rec: VipReconciler;
  let agent: Agent;
  const dir = mkdtempSync(join(tmpdir(), 'ipk-kvip-'));
  const socket = join(dir, 'agent.sock');

  const create = async (path: string, body: unknown): Promise<void> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.ok([201, 409].includes(r.status), `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  };
  const pod = (
    ns: string,
    name: string,
    annotations: Record<string, string>,
    labels: Record<string, string> = {},
  ) =>
    create(`/api/v1/namespaces/${ns}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns, annotations, labels },
      spec: {
        nodeName: NODE,
        automountServiceAccountToken: false,
        containers: [{ name: 'c', image: 'busybox' }],
      },
    });
  const getVip = async (name: string): Promise<VIP> =>
    (await kubeRequest(cluster, 'GET', `${API}/vips/${name}`)).body;
  const vipWhere = (name: string, what: string, ok: (v: VIP) => boolean): Promise<VIP> =>
    until(`VIP ${name}: ${what}`, async () => {
      const v = await getVip(name);
      return ok(v) ? v : undefined;
    });
  /** ADD as the kubelet sends it: with the pod's real uid. */
  const add = async (name: string, containerId: string): Promise<IpamResult> => {
    const uid = (await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${NS}/pods/${name}`)).body.metadata
      .uid;
    return call<IpamResult>(socket, 'POST', '/v1/cni/add', {
      command: 'ADD',
      containerId,
      ifName: 'eth0',
      network: 'ovn-net',
      cniVersion: '1.0.0',
      args: { K8S_POD_NAMESPACE: NS, K8S_POD_NAME: name, K8S_POD_UID: uid },
      ipam: { type: 'ipkeeper', pools: { ipv4: [POOL] } },
    } satisfies CniRequest);
  };

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    await create('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE } });
    for (const ns of [NS, OTHER_NS]) {
      await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
      await create(`/api/v1/namespaces/${ns}/serviceaccounts`, {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: { name: 'default', namespace: ns },
      });
    }
    await create(`${API}/ippools`, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: POOL },
      spec: { subnet: '10.16.0.0/16', gateway: '10.16.0.1', network: NETWORK },
    });
    store = await openKubernetesStore(`kubernetes:${cluster.kubeconfigPath}`);
    const ctx = await makeContext({ kubeconfig: cluster.kubeconfigPath, store, namespace: 'default' });
    rec = new VipReconciler({ delayMs: 20 });
    await rec.start(ctx);
    agent = await startAgent({
      store: `kubernetes:${cluster.kubeconfigPath}`,
      socket,
      node: NODE,
      logLevel: 'silent',
      defaultMetrics: false,
      reclaimIntervalMs: 0,
    });
  });

  after(async () => {
    await agent?.close();
    await rec?.stop();
    if (cluster) {
      for (const ns of [NS, OTHER_NS]) await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${ns}`);
      await kubeRequest(cluster, 'DELETE', `/api/v1/nodes/${NODE}`);
      if (store) {
        for (const e of await store.list<VIP>('vips/'))
          if (e.key.endsWith(TAG)) await store.delete(e.key, e.version);
        for (const e of await store.list<AnyObject>('ipclaims/')) {
          if ([NETWORK, NETWORK2].includes((e.value.spec as { network?: string }).network ?? ''))
            await store.delete(e.key, e.version);
        }
        for (const key of [`ippools/${POOL}`, `ippools/${POOL2}`, `subnets/${n('lb-net')}`]) {
          const p = await store.get(key);
          if (p) await store.delete(p.key, p.version);
        }
        await store.close();
      }
      await cluster.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("the seed's Vip YAML, converted and created as CRs, gets addresses, MAC and ready", async () => {
    for (const c of parseManifests(SEED_002_VIPS)) {
      const spec = { ...(c.object.spec as VIP['spec']), pool: POOL };
      if (spec.namespace === 'default') spec.namespace = NS;
      const o = validateObject<VIP>({ ...c.object, metadata: { name: n(c.object.metadata.name) }, spec });
      await create(`${API}/vips`, o);
    }
    const dyn = await vipWhere(n('vip-dynamic-01'), 'ready', (v) => v.status?.ready === true);
    assert.match(dyn.status?.v4ip ?? '', /^10\.16\.\d+\.\d+$/);
    assert.equal(dyn.status?.mac, vipMac(dyn.status?.v4ip as string));
    const st = await vipWhere(n('static-vip01'), 'ready', (v) => v.status?.ready === true);
    assert.equal(st.status?.v4ip, '10.16.0.121');
    const slr = await vipWhere(n('slr-01'), 'ready', (v) => v.status?.ready === true);
    assert.equal(slr.spec.type, 'switch_lb_vip');
    // The address is an IPClaim owned by the VIP.
    const claims = (await kubeRequest(cluster, 'GET', `${API}/ipclaims`)).body.items as any[];
    const c = claims.find((x) => x.spec.ip === '10.16.0.121' && x.spec.network === NETWORK);
    assert.equal(c?.spec.owner.kind, 'VIP');
    assert.equal(c?.spec.owner.name, n('static-vip01'));
    // kubectl get vip shows the Kube-OVN columns.
    const crd = await kubeRequest(
      cluster,
      'GET',
      '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/vips.ipkeeper.io',
    );
    const cols = crd.body.spec.versions[0].additionalPrinterColumns.map((x: { name: string }) => x.name);
    assert.deepEqual(cols.slice(0, 5), ['V4IP', 'MAC', 'V6IP', 'Pool', 'Ready']);
  });

  it('a static address already taken: not ready, the reason in status.message and a Warning event', async () => {
    await create(`${API}/vips`, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'VIP',
      metadata: { name: n('static-vip02') },
      spec: { pool: POOL, v4ip: '10.16.0.121' },
    });
    const v = await vipWhere(
      n('static-vip02'),
      'a message',
      (x) => x.status?.message !== undefined && x.status.message !== 'no address allocated yet',
    );
    assert.equal(v.status?.ready, false);
    assert.match(
      v.status?.message ?? '',
      new RegExp(`spec\\.v4ip 10\\.16\\.0\\.121 is held by VIP ${n('static-vip01')}`),
    );
    await until('the Warning event', async () => {
      const ev = await kubeRequest(
        cluster,
        'GET',
        `/api/v1/namespaces/default/events?fieldSelector=involvedObject.name=${n('static-vip02')}`,
      );
      return ev.body.items?.some((e: { reason: string }) => e.reason === 'VIPNotReady') ? true : undefined;
    });
  });

  it('allowed address pairs: only same-namespace pods matching the selector and listing the VIP are bound', async () => {
    const aap = n('vip-aap');
    await pod(NS, 'busybox', { 'ovn.kubernetes.io/aaps': aap }, { app: 'aap1' });
    await pod(NS, 'busybox01', { 'ipkeeper.io/aaps': `other,${aap}` }, { app: 'aap1' });
    await pod(NS, 'wrong-label', { 'ovn.kubernetes.io/aaps': aap }, { app: 'web' });
    await pod(NS, 'not-listing', {}, { app: 'aap1' });
    await pod(OTHER_NS, 'foreign', { 'ovn.kubernetes.io/aaps': aap }, { app: 'aap1' });
    const v = await vipWhere(aap, 'two pods', (x) => (x.status?.pods ?? []).length === 2);
    assert.deepEqual(v.status?.pods, ['busybox', 'busybox01']);
    assert.equal(v.status?.ready, true);
    // A pod that goes is unbound.
    await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}/pods/busybox01?gracePeriodSeconds=0`);
    const after1 = await vipWhere(aap, 'one pod', (x) => (x.status?.pods ?? []).length === 1);
    assert.deepEqual(after1.status?.pods, ['busybox']);
  });

  it('a pod annotated ovn.kubernetes.io/vip gets the VIP address; a second pod is refused naming the first', async () => {
    const name = n('pod-use-vip');
    const vip = await vipWhere(name, 'ready', (x) => x.status?.ready === true);
    await pod(NS, 'static-ip', { 'ovn.kubernetes.io/vip': name });
    await pod(NS, 'static-ip-2', { 'ovn.kubernetes.io/vip': name });
    const a = await add('static-ip', 'kv-c1');
    assert.deepEqual(
      a.ips.map((i) => i.address),
      [`${vip.status?.v4ip}/16`],
    );
    const e = await add('static-ip-2', 'kv-c2').catch((x: unknown) => x);
    assert.ok(e instanceof IpamError, String(e));
    assert.equal(e.code, 'ADDRESS_IN_USE');
    assert.match(e.message, new RegExp(`which is used by pod ${NS}/static-ip;`));
    const bound = await vipWhere(name, 'status.pod', (x) => x.status?.pod !== undefined);
    assert.equal(bound.status?.pod, `${NS}/static-ip`);
    // The first pod is deleted without a DEL (a lost node): the reconciler clears the binding, and
    // the second pod gets the address.
    await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}/pods/static-ip?gracePeriodSeconds=0`);
    await vipWhere(name, 'the binding cleared', (x) => x.status?.pod === undefined);
    const b = await until('the second pod to get the VIP', async () =>
      add('static-ip-2', 'kv-c2').catch(() => undefined),
    );
    assert.deepEqual(
      b.ips.map((i) => i.address),
      [`${vip.status?.v4ip}/16`],
    );
  });

  it('a VIP CR from a Subnet takes an address no pool of the Subnet holds; deleting it releases it', async () => {
    const subnet = n('lb-net');
    const vipName = n('vip-from-subnet');
    await create(`${API}/subnets`, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'Subnet',
      metadata: { name: subnet },
      spec: { subnet: '10.17.0.0/24', ips: ['10.17.0.10-10.17.0.20'], network: NETWORK2 },
    });
    // A pool carved from it holds .10-.12: the VIP takes .13.
    await create(`${API}/ippools`, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: POOL2 },
      spec: { subnet: '10.17.0.0/24', ips: ['10.17.0.10-10.17.0.12'], network: NETWORK2 },
    });
    await until('the pool in the cache', async () =>
      (await store.get(`ippools/${POOL2}`)) ? true : undefined,
    );
    await create(`${API}/vips`, {
      apiVersion: 'ipkeeper.io/v1alpha1',
      kind: 'VIP',
      metadata: { name: vipName },
      spec: { subnet },
    });
    const v = await vipWhere(vipName, 'ready', (x) => x.status?.ready === true);
    assert.equal(v.status?.v4ip, '10.17.0.13');
    const claims = (await kubeRequest(cluster, 'GET', `${API}/ipclaims`)).body.items as any[];
    const c = claims.find((x) => x.spec.network === NETWORK2 && x.spec.ip === '10.17.0.13');
    assert.equal(c?.spec.owner.name, vipName);
    assert.equal(c?.spec.pool, `subnet/${subnet}`);
    // Deleted: its claim goes (the orphan release, here without the grace period).
    const orphanGrace = new VipReconciler({ delayMs: 20, orphanGraceMs: 0 });
    const ctx = await makeContext({ kubeconfig: cluster.kubeconfigPath, store, namespace: 'default' });
    await kubeRequest(cluster, 'DELETE', `${API}/vips/${vipName}`);
    await orphanGrace.start(ctx);
    try {
      await until('the claim to go', async () => {
        const all = (await kubeRequest(cluster, 'GET', `${API}/ipclaims`)).body.items as any[];
        return all.some((x) => x.spec.network === NETWORK2) ? undefined : true;
      });
    } finally {
      await orphanGrace.stop();
    }
  });

  it('deleting a VIP CR releases its address', async () => {
    const name = n('vip-dynamic-01');
    const ip = (await getVip(name)).status?.v4ip;
    assert.ok(ip);
    const orphanGrace = new VipReconciler({ delayMs: 20, orphanGraceMs: 0 });
    const ctx = await makeContext({ kubeconfig: cluster.kubeconfigPath, store, namespace: 'default' });
    await kubeRequest(cluster, 'DELETE', `${API}/vips/${name}`);
    await orphanGrace.start(ctx);
    try {
      await until('the claim to go', async () => {
        const claims = (await kubeRequest(cluster, 'GET', `${API}/ipclaims`)).body.items as any[];
        return claims.some((x) => x.spec.ip === ip && x.spec.network === NETWORK) ? undefined : true;
      });
    } finally {
      await orphanGrace.stop();
    }
  });
});
