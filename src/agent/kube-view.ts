/**
 * @module agent/kube-view
 * The agent's `ClusterView` in Kubernetes mode: informers (list + watch) on the pods of this node,
 * the namespaces, and this node, kept in a `MemoryClusterView`. A CNI ADD can arrive before the pod
 * informer has seen the pod (the kubelet and the informer learn of it at the same moment), so a
 * missing pod is fetched once directly (`refreshPod`).
 *
 * A pod's `owners` is the whole chain from its controller to the top (ReplicaSet → Deployment,
 * Job → CronJob, VirtualMachineInstance → VirtualMachine), read on demand by GETs
 * (`src/cluster/owners.ts`), never by watching workloads: on a 5,000-node cluster a cache of every
 * ReplicaSet on every node would be 5,000 watches of every ReplicaSet. The agent needs `get` on
 * the workload kinds, not `list`/`watch`.
 *
 * The chain is fetched when the informer delivers the pod (or its controller changes). While that
 * fetch is in flight the pod reads as not yet seen: the engine's "ask once" path then calls
 * `refreshPod`, which waits for it, so an ADD never decides on half a chain. A fetch that failed
 * (API server away, no permission) leaves the chain at the pod's controller and is tried again on
 * a read after `CHAIN_RETRY_MS`.
 *
 * `@kubernetes/client-node` is imported here only, lazily: it takes about a second to load.
 */
import { MemoryClusterView, type OwnerRef, type PodInfo } from '../ipam/cluster-view.ts';
import { controllerRefs } from '../cluster/workloads.ts';
import { kubeGetWorkload, OwnerResolver, type OwnerResolverOptions } from '../cluster/owners.ts';
import { reuseConnections } from '../cluster/connections.ts';

/** How long after a failed owner-chain fetch a read of the pod tries again. */
export const CHAIN_RETRY_MS = 10_000;

export interface KubeView {
  view: OwnerChainView;
  /** The on-demand owner reader (its `gets` counts the requests sent). */
  owners: OwnerResolver;
  stop(): Promise<void>;
}

interface ChainState {
  /** The controller reference (kind/name/uid) this chain was fetched for. */
  for: string;
  chain?: OwnerRef[];
  pending?: Promise<void>;
  failedAt?: number;
}

const refKey = (r: OwnerRef | undefined): string => (r ? `${r.kind}/${r.name}/${r.uid ?? ''}` : '');

/** A `MemoryClusterView` whose pods' `owners` run up to the top controller (see the module comment). */
export class OwnerChainView extends MemoryClusterView {
  private readonly chains = new Map<string, ChainState>();
  private readonly resolver: OwnerResolver;
  private readonly now: () => number;
  private readonly log: { warn(obj: object, msg?: string): void } | undefined;

  constructor(
    resolver: OwnerResolver,
    opts: { now?: () => number; log?: { warn(obj: object, msg?: string): void } } = {},
  ) {
    super(true);
    this.resolver = resolver;
    this.now = opts.now ?? (() => Date.now());
    this.log = opts.log;
  }

  override pod(namespace: string, name: string): PodInfo | undefined {
    const p = super.pod(namespace, name);
    if (!p || p.owners.length === 0) return p;
    const key = `${namespace}/${name}`;
    const s = this.chains.get(key);
    const ref = refKey(p.owners[0]);
    if (s?.for === ref) {
      if (s.chain) return { ...p, owners: s.chain };
      // Reads as unseen: the engine's refreshPod then waits for the chain (module comment).
      if (s.pending) return undefined;
      if (s.failedAt !== undefined && this.now() - s.failedAt < CHAIN_RETRY_MS) return p;
    }
    this.resolve(p);
    return undefined;
  }

