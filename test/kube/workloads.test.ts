/**
 * The workload cache and the agent's owner chains against a real API server WITH its controllers:
 * kube-controller-manager turns Deployments into ReplicaSets into Pods, StatefulSets, DaemonSets and
 * Jobs into Pods, and kube-scheduler binds them to a Node the test plays the kubelet for (no
 * kubelet: pods never run, which the chain does not need). The agent's view (`startKubeView`) must
 * report every pod's owners up to the top controller — by GETting each owner, never by listing or
 * watching workloads (the agent talks through a recording proxy, and the test reads what it asked).
 * The workload cache (`startWorkloadCache`) is the controller's.
 *
 * CronJob: its controller only starts a Job on the schedule's next minute (up to 70 s on v1.20's
 * 10 s sync), so the test creates the Job with a controller reference to the CronJob by hand —
 * exactly what the CronJob controller writes — and the Job controller makes the pod from it.
 *
 * KubeVirt is not installed here: the test installs minimal kubevirt.io/v1 CRDs
 * (fixtures/kubevirt-crds.yaml) after the cache started, and shows discovery start the informers;
 * a virt-launcher pod owned by a VirtualMachineInstance owned by a VirtualMachine gets the chain.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startKubeView, type KubeView } from '../../src/agent/kube-view.ts';
import { startWorkloadCache, type WorkloadCache, type WorkloadInfo } from '../../src/cluster/workloads.ts';
import { kubeRequest, startTestCluster, type TestCluster } from './cluster.ts';
import { installCrd, readyNode, until } from './crds.ts';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy.ts';
import { loadFixture } from './fixtures/fixtures.ts';

const suffix = randomBytes(3).toString('hex');
const NS = `ipk-wl-${suffix}`;
const NODE = `ipk-wl-node-${suffix}`;
/** Controllers and the scheduler on a shared 2-core machine: generous, and only a bound. */
const SLOW_MS = 90_000;
const CRD_PATH = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions';

const names = (refs: { kind: string; name: string }[] | undefined): string[] =>
  (refs ?? []).map((r) => `${r.kind}/${r.name}`);

