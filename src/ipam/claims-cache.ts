/**
 * @module ipam/claims-cache
 * The agent's claims kept on the node between two runs (`ipkeeper agent --claims-cache FILE`), so
 * a restarted agent reads them from disk and asks the store only for what changed since, instead of
 * listing every claim again: in Kubernetes mode that LIST is the whole start (100k IPClaims: ~7 s of
 * the API server's time for each agent, docs/BENCHMARKS.md); on etcd a range read of every claim.
 * Stores that can resume a watch from a revision and name their cluster use it (kubernetes: the
 * `kube-system` namespace's uid; etcd: the cluster id and the key prefix); sqlite and memory do not.
 *
 * The file is written at a clean stop, after the agent has stopped taking requests, and while it
 * serves, as a checkpoint every `--claims-cache-interval` (30 s: inside the ~75 s of history the API
 * server's watch cache keeps under churn, `CLAIMS_CACHE_INTERVAL_MS`) when the claims changed, in
 * 5 ms slices; each time with the revision up to which
 * it holds every change. It is read at the next start, which then watches claims from that
 * revision (`Store.watchFrom`). Why the start is safe with a file that is behind:
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
 * The revision also moves while the claims are quiet: etcd's periodic progress notifications (every
 * 10 min by default; `Watcher.caughtUp`) tell how far the claims watch has come, so the file of a
 * prefix nobody touched for hours still names a revision etcd has not compacted away.
 *
 * After a crash the file is the last checkpoint's: older, so the watch replays more, or — when the
 * store no longer has that revision (etcd compacted past it; the API server's watch cache holds a
 * few minutes of a busy cluster) — resets to a full read, as without a file.
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
 * length and CRC-32 of the rest, where the index line starts), padded with spaces to the room the
 * writer left for it; then one line per claim, its JSON (JSON text has no raw newline); then the
 * index line, JSON `{claims, strings}`: for every claim, in the same order, its key, version, the
 * spec fields the engine's indexes use (`ClaimDigest`) and the byte length of its JSON, one flat
 * array (see `writeClaimsCache`). The writer streams the claims out and writes the header last;
 * the reader reads the header and the index line, and each claim keeps its JSON's bytes to parse
 * when something reads it (`LazyClaim`; the engine parses them all in small steps once ready):
 * parsing the JSON of 100k claims (61 MB) took 360–580 ms, as long as the rest of the file's
 * start. The agent's own writes, put in its cache as they are answered, can be past the revision:
 * the watch's replay of them changes nothing. Written to a temporary file, flushed and renamed
 * over the old one, so a crash leaves the old file or the new one. A file that fails any check
 * (the CRC covers every claim) is ignored with the reason, never half-used; so is a file of
 * another format (v1, before checkpoints: the first start after an upgrade lists every claim).
 *
 * Cost (100k claims, 60 MB, measured in scratch runs of this module and of the bundled agent on
 * etcd; `npm run bench -- --only restart` logs it for 100k): a write of claims that were all parsed
 * (each stringified again) 240–370 ms, from a file's bytes 140–180 ms; a checkpoint in 5 ms slices
 * ~200–300 ms of CPU, the event loop held at most ~10 ms at a time. Memory: the output goes through
 * one reused 1 MiB buffer (a buffer per claim raised the agent's RSS by ~90 MB); what remains is
 * V8's young generation growing to its cap under the stringified claims, +~50 MB of RSS at 100k
 * claims, as any busy period grows it (`--max-semi-space-size=2` kept it at +5 MB, and the agent's
 * RSS at ready at 232 MB instead of 290, ready as fast).
 */