  /** Fetches the chain of `p` unless one is fetched or fetching for its controller already. */
  resolve(p: PodInfo): Promise<void> {
    const key = `${p.namespace}/${p.name}`;
    const ref = refKey(p.owners[0]);
    const s = this.chains.get(key);
    if (p.owners.length === 0) {
      this.chains.delete(key);
      return Promise.resolve();
    }
    if (s?.for === ref && (s.chain || s.pending)) return s.pending ?? Promise.resolve();
    const state: ChainState = { for: ref };
    state.pending = this.resolver.chain(p.namespace, p.owners).then(({ chain, partial }) => {
      delete state.pending;
      if (!partial) state.chain = chain;
      else {
        state.failedAt = this.now();
        this.log?.warn(
          { pod: key, owners: chain.map((o) => `${o.kind}/${o.name}`), retryMs: CHAIN_RETRY_MS },
          'could not read the owners of a pod; its owners stop there until a read succeeds',
        );
      }
    });
    this.chains.set(key, state);
    return state.pending;
  }

  /** The fetch in flight for this pod, if any. */
  pending(namespace: string, name: string): Promise<void> | undefined {
    return this.chains.get(`${namespace}/${name}`)?.pending;
  }

  forget(namespace: string, name: string): void {
    this.pods.delete(`${namespace}/${name}`);
    this.chains.delete(`${namespace}/${name}`);
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
    ...(m.deletionGracePeriodSeconds !== undefined
      ? { deletionGracePeriodSeconds: m.deletionGracePeriodSeconds }
      : {}),
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
  opts: {
    log?: { warn(obj: object, msg?: string): void };
    /** Overrides for the owner reader (TTL, size, clock). */
    owners?: Omit<OwnerResolverOptions, 'get'>;
  } = {},
): Promise<KubeView> {
  const k8s = await import('@kubernetes/client-node');
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  // One keep-alive agent instead of client-node's agent per request (cluster/connections.ts).
  reuseConnections(kc);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const owners = new OwnerResolver({ ...opts.owners, get: await kubeGetWorkload(kc) });
  const view = new OwnerChainView(owners, {
    ...(opts.owners?.now ? { now: opts.owners.now } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  });
  const onNode = `spec.nodeName=${node}`;

  const pods = new k8s.ListWatch<InstanceType<typeof k8s.V1Pod>>(
    '/api/v1/pods',
    new k8s.Watch(kc),
    () => core.listPodForAllNamespaces({ fieldSelector: onNode }),
    false,
    undefined,
    onNode,
  );
  const putPod = (p: PodLike): Promise<void> => {
    const info = toPod(p);
    if (!info) return Promise.resolve();
    view.setPod(info);
    // Fetched now, so the chain is ready when the kubelet's ADD comes.
    return view.resolve(info);
  };
  pods.on('add', (p: PodLike) => void putPod(p));
  pods.on('update', (p: PodLike) => void putPod(p));
  pods.on('delete', (p: PodLike) => {
    if (p.metadata?.namespace && p.metadata.name) view.forget(p.metadata.namespace, p.metadata.name);
  });

  const namespaces = new k8s.ListWatch<InstanceType<typeof k8s.V1Namespace>>(
    '/api/v1/namespaces',
    new k8s.Watch(kc),
    () => core.listNamespace(),
    false,
  );
  const putNs = (n: { metadata?: MetaLike }): void => {
    if (!n.metadata?.name) return;
    view.setNamespace({
      name: n.metadata.name,
      labels: n.metadata.labels ?? {},
      annotations: n.metadata.annotations ?? {},
    });
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

  await Promise.all([pods.start(), namespaces.start(), nodes.start()]);

  view.refreshPod = async (namespace: string, name: string): Promise<void> => {
    // The pod is known and only its chain is on the way: wait for that, nothing to GET.
    const pending = view.pending(namespace, name);
    if (pending) {
      await pending;
      return;
    }
    try {
      const p = putPod(await core.readNamespacedPod({ namespace, name }));
      putNs(await core.readNamespace({ name: namespace }));
      await p;
    } catch {
      // Not found (or the API is briefly away): the request proceeds without the pod's facts,
      // and the refusal, if any, says the labels were unknown.
    }
  };
  return {
    view,
    owners,
    async stop() {
      await Promise.all([pods.stop(), namespaces.stop(), nodes.stop()]);
    },
  };
}
