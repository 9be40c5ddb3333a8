/**
 * @module ipam/cluster-view
 * What the engine may know of the cluster: the pod behind a CNI request, its namespace and its node.
 * In Kubernetes mode the agent fills it from informers (`src/agent/kube-view.ts`); in the embedded
 * mode nothing is known beyond the CNI arguments, and `EMPTY_VIEW` answers `undefined`, so rules that
 * need labels or annotations do not apply (and say so when they would have mattered).
 */

export interface OwnerRef {
  kind: string;
  name: string;
  uid?: string;
  apiVersion?: string;
}

export interface PodInfo {
  namespace: string;
  name: string;
  uid?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  nodeName?: string;
  phase?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  /** Owner chain from the pod's controller up to the top (e.g. ReplicaSet, Deployment). */
  owners: OwnerRef[];
}

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface NodeInfo {
  name: string;
  labels: Record<string, string>;
}

export interface ClusterView {
  /** Whether the view is backed by a cluster (false in embedded mode). */
  readonly live: boolean;
  pod(namespace: string, name: string): PodInfo | undefined;
  namespace(name: string): NamespaceInfo | undefined;
  node(name: string): NodeInfo | undefined;
  /** Fetches one pod (and its namespace) the view has not seen yet; never throws. */
  refreshPod?: (namespace: string, name: string) => Promise<void>;
}

/** A view held in memory: tests, and what the informers fill. */
export class MemoryClusterView implements ClusterView {
  readonly live: boolean;
  readonly pods = new Map<string, PodInfo>();
  readonly namespaces = new Map<string, NamespaceInfo>();
  readonly nodes = new Map<string, NodeInfo>();
  refreshPod?: (namespace: string, name: string) => Promise<void>;
  constructor(live = true) {
    this.live = live;
  }
  pod(namespace: string, name: string): PodInfo | undefined {
    return this.pods.get(`${namespace}/${name}`);
  }
  namespace(name: string): NamespaceInfo | undefined {
    return this.namespaces.get(name);
  }
  node(name: string): NodeInfo | undefined {
    return this.nodes.get(name);
  }
  setPod(p: Partial<PodInfo> & { namespace: string; name: string }): void {
    this.pods.set(`${p.namespace}/${p.name}`, { labels: {}, annotations: {}, owners: [], ...p });
  }
  setNamespace(n: Partial<NamespaceInfo> & { name: string }): void {
    this.namespaces.set(n.name, { labels: {}, annotations: {}, ...n });
  }
  setNode(n: Partial<NodeInfo> & { name: string }): void {
    this.nodes.set(n.name, { labels: {}, ...n });
  }
}

export const EMPTY_VIEW: ClusterView = new MemoryClusterView(false);
