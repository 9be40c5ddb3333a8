/**
 * @module cluster/workloads
 * The workloads behind pods, from informers: Deployments, ReplicaSets, StatefulSets, DaemonSets,
 * Jobs, CronJobs and, when the cluster serves `kubevirt.io/v1`, VirtualMachines and
 * VirtualMachineInstances. It answers "who owns this pod, up to the top" (`ownerChain`), which
 * fixed IPs, application pools and retention key on, and what the top owner's pod template asks for
 * (its annotations and replicas).
 *
 * Which kinds are watched is decided by API discovery, not assumed: v1.20 serves CronJob only as
 * `batch/v1beta1` (batch/v1 from 1.21), and KubeVirt exists only where it is installed. Discovery
 * runs at start and again every `discoveryIntervalMs`, so a CRD installed later (KubeVirt) or a
 * version the server starts serving after an upgrade is picked up without a restart; a kind that
 * disappears is dropped (its workloads reported deleted).
 *
 *   Pod ──controller──> ReplicaSet ──controller──> Deployment
 *   Pod ──controller──> Job ──controller──> CronJob
 *   Pod (virt-launcher) ──controller──> VirtualMachineInstance ──controller──> VirtualMachine
 *   Pod ──controller──> StatefulSet | DaemonSet
 *
 * Only *controller* references count (`controller: true`, Kubernetes' own definition in
 * `metav1.GetControllerOf`): other owner references say who garbage-collects an object, not who
 * runs it.
 *
 * `@kubernetes/client-node` is loaded lazily in `startWorkloadCache` (it takes about a second to
 * import, and the CNI plugin must never load it); the rest of this module is pure and cheap.
 */
import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { OwnerRef } from '../ipam/cluster-view.ts';

export type WorkloadKind =
  | 'Deployment'
  | 'ReplicaSet'
  | 'StatefulSet'
  | 'DaemonSet'
  | 'Job'
  | 'CronJob'
  | 'VirtualMachine'
  | 'VirtualMachineInstance';

export const WORKLOAD_KINDS: readonly WorkloadKind[] = [
  'Deployment',
  'ReplicaSet',
  'StatefulSet',
  'DaemonSet',
  'Job',
  'CronJob',
  'VirtualMachine',
  'VirtualMachineInstance',
];

export interface WorkloadInfo {
  kind: WorkloadKind;
  /** The group/version the cache reads it as, e.g. `apps/v1`, `batch/v1beta1`. */
  apiVersion: string;
  namespace: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /**
   * Labels and annotations of the pod template (CronJob: its jobTemplate's pod template;
   * VirtualMachine: `spec.template`, the VMI template; VirtualMachineInstance, which has no
   * template: its own, which KubeVirt copies onto the virt-launcher pod).
   */
  templateLabels: Record<string, string>;
  templateAnnotations: Record<string, string>;
  /** Deployment/ReplicaSet/StatefulSet `spec.replicas` (default 1); Job `spec.parallelism` (default 1); absent otherwise. */
  replicas?: number;
  /** Controller references only. */
  ownerReferences: OwnerRef[];
  deleting: boolean;
}

export interface WorkloadCache {
  get(kind: WorkloadKind, namespace: string, name: string): WorkloadInfo | undefined;
  list(kind: WorkloadKind): WorkloadInfo[];
  /** The chain from the given owner references (a pod's) up to the top controller, nearest first; stops at an owner the cache does not know (it is still listed). */
  ownerChain(namespace: string, refs: OwnerRef[]): OwnerRef[];
  /** Whether the server serves that kind (KubeVirt). */
  has(kind: WorkloadKind): boolean;
  on(listener: (type: 'add' | 'update' | 'delete', w: WorkloadInfo) => void): () => void;
  stop(): Promise<void>;
}

export interface WorkloadCacheOptions {
  /** Watch only these kinds (default: all of them the server serves); `has` is false for the others. */
  kinds?: readonly WorkloadKind[];
  /** How often API discovery runs again (new CRDs, upgraded versions); 0 = only at start. Default 60 s. */
  discoveryIntervalMs?: number;
  log?: { warn(obj: object, msg?: string): void; info?(obj: object, msg?: string): void };
}

