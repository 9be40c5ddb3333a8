/**
 * @module store/etcd
 * `EtcdStore`: the `Store` on a real etcd v3 cluster, shared by the agents of several hosts.
 *
 * Layout: store key `k` is etcd key `prefix + k` (default prefix `/ipkeeper/`), its value the JSON
 * text (`codec.ts`: a claim as its spec alone). A version is the key's `mod_revision` in decimal — etcd's store-wide revision, which only
 * grows, so a deleted and recreated key never gets an old version back (DESIGN invariant 3).
 *
 * Every write is one etcd transaction on its own key, so writers of different keys never contend and
 * nothing is a hot key (DESIGN invariant 2):
 *
 *   create   If(create_revision(k) == 0) Then(put k)    Else(get k)
 *   update   If(mod_revision(k) == v)    Then(put k)    Else(get k)
 *   delete   If(mod_revision(k) == v)    Then(delete k) Else(get k)
 *
 * The write happens at the transaction's header revision, which is the version handed back.
 *
 * Calls. `KV/Range`, `KV/Txn` and `Watch/Watch` go through the etcd3 client's connection pool (its
 * choice of member, TLS and authentication token) as bytes that `etcd-wire.ts` encodes and decodes,
 * not through the client's protobufjs objects. A call etcd refuses for a token it no longer knows
 * (unused for --auth-token-ttl, or a restarted member) is made once more with a new token.
 *
 * Failures. Every call has a deadline (5 s unless `timeoutMs` says otherwise) and fails with a
 * `StoreError` carrying the etcd error as `cause`. Reads are retried on another member until the
 * deadline. A write is retried only when it provably never reached etcd (no connection, or a
 * proposal that raft dropped); once it may have been sent, a lost answer makes its outcome unknown —
 * etcd may still commit it — so it fails with a retryable StoreError instead of being re-sent: a
 * re-sent create would find its own first attempt and report the key as taken by someone else. The
 * etcd3 client's own retries are switched off for the same reason.
 *
 * Watch. One etcd watch stream per watcher, on the prefix. It starts just after the newest
 * revision this store has seen, so nothing committed after `watch` returns is missed; when this
 * store listed a covering prefix in the last few seconds, it starts just after that list's revision
 * instead, so list-then-watch has no gap even if other calls moved the store on in between. Either
 * way a watch may deliver a few events from before the call, older than what the caller holds
 * (`versionNewer` tells). A broken stream is reopened from the revision after the last one
 * delivered, so a member crash loses and repeats nothing and needs no `onReset`. `onReset` is
 * called when etcd has compacted history the watcher still needs, or cancels the watch; the watcher
 * then resumes from the oldest revision etcd still has.
 */
import { isIP } from 'node:net';
import {
  castGrpcError,
  ClientClosedError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCInvalidArgumentError,
  GRPCNotImplementedError,
  GRPCUnauthenticatedError,
} from 'etcd3';
import type { IOptions } from 'etcd3';
import { IpamError } from '../errors.ts';
import { ETCD_PASSWORD_ENV, type EtcdAuth, type EtcdTls } from './etcd-options.ts';
import { decodeValue, encodeValue } from './codec.ts';
import { StoreError, validateKeys, newWatchStats, resumeWatch, validateKey } from './store.ts';
import type {
  CasResult,
  CreateManyResult,
  CreateResult,
  DeleteManyResult,
  Store,
  StoredText,
  Version,
  Versioned,
  WatchEvent,
  WatchStats,
  Watcher,
} from './store.ts';
import { backoff, messageOf, sleep } from './backoff.ts';
import {
  decodeRangeResponse,
  decodeTxnResponse,
  decodeWatchResponse,
  encodeRangeRequest,
  encodeTxnRequest,
  encodeWatchCreate,
  lastKey,
  type TxnAnswer,
  type TxnOp,
  type WatchAnswer,
  type WatchEventAt,
} from './etcd-wire.ts';

export const DEFAULT_PREFIX = '/ipkeeper/';
export const DEFAULT_TIMEOUT_MS = 5_000;
export const DEFAULT_PORT = 2379;
/** Keys per range request of `list`; halved while a page is larger than the client accepts. */
export const LIST_PAGE_KEYS = 10_000;
const MAX_RECEIVE_BYTES = 64 * 1024 * 1024;
/**
 * Keys `scan` parses and hands over between turns of the event loop. An agent's start on 100k claims
 * (bench/restart's etcd rows, alternating, 5 runs each): whole pages 1,216–1,766 ms, slices of 1,000
 * 1,062–1,411 ms, of 250 1,055–1,331 ms. The yield lets the next page's bytes in while this one is
 * parsed; before, the agent sat idle 40–100 ms per page waiting for them.
 */
export const SCAN_SLICE_KEYS = 250;
/**
 * HTTP/2 flow-control window of the client's connection and of each of its streams (grpc-js's
 * default is HTTP/2's 64 KiB). etcd sends at most a window of bytes before the agent reads them and
 * acknowledges; a 10,000-key page of claims is ~3.5 MB, so with 64 KiB etcd stalled ~55 times per
 * page waiting for the agent's event loop. With two pages' worth, etcd sends the next page while
 * this one is parsed. A scan of 100k claims in process (10 alternating runs each): 475–644 ms, median
 * 545, with 64 KiB; 446–591 ms, median 471, with 8 MiB. It bounds what one connection can have
 * buffered and unread, which for the agent's watches is far more than they ever carry.
 */
export const FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;
/** Retry backoff for reads and unsent writes: doubles from the first value up to the cap. */
const RETRY_FIRST_MS = 20;
const RETRY_CAP_MS = 250;
/** Watch reconnect backoff. */
const WATCH_RETRY_FIRST_MS = 50;
const WATCH_RETRY_CAP_MS = 2_000;
/**
 * How long a `list` counts as "just listed" for a `watch` of a prefix it covers: the watch starts
 * after the oldest such list's revision. Only affects how far back a watch starts, never what it
 * misses.
 */
const LIST_WATCH_WINDOW_MS = 10_000;
const LIST_WATCH_ENTRIES = 64;
/**
 * Slack after the deadline before a call is abandoned without the client's answer. gRPC enforces
 * the deadline itself; this only guarantees that no call can hang, whatever the client does.
 */
const BACKSTOP_GRACE_MS = 250;
/**
 * Group commit of `createMany` (see `createMany`): transactions in flight before calls queue, and
 * keys per grouped transaction (etcd refuses a transaction of more than --max-txn-ops, default 128,
 * operations per branch). One in flight measured best (npm run bench -- --only etcd --quick: 1 →
 * 990 alloc/s, 2 → 905, 4 → 612, none → 586 on 2 CPUs shared with etcd): a group then carries
 * everything that arrived during the previous transaction, and etcd applies one raft entry for it.
 */
export const GROUP_IN_FLIGHT = 1;
export const GROUP_MAX_KEYS = 64;
/**
 * Group commit's linger (`groupLingerMs`): after a transaction that carried two or more calls — the
 * store is under concurrent load — the next group is held up to this long for more calls, and goes
 * at once when it is full. Without it, closed-loop callers settle into two cohorts that alternate
 * (one in flight while the other queues), so a group carries about half of them. Measured (npm run
 * bench -- --only etcd, 4 agents × 8 requesters, 2 CPUs shared with a 3-member etcd): 0 ms → 3.8
 * allocations per transaction, 0.59–0.65× raw CAS; 2 ms → 5.8, 0.70×; 4 ms → 7.4–7.5, 0.82–0.91×;
 * 6 ms → 7.7, 0.77×; with the median ADD latency lower at 4 than at 0 (8.6–9.8 against 12.9–13.4
 * ms: less queueing). The 1000-pod burst on etcd: 0.73–0.83 s at 4 against 0.84–0.90 s at 0.
 * A call that finds the store idle, or follows a transaction of one call, is sent at once; so is a
 * group that is full.
 */
