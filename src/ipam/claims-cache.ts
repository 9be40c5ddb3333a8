/**
 * @module ipam/claims-cache
 * The agent's claims kept on the node between two runs (`ipkeeper agent --claims-cache FILE`), so
 * a restarted agent reads them from disk and asks the store only for what changed since, instead of
 * listing every claim again: in Kubernetes mode that LIST is the whole start (100k IPClaims: ~7 s of
 * the API server's time for each agent, docs/BENCHMARKS.md); on etcd a range read of every claim.
 * Stores that can resume a watch from a revision and name their cluster use it (kubernetes: the
 * `kube-system` namespace's uid; etcd: the cluster id and the key prefix); sqlite and memory do not.
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
 *   come from the file (its own last writes included) before handing them back to a repeated ADD
 *   (`Ipam.heldBy`);
 * - pools and reservations are never taken from the file: the engine reads them at every start.
 *
 * After a crash the file is the last clean stop's: older, so the watch replays more, or resets.
 *
 * What the file cannot tell: etcd restored from a backup *older than the file* and written past the
 * file's revision since. The revisions between the backup's and the file's then name other
 * changes, and a watch from the file's revision skips them: the cache can miss claims (their
 * addresses lose create races, nothing worse) or keep claims that are gone (addresses idle until
 * a re-list). Kubernetes' own informers have the same blind spot, which is why a restore is
 * followed by restarting the control plane; here, also delete the agents' files (the chart's
 * `/run/ipkeeper/claims-cache.json`) or reboot the nodes (`/run` is a tmpfs).
 *
 * Format: line 1 is JSON, the header (format, the store's identity, the revision, the count, the
 * length and CRC-32 of the rest); line 2 is JSON, `{strings, claims}`: for every claim its key,
 * version, the spec fields the engine's indexes use (`ClaimDigest`) and the length of its JSON,
 * one flat array (see `writeClaimsCache`); then one line per claim, its JSON, in the same order
 * (JSON text has no raw newline). The start indexes each claim from line 2 and keeps its JSON's
 * bytes to parse when something reads the claim (`LazyClaim`; the engine parses them all in small
 * steps once ready): parsing the JSON of 100k claims (61 MB) took 360–580 ms, as long as the rest
 * of the file's start. The agent's own writes, put in its cache as they are answered, can be past
 * the revision: the watch's replay of them changes nothing. Written to a temporary file, flushed
 * and renamed over the old one, so a crash leaves the old file or the new one. A file that fails
 * any check (the CRC covers every claim) is ignored with the reason, never half-used.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { parseAddr, type Family } from '../net/addr.ts';
import { CLAIM_PREFIX, LazyClaim, type ClaimDigest, type HeldClaim } from './state.ts';

export const CLAIMS_CACHE_FORMAT = 'ipkeeper-claims-cache/v1';

interface Header {
  format: string;
  /** `Store.identity()` of the store the claims came from. */
  store: string;
  revision: string;
  count: number;
  /** Bytes after the header line, and their CRC-32 (a damaged or cut file is not used). */
  bytes: number;
  crc32: number;
  written: string;
}

export type CacheRead = { ok: true; revision: string; claims: LazyClaim[] } | { ok: false; reason: string };

const DECIMAL = /^[1-9]\d*$/;
/** Values per claim in line 2's `claims` (see `writeClaimsCache`). */
const STRIDE = 10;

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
  // Line 2: {strings, claims}: per claim key, version, ip, network, family, pool, cniNetwork,
  // containerId, ifName and the byte length of its JSON line, one flat array; the fields most
  // claims share are indexes into `strings` (-1: absent), so the start parses 4 strings per claim,
  // not 8, and no array per claim, and finds each JSON line without looking for its end.
  const strings: string[] = [];
  const index = new Map<string, number>();
  const ref = (v: string | undefined): number => {
    if (v === undefined) return -1;
    let i = index.get(v);
    if (i === undefined) index.set(v, (i = strings.push(v) - 1));
    return i;
  };
  const flat: (string | number | null)[] = [];
  const texts: string[] = [];
  for (const h of claims) {
    // A claim still as the file had it is written as it was read, unparsed.
    const lazy = h instanceof LazyClaim && h.unparsed ? h : undefined;
    const d: ClaimDigest = lazy ?? h.claim.spec;
    const text = lazy?.text ?? JSON.stringify(h.claim);
    texts.push(text);
    flat.push(
      h.key,
      h.version,
      d.ip,
      ref(d.network),
      d.family,
      ref(d.pool),
      ref(d.cniNetwork),
      d.containerId ?? null,
      ref(d.ifName),
      Buffer.byteLength(text),
    );
  }
  const body = Buffer.from(`${JSON.stringify({ strings, claims: flat })}\n${texts.join('\n')}\n`, 'utf8');
  const header: Header = {
    format: CLAIMS_CACHE_FORMAT,
    store: identity,
    revision,
    count: texts.length,
    bytes: body.length,
    crc32: crc32(body),
    written: new Date().toISOString(),
  };
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    // writeFileSync on a descriptor writes everything (writeSync may write part of 70 MB).
    writeFileSync(fd, `${JSON.stringify(header)}\n`);
    writeFileSync(fd, body);
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
  return texts.length;
}

