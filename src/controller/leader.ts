/**
 * @module controller/leader
 * Leader election with a `coordination.k8s.io/v1` Lease, the way client-go's leaderelection does it,
 * so `kubectl get lease` reads the same for ipkeeper as for kube-controller-manager:
 *
 *   spec.holderIdentity        who leads ("" after a clean release: anyone may take it at once)
 *   spec.leaseDurationSeconds  how long a holder that stops renewing keeps the lease (default 15)
 *   spec.acquireTime           when the current holder took it
 *   spec.renewTime             the holder's last renewal
 *   spec.leaseTransitions      how often the holder changed
 *
 * Every write is a PUT with the resourceVersion read as precondition (or a create-if-absent), so of
 * two candidates racing for an expired lease exactly one wins; the other sees 409 and re-reads.
 *
 * Expiry is judged on the candidate's own clock, never on `renewTime` (the holder's clock): a
 * candidate notes when it last saw the record change and only takes the lease over after a full
 * `leaseDuration` without change. So clock skew between replicas cannot hand the lease to two of
 * them; the cost is that a standby that has just started waits one duration before taking over from
 * a leader that crashed.
 *
 * The leader renews every `retryPeriod` (2 s). When renewals keep failing (API server unreachable,
 * 409s) past `renewDeadline` (2/3 of the duration, 10 s by default — before anyone else may take
 * over), or when it finds another holder in the record, it steps down (`onStoppedLeading`) and
 * campaigns again. `stop()` releases the lease (holderIdentity "") so a standby takes over on its
 * next try instead of after a full duration.
 *
 * `step()` is one read-and-maybe-write with no timers, so the state machine is tested with a
 * manual clock and an in-memory `LeaseClient` (leader.test.ts); `start()` runs it on a timer.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { ControllerLogger } from './context.ts';
import { kubeJson, replyMessage } from './kube.ts';

export const DEFAULT_LEASE_NAME = 'ipkeeper-controller';
export const DEFAULT_LEASE_DURATION_S = 15;
/** How often the leader renews and a standby retries. */
export const DEFAULT_RETRY_PERIOD_MS = 2_000;

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface LeaseRead {
  spec: LeaseSpec;
  version: string;
}

/** Where the lease lives. `ok: false` is a lost race (conflict, already exists, gone), not a failure. */
export interface LeaseClient {
  /** The lease, or undefined when it does not exist. @throws Error on a real failure. */
  get(): Promise<LeaseRead | undefined>;
  /** Create-if-absent. @throws Error on a real failure. */
  create(spec: LeaseSpec): Promise<{ ok: true; version: string } | { ok: false }>;
  /** Replace if the version still matches. @throws Error on a real failure. */
  update(spec: LeaseSpec, version: string): Promise<{ ok: true; version: string } | { ok: false }>;
  /** Where the lease is, for logs: `namespace/name`. */
  readonly where: string;
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits (Go parses it with that layout). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

interface KubeLease {
  metadata?: { resourceVersion?: string };
  spec?: LeaseSpec;
}

/** The Lease `namespace/name` through the API server. */
export function kubeLeaseClient(kc: KubeConfig, namespace: string, name: string): LeaseClient {
  const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  const body = (spec: LeaseSpec, version?: string) => ({
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(version ? { resourceVersion: version } : {}) },
    spec,
  });
  const fail = (op: string, r: { status: number; body: unknown }): Error =>
    new Error(`lease ${namespace}/${name}: ${op} failed: ${replyMessage(r)}`);
  return {
    where: `${namespace}/${name}`,
    async get() {
      const r = await kubeJson(kc, 'GET', `${base}/${encodeURIComponent(name)}`);
      if (r.status === 404) return undefined;
      if (r.status !== 200) throw fail('GET', r);
      const l = r.body as KubeLease;
      return { spec: l.spec ?? {}, version: String(l.metadata?.resourceVersion) };
    },
    async create(spec) {
      const r = await kubeJson(kc, 'POST', base, body(spec));
      if (r.status === 409) return { ok: false };
      if (r.status !== 201 && r.status !== 200) throw fail('POST', r);
      return { ok: true, version: String((r.body as KubeLease).metadata?.resourceVersion) };
    },
    async update(spec, version) {
      const r = await kubeJson(kc, 'PUT', `${base}/${encodeURIComponent(name)}`, body(spec, version));
      if (r.status === 409 || r.status === 404) return { ok: false };
      if (r.status !== 200) throw fail('PUT', r);
      return { ok: true, version: String((r.body as KubeLease).metadata?.resourceVersion) };
    },
  };
}

