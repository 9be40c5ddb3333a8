/**
 * Application pools against a real API server with its controllers (seed 001): the seed's
 * SpiderSubnet YAML converted and applied, a Deployment annotated with Spiderpool's
 * `ipam.spidernet.io/subnets` (two interfaces) and `ippool-ip-number: "+1"`, scaled while the test
 * counts pool addresses, a shrink held back by claims, deletion with the application, a pool kept
 * by `ippool-reclaim: "false"` and adopted by a re-created Deployment, and StatefulSet, Job and
 * DaemonSet sizing. No kubelet: pods never run, which sizing does not need (it follows the
 * workload's spec); claims are written as the engine writes them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { makeContext, type ControllerContext } from '../../src/controller/context.ts';
import { AppPoolReconciler } from '../../src/controller/app-pools.ts';
import { startWorkloadCache, type WorkloadCache } from '../../src/cluster/workloads.ts';
import { openKubernetesStore } from '../../src/store/kubernetes.ts';
import type { Store } from '../../src/store/store.ts';
import { parseManifests } from '../../src/api/manifests.ts';
import { validateObject } from '../../src/api/validate.ts';
import { API_VERSION, type AnyObject, type IPClaim, type IPPool, type Subnet } from '../../src/api/kinds.ts';
import { addrKey, formatValue, parseAddr } from '../../src/net/addr.ts';
import { IntervalSet } from '../../src/net/interval-set.ts';
import { APP_KINDS, appPoolName } from '../../src/ipam/app-pool.ts';
import type { WorkloadKind } from '../../src/cluster/workloads.ts';
import { startKubeView } from '../../src/agent/kube-view.ts';
import { runController } from '../../src/controller/main.ts';
import { PoolFinalizerReconciler } from '../../src/controller/finalizer.ts';
import { PoolStatusReconciler } from '../../src/controller/pool-status.ts';
import { GcReconciler } from '../../src/controller/gc.ts';
import { freePorts } from '../lib/ports.ts';
import { Ipam } from '../../src/ipam/engine.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds, readyNode, until } from './crds.ts';

const suffix = randomBytes(3).toString('hex');
const NS = `ipk-ap-${suffix}`;
const NODE = `ipk-ap-node-${suffix}`;
/** A uniqueness domain of this run only: nothing else in an external cluster overlaps it. */
const NETWORK = `ipk-ap-${suffix}`;
const SUBNET6 = `subnet-6-${suffix}`;
const SUBNET7 = `subnet-7-${suffix}`;
const SLOW_MS = 90_000;

/** The seed's SpiderSubnets, as a migrating user has them (names made unique to this run). */
const SEED_SUBNETS = `
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderSubnet
metadata:
  name: ${SUBNET6}
spec:
  ipVersion: 4
  subnet: 10.6.0.0/16
  gateway: 10.6.0.1
  ips:
    - 10.6.168.101-10.6.168.160
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderSubnet
metadata:
  name: ${SUBNET7}
spec:
  ipVersion: 4
  subnet: 10.7.0.0/16
  gateway: 10.7.0.1
  ips:
    - 10.7.168.101-10.7.168.160
`;

