/**
 * @module agent/kube-view
 * The agent's `ClusterView` in Kubernetes mode: informers (list + watch) on the pods of this node,
 * the namespaces, and this node, kept in a `MemoryClusterView`. A CNI ADD can arrive before the pod
 * informer has seen the pod (the kubelet and the informer learn of it at the same moment), so a
 * missing pod is fetched once directly (`refreshPod`).
 *
 * A pod's `owners` is the whole chain from its controller to the top (ReplicaSet → Deployment,
 * Job → CronJob, VirtualMachineInstance → VirtualMachine), from the workload cache
 * (`src/cluster/workloads.ts`). The pod informer stores only the pod's own controller reference and
 * the chain is resolved when the pod is read, so a pod seen before its ReplicaSet's informer caught
 * up still gets the full chain on the next read.
 *
 * `@kubernetes/client-node` is imported here only, lazily: it takes about a second to load.
 */
import { MemoryClusterView, type OwnerRef, type PodInfo } from '../ipam/cluster-view.ts';
import { controllerRefs, startWorkloadCache, type WorkloadCache } from '../cluster/workloads.ts';

/** How long after a failed start the workload informers are tried again. */
export const WORKLOAD_RETRY_MS = 30_000;

export interface KubeView {
  view: MemoryClusterView;
  /** The workloads behind the pods; absent until their informers have started (see `startKubeView`). */
  workloads?: WorkloadCache;
  stop(): Promise<void>;
}

/** A `MemoryClusterView` whose pods' `owners` are resolved up to the top controller on read. */
class OwnerChainView extends MemoryClusterView {
  workloads?: WorkloadCache;
  override pod(namespace: string, name: string): PodInfo | undefined {
    const p = super.pod(namespace, name);
    if (!p || !this.workloads || p.owners.length === 0) return p;
    return { ...p, owners: this.workloads.ownerChain(namespace, p.owners) };
  }
}

interface MetaLike {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: Date | string;
  deletionGracePeriodSeconds?: number;
  ownerReferences?: { kind: string; name: string; uid?: string; apiVersion?: string; controller?: boolean }[];
}
interface PodLike {
  metadata?: MetaLike;
  spec?: { nodeName?: string };
  status?: { phase?: string };
}

function toPod(p: PodLike): PodInfo | undefined {
  const m = p.metadata;
  if (!m?.name || !m.namespace) return undefined;
  // The pod's controller (`controller: true`); the chain above it is resolved on read.
  const owners: OwnerRef[] = controllerRefs(m.ownerReferences);
  return {
    namespace: m.namespace,
    name: m.name,
    ...(m.uid ? { uid: m.uid } : {}),
    labels: m.labels ?? {},
    annotations: m.annotations ?? {},
    ...(p.spec?.nodeName ? { nodeName: p.spec.nodeName } : {}),
    ...(p.status?.phase ? { phase: p.status.phase } : {}),
    ...(m.deletionTimestamp ? { deletionTimestamp: new Date(m.deletionTimestamp).toISOString() } : {}),
    ...(m.deletionGracePeriodSeconds !== undefined ? { deletionGracePeriodSeconds: m.deletionGracePeriodSeconds } : {}),
    owners,
  };
}

/**
 * Starts the informers and resolves once each has listed.
 * @param kubeconfig a kubeconfig path; undefined for $KUBECONFIG, in-cluster, or ~/.kube/config.
 * @throws Error when the API server cannot be reached or refuses the lists.
 */
export async function startKubeView(
  kubeconfig: string | undefined,
  node: string,
  opts: { log?: { warn(obj: object, msg?: string): void }; discoveryIntervalMs?: number } = {},
): Promise<KubeView> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const view = new OwnerChainView(true);
  const onNode = `spec.nodeName=${node}`;

  const pods = new k8s.ListWatch<InstanceType<typeof k8s.V1Pod>>(
    '/api/v1/pods',
    new k8s.Watch(kc),
    () => core.listPodForAllNamespaces({ fieldSelector: onNode }),
    false,
    undefined,
    onNode,
  );
  const putPod = (p: PodLike): void => {
    const info = toPod(p);
    if (info) view.setPod(info);
  };
  pods.on('add', putPod);
  pods.on('update', putPod);
  pods.on('delete', (p: PodLike) => {
    if (p.metadata?.namespace && p.metadata.name) view.pods.delete(`${p.metadata.namespace}/${p.metadata.name}`);
  });

  const namespaces = new k8s.ListWatch<InstanceType<typeof k8s.V1Namespace>>(
    '/api/v1/namespaces',
    new k8s.Watch(kc),
    () => core.listNamespace(),
    false,
  );
  const putNs = (n: { metadata?: MetaLike }): void => {
    if (!n.metadata?.name) return;
    view.setNamespace({ name: n.metadata.name, labels: n.metadata.labels ?? {}, annotations: n.metadata.annotations ?? {} });
  };
  namespaces.on('add', putNs);
  namespaces.on('update', putNs);
  namespaces.on('delete', (n: { metadata?: MetaLike }) => {
    if (n.metadata?.name) view.namespaces.delete(n.metadata.name);
  });

  const thisNode = `metadata.name=${node}`;
  const nodes = new k8s.ListWatch<InstanceType<typeof k8s.V1Node>>(
    '/api/v1/nodes',
    new k8s.Watch(kc),
    () => core.listNode({ fieldSelector: thisNode }),
    false,
    undefined,
    thisNode,
  );
  const putNode = (n: { metadata?: MetaLike }): void => {
    if (n.metadata?.name) view.setNode({ name: n.metadata.name, labels: n.metadata.labels ?? {} });
  };
  nodes.on('add', putNode);
  nodes.on('update', putNode);
  nodes.on('delete', () => view.nodes.delete(node));

  // The workload cache refines owners; without it (no permission to list workloads yet, the API
  // server briefly away) they stop at the pod's own controller and the agent still serves. It is
  // started again until it runs, so a slow start does not cost owner chains for the agent's life.
  let workloads: WorkloadCache | undefined;
  let workloadRetry: NodeJS.Timeout | undefined;
  let stopped = false;
  const startWorkloads = async (): Promise<void> => {
    try {
      const w = await startWorkloadCache(kc, {
        ...(opts.log ? { log: opts.log } : {}),
        ...(opts.discoveryIntervalMs !== undefined ? { discoveryIntervalMs: opts.discoveryIntervalMs } : {}),
      });
      if (stopped) return void (await w.stop());
      workloads = w;
      view.workloads = w;
    } catch (err) {
      opts.log?.warn(
        { err: String(err), retryMs: WORKLOAD_RETRY_MS },
        'workload informers did not start; pod owners stop at their controller until they do',
      );
      if (stopped) return;
      workloadRetry = setTimeout(() => void startWorkloads(), WORKLOAD_RETRY_MS);
      workloadRetry.unref();
    }
  };
  await Promise.all([startWorkloads(), pods.start(), namespaces.start(), nodes.start()]);

  view.refreshPod = async (namespace: string, name: string): Promise<void> => {
    try {
      putPod(await core.readNamespacedPod({ namespace, name }));
      putNs(await core.readNamespace({ name: namespace }));
    } catch {
      // Not found (or the API is briefly away): the request proceeds without the pod's facts,
      // and the refusal, if any, says the labels were unknown.
    }
  };
  return {
    view,
    get workloads() {
      return workloads;
    },
    async stop() {
      stopped = true;
      if (workloadRetry) clearTimeout(workloadRetry);
      await Promise.all([pods.stop(), namespaces.stop(), nodes.stop(), workloads?.stop()]);
    },
  };
}