describe('workload informers and owner chains, with real controllers', () => {
  let cluster: TestCluster;
  let kube: KubeView;
  let proxy: RecordingProxy;
  let workloads: WorkloadCache;
  const events: string[] = [];
  /** CRDs this test installed (an external cluster may have KubeVirt for real: left alone). */
  const ourCrds: string[] = [];

  const create = async (path: string, body: unknown): Promise<any> => {
    const r = await kubeRequest(cluster, 'POST', path, body);
    assert.equal(r.status, 201, `${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 400)}`);
    return r.body;
  };
  /** A pod template that schedules onto our Node only and needs no token secret. */
  const template = (labels: Record<string, string>, extra: Record<string, unknown> = {}) => ({
    metadata: { labels, annotations: { 'ipkeeper.io/ippool': '{"ipv4": ["pool-a"]}' } },
    spec: {
      nodeSelector: { 'kubernetes.io/hostname': NODE },
      automountServiceAccountToken: false,
      containers: [{ name: 'c', image: 'registry.invalid/app:1' }],
      ...extra,
    },
  });
  /** The pods on our Node with these labels, once there are `n` of them in the agent's view. */
  const podsInView = (selector: string, n: number) =>
    until(
      `${n} pod(s) ${selector} in the agent's view`,
      async () => {
        const r = await kubeRequest(
          cluster,
          'GET',
          `/api/v1/namespaces/${NS}/pods?labelSelector=${encodeURIComponent(selector)}`,
        );
        const items: any[] = (r.body?.items ?? []).filter((p: any) => p.spec.nodeName === NODE);
        if (items.length !== n) return undefined;
        const seen = items.map((p) => kube.view.pod(NS, p.metadata.name));
        return seen.every((p) => p !== undefined) ? seen : undefined;
      },
      SLOW_MS,
    );
  /** Waits until the agent's view reports this pod's owners as `want`. */
  const chainOf = (pod: string, want: string[]) =>
    until(
      `pod ${pod} owners ${want.join(' → ')}`,
      () => {
        const got = names(kube.view.pod(NS, pod)?.owners);
        return JSON.stringify(got) === JSON.stringify(want) ? got : undefined;
      },
      SLOW_MS,
    ).catch((e: Error) => {
      throw new Error(
        `${e.message}; last seen: ${names(kube.view.pod(NS, pod)?.owners).join(' → ') || '(none)'}`,
      );
    });

  before(async () => {
    cluster = await startTestCluster({ controllerManager: true, scheduler: true });
    await create('/api/v1/nodes', readyNode(NODE));
    await create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    // Pods are admitted only once the namespace's default ServiceAccount exists (the controller
    // manager makes it; the controllers retry meanwhile, the test's own pod would not).
    await until(
      'the default ServiceAccount',
      async () =>
        (await kubeRequest(cluster, 'GET', `/api/v1/namespaces/${NS}/serviceaccounts/default`)).status === 200
          ? true
          : undefined,
      SLOW_MS,
    );
    proxy = await startRecordingProxy(cluster);
    // A TTL longer than the test, so "each owner once" does not depend on how fast the machine is.
    kube = await startKubeView(proxy.kubeconfigPath, NODE, { owners: { ttlMs: 3_600_000 } });
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfigPath);
    workloads = await startWorkloadCache(kc, { discoveryIntervalMs: 250 });
    workloads.on((type, w) => {
      if (w.namespace === NS) events.push(`${type} ${w.kind}/${w.name}`);
    });
  });

  after(async () => {
    await kube?.stop();
    await workloads?.stop();
    await proxy?.stop();
    if (cluster) {
      await kubeRequest(cluster, 'DELETE', `/api/v1/namespaces/${NS}`);
      await kubeRequest(cluster, 'DELETE', `/api/v1/nodes/${NODE}`);
      for (const name of ourCrds) await kubeRequest(cluster, 'DELETE', `${CRD_PATH}/${name}`);
      await cluster.stop();
    }
  });

  it('discovery: apps/v1 and batch kinds are served; CronJob from the version the server has', async () => {
    for (const k of ['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'] as const) {
      assert.equal(workloads.has(k), true, k);
    }
    const disc = await kubeRequest(cluster, 'GET', '/apis/batch/v1');
    const v1HasCronJobs = (disc.body.resources ?? []).some((r: any) => r.name === 'cronjobs');
    const cj = await create(`/apis/batch/${v1HasCronJobs ? 'v1' : 'v1beta1'}/namespaces/${NS}/cronjobs`, {
      apiVersion: `batch/${v1HasCronJobs ? 'v1' : 'v1beta1'}`,
      kind: 'CronJob',
      metadata: { name: 'probe' },
      spec: {
        schedule: '0 0 1 1 *',
        suspend: true,
        jobTemplate: {
          spec: {
            template: {
              ...template({ app: 'probe' }),
              spec: { ...template({}).spec, restartPolicy: 'Never' },
            },
          },
        },
      },
    });
    const seen = await until('the CronJob in the cache', () => workloads.get('CronJob', NS, 'probe'));
    assert.equal(seen.uid, cj.metadata.uid);
    assert.equal(seen.apiVersion, v1HasCronJobs ? 'batch/v1' : 'batch/v1beta1');
    assert.deepEqual(seen.templateLabels, { app: 'probe' });
  });

  it('Pod → ReplicaSet → Deployment; a scale is seen as replicas', async () => {
    const dep = await create(`/apis/apps/v1/namespaces/${NS}/deployments`, {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', labels: { tier: 'front' } },
      spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: template({ app: 'web' }) },
    });
    const pods = await podsInView('app=web', 2);
    for (const p of pods) {
      const rs = p!.owners[0];
      assert.equal(rs?.kind, 'ReplicaSet');
      await chainOf(p!.name, [`ReplicaSet/${rs!.name}`, 'Deployment/web']);
      const top = kube.view.pod(NS, p!.name)!.owners.at(-1)!;
      assert.equal(top.uid, dep.metadata.uid, 'the top owner carries the Deployment uid');
      assert.equal(top.apiVersion, 'apps/v1');
    }
    const d = workloads.get('Deployment', NS, 'web');
    assert.equal(d?.replicas, 2);
    assert.deepEqual(d?.labels, { tier: 'front' });
    assert.deepEqual(d?.templateAnnotations, { 'ipkeeper.io/ippool': '{"ipv4": ["pool-a"]}' });
    const rsName = pods[0]!.owners[0]!.name;
    assert.deepEqual(names(workloads.get('ReplicaSet', NS, rsName)?.ownerReferences), ['Deployment/web']);

    const scaled = await kubeRequest(cluster, 'PATCH', `/apis/apps/v1/namespaces/${NS}/deployments/web`, {
      spec: { replicas: 3 },
    });
    assert.equal(scaled.status, 200);
    await until('replicas 3 in the cache', () =>
      workloads.get('Deployment', NS, 'web')?.replicas === 3 ? true : undefined,
    );
    await until(
      'the ReplicaSet scaled too',
      () => (workloads.get('ReplicaSet', NS, rsName)?.replicas === 3 ? true : undefined),
      SLOW_MS,
    );
    assert.ok(events.includes('add Deployment/web'));
    assert.ok(events.includes('update Deployment/web'));
  });

  it('Pod → StatefulSet', async () => {
    await create(`/apis/apps/v1/namespaces/${NS}/statefulsets`, {
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'db' },
      spec: {
        replicas: 1,
        serviceName: 'db',
        selector: { matchLabels: { app: 'db' } },
        template: template({ app: 'db' }),
      },
    });
    await podsInView('app=db', 1);
    await chainOf('db-0', ['StatefulSet/db']);
    assert.equal(workloads.get('StatefulSet', NS, 'db')?.replicas, 1);
  });

  it('Pod → DaemonSet (onto the test Node)', async () => {
    await create(`/apis/apps/v1/namespaces/${NS}/daemonsets`, {
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'agent' },
      spec: {
        selector: { matchLabels: { app: 'agent' } },
        // No kubelet keeps the Node's conditions fresh: tolerate whatever taint that earns it.
        template: template({ app: 'agent' }, { tolerations: [{ operator: 'Exists' }] }),
      },
    });
    const [p] = await podsInView('app=agent', 1);
    await chainOf(p!.name, ['DaemonSet/agent']);
    assert.equal('replicas' in workloads.get('DaemonSet', NS, 'agent')!, false);
  });

  it('Pod → Job → CronJob', async () => {
    const cjPath = workloads.get('CronJob', NS, 'probe')!.apiVersion;
    const cj = workloads.get('CronJob', NS, 'probe')!;
    // What the CronJob controller writes when the schedule fires (see the module comment).
    await create(`/apis/batch/v1/namespaces/${NS}/jobs`, {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name: 'probe-1',
        ownerReferences: [
          {
            apiVersion: cjPath,
            kind: 'CronJob',
            name: 'probe',
            uid: cj.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        parallelism: 1,
        template: {
          ...template({ app: 'probe-run' }),
          spec: { ...template({}).spec, restartPolicy: 'Never' },
        },
      },
    });
    const [p] = await podsInView('app=probe-run', 1);
    await chainOf(p!.name, ['Job/probe-1', 'CronJob/probe']);
    assert.equal(workloads.get('Job', NS, 'probe-1')?.replicas, 1);
  });

  it('deletes are seen: the Deployment goes, then (by the garbage collector) its ReplicaSet', async () => {
    const rsName = workloads
      .list('ReplicaSet')
      .find((r) => r.namespace === NS && r.ownerReferences[0]?.name === 'web')!.name;
    const r = await kubeRequest(cluster, 'DELETE', `/apis/apps/v1/namespaces/${NS}/deployments/web`, {
      propagationPolicy: 'Background',
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await until('the Deployment gone from the cache', () =>
      workloads.get('Deployment', NS, 'web') ? undefined : true,
    );
    assert.ok(events.includes('delete Deployment/web'));
    await until(
      'its ReplicaSet gone too',
      () => (workloads.get('ReplicaSet', NS, rsName) ? undefined : true),
      SLOW_MS,
    );
    assert.ok(events.includes(`delete ReplicaSet/${rsName}`));
  });

  it('KubeVirt: informers start when discovery shows kubevirt.io; virt-launcher → VMI → VM', async () => {
    const preinstalled = workloads.has('VirtualMachine');
    if (!preinstalled) {
      assert.equal(workloads.has('VirtualMachineInstance'), false);
      assert.deepEqual(workloads.list('VirtualMachine'), []);
    }
    for (const crd of loadFixture('kubevirt-crds.yaml')) {
      const existed = (await kubeRequest(cluster, 'GET', `${CRD_PATH}/${crd.metadata.name}`)).status === 200;
      await installCrd(cluster, crd);
      if (!existed) ourCrds.push(crd.metadata.name);
    }
    await until('discovery to find kubevirt.io/v1', () =>
      workloads.has('VirtualMachine') && workloads.has('VirtualMachineInstance') ? true : undefined,
    );
    const vm = await create(`/apis/kubevirt.io/v1/namespaces/${NS}/virtualmachines`, {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachine',
      metadata: { name: 'vm1' },
      spec: {
        running: true,
        template: {
          metadata: {
            labels: { 'kubevirt.io/vm': 'vm1' },
            annotations: { 'ipkeeper.io/ippool': '{"ipv4": ["vm-pool"]}' },
          },
          spec: { domain: {} },
        },
      },
    });
    const vmi = await create(`/apis/kubevirt.io/v1/namespaces/${NS}/virtualmachineinstances`, {
      apiVersion: 'kubevirt.io/v1',
      kind: 'VirtualMachineInstance',
      metadata: {
        name: 'vm1',
        labels: { 'kubevirt.io/vm': 'vm1' },
        ownerReferences: [
          {
            apiVersion: 'kubevirt.io/v1',
            kind: 'VirtualMachine',
            name: 'vm1',
            uid: vm.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: { domain: {} },
    });
    await create(`/api/v1/namespaces/${NS}/pods`, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'virt-launcher-vm1-abcde',
        labels: { 'kubevirt.io': 'virt-launcher', 'kubevirt.io/vm': 'vm1' },
        ownerReferences: [
          {
            apiVersion: 'kubevirt.io/v1',
            kind: 'VirtualMachineInstance',
            name: 'vm1',
            uid: vmi.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        nodeName: NODE,
        automountServiceAccountToken: false,
        containers: [{ name: 'compute', image: 'registry.invalid/virt-launcher:1' }],
      },
    });
    await chainOf('virt-launcher-vm1-abcde', ['VirtualMachineInstance/vm1', 'VirtualMachine/vm1']);
    const info: WorkloadInfo | undefined = workloads.get('VirtualMachine', NS, 'vm1');
    assert.deepEqual(info?.templateAnnotations, { 'ipkeeper.io/ippool': '{"ipv4": ["vm-pool"]}' });
    assert.equal(info?.apiVersion, 'kubevirt.io/v1');

    if (ourCrds.length === 2) {
      // KubeVirt uninstalled: discovery drops the kinds and reports their workloads deleted.
      for (const name of ourCrds.splice(0)) await kubeRequest(cluster, 'DELETE', `${CRD_PATH}/${name}`);
      await until('discovery to lose kubevirt.io/v1', () =>
        !workloads.has('VirtualMachine') && !workloads.has('VirtualMachineInstance') ? true : undefined,
      );
      assert.deepEqual(workloads.list('VirtualMachine'), []);
      assert.ok(events.includes('delete VirtualMachine/vm1'));
      assert.ok(events.includes('delete VirtualMachineInstance/vm1'));
    }
  });

  it('the agent read owners with GETs of single objects only: no list, no watch of any workload', () => {
    const workloadCalls = proxy.requests.filter((r) => / \/apis\/(apps|batch|kubevirt\.io)\//.test(r));
    // Pod → ReplicaSet → Deployment at least: the GETs happened, through this proxy.
    assert.ok(
      workloadCalls.some((r) => r.startsWith(`GET /apis/apps/v1/namespaces/${NS}/replicasets/`)),
      workloadCalls.join('\n'),
    );
    assert.ok(
      workloadCalls.includes(`GET /apis/apps/v1/namespaces/${NS}/deployments/web`),
      workloadCalls.join('\n'),
    );
    const one = /^GET \/apis\/[^/]+\/[^/]+\/namespaces\/[^/]+\/[a-z]+\/[^/?]+$/;
    const other = workloadCalls.filter((r) => !one.test(r));
    assert.deepEqual(other, [], 'every workload request is a GET of one named object');
    // Each owner once per TTL, however many pods share it (2 web pods, 1 ReplicaSet).
    const deps = workloadCalls.filter((r) => r.endsWith('/deployments/web'));
    assert.equal(deps.length, 1, deps.join('\n'));
  });

  it('a server that refuses the credentials fails the start, naming what failed', async () => {
    const { KubeConfig } = await import('@kubernetes/client-node');
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: cluster.server, caFile: cluster.caFile }],
      users: [{ name: 'u', token: 'not-a-valid-token' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    await assert.rejects(
      startWorkloadCache(kc, { discoveryIntervalMs: 0 }),
      /API discovery of (apps|batch|kubevirt\.io)\/v1(beta1)? failed/,
    );
  });
});