describe('application pools follow replicas (seed 001), with real controllers', () => {
  let cluster: TestCluster;
  let store: Store;
  let ctx: ControllerContext;
  let workloads: WorkloadCache;
  let rec: AppPoolReconciler;

  const create = async (path: string, body: unknown): Promise<any> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.equal(r.status, 201, `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    return r.body;
  };
  const template = (
    labels: Record<string, string>,
    annotations: Record<string, string>,
    extra: Record<string, unknown> = {},
  ) => ({
    metadata: { labels, annotations },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': NODE },
      automountServiceAccountToken: false,
      containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
      ...extra,
    },
  });
  const deployment = (name: string, replicas: number, annotations: Record<string, string>) =>
    create(`/apis/apps/v1/namespaces/${NS}/deployments`, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name },
      spec: {
        replicas,
        selector: { matchLabels: { app: name } },
        template: template({ app: name }, annotations),
      },
    });
  const pool = async (name: string): Promise<IPPool | undefined> =>
    (await store.get<IPPool>(`ippools/${name}`))?.value;
  const size = (p: IPPool | undefined): number =>
    p?.spec.ips ? Number(IntervalSet.parse(4, p.spec.ips).size()) : -1;
  /** Waits until the pool holds `n` addresses (-1: until it is gone). */
  const poolSize = (name: string, n: number): Promise<IPPool | true> =>
    until(
      `IPPool ${name} with ${n < 0 ? 'no object' : `${n} addresses`}`,
      async () => {
        const p = await pool(name);
        if (n < 0) return p === undefined ? true : undefined;
        return size(p) === n ? p : undefined;
      },
      SLOW_MS,
    );
  const dep = (name: string) => ({ kind: 'Deployment', namespace: NS, name });
  const claim = async (p: IPPool, ip: string): Promise<string> => {
    const key = `ipclaims/${NETWORK}.${addrKey(parseAddr(ip))}`;
    const c: IPClaim = {
      apiVersion: API_VERSION,
      kind: 'IPClaim',
      metadata: { name: key.slice('ipclaims/'.length) },
      spec: {
        network: NETWORK,
        ip,
        family: 4,
        pool: p.metadata.name,
        owner: { kind: 'Pod', namespace: NS, name: `holder-${ip.replaceAll('.', '-')}` },
        createdAt: new Date().toISOString(),
      },
    };
    const r = await store.create(key, c);
    assert.ok(r.created, `claim ${key}`);
    return key;
  };
  const unclaim = async (key: string): Promise<void> => {
    const e = await store.get(key);
    assert.ok(e, key);
    assert.ok((await store.delete(key, e.version)).ok);
  };
  const events = async (reason: string): Promise<any[]> => {
    const r = await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${NS}/events`);
    return (r.body.items ?? []).filter((e: any) => e.reason === reason);
  };

  before(async () => {
    cluster = await startTestCluster({ controllerManager: true, scheduler: true });
    await installCrds(cluster);
    await create('/api/v1/nodes', readyNode(NODE));
    await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    store = await openKubernetesStore(`kubernetes:${cluster.kubeconfigPath}`);
    // The seed's SpiderSubnet YAML, converted as `ipkeeper apply -f` converts it, in this run's network.
    for (const c of parseManifests(SEED_SUBNETS)) {
      const o = validateObject<AnyObject>({
        ...c.object,
        spec: { ...(c.object.spec as object), network: NETWORK },
      });
      assert.equal(o.kind, 'Subnet');
      const r = await store.create(`subnets/${o.metadata.name}`, o);
      assert.ok(r.created);
    }
    // Events about pools (cluster-scoped) are accepted by the API server in "default" only.
    ctx = await makeContext({ kubeconfig: cluster.kubeconfigPath, store, namespace: 'default' });
    workloads = await startWorkloadCache(ctx.kc, { kinds: APP_KINDS as unknown as WorkloadKind[] });
    // Only this run's namespace: against an external cluster, nobody else's workloads are touched.
    rec = new AppPoolReconciler({ workloads, delayMs: 50, namespaces: [NS] });
    await rec.start(ctx);
  });

  after(async () => {
    await rec?.stop();
    await workloads?.stop();
    if (cluster) {
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
      await kubeRequest(cluster, 'DELETE', `/api/v1/nodes/${NODE}`);
      if (store) {
        for (const prefix of ['ippools/', 'ipclaims/', 'subnets/']) {
          for (const e of await store.list<AnyObject>(prefix)) {
            const net = (e.value.spec as { network?: string } | undefined)?.network;
            if (net === NETWORK) await store.delete(e.key, e.version);
          }
        }
        await store.close();
      }
      await cluster.stop();
    }
  });

  it('seed 001 walkthrough: 2 replicas with +1 make two pools of 3; scale to 3 makes them 4', async () => {
    await deployment('test-app', 2, {
      'ipam.spidernet.io/subnets': `[{"interface": "eth0", "ipv4": ["${SUBNET6}"]},\n {"interface": "net1", "ipv4": ["${SUBNET7}"]}]`,
      'ipam.spidernet.io/ippool-ip-number': '+1',
      'v1.multus-cni.io/default-network': 'kube-system/macvlan-ens192',
      'k8s.v1.cni.cncf.io/networks': 'kube-system/macvlan-ens224',
    });
    const eth0 = appPoolName(dep('test-app'), 4, 'eth0');
    const net1 = appPoolName(dep('test-app'), 4, 'net1');
    const p0 = (await poolSize(eth0, 3)) as IPPool;
    const p1 = (await poolSize(net1, 3)) as IPPool;
    assert.deepEqual(p0.spec.ips, ['10.6.168.101-10.6.168.103']);
    assert.deepEqual(p1.spec.ips, ['10.7.168.101-10.7.168.103']);
    assert.equal(p0.spec.gateway, '10.6.0.1');
    assert.equal(p0.spec.network, NETWORK);
    assert.deepEqual(p0.spec.podAffinity, { matchLabels: { app: 'test-app' } });
    assert.equal(p0.metadata.labels?.['ipkeeper.io/owner-application'], `Deployment_${NS}_test-app`);
    const owner = (p0.metadata as { ownerReferences?: { kind: string; name: string }[] })
      .ownerReferences?.[0];
    assert.deepEqual([owner?.kind, owner?.name], ['Deployment', 'test-app']);

    const scaled = await kubeRequest(
      cluster,
      'PATCH',
      `/apis/apps/v1/namespaces/${NS}/deployments/test-app`,
      { spec: { replicas: 3 } },
    );
    assert.equal(scaled.status, 200);
    assert.deepEqual(((await poolSize(eth0, 4)) as IPPool).spec.ips, ['10.6.168.101-10.6.168.104']);
    await poolSize(net1, 4);
    // The Subnet's status says which pool holds which of its addresses.
    const s = await until('the Subnet status', async () => {
      const v = (await store.get<Subnet>(`subnets/${SUBNET6}`))?.value;
      return v?.status?.pools?.[eth0]?.[0] === '10.6.168.101-10.6.168.104' ? v : undefined;
    });
    assert.deepEqual(s.status?.pools?.[eth0], ['10.6.168.101-10.6.168.104']);
    assert.equal(s.status?.total, 60);
    await until('a PoolResized event on the Deployment', async () => {
      const ev = await events('PoolResized');
      return ev.find((e) => e.involvedObject.name === 'test-app' && /from 3 to 4/.test(e.message));
    });
  });

  it("a pod of the Deployment gets its addresses from the application pools, per interface (the agent's engine)", async () => {
    const kube = await startKubeView(cluster.kubeconfigPath, NODE);
    const ipam = new Ipam({ store, node: NODE, view: kube.view });
    try {
      await ipam.start();
      const podName = await until(
        'a test-app pod on our node, owned up to the Deployment',
        async () => {
          const r = await kubeRequest(
            cluster,
            'GET',
            `/api/v1/namespaces/${NS}/pods?labelSelector=app%3Dtest-app`,
          );
          const p = (r.body.items ?? []).find((x: any) => x.spec.nodeName === NODE);
          return p && kube.view.pod(NS, p.metadata.name)?.owners.at(-1)?.kind === 'Deployment'
            ? (p.metadata.name as string)
            : undefined;
        },
        SLOW_MS,
      );
      const owner = { kind: 'Pod', namespace: NS, name: podName };
      const req = { cniNetwork: 'macvlan-ens192', containerId: `c-${suffix}`, owner };
      const a = await ipam.add({ ...req, ifName: 'eth0' });
      const b = await ipam.add({ ...req, ifName: 'net1' });
      assert.equal(a.ips[0]?.pool, appPoolName(dep('test-app'), 4, 'eth0'));
      assert.match(a.ips[0]?.address ?? '', /^10\.6\.168\.10[1-4]\/16$/);
      assert.equal(b.ips[0]?.pool, appPoolName(dep('test-app'), 4, 'net1'));
      assert.match(b.ips[0]?.address ?? '', /^10\.7\.168\.10[1-4]\/16$/);
      await ipam.release({ ...req, ifName: 'eth0' });
      await ipam.release({ ...req, ifName: 'net1' });
    } finally {
      await ipam.stop();
      await kube.stop();
    }
  });

  it('scale down shrinks only by addresses no claim holds', async () => {
    const eth0 = appPoolName(dep('test-app'), 4, 'eth0');
    const p = (await pool(eth0))!;
    // Three of the four addresses are in use by pods of the old replicas.
    const keys = [];
    for (const ip of ['10.6.168.102', '10.6.168.103', '10.6.168.104']) keys.push(await claim(p, ip));
    await kubeRequest(cluster, 'PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/test-app`, {
      spec: { replicas: 0 },
    });
    // Wants 1; only the free 10.6.168.101 may go.
    assert.deepEqual(((await poolSize(eth0, 3)) as IPPool).spec.ips, ['10.6.168.102-10.6.168.104']);
    await poolSize(appPoolName(dep('test-app'), 4, 'net1'), 1);
    await unclaim(keys[0]!);
    assert.deepEqual(((await poolSize(eth0, 2)) as IPPool).spec.ips, ['10.6.168.103-10.6.168.104']);
    await unclaim(keys[1]!);
    await unclaim(keys[2]!);
    const one = (await poolSize(eth0, 1)) as IPPool;
    assert.equal(size(one), 1);
  });

  it('deleting the application deletes its pools', async () => {
    const d = await kubeRequest(cluster, 'DELETE', `/apis/apps/v1/namespaces/${NS}/deployments/test-app`);
    assert.equal(d.status, 200);
    await poolSize(appPoolName(dep('test-app'), 4, 'eth0'), -1);
    await poolSize(appPoolName(dep('test-app'), 4, 'net1'), -1);
  });

  it('ippool-reclaim "false" keeps the pool; a re-created Deployment of the same name adopts it', async () => {
    const ann = {
      'ipkeeper.io/subnet': `{"ipv4": ["${SUBNET6}"]}`,
      'ipkeeper.io/ippool-ip-number': '2',
      'ipkeeper.io/ippool-reclaim': 'false',
    };
    const first = await deployment('keep-app', 5, ann);
    const name = appPoolName(dep('keep-app'), 4, 'eth0');
    const p = (await poolSize(name, 2)) as IPPool;
    assert.equal((p.metadata as { ownerReferences?: unknown[] }).ownerReferences, undefined);
    assert.equal(p.metadata.annotations?.['ipkeeper.io/owner-application-uid'], first.metadata.uid);
    await kubeRequest(cluster, 'DELETE', `/apis/apps/v1/namespaces/${NS}/deployments/keep-app`);
    await until('the Deployment gone from the cache', () =>
      workloads.get('Deployment', NS, 'keep-app') ? undefined : true,
    );
    await rec.pass();
    const kept = await pool(name);
    assert.deepEqual(kept?.spec.ips, p.spec.ips, 'the pool outlives its application');
    const second = await deployment('keep-app', 1, ann);
    const adopted = await until('the pool adopted by the new Deployment', async () => {
      const v = await pool(name);
      return v?.metadata.annotations?.['ipkeeper.io/owner-application-uid'] === second.metadata.uid
        ? v
        : undefined;
    });
    assert.deepEqual(adopted.spec.ips, p.spec.ips, 'same addresses for the same application');
  });

  it('StatefulSet (+1), Job (parallelism +1), DaemonSet (scheduled nodes +1) and CronJob (job parallelism +1)', async () => {
    const ann = { 'ipkeeper.io/subnet': `{"ipv4": ["${SUBNET7}"]}` };
    await create(`/apis/apps/v1/namespaces/${NS}/statefulsets`, {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'db' },
      spec: {
        replicas: 2,
        serviceName: 'db',
        selector: { matchLabels: { app: 'db' } },
        template: template({ app: 'db' }, ann),
      },
    });
    await poolSize(appPoolName({ kind: 'StatefulSet', namespace: NS, name: 'db' }, 4, 'eth0'), 3);
    await create(`/apis/batch/v1/namespaces/${NS}/jobs`, {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'batch' },
      spec: { parallelism: 2, template: template({ app: 'batch' }, ann, { restartPolicy: 'Never' }) },
    });
    const job = (await poolSize(
      appPoolName({ kind: 'Job', namespace: NS, name: 'batch' }, 4, 'eth0'),
      3,
    )) as IPPool;
    assert.deepEqual(job.spec.podAffinity, { matchLabels: { 'job-name': 'batch' } });
    await create(`/apis/apps/v1/namespaces/${NS}/daemonsets`, {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'agent' },
      spec: {
        selector: { matchLabels: { app: 'agent' } },
        template: template({ app: 'agent' }, ann, { tolerations: [{ operator: 'Exists' }] }),
      },
    });
    // One Node: desiredNumberScheduled 1, +1.
    await poolSize(appPoolName({ kind: 'DaemonSet', namespace: NS, name: 'agent' }, 4, 'eth0'), 2);
    // CronJob (batch/v1beta1 on v1.20): its job template's parallelism 3, +1; the Jobs it starts
    // (made here by hand with the controller reference the CronJob controller writes) get no pool.
    const disc = await kubeRequest(cluster, 'GET', '/apis/batch/v1');
    const cjVersion = (disc.body.resources ?? []).some((r: any) => r.name === 'cronjobs') ? 'v1' : 'v1beta1';
    const jobSpec = {
      parallelism: 3,
      template: template({ app: 'nightly' }, ann, { restartPolicy: 'Never' }),
    };
    const cj = await create(`/apis/batch/${cjVersion}/namespaces/${NS}/cronjobs`, {
      apiVersion: `batch/${cjVersion}`,
      kind: 'CronJob',
      metadata: { name: 'nightly' },
      spec: { schedule: '0 0 1 1 *', suspend: true, jobTemplate: { spec: jobSpec } },
    });
    const cjPool = (await poolSize(
      appPoolName({ kind: 'CronJob', namespace: NS, name: 'nightly' }, 4, 'eth0'),
      4,
    )) as IPPool;
    assert.deepEqual(cjPool.spec.podAffinity, { matchLabels: { app: 'nightly' } });
    await create(`/apis/batch/v1/namespaces/${NS}/jobs`, {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name: 'nightly-27000000',
        ownerReferences: [
          {
            apiVersion: `batch/${cjVersion}`,
            kind: 'CronJob',
            name: 'nightly',
            uid: cj.metadata.uid,
            controller: true,
          },
        ],
      },
      spec: jobSpec,
    });
    await until('the Job in the cache', () => workloads.get('Job', NS, 'nightly-27000000'));
    await rec.pass();
    assert.equal(
      await pool(appPoolName({ kind: 'Job', namespace: NS, name: 'nightly-27000000' }, 4, 'eth0')),
      undefined,
    );
    // Pools of one Subnet never overlap.
    let all = IntervalSet.empty(4);
    let total = 0n;
    for (const e of await store.list<IPPool>('ippools/')) {
      if (e.value.spec.network !== NETWORK) continue;
      const s = IntervalSet.parse(4, e.value.spec.ips ?? []);
      all = all.union(s);
      total += s.size();
    }
    assert.equal(all.size(), total, `overlapping pools: ${formatValue(4, all.min() ?? 0n)}...`);
  });

  it('a bad annotation is a Warning event on the workload naming it, the value and the fix', async () => {
    await deployment('broken', 1, {
      'ipkeeper.io/subnet': `{"ipv4": ["${SUBNET6}"]}`,
      'ipkeeper.io/ippool-ip-number': 'lots',
    });
    const ev = await until('an InvalidAnnotation event', async () =>
      (await events('InvalidAnnotation')).find((e) => e.involvedObject.name === 'broken'),
    );
    assert.equal(ev.type, 'Warning');
    assert.match(
      ev.message,
      /ipkeeper\.io\/ippool-ip-number: "lots" is not valid; use a number of addresses/,
    );
    await deployment('no-subnet', 1, { 'ipkeeper.io/subnet': '{"ipv4": ["no-such-subnet"]}' });
    const ev2 = await until('a SubnetNotFound event', async () =>
      (await events('SubnetNotFound')).find((e) => e.involvedObject.name === 'no-subnet'),
    );
    assert.match(ev2.message, /Subnet "no-such-subnet" \(interface eth0, IPv4\).*create the Subnet/);
  });
  it('the leader-elected controller runs the walkthrough with the pool finalizer: +1, scale 2 → 3, delete', async () => {
    // The scoped reconciler steps aside; the controller's own instance takes over (scoped the same
    // way, so an external cluster's other workloads are left alone).
    await rec.stop();
    const [port] = await freePorts(1);
    const ctl = await runController({
      kubeconfig: cluster.kubeconfigPath,
      namespace: NS,
      id: `ap-${suffix}`,
      leaseName: `ipk-ap-${suffix}`,
      retryPeriodMs: 200,
      webhookListen: `127.0.0.1:${port}`,
      reconcilers: [
        () => new PoolFinalizerReconciler(),
        () => new PoolStatusReconciler(),
        () => new AppPoolReconciler({ namespaces: [NS] }),
        () => new GcReconciler({ networks: [NETWORK] }),
      ],
      logLevel: 'silent',
      defaultMetrics: false,
      store,
    });
    try {
      await until('the controller to lead', () => (ctl.isLeader() ? true : undefined), SLOW_MS);
      await deployment('walk', 2, {
        'ipam.spidernet.io/subnet': `{"ipv4": ["${SUBNET6}"]}`,
        'ipam.spidernet.io/ippool-ip-number': '+1',
      });
      const name = appPoolName(dep('walk'), 4, 'eth0');
      await poolSize(name, 3);
      await until('the pool finalizer and status on the application pool', async () => {
        const p = await pool(name);
        return p?.metadata.finalizers?.includes('ipkeeper.io/pool-in-use') && p.status?.total === 3
          ? true
          : undefined;
      });
      await kubeRequest(cluster, 'PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/walk`, {
        spec: { replicas: 3 },
      });
      await poolSize(name, 4);
      await kubeRequest(cluster, 'DELETE', `/apis/apps/v1/namespaces/${NS}/deployments/walk`);
      await poolSize(name, -1);
    } finally {
      await ctl.close();
    }
  });
});
