/**
 * @module store/kubernetes
 * `KubernetesStore`: the `Store` kept in custom resources, through the Kubernetes API server.
 *
 * URL: `kubernetes:` (or `k8s:`) uses $KUBECONFIG when set, else the pod's service account when
 * running in a cluster, else ~/.kube/config; `kubernetes:/path/to/kubeconfig` names the file.
 *
 * Layout. Keys of our kinds map natively onto their CRs, so `kubectl get ippools` shows the same
 * objects the engine works on:
 *
 *   ippools/<name>             IPPool      ippools.ipkeeper.io    <name>
 *   reservedips/<name>         ReservedIP  reservedips.ipkeeper.io
 *   ipclaims/<name>            IPClaim     ipclaims.ipkeeper.io
 *   <plural>/<ns>/<name>       any namespaced kind of KINDS, in namespace <ns>
 *
 * The value of such a key IS the Kubernetes object. On write, `metadata.name`/`namespace` come from
 * the key (a value naming another object is refused), `apiVersion`/`kind` are filled in (a value of
 * another kind is refused), and what the server owns is dropped (`resourceVersion` — the version
 * argument is the precondition —, `uid`, `creationTimestamp`, `generation`, `managedFields`,
 * `selfLink`, `deletionTimestamp`, `deletionGracePeriodSeconds`). On read, `resourceVersion` (it is
 * the entry's version), `managedFields` and `selfLink` are dropped; the server's `uid`,
 * `creationTimestamp` and `generation` are kept, because users and `ipkeeper get` want them. So a
 * value read back equals what was written plus those three fields, except where the CRD schema
 * changed it: the API server prunes fields the schema does not know and applies its defaults.
 *
 * `status`: for a kind whose CRD has the status subresource (IPPool), the object is written first
 * (the server ignores `status` there), then, if the value carries a `status` that differs from the
 * stored one, `/status` is written at the version the first write returned; the version handed back
 * is the last write's. A value without `status` leaves the stored status alone (the spec/status
 * split of Kubernetes). The two writes are not atomic: when another writer gets in between, create
 * still reports `created` (with the first write's version; the status is not written) and update
 * reports a conflict with the current value (the spec half is written; the caller's retry writes the
 * status).
 *
 * Every other key (`nodeleases/<node>`, or any key at all with `native: false`) is one object of
 * the generic cluster-scoped kind `KeyValue` (`keyvalues.ipkeeper.io`, see `keyValueCrd()`):
 * `spec.key` holds the key, `spec.value` the value (any JSON, kept verbatim by
 * `x-kubernetes-preserve-unknown-fields`), and the label `ipkeeper.io/key-kind` the key's first
 * segment, so a list or watch of `claims/` asks the server for that kind only. The object's name is
 * `keyValueName(key)`: a readable slug of the key plus 16 hex digits of its SHA-256 — keys are up to
 * 3 × 253 characters, names at most 253, so no encoding can be both short and reversible; instead
 * every read checks `spec.key` and reports a (practically impossible) collision as a StoreError.
 * Strings holding lone UTF-16 surrogates are refused (the server would turn them into U+FFFD).
 *
 * Versions are `metadata.resourceVersion`: on this API server the etcd revision, one counter for
 * every resource, so versions of different kinds compare with `versionNewer`. The operations:
 *
 *   create   POST; 409 AlreadyExists → GET the holder → `{ created: false, existing }`
 *   update   PUT with metadata.resourceVersion = version; 409 → `{ ok: false, current }`,
 *            404 → `{ ok: false, current: undefined }`
 *   delete   DELETE with preconditions.resourceVersion = version (409/404 as for update)
 *   list     LIST per resource, `limit`/`continue` pages (one snapshot per resource), filtered to
 *            the prefix and sorted by key
 *   scan     LIST per resource from the watch cache (resourceVersion=0), read as it streams in;
 *            the IPClaims as several LISTs at once (see "Reading everything at a start")
 *   watch    WATCH per resource from a known resourceVersion, with bookmarks; resumed from the last
 *            version seen whenever the stream ends; `onReset` on 410 Gone (the server no longer has
 *            the history the watcher needs), after which it carries on from the current revision.
 *
 * A version that is not a canonical decimal never reaches the server: an empty or "0"
 * resourceVersion would make the PUT or DELETE unconditional.
 *
 * The deletion's version (verified on v1.20.2): DELETE of a custom resource answers with a
 * `Status` that carries no resourceVersion at all, while the watch's DELETED event carries the
 * revision of the deletion itself (a new revision, above the object's last resourceVersion; the
 * object in the event is its last state). So delete is three requests: a single-object LIST by
 * name (a quorum read giving the object and the current revision R), the DELETE, then a WATCH of
 * that name from R, whose first event is our deletion (a change after R would have failed the
 * precondition). Should that watch fail (e.g. 410 after an API server restart), the version handed
 * back is R + 1 instead: at or below the deletion's revision, above every version the key had, and
 * below that of any later write of it — so a cache still orders this key's events right.
 *
 * An object with finalizers is only marked for deletion: delete then returns the version of that
 * mark, and the key stays visible (with `metadata.deletionTimestamp`) until the finalizers are gone.
 * (The update that removes the last one deletes the object, and v1.20 answers it with the version
 * the object had.)
 *
 * Where a watch starts. The API server serves watches from a per-resource cache that is created on
 * the resource's first request and cannot go back before that; a watch from an older revision gets
 * 410. So `openKubernetesStore` first asks every resource it uses for its cache's revision (a LIST
 * with resourceVersion=0 matching no name). A watch then starts after the newest revision this store
 * has seen in any answer — nothing committed after `watch` returns is missed — or, when this store
 * listed a covering prefix in the last few seconds, after that list's revision, so list-then-watch
 * has no gap. It may deliver a few events from before the call (`versionNewer` tells).
 *
 * Reading everything at a start. An agent starts by reading every claim (`scan`). A consistent
 * LIST reads each page from etcd: on v1.20.2 here 218–285 µs of API server time per object, ~25 s
 * for 100k claims, with 30–39 s of etcd + API server CPU (docs/BENCHMARKS.md, kube). The API
 * server's watch cache holds the same objects decoded and answers `resourceVersion=0` 3–4
 * times faster, for a quarter of the CPU, as client-go's informers read it. Two things make that
 * safe here:
 *   - the cache does not page (v1.20 ignores `limit` with resourceVersion=0): 100k IPClaims are
 *     one ~97 MB answer, so it is read as it streams in (`list-items.ts`), each item parsed on its
 *     own, never the whole text or tree at once;
 *   - the answer is at the cache's revision, which can be older than where the caller's watches
 *     started (the engine starts them before it reads, after the newest revision of any resource;
 *     another API server's cache may lag): just before the read, every open watch of the resource
 *     that is past the cache's revision is moved back to it (`rewindWatches`) and delivers the
 *     events since again, which the caller's cache tells by version, as it does the events a watch
 *     may repeat from before its start. Moved then, not after the read: the cache keeps a bounded
 *     history, and a watch sent back over the seconds a large read takes could find it gone (410,
 *     a full resync). Only a read older than that revision (a lagging API server) moves them again.
 * A cached read that fails for any reason falls back to the paged, consistent LIST.
 *
 * The claims in shards. The API server encodes a LIST's answer on one core, and for custom
 * resources that is most of the read (~80 µs of its CPU per IPClaim here). So every IPClaim this
 * store writes carries the label `ipkeeper.io/shard` (`shardOf(name)`, 0–15; taken off again on
 * read, so callers never see it), and `scan` reads the IPClaims as `scanShards` LISTs at once (4;
 * IPKEEPER_KUBE_SCAN_SHARDS), each a group of shards by label selector, plus one LIST of the claims
 * without the label or with a value not ours (`notin`: written by another client or an older
 * agent), so every claim is read exactly once. The watches go back to the oldest of the answers'
 * revisions. Measured on the test cluster (2 CPUs shared by client, API server and etcd): 50k
 * claims scanned in 3.6–4.5 s by one LIST, 1.9–3.3 s by four (4 runs each); an agent's start with
 * 100k claims in 0.83–0.90× the time of the same start with one LIST (docs/BENCHMARKS.md, kube),
 * the machine then CPU-bound. An API server on cores of its own gains more.
 *
 * Failures. Every call has a deadline (`timeoutMs`, 10 s) and fails with a `StoreError`: retryable
 * for an unreachable server, 429, 5xx and timeouts; not retryable for 4xx answers (400, 401, 403,
 * 422: the server's message is in ours), a missing CRD (the message says how to install it), TLS
 * failures and calls after `close()`. Reads are retried until the deadline; a write is retried only
 * when it provably never reached the server (connection refused, 429); once it may have been sent,
 * a lost answer fails with a retryable StoreError saying the write may or may not have been applied
 * — re-sending a create would find its own first attempt and report the key as someone else's.
 * Conflicts are never retried here; callers use `mutate` (retry.ts).
 *
 * `@kubernetes/client-node` (slow to import) is loaded by `openKubernetesStore` only; it supplies
 * the kubeconfig handling (TLS material, tokens, exec plugins). Requests go out through our own
 * client, so status codes, preconditions and watch streams are under our control: over HTTP/2 to an
 * https server without a proxy (as client-go does) — every request and watch a stream of one
 * connection per store; a new connection when the TLS material changes, when the server closes it
 * or when it goes silent (a request or watch that times out sends a ping; no answer in 5 s drops
 * it) — else over HTTP/1.1 with a keep-alive agent (`http2: false`, IPKEEPER_KUBE_HTTP=1.1).
 * Measured (2000 IPClaim creates from 10 clients, 100 at a time each, on the test cluster):
 * HTTP/2 1.14–1.35 s, HTTP/1.1 keep-alive 1.67–2.14 s; the clients' CPU 0.27–0.39 s against
 * 0.76–0.92 s, the API server's and etcd's 2.0–2.4 s against 2.5–3.2 s (TLS handshakes and
 * per-request connection work gone).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type tls from 'node:tls';
import { homedir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { KubeConfig } from '@kubernetes/client-node';
import { IpamError } from '../errors.ts';
import { API_VERSION, GROUP, KINDS, VERSION, type KindInfo } from '../api/kinds.ts';
import { toJson } from './codec.ts';
import { StoreError, newWatchStats, resumeWatch, validateKey } from './store.ts';
import type {
  CasResult,
  CreateResult,
  Store,
  Version,
  Versioned,
  WatchEvent,
  WatchStats,
  Watcher,
} from './store.ts';
import { backoff, messageOf, sleep } from './backoff.ts';
import { ListItems, withoutManagedFields } from './list-items.ts';
import { TlsContexts } from './tls-context.ts';

export const KEYVALUE_KIND = 'KeyValue';
export const KEYVALUE_PLURAL = 'keyvalues';
/** Label of a KeyValue object: its key's first segment (hashed when longer than a label may be). */
export const KEY_KIND_LABEL = `${GROUP}/key-kind`;
/**
 * Label of an IPClaim: its shard, `shardOf(name)` (0..SHARDS-1), so that a start reads the claims as
 * several LISTs at once (`scanShards`). The store writes it and takes it off what it reads.
 */