export const GROUP_LINGER_MS = 4;

const URL_FORM = 'etcd://host:port[,host:port...][/prefix]';

export interface EtcdStoreOptions {
  /** etcd key prefix, ending in `/` (one is added when missing). Default `/ipkeeper/`. */
  prefix?: string;
  /** Deadline of every call, retries included, in ms. Default 5000. */
  timeoutMs?: number;
  /** Keys per range request of `list` (default 10 000); small values let tests cross pages. */
  listPageKeys?: number;
  /** Keys `scan` hands over at a time, between turns of the event loop (default `SCAN_SLICE_KEYS`). */
  scanSliceKeys?: number;
  /** Concurrent `createMany` calls share transactions (default true; false: one each). */
  groupCommit?: boolean;
  /** Group commit's linger in ms (default `GROUP_LINGER_MS`; 0: none). */
  groupLingerMs?: number;
  /**
   * Largest message the client accepts, in bytes (default 64 MiB); a list page larger than that
   * is asked for again with half the keys. Small values let tests cross that path.
   */
  maxReceiveBytes?: number;
  /**
   * Connect over TLS (the hosts as https://), verifying the members against `ca` (else the
   * system's roots) and, with `cert` and `key`, presenting a client certificate: etcd's
   * `--client-cert-auth`. See `etcd-options.ts` for the agent's flags.
   */
  tls?: EtcdTls;
  /** Authenticate as this etcd user (etcd's `auth enable`). */
  auth?: EtcdAuth;
  /**
   * Reads `tls` and `auth` again (the agent: its flags' files, `etcdConnection`). Given, the store
   * calls it every `credentialsCheckMs`; when what it returns differs from what the client uses —
   * a certificate, key or CA renewed, a password changed — the store connects with the new ones
   * (see `reloadCredentials`). A call that throws (a file half written, a key that does not match
   * its certificate yet) changes nothing and is tried again at the next check.
   */
  credentials?: () => { tls?: EtcdTls; auth?: EtcdAuth };
  /** How often `credentials` is called, in ms (default `CREDENTIALS_CHECK_MS`). */
  credentialsCheckMs?: number;
  /** Told of each check that changed the client or could not read the credentials. */
  onCredentials?: (event: CredentialsEvent) => void;
}

/** What a credentials check did, for the agent's log. */
export type CredentialsEvent =
  { kind: 'reloaded'; changed: string[] } | { kind: 'unreadable'; message: string };

/**
 * How often the agent reads its etcd certificates, key and password file again. Certificates are
 * renewed days before they expire (cert-manager: a third of their life), so a minute is soon
 * enough, and a few small reads a minute cost nothing.
 */
export const CREDENTIALS_CHECK_MS = 60_000;
/** The least time between two checks that failed calls ask for. */
const CREDENTIALS_RECHECK_MS = 2_000;
/** gRPC's and etcd's words for a connection or call refused for its certificate, CA or password. */
const CREDENTIALS_REFUSED =
  /certificate|handshake|unknown ca|self[- ]signed|alert|authentication failed|invalid user ID or password|UNAUTHENTICATED/i;

/** A `createMany` call waiting for its group's transaction. */
interface PendingCreate {
  entries: { key: string; value: unknown }[];
  resolve(r: CreateManyResult): void;
  reject(e: unknown): void;
}

/** An `etcd://` URL taken apart. */
export interface EtcdUrl {
  /** `host:port` each, IPv6 in brackets. */
  hosts: string[];
  /** The prefix from the URL path, normalized to end in `/`; undefined when the URL has none. */
  prefix: string | undefined;
}

