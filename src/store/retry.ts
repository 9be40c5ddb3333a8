/**
 * @module store/retry
 * The one read → change → write-if-version loop (STYLE.md: Spiderpool copied it five times, one copy
 * with the wrong bound). Every read-modify-write of an object goes through `mutate`.
 */
import { IpamError } from '../errors.ts';
import type { Store, Version } from './store.ts';

export const MUTATE_ATTEMPTS = 16;

export type MutateOutcome<T> =
  | { action: 'created' | 'updated' | 'unchanged'; value: T; version: Version }
  | { action: 'deleted'; version: Version }
  | { action: 'absent' };

/**
 * Reads `key`, asks `change` for the new value (`undefined` current means absent; return `undefined`
 * to delete, or the same object to leave it), and writes it with the version read as precondition,
 * re-reading and re-asking on conflict.
 * @throws IpamError CONFLICT after MUTATE_ATTEMPTS lost races; whatever `change` throws; StoreError.
 */
export async function mutate<T>(
  store: Store,
  key: string,
  change: (current: T | undefined) => T | undefined,
): Promise<MutateOutcome<T>> {
  for (let attempt = 0; attempt < MUTATE_ATTEMPTS; attempt++) {
    const cur = await store.get<T>(key);
    const next = change(cur?.value);
    if (next === undefined) {
      if (!cur) return { action: 'absent' };
      const r = await store.delete(key, cur.version);
      if (r.ok) return { action: 'deleted', version: r.version };
      continue;
    }
    if (cur && next === cur.value) return { action: 'unchanged', value: cur.value, version: cur.version };
    if (!cur) {
      const r = await store.create(key, next);
      if (r.created) return { action: 'created', value: next, version: r.version };
      continue;
    }
    const r = await store.update(key, next, cur.version);
    if (r.ok) return { action: 'updated', value: next, version: r.version };
  }
  throw new IpamError('CONFLICT', `"${key}" kept changing underneath (${MUTATE_ATTEMPTS} attempts); retry`, {
    key,
  });
}