export const DISCOVERY_INTERVAL_MS = 60_000;
/** An informer whose watch or list failed starts again after this, doubling up to the cap. */
const RESTART_FIRST_MS = 500;
const RESTART_CAP_MS = 30_000;
/** Owner chains are short (two links in practice); a longer one is a cycle or a mistake. */
const MAX_CHAIN = 8;

// ---- which resource serves which kind -----------------------------------------------------------

export interface WorkloadResource {
  kind: WorkloadKind;
  group: string;
  version: string;
  plural: string;
}

/** Each kind's group, plural and the versions we can read, preferred first. */
const CANDIDATES: { kind: WorkloadKind; group: string; versions: string[]; plural: string }[] = [
  { kind: 'Deployment', group: 'apps', versions: ['v1'], plural: 'deployments' },
  { kind: 'ReplicaSet', group: 'apps', versions: ['v1'], plural: 'replicasets' },
  { kind: 'StatefulSet', group: 'apps', versions: ['v1'], plural: 'statefulsets' },
  { kind: 'DaemonSet', group: 'apps', versions: ['v1'], plural: 'daemonsets' },
  { kind: 'Job', group: 'batch', versions: ['v1'], plural: 'jobs' },
  // batch/v1 CronJob is GA from 1.21; 1.20 serves only v1beta1, whose fields we read are the same.
  { kind: 'CronJob', group: 'batch', versions: ['v1', 'v1beta1'], plural: 'cronjobs' },
  { kind: 'VirtualMachine', group: 'kubevirt.io', versions: ['v1'], plural: 'virtualmachines' },
  {
    kind: 'VirtualMachineInstance',
    group: 'kubevirt.io',
    versions: ['v1'],
    plural: 'virtualmachineinstances',
  },
];

/**
 * Where to GET one object of `kind`: at `apiVersion` (from the owner reference naming it) when
 * given, else at the kind's preferred version. Pure.
 */
export function workloadResource(
  kind: WorkloadKind,
  apiVersion?: string,
): { group: string; version: string; plural: string } {
  const c = CANDIDATES.find((x) => x.kind === kind)!;
  const slash = apiVersion?.indexOf('/') ?? -1;
  if (apiVersion && slash > 0 && apiVersion.slice(0, slash) === c.group) {
    return { group: c.group, version: apiVersion.slice(slash + 1), plural: c.plural };
  }
  return { group: c.group, version: c.versions[0]!, plural: c.plural };
}

/** Every group/version discovery must ask about. */
export const DISCOVERY_GROUP_VERSIONS: readonly string[] = [
  ...new Set(CANDIDATES.flatMap((c) => c.versions.map((v) => `${c.group}/${v}`))),
];

/**
 * Picks the resource for each kind from what discovery found: `served` maps `group/version` to the
 * resource names it serves (a group/version absent from the map is not served). Pure.
 */
export function chooseResources(
  served: ReadonlyMap<string, ReadonlySet<string>>,
  kinds: readonly WorkloadKind[] = WORKLOAD_KINDS,
): Map<WorkloadKind, WorkloadResource> {
  const out = new Map<WorkloadKind, WorkloadResource>();
  for (const c of CANDIDATES) {
    if (!kinds.includes(c.kind)) continue;
    const version = c.versions.find((v) => served.get(`${c.group}/${v}`)?.has(c.plural));
    if (version) out.set(c.kind, { kind: c.kind, group: c.group, version, plural: c.plural });
  }
  return out;
}

// ---- pure conversion and chains -----------------------------------------------------------------

interface RawOwnerRef {
  apiVersion?: string;
  kind?: string;
  name?: string;
  uid?: string;
  controller?: boolean;
}

interface RawMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: unknown;
  ownerReferences?: RawOwnerRef[];
}