function invalidUrl(url: string, why: string): IpamError {
  return new IpamError(
    'INVALID_CONFIG',
    `etcd URL "${url}" is invalid: ${why}; expected ${URL_FORM}, e.g. etcd://10.0.0.1:2379,10.0.0.2:2379/ipkeeper`,
    { field: 'store', value: url, expected: URL_FORM },
  );
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const PREFIX = /^(\/[A-Za-z0-9._-]+)+\/?$/;

function normalizePrefix(prefix: string): string | undefined {
  if (prefix === '' || prefix === '/') return undefined;
  if (!PREFIX.test(prefix) || prefix.split('/').some((s) => s === '.' || s === '..')) return undefined;
  return prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/**
 * Parses `etcd://host:port[,host:port...][/prefix]`. A host without a port gets 2379; an IPv6
 * address goes in brackets (`[fd00::1]:2379`).
 * @throws IpamError INVALID_CONFIG naming the value and the expected form.
 */
export function parseEtcdUrl(url: string): EtcdUrl {
  const m = /^etcd:\/\/([^/?#]*)(\/[^?#]*)?$/i.exec(url);
  if (!m) {
    if (/[?#]/.test(url) && /^etcd:\/\//i.test(url)) throw invalidUrl(url, 'query strings are not supported');
    throw invalidUrl(url, 'it must start with etcd://');
  }
  const [, hostList = '', path = ''] = m;
  if (hostList === '') throw invalidUrl(url, 'it names no host');
  const hosts = hostList.split(',').map((h) => {
    const hm = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(h);
    if (!hm || hm[1] === '') throw invalidUrl(url, `host "${h}" is not host:port`);
    const host = hm[1]!;
    const port = hm[2] === undefined ? DEFAULT_PORT : Number(hm[2]);
    if (port < 1 || port > 65535) throw invalidUrl(url, `port ${hm[2]} of "${h}" is not 1-65535`);
    if (host.startsWith('[')) {
      if (isIP(host.slice(1, -1)) !== 6) throw invalidUrl(url, `"${host}" is not an IPv6 address`);
    } else if (/^[\d.]+$/.test(host) ? isIP(host) !== 4 : !HOSTNAME.test(host)) {
      throw invalidUrl(url, `"${host}" is not an IPv4 address or host name`);
    }
    return `${host}:${port}`;
  });
  let prefix: string | undefined;
  if (path !== '' && path !== '/') {
    prefix = normalizePrefix(path);
    if (prefix === undefined) {
      throw invalidUrl(url, `prefix "${path}" must be /-separated names of letters, digits, ".", "_", "-"`);
    }
  }
  return { hosts, prefix };
}

type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * A fault-handling "policy" that runs the call once. etcd3's default retries a failed call up to
 * three times on another member — including a transaction that may already have committed — and
 * opens a per-member circuit for 5 s after three failures. Both would break the write rule above
 * or slow down recovery, so this module does its own retrying.
 */
const RUN_ONCE = {
  execute: <R>(fn: (ctx: { signal: AbortSignal; attempt: number }) => PromiseLike<R> | R): Promise<R> =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal, attempt: 0 })),
} as unknown as Policy;

/**
 * What a failed call tells us: `unsent` — it provably never reached etcd, any call may be re-sent;
 * `unknown` — it may have been applied; `fatal` — retrying cannot help.
 */
type Failure = 'unsent' | 'unknown' | 'fatal';

const UNSENT =
  /No connection established|Channel closed before call started|Name resolution failed|raft proposal dropped|etcdserver: too many requests|etcdserver: no leader/;
const FATAL =
  /etcdserver: request is too large|etcdserver: too many operations in txn request|message larger than max|required revision has been compacted/i;

/** An error that says only that a call's deadline passed. */
const DEADLINE = /DEADLINE_EXCEEDED|Deadline exceeded/i;

function classify(e: unknown): Failure {
  if (
    e instanceof GRPCInvalidArgumentError ||
    e instanceof GRPCNotImplementedError ||
    e instanceof GRPCUnauthenticatedError ||
    e instanceof EtcdPermissionDeniedError ||
    e instanceof EtcdAuthenticationFailedError ||
    e instanceof ClientClosedError
  ) {
    return 'fatal';
  }
  const msg = e instanceof Error ? e.message : String(e);
  if (FATAL.test(msg)) return 'fatal';
  if (UNSENT.test(msg)) return 'unsent';
  return 'unknown';
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: to the end of the keyspace
}

/** A canonical etcd revision: a positive decimal int64 without leading zeros. */
function isRevision(v: string): boolean {
  return /^[1-9]\d{0,18}$/.test(v) && BigInt(v) <= 0x7fffffffffffffffn;
}

/**
 * The etcd store. Every method rejects with a `StoreError`: not retryable for an invalid key, a
 * value JSON cannot carry, a stored value that is not JSON, a request etcd refuses (too large,
 * permission denied) or a call after `close()`; retryable for an unreachable or leaderless cluster,
 * a missed deadline and a write whose outcome is unknown.
 */
export class EtcdStore implements Store {
  readonly backend = 'etcd';
  /** The etcd key prefix, ending in `/`. */
  readonly prefix: string;
  /** The prefix's length in UTF-8 bytes, as it starts every etcd key of this store. */
  private readonly prefixBytes: number;
  readonly timeoutMs: number;
  readonly hosts: readonly string[];
  private readonly listPageKeys: number;
  private readonly scanSliceKeys: number;
  private client: Etcd3;
  /** The credentials `client` was made with. */
  private tls: EtcdTls | undefined;
  private auth: EtcdAuth | undefined;
  /** Clients replaced by `reloadCredentials`, closed once their calls had time to finish. */
  private readonly retired = new Set<Etcd3>();
  private credentialsTimer: NodeJS.Timeout | undefined;
  /** Reads the credentials again and reconnects when they changed (set with `credentials`). */
  private readonly checkCredentials: (() => void) | undefined;
  private lastCredentialsCheck = 0;
  private readonly maxReceiveBytes: number;
  private readonly watchers = new Set<EtcdWatcher>();
  /** How often the watch streams started over (`watchStats`). */
  private readonly restarts = newWatchStats();
  /** Newest etcd revision seen in any response: where a new watch starts (after it). */
  private revision = 0n;
  /** Recent lists (newest last): a watch of a prefix they cover starts after their revision. */
  private recentLists: { prefix: string; revision: bigint; at: number }[] = [];
  private closed = false;
  private readonly groupCommit: boolean;
  private readonly groupQueue: PendingCreate[] = [];
  private groupsInFlight = 0;
  private readonly groupLingerMs: number;
  /** Keys of the calls in `groupQueue`. */
  private queuedKeys = 0;
  /** Set while the next group lingers (see `GROUP_LINGER_MS`). */
  private linger: NodeJS.Timeout | undefined;
  /** `createMany` calls, the transactions sent for them, and groups split by an existing key. */
  readonly groupStats = { transactions: 0, calls: 0, split: 0 };

  /**
   * Makes a client for `hosts` (`host:port` each) without contacting etcd; `openEtcdStore` also
   * checks that the cluster answers. A watch started before the first call of any other method
   * starts at the revision current when etcd registers it.
   */
  constructor(hosts: readonly string[], opts: EtcdStoreOptions = {}) {
    const prefix = opts.prefix === undefined ? DEFAULT_PREFIX : normalizePrefix(opts.prefix);
    if (prefix === undefined) {
      throw new IpamError(
        'INVALID_CONFIG',
        `etcd prefix "${opts.prefix}" is invalid: expected /-separated names of letters, digits, ".", "_", "-", e.g. /ipkeeper/`,
        { field: 'prefix', value: opts.prefix },
      );
    }
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new IpamError('INVALID_CONFIG', `etcd timeout ${timeoutMs} ms must be a positive number`, {
        field: 'timeoutMs',
        value: timeoutMs,
      });
    }
    if (hosts.length === 0) throw new IpamError('INVALID_CONFIG', 'etcd store needs at least one host');
    this.prefix = prefix;
    this.prefixBytes = Buffer.byteLength(prefix);
    this.timeoutMs = timeoutMs;
    this.hosts = [...hosts];
    this.listPageKeys = Math.max(1, Math.floor(opts.listPageKeys ?? LIST_PAGE_KEYS));
    this.scanSliceKeys = Math.max(1, Math.floor(opts.scanSliceKeys ?? SCAN_SLICE_KEYS));
    this.groupCommit = opts.groupCommit ?? true;
    this.groupLingerMs = Math.max(0, opts.groupLingerMs ?? GROUP_LINGER_MS);
    this.maxReceiveBytes = opts.maxReceiveBytes ?? MAX_RECEIVE_BYTES;
    this.tls = opts.tls;
    this.auth = opts.auth;
    this.client = this.makeClient(this.tls, this.auth);
    const reread = opts.credentials;
    if (reread) {
      const tell = opts.onCredentials ?? (() => {});
      this.checkCredentials = () => {
        this.lastCredentialsCheck = Date.now();
        let changed;
        try {
          const next = reread();
          changed = this.reloadCredentials(next.tls, next.auth);
        } catch (e) {
          tell({ kind: 'unreadable', message: messageOf(e) });
          return;
        }
        if (changed.length > 0) tell({ kind: 'reloaded', changed });
      };
      this.credentialsTimer = setInterval(
        this.checkCredentials,
        opts.credentialsCheckMs ?? CREDENTIALS_CHECK_MS,
      );
      this.credentialsTimer.unref();
    }
  }

  /**
   * A call etcd or TLS refused for the client's credentials reads them again at once (at most every
   * `CREDENTIALS_RECHECK_MS`) instead of at the next check: when the members moved to new
   * certificates or a new password after the files changed, the agent follows in seconds.
   */
  private refusedFor(e: unknown): void {
    if (!this.checkCredentials || Date.now() - this.lastCredentialsCheck < CREDENTIALS_RECHECK_MS) return;
    const why = messageOf(e) + messageOf((e as { cause?: unknown } | null)?.cause);
    if (CREDENTIALS_REFUSED.test(why)) this.checkCredentials();
  }

  /** A client for the hosts with these credentials. @throws when grpc-js refuses the PEM. */
  private makeClient(tls: EtcdTls | undefined, auth: EtcdAuth | undefined): Etcd3 {
    return new Etcd3({
      hosts: this.hosts.map((h) => `${tls ? 'https' : 'http'}://${h}`),
      ...(tls
        ? {
            credentials: {
              // grpc-js takes null for "the system's roots"; etcd3's type wants a Buffer.
              rootCertificate: (tls.ca ?? null) as Buffer,
              ...(tls.key ? { privateKey: tls.key } : {}),
              ...(tls.cert ? { certChain: tls.cert } : {}),
            },
          }
        : {}),
      ...(auth ? { auth } : {}),
      faultHandling: { global: RUN_ONCE, host: () => RUN_ONCE },
      // No gRPC keepalive: etcd counts a client ping on a connection without an open stream as
      // abuse and, after three, drops the connection with every call on it (too_many_pings) — which
      // turns healthy writes into ones with unknown outcome.
      grpcOptions: {
        'grpc.max_receive_message_length': this.maxReceiveBytes,
        'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
      },
    });
  }

  /**
   * Connects with new credentials when they differ from the client's: gRPC fixes a channel's TLS
   * and etcd3 its user at construction, so a renewed certificate or a changed password needs a new
   * client. Calls from now on use it, and a watch when its stream next starts over (it reads the
   * store's pool at each connection). The old client is closed after `timeoutMs` — every call on it
   * has met its deadline by then — so no write in flight is cut off. TLS cannot be turned on or off here
   * (the hosts' scheme): a change of that kind is ignored, as the agent's flags cannot make it.
   * @returns what changed (`ca`, `cert`, `key`, `user`, `password`); empty when nothing did.
   * @throws when the new material cannot make a client (PEM grpc-js refuses); nothing changes then.
   */
  reloadCredentials(tls: EtcdTls | undefined, auth: EtcdAuth | undefined): string[] {
    if (this.closed || (tls === undefined) !== (this.tls === undefined)) return [];
    const changed: string[] = [];
    const differ = (a: Buffer | undefined, b: Buffer | undefined) =>
      a === undefined || b === undefined ? a !== b : !a.equals(b);
    if (differ(tls?.ca, this.tls?.ca)) changed.push('ca');
    if (differ(tls?.cert, this.tls?.cert)) changed.push('cert');
    if (differ(tls?.key, this.tls?.key)) changed.push('key');
    if (auth?.username !== this.auth?.username) changed.push('user');
    if (auth?.password !== this.auth?.password) changed.push('password');
    if (changed.length === 0) return changed;
    const next = this.makeClient(tls, auth);
    const old = this.client;
    this.tls = tls;
    this.auth = auth;
    this.client = next;
    this.retired.add(old);
    setTimeout(() => {
      this.retired.delete(old);
      old.close();
    }, this.timeoutMs).unref();
    return changed;
  }

  async get<T>(key: string): Promise<Versioned<T> | undefined> {
    this.check(key);
    const request = encodeRangeRequest({ key: this.etcdKey(key), rangeEnd: EMPTY, limit: 0, revision: '0' });
    const bytes = await this.call('get', key, false, (deadline) => this.unary('Range', request, deadline));
    const res = this.decodeAnswer('get', key, bytes, decodeRangeResponse);
    this.sawRevision(res.revision);
    if (res.count === 0) return undefined;
    const { spans, modRevisions } = res;
    return this.decodeAt<T>(bytes, spans[0]!, spans[1]!, spans[2]!, spans[3]!, modRevisions[0]!);
  }

  /** Every entry under `prefix` at one revision: the pages of `scan`, collected. */
  async list<T>(prefix: string): Promise<Versioned<T>[]> {
    let out: Versioned<T>[] = [];
    await this.pages(
      prefix,
      (page) => {
        for (const e of page) out.push(e);
      },
      () => {
        out = [];
      },
      toVersioned<T>,
    );
    return out;
  }

  /**
   * `list`, handed over page by page: a page goes to `onPage` after the next one is asked for, so
   * the caller's work on it (an agent loading its cache) overlaps etcd's on the next. If etcd
   * compacts the snapshot's revision away in the middle, the scan starts over at a new revision, so
   * pages can repeat; an entry carries its version, and a cache fed by a watch started before the
   * scan converges either way (the engine's `load`).
   */
  async scan<T>(prefix: string, onPage: (entries: Versioned<T>[]) => void): Promise<void> {
    await this.pages(prefix, onPage, () => {}, toVersioned<T>);
  }

  /** `scan` with each value as its stored text (see `Store.scanText`): nothing parsed here. */
  async scanText(prefix: string, onPage: (entries: StoredText[]) => void): Promise<void> {
    await this.pages(prefix, onPage, () => {}, toText);
  }

  /**
   * Pages through the prefix at one revision (the first page's), `listPageKeys` keys a page. Each
   * page is its own call, with its own deadline and retries, so a prefix of any size can be read.
   * Pages are read with `rangeBytes` and decoded by `etcd-wire.ts`, not by the etcd3 client (see
   * there). `onRestart` is called before a scan starts over (after a compaction). `entry` makes each
   * page entry: its value parsed (`toVersioned`) or as its text (`toText`).
   */
  private async pages<E>(
    prefix: string,
    onPage: (entries: E[]) => void,
    onRestart: () => void,
    entry: (key: string, bytes: Buffer, start: number, end: number, version: string) => E,
  ): Promise<void> {
    this.check();
    const start = Buffer.from(this.prefix + prefix);
    const end = prefixEnd(start);
    const skip = this.prefixBytes;
    let limit = this.listPageKeys;
    for (let round = 1; ; round++) {
      let from = start;
      let revision = '0';
      const page = (key: Buffer, rev: string): Promise<Buffer> =>
        this.call('list', `${prefix}*`, false, (deadline) =>
          this.unary('Range', encodeRangeRequest({ key, rangeEnd: end, limit, revision: rev }), deadline),
        );
      let next: Promise<Buffer> | undefined;
      // Left only by return (done), throw, or break (start over).
      for (;;) {
        let bytes;
        try {
          bytes = await (next ?? page(from, revision));
        } catch (e) {
          next = undefined;
          const why = messageOf(e) + messageOf((e as { cause?: unknown } | null)?.cause);
          // A page of big values can exceed what the client accepts: ask for fewer keys.
          if (/RESOURCE_EXHAUSTED|larger than max/i.test(why) && limit > 1) {
            limit = Math.ceil(limit / 2);
            continue;
          }
          // The snapshot's revision was compacted away under us: start over at the newest.
          if (revision !== '0' && /compacted/i.test(why) && round < 5) break;
          throw e;
        }
        next = undefined;
        const res = this.decodeAnswer('list', `${prefix}*`, bytes, decodeRangeResponse);
        this.sawRevision(res.revision);
        if (revision === '0') revision = res.revision;
        const last = lastKey(bytes, res);
        const more = res.more && last !== undefined;
        if (more) {
          // Ask for the next page (at the first page's revision) before parsing this one: etcd
          // serves it while we parse and the caller works.
          from = Buffer.concat([last, Buffer.from([0])]);
          next = page(from, revision);
          next.catch(() => undefined); // observed by the next turn's await
        }
        const { spans, modRevisions } = res;
        // Parsed and handed over a slice at a time, letting the event loop run between slices: the
        // next page arrives over HTTP/2 only while this process reads its socket, so parsing a
        // whole page at once would leave etcd's answer waiting behind it.
        for (let first = 0; first < res.count; first += this.scanSliceKeys) {
          if (first > 0) {
            await new Promise((r) => setImmediate(r));
            this.check();
          }
          const end = Math.min(res.count, first + this.scanSliceKeys);
          const entries: E[] = new Array<E>(end - first);
          for (let i = first; i < end; i++) {
            const j = i * 4;
            const key = bytes.toString('utf8', spans[j]! + skip, spans[j + 1]);
            entries[i - first] = entry(key, bytes, spans[j + 2]!, spans[j + 3]!, modRevisions[i]!);
          }
          onPage(entries);
        }
        if (!more) {
          this.recentLists.push({ prefix, revision: BigInt(revision), at: Date.now() });
          if (this.recentLists.length > LIST_WATCH_ENTRIES) this.recentLists.shift();
          return;
        }
      }
      onRestart();
    }
  }

  async create<T>(key: string, value: T): Promise<CreateResult<T>> {
    this.check(key);
    const k = this.etcdKey(key);
    const json = encodeValue(key, value);
    const request = encodeTxnRequest(
      [{ key: k, target: 'create', revision: '0' }],
      [{ put: k, value: Buffer.from(json) }],
      [{ get: k }],
    );
    const res = await this.txn('create', key, request);
    if (res.succeeded) return { created: true, version: res.revision };
    const existing = this.decodeGet<T>(res, 0);
    if (!existing) {
      // The transaction is atomic: its compare saw the key, so its get must return it.
      throw new StoreError(`etcd create "${key}": key exists but the transaction returned no value`, {
        retryable: true,
      });
    }
    return { created: false, existing };
  }

  /**
   * All or none, as one transaction. Concurrent calls share transactions (group commit): while
   * `GROUP_IN_FLIGHT` are in flight, calls queue, and the next transaction carries every queued call
   * whose keys fit (`GROUP_MAX_KEYS`, no key twice). A group either creates every call's keys — each
   * call's keys exist or not together, as they would alone — or, when some key exists, each call is
   * answered on its own: a call whose keys were all absent is sent again alone, one with a key that
   * exists gets `created: false` with what exists, as it would alone. A failure of the grouped
   * transaction (unknown outcome included) is every member's failure: each was in it.
   */
  async createMany(entries: { key: string; value: unknown }[]): Promise<CreateManyResult> {
    this.check();
    validateKeys(entries, 'createMany');
    this.groupStats.calls++;
    if (!this.groupCommit) return this.createTxn(entries);
    return new Promise<CreateManyResult>((resolve, reject) => {
      this.groupQueue.push({ entries, resolve, reject });
      this.queuedKeys += entries.length;
      // A full group does not wait out the linger.
      if (this.linger && this.queuedKeys >= GROUP_MAX_KEYS) this.endLinger();
      this.sendGroups();
    });
  }

  private endLinger(): void {
    clearTimeout(this.linger);
    this.linger = undefined;
  }

  private sendGroups(): void {
    while (this.groupsInFlight < GROUP_IN_FLIGHT && !this.linger && this.groupQueue.length > 0) {
      const group: PendingCreate[] = [];
      const keys = new Set<string>();
      for (let i = 0; i < this.groupQueue.length;) {
        const p = this.groupQueue[i] as PendingCreate;
        const fits =
          group.length === 0 ||
          (keys.size + p.entries.length <= GROUP_MAX_KEYS && !p.entries.some((e) => keys.has(e.key)));
        if (!fits) {
          i++;
          continue;
        }
        this.groupQueue.splice(i, 1);
        this.queuedKeys -= p.entries.length;
        group.push(p);
        for (const e of p.entries) keys.add(e.key);
      }
      this.groupsInFlight++;
      void this.sendGroup(group).finally(() => {
        this.groupsInFlight--;
        const lingers =
          group.length > 1 &&
          this.groupLingerMs > 0 &&
          !this.closed &&
          !this.linger &&
          this.queuedKeys < GROUP_MAX_KEYS;
        if (lingers) {
          this.linger = setTimeout(() => {
            this.linger = undefined;
            this.sendGroups();
          }, this.groupLingerMs);
        }
        this.sendGroups();
      });
    }
  }

  private async sendGroup(group: PendingCreate[]): Promise<void> {
    if (group.length === 1) {
      const p = group[0] as PendingCreate;
      await this.createTxn(p.entries).then(p.resolve, p.reject);
      return;
    }
    let res: CreateManyResult;
    try {
      res = await this.createTxn(group.flatMap((p) => p.entries));
    } catch (e) {
      for (const p of group) p.reject(e);
      return;
    }
    if (res.created) {
      let i = 0;
      for (const p of group) {
        p.resolve({ created: true, versions: res.versions.slice(i, (i += p.entries.length)) });
      }
      return;
    }
    this.groupStats.split++;
    const existing = new Map(res.existing.map((e) => [e.key, e]));
    await Promise.all(
      group.map((p) => {
        const mine = p.entries.flatMap((e) => existing.get(e.key) ?? []);
        if (mine.length > 0) {
          p.resolve({ created: false, existing: mine });
          return undefined;
        }
        return this.createTxn(p.entries).then(p.resolve, p.reject);
      }),
    );
  }

  /**
   * One transaction: If(create_revision(k) == 0 for every k) Then(put every k) Else(get every k).
   * Every key is written at the transaction's revision.
   */
  private async createTxn(entries: { key: string; value: unknown }[]): Promise<CreateManyResult> {
    this.check();
    this.groupStats.transactions++;
    const ks = entries.map((e) => this.etcdKey(e.key));
    const values = entries.map((e) => Buffer.from(encodeValue(e.key, e.value)));
    const subject =
      entries.length <= 3
        ? entries.map((e) => e.key).join(', ')
        : `${entries
            .slice(0, 2)
            .map((e) => e.key)
            .join(', ')}, ... (${entries.length} keys)`;
    const request = encodeTxnRequest(
      ks.map((key) => ({ key, target: 'create', revision: '0' })),
      ks.map((key, i) => ({ put: key, value: values[i] as Buffer })),
      ks.map((key) => ({ get: key })),
    );
    const res = await this.txn('createMany', subject, request);
    if (res.succeeded) return { created: true, versions: entries.map(() => res.revision) };
    const existing = res.gets.flatMap((_, i) => this.decodeGet(res, i) ?? []);
    if (existing.length === 0) {
      throw new StoreError(`etcd createMany "${subject}": a key exists but the transaction returned none`, {
        retryable: true,
      });
    }
    return { created: false, existing };
  }

  async update<T>(key: string, value: T, version: Version): Promise<CasResult<T>> {
    this.check(key);
    const json = encodeValue(key, value);
    const k = this.etcdKey(key);
    return this.compareAndWrite<T>('update', key, version, { put: k, value: Buffer.from(json) });
  }

  async delete(key: string, version: Version): Promise<CasResult> {
    this.check(key);
    return this.compareAndWrite('delete', key, version, { delete: this.etcdKey(key) });
  }

  /** One transaction: every key's mod_revision compared, all deleted if each matches. */
  async deleteMany(entries: { key: string; version: Version }[]): Promise<DeleteManyResult> {
    this.check();
    validateKeys(entries, 'deleteMany');
    // A version this backend never hands out (and "0" would match a missing key) cannot match.
    if (!entries.every((e) => isRevision(e.version))) return { ok: false };
    const ks = entries.map((e) => this.etcdKey(e.key));
    const request = encodeTxnRequest(
      entries.map((e, i) => ({ key: ks[i] as Buffer, target: 'mod', revision: e.version })),
      ks.map((key) => ({ delete: key })),
      [],
    );
    const res = await this.txn('deleteMany', entries[0]?.key ?? '(none)', request);
    if (!res.succeeded) return { ok: false };
    return { ok: true, versions: entries.map(() => res.revision) };
  }

  watch<T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, onReset?: () => void): Watcher {
    this.check();
    return this.startWatch(prefix, this.watchStart(prefix), onEvent, onReset);
  }

  /**
   * Like `watch`, but delivers every event after `version` (e.g. a claims cache's revision). A
   * revision etcd has compacted away calls `onReset` (as any watch after a compaction); one past
   * every revision this store has seen (another cluster's, or this one's before a restore) calls
   * it at once, and the watch carries on from now.
   * @throws StoreError (not retryable) for a version that is not a decimal revision.
   */
  watchFrom<T>(
    prefix: string,
    version: Version,
    onEvent: (ev: WatchEvent<T>) => void,
    onReset?: () => void,
  ): Watcher {
    this.check();
    if (!/^(0|[1-9]\d*)$/.test(version)) {
      throw new StoreError(`etcd watch "${prefix}": "${version}" is not a revision`, { retryable: false });
    }
    return resumeWatch(
      BigInt(version),
      this.revision,
      () => this.startWatch(prefix, BigInt(version) + 1n, onEvent, onReset),
      () => this.startWatch(prefix, this.watchStart(prefix), onEvent, onReset),
      onReset,
    );
  }

  /**
   * `etcd:<cluster id>/<prefix>`: a claims cache written for one cluster and prefix is never read
   * for another.
   * @throws StoreError when no member answers.
   */
  async identity(): Promise<string> {
    this.check();
    try {
      const st = await this.client.maintenance.status();
      return `etcd:${st.header.cluster_id}/${this.prefix}`;
    } catch (e) {
      throw new StoreError(`etcd status failed: ${messageOf(e)}`, { retryable: true, cause: e });
    }
  }

  watchStats(): WatchStats {
    return { ...this.restarts };
  }

  private startWatch<T>(
    prefix: string,
    from: bigint,
    onEvent: (ev: WatchEvent<T>) => void,
    onReset: (() => void) | undefined,
  ): Watcher {
    const w = new EtcdWatcher({
      pool: () => this.pool,
      key: Buffer.from(this.prefix + prefix),
      prefixLength: this.prefixBytes,
      from,
      onEvent: onEvent as (ev: WatchEvent) => void,
      onReset,
      restarts: this.restarts,
      onClose: (self) => this.watchers.delete(self),
    });
    this.watchers.add(w);
    w.start();
    return w;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Calls held by the linger are sent now, to be refused as closed rather than left waiting.
    if (this.linger) {
      this.endLinger();
      this.sendGroups();
    }
    for (const w of [...this.watchers]) w.close();
    clearInterval(this.credentialsTimer);
    this.client.close();
    for (const c of this.retired) c.close();
    this.retired.clear();
  }

  /** The first revision a new watch of `prefix` delivers (see the module doc); 0 for "now". */
  private watchStart(prefix: string): bigint {
    const now = Date.now();
    this.recentLists = this.recentLists.filter((l) => now - l.at <= LIST_WATCH_WINDOW_MS);
    let after = this.revision;
    for (const l of this.recentLists) {
      if (prefix.startsWith(l.prefix) && l.revision < after) after = l.revision;
    }
    return after === 0n ? 0n : after + 1n;
  }

  /** update and delete: the write `op` if the key's mod_revision is `version`, else a read. */
  private async compareAndWrite<T>(
    what: 'update' | 'delete',
    key: string,
    version: Version,
    op: TxnOp,
  ): Promise<CasResult<T>> {
    if (!isRevision(version)) {
      // Not a version this backend hands out (and "0" would match a missing key): it cannot match.
      return { ok: false, current: await this.get<T>(key) };
    }
    const k = this.etcdKey(key);
    const request = encodeTxnRequest([{ key: k, target: 'mod', revision: version }], [op], [{ get: k }]);
    const res = await this.txn(what, key, request);
    if (res.succeeded) return { ok: true, version: res.revision };
    return { ok: false, current: this.decodeGet<T>(res, 0) };
  }

  /**
   * Runs `fn` until it succeeds, fails for good, or the deadline passes (see the module doc for
   * which failures are retried). `subject` names the key or prefix in messages.
   */
  private async call<R>(
    op: string,
    subject: string,
    write: boolean,
    fn: (deadline: number) => Promise<R>,
  ): Promise<R> {
    const deadline = Date.now() + this.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    const backstop = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreError(
              `etcd ${op} "${subject}": no answer from ${this.hosts.join(',')} within ${this.timeoutMs} ms${write ? '; the write may or may not have been applied' : ''}`,
              { retryable: true },
            ),
          ),
        this.timeoutMs + BACKSTOP_GRACE_MS,
      );
    });
    const attempts = this.attempts(op, subject, write, deadline, fn);
    attempts.catch(() => {}); // settled later by the race below, or abandoned to the backstop
    try {
      return await Promise.race([attempts, backstop]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async attempts<R>(
    op: string,
    subject: string,
    write: boolean,
    deadline: number,
    fn: (deadline: number) => Promise<R>,
  ): Promise<R> {
    // The last failure that says more than "deadline exceeded" (a TLS handshake refused, a member
    // down): the last attempt often ends on the deadline alone, and would hide it.
    let telling: unknown;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(deadline);
      } catch (e) {
        if (e instanceof StoreError) throw e;
        if (this.closed) throw new StoreError('etcd store is closed', { retryable: false, cause: e });
        this.refusedFor(e);
        const what = `etcd ${op} "${subject}"`;
        const failure = classify(e);
        if (failure === 'fatal') {
          throw new StoreError(`${what} refused: ${messageOf(e)}`, { retryable: false, cause: e });
        }
        if (failure === 'unknown' && write) {
          throw new StoreError(
            `${what} failed: ${messageOf(e)}; the write may or may not have been applied, read the key before retrying`,
            { retryable: true, cause: e },
          );
        }
        if (!DEADLINE.test(messageOf(e))) telling = e;
        const wait = backoff(attempt, RETRY_FIRST_MS, RETRY_CAP_MS);
        if (Date.now() + wait >= deadline) {
          const earlier = telling !== undefined && telling !== e ? `; before it: ${messageOf(telling)}` : '';
          throw new StoreError(
            `${what} failed after ${attempt} attempt(s) within ${this.timeoutMs} ms on ${this.hosts.join(',')}: ${messageOf(e)}${earlier}`,
            { retryable: true, cause: e },
          );
        }
        await sleep(wait);
      }
    }
  }

  private check(key?: string): void {
    if (this.closed) throw new StoreError('etcd store is closed', { retryable: false });
    if (key !== undefined) validateKey(key);
  }

  private etcdKey(key: string): Buffer {
    return Buffer.from(this.prefix + key);
  }

  private sawRevision(revision: string): void {
    const r = BigInt(revision);
    if (r > this.revision) this.revision = r;
  }

  /** One write transaction (`KV/Txn`) with an encoded request: its answer, the revision noted. */
  private async txn(op: string, subject: string, request: Buffer): Promise<Txn> {
    const bytes = await this.call(op, subject, true, (deadline) => this.unary('Txn', request, deadline));
    const res = this.decodeAnswer(op, subject, bytes, decodeTxnResponse);
    this.sawRevision(res.revision);
    return { ...res, bytes };
  }

  /**
   * One `KV/Range` or `KV/Txn` call with an encoded request, answered with the response's bytes, on
   * a member the etcd3 client's pool picks (its failover, authentication and error classes apply,
   * as for its own `kv.range` and `kv.txn`). When etcd has forgotten the client's token (it expires
   * after --auth-token-ttl seconds unused, 300 by default), the pool is told to ask for a new one and
   * the call is made once more: etcd refused it before doing anything, so a write may be re-sent.
   */
  private async unary(method: 'Range' | 'Txn', request: Buffer, deadline: number): Promise<Buffer> {
    const pool = this.pool;
    const once = (): Promise<Buffer> =>
      pool.withConnection(
        'KV',
        ({ client, metadata }) =>
          new Promise<Buffer>((resolve, reject) => {
            client.makeUnaryRequest(
              `/etcdserverpb.KV/${method}`,
              passBytes,
              passBytes,
              request,
              metadata,
              { deadline },
              (err, res) =>
                err || !res
                  ? reject(castGrpcError(err ?? new Error(`empty ${method} answer`)))
                  : resolve(res),
            );
          }),
      );
    try {
      return await once();
    } catch (e) {
      if (!(e instanceof EtcdInvalidAuthTokenError)) throw e;
      pool.authenticator.invalidateMetadata();
      return once();
    }
  }

  /** The etcd3 client's connection pool (see `EtcdPool`). */
  private get pool(): EtcdPool {
    return (this.client as unknown as { pool: EtcdPool }).pool;
  }

  /** Decodes an answer's bytes; a malformed answer fails the call for good, naming it. */
  private decodeAnswer<R>(op: string, subject: string, bytes: Buffer, decode: (b: Buffer) => R): R {
    try {
      return decode(bytes);
    } catch (e) {
      throw new StoreError(`etcd ${op} "${subject}": ${messageOf(e)}`, { retryable: false, cause: e });
    }
  }

  /** The key-value a transaction's get number `i` found, as a store entry. */
  private decodeGet<T>(res: Txn, i: number): Versioned<T> | undefined {
    const kv = res.gets[i];
    if (!kv) return undefined;
    return this.decodeAt<T>(res.bytes, kv.keyStart, kv.keyEnd, kv.valueStart, kv.valueEnd, kv.modRevision);
  }

  private decodeAt<T>(
    buf: Buffer,
    keyStart: number,
    keyEnd: number,
    valueStart: number,
    valueEnd: number,
    modRevision: string,
  ): Versioned<T> {
    const key = buf.toString('utf8', keyStart + this.prefixBytes, keyEnd);
    return { key, value: parseValue<T>(key, buf, valueStart, valueEnd), version: modRevision };
  }
}

