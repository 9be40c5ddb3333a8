/**
 * @module agent/ui/release
 * Operator release of listed claims (`POST /v1/release`, used by `ipkeeper release --from-report`):
 * each claim is deleted only at the version the operator saw (DESIGN invariant 3). A claim that was
 * released and made again, or changed in any way, since the report has another version and is
 * skipped — its address may have a new, legitimate holder.
 *
 * Errors: IpamError INVALID_OBJECT for a malformed body (nothing is deleted); StoreError from the store.
 */
import { IpamError } from '../../errors.ts';
import { formatAddr, parseAddrKey } from '../../net/addr.ts';
import type { IPClaim } from '../../api/kinds.ts';
import { CLAIM_PREFIX, type IpamState } from '../../ipam/state.ts';
import { validateKey, type Store } from '../../store/store.ts';
import { ownerText } from './map.ts';

/** Items per request: a report of a whole cluster fits; a runaway script does not. */
export const RELEASE_ITEM_LIMIT = 10_000;

export interface ReleaseItem {
  key: string;
  version: string;
}

export type ReleaseOutcome = 'released' | 'changed' | 'gone';

export interface ReleaseResult {
  key: string;
  version: string;
  ip: string;
  outcome: ReleaseOutcome;
  /** The version stored now, when the claim changed. */
  currentVersion?: string;
  message: string;
}

/** The address in a claim key `ipclaims/<network>.<address key>` (network names hold no dot). */
export function ipOfKey(key: string): string {
  const name = key.slice(CLAIM_PREFIX.length);
  const dot = name.indexOf('.');
  try {
    return formatAddr(parseAddrKey(name.slice(dot + 1)));
  } catch {
    return name;
  }
}

/**
 * Checks the body `{items: [{key, version}]}`.
 * @throws IpamError INVALID_OBJECT naming the bad item.
 */
export function parseReleaseItems(body: unknown): ReleaseItem[] {
  const items = (body as { items?: unknown } | null)?.items;
  if (!Array.isArray(items)) {
    throw new IpamError(
      'INVALID_OBJECT',
      'body must be {"items": [{"key": "ipclaims/...", "version": "..."}]}',
    );
  }
  if (items.length > RELEASE_ITEM_LIMIT) {
    throw new IpamError(
      'INVALID_OBJECT',
      `${items.length} items: release at most ${RELEASE_ITEM_LIMIT} per request`,
    );
  }
  return items.map((it: unknown, i) => {
    const o = (it ?? {}) as { key?: unknown; version?: unknown };
    if (typeof o.key !== 'string' || !o.key.startsWith(CLAIM_PREFIX)) {
      throw new IpamError(
        'INVALID_OBJECT',
        `items[${i}].key must be a claim key "ipclaims/<network>.<address>", got ${JSON.stringify(o.key)}`,
        { field: `items[${i}].key` },
      );
    }
    try {
      validateKey(o.key);
    } catch (e) {
      throw new IpamError(
        'INVALID_OBJECT',
        `items[${i}].key: ${e instanceof Error ? e.message : String(e)}`,
        { field: `items[${i}].key` },
      );
    }
    if (typeof o.version !== 'string' || o.version === '') {
      throw new IpamError(
        'INVALID_OBJECT',
        `items[${i}].version must be the claim's version from the report (a string)`,
        { field: `items[${i}].version` },
      );
    }
    return { key: o.key, version: o.version };
  });
}

/**
 * Deletes each claim at its version, in order. Never deletes a claim whose version differs.
 * @throws StoreError when the store fails (items before it may have been released; the answer of a
 *   retry says which are gone).
 */
export async function releaseClaims(
  store: Store,
  state: IpamState,
  items: ReleaseItem[],
): Promise<ReleaseResult[]> {
  const out: ReleaseResult[] = [];
  for (const it of items) {
    const ip = ipOfKey(it.key);
    const r = await store.delete(it.key, it.version);
    if (r.ok) {
      state.remove(it.key, r.version);
      out.push({
        ...it,
        ip,
        outcome: 'released',
        message: `released ${ip} (${it.key} at version ${it.version})`,
      });
    } else if (!r.current) {
      out.push({
        ...it,
        ip,
        outcome: 'gone',
        message: `${ip}: already released (${it.key} is not in the store)`,
      });
    } else {
      state.put(r.current.key, r.current.value, r.current.version);
      const c = r.current.value as IPClaim;
      const who = c?.spec?.owner ? ownerText(c) : 'an unknown owner';
      out.push({
        ...it,
        ip,
        outcome: 'changed',
        currentVersion: r.current.version,
        message: `${ip}: skipped, changed since the report (version ${it.version}, now ${r.current.version}, held by ${who}); run ipkeeper check again`,
      });
    }
  }
  return out;
}
