/**
 * The fixed-IP tests of fixed.test.ts again, on a store that writes keys one by one (no
 * `createMany`), as the Kubernetes backend: there a plain pod's ADD makes its claims one by one and
 * creates its Endpoint first, reading it only when one exists (`EndpointPlan.createFirst`).
 * add-new.test.ts counts that path's store calls.
 */
import { MemoryStore } from '../store/memory.ts';
import type { Store } from '../store/store.ts';
import { fixture } from './fixed.test.ts';

fixture.store = (): Store => {
  const inner = new MemoryStore();
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'createMany') return undefined;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
};