/** A transaction's answer with the bytes its positions point into. */
type Txn = TxnAnswer & { bytes: Buffer };

const EMPTY = Buffer.alloc(0);
const WATCH_METHOD = '/etcdserverpb.Watch/Watch';
const passBytes = (b: Buffer): Buffer => b;

/**
 * The etcd3 client's connection pool, as far as the store's raw calls use it (etcd3 1.1:
 * `Namespace.pool`, protected there; `test/etcd` runs every call through it against a real cluster,
 * so a client without it fails the suite, not a user). `withConnection` picks a member, with the
 * authentication metadata; `markFailed` tells the pool a member's stream broke, as etcd3's own
 * watch does; `authenticator.invalidateMetadata` makes the next call ask etcd for a new token.
 */
interface EtcdPool {
  withConnection<R>(
    service: 'KV' | 'Watch',
    fn: (c: { resource: unknown; client: GrpcClient; metadata: unknown }) => Promise<R> | R,
  ): Promise<R>;
  markFailed(resource: unknown, error: Error): void;
  authenticator: { invalidateMetadata(): void };
}

/** A grpc-js client as the pool hands it out, called with bytes in and bytes out. */
interface GrpcClient {
  makeUnaryRequest(
    method: string,
    serialize: (b: Buffer) => Buffer,
    deserialize: (b: Buffer) => Buffer,
    argument: Buffer,
    metadata: unknown,
    options: { deadline: number },
    callback: (err: Error | null, res?: Buffer) => void,
  ): unknown;
  makeBidiStreamRequest(
    method: string,
    serialize: (b: Buffer) => Buffer,
    deserialize: (b: Buffer) => Buffer,
    metadata: unknown,
    options: object,
  ): WatchStream;
}