export const SHARD_LABEL = `${GROUP}/shard`;
/** The kind whose objects carry SHARD_LABEL: the one there are as many of as pods. */
const CLAIM_KIND = 'IPClaim';
/** Values of SHARD_LABEL. */
export const SHARDS = 16;
/** LISTs of shard groups an agent's start reads the IPClaims in at once (`scanShards`). */
export const SCAN_SHARDS = 4;
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Objects per LIST page. */
export const LIST_PAGE_SIZE = 500;
/** Connections kept to the API server for ordinary requests (watches have their own). */
const MAX_SOCKETS = 32;
/** Retry backoff for reads and unsent writes: doubles from the first value up to the cap. */
const RETRY_FIRST_MS = 20;
const RETRY_CAP_MS = 500;
/** Watch reconnect backoff. */
const WATCH_RETRY_FIRST_MS = 100;
const WATCH_RETRY_CAP_MS = 5_000;
/**
 * The server ends each watch after about this long (we add jitter) and sends a bookmark just
 * before, so the watcher resumes from a recent revision; a stream silent for this plus the grace is
 * taken for dead and reopened.
 */
const WATCH_TIMEOUT_S = 300;
const WATCH_IDLE_GRACE_MS = 60_000;
/** See `KubernetesStore.watchStart`. */
const LIST_WATCH_WINDOW_MS = 10_000;
const LIST_WATCH_ENTRIES = 64;
/** A create that meets AlreadyExists and then finds nothing tries again, at most this often. */
const CREATE_ATTEMPTS = 8;
/** A LIST whose continue token expired (410) starts over, at most this often. */
const LIST_ATTEMPTS = 3;
/** KeyValue names: at most this much readable slug, then `-` and this many hex digits of SHA-256. */
const NAME_SLUG_MAX = 200;
const NAME_HASH_HEX = 16;
const LABEL_MAX = 63;
/** A name no object has: the open-time probe of each resource's watch cache matches nothing. */
const PROBE_NAME = 'ipkeeper-open-probe';

const URL_FORMS = 'kubernetes:, kubernetes:/path/to/kubeconfig (or k8s:...)';

/** Metadata the API server owns: never sent. */
const SERVER_OWNED = [
  'resourceVersion',
  'uid',
  'creationTimestamp',
  'generation',
  'managedFields',
  'selfLink',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
] as const;
/** Metadata dropped on read: the version is the entry's, the rest is noise. */
const READ_DROPPED = ['resourceVersion', 'managedFields', 'selfLink'] as const;

export interface KubernetesStoreOptions {
  /**
   * Map keys of our kinds onto their own CRs (default true). With false every key is a KeyValue
   * object — any JSON value under any key, which the contract suite needs (`ippools/p` holding
   * `{ n: 1 }` is no IPPool).
   */
  native?: boolean;
  /** Deadline of every call, retries included, in ms. Default 10 000. */
  timeoutMs?: number;
  /** Objects per LIST page (default 500); small values let tests cross pages. */
  listPageSize?: number;
  /** The kinds mapped natively (default: every kind of KINDS). */
  kinds?: readonly KindInfo[];
  /**
   * HTTP/2 to an https API server without a proxy (default, unless IPKEEPER_KUBE_HTTP=1.1):
   * every request and watch is a stream of one connection. False: HTTP/1.1, a keep-alive pool.
   */
  http2?: boolean;
  /**
   * In how many LISTs at once `scan` reads the IPClaims, each a group of SHARD_LABEL values
   * (default SCAN_SHARDS, else IPKEEPER_KUBE_SCAN_SHARDS; 1: a single LIST). Claims without the
   * label (written by another client) or with a value not ours come in one more LIST.
   */
  scanShards?: number;
}

// ---- names and the KeyValue CRD --------------------------------------------------------------

/** A claim's shard: FNV-1a of its name, modulo SHARDS. Stable: stored in the claim's label. */
export function shardOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % SHARDS;
}

/**
 * The label selectors of LISTs that together read every object of a resource: `n` groups of shards
 * and one for the objects whose SHARD_LABEL is missing or not one of ours (`notin` matches both);
 * for `n` of 1 or less, one LIST of everything.
 */
export function shardSelectors(n: number): string[] {
  if (n <= 1) return [''];
  const groups = Math.min(Math.floor(n), SHARDS);
  const out: string[] = [];
  for (let g = 0; g < groups; g++) {
    const values: number[] = [];
    for (let v = g; v < SHARDS; v += groups) values.push(v);
    out.push(`${SHARD_LABEL} in (${values.join(',')})`);
  }
  out.push(`${SHARD_LABEL} notin (${Array.from({ length: SHARDS }, (_, v) => v).join(',')})`);
  return out;
}

/**
 * `scanShards` from the option, else the environment variable, else SCAN_SHARDS.
 * @throws IpamError INVALID_CONFIG for a value that is not an integer from 1 to SHARDS.
 */
function scanShardsOf(option: number | undefined, env: string | undefined): number {
  const given = option ?? (env === undefined || env === '' ? undefined : Number(env));
  if (given === undefined) return SCAN_SHARDS;
  if (!Number.isInteger(given) || given < 1 || given > SHARDS) {
    const field = option === undefined ? 'IPKEEPER_KUBE_SCAN_SHARDS' : 'scanShards';
    throw new IpamError(
      'INVALID_CONFIG',
      `${field} "${option ?? env}" must be a whole number from 1 to ${SHARDS} (LISTs an agent's start reads the IPClaims in at once; 1: a single LIST)`,
      { field, value: option ?? env },
    );
  }
  return given;
}

/** Takes our SHARD_LABEL off a read claim's metadata (labels too, when it was the only one). */
function dropShardLabel(metadata: Json, name: string): void {
  const labels = metadata.labels;
  if (!isPlainObject(labels) || labels[SHARD_LABEL] !== String(shardOf(name))) return;
  const { [SHARD_LABEL]: _ours, ...rest } = labels;
  if (Object.keys(rest).length === 0) delete metadata.labels;
  else metadata.labels = rest;
}

function sha256Hex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/**
 * The name of the KeyValue object holding `key`: a DNS-1123 label-like slug of the key (every run
 * of characters other than `a-z0-9` becomes `-`, at most 200 characters) plus `-` and 16 hex
 * digits of the key's SHA-256, e.g. `claims-default-10-6-168-133-3f0c9a51b2d4e687`. At most 217
 * characters, a valid object name for any key.
 */
export function keyValueName(key: string): string {
  const slug = key
    .replace(/[^a-z0-9]+/g, '-')
    .slice(0, NAME_SLUG_MAX)
    .replace(/^-+|-+$/g, '');
  const hash = sha256Hex(key).slice(0, NAME_HASH_HEX);
  return slug === '' ? hash : `${slug}-${hash}`;
}

/** The `ipkeeper.io/key-kind` label value for a key's first segment. */
export function keyKindLabel(segment: string): string {
  return segment.length <= LABEL_MAX ? segment : `h.${sha256Hex(segment).slice(0, 40)}`;
}

export { keyValueCrd } from '../api/crd.ts';

// ---- URL and kubeconfig ----------------------------------------------------------------------

function invalidUrl(url: string, why: string): IpamError {
  return new IpamError('INVALID_CONFIG', `kubernetes store URL "${url}" ${why}; use ${URL_FORMS}`, {
    field: 'store',
    value: url,
  });
}

