/**
 * @module agent/node-pool
 * The agent's node-pool mode (`ipkeeper agent --node-pool`, seed 004): the engine allocates only
 * from this node's `NodePool` (through `NodePoolStore`, src/ipam/node-pool.ts); this part reports
 * readiness — not ready, with the reason, until spec.pool lists one address (two with
 * `--node-pool-health-check`), logged as Cilium logs it — and writes `status.used`, batched and
 * throttled by `StatusThrottle` (at most once per `--node-pool-status-interval`, 15 s by default).
 *
 * Errors: none thrown; a failed status write is logged and retried after one interval.
 */
import { parseDuration } from './duration.ts';
import type { Store } from '../store/store.ts';
import { mutate } from '../store/retry.ts';
import type { NodePool } from '../api/kinds.ts';
import type { IpamState } from '../ipam/state.ts';
import {
  NODE_POOL_STATUS_INTERVAL_MS,
  NodePoolStore,
  StatusThrottle,
  nodePoolReadiness,
  nodePoolUsed,
} from '../ipam/node-pool.ts';

export interface NodePoolAgentOptions {
  /** The real store (status writes go there). */
  store: Store;
  node: string;
  statusIntervalMs?: number;
  /** The node health-checks with an address of its pool: readiness needs two. */
  healthCheck?: boolean;
  log: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
  clock?: { now(): number };
  /** Scheduler (tests inject one); default setTimeout, unref'd. */
  schedule?: (fn: () => void, ms: number) => { cancel(): void };
}

export class NodePoolAgent {
  /** Give this to the engine: it sees only this node's pool. */
  readonly store: NodePoolStore;
  private readonly real: Store;
  private readonly node: string;
  private readonly healthCheck: boolean;
  private readonly log: NodePoolAgentOptions['log'];
  private readonly clock: { now(): number };
  private readonly throttle: StatusThrottle;
  private readonly schedule: NonNullable<NodePoolAgentOptions['schedule']>;
  private state: IpamState | undefined;
  private timer: { cancel(): void } | undefined;
  private lastReason: string | undefined = '';
  private closed = false;
  /** The write in flight, so tests and close can wait for it. */
  private flushing: Promise<void> | undefined;

  constructor(opts: NodePoolAgentOptions) {
    this.real = opts.store;
    this.node = opts.node;
    this.healthCheck = opts.healthCheck === true;
    this.log = opts.log;
    this.clock = opts.clock ?? { now: Date.now };
    this.throttle = new StatusThrottle(opts.statusIntervalMs ?? NODE_POOL_STATUS_INTERVAL_MS, this.clock);
    this.schedule =
      opts.schedule ??
      ((fn, ms) => {
        const t = setTimeout(fn, ms);
        t.unref();
        return { cancel: () => clearTimeout(t) };
      });
    this.store = new NodePoolStore(opts.store, opts.node);
    this.store.onNodePool(() => {
      this.logReadiness();
      this.changed();
    });
    this.store.onClaimEvent(() => this.changed());
  }

  /** After the engine has loaded: writes the first status now, then on every change, throttled. */
  start(state: IpamState): void {
    this.state = state;
    this.logReadiness();
    this.changed();
  }

  readiness(): { ready: true } | { ready: false; reason: string } {
    return nodePoolReadiness(this.node, this.store.nodePool(), this.healthCheck);
  }

  private logReadiness(): void {
    const r = this.readiness();
    const reason = r.ready ? undefined : r.reason;
    if (reason === this.lastReason) return;
    this.lastReason = reason;
    if (reason) this.log.warn({ subsys: 'ipam', nodePool: this.node }, reason);
    else {
      const n = Object.keys(this.store.nodePool()?.spec.pool ?? {}).length;
      this.log.info(
        { subsys: 'ipam', nodePool: this.node, addresses: n },
        `NodePool '${this.node}' has ${n} address(es): ready`,
      );
    }
  }

  private changed(): void {
    if (this.closed || !this.state) return;
    const delay = this.throttle.mark();
    if (delay === undefined) return;
    this.timer = this.schedule(() => {
      this.timer = undefined;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
      });
    }, delay);
  }

  /** Writes status.used if it differs from what is stored. Never throws. */
  private async flush(): Promise<void> {
    const state = this.state;
    if (!state || this.closed) return;
    this.throttle.flushing();
    try {
      const key = this.store.key;
      await mutate<NodePool>(this.real, key, (cur) => {
        // No NodePool, nothing to report on (an operator creates it; the agent never does).
        if (!cur) return cur;
        const used = nodePoolUsed(state, cur, this.node);
        // An empty status.used is written too: it tells the operator the agent serves this pool.
        if (cur.status?.used !== undefined && JSON.stringify(cur.status.used) === JSON.stringify(used))
          return cur;
        return { ...cur, status: { used, updatedAt: new Date(this.clock.now()).toISOString() } };
      });
    } catch (e) {
      this.log.warn(
        { err: String(e), nodePool: this.node },
        'could not write NodePool status; retrying after one interval',
      );
      this.changed();
    }
  }

  /** Waits for a status write in flight (tests, shutdown). */
  async idle(): Promise<void> {
    await this.flushing;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.timer?.cancel();
    await this.flushing;
  }
}

/**
 * Parses `--node-pool-status-interval`: `15s`, `500ms`, `1m`, or a whole number of milliseconds.
 * @throws IpamError INVALID_CONFIG naming the flag and the accepted forms (`parseDuration`).
 */
export function parseStatusInterval(v: string): number {
  return parseDuration('--node-pool-status-interval', v, 1);
}