/** grpc-js's duplex stream of a `Watch/Watch` call, as the watcher uses it. */
interface WatchStream {
  readonly writable: boolean;
  on(event: 'data', fn: (b: Buffer) => void): this;
  on(event: 'error', fn: (e: Error) => void): this;
  on(event: 'end', fn: () => void): this;
  write(b: Buffer): boolean;
  end(): void;
  cancel(): void;
}

/** A page entry, its value parsed (`list`, `scan`). */
function toVersioned<T>(
  key: string,
  bytes: Buffer,
  start: number,
  end: number,
  version: string,
): Versioned<T> {
  return { key, value: parseValue<T>(key, bytes, start, end), version };
}

/** A page entry as its stored text (`scanText`). */
function toText(key: string, bytes: Buffer, start: number, end: number, version: string): StoredText {
  return { key, version, bytes, start, end };
}

/** @throws StoreError (not retryable) when the stored bytes are not JSON: someone else wrote them. */
function parseValue<T>(key: string, bytes: Buffer, start = 0, end = bytes.length): T {
  try {
    return decodeValue(key, bytes.toString('utf8', start, end)) as T;
  } catch (cause) {
    throw new StoreError(`etcd key "${key}" holds a value that is not JSON (${end - start} bytes)`, {
      retryable: false,
      cause,
    });
  }
}