/**
 * Parses `kubernetes:` / `k8s:` with an optional kubeconfig path (absolute, or relative to the
 * cwd; `kubernetes:///abs/path` is accepted too).
 * @returns the kubeconfig path, undefined for the default configuration.
 * @throws IpamError INVALID_CONFIG for another scheme, a host part or a NUL byte.
 */
export function parseKubernetesUrl(url: string): { kubeconfig: string | undefined } {
  const m = /^(kubernetes|k8s):(.*)$/is.exec(url);
  if (!m) throw invalidUrl(url, 'must start with kubernetes: or k8s:');
  let path = m[2]!;
  if (path === '' || path === '//') return { kubeconfig: undefined };
  if (path.startsWith('//')) {
    if (!path.startsWith('///')) throw invalidUrl(url, 'names a host; give a kubeconfig path instead');
    path = path.slice(2);
  }
  if (path.includes('\0')) throw invalidUrl(url, 'has a NUL byte in its path');
  if (/[?#]/.test(path)) throw invalidUrl(url, 'has a query string; options are not taken from the URL');
  return { kubeconfig: resolvePath(path) };
}

const SA_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Loads the kubeconfig (see the module doc for the order).
 * @throws IpamError INVALID_CONFIG when the file is missing or unreadable, or no configuration
 *   applies.
 */
async function loadKubeConfig(url: string, path: string | undefined): Promise<KubeConfig> {
  const { KubeConfig } = await import('@kubernetes/client-node');
  const kc = new KubeConfig();
  const fail = (why: string, cause?: unknown): IpamError =>
    new IpamError(
      'INVALID_CONFIG',
      `kubernetes store "${url}": ${why}`,
      { field: 'store', value: url },
      cause,
    );
  try {
    if (path !== undefined) {
      if (!existsSync(path)) throw fail(`kubeconfig ${path} does not exist`);
      kc.loadFromFile(path);
    } else if (process.env.KUBECONFIG) {
      kc.loadFromDefault();
    } else if (process.env.KUBERNETES_SERVICE_HOST && existsSync(SA_TOKEN)) {
      kc.loadFromCluster();
    } else if (existsSync(join(homedir(), '.kube', 'config'))) {
      kc.loadFromDefault();
    } else {
      throw fail(
        'no Kubernetes configuration: not running in a pod, $KUBECONFIG unset, no ~/.kube/config; name one with kubernetes:/path/to/kubeconfig',
      );
    }
  } catch (e) {
    if (e instanceof IpamError) throw e;
    throw fail(`cannot load the kubeconfig: ${(e as Error).message}`, e);
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server)
    throw fail(`the kubeconfig's current context "${kc.getCurrentContext()}" names no cluster server`);
  return kc;
}

// ---- transport -------------------------------------------------------------------------------

interface Reply {
  status: number;
  /** Parsed JSON, or the text when the answer is not JSON (e.g. "404 page not found"). */
  body: unknown;
  retryAfterMs: number | undefined;
}

interface ApiRequest {
  method: string;
  path: string;
  body?: unknown;
}

/** What a failed request tells us (see the module doc). */
type Failure = 'unsent' | 'unknown' | 'fatal';

const UNSENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
]);
const TLS_CODE = /^(CERT_|ERR_TLS_|DEPTH_ZERO_|SELF_SIGNED_|UNABLE_TO_|ERR_SSL_)/;

/** HTTP/2 failures that leave the request unsent: a session that was closing or gone, a stream the server refused. */
const H2_UNSENT_CODES = new Set(['ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_INVALID_SESSION']);

function classify(e: unknown): Failure {
  let code = (e as NodeJS.ErrnoException | undefined)?.code ?? '';
  // A stream cancelled with its session: what failed is the session's connection.
  if (code === 'ERR_HTTP2_STREAM_CANCEL') code = ((e as Error).cause as NodeJS.ErrnoException)?.code ?? code;
  if (UNSENT_CODES.has(code) || H2_UNSENT_CODES.has(code)) return 'unsent';
  if (code === 'ERR_HTTP2_STREAM_ERROR' && /NGHTTP2_REFUSED_STREAM/.test((e as Error).message))
    return 'unsent';
  if (TLS_CODE.test(code)) return 'fatal';
  return 'unknown';
}

/** The message of a Kubernetes `Status` answer, else a short form of the body. */
function statusMessage(r: Reply): string {
  const b = r.body as { kind?: string; message?: string } | string | undefined;
  if (b && typeof b === 'object' && typeof b.message === 'string') return b.message;
  if (typeof b === 'string') return b.trim().slice(0, 300) || `HTTP ${r.status}`;
  return `HTTP ${r.status}`;
}

function statusReason(r: Reply): string | undefined {
  const b = r.body as { kind?: string; reason?: string } | undefined;
  return b && typeof b === 'object' && b.kind === 'Status' ? b.reason : undefined;
}

/** A 404 about a missing object (a Status naming it) rather than a resource the server does not serve. */
function isObjectNotFound(r: Reply): boolean {
  const b = r.body as { kind?: string; details?: { name?: string } } | undefined;
  return r.status === 404 && !!b && typeof b === 'object' && b.kind === 'Status' && !!b.details?.name;
}

/** One HTTP/2 connection and what `Api` tracks of it. */
interface H2Session {
  session: http2.ClientHttp2Session;
  context: tls.SecureContext;
  /** Streams open on it: it keeps the process alive only while some are. */
  streams: number;
  pinging: boolean;
}

/** HTTP/2 flow-control window, per stream and for the connection. */
const H2_WINDOW = 16 * 1024 * 1024;
const H2_PING_TIMEOUT_MS = 5_000;

/** One connection to the API server: auth and TLS from the kubeconfig, deadlines, retries. */
class Api {
  readonly server: string;
  readonly timeoutMs: number;
  private readonly kc: KubeConfig;
  private readonly agent: http.Agent;
  private readonly streamAgent: http.Agent;
  /** False when the kubeconfig names a proxy: its agent, made by the kubeconfig, must be used. */
  private readonly ownAgents: boolean;
  private readonly closing = new AbortController();
  private readonly contexts = new TlsContexts();
  /** HTTP/2 (https, no proxy): every request and watch a stream of one connection. */
  readonly http2: boolean;
  private h2: H2Session | undefined;
  /** HTTP/2 connections made (for tests and the bench). */
  connections = 0;

  constructor(kc: KubeConfig, timeoutMs: number, useHttp2: boolean) {
    const cluster = kc.getCurrentCluster()!;
    this.kc = kc;
    this.server = cluster.server.replace(/\/+$/, '');
    this.timeoutMs = timeoutMs;
    this.ownAgents = !cluster.proxyUrl;
    const Agent = this.server.startsWith('http:') ? http.Agent : https.Agent;
    this.agent = new Agent({ keepAlive: true, maxSockets: MAX_SOCKETS });
    this.streamAgent = new Agent({ keepAlive: false });
    this.http2 = useHttp2 && this.ownAgents && this.server.startsWith('https:');
  }

  get closed(): boolean {
    return this.closing.signal.aborted;
  }

  /** Aborted by `close()`. */
  get closeSignal(): AbortSignal {
    return this.closing.signal;
  }

  close(): void {
    this.closing.abort();
    this.agent.destroy();
    this.streamAgent.destroy();
    this.h2?.session.destroy();
    this.h2 = undefined;
  }

