/**
 * @module controller/metrics
 * Prometheus metrics of one controller, on its own registry (several controllers live in one process
 * in tests). Names follow `ipkeeper_<noun>_<unit|total>` (see src/agent/metrics.ts).
 *
 * Reconcilers report their passes with `countReconcile(ctx, name, result)`: the metrics hang off the
 * context in a WeakMap, so the `ControllerContext` seam needs no metrics field and a context built by
 * a test without metrics simply counts nothing.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { ControllerContext } from './context.ts';

export interface ControllerMetrics {
  registry: Registry;
  leader: Gauge;
  reconciles: Counter<'reconciler' | 'result'>;
  admissions: Counter<'kind' | 'operation' | 'result'>;
  statusWrites: Counter;
  /** Addresses the leak GC released, by why (`GcReleaseReason`). */
  gcReleased: Counter<'reason'>;
  /** Application pools whose size the app-pool reconciler changed (replicas or the annotation moved). */
  appPoolResizes: Counter;
}

/** Why the GC released an address: a short, bounded label (the event and log say it in full). */
export type GcReleaseReason =
  'pod_gone' | 'pod_recreated' | 'pod_finished' | 'pod_terminating' | 'fixed_owner_gone';

export function createControllerMetrics(opts: { defaultMetrics?: boolean } = {}): ControllerMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false)
    collectDefaultMetrics({ register: registry, prefix: 'ipkeeper_controller_' });
  return {
    registry,
    leader: new Gauge({
      name: 'ipkeeper_controller_leader',
      help: '1 while this controller replica holds the leader lease and runs the reconcilers',
      registers: [registry],
    }),
    reconciles: new Counter({
      name: 'ipkeeper_controller_reconciles_total',
      help: 'Reconcile passes by reconciler and result (ok or error)',
      labelNames: ['reconciler', 'result'] as const,
      registers: [registry],
    }),
    admissions: new Counter({
      name: 'ipkeeper_webhook_admissions_total',
      help: 'Admission reviews answered by the validating webhook, by kind, operation and result (allowed, denied, error)',
      labelNames: ['kind', 'operation', 'result'] as const,
      registers: [registry],
    }),
    statusWrites: new Counter({
      name: 'ipkeeper_pool_status_writes_total',
      help: 'IPPool status writes (only made when the counts changed)',
      registers: [registry],
    }),
    gcReleased: new Counter({
      name: 'ipkeeper_gc_released_total',
      help: 'Addresses released by the leak GC, by reason (pod_gone, pod_recreated, pod_finished, pod_terminating, fixed_owner_gone)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    appPoolResizes: new Counter({
      name: 'ipkeeper_app_pool_resizes_total',
      help: 'Application IPPools resized by the app-pool reconciler (creations not counted)',
      registers: [registry],
    }),
  };
}

const byContext = new WeakMap<ControllerContext, ControllerMetrics>();

export function attachMetrics(ctx: ControllerContext, m: ControllerMetrics): void {
  byContext.set(ctx, m);
}

export function metricsOf(ctx: ControllerContext): ControllerMetrics | undefined {
  return byContext.get(ctx);
}

/** Counts one reconcile pass of `reconciler`; a no-op for a context without metrics. */
export function countReconcile(ctx: ControllerContext, reconciler: string, result: 'ok' | 'error'): void {
  byContext.get(ctx)?.reconciles.inc({ reconciler, result });
}

/** Counts one address released by the GC; a no-op for a context without metrics. */
export function countGcRelease(ctx: ControllerContext, reason: GcReleaseReason): void {
  byContext.get(ctx)?.gcReleased.inc({ reason });
}

/** Counts one application pool resize; a no-op for a context without metrics. */
export function countAppPoolResize(ctx: ControllerContext): void {
  byContext.get(ctx)?.appPoolResizes.inc();
}
