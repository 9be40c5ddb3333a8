/**
 * @module controller/shared
 * Informers the reconcilers of one `ControllerContext` (one leader term) share, counted by
 * reference like the engine cache (src/controller/cache.ts): the first `acquire` starts it, the
 * last release stops it, a new term starts afresh.
 *
 *   - the workload cache (src/cluster/workloads.ts): application pools follow replicas, GC reads a
 *     StatefulSet's replicas and a VM's uid — one set of watches for both, not two;
 *   - the pod informer over all namespaces: GC and VIPs both follow every pod.
 *
 * Each handle tracks the listeners it added and removes them on release, so a stopped reconciler is
 * never called again while the others keep the informer.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { startWorkloadCache, type WorkloadCache } from '../cluster/workloads.ts';
import type { ControllerContext, ControllerLogger } from './context.ts';

/** An informer whose watch or list failed starts again after this, doubling up to the cap. */
const RESTART_FIRST_MS = 500;
const RESTART_CAP_MS = 30_000;

interface Entry<T> {
  value: Promise<T>;
  refs: number;
}

/** `key` → context → running thing. */
const registry = new Map<string, WeakMap<ControllerContext, Entry<unknown>>>();

/**
 * The context's shared `key`, started by `start` on the first acquire. The returned `release`
 * drops this reference; the last one calls `stop`.
 * @throws whatever `start` throws (the reference is dropped again, the next acquire starts afresh).
 */
export async function acquireShared<T>(
  ctx: ControllerContext,
  key: string,
  start: () => Promise<T>,
  stop: (t: T) => Promise<void>,
): Promise<{ value: T; release: () => Promise<void> }> {
  let byCtx = registry.get(key);
  if (!byCtx) registry.set(key, (byCtx = new WeakMap()));
  let e = byCtx.get(ctx) as Entry<T> | undefined;
  if (!e) {
    const entry: Entry<T> = { value: start(), refs: 0 };
    e = entry;
    byCtx.set(ctx, entry);
    entry.value.catch(() => {
      if (byCtx.get(ctx) === entry) byCtx.delete(ctx);
    });
  }
  const entry = e;
  entry.refs++;
  let value: T;
  try {
    value = await entry.value;
  } catch (err) {
    entry.refs--;
    throw err;
  }
  let released = false;
  return {
    value,
    async release() {
      if (released) return;
      released = true;
      if (--entry.refs === 0) {
        if (byCtx.get(ctx) === entry) byCtx.delete(ctx);
        await stop(value);
      }
    },
  };
}

/**
 * The term's workload cache (every kind the server serves), as a `WorkloadCache` whose `stop()`
 * drops this reference and removes the listeners added through it.
 * @throws Error when the informers cannot start (discovery or a first list failed).
 */
export async function acquireWorkloads(ctx: ControllerContext): Promise<WorkloadCache> {
  const { value: w, release } = await acquireShared(
    ctx,
    'workloads',
    () => startWorkloadCache(ctx.kc, { log: ctx.log }),
    (c) => c.stop(),
  );
  const mine = new Set<() => void>();
  return {
    get: (k, ns, n) => w.get(k, ns, n),
    list: (k) => w.list(k),
    ownerChain: (ns, refs) => w.ownerChain(ns, refs),
    has: (k) => w.has(k),
    on(listener) {
      const off = w.on(listener);
      mine.add(off);
      return () => {
        mine.delete(off);
        off();
      };
    },
    async stop() {
      for (const off of mine) off();
      mine.clear();
      await release();
    },
  };
}

/** A pod as the informer delivers it (raw JSON). */
export interface RawPod {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    deletionTimestamp?: string | Date;
    deletionGracePeriodSeconds?: number;
    ownerReferences?: { kind: string; name: string; uid?: string; controller?: boolean }[];
  };
  spec?: { nodeName?: string };
  status?: { phase?: string };
}

export type PodListener = (type: 'add' | 'update' | 'delete', pod: RawPod) => void;

export interface SharedPods {
  /** Adds a listener; it is first told of every pod already listed ('add'). Returns an unsubscribe. */
  on(listener: PodListener): () => void;
  /** Drops this reference and its listeners; the last one stops the informer. */
  release(): Promise<void>;
}

interface PodInformer {
  listeners: Set<PodListener>;
  list(): RawPod[];
  stop(): Promise<void>;
}

async function startPodInformer(kc: KubeConfig, log: ControllerLogger): Promise<PodInformer> {
  const k8s = await import('@kubernetes/client-node');
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const listeners = new Set<PodListener>();
  const emit = (type: 'add' | 'update' | 'delete', p: RawPod): void => {
    for (const l of listeners) {
      try {
        l(type, p);
      } catch (err) {
        // One reconciler's bug must not stop the others or the informer that called us.
        log.warn({ err: String(err) }, 'pod listener failed');
      }
    }
  };
  const lw = new k8s.ListWatch<InstanceType<typeof k8s.V1Pod>>(
    '/api/v1/pods',
    new k8s.Watch(kc),
    () => core.listPodForAllNamespaces(),
    false,
  );
  lw.on('add', (p) => emit('add', p as RawPod));
  lw.on('update', (p) => emit('update', p as RawPod));
  lw.on('delete', (p) => emit('delete', p as RawPod));
  let own = false;
  let synced = false;
  let firstError: unknown;
  let delay = RESTART_FIRST_MS;
  let timer: NodeJS.Timeout | undefined;
  lw.on('error', (err?: unknown) => {
    if (own) return; // Our own stop aborts the watch, which reports as an error.
    if (!synced) {
      firstError = err;
      return;
    }
    // ListWatch does not restart after an error; we do, with backoff (as src/cluster/workloads.ts).
    log.warn(
      { err: String(err), resource: '/api/v1/pods', retryMs: delay },
      'pod informer failed; restarting',
    );
    timer = setTimeout(() => {
      timer = undefined;
      if (own) return;
      lw.start().catch(() => {
        // Reported through the 'error' callback, which retries.
      });
    }, delay);
    timer.unref();
    delay = Math.min(delay * 2, RESTART_CAP_MS);
  });
  await lw.start();
  if (firstError !== undefined) {
    own = true;
    await lw.stop();
    throw new Error(`listing /api/v1/pods failed: ${String(firstError)}`, { cause: firstError });
  }
  synced = true;
  return {
    listeners,
    list: () => lw.list() as RawPod[],
    async stop() {
      own = true;
      if (timer) clearTimeout(timer);
      listeners.clear();
      await lw.stop();
    },
  };
}

/**
 * The term's pod informer (all namespaces), listed when this resolves.
 * @throws Error when pods cannot be listed.
 */
export async function acquirePods(ctx: ControllerContext): Promise<SharedPods> {
  const { value: inf, release } = await acquireShared(
    ctx,
    'pods',
    () => startPodInformer(ctx.kc, ctx.log),
    (i) => i.stop(),
  );
  const mine = new Set<PodListener>();
  return {
    on(listener) {
      mine.add(listener);
      inf.listeners.add(listener);
      for (const p of inf.list()) listener('add', p);
      return () => {
        mine.delete(listener);
        inf.listeners.delete(listener);
      };
    },
    async release() {
      for (const l of mine) inf.listeners.delete(l);
      mine.clear();
      await release();
    },
  };
}