  /**
   * The HTTP/2 connection for `context`: the current one, or a new one when there is none, it is
   * closing or gone, or the TLS material changed (the old one finishes its streams, then closes).
   */
  private session(context: tls.SecureContext, o: https.RequestOptions): H2Session {
    const cur = this.h2;
    if (cur && cur.context === context && !cur.session.closed && !cur.session.destroyed) return cur;
    cur?.session.close();
    const session = http2.connect(this.server, {
      secureContext: context,
      ...(o.servername ? { servername: o.servername } : {}),
      ...(o.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      // A 100k-object LIST is ~100 MB: windows of 64 KiB would pace it by round trips.
      settings: { initialWindowSize: H2_WINDOW },
    });
    this.connections++;
    const h: H2Session = { session, context, streams: 0, pinging: false };
    const drop = (): void => {
      if (this.h2 === h) this.h2 = undefined;
    };
    // A failed connection fails its streams (they carry the cause); the next request connects anew.
    session.on('error', drop);
    session.on('goaway', drop);
    session.on('close', drop);
    session.on('connect', (_s, socket) => {
      session.setLocalWindowSize(H2_WINDOW);
      socket.setKeepAlive(true, 10_000);
    });
    // Keeps the process alive only while a stream is open (as an agent's free sockets do not).
    session.unref();
    this.h2 = h;
    return h;
  }

  private openH2(
    req: ApiRequest,
    headers: Record<string, string | string[] | number>,
    payload: Buffer | undefined,
    o: https.RequestOptions,
    signal: AbortSignal,
  ): Promise<http.IncomingMessage> {
    const h = this.session(this.contexts.for(o), o);
    const out: http2.OutgoingHttpHeaders = { ':method': req.method, ':path': req.path };
    for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v;
    if (o.auth) out.authorization = `Basic ${Buffer.from(o.auth).toString('base64')}`;
    return new Promise((resolve, reject) => {
      let st: http2.ClientHttp2Stream;
      try {
        st = h.session.request(out, { endStream: payload === undefined, signal });
      } catch (e) {
        reject(e);
        return;
      }
      if (h.streams++ === 0) h.session.ref();
      st.once('response', (rh) => {
        // What callers read of an answer: status, headers, the body as a stream.
        resolve(
          Object.assign(st, {
            statusCode: Number(rh[':status']),
            headers: rh,
          }) as unknown as http.IncomingMessage,
        );
      });
      st.once('error', reject);
      st.once('close', () => {
        if (--h.streams === 0) h.session.unref();
        // A stream ended with its connection (cut, or closed by the server) before any answer has
        // no error of its own: this is it (a no-op once answered).
        const e = new Error(
          `the connection to ${this.server} closed before an answer`,
        ) as NodeJS.ErrnoException;
        e.code = 'ERR_HTTP2_STREAM_CLOSED_UNANSWERED';
        reject(e);
      });
      if (payload !== undefined) st.end(payload);
    });
  }

  /**
   * A request or watch went silent: ask the connection for a ping, and drop it when none comes
   * back (a half-open connection would otherwise take every later request too).
   */
  suspect(): void {
    const h = this.h2;
    if (!h || h.pinging || h.session.destroyed) return;
    h.pinging = true;
    const dead = (): void => {
      h.session.destroy(
        new Error(`no HTTP/2 ping answer from ${this.server} within ${H2_PING_TIMEOUT_MS} ms`),
      );
    };
    const timer = setTimeout(dead, H2_PING_TIMEOUT_MS);
    timer.unref();
    const sent = h.session.ping((err) => {
      clearTimeout(timer);
      h.pinging = false;
      if (err) dead();
    });
    if (!sent) {
      clearTimeout(timer);
      dead();
    }
  }

  /**
   * Sends one request and resolves with the response, its body not yet read. `signal` aborts it.
   * @throws the network error (ECONNREFUSED, TLS, abort, ...) as it comes.
   */
  async open(req: ApiRequest, signal: AbortSignal, stream: boolean): Promise<http.IncomingMessage> {
    const o: https.RequestOptions = {};
    // Tokens of exec plugins and service accounts are refreshed here, per request.
    await this.kc.applyToHTTPSOptions(o);
    const payload = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
    const headers: Record<string, string | string[] | number> = {};
    for (const [k, v] of Object.entries((o.headers ?? {}) as http.OutgoingHttpHeaders)) {
      if (v !== undefined) headers[k] = v;
    }
    headers.Accept = 'application/json';
    headers['User-Agent'] = 'ipkeeper';
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = payload.length;
    }
    if (this.http2) return this.openH2(req, headers, payload, o, signal);
    const url = new URL(this.server + req.path);
    const mod = url.protocol === 'http:' ? http : https;
    return new Promise((resolve, reject) => {
      const r = mod.request(
        url,
        {
          method: req.method,
          headers,
          ca: o.ca,
          cert: o.cert,
          key: o.key,
          pfx: o.pfx,
          passphrase: o.passphrase,
          rejectUnauthorized: o.rejectUnauthorized,
          servername: o.servername,
          // Built once, not per connection (store/tls-context.ts).
          ...(mod === https && this.ownAgents ? { secureContext: this.contexts.for(o) } : {}),
          auth: o.auth,
          agent: this.ownAgents ? (stream ? this.streamAgent : this.agent) : o.agent,
          signal,
        },
        resolve,
      );
      r.on('error', reject);
      r.end(payload);
    });
  }

  /** One request, whole answer read. @throws the network error. */
  private async exchange(req: ApiRequest, deadline: number): Promise<Reply> {
    const signal = AbortSignal.any([
      this.closing.signal,
      AbortSignal.timeout(Math.max(1, deadline - Date.now())),
    ]);
    let res: http.IncomingMessage;
    const chunks: Buffer[] = [];
    try {
      res = await this.open(req, signal, false);
      for await (const c of res) chunks.push(c as Buffer);
    } catch (e) {
      if ((e as Error).name === 'TimeoutError' || signal.reason?.name === 'TimeoutError') this.suspect();
      throw e;
    }
    const text = Buffer.concat(chunks).toString('utf8');
    let body: unknown = text;
    if (/json/.test(res.headers['content-type'] ?? '')) {
      try {
        body = JSON.parse(text);
      } catch {
        // A truncated or non-JSON body: keep the text, the status code says what happened.
      }
    }
    const ra = Number(res.headers['retry-after']);
    return { status: res.statusCode ?? 0, body, retryAfterMs: Number.isFinite(ra) ? ra * 1000 : undefined };
  }

  /**
   * Runs a request until it gets an answer worth returning (any status but 429 and, for reads, 5xx),
   * fails for good, or the deadline passes. `subject` names the key or prefix in messages.
   * @throws StoreError (see the module doc for which failures are retryable).
   */
  async call(op: string, subject: string, write: boolean, req: ApiRequest): Promise<Reply> {
    const deadline = Date.now() + this.timeoutMs;
    const what = `kubernetes ${op} "${subject}"`;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new StoreError('kubernetes store is closed', { retryable: false });
      let failure: Failure;
      let cause: unknown;
      let wait = 0;
      try {
        const r = await this.exchange(req, deadline);
        if (r.status === 429) {
          // Refused before any processing (max-inflight, priority and fairness): safe to re-send.
          failure = 'unsent';
          wait = r.retryAfterMs ?? 0;
          cause = new Error(`HTTP 429: ${statusMessage(r)}`);
        } else if (r.status >= 500) {
          failure = 'unknown';
          cause = new Error(`HTTP ${r.status}: ${statusMessage(r)}`);
        } else {
          return r;
        }
      } catch (e) {
        if (this.closed) throw new StoreError('kubernetes store is closed', { retryable: false, cause: e });
        failure = classify(e);
        cause = e;
        if ((e as Error).name === 'TimeoutError' || (e as Error).name === 'AbortError') {
          throw new StoreError(
            `${what}: no answer from ${this.server} within ${this.timeoutMs} ms${write ? '; the write may or may not have been applied' : ''}`,
            { retryable: true, cause: e },
          );
        }
      }
      if (failure === 'fatal') {
        throw new StoreError(`${what} refused: ${messageOf(cause)}`, { retryable: false, cause });
      }
      if (failure === 'unknown' && write) {
        throw new StoreError(
          `${what} failed: ${messageOf(cause)}; the write may or may not have been applied, read the key before retrying`,
          { retryable: true, cause },
        );
      }
      wait = Math.max(wait, backoff(attempt, RETRY_FIRST_MS, RETRY_CAP_MS));
      if (Date.now() + wait >= deadline) {
        throw new StoreError(
          `${what} failed after ${attempt} attempt(s) within ${this.timeoutMs} ms on ${this.server}: ${messageOf(cause)}`,
          { retryable: true, cause },
        );
      }
      await sleep(wait);
    }
  }
}

// ---- resources, locations, values ------------------------------------------------------------

/** A resource this store keeps keys in. */
interface Resource {
  plural: string;
  kind: string;
  namespaced: boolean;
  /** The CRD has the status subresource. */
  hasStatus: boolean;
  /** The KeyValue resource (any key) rather than one of our kinds (the value is the object). */
  generic: boolean;
}

/** Where one key lives. */
interface Loc {
  key: string;
  res: Resource;
  name: string;
  namespace: string | undefined;
}

/** What a list or watch reads: one resource, maybe one namespace or one key kind. */
interface Source {
  res: Resource;
  namespace?: string;
  labelSelector?: string;
}

type Json = Record<string, unknown>;
/** A Kubernetes object as it comes off the wire. */
interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string } & Json;
  spec?: unknown;
  status?: unknown;
}

const KEYVALUE: Resource = {
  plural: KEYVALUE_PLURAL,
  kind: KEYVALUE_KIND,
  namespaced: false,
  hasStatus: false,
  generic: true,
};

function resourceOf(info: KindInfo): Resource {
  return {
    plural: info.plural,
    kind: info.kind,
    namespaced: info.namespaced,
    hasStatus: info.hasStatus,
    generic: false,
  };
}

function isPlainObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A canonical resourceVersion: a positive decimal without leading zeros that fits in a uint64. */
function isRevision(v: string): boolean {
  return /^[1-9]\d{0,19}$/.test(v) && BigInt(v) <= 0xffffffffffffffffn;
}

/** JSON.stringify writes a lone surrogate as `\udXXX`; an even run of backslashes before it is text. */
const LONE_SURROGATE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/;

/**
 * The value as JSON carries it, checked for what the API server would change.
 * @throws StoreError (not retryable) for what JSON cannot carry and for lone surrogates.
 */
function jsonCopy(key: string, value: unknown): unknown {
  const json = toJson(key, value);
  if (LONE_SURROGATE.test(json)) {
    throw new StoreError(
      `store value for "${key}" holds a string with a lone UTF-16 surrogate, which the Kubernetes API server would replace with U+FFFD`,
      { retryable: false },
    );
  }
  return JSON.parse(json) as unknown;
}

function refuse(key: string, why: string): StoreError {
  return new StoreError(`store key "${key}": ${why}`, { retryable: false });
}

/** What a caller's callback threw inside a read, to pass through as it is. */
class FromCaller {
  readonly cause: unknown;
  constructor(cause: unknown) {
    this.cause = cause;
  }
}

function byKey(a: { key: string }, b: { key: string }): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

