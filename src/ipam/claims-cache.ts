/**
 * @module ipam/claims-cache
 * The agent's claims kept on the node between two runs (`ipkeeper agent --claims-cache FILE`), so
 * a restarted agent reads them from disk and asks the store only for what changed since, instead of
 * listing every claim again: in Kubernetes mode that LIST is the whole start (100k IPClaims: ~7 s of
 * the API server's time for each agent, docs/BENCHMARKS.md).
 *
 * The file is written at a clean stop, after the agent has stopped taking requests, with the
 * revision up to which it holds every change; it is read at the next start, which then watches
 * claims from that revision (`Store.watchFrom`). Why the start is safe with a file that is behind:
 * - a change the file lacks arrives from the watch within moments; a revision the server no longer
 *   has (a file older than the API server's history, or newer than its revision: another cluster,
 *   a restored backup) makes the watch reset, and the engine lists everything as without a file;
 * - an address the file shows free may be taken: the claim's create then fails (the store keeps one
 *   claim per address, DESIGN invariant 1) and the engine proposes another, as for any lost race;
 * - a claim the file shows may have been released: the engine reads an attachment's claims that
 *   come from the file before handing them back to a repeated ADD (`Ipam.heldBy`);
 * - pools and reservations are never taken from the file: the engine reads them at every start.
 *
 * Format: one line of JSON (the header: format, the store's identity, the revision, the count),
 * then one JSON array of `[key, version, claim]` (the agent's own writes, put in its cache as they
are answered, can be past the revision: the watch's replay of them changes nothing). Written to a temporary file, flushed and renamed
 * over the old one, so a crash leaves the old file or the new one. A file that fails any check is
 * ignored with the reason, never half-used.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import type { IPClaim } from '../api/kinds.ts';
import type { Versioned } from '../store/store.ts';
import { CLAIM_PREFIX, type HeldClaim } from './state.ts';

export const CLAIMS_CACHE_FORMAT = 'ipkeeper.io/claims-cache/v1';

interface Header {
  format: string;
  /** `Store.identity()` of the store the claims came from. */
  store: string;
  revision: string;
  count: number;
  written: string;
}

export type CacheRead =
  { ok: true; revision: string; entries: Versioned<IPClaim>[] } | { ok: false; reason: string };

const DECIMAL = /^[1-9]\d*$/;

/**
 * Writes `claims`, complete up to `revision`, for the store `identity`. Replaces the file whole.
 * @throws the file system's error (the old file is left as it was).
 */
export function writeClaimsCache(
  path: string,
  identity: string,
  revision: string,
  claims: Iterable<HeldClaim>,
): number {
  const parts: string[] = [];
  for (const h of claims) parts.push(JSON.stringify([h.key, h.version, h.claim]));
  const header: Header = {
    format: CLAIMS_CACHE_FORMAT,
    store: identity,
    revision,
    count: parts.length,
    written: new Date().toISOString(),
  };
  const text = `${JSON.stringify(header)}\n[${parts.join(',\n')}]\n`;
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  return parts.length;
}

/**
 * Reads the file written for the store `identity`; `ok: false` with the reason when it is missing,
 * unreadable, of another format or store, or malformed anywhere.
 */
export function readClaimsCache(path: string, identity: string): CacheRead {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'no file yet' : `cannot read it: ${String(e)}` };
  }
  const nl = text.indexOf('\n');
  let header: Partial<Header>;
  let body: unknown;
  try {
    header = JSON.parse(nl < 0 ? text : text.slice(0, nl)) as Partial<Header>;
    if (header?.format !== CLAIMS_CACHE_FORMAT) {
      return {
        ok: false,
        reason: `its format is ${JSON.stringify(header?.format)}, not ${CLAIMS_CACHE_FORMAT}`,
      };
    }
    body = JSON.parse(text.slice(nl + 1));
  } catch (e) {
    return { ok: false, reason: `it is not valid JSON (${(e as Error).message})` };
  }
  if (header.store !== identity) {
    return { ok: false, reason: `it holds another store's claims (${header.store}, this is ${identity})` };
  }
  const revision = header.revision;
  if (typeof revision !== 'string' || !DECIMAL.test(revision)) {
    return { ok: false, reason: `its revision ${JSON.stringify(revision)} is not a positive decimal` };
  }
  if (!Array.isArray(body) || body.length !== header.count) {
    return {
      ok: false,
      reason: `it lists ${Array.isArray(body) ? body.length : 'no'} claims, its header ${header.count}`,
    };
  }
  const entries: Versioned<IPClaim>[] = new Array(body.length);
  for (let i = 0; i < body.length; i++) {
    const t = body[i] as unknown[];
    const [key, version, claim] = Array.isArray(t) ? t : [];
    const spec = (claim as IPClaim | undefined)?.spec;
    if (
      typeof key !== 'string' ||
      !key.startsWith(CLAIM_PREFIX) ||
      typeof version !== 'string' ||
      !DECIMAL.test(version) ||
      typeof spec !== 'object' ||
      spec === null ||
      typeof spec.ip !== 'string' ||
      typeof spec.network !== 'string' ||
      typeof spec.pool !== 'string'
    ) {
      return { ok: false, reason: `entry ${i} is not [claim key, revision, IPClaim]` };
    }
    entries[i] = { key, version, value: claim as IPClaim };
  }
  return { ok: true, revision, entries };
}