/** An in-process lease for tests: versions from one counter, like a store's revisions. */
export class MemoryLeaseClient implements LeaseClient {
  readonly where = 'memory/lease';
  private current: LeaseRead | undefined;
  private revision = 0;
  /** Makes every call fail, as an unreachable API server would. */
  down = false;

  async get(): Promise<LeaseRead | undefined> {
    this.check();
    return this.current && { spec: { ...this.current.spec }, version: this.current.version };
  }
  async create(spec: LeaseSpec): Promise<{ ok: true; version: string } | { ok: false }> {
    this.check();
    if (this.current) return { ok: false };
    this.current = { spec: { ...spec }, version: String(++this.revision) };
    return { ok: true, version: this.current.version };
  }
  async update(spec: LeaseSpec, version: string): Promise<{ ok: true; version: string } | { ok: false }> {
    this.check();
    if (!this.current || this.current.version !== version) return { ok: false };
    this.current = { spec: { ...spec }, version: String(++this.revision) };
    return { ok: true, version: this.current.version };
  }
  private check(): void {
    if (this.down) throw new Error('lease backend unreachable');
  }
}

export interface LeaderElectorOptions {
  client: LeaseClient;
  identity: string;
  leaseDurationS?: number;
  /** Default 2/3 of the lease duration. Must be below it. */
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  now?: () => number;
  log?: ControllerLogger;
  /** Called when this candidate becomes leader. May be async; a rejection is logged. */
  onStartedLeading?: () => void | Promise<void>;
  /** Called when it stops leading (lost, renewals failed past the deadline, or `stop()`). */
  onStoppedLeading?: () => void | Promise<void>;
}

const silent: ControllerLogger = { debug() {}, info() {}, warn() {}, error() {} };