function query(params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// ---- the store -------------------------------------------------------------------------------

/**
 * The Kubernetes store. Every method rejects with a `StoreError` (see the module doc); update and
 * delete never reject for a version that does not match, not even a malformed one.
 */
export class KubernetesStore implements Store {
  readonly backend = 'kubernetes';
  readonly native: boolean;
  private readonly api: Api;
  private readonly listPageSize: number;
  /** Groups of shards `scan` reads the IPClaims in at once (see `KubernetesStoreOptions`). */
  private readonly scanShards: number;
  /** Our kinds by plural (empty when not native). */
  private readonly kinds = new Map<string, Resource>();
  private readonly watchers = new Set<Watcher>();
  /** Every open watch stream, by the resource it watches (for `scan` to move them back). */
  private readonly streams = new Set<WatchStream>();
  /** How often the watch streams started over (`watchStats`). */
  private readonly restarts = newWatchStats();
  /** Newest resourceVersion seen in any answer: where a new watch starts (after it). */
  private revision = 0n;
  /** Recent lists (newest last): a watch of a prefix they cover starts after their revision. */
  private recentLists: { prefix: string; revision: bigint; at: number }[] = [];
  private isClosed = false;

  /**
   * Makes the client without contacting the server. Call `probe()` before `watch` (as
   * `openKubernetesStore` does): until this store has seen a revision, a watch would start with a
   * replay of every existing object.
   */
  constructor(kc: KubeConfig, opts: KubernetesStoreOptions = {}) {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new IpamError(
        'INVALID_CONFIG',
        `kubernetes store timeout ${timeoutMs} ms must be a positive number`,
        {
          field: 'timeoutMs',
          value: timeoutMs,
        },
      );
    }
    this.native = opts.native ?? true;
    this.listPageSize = Math.max(1, Math.floor(opts.listPageSize ?? LIST_PAGE_SIZE));
    this.scanShards = scanShardsOf(opts.scanShards, process.env.IPKEEPER_KUBE_SCAN_SHARDS);
    if (this.native) {
      for (const info of opts.kinds ?? Object.values(KINDS)) this.kinds.set(info.plural, resourceOf(info));
    }
    this.api = new Api(kc, timeoutMs, opts.http2 ?? process.env.IPKEEPER_KUBE_HTTP !== '1.1');
  }

  /** The API server's URL. */
  get server(): string {
    return this.api.server;
  }

  /** Whether requests go over HTTP/2, and how many HTTP/2 connections this store has made. */
  get transport(): { http2: boolean; connections: number } {
    return { http2: this.api.http2, connections: this.api.connections };
  }

  /**
   * Checks that every resource this store uses is served, and learns each watch cache's revision
   * (see the module doc), so the first watch starts where the server can serve it.
   * @throws StoreError not retryable when a CRD is missing or access is refused; retryable when the
   *   server does not answer.
   */
  async probe(): Promise<void> {
    this.check();
    for (const res of [KEYVALUE, ...this.kinds.values()]) await this.cacheRevision({ res }, 'open');
  }

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    const loc = this.locate(key);
    const r = await this.api.call('get', key, false, { method: 'GET', path: this.objectPath(loc) });
    if (r.status === 404 && isObjectNotFound(r)) return undefined;
    if (r.status !== 200) throw this.failure('get', key, r);
    return this.entryAt<T>(loc, r.body as KubeObject);
  }

  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    this.check();
    const out: Versioned<T>[] = [];
    let oldest: bigint | undefined;
    for (const src of this.sourcesFor(prefix)) {
      const { entries, revision } = await this.listSource<T>(src, prefix);
      out.push(...entries);
      if (oldest === undefined || revision < oldest) oldest = revision;
    }
    if (oldest !== undefined) {
      this.recentLists.push({ prefix, revision: oldest, at: Date.now() });
      if (this.recentLists.length > LIST_WATCH_ENTRIES) this.recentLists.shift();
    }
    return out.sort(byKey);
  }

  /**
   * Every entry under `prefix`, read from the API server's watch cache (`resourceVersion=0`) and
   * handed to `onPage` as the answer streams in, `listPageSize` entries at a time, in the order the
   * server sends them: an agent's start. See the module doc ("Reading everything at a start") for
   * why and how it stays gap-free. Falls back to the paged, consistent `list` of a resource when
   * its cached read fails for any reason but `onPage` throwing (passed through as it is).
   * @throws StoreError as `list`.
   */
  async scan<T>(prefix: string, onPage: (entries: Versioned<T>[]) => void): Promise<void> {
    this.check();
    let oldest: bigint | undefined;
    for (const src of this.sourcesFor(prefix)) {
      // Before the read: a watch of this resource that is past the cache's revision goes back to
      // it now, while the cache still holds the events since (it keeps a bounded history, and
      // reading 100k objects takes seconds). The read is at that revision or later.
      const start = await this.cacheRevision(src);
      this.rewindWatches(src.res.plural, start);
      let revision: bigint;
      try {
        revision = await this.scanSharded<T>(src, prefix, onPage);
      } catch (e) {
        if (e instanceof FromCaller) throw e.cause;
        if (this.isClosed || this.api.closed) throw e;
        const listed = await this.listSource<T>(src, prefix);
        onPage(listed.entries);
        revision = listed.revision;
      }
      // Older than the cache was a moment ago: another API server's cache, behind. Back again.
      if (revision < start) this.rewindWatches(src.res.plural, revision);
      if (oldest === undefined || revision < oldest) oldest = revision;
    }
    if (oldest !== undefined) {
      this.recentLists.push({ prefix, revision: oldest, at: Date.now() });
      if (this.recentLists.length > LIST_WATCH_ENTRIES) this.recentLists.shift();
    }
  }

  /**
   * A source's entries from the watch cache: the IPClaims as `scanShards` LISTs at once (the API
   * server encodes each answer on one core, and encoding is most of such a read: several use
   * several cores), anything else as one. Returns the oldest answer's revision: each LIST is at
   * the cache's revision when it is served, and the watch goes back to the oldest, so nothing one
   * of them missed is missed. A failed LIST stops the others.
   * @throws as `scanSource`.
   */
  private async scanSharded<T>(
    src: Source,
    prefix: string,
    onPage: (entries: Versioned<T>[]) => void,
  ): Promise<bigint> {
    const selectors =
      src.res.kind === CLAIM_KIND && src.labelSelector === undefined ? shardSelectors(this.scanShards) : [''];
    if (selectors.length === 1) return this.scanSource(src, prefix, onPage);
    const stop = new AbortController();
    const revisions = await Promise.all(
      selectors.map((labelSelector) =>
        this.scanSource({ ...src, labelSelector }, prefix, onPage, stop.signal).catch((e: unknown) => {
          stop.abort();
          throw e;
        }),
      ),
    );
    return revisions.reduce((a, b) => (b < a ? b : a));
  }

  /**
   * Moves every open watch of `resource` (a plural) that is past `revision` back to it (see
   * `scan`); returns how many moved.
   */
  rewindWatches(resource: string, revision: bigint): number {
    let n = 0;
    for (const w of this.streams) if (w.resource === resource && w.rewind(revision)) n++;
    return n;
  }

  /**
   * The revision of the API server's watch cache of a source (a LIST from it that matches
   * nothing), also remembered as seen. `op` names the caller in errors.
   */
  private async cacheRevision(src: Source, op = 'list'): Promise<bigint> {
    const path =
      this.collectionPath(src.res, src.namespace) +
      query({
        resourceVersion: '0',
        fieldSelector: `metadata.name=${PROBE_NAME}`,
        labelSelector: src.labelSelector,
      });
    const r = await this.api.call(op, `${src.res.plural}.${GROUP}`, false, { method: 'GET', path });
    if (r.status !== 200) throw this.failure(op, `${src.res.plural}.${GROUP}`, r);
    return this.sawList(r.body);
  }

  /**
   * One source's entries from the watch cache, streamed (see `scan`); returns the list's revision.
   * No answer byte for `timeoutMs` aborts it; the whole read has no deadline (100k objects take
   * seconds).
   * @throws FromCaller wrapping what `onPage` threw; any other Error for a failed read.
   */
  private async scanSource<T>(
    src: Source,
    prefix: string,
    onPage: (entries: Versioned<T>[]) => void,
    /** Aborts the read (a sibling LIST of `scanSharded` failed). */
    stop?: AbortSignal,
  ): Promise<bigint> {
    const path =
      this.collectionPath(src.res, src.namespace) +
      query({ resourceVersion: '0', labelSelector: src.labelSelector });
    const ac = new AbortController();
    let idle: NodeJS.Timeout | undefined;
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        this.api.suspect();
        ac.abort();
      }, this.api.timeoutMs);
    };
    touch();
    let page: Versioned<T>[] = [];
    const flush = (): void => {
      if (page.length === 0) return;
      const p = page;
      page = [];
      try {
        onPage(p);
      } catch (e) {
        throw new FromCaller(e);
      }
    };
    try {
      const res = await this.api.open(
        { method: 'GET', path },
        AbortSignal.any([ac.signal, this.api.closeSignal, ...(stop ? [stop] : [])]),
        false,
      );
      if (res.statusCode !== 200) {
        res.resume();
        throw new Error(`HTTP ${res.statusCode}`);
      }
      const items = new ListItems();
      for await (const chunk of res) {
        touch();
        items.push(chunk as Buffer, (text) => {
          const e = this.decode<T>(src.res, JSON.parse(withoutManagedFields(text)) as KubeObject);
          if (e && e.key.startsWith(prefix)) page.push(e);
          if (page.length >= this.listPageSize) flush();
        });
      }
      const rest = JSON.parse(items.end()) as unknown;
      flush();
      const revision = this.sawList(rest);
      if (revision === 0n) throw new Error('the list answer carries no resourceVersion');
      return revision;
    } finally {
      clearTimeout(idle);
      ac.abort();
    }
  }

  async create<T>(key: string, value: T): Promise<CreateResult<T>> {
    const loc = this.locate(key);
    const body = this.bodyFor(loc, value);
    for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
      const r = await this.api.call('create', key, true, {
        method: 'POST',
        path: this.collectionPath(loc.res, loc.namespace),
        body,
      });
      if (r.status === 200 || r.status === 201) {
        const obj = r.body as KubeObject;
        const written = await this.writeStatus(loc, obj, body);
        // A lost status race still leaves the object created by us (see the module doc).
        const last = 'ok' in written || 'conflict' in written ? obj : written;
        return { created: true, version: this.versionOf(loc, last) };
      }
      if (r.status === 409 && statusReason(r) === 'AlreadyExists') {
        const existing = await this.get<T>(key);
        if (existing) return { created: false, existing };
        continue; // deleted between our POST and GET: try again
      }
      throw this.failure('create', key, r);
    }
    throw new StoreError(
      `kubernetes create "${key}": the key kept appearing and vanishing (${CREATE_ATTEMPTS} attempts); retry`,
      { retryable: true },
    );
  }

  async update<T>(key: string, value: T, version: Version): Promise<CasResult<T>> {
    const loc = this.locate(key);
    const body = this.bodyFor(loc, value);
    if (!isRevision(version)) return { ok: false, current: await this.get<T>(key) };
    (body.metadata as Json).resourceVersion = version;
    const r = await this.api.call('update', key, true, { method: 'PUT', path: this.objectPath(loc), body });
    if (r.status === 200 || r.status === 201) {
      const obj = r.body as KubeObject;
      const written = await this.writeStatus(loc, obj, body);
      if ('ok' in written) return { ok: true, version: this.versionOf(loc, obj) };
      if ('conflict' in written) return { ok: false, current: await this.get<T>(key) };
      return { ok: true, version: this.versionOf(loc, written) };
    }
    if (r.status === 409) return { ok: false, current: await this.get<T>(key) };
    if (r.status === 404 && isObjectNotFound(r)) return { ok: false, current: undefined };
    throw this.failure('update', key, r);
  }

  async delete(key: string, version: Version): Promise<CasResult> {
    const loc = this.locate(key);
    if (!isRevision(version)) return { ok: false, current: await this.get(key) };
    // A quorum read of the one object: what it is now, and the revision R the deletion comes after.
    const snap = await this.readOne(loc);
    if (!snap.entry || snap.entry.version !== version) return { ok: false, current: snap.entry };
    const r = await this.api.call('delete', key, true, {
      method: 'DELETE',
      path: this.objectPath(loc),
      body: { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion: version } },
    });
    if (r.status === 200 || r.status === 202) {
      const b = r.body as KubeObject;
      if (b.kind !== 'Status' && b.metadata?.resourceVersion) {
        // Finalizers: only marked for deletion, at this version.
        return { ok: true, version: this.versionOf(loc, b) };
      }
      return { ok: true, version: await this.deletionRevision(loc, snap.revision) };
    }
    if (r.status === 409) return { ok: false, current: await this.get(key) };
    if (r.status === 404 && isObjectNotFound(r)) return { ok: false, current: undefined };
    throw this.failure('delete', key, r);
  }

  watch<T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, onReset?: () => void): Watcher {
    this.check();
    return this.startWatch(prefix, this.watchStart(prefix), onEvent, onReset);
  }

  /**
   * Like `watch`, but delivers every event after `version` — e.g. the version of a list taken
   * earlier, or a claims cache's. A version older than the server still has gets `onReset` at
   * once, as does one newer than any it has shown (`resumeWatch`).
   * @throws StoreError (not retryable) for a version that is not a canonical decimal.
   */
  watchFrom<T>(
    prefix: string,
    version: Version,
    onEvent: (ev: WatchEvent<T>) => void,
    onReset?: () => void,
  ): Watcher {
    this.check();
    if (!isRevision(version)) {
      throw new StoreError(`kubernetes watch "${prefix}": "${version}" is not a resourceVersion`, {
        retryable: false,
      });
    }
    // `this.revision`: the newest the server has shown (probe() learns each watch cache's).
    return resumeWatch(
      BigInt(version),
      this.revision,
      () => this.startWatch(prefix, BigInt(version), onEvent, onReset),
      () => this.startWatch(prefix, this.watchStart(prefix), onEvent, onReset),
      onReset,
    );
  }

  watchStats(): WatchStats {
    return { ...this.restarts };
  }

  /**
   * `kubernetes:<uid of the kube-system namespace>` (the cluster's identity by common practice:
   * it lives as long as the cluster), with `/keyvalue` in KeyValue mode.
   * @throws StoreError when it cannot be read (e.g. no access to namespaces).
   */
  async identity(): Promise<string> {
    const path = '/api/v1/namespaces/kube-system';
    const r = await this.api.call('get', 'namespaces/kube-system', false, { method: 'GET', path });
    const uid = (r.body as { metadata?: { uid?: unknown } } | undefined)?.metadata?.uid;
    if (r.status !== 200 || typeof uid !== 'string' || uid === '') {
      throw this.failure('get', 'namespaces/kube-system', r);
    }
    return `kubernetes:${uid}${this.native ? '' : '/keyvalue'}`;
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const w of [...this.watchers]) w.close();
    this.api.close();
  }

  // ---- internals ----

  private check(): void {
    if (this.isClosed) throw new StoreError('kubernetes store is closed', { retryable: false });
  }

  /**
   * Where a key lives.
   * @throws StoreError (not retryable) for an invalid key, or a key of our kinds with the wrong
   *   number of segments for its scope.
   */
  private locate(key: string): Loc {
    this.check();
    validateKey(key);
    const seg = key.split('/');
    const res = this.kinds.get(seg[0]!);
    if (!res) return { key, res: KEYVALUE, name: keyValueName(key), namespace: undefined };
    if (res.namespaced && seg.length !== 3) {
      throw refuse(key, `${res.kind} is namespaced: its keys are ${res.plural}/<namespace>/<name>`);
    }
    if (!res.namespaced && seg.length !== 2) {
      throw refuse(key, `${res.kind} is cluster-scoped: its keys are ${res.plural}/<name>`);
    }
    return { key, res, name: seg.at(-1)!, namespace: res.namespaced ? seg[1] : undefined };
  }

  /** The resources (and namespaces, key kinds) whose objects can have keys starting with `prefix`. */
  private sourcesFor(prefix: string): Source[] {
    const out: Source[] = [];
    const slash = prefix.indexOf('/');
    const first = slash < 0 ? undefined : prefix.slice(0, slash);
    for (const res of this.kinds.values()) {
      const own = `${res.plural}/`;
      if (prefix.startsWith(own)) {
        const rest = prefix.slice(own.length);
        const nsEnd = rest.indexOf('/');
        out.push(res.namespaced && nsEnd > 0 ? { res, namespace: rest.slice(0, nsEnd) } : { res });
      } else if (own.startsWith(prefix)) {
        out.push({ res });
      }
    }
    if (first === undefined) {
      out.push({ res: KEYVALUE });
    } else if (!this.kinds.has(first)) {
      out.push({ res: KEYVALUE, labelSelector: `${KEY_KIND_LABEL}=${keyKindLabel(first)}` });
    }
    return out;
  }

  private collectionPath(res: Resource, namespace: string | undefined): string {
    const ns = namespace === undefined ? '' : `/namespaces/${encodeURIComponent(namespace)}`;
    return `/apis/${GROUP}/${VERSION}${ns}/${res.plural}`;
  }

  private objectPath(loc: Loc, sub?: 'status'): string {
    return `${this.collectionPath(loc.res, loc.namespace)}/${encodeURIComponent(loc.name)}${sub ? `/${sub}` : ''}`;
  }

  /** The request body that stores `value` at `loc` (no resourceVersion yet). */
  private bodyFor(loc: Loc, value: unknown): Json {
    const clean = jsonCopy(loc.key, value);
    if (loc.res.generic) {
      const seg = loc.key.slice(0, loc.key.indexOf('/'));
      return {
        apiVersion: API_VERSION,
        kind: KEYVALUE_KIND,
        metadata: { name: loc.name, labels: { [KEY_KIND_LABEL]: keyKindLabel(seg) } },
        spec: { key: loc.key, value: clean },
      };
    }
    const { kind, plural } = loc.res;
    if (!isPlainObject(clean)) {
      throw refuse(
        loc.key,
        `the value must be a ${kind} object (apiVersion ${API_VERSION}), not ${JSON.stringify(clean)?.slice(0, 40)}`,
      );
    }
    if (clean.apiVersion !== undefined && clean.apiVersion !== API_VERSION) {
      throw refuse(loc.key, `the value's apiVersion "${String(clean.apiVersion)}" is not ${API_VERSION}`);
    }
    if (clean.kind !== undefined && clean.kind !== kind) {
      throw refuse(loc.key, `the value is a ${String(clean.kind)}, but ${plural}/ keys hold ${kind} objects`);
    }
    if (clean.metadata !== undefined && !isPlainObject(clean.metadata)) {
      throw refuse(loc.key, "the value's metadata is not an object");
    }
    const meta: Json = { ...(clean.metadata ?? {}) };
    if (meta.name !== undefined && meta.name !== loc.name) {
      throw refuse(
        loc.key,
        `the value's metadata.name "${String(meta.name)}" differs from the key's name "${loc.name}"`,
      );
    }
    if (meta.namespace !== undefined && meta.namespace !== loc.namespace) {
      throw refuse(
        loc.key,
        loc.namespace === undefined
          ? `${kind} is cluster-scoped, but the value names namespace "${String(meta.namespace)}"`
          : `the value's metadata.namespace "${String(meta.namespace)}" differs from the key's "${loc.namespace}"`,
      );
    }
    for (const f of SERVER_OWNED) delete meta[f];
    meta.name = loc.name;
    if (loc.namespace !== undefined) meta.namespace = loc.namespace;
    // Labels that are not an object are left for the API server to refuse, naming them.
    if (kind === CLAIM_KIND && (meta.labels === undefined || isPlainObject(meta.labels))) {
      meta.labels = { ...meta.labels, [SHARD_LABEL]: String(shardOf(loc.name)) };
    }
    return { ...clean, apiVersion: API_VERSION, kind, metadata: meta };
  }

  /**
   * After a write of `body` that returned `obj`: writes `/status` when the kind has the status
   * subresource and `body` carries a status the server did not take. Returns `{ ok }` when nothing
   * was needed, the object of the status write, or what stopped it.
   */
  private async writeStatus(
    loc: Loc,
    obj: KubeObject,
    body: Json,
  ): Promise<{ ok: true } | KubeObject | { conflict: true }> {
    if (!loc.res.hasStatus || !('status' in body) || isDeepStrictEqual(obj.status, body.status))
      return { ok: true };
    const metadata = { ...obj.metadata };
    delete metadata.managedFields;
    const r = await this.api.call('update status', loc.key, true, {
      method: 'PUT',
      path: this.objectPath(loc, 'status'),
      body: { ...obj, metadata, status: body.status },
    });
    if (r.status === 200 || r.status === 201) return r.body as KubeObject;
    if (r.status === 409 || (r.status === 404 && isObjectNotFound(r))) return { conflict: true };
    throw this.failure('update status', loc.key, r);
  }

  /** The version of a written object; remembers it as seen. */
  private versionOf(loc: Loc, obj: KubeObject): Version {
    const v = obj.metadata?.resourceVersion;
    if (typeof v !== 'string' || !isRevision(v)) {
      throw new StoreError(`kubernetes write "${loc.key}": the answer carries no resourceVersion`, {
        retryable: false,
      });
    }
    this.saw(v);
    return v;
  }

  /**
   * The entry an object read at `loc` holds.
   * @throws StoreError (not retryable) when a KeyValue object holds another key (a hash collision).
   */
  private entryAt<T>(loc: Loc, obj: KubeObject): Versioned<T> {
    const e = this.decode<T>(loc.res, obj);
    if (!e || e.key !== loc.key) {
      throw new StoreError(
        `kubernetes get "${loc.key}": object ${loc.res.plural}/${loc.name} holds ${e ? `key "${e.key}"` : 'no store key'}; two keys share one name, or someone else wrote it`,
        { retryable: false },
      );
    }
    return e;
  }

  /** An object as a store entry, undefined when it is no entry of ours (a foreign KeyValue). */
  private decode<T>(res: Resource, obj: KubeObject): Versioned<T> | undefined {
    const meta = obj.metadata;
    const version = meta?.resourceVersion;
    if (!meta || typeof meta.name !== 'string' || typeof version !== 'string') return undefined;
    this.saw(version);
    if (res.generic) {
      const spec = obj.spec as { key?: unknown; value?: unknown } | undefined;
      if (typeof spec?.key !== 'string' || keyValueName(spec.key) !== meta.name) return undefined;
      return { key: spec.key, value: (spec.value ?? null) as T, version };
    }
    const key = res.namespaced
      ? `${res.plural}/${meta.namespace}/${meta.name}`
      : `${res.plural}/${meta.name}`;
    const metadata: Json = { ...meta };
    for (const f of READ_DROPPED) delete metadata[f];
    if (res.kind === CLAIM_KIND) dropShardLabel(metadata, meta.name);
    return { key, value: { ...obj, metadata } as T, version };
  }

  /** A quorum read of one object through a LIST by name: the entry and the current revision. */
  private async readOne(loc: Loc): Promise<{ entry: Versioned | undefined; revision: bigint }> {
    const path =
      this.collectionPath(loc.res, loc.namespace) + query({ fieldSelector: `metadata.name=${loc.name}` });
    const r = await this.api.call('delete', loc.key, false, { method: 'GET', path });
    if (r.status !== 200) throw this.failure('delete', loc.key, r);
    const list = r.body as { metadata?: { resourceVersion?: string }; items?: KubeObject[] };
    const revision = this.sawList(list);
    const obj = list.items?.[0];
    return { entry: obj ? this.entryAt(loc, obj) : undefined, revision };
  }

  /**
   * The revision at which `loc` was deleted: the DELETED event of a watch of its name from `after`
   * (see the module doc); `after + 1` when that watch fails.
   */
  private async deletionRevision(loc: Loc, after: bigint): Promise<Version> {
    const path =
      this.collectionPath(loc.res, loc.namespace) +
      query({
        watch: '1',
        resourceVersion: String(after),
        fieldSelector: `metadata.name=${loc.name}`,
        timeoutSeconds: String(Math.max(1, Math.ceil(this.api.timeoutMs / 1000))),
      });
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.api.timeoutMs);
    try {
      const res = await this.api.open(
        { method: 'GET', path },
        AbortSignal.any([ac.signal, this.api.closeSignal]),
        true,
      );
      if (res.statusCode === 200) {
        res.setEncoding('utf8');
        let buf = '';
        for await (const chunk of res) {
          buf += chunk as string;
          let nl;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            const ev = JSON.parse(line) as { type?: string; object?: KubeObject };
            const rv = ev.object?.metadata?.resourceVersion;
            if (ev.type === 'DELETED' && typeof rv === 'string' && isRevision(rv)) {
              this.saw(rv);
              return rv;
            }
            if (ev.type === 'ERROR') break;
          }
        }
      } else {
        res.resume();
      }
    } catch {
      // Timed out or the stream broke: the deletion happened all the same; see the fallback below.
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    return String(after + 1n);
  }

  /** The current revision, by a consistent LIST of one object. */
  private async currentRevision(res: Resource): Promise<bigint> {
    const path = this.collectionPath(res, undefined) + query({ limit: '1' });
    const r = await this.api.call('read revision', res.plural, false, { method: 'GET', path });
    if (r.status !== 200) throw this.failure('read revision', res.plural, r);
    return this.sawList(r.body);
  }

  /** One source's entries under `prefix`, paged, at one revision. */
  private async listSource<T>(
    src: Source,
    prefix: string,
  ): Promise<{ entries: Versioned<T>[]; revision: bigint }> {
    const subject = `${prefix}*`;
    for (let attempt = 1; ; attempt++) {
      const entries: Versioned<T>[] = [];
      let revision = 0n;
      let cont: string | undefined;
      let expired = false;
      do {
        const path =
          this.collectionPath(src.res, src.namespace) +
          query({ limit: String(this.listPageSize), continue: cont, labelSelector: src.labelSelector });
        const r = await this.api.call('list', subject, false, { method: 'GET', path });
        if (r.status === 410 && cont !== undefined) {
          expired = true; // the snapshot was compacted away between pages: start over
          break;
        }
        if (r.status !== 200) throw this.failure('list', subject, r);
        const list = r.body as {
          metadata?: { continue?: string; resourceVersion?: string };
          items?: KubeObject[];
        };
        if (cont === undefined) revision = this.sawList(list);
        for (const obj of list.items ?? []) {
          const e = this.decode<T>(src.res, obj);
          if (e && e.key.startsWith(prefix)) entries.push(e);
        }
        cont = list.metadata?.continue || undefined;
      } while (cont !== undefined);
      if (!expired) return { entries, revision };
      if (attempt >= LIST_ATTEMPTS) {
        throw new StoreError(`kubernetes list "${subject}": the list kept expiring between pages; retry`, {
          retryable: true,
        });
      }
    }
  }

  private saw(version: string): void {
    if (!isRevision(version)) return;
    const r = BigInt(version);
    if (r > this.revision) this.revision = r;
  }

  /** Remembers a list's revision and returns it (0 when it has none). */
  private sawList(body: unknown): bigint {
    const v = (body as { metadata?: { resourceVersion?: unknown } } | undefined)?.metadata?.resourceVersion;
    if (typeof v !== 'string' || !isRevision(v)) return 0n;
    this.saw(v);
    return BigInt(v);
  }

  /** The revision a new watch of `prefix` starts after (see the module doc). */
  private watchStart(prefix: string): bigint {
    const now = Date.now();
    this.recentLists = this.recentLists.filter((l) => now - l.at <= LIST_WATCH_WINDOW_MS);
    let after = this.revision;
    for (const l of this.recentLists) {
      if (prefix.startsWith(l.prefix) && l.revision < after) after = l.revision;
    }
    return after;
  }

  private startWatch<T>(
    prefix: string,
    after: bigint,
    onEvent: (ev: WatchEvent<T>) => void,
    onReset: (() => void) | undefined,
  ): Watcher {
    const streams: WatchStream[] = [];
    let closed = false;
    const w: Watcher = {
      close: () => {
        if (closed) return;
        closed = true;
        for (const s of streams) {
          s.close();
          this.streams.delete(s);
        }
        this.watchers.delete(w);
      },
    };
    for (const src of this.sourcesFor(prefix)) {
      const path = this.collectionPath(src.res, src.namespace);
      streams.push(
        new WatchStream({
          api: this.api,
          resource: src.res.plural,
          path,
          labelSelector: src.labelSelector,
          after,
          decode: (obj) => {
            const e = this.decode(src.res, obj);
            return e && e.key.startsWith(prefix) ? e : undefined;
          },
          current: () => this.currentRevision(src.res),
          onEvent: onEvent as (ev: WatchEvent) => void,
          onReset,
          restarts: this.restarts,
        }),
      );
    }
    this.watchers.add(w);
    for (const s of streams) {
      this.streams.add(s);
      s.start();
    }
    return w;
  }

  /** The StoreError for an answer the caller did not expect. */
  private failure(op: string, subject: string, r: Reply): StoreError {
    const what = `kubernetes ${op} "${subject}"`;
    if (r.status === 404 && !isObjectNotFound(r)) {
      return new StoreError(
        `${what}: ${this.api.server} does not serve this resource (${statusMessage(r)}); install ipkeeper's CRDs, including ${KEYVALUE_PLURAL}.${GROUP}: ipkeeper crds | kubectl apply -f -`,
        { retryable: false },
      );
    }
    const retryable = r.status >= 500 || r.status === 429 || r.status === 0;
    return new StoreError(`${what} failed with HTTP ${r.status}: ${statusMessage(r)}`, { retryable });
  }
}

