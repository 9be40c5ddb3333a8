/**
 * @module controller/reconcilers
 * Every control loop the leader runs, in start order. Each entry builds a fresh `Reconciler`
 * (a new leader term starts new instances). One line per reconciler; keep the list short.
 */
import type { Reconciler } from './context.ts';
import { VipReconciler } from './vip.ts';
import { PoolFinalizerReconciler } from './finalizer.ts';
import { PoolStatusReconciler } from './pool-status.ts';
import { NetworkConfigReconciler } from './netconfig.ts';
import { AppPoolReconciler } from './app-pools.ts';
import { GcReconciler } from './gc.ts';

export const RECONCILERS: (() => Reconciler)[] = [
  () => new PoolFinalizerReconciler(),
  () => new PoolStatusReconciler(),
  () => new NetworkConfigReconciler(),
  () => new AppPoolReconciler(),
  () => new GcReconciler(),
  () => new VipReconciler(),
];