interface WatchSpec {
  /** The store's current pool: read at each (re)connection, so a watch follows a client the store replaced. */
  pool: () => EtcdPool;
  /** The full etcd key prefix watched. */
  key: Buffer;
  /** Bytes of the store prefix to strip from event keys. */
  prefixLength: number;
  /** First revision to deliver; 0 for "from when etcd registers the watch". */
  from: bigint;
  onEvent: (ev: WatchEvent) => void;
  onReset: (() => void) | undefined;
  /** The store's counters of streams starting over. */
  restarts: WatchStats;
  onClose: (w: EtcdWatcher) => void;
}

/**
 * One watcher: its own etcd watch stream, reopened after every break from the revision after the
 * last one delivered. Events are delivered in etcd's commit order; a revision delivered once is
 * never delivered again.
 */
class EtcdWatcher implements Watcher {
  private readonly spec: WatchSpec;
  private stream: WatchStream | undefined;
  private closed = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Newest revision delivered: events at or below it are replays after a reconnect. */
  private delivered: bigint;
  /**
   * Where a new stream starts: every revision below it was delivered or, by a progress
   * notification, shown to hold nothing for this prefix.
   */
  private resumeFrom: bigint;

  constructor(spec: WatchSpec) {
    this.spec = spec;
    this.resumeFrom = spec.from;
    this.delivered = spec.from > 0n ? spec.from - 1n : 0n;
  }