// ---- watch -----------------------------------------------------------------------------------

interface WatchSpec {
  api: Api;
  /** The plural of the resource watched. */
  resource: string;
  /** The collection path watched. */
  path: string;
  labelSelector: string | undefined;
  /** Deliver events after this revision. */
  after: bigint;
  /** An object as an entry under the watched prefix, or undefined to skip it. */
  decode: (obj: KubeObject) => Versioned | undefined;
  /** The current revision (after a 410). */
  current: () => Promise<bigint>;
  onEvent: (ev: WatchEvent) => void;
  onReset: (() => void) | undefined;
  /** The store's counters of streams starting over. */
  restarts: WatchStats;
}

/**
 * One WATCH of one collection, reopened after every end or break from the last revision it saw
 * (events and bookmarks), so nothing is lost or repeated; on 410 it starts again from the current
 * revision and calls `onReset`.
 */
class WatchStream {
  private readonly spec: WatchSpec;
  /** Every event up to this revision has been delivered (or shown by a bookmark to be none of ours). */
  private rv: bigint;
  private closed = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private idle: NodeJS.Timeout | undefined;
  private abort: AbortController | undefined;

  constructor(spec: WatchSpec) {
    this.spec = spec;
    this.rv = spec.after;
  }

  get resource(): string {
    return this.spec.resource;
  }

