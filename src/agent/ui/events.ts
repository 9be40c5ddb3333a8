/**
 * @module agent/ui/events
 * The agent's recent events: the last `EVENT_LIMIT` allocations, releases, reclaims and failed
 * requests, for the pool map page (`GET /v1/map`, pushed live on `GET /v1/events`). Held in memory
 * only — it answers "what just happened on this node", it is not an audit log (the pino log is).
 *
 * Events enter from three places: the CNI routes (`routes.ts` hooks the answers of `/v1/cni/*`),
 * the leak reclaimer's log lines (`tee`), and the operator release route. The controller's page
 * uses the same ring, fed by its claims watch, GC and reconcilers (src/controller/cache.ts).
 */
import type { Logger } from '../../ipam/engine.ts';

export const EVENT_LIMIT = 50;

/** What happened. New kinds may be added; the page shows unknown kinds as plain text. */
export type EventKind = 'allocate' | 'release' | 'gc' | 'reclaim' | 'operator-release' | 'error';

export interface AgentEvent {
  /** Increases by one per event in this agent's life. */
  seq: number;
  /** RFC 3339 time. */
  at: string;
  kind: EventKind;
  /** One line for people: what, which addresses, whose. */
  message: string;
  /** The CNI command (`ADD`, `DEL`, ...) for CNI events. */
  command?: string;
  network?: string;
  pod?: string;
  containerId?: string;
  ifName?: string;
  /** The node of the attachment (controller events: the claim's `spec.node`). */
  node?: string;
  ips?: string[];
  pools?: string[];
  /** The error code of an `error` event. */
  code?: string;
  /** How many times in a row this same event happened (a runtime retrying a failing STATUS). */
  repeats?: number;
}

export type NewEvent = Omit<AgentEvent, 'seq' | 'at'>;

export class EventRing {
  private readonly items: AgentEvent[] = [];
  private readonly listeners = new Set<(e: AgentEvent) => void>();
  private seq = 0;
  private readonly limit: number;
  private readonly now: () => number;

  constructor(limit = EVENT_LIMIT, now: () => number = Date.now) {
    this.limit = limit;
    this.now = now;
  }

  /**
   * Records an event, dropping the oldest beyond the limit, and tells the listeners. An error equal
   * to the newest event (same command, code and message) only counts up that event's `repeats`, so
   * a runtime retrying one failing request does not push everything else out of the ring.
   */
  push(e: NewEvent): AgentEvent {
    const last = this.items[this.items.length - 1];
    let ev: AgentEvent;
    if (
      last &&
      e.kind === 'error' &&
      last.kind === 'error' &&
      last.command === e.command &&
      last.code === e.code &&
      last.message === e.message
    ) {
      last.repeats = (last.repeats ?? 1) + 1;
      last.at = new Date(this.now()).toISOString();
      last.seq = ++this.seq;
      ev = last;
    } else {
      ev = { seq: ++this.seq, at: new Date(this.now()).toISOString(), ...e };
      this.items.push(ev);
      if (this.items.length > this.limit) this.items.splice(0, this.items.length - this.limit);
    }
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch {
        // A listener is a page's live stream; its failure must never fail the request that made
        // the event (an allocation already committed to the store).
      }
    }
    return ev;
  }

  /** The held events, newest first. */
  recent(): AgentEvent[] {
    return this.items.slice().reverse();
  }

  /** Calls `fn` for every later event; returns the unsubscribe function. */
  subscribe(fn: (e: AgentEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * A logger that writes to `log` and also records the lines that carry one of `kinds` as their
   * `event` field (`reclaim`, `gc`, ...). The engine and the reclaimer log what they change; this
   * turns those lines into events without a second reporting path through them.
   */
  tee(log: Logger, kinds: readonly EventKind[]): Logger {
    const record = (obj: object, msg?: string): void => {
      const o = obj as Record<string, unknown>;
      const kind = o.event;
      if (typeof kind !== 'string' || !(kinds as readonly string[]).includes(kind)) return;
      const ip = typeof o.ip === 'string' ? o.ip : undefined;
      const pool = typeof o.pool === 'string' ? o.pool : undefined;
      const reason = typeof o.reason === 'string' ? o.reason : undefined;
      this.push({
        kind: kind as EventKind,
        message: [msg ?? kind, ip, pool ? `(pool ${pool})` : undefined, reason ? `— ${reason}` : undefined]
          .filter((x) => x !== undefined)
          .join(' '),
        ...(ip ? { ips: [ip] } : {}),
        ...(pool ? { pools: [pool] } : {}),
        ...(typeof o.network === 'string' ? { network: o.network } : {}),
      });
    };
    return {
      info: (obj, msg) => {
        log.info(obj, msg);
        record(obj, msg);
      },
      warn: (obj, msg) => {
        log.warn(obj, msg);
        record(obj, msg);
      },
      error: (obj, msg) => {
        log.error(obj, msg);
        record(obj, msg);
      },
    };
  }
}