  start(): void {
    this.connect();
  }

  get caughtUp(): string | undefined {
    return this.resumeFrom > 0n ? (this.resumeFrom - 1n).toString() : undefined;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.drop();
    this.spec.onClose(this);
  }

  private connect(): void {
    if (this.closed) return;
    const pool = this.spec.pool();
    pool
      .withConnection('Watch', ({ resource, client, metadata }) => {
        const stream = client.makeBidiStreamRequest(WATCH_METHOD, passBytes, passBytes, metadata, {});
        // As etcd3's own watch does: a stream that fails while still open counts against its member.
        stream.on('error', (e) => stream.writable && pool.markFailed(resource, castGrpcError(e)));
        return stream;
      })
      .then(
        (stream) => {
          stream.on('error', (e) => this.broken(stream, castGrpcError(e), 'broken'));
          stream.on('end', () => this.broken(stream, new Error('etcd ended the watch stream'), 'closed'));
          if (this.closed) {
            stream.cancel();
            return;
          }
          this.stream = stream;
          stream.on('data', (bytes) => this.receive(stream, bytes));
          stream.write(
            encodeWatchCreate({
              key: this.spec.key,
              rangeEnd: prefixEnd(this.spec.key),
              startRevision: this.resumeFrom,
              progressNotify: true,
            }),
          );
        },
        (e: unknown) => {
          if (this.closed) return;
          this.spec.restarts.broken++;
          this.retryLater(e);
        },
      );
  }

