/**
 * @module test/lib/claim-reads
 * A store that records how the engine read the claims: which of its methods (`scanText`, `scan`,
 * `list`) was called on the claims' prefix, once per call.
 */
import { CLAIM_PREFIX } from '../../src/ipam/state.ts';
import type { Store } from '../../src/store/store.ts';

const READS = new Set(['scanText', 'scan', 'list']);

export function recordingClaimReads(store: Store): { store: Store; reads: string[] } {
  const reads: string[] = [];
  const recording = new Proxy(store, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r) as unknown;
      if (typeof k === 'string' && READS.has(k) && typeof v === 'function') {
        return (prefix: string, ...rest: unknown[]) => {
          if (prefix === CLAIM_PREFIX) reads.push(k);
          return (v as (...x: unknown[]) => unknown).call(t, prefix, ...rest);
        };
      }
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  }) as Store;
  return { store: recording, reads };
}
