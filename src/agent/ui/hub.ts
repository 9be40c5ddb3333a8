/**
 * @module agent/ui/hub
 * What the operator pages and commands of one agent share: the recent-events ring, and the live
 * streams of the pool map page (Server-Sent Events on `GET /v1/events`).
 *
 * Why SSE and not polling: the page learns of a change when it happens (no up-to-1 s lag, which
 * matters when watching a pod start), an idle page costs nothing (no request per second per open
 * tab against a map that may be large), and `EventSource` reconnects by itself. The stream only
 * says "changed"; the page then fetches `/v1/map` — one source of truth for what it draws, and a
 * burst of changes (a rollout) costs one fetch per `PUSH_COALESCE_MS`, not one per address.
 *
 * Changes come from the events ring (this agent's allocations, releases, reclaims, errors; on the
 * controller, the cluster's claim changes, GC releases and reconcile errors) and from a store watch on pools, reservations and claims (other agents, `ipkeeper apply`). The watch runs
 * only while a page is open.
 */
import type { ServerResponse } from 'node:http';
import type { Store, Watcher } from '../../store/store.ts';
import type { Ipam } from '../../ipam/engine.ts';
import { CLAIM_PREFIX, POOL_PREFIX, RESERVED_PREFIX } from '../../ipam/state.ts';
import { NODE_DEAD_MS } from '../../ipam/reclaim.ts';
import { EventRing } from './events.ts';

/** Changes within this window reach the page as one message. */
export const PUSH_COALESCE_MS = 50;
/** A comment line this often keeps proxies and idle timers from closing a quiet stream. */
export const HEARTBEAT_MS = 20_000;

export interface UiHubOptions {
  ipam: Ipam;
  store: Store;
  node: string;
  nodeDeadMs?: number;
  now?: () => number;
  /**
   * The recent-events ring to show and push; default a new one. The controller passes the ring its
   * claims watch, GC and reconcilers write to (src/controller/cache.ts), which outlives any page.
   */
  events?: EventRing;
}

export class UiHub {
  readonly events: EventRing;
  readonly ipam: Ipam;
  readonly store: Store;
  readonly node: string;
  readonly nodeDeadMs: number;
  readonly now: () => number;
  private readonly clients = new Set<ServerResponse>();
  private watchers: Watcher[] = [];
  private pending: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private changes = 0;

  constructor(opts: UiHubOptions) {
    this.ipam = opts.ipam;
    this.store = opts.store;
    this.node = opts.node;
    this.nodeDeadMs = opts.nodeDeadMs ?? NODE_DEAD_MS;
    this.now = opts.now ?? Date.now;
    this.events = opts.events ?? new EventRing(undefined, this.now);
    this.events.subscribe(() => this.changed());
  }

  /** Open live streams (for tests and status). */
  get streams(): number {
    return this.clients.size;
  }

  /** Starts a live stream on `res` (headers not yet sent); it ends when the client goes. */
  openStream(res: ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-content-type-options': 'nosniff',
    });
    // `retry`: how long EventSource waits before reconnecting after the agent restarts.
    res.write(
      `retry: 2000\nevent: hello\ndata: ${JSON.stringify({ node: this.node, changes: this.changes })}\n\n`,
    );
    this.clients.add(res);
    const drop = (): void => this.drop(res);
    res.on('close', drop);
    res.on('error', drop);
    if (this.clients.size === 1) this.startWatching();
  }

  private drop(res: ServerResponse): void {
    if (!this.clients.delete(res)) return;
    if (this.clients.size === 0) this.stopWatching();
  }

  private startWatching(): void {
    for (const prefix of [POOL_PREFIX, RESERVED_PREFIX, CLAIM_PREFIX]) {
      this.watchers.push(
        this.store.watch(
          prefix,
          () => this.changed(),
          () => this.changed(),
        ),
      );
    }
    this.heartbeat = setInterval(() => this.send(': ping\n\n'), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  private stopWatching(): void {
    for (const w of this.watchers.splice(0)) w.close();
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
  }

  /** Something the map shows changed: tell the pages, once per coalescing window. */
  changed(): void {
    if (this.clients.size === 0 || this.pending) return;
    // The wait also lets the engine's own watch apply a store event before the page re-reads the
    // cache: both watches hear of a change at about the same time, in no promised order.
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this.changes++;
      this.send(`event: change\ndata: ${JSON.stringify({ changes: this.changes })}\n\n`);
    }, PUSH_COALESCE_MS);
    this.pending.unref();
  }

  private send(text: string): void {
    for (const res of this.clients) {
      if (res.destroyed || res.writableEnded) this.drop(res);
      else res.write(text);
    }
  }

  /** Ends every live stream (the agent is closing: an open stream would hold the server open). */
  close(): void {
    for (const res of [...this.clients]) {
      this.drop(res);
      res.end();
    }
    this.stopWatching();
  }
}