/** What we read of a workload object, whatever its kind (raw JSON from the API server). */
export interface RawWorkload {
  metadata?: RawMeta;
  spec?: {
    replicas?: number;
    parallelism?: number;
    template?: { metadata?: RawMeta };
    jobTemplate?: { spec?: { template?: { metadata?: RawMeta } } };
  };
}

/** The controller references among an object's owner references (`controller: true`), as OwnerRefs. */
export function controllerRefs(refs: readonly RawOwnerRef[] | undefined): OwnerRef[] {
  const out: OwnerRef[] = [];
  for (const r of refs ?? []) {
    if (r.controller !== true || !r.kind || !r.name) continue;
    out.push({
      kind: r.kind,
      name: r.name,
      ...(r.uid ? { uid: r.uid } : {}),
      ...(r.apiVersion ? { apiVersion: r.apiVersion } : {}),
    });
  }
  return out;
}

const REPLICATED: readonly WorkloadKind[] = ['Deployment', 'ReplicaSet', 'StatefulSet'];

/**
 * Reads a workload object into a `WorkloadInfo`; undefined when it has no namespace or name (never
 * for objects the API server sends). Pure.
 */
export function toWorkload(
  kind: WorkloadKind,
  apiVersion: string,
  obj: RawWorkload,
): WorkloadInfo | undefined {
  const m = obj.metadata;
  if (!m?.name || !m.namespace) return undefined;
  const spec = obj.spec ?? {};
  let template: RawMeta | undefined;
  if (kind === 'CronJob') template = spec.jobTemplate?.spec?.template?.metadata;
  else if (kind === 'VirtualMachineInstance') template = m;
  else template = spec.template?.metadata;
  let replicas: number | undefined;
  if (REPLICATED.includes(kind)) replicas = spec.replicas ?? 1;
  else if (kind === 'Job') replicas = spec.parallelism ?? 1;
  return {
    kind,
    apiVersion,
    namespace: m.namespace,
    name: m.name,
    uid: m.uid ?? '',
    labels: m.labels ?? {},
    annotations: m.annotations ?? {},
    templateLabels: template?.labels ?? {},
    templateAnnotations: template?.annotations ?? {},
    ...(replicas !== undefined ? { replicas } : {}),
    ownerReferences: controllerRefs(m.ownerReferences),
    deleting: m.deletionTimestamp !== undefined && m.deletionTimestamp !== null,
  };
}

export function isWorkloadKind(kind: string): kind is WorkloadKind {
  return (WORKLOAD_KINDS as readonly string[]).includes(kind);
}

/**
 * Follows controller references from `refs` (a pod's controller references; the first one is
 * followed) up through the workloads `lookup` knows, nearest first. An owner `lookup` does not know
 * — not a workload kind, not cached yet, or cached with another uid (deleted and recreated under
 * the same name) — ends the chain; it is still listed, since it is what the object names. Pure.
 */
export function resolveOwnerChain(
  lookup: (kind: WorkloadKind, namespace: string, name: string) => WorkloadInfo | undefined,
  namespace: string,
  refs: readonly OwnerRef[],
): OwnerRef[] {
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
    const w = lookup(next.kind, namespace, next.name);
    if (!w || (next.uid && w.uid && next.uid !== w.uid)) break;
    next = w.ownerReferences[0];
  }
  return chain;
}

/** The top controller of a chain from `ownerChain` (its last element); undefined for a bare pod. */
export function topOwner(chain: readonly OwnerRef[]): OwnerRef | undefined {
  return chain.at(-1);
}

// ---- the cache ------------------------------------------------------------------------------------

type Listener = (type: 'add' | 'update' | 'delete', w: WorkloadInfo) => void;

/** A workload cache held in memory: tests, and what the informers fill. */
export class MemoryWorkloadCache implements WorkloadCache {
  private readonly byKind = new Map<WorkloadKind, Map<string, WorkloadInfo>>();
  private readonly listeners = new Set<Listener>();
  /** Kinds the server serves (set by discovery; every kind for a cache filled by hand). */
  readonly served = new Set<WorkloadKind>(WORKLOAD_KINDS);

