/**
 * @module controller/reconcilers
 * Every control loop the leader runs, in start order. Each entry builds a fresh `Reconciler`
 * (a new leader term starts new instances). One line per reconciler; keep the list short.
 */
import type { Reconciler } from './context.ts';

export const RECONCILERS: (() => Reconciler)[] = [];