  private receive(stream: WatchStream, bytes: Buffer): void {
    if (stream !== this.stream || this.closed) return;
    let res: WatchAnswer;
    try {
      res = decodeWatchResponse(bytes);
    } catch (e) {
      // Not a message we can read: start a new stream where this one stood.
      this.drop();
      this.spec.restarts.broken++;
      this.retryLater(e);
      return;
    }
    if (res.canceled) {
      this.drop();
      const compacted = BigInt(res.compactRevision);
      if (compacted > 0n) {
        // The history from resumeFrom is gone: events were lost. Carry on from what etcd still has.
        this.resumeFrom = compacted;
        this.reset();
        this.connect();
      } else {
        this.reset();
        this.spec.restarts.broken++;
        // etcd cancels a watch whose token it no longer knows (expired, or the member restarted)
        // as "permission denied": the next stream asks for a new token.
        if (/permission denied|auth token/i.test(res.cancelReason))
          this.spec.pool().authenticator.invalidateMetadata();
        this.retryLater(new Error(`etcd cancelled the watch: ${res.cancelReason || 'no reason given'}`));
      }
      return;
    }
    if (res.created) {
      this.failures = 0;
      if (this.resumeFrom === 0n) {
        this.resumeFrom = BigInt(res.revision) + 1n;
        this.delivered = this.resumeFrom - 1n;
      }
      return;
    }
    if (res.events.length === 0) {
      // A progress notification: etcd sends it only to a watcher that has caught up to this revision.
      const next = BigInt(res.revision) + 1n;
      if (next > this.resumeFrom) this.resumeFrom = next;
      return;
    }
    // All events of one revision come in one response, so `delivered` moves once per response.
    let newest = this.delivered;
    for (const ev of res.events) {
      const rev = BigInt(ev.kv.modRevision);
      if (rev <= this.delivered) continue;
      if (rev > newest) newest = rev;
      this.deliver(bytes, ev);
      if (this.closed) return;
    }
    this.delivered = newest;
    if (newest + 1n > this.resumeFrom) this.resumeFrom = newest + 1n;
  }

  private deliver(bytes: Buffer, ev: WatchEventAt): void {
    const kv = ev.kv;
    const key = bytes.toString('utf8', kv.keyStart + this.spec.prefixLength, kv.keyEnd);
    let event: WatchEvent;
    if (ev.type === 'delete') {
      event = { type: 'delete', key, version: kv.modRevision };
    } else {
      try {
        const value = parseValue(key, bytes, kv.valueStart, kv.valueEnd);
        event = { type: 'put', key, value, version: kv.modRevision };
      } catch {
        // Not our JSON: the watcher cannot say what the key holds. A re-list reports the bad key.
        this.reset();
        return;
      }
    }
    try {
      this.spec.onEvent(event);
    } catch (e) {
      // A throwing listener is the caller's bug: surface it as an uncaught error, like an
      // EventEmitter would, without losing the rest of this response's events.
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private reset(): void {
    if (this.closed) return;
    this.spec.restarts.resync++;
    if (!this.spec.onReset) return;
    try {
      this.spec.onReset();
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private broken(stream: WatchStream, e: unknown, why: 'closed' | 'broken'): void {
    if (stream !== this.stream) return; // an old stream we dropped on purpose
    this.drop();
    if (e instanceof EtcdInvalidAuthTokenError) this.spec.pool().authenticator.invalidateMetadata();
    this.spec.restarts[why]++;
    this.retryLater(e);
  }

  /** Reconnects after a backoff; the error is why (kept for debugging, the watcher never gives up). */
  private retryLater(_e: unknown): void {
    if (this.closed) return;
    this.failures++;
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => this.connect(),
      backoff(this.failures, WATCH_RETRY_FIRST_MS, WATCH_RETRY_CAP_MS),
    );
  }

  private drop(): void {
    const s = this.stream;
    this.stream = undefined;
    if (!s) return;
    // Half-close first: etcd3 treats an error on a still-writable stream as a member failure and
    // resets that member's connections, which our own cancel must not do.
    s.end();
    s.cancel();
  }
}

/**
 * Opens the store at `url` (`etcd://host:port[,host:port...][/prefix]`) and checks that the cluster
 * answers a read within the deadline. `opts.prefix` wins over the URL's prefix.
 * @throws IpamError INVALID_CONFIG for a malformed URL, prefix or timeout.
 * @throws StoreError (retryable) when no member answers within the deadline.
 */
export async function openEtcdStore(url: string, opts: EtcdStoreOptions = {}): Promise<Store> {
  const parsed = parseEtcdUrl(url);
  const store = new EtcdStore(parsed.hosts, { ...opts, prefix: opts.prefix ?? parsed.prefix });
  try {
    // Also learns the current revision, so the first watch starts right after it.
    await store.get('ipkeeper/open-check');
  } catch (e) {
    await store.close();
    const hint = e instanceof StoreError ? openHint(e.message, opts, store.prefix) : undefined;
    throw hint && e instanceof StoreError
      ? new StoreError(`${e.message.trimEnd()}: ${hint}`, { retryable: e.retryable, cause: e })
      : e;
  }
  return store;
}

/**
 * What to change when the first call fails for a reason of TLS or authentication, read from the
 * error etcd or gRPC gave (their own words stay in the message); undefined for anything else.
 */
export function openHint(
  message: string,
  opts: Pick<EtcdStoreOptions, 'tls' | 'auth'>,
  prefix: string,
): string | undefined {
  if (/alert bad certificate|alert certificate required|certificate required/i.test(message)) {
    return opts.tls?.cert
      ? "etcd refused this client's certificate: give an --etcd-cert (and its --etcd-key) signed by a CA in the members' --trusted-ca-file"
      : 'etcd asks its clients for a certificate (--client-cert-auth): give --etcd-cert and --etcd-key';
  }
  if (
    /unable to verify|self[- ]signed certificate|certificate has expired|certificate verify failed|Hostname\/IP does not match/i.test(
      message,
    )
  ) {
    return opts.tls?.ca
      ? "the members' certificate is not one --etcd-cacert vouches for: give the CA certificate that signed the members' --cert-file (and a certificate naming the address in the store URL)"
      : "the members' certificate does not chain to this system's roots: give the CA that signed it with --etcd-cacert";
  }
  if (
    opts.tls &&
    /before secure TLS connection was established|wrong version number|packet length too long/i.test(message)
  ) {
    return "the members do not answer TLS on that port: drop the --etcd-cacert/--etcd-cert/--etcd-key flags, or name the members' client port that serves TLS";
  }
  if (!opts.tls && /No connection established/.test(message)) {
    return 'if the members serve TLS (https:// client URLs), give --etcd-cacert (and --etcd-cert/--etcd-key when they ask for a client certificate)';
  }
  if (/authentication failed|invalid user ID or password/i.test(message)) {
    return `etcd did not accept user "${opts.auth?.username ?? ''}" with that password: check --etcd-user and the password (${ETCD_PASSWORD_ENV} or --etcd-password-file)`;
  }
  if (/user name is empty|token is not provided|invalid auth token/i.test(message)) {
    return `authentication is enabled on this etcd: give --etcd-user and its password (${ETCD_PASSWORD_ENV} or --etcd-password-file)`;
  }
  if (/permission denied/i.test(message)) {
    return `user "${opts.auth?.username ?? 'root'}" may not read or write the store's keys: grant it a role with readwrite on the prefix ${prefix} (etcdctl role grant-permission ROLE --prefix readwrite ${prefix})`;
  }
  return undefined;
}