  get(kind: WorkloadKind, namespace: string, name: string): WorkloadInfo | undefined {
    return this.byKind.get(kind)?.get(`${namespace}/${name}`);
  }
  list(kind: WorkloadKind): WorkloadInfo[] {
    return [...(this.byKind.get(kind)?.values() ?? [])];
  }
  ownerChain(namespace: string, refs: OwnerRef[]): OwnerRef[] {
    return resolveOwnerChain((k, ns, n) => this.get(k, ns, n), namespace, refs);
  }
  has(kind: WorkloadKind): boolean {
    return this.served.has(kind);
  }
  on(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  /** Set by `startWorkloadCache`: stops the informers. */
  stopInformers?: () => Promise<void>;
  async stop(): Promise<void> {
    await this.stopInformers?.();
    this.listeners.clear();
  }

  /** Adds or replaces a workload and tells the listeners. */
  put(w: WorkloadInfo): void {
    let m = this.byKind.get(w.kind);
    if (!m) this.byKind.set(w.kind, (m = new Map()));
    const key = `${w.namespace}/${w.name}`;
    const type = m.has(key) ? 'update' : 'add';
    m.set(key, w);
    this.emit(type, w);
  }
  /** Removes a workload (if held) and tells the listeners. */
  remove(kind: WorkloadKind, namespace: string, name: string): void {
    const m = this.byKind.get(kind);
    const w = m?.get(`${namespace}/${name}`);
    if (!m || !w) return;
    m.delete(`${namespace}/${name}`);
    this.emit('delete', w);
  }
  /** Removes every workload of a kind (the server stopped serving it). */
  clear(kind: WorkloadKind): void {
    for (const w of this.list(kind)) this.remove(kind, w.namespace, w.name);
  }

  private emit(type: 'add' | 'update' | 'delete', w: WorkloadInfo): void {
    for (const l of this.listeners) {
      try {
        l(type, w);
      } catch {
        // One listener's bug must not stop the others or the informer that called us.
      }
    }
  }
}

interface Informer {
  res: WorkloadResource;
  stop(): Promise<void>;
}

/**
 * Discovers which workload kinds the server serves, starts an informer for each, and resolves
 * once every one has listed.
 * @throws Error when discovery or a first list fails (unreachable server, no permission to list a
 *   kind): the message names the resource.
 */
export async function startWorkloadCache(
  kc: KubeConfig,
  opts: WorkloadCacheOptions = {},
): Promise<WorkloadCache> {
  const k8s = await import('@kubernetes/client-node');
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const kinds = opts.kinds ?? WORKLOAD_KINDS;
  const log = opts.log;
  const cache = new MemoryWorkloadCache();
  const informers = new Map<WorkloadKind, Informer>();
  let stopped = false;

  /** `group/version` → resource names, for the group/versions the server serves. */
  const discover = async (): Promise<Map<string, Set<string>>> => {
    const served = new Map<string, Set<string>>();
    const wanted = new Set(
      CANDIDATES.filter((c) => kinds.includes(c.kind)).flatMap((c) =>
        c.versions.map((v) => `${c.group}/${v}`),
      ),
    );
    await Promise.all(
      [...wanted].map(async (gv) => {
        const [group, version] = gv.split('/') as [string, string];
        try {
          const list = await custom.getAPIResources({ group, version });
          // Subresources (`deployments/scale`) are listed too; only top-level names matter here.
          served.set(gv, new Set(list.resources.map((r) => r.name).filter((n) => !n.includes('/'))));
        } catch (err) {
          if ((err as { code?: number }).code === 404) return; // Not served: that is the answer.
          throw new Error(`API discovery of ${gv} failed: ${messageOf(err)}`, { cause: err });
        }
      }),
    );
    return served;
  };

  const startInformer = async (res: WorkloadResource): Promise<Informer> => {
    const apiVersion = res.group === '' ? res.version : `${res.group}/${res.version}`;
    const path = `/apis/${apiVersion}/${res.plural}`;
    let listed = false;
    const lw = new k8s.ListWatch(
      path,
      new k8s.Watch(kc),
      async () => {
        // Raw JSON (timestamps as strings), the same shape the watch delivers.
        const l: KubernetesListObject<KubernetesObject> = await custom.listClusterCustomObject({
          group: res.group,
          version: res.version,
          plural: res.plural,
        });
        listed = true;
        return l;
      },
      false,
    );
    let delay = RESTART_FIRST_MS;
    const put = (o: RawWorkload): void => {
      delay = RESTART_FIRST_MS; // Events flow again: the next failure starts the backoff afresh.
      const w = toWorkload(res.kind, apiVersion, o);
      if (w) cache.put(w);
    };
    lw.on('add', put);
    lw.on('update', put);
    lw.on('delete', (o: RawWorkload) => {
      if (o.metadata?.namespace && o.metadata.name)
        cache.remove(res.kind, o.metadata.namespace, o.metadata.name);
    });
    let own = false;
    let firstError: unknown;
    let synced = false;
    let timer: NodeJS.Timeout | undefined;
    lw.on('error', (err?: unknown) => {
      if (stopped || own) return; // Our own stop aborts the watch, which reports as an error.
      if (!synced) {
        firstError = err;
        return;
      }
      // ListWatch does not restart after an error; we do, with backoff, from where it was.
      log?.warn(
        { err: messageOf(err), resource: path, retryMs: delay },
        'workload informer failed; restarting',
      );
      timer = setTimeout(() => {
        timer = undefined;
        if (stopped || own) return;
        lw.start().catch(() => {
          // start() reports its failures through the 'error' callback above, which retries.
        });
      }, delay);
      timer.unref();
      delay = Math.min(delay * 2, RESTART_CAP_MS);
    });
    await lw.start();
    if (!listed || firstError !== undefined) {
      own = true;
      await lw.stop();
      throw new Error(`listing ${path} failed: ${messageOf(firstError)}`, { cause: firstError });
    }
    synced = true;
    return {
      res,
      async stop() {
        own = true;
        if (timer) clearTimeout(timer);
        await lw.stop();
      },
    };
  };

  /** Starts informers for newly served kinds and stops those of kinds no longer served. */
  const sync = async (): Promise<void> => {
    const want = chooseResources(await discover(), kinds);
    for (const [kind, inf] of informers) {
      const w = want.get(kind);
      if (w && w.version === inf.res.version) continue;
      informers.delete(kind);
      await inf.stop();
      cache.clear(kind);
      log?.info?.(
        { kind, apiVersion: `${inf.res.group}/${inf.res.version}` },
        'workload kind no longer served; stopped its informer',
      );
    }
    cache.served.clear();
    for (const k of want.keys()) cache.served.add(k);
    const fresh = [...want.values()].filter((r) => !informers.has(r.kind));
    const started = await Promise.allSettled(fresh.map(startInformer));
    let failure: unknown;
    for (const s of started) {
      if (s.status === 'fulfilled') {
        if (stopped) await s.value.stop();
        else informers.set(s.value.res.kind, s.value);
      } else failure ??= s.reason;
    }
    if (failure !== undefined) throw failure;
  };

  try {
    await sync();
  } catch (err) {
    stopped = true;
    await Promise.all([...informers.values()].map((i) => i.stop()));
    throw err;
  }

  const intervalMs = opts.discoveryIntervalMs ?? DISCOVERY_INTERVAL_MS;
  let running = false;
  const rediscovery =
    intervalMs > 0
      ? setInterval(() => {
          if (running || stopped) return;
          running = true;
          sync()
            .catch((err: unknown) =>
              log?.warn({ err: messageOf(err) }, 'workload discovery failed; trying again next round'),
            )
            .finally(() => (running = false));
        }, intervalMs)
      : undefined;
  rediscovery?.unref();

  cache.stopInformers = async (): Promise<void> => {
    stopped = true;
    if (rediscovery) clearInterval(rediscovery);
    await Promise.all([...informers.values()].map((i) => i.stop()));
    informers.clear();
  };
  return cache;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
