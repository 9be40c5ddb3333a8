/**
 * The cluster GC against a real API server: pods deleted without a CNI DEL, finished, or stuck
 * terminating past their grace (no kubelet here: a gracefully deleted pod bound to a node stays
 * terminating, exactly the leak case), a fixed StatefulSet pod's addresses kept while its
 * StatefulSet wants them and within retention, and a claim reused between the judgment and the
 * delete left alone. Claims and endpoints are written as the engine writes them. Time is injected
 * (`ctx.now`): the candidate grace and the retention pass by moving the clock, not by sleeping;
 * one last GC runs on the real clock to show the event-driven path.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { makeContext, type ControllerContext } from '../../src/controller/context.ts';
import { GcReconciler, type GcReport } from '../../src/controller/gc.ts';
import { startWorkloadCache, type WorkloadCache } from '../../src/cluster/workloads.ts';
import { openKubernetesStore } from '../../src/store/kubernetes.ts';
import type { Store } from '../../src/store/store.ts';
import { API_VERSION, type Endpoint, type IPClaim } from '../../src/api/kinds.ts';
import { addrKey, parseAddr } from '../../src/net/addr.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrds, until } from './crds.ts';

const suffix = randomBytes(3).toString('hex');
const NS = `ipk-gc-${suffix}`;
const READY = `ipk-gc-ready-${suffix}`;
const NOT_READY = `ipk-gc-down-${suffix}`;
const NETWORK = `ipk-gc-${suffix}`;
const POOL = `gc-pool-${suffix}`;
const GRACE_MS = 30_000;
/**
 * Events about cluster-scoped objects (pools) must be in "default": the API server refuses an Event
 * whose involvedObject has no namespace in any other namespace.
 */
const CONTROLLER_NS = 'default';