export class LeaderElector {
  readonly identity: string;
  readonly leaseDurationS: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  private readonly client: LeaseClient;
  private readonly now: () => number;
  private readonly log: ControllerLogger;
  private readonly opts: LeaderElectorOptions;
  private leading = false;
  /** Local time of our last successful acquire/renew. */
  private renewedAt = 0;
  /** The last record seen, its version, and when (local clock) it was first seen as it is. */
  private observed: LeaseRead | undefined;
  private observedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** Serializes step() and release(): the timer loop and stop() must not interleave writes. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts;
    this.client = opts.client;
    this.identity = opts.identity;
    this.leaseDurationS = opts.leaseDurationS ?? DEFAULT_LEASE_DURATION_S;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? Math.floor((this.leaseDurationS * 1000 * 2) / 3);
    this.retryPeriodMs = opts.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS;
    this.now = opts.now ?? (() => Date.now());
    this.log = opts.log ?? silent;
    if (!this.identity) throw new Error('leader election: the identity must not be empty');
    if (!Number.isInteger(this.leaseDurationS) || this.leaseDurationS < 1) {
      throw new Error(
        `leader election: leaseDurationSeconds ${this.leaseDurationS} must be a whole number of at least 1`,
      );
    }
    if (this.renewDeadlineMs >= this.leaseDurationS * 1000) {
      throw new Error(
        `leader election: the renew deadline (${this.renewDeadlineMs} ms) must be below the lease duration (${this.leaseDurationS} s), or two replicas could lead at once`,
      );
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The holder in the last record seen ("" or undefined: nobody). */
  get observedHolder(): string | undefined {
    return this.observed?.spec.holderIdentity;
  }

  /**
   * One attempt: read the lease; renew it when we hold it, take it when it is free or expired (by our
   * clock), else note who holds it. Steps down when another holder is seen or renewals have failed
   * past the renew deadline. Never throws: a failure is logged and counts against the deadline.
   * @returns whether this candidate leads afterwards.
   */
  step(): Promise<boolean> {
    const run = this.chain.then(() => this.stepLocked());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async stepLocked(): Promise<boolean> {
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (e) {
      this.log.warn({ err: String(e), lease: this.client.where }, 'lease read or write failed');
    }
    if (ok) {
      this.renewedAt = this.now();
      if (!this.leading) {
        this.leading = true;
        this.log.info({ lease: this.client.where, identity: this.identity }, 'became leader');
        await this.callback('onStartedLeading');
      }
    } else if (this.leading) {
      const lost = this.observed !== undefined && this.observed.spec.holderIdentity !== this.identity;
      if (lost || this.now() - this.renewedAt >= this.renewDeadlineMs) {
        this.leading = false;
        this.log.warn(
          { lease: this.client.where, identity: this.identity, holder: this.observed?.spec.holderIdentity },
          lost
            ? 'lost the lease to another holder'
            : 'could not renew the lease before the deadline; stepping down',
        );
        await this.callback('onStoppedLeading');
      }
    }
    return this.leading;
  }

  private async callback(name: 'onStartedLeading' | 'onStoppedLeading'): Promise<void> {
    try {
      await this.opts[name]?.();
    } catch (e) {
      // The callback's own failure must not wedge the election; it is the caller's to report.
      this.log.error({ err: String(e) }, `${name} failed`);
    }
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const now = this.now();
    const mine = (prev: LeaseSpec | undefined): LeaseSpec => {
      const held = prev?.holderIdentity === this.identity;
      return {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.leaseDurationS,
        acquireTime: held && prev?.acquireTime ? prev.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: held ? (prev?.leaseTransitions ?? 0) : (prev?.leaseTransitions ?? -1) + 1,
      };
    };
    const cur = await this.client.get();
    if (!cur) {
      const r = await this.client.create(mine(undefined));
      if (!r.ok) return false;
      this.observe({ spec: mine(undefined), version: r.version }, now);
      return true;
    }
    this.observe(cur, now);
    const holder = cur.spec.holderIdentity ?? '';
    if (holder !== '' && holder !== this.identity) {
      const durationMs = (cur.spec.leaseDurationSeconds ?? this.leaseDurationS) * 1000;
      if (now < this.observedAt + durationMs) return false;
      this.log.info({ lease: this.client.where, holder }, 'the lease expired; taking it over');
    }
    const next = mine(cur.spec);
    const r = await this.client.update(next, cur.version);
    if (!r.ok) return false;
    this.observe({ spec: next, version: r.version }, now);
    return true;
  }

  /** Notes a record; the expiry clock restarts only when the record changed. */
  private observe(read: LeaseRead, now: number): void {
    if (!this.observed || this.observed.version !== read.version) {
      this.observed = read;
      this.observedAt = now;
    }
  }

  /**
   * Gives the lease up if we hold it: holderIdentity "" so the next candidate takes it at once.
   * Never throws (a failed release only means the standby waits one lease duration).
   */
  release(): Promise<void> {
    const run = this.chain.then(async () => {
      const wasLeading = this.leading;
      this.leading = false;
      try {
        const cur = await this.client.get();
        if (cur && cur.spec.holderIdentity === this.identity) {
          const r = await this.client.update(
            { ...cur.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(this.now()) },
            cur.version,
          );
          if (r.ok) this.log.info({ lease: this.client.where }, 'released the lease');
        }
      } catch (e) {
        this.log.warn(
          { err: String(e), lease: this.client.where },
          'could not release the lease; a standby takes over when it expires',
        );
      }
      if (wasLeading) await this.callback('onStoppedLeading');
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Campaigns and renews every `retryPeriod` until `stop()`. Resolves at once. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        await this.step();
        if (!this.running) break;
        // A standby retries with jitter so replicas do not march in step (client-go: factor 1.2).
        const wait = this.leading ? this.retryPeriodMs : this.retryPeriodMs * (1 + Math.random() * 0.2);
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          this.timer = setTimeout(resolve, wait);
        });
      }
    })();
  }

  /** Stops campaigning and releases the lease if held (onStoppedLeading runs). Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    await this.loop;
    await this.release();
  }
}