  start(): void {
    this.connect();
  }

  /**
   * Goes back to deliver every event after `to` (a revision this stream is past), on a new
   * connection: the events in between come again, which the caller's cache tells by version. For
   * a list older than where this watch started (`KubernetesStore.scan`).
   */
  rewind(to: bigint): boolean {
    if (this.closed || to <= 0n || to >= this.rv) return false;
    this.rv = to;
    clearTimeout(this.timer);
    const old = this.abort;
    this.connect();
    old?.abort();
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.idle);
    this.abort?.abort();
  }

  private connect(): void {
    if (this.closed) return;
    const ac = new AbortController();
    this.abort = ac;
    const timeoutS = WATCH_TIMEOUT_S + Math.floor(Math.random() * WATCH_TIMEOUT_S * 0.2);
    const path =
      this.spec.path +
      query({
        watch: '1',
        allowWatchBookmarks: 'true',
        resourceVersion: this.rv > 0n ? String(this.rv) : undefined,
        labelSelector: this.spec.labelSelector,
        timeoutSeconds: String(timeoutS),
      });
    const idleMs = timeoutS * 1000 + WATCH_IDLE_GRACE_MS;
    const touch = (): void => {
      clearTimeout(this.idle);
      this.idle = setTimeout(() => {
        this.spec.api.suspect();
        ac.abort();
      }, idleMs);
    };
    touch();
    void this.run(path, ac, touch).then(
      (outcome) => {
        clearTimeout(this.idle);
        ac.abort(); // the stream is done with either way: free its socket
        if (this.closed || ac !== this.abort) return;
        const counts = this.spec.restarts;
        if (outcome === 'expired') {
          counts.resync++;
          void this.expired();
        } else if (outcome === 'ended') {
          counts.closed++;
          this.connect();
        } else {
          counts.broken++;
          this.retryLater();
        }
      },
      () => {
        clearTimeout(this.idle);
        if (this.closed || ac !== this.abort) return;
        this.spec.restarts.broken++;
        this.retryLater();
      },
    );
  }

  /** Reads one stream to its end. */
  private async run(
    path: string,
    ac: AbortController,
    touch: () => void,
  ): Promise<'ended' | 'expired' | 'failed'> {
    const res = await this.spec.api.open(
      { method: 'GET', path },
      AbortSignal.any([ac.signal, this.spec.api.closeSignal]),
      true,
    );
    if (res.statusCode !== 200) {
      res.resume();
      return res.statusCode === 410 ? 'expired' : 'failed';
    }
    res.socket?.setKeepAlive(true, 10_000);
    this.failures = 0; // connected: the next break starts the backoff afresh
    res.setEncoding('utf8');
    let buf = '';
    let delivered = false;
    // A stream replaced (by `rewind`) must not deliver what is left in it: it could move `rv` past
    // the events its replacement is about to deliver.
    const stale = (): boolean => this.closed || ac !== this.abort;
    for await (const chunk of res) {
      if (stale()) return 'ended';
      touch();
      buf += chunk as string;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        // managedFields are dropped on read: cut before parsing (list-items.ts).
        const outcome = this.receive(
          JSON.parse(withoutManagedFields(line)) as { type?: string; object?: KubeObject },
        );
        if (outcome) return outcome;
        if (stale()) return 'ended';
        delivered = true;
      }
    }
    // A clean end (the server's timeout, after a bookmark) resumes at once; an empty one backs off,
    // in case the server ends every watch right away.
    return delivered ? 'ended' : 'failed';
  }

  private receive(ev: { type?: string; object?: KubeObject }): 'expired' | 'failed' | undefined {
    const obj = ev.object ?? {};
    if (ev.type === 'ERROR') {
      const code = (obj as { code?: number }).code;
      return code === 410 ? 'expired' : 'failed';
    }
    const v = obj.metadata?.resourceVersion;
    if (typeof v !== 'string' || !isRevision(v)) return undefined;
    const rev = BigInt(v);
    if (rev <= this.rv) return undefined; // never deliver a revision twice
    this.rv = rev;
    if (ev.type === 'BOOKMARK') return undefined;
    const e = this.spec.decode(obj);
    if (!e) return undefined;
    let out: WatchEvent;
    if (ev.type === 'DELETED') out = { type: 'delete', key: e.key, version: v };
    else if (ev.type === 'ADDED' || ev.type === 'MODIFIED')
      out = { type: 'put', key: e.key, value: e.value, version: v };
    else return undefined;
    try {
      this.spec.onEvent(out);
    } catch (err) {
      // A throwing listener is the caller's bug: surface it as an uncaught error, like an
      // EventEmitter would, without losing the rest of the stream.
      queueMicrotask(() => {
        throw err;
      });
    }
    return undefined;
  }

  /** 410: the history after `rv` is gone. Start from the current revision, then tell the caller. */
  private async expired(): Promise<void> {
    let now: bigint;
    try {
      now = await this.spec.current();
    } catch {
      if (!this.closed) this.timer = setTimeout(() => void this.expired(), this.nextBackoff());
      return;
    }
    if (this.closed) return;
    this.rv = now;
    this.connect();
    if (this.spec.onReset) {
      try {
        this.spec.onReset();
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  private nextBackoff(): number {
    this.failures++;
    return backoff(this.failures, WATCH_RETRY_FIRST_MS, WATCH_RETRY_CAP_MS);
  }

  private retryLater(): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.nextBackoff());
  }
}

/**
 * Opens the store at `url` (`kubernetes:` or `kubernetes:/path/to/kubeconfig`, `k8s:` alike) and
 * checks that the API server serves every resource it needs.
 * @throws IpamError INVALID_CONFIG for a malformed URL, a missing kubeconfig or bad options.
 * @throws StoreError not retryable when a CRD is missing (the message says how to install them) or
 *   access is refused; retryable when the server does not answer within the deadline.
 */
export async function openKubernetesStore(url: string, opts: KubernetesStoreOptions = {}): Promise<Store> {
  const { kubeconfig } = parseKubernetesUrl(url);
  const kc = await loadKubeConfig(url, kubeconfig);
  const store = new KubernetesStore(kc, opts);
  try {
    await store.probe();
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
}