describe('cluster GC of leaked addresses', () => {
  let cluster: TestCluster;
  let store: Store;
  let ctx: ControllerContext;
  let workloads: WorkloadCache;
  let gc: GcReconciler;
  let offset = 0;
  let nextIp = 10;

  const create = async (path: string, body: unknown): Promise<any> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.equal(r.status, 201, `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    return r.body;
  };
  const node = (name: string, ready: boolean) =>
    create('/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name },
      status: {
        conditions: [
          {
            type: 'Ready',
            status: ready ? 'True' : 'False',
            reason: 'PlayedByTheTest',
            lastHeartbeatTime: new Date().toISOString(),
            lastTransitionTime: new Date().toISOString(),
          },
        ],
      },
    });
  /** A pod bound to `nodeName` (there is no kubelet: it never runs), and the informer has seen it. */
  const pod = async (name: string, nodeName: string): Promise<string> => {
    const p = await create(`/api/v1/namespaces/${NS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name },
      spec: {
        nodeName,
        automountServiceAccountToken: false,
        containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
      },
    });
    await until(`pod ${name} in the GC's informer`, () =>
      gc.podSeen(NS, name)?.uid === p.metadata.uid ? true : undefined,
    );
    return p.metadata.uid;
  };
  const claim = async (
    podName: string,
    uid: string | undefined,
    extra: Partial<IPClaim['spec']> = {},
  ): Promise<{ key: string; ip: string }> => {
    const ip = `10.20.0.${nextIp++}`;
    const key = `ipclaims/${NETWORK}.${addrKey(parseAddr(ip))}`;
    const c: IPClaim = {
      apiVersion: API_VERSION,
      kind: 'IPClaim',
      metadata: { name: key.slice('ipclaims/'.length) },
      spec: {
        network: NETWORK,
        ip,
        family: 4,
        pool: POOL,
        owner: { kind: 'Pod', namespace: NS, name: podName, ...(uid ? { uid } : {}) },
        cniNetwork: 'macvlan-ens192',
        containerId: `c-${podName}`,
        ifName: 'eth0',
        node: READY,
        createdAt: new Date().toISOString(),
        ...extra,
      },
    };
    assert.ok((await store.create(key, c)).created, key);
    return { key, ip };
  };
  const exists = async (key: string): Promise<boolean> => (await store.get(key)) !== undefined;
  /** One scan, the candidate grace, another scan: what a leaked claim goes through. */
  const scanTwice = async (): Promise<GcReport> => {
    await gc.scan();
    offset += GRACE_MS;
    return gc.scan();
  };
  /** IPReclaimed events about `name`: a pod's in its namespace, a pool's in the controller's. */
  const events = async (name: string, ns = NS): Promise<any[]> => {
    const r = await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${ns}/events`);
    return (r.body.items ?? []).filter(
      (e: any) => e.reason === 'IPReclaimed' && e.involvedObject.name === name,
    );
  };

  before(async () => {
    cluster = await startTestCluster();
    await installCrds(cluster);
    await node(READY, true);
    await node(NOT_READY, false);
    await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    // No controller-manager: make the namespace's default service account ourselves.
    await create(`/api/v1/namespaces/${NS}/serviceaccounts`, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'default' },
    });
    store = await openKubernetesStore(`kubernetes:${cluster.kubeconfigPath}`);
    ctx = await makeContext({
      kubeconfig: cluster.kubeconfigPath,
      store,
      namespace: CONTROLLER_NS,
      now: () => Date.now() + offset,
    });
    workloads = await startWorkloadCache(ctx.kc, { kinds: ['StatefulSet'] });
    // Passes only when the test calls scan(): the clock is the test's.
    // Only this run's claims: against an external cluster, nobody else's are touched.
    gc = new GcReconciler({
      workloads,
      scanIntervalMs: 0,
      events: false,
      graceMs: GRACE_MS,
      networks: [NETWORK],
    });
    await gc.start(ctx);
  });

  after(async () => {
    await gc?.stop();
    await workloads?.stop();
    if (cluster) {
      if (store) {
        for (const e of await store.list<IPClaim>('ipclaims/'))
          if (e.value.spec?.network === NETWORK) await store.delete(e.key, e.version);
        await store.close();
      }
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
      for (const n of [READY, NOT_READY]) await kubeRequest(cluster, 'DELETE', `/api/v1/nodes/${n}`);
      await cluster.stop();
    }
  });

  it('a pod deleted without CNI DEL: its claim is a candidate, then released after the grace, with an event on the pool', async () => {
    const uid = await pod('gone', READY);
    const { key, ip } = await claim('gone', uid);
    assert.deepEqual((await gc.scan()).released, [], 'a live pod keeps its address');
    const d = await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}/pods/gone`, {
      gracePeriodSeconds: 0,
    });
    assert.equal(d.status, 200);
    await until('the deletion in the informer', () => (gc.podSeen(NS, 'gone') ? undefined : true));
    const first = await gc.scan();
    assert.deepEqual(first.released, [], 'only a candidate before the grace');
    assert.ok(await exists(key));
    offset += GRACE_MS;
    const r = await gc.scan();
    assert.deepEqual(
      r.released.map((x) => [x.ip, x.reason]),
      [[ip, `pod ${NS}/gone is gone`]],
    );
    assert.equal(await exists(key), false);
    const ev = await until(
      'the IPReclaimed event on the pool',
      async () => (await events(POOL, CONTROLLER_NS))[0],
    );
    assert.equal(ev.involvedObject.kind, 'IPPool');
    assert.match(
      ev.message,
      new RegExp(
        `released ${ip.replaceAll('.', '\\.')} \\(pool ${POOL}, interface eth0, node ${READY}\\) of pod ${NS}/gone: pod ${NS}/gone is gone`,
      ),
    );
  });

  it('a finished (Succeeded) pod: released, with an event on the pod', async () => {
    const uid = await pod('done', READY);
    const { key } = await claim('done', uid);
    const s = await kubeRequest(cluster, 'PATCH', `/api/v1/namespaces/${NS}/pods/done/status`, {
      status: { phase: 'Succeeded' },
    });
    assert.equal(s.status, 200);
    await until('phase Succeeded in the informer', () =>
      gc.podSeen(NS, 'done')?.phase === 'Succeeded' ? true : undefined,
    );
    const r = await scanTwice();
    assert.deepEqual(
      r.released.map((x) => x.reason),
      [`pod ${NS}/done has finished (phase Succeeded)`],
    );
    assert.equal(await exists(key), false);
    const ev = await until('the event on the pod', async () => (await events('done'))[0]);
    assert.equal(ev.involvedObject.kind, 'Pod');
  });

  it('a pod terminating past its grace on a NotReady node: kept within the grace, released after', async () => {
    const uid = await pod('stuck', NOT_READY);
    const { key } = await claim('stuck', uid, { node: NOT_READY });
    // A long grace: the test's clock is already ahead of the API server's by the earlier tests' grace.
    const d = await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}/pods/stuck`, {
      gracePeriodSeconds: 3600,
    });
    assert.equal(d.status, 200);
    // No kubelet confirms the deletion: the pod stays, terminating.
    await until('terminating in the informer', () =>
      gc.podSeen(NS, 'stuck')?.deletionTimestamp ? true : undefined,
    );
    assert.deepEqual(
      (await scanTwice()).released,
      [],
      'within its grace period the pod may still run its DEL',
    );
    assert.ok(await exists(key));
    offset += 2 * 3_600_000;
    const r = await scanTwice();
    assert.equal(r.released.length, 1);
    assert.match(
      r.released[0]!.reason,
      new RegExp(`pod ${NS}/stuck is terminating past its grace period .* on NotReady node ${NOT_READY}`),
    );
    assert.equal(await exists(key), false);
  });

  it("a fixed StatefulSet pod's addresses: kept while the StatefulSet wants them and within retention, then released", async () => {
    const sts = await create(`/apis/apps/v1/namespaces/${NS}/statefulsets`, {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'db' },
      spec: {
        replicas: 1,
        serviceName: 'db',
        selector: { matchLabels: { app: 'db' } },
        template: {
          metadata: { labels: { app: 'db' } },
          spec: { containers: [{ name: 'c', image: 'registry.invalid/db:1' }] },
        },
      },
    });
    await until('the StatefulSet in the cache', () => workloads.get('StatefulSet', NS, 'db'));
    // db-0's sandbox had its CNI DEL: the engine kept the claim (fixed) and stamped releasedAt.
    const { key, ip } = await claim('db-0', 'old-uid', { fixed: true, endpoint: `${NS}/db-0` });
    const ep: Endpoint = {
      apiVersion: API_VERSION,
      kind: 'Endpoint',
      metadata: { name: 'db-0', namespace: NS },
      spec: {
        podUid: 'old-uid',
        node: READY,
        owner: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: sts.metadata.uid },
        fixed: 'StatefulSet',
        retention: '1h',
        interfaces: [
          {
            ifName: 'eth0',
            cniNetwork: 'macvlan-ens192',
            ips: [{ ip, family: 4, pool: POOL, network: NETWORK, claim: key }],
          },
        ],
        releasedAt: new Date(ctx.now()).toISOString(),
      },
    };
    assert.ok((await store.create(`endpoints/${NS}/db-0`, ep)).created);
    let r = await scanTwice();
    assert.deepEqual(r.released, [], 'the StatefulSet still wants db-0');
    assert.ok(await exists(key));
    await kubeRequest(cluster, 'PATCH', `/apis/apps/v1/namespaces/${NS}/statefulsets/db`, {
      spec: { replicas: 0 },
    });
    await until('replicas 0 in the cache', () =>
      workloads.get('StatefulSet', NS, 'db')?.replicas === 0 ? true : undefined,
    );
    r = await scanTwice();
    assert.deepEqual(r.released, [], 'scaled away, but within its 1h retention');
    assert.ok(await exists(key));
    offset += 3_600_000;
    r = await scanTwice();
    assert.equal(r.released.length, 1);
    assert.match(r.released[0]!.reason, /scaled to 0 replicas, below ordinal 0 .*retention 1h is over/);
    assert.equal(await exists(key), false);
    assert.equal(await exists(`endpoints/${NS}/db-0`), false, 'the endpoint goes with its last address');
  });

  it('a claim reused by another owner between the judgment and the delete is not deleted', async () => {
    const uid = await pod('old', READY);
    const { key } = await claim('old', uid);
    await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}/pods/old`, { gracePeriodSeconds: 0 });
    await until('the deletion in the informer', () => (gc.podSeen(NS, 'old') ? undefined : true));
    await gc.scan();
    offset += GRACE_MS;
    const due = await gc.judge();
    assert.deepEqual(
      due.map((d) => d.key),
      [key],
      'judged leaked at its old version',
    );
    // Meanwhile the address was released and taken by a new pod (a new claim version).
    const newUid = await pod('new', READY);
    const cur = await store.get<IPClaim>(key);
    assert.ok(cur);
    const u = await store.update(
      key,
      {
        ...cur.value,
        spec: {
          ...cur.value.spec,
          owner: { kind: 'Pod', namespace: NS, name: 'new', uid: newUid },
          containerId: 'c-new',
        },
      },
      cur.version,
    );
    assert.ok(u.ok);
    const r = await gc.releaseDue(due);
    assert.deepEqual(r.released, []);
    assert.match(r.skipped[0]?.why ?? '', /^changed/);
    assert.equal((await store.get<IPClaim>(key))?.value.spec.owner.name, 'new');
    assert.deepEqual((await scanTwice()).released, [], 'the new owner is alive');
  });

  it('event-driven: a pod deletion releases its claim without a periodic scan', async () => {
    const live = await makeContext({ kubeconfig: cluster.kubeconfigPath, store, namespace: CONTROLLER_NS });
    const eventGc = new GcReconciler({ workloads, scanIntervalMs: 0, graceMs: 200, networks: [NETWORK] });
    await eventGc.start(live);
    try {
      const p = await create(`/api/v1/namespaces/${NS}/pods`, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'quick' },
        spec: {
          nodeName: READY,
          automountServiceAccountToken: false,
          containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
        },
      });
      const { key } = await claim('quick', p.metadata.uid);
      await until('the pod in the event GC', () => (eventGc.podSeen(NS, 'quick') ? true : undefined));
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}/pods/quick`, { gracePeriodSeconds: 0 });
      await until('the claim released', async () => ((await exists(key)) ? undefined : true));
      await until('its event', async () =>
        (await events(POOL, CONTROLLER_NS)).find((e) => /of pod .*\/quick:/.test(e.message)),
      );
    } finally {
      await eventGc.stop();
    }
  });
});