/**
 * Reads the file written for the store `identity`; `ok: false` with the reason when it is missing,
 * unreadable, of another format or store, or damaged anywhere.
 */
export function readClaimsCache(path: string, identity: string): CacheRead {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'no file yet' : `cannot read it: ${String(e)}` };
  }
  const nl = buf.indexOf(10);
  let header: Partial<Header>;
  try {
    header = JSON.parse(buf.toString('utf8', 0, nl < 0 ? buf.length : nl)) as Partial<Header>;
  } catch (e) {
    return { ok: false, reason: `its header is not JSON (${(e as Error).message})` };
  }
  if (header?.format !== CLAIMS_CACHE_FORMAT) {
    return {
      ok: false,
      reason: `its format is ${JSON.stringify(header?.format)}, not ${CLAIMS_CACHE_FORMAT}`,
    };
  }
  if (header.store !== identity) {
    return { ok: false, reason: `it holds another store's claims (${header.store}, this is ${identity})` };
  }
  const revision = header.revision;
  if (typeof revision !== 'string' || !DECIMAL.test(revision)) {
    return { ok: false, reason: `its revision ${JSON.stringify(revision)} is not a positive decimal` };
  }
  const body = buf.subarray(nl + 1);
  if (nl < 0 || body.length !== header.bytes) {
    return {
      ok: false,
      reason: `it has ${nl < 0 ? 0 : body.length} bytes of claims, its header ${header.bytes}`,
    };
  }
  if (crc32(body) !== header.crc32) {
    return { ok: false, reason: 'its claims do not match its checksum' };
  }
  // Only line 2 is decoded now: each claim keeps its bytes of `body` (held until every claim has
  // been parsed) and decodes them when read.
  const nl2 = body.indexOf(10);
  let line2: { strings?: unknown; claims?: unknown };
  try {
    line2 = JSON.parse(body.toString('utf8', 0, nl2 < 0 ? body.length : nl2)) as typeof line2;
  } catch (e) {
    return { ok: false, reason: `its list of claims is not JSON (${(e as Error).message})` };
  }
  const strings = line2?.strings;
  const flat = line2?.claims;
  if (!Array.isArray(strings) || !strings.every((x) => typeof x === 'string') || !Array.isArray(flat)) {
    return { ok: false, reason: 'its list of claims is not {strings, claims}' };
  }
  const count = header.count;
  if (typeof count !== 'number' || flat.length !== count * STRIDE) {
    return { ok: false, reason: `it lists ${flat.length / STRIDE} claims, its header ${count}` };
  }
  const str = (v: unknown, optional: boolean): string | undefined | null =>
    v === -1 && optional
      ? undefined
      : Number.isInteger(v) && (v as number) >= 0
        ? (strings[v as number] ?? null)
        : null;
  const out: LazyClaim[] = new Array(count);
  let at = nl2 + 1;
  for (let i = 0, j = 0; i < count; i++, j += STRIDE) {
    const bytes = flat[j + 9];
    const start = at;
    const end = start + (typeof bytes === 'number' ? bytes : -1);
    // Each claim's JSON is `bytes` long and ends its line.
    if (typeof bytes !== 'number' || !Number.isInteger(bytes) || bytes < 2 || body[end] !== 10) {
      return { ok: false, reason: `claim ${i}'s JSON is not where its length puts it` };
    }
    at = end + 1;
    const key = flat[j];
    const version = flat[j + 1];
    const ip = flat[j + 2];
    const network = str(flat[j + 3], false);
    const family = flat[j + 4];
    const pool = str(flat[j + 5], false);
    const cniNetwork = str(flat[j + 6], true);
    const containerId = flat[j + 7];
    const ifName = str(flat[j + 8], true);
    let value: bigint | undefined;
    if (
      typeof key === 'string' &&
      key.startsWith(CLAIM_PREFIX) &&
      typeof version === 'string' &&
      DECIMAL.test(version) &&
      typeof ip === 'string' &&
      typeof network === 'string' &&
      (family === 4 || family === 6) &&
      typeof pool === 'string' &&
      cniNetwork !== null &&
      (containerId === null || typeof containerId === 'string') &&
      ifName !== null
    ) {
      try {
        const a = parseAddr(ip);
        if (a.family === family) value = a.value;
      } catch {
        value = undefined;
      }
    }
    if (value === undefined) {
      return {
        ok: false,
        reason: `claim ${i} is not key, revision, ip, network, 4|6, pool, cniNetwork, containerId, ifName`,
      };
    }
    const digest: ClaimDigest = {
      ip: ip as string,
      network: network as string,
      family: family as Family,
      pool: pool as string,
      cniNetwork: cniNetwork as string | undefined,
      containerId: (containerId as string | null) ?? undefined,
      ifName: ifName as string | undefined,
    };
    out[i] = new LazyClaim(key as string, version as string, value, digest, body, start, end);
  }
  if (at !== body.length) {
    return { ok: false, reason: `it holds more claims' JSON than its header's ${header.count}` };
  }
  return { ok: true, revision, claims: out };
}