import { readFileSync } from 'node:fs';
import { open, readdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { parseAddr, type Family } from '../net/addr.ts';
import { CLAIM_PREFIX, LazyClaim, type ClaimDigest, type HeldClaim } from './state.ts';

export const CLAIMS_CACHE_FORMAT = 'ipkeeper-claims-cache/v2';

interface Header {
  format: string;
  /** `Store.identity()` of the store the claims came from. */
  store: string;
  revision: string;
  count: number;
  /** Bytes after the header line, and their CRC-32 (a damaged or cut file is not used). */
  bytes: number;
  crc32: number;
  /** Where the index line starts, in bytes after the header line. */
  index: number;
  written: string;
}

export type CacheRead = { ok: true; revision: string; claims: LazyClaim[] } | { ok: false; reason: string };

export interface CacheWriteOptions {
  /**
   * Yield to the event loop after this much work (ms), so that a write while the agent serves
   * requests (a checkpoint) delays none of them by more; default: never (a write at a stop).
   */
  sliceMs?: number;
}

const DECIMAL = /^[1-9]\d*$/;
/** Values per claim in the index line's `claims` (see `writeClaimsCache`). */
const STRIDE = 10;
/** Bytes gathered before a write to the file. */
const CHUNK_BYTES = 1 << 20;
/** Claims per piece of the index line (stringified a piece at a time, between slices). */
const INDEX_PIECE = 512;

/**
 * Writes `claims`, complete up to `revision`, for the store `identity`, to a temporary file that
 * then replaces `path` (a crash leaves the old file or the new one, never a mix). The claims are
 * written as they come, a chunk at a time, so the file is never held in memory whole; the header,
 * which counts and checksums everything after it, goes last into the room left for it at the top.
 * A claim still as a file had it (`LazyClaim`) is written from those bytes, without parsing it.
 * `claims` must not change while this runs: pass a snapshot.
 * @throws the file system's error (the old file is left as it was).
 */
export async function writeClaimsCache(
  path: string,
  identity: string,
  revision: string,
  claims: readonly HeldClaim[],
  opts: CacheWriteOptions = {},
): Promise<{ count: number; bytes: number }> {
  const sliceMs = opts.sliceMs ?? Infinity;
  let until = performance.now() + sliceMs;
  const breathe = async (): Promise<void> => {
    if (performance.now() < until) return;
    await new Promise((r) => setImmediate(r));
    until = performance.now() + sliceMs;
  };
  const written = new Date().toISOString();
  const draft = (h: Partial<Header>): string =>
    JSON.stringify({
      format: CLAIMS_CACHE_FORMAT,
      store: identity,
      revision,
      count: claims.length,
      bytes: 0,
      crc32: 0,
      index: 0,
      written,
      ...h,
    } satisfies Header);
  // The header's room: its widest form (every number at its largest) and a newline.
  const room = Buffer.byteLength(draft({ bytes: 2 ** 53, crc32: 2 ** 32, index: 2 ** 53 })) + 1;
  const tmp = `${path}.${process.pid}.tmp`;
  await removeStaleTemps(path, tmp);
  let total: number;
  const fh = await open(tmp, 'w', 0o600);
  try {
    // The index line: per claim key, version, ip, network, family, pool, cniNetwork,
    // containerId, ifName and the byte length of its JSON, one flat array; the fields most
    // claims share are indexes into `strings` (-1: absent), so the start parses 4 strings per
    // claim, not 8, and no array per claim, and finds each JSON line without looking for its end.
    const strings: string[] = [];
    const known = new Map<string, number>();
    const ref = (v: string | undefined): number => {
      if (v === undefined) return -1;
      let i = known.get(v);
      if (i === undefined) known.set(v, (i = strings.push(v) - 1));
      return i;
    };
    const flat: (string | number | null)[] = new Array(claims.length * STRIDE);
    // Everything goes through one reused buffer, so a checkpoint of 100k claims allocates no
    // buffer per claim (those raised an agent's RSS by ~90 MB, which V8 and malloc keep).
    const out = Buffer.allocUnsafe(CHUNK_BYTES);
    let used = 0;
    let crc = 0;
    let bytes = 0;
    /** Writes `length` bytes of `b` at `at` (a write to a file may write part of them). */
    const writeAt = async (b: Buffer, length: number, at: number): Promise<void> => {
      for (let done = 0; done < length;) {
        const w = await fh.write(b, done, length - done, at + done);
        done += w.bytesWritten;
      }
    };
    const writeAll = async (b: Buffer, length: number): Promise<void> => {
      crc = crc32(b.subarray(0, length), crc);
      await writeAt(b, length, room + bytes);
      bytes += length;
    };
    const flush = async (): Promise<void> => {
      if (used > 0) await writeAll(out, used);
      used = 0;
    };
    /** Appends `text` (UTF-8) and, when `nl`, a newline; returns the text's byte length. */
    const put = async (text: string | Buffer, nl: boolean): Promise<number> => {
      const most = (typeof text === 'string' ? text.length * 3 : text.length) + 1;
      if (used + most > out.length) await flush();
      let n: number;
      if (most > out.length) {
        // One text larger than the buffer: written on its own.
        const b = typeof text === 'string' ? Buffer.from(text) : text;
        await writeAll(b, b.length);
        n = b.length;
      } else {
        n = typeof text === 'string' ? out.write(text, used) : text.copy(out, used);
        used += n;
      }
      if (nl) out[used++] = 10;
      return n;
    };
    for (let i = 0, j = 0; i < claims.length; i++, j += STRIDE) {
      const h = claims[i] as HeldClaim;
      const raw = h instanceof LazyClaim ? h.bytes : undefined;
      const d: ClaimDigest = raw ? (h as LazyClaim) : h.claim.spec;
      flat[j] = h.key;
      flat[j + 1] = h.version;
      flat[j + 2] = d.ip;
      flat[j + 3] = ref(d.network);
      flat[j + 4] = d.family;
      flat[j + 5] = ref(d.pool);
      flat[j + 6] = ref(d.cniNetwork);
      flat[j + 7] = d.containerId ?? null;
      flat[j + 8] = ref(d.ifName);
      flat[j + 9] = await put(raw ?? JSON.stringify(h.claim), true);
      if ((i & 63) === 63 && performance.now() >= until) await breathe();
    }
    const index = bytes + used;
    await put('{"claims":[', false);
    for (let i = 0; i < claims.length; i += INDEX_PIECE) {
      const piece = JSON.stringify(flat.slice(i * STRIDE, (i + INDEX_PIECE) * STRIDE));
      await put(i === 0 ? piece.slice(1, -1) : `,${piece.slice(1, -1)}`, false);
      await breathe();
    }
    await put(`],"strings":${JSON.stringify(strings)}}`, true);
    await flush();
    const header = draft({ bytes, crc32: crc, index });
    await writeAt(Buffer.from(`${header}${' '.repeat(room - 1 - Buffer.byteLength(header))}\n`), room, 0);
    total = room + bytes;
    await fh.sync();
    await fh.close();
  } catch (e) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await rename(tmp, path).catch(async (e: unknown) => {
    await unlink(tmp).catch(() => undefined);
    throw e;
  });
  return { count: claims.length, bytes: total };
}

/**
 * Removes temporary files an earlier process left beside `path` (`PATH.<pid>.tmp`: killed while it
 * wrote a checkpoint), which would otherwise pile up in the node's tmpfs, one file per crash.
 */
async function removeStaleTemps(path: string, mine: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return; // the write that follows reports the directory's problem
  }
  for (const n of names) {
    if (!n.startsWith(prefix) || !/^\d+\.tmp$/.test(n.slice(prefix.length))) continue;
    const p = join(dir, n);
    if (p !== mine) await unlink(p).catch(() => undefined);
  }
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
  // Only the index line is decoded now: each claim keeps its bytes of `body` (held until every
  // claim has been parsed) and decodes them when read.
  const at0 = header.index;
  if (
    typeof at0 !== 'number' ||
    !Number.isInteger(at0) ||
    at0 < 0 ||
    at0 >= body.length ||
    (at0 > 0 && body[at0 - 1] !== 10) ||
    body[body.length - 1] !== 10
  ) {
    return { ok: false, reason: `its index line is not at byte ${String(header.index)} of its claims` };
  }
  let line: { strings?: unknown; claims?: unknown };
  try {
    line = JSON.parse(body.toString('utf8', at0, body.length - 1)) as typeof line;
  } catch (e) {
    return { ok: false, reason: `its index of claims is not JSON (${(e as Error).message})` };
  }
  const strings = line?.strings;
  const flat = line?.claims;
  if (!Array.isArray(strings) || !strings.every((x) => typeof x === 'string') || !Array.isArray(flat)) {
    return { ok: false, reason: 'its index of claims is not {claims, strings}' };
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
  let at = 0;
  for (let i = 0, j = 0; i < count; i++, j += STRIDE) {
    const bytes = flat[j + 9];
    const start = at;
    const end = start + (typeof bytes === 'number' ? bytes : -1);
    // Each claim's JSON is `bytes` long and ends its line, before the index line.
    if (
      typeof bytes !== 'number' ||
      !Number.isInteger(bytes) ||
      bytes < 2 ||
      end >= at0 ||
      body[end] !== 10
    ) {
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
  if (at !== at0) {
    return { ok: false, reason: `it holds more claims' JSON than its header's ${header.count}` };
  }
  return { ok: true, revision, claims: out };
}
