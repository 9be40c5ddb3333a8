/**
 * @module test/lib/controller-context
 * A controller context on a store of the test's own (the memory store), without an API server: for
 * reconcilers whose tests need no informer. Events are kept in `events` instead of being posted.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { Store } from '../../src/store/store.ts';
import type { ControllerContext, ControllerEvent } from '../../src/controller/context.ts';

export function storeContext(store: Store): { ctx: ControllerContext; events: ControllerEvent[] } {
  const events: ControllerEvent[] = [];
  const ctx: ControllerContext = {
    kc: {} as KubeConfig,
    store,
    log: { debug() {}, info() {}, warn() {}, error() {} },
    namespace: 'ipkeeper-system',
    now: () => Date.now(),
    async event(e) {
      events.push(e);
    },
  };
  return { ctx, events };
}
