/**
 * @module cluster/owners
 * The agent's owner-chain resolver: who runs a pod, up to the top controller, read on demand with
 * one GET per owner instead of a cluster-wide cache. An agent only ever asks about the pods of its
 * own node; a cache of every ReplicaSet in the cluster on every node (5,000 nodes × 50,000
 * ReplicaSets) is what the controller's `WorkloadCache` (src/cluster/workloads.ts) is for, once.
 *
 *   Pod ──GET──> ReplicaSet ──GET──> Deployment          (two GETs, then cached for `ttlMs`)
 *   Pod ──GET──> Job ──GET──> CronJob
 *   Pod ──GET──> VirtualMachineInstance ──GET──> VirtualMachine
 *
 * Each owner is read at the `apiVersion` its reference names (a Job's CronJob reference says
 * `batch/v1beta1` on a 1.20 server), so no API discovery is needed. The cache keeps only what the
 * chain needs (uid and controller references), keyed by kind/namespace/name and the uid the
 * reference asked for, for `ttlMs`, at most `maxEntries` entries (least recently used goes first).
 * Replicas are not read here: the controller's GC reads those from its `WorkloadCache`.
 *
 * The chain rules are `resolveOwnerChain`'s: only controller references, an owner that cannot be
 * read (not a workload kind, not found, another uid, a failed GET) ends the chain but is listed.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { OwnerRef } from '../ipam/cluster-view.ts';
import {
  controllerRefs,
  isWorkloadKind,
  workloadResource,
  type RawWorkload,
  type WorkloadKind,
} from './workloads.ts';

/** Long enough that a burst of pods of one ReplicaSet costs one GET; short enough to see re-owning. */
export const OWNER_TTL_MS = 60_000;
/** An agent runs ~110 pods, two links each: this is many times that. */
export const OWNER_CACHE_MAX = 2_000;
/** Owner chains are short (two links in practice); a longer one is a cycle or a mistake. */
const MAX_CHAIN = 8;

/** One owner as read: absent (404) or its uid and controller references. */
export interface OwnerFacts {
  uid: string;
  ownerReferences: OwnerRef[];
}

/**
 * Reads one workload object. Resolves undefined when it does not exist (404); rejects on any other
 * failure (unreachable, forbidden), which ends the chain without being cached.
 */
export type GetWorkload = (req: {
  kind: WorkloadKind;
  group: string;
  version: string;
  plural: string;
  namespace: string;
  name: string;
}) => Promise<RawWorkload | undefined>;

export interface OwnerResolverOptions {
  get: GetWorkload;
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

interface Entry {
  at: number;
  facts: OwnerFacts | undefined;
}

export class OwnerResolver {
  private readonly get: GetWorkload;
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;
  /** Insertion order is recency order: a hit is re-inserted, the first key is the eldest. */
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<OwnerFacts | undefined>>();
  /** GETs sent, for tests and the curious. */
  gets = 0;

  constructor(opts: OwnerResolverOptions) {
    this.get = opts.get;
    this.ttlMs = opts.ttlMs ?? OWNER_TTL_MS;
    this.max = opts.maxEntries ?? OWNER_CACHE_MAX;
    this.now = opts.now ?? (() => Date.now());
  }

  get size(): number {
    return this.cache.size;
  }

  /**
   * The chain from `refs` (a pod's controller references; the first is followed) up to the top
   * controller, nearest first. Never throws: a failed read ends the chain there and sets `partial`.
   */
  async chain(
    namespace: string,
    refs: readonly OwnerRef[],
  ): Promise<{ chain: OwnerRef[]; partial: boolean }> {
    const chain: OwnerRef[] = [];
    const seen = new Set<string>();
    let next: OwnerRef | undefined = refs[0];
    while (next && chain.length < MAX_CHAIN) {
      const id = `${next.kind}/${next.name}`;
      // A cycle is not something Kubernetes prevents; stop at the first repeat rather than loop.
      if (seen.has(id)) break;
      seen.add(id);
      chain.push(next);
      if (!isWorkloadKind(next.kind)) break;
      let facts: OwnerFacts | undefined;
      try {
        facts = await this.owner(next.kind, next.apiVersion, namespace, next.name, next.uid);
      } catch {
        // Unreachable or forbidden: the chain stops here and the caller may ask again later.
        return { chain, partial: true };
      }
      if (!facts || (next.uid && facts.uid && next.uid !== facts.uid)) break;
      next = facts.ownerReferences[0];
    }
    return { chain, partial: false };
  }

  /** One owner, from the cache while fresh, else one GET (shared by concurrent callers). */
  private async owner(
    kind: WorkloadKind,
    apiVersion: string | undefined,
    namespace: string,
    name: string,
    uid: string | undefined,
  ): Promise<OwnerFacts | undefined> {
    const key = `${kind}/${namespace}/${name}/${uid ?? ''}`;
    const hit = this.cache.get(key);
    if (hit && this.now() - hit.at < this.ttlMs) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit.facts;
    }
    const running = this.inflight.get(key);
    if (running) return running;
    const res = workloadResource(kind, apiVersion);
    const p = (async () => {
      this.gets++;
      const raw = await this.get({ kind, ...res, namespace, name });
      const facts = raw
        ? { uid: raw.metadata?.uid ?? '', ownerReferences: controllerRefs(raw.metadata?.ownerReferences) }
        : undefined;
      this.cache.delete(key);
      this.cache.set(key, { at: this.now(), facts });
      while (this.cache.size > this.max) this.cache.delete(this.cache.keys().next().value!);
      return facts;
    })();
    this.inflight.set(key, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(key);
    }
  }
}

/**
 * A `GetWorkload` over a kubeconfig (raw JSON, as the informers read). Loads the Kubernetes
 * client lazily.
 */
export async function kubeGetWorkload(kc: KubeConfig): Promise<GetWorkload> {
  const k8s = await import('@kubernetes/client-node');
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  return async ({ group, version, plural, namespace, name }) => {
    try {
      return (await custom.getNamespacedCustomObject({
        group,
        version,
        namespace,
        plural,
        name,
      })) as RawWorkload;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  };
}
