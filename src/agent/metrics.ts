/**
 * @module agent/metrics
 * Prometheus metrics of one agent, on its own registry (so several agents can live in one process in
 * tests). Names follow `ipkeeper_<noun>_<unit|total>`.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Ipam } from '../ipam/engine.ts';
import type { Store } from '../store/store.ts';

export interface AgentMetrics {
  registry: Registry;
  requests: Counter<'command' | 'result'>;
  duration: Histogram<'command' | 'result'>;
  errors: Counter<'code'>;
  reclaimed: Counter<'source'>;
}

export function createMetrics(
  ipam: Ipam,
  opts: { defaultMetrics?: boolean; store?: Store } = {},
): AgentMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'ipkeeper_' });
  const requests = new Counter({
    name: 'ipkeeper_cni_requests_total',
    help: 'CNI requests served by the agent, by command and result (ok or an error code)',
    labelNames: ['command', 'result'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'ipkeeper_cni_request_duration_seconds',
    help: 'Time the agent spent on a CNI request, by command and result',
    labelNames: ['command', 'result'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'ipkeeper_errors_total',
    help: 'Errors answered by the agent, by error code',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  const poolAddresses = new Gauge({
    name: 'ipkeeper_pool_addresses',
    help: 'Addresses of each pool by state: total, used, reserved, free',
    labelNames: ['pool', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const p of ipam.usage()) {
        this.set({ pool: p.name, state: 'total' }, p.total);
        this.set({ pool: p.name, state: 'used' }, p.used);
        this.set({ pool: p.name, state: 'reserved' }, p.reserved);
        this.set({ pool: p.name, state: 'free' }, p.free);
      }
    },
  });
  void poolAddresses;
  const claims = new Gauge({
    name: 'ipkeeper_claims',
    help: 'Claims (held addresses) known to this agent',
    registers: [registry],
    collect() {
      this.set(ipam.state.claims.size);
    },
  });
  void claims;
  const ready = new Gauge({
    name: 'ipkeeper_ready',
    help: '1 when the agent has loaded its store and serves requests',
    registers: [registry],
    collect() {
      this.set(ipam.ready ? 1 : 0);
    },
  });
  void ready;
  const counters: [string, string, keyof Ipam['stats']][] = [
    [
      'ipkeeper_claim_races_lost_total',
      'Claim creates lost to another owner of the address (another agent was first)',
      'racesLost',
    ],
    [
      'ipkeeper_store_errors_total',
      'Store calls that failed; the request was answered "try again"',
      'storeErrors',
    ],
    [
      'ipkeeper_store_uncertain_writes_total',
      'Store writes whose outcome was unknown, read back on the next request',
      'uncertainWrites',
    ],
    ['ipkeeper_gc_released_total', 'Claims released by CNI GC', 'gcReleased'],
  ];
  for (const [name, help, field] of counters) {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(ipam.stats[field]);
      },
    });
  }
  storeWatchMetrics(registry, opts.store);
  const reclaimed = new Counter({
    name: 'ipkeeper_reclaimed_total',
    help: 'Leaked claims released by the reclaimer after their grace period, by leak source',
    labelNames: ['source'] as const,
    registers: [registry],
  });
  return { registry, requests, duration, errors, reclaimed };
}

/**
 * The store's watches starting over (kubernetes, etcd), on `registry`; nothing for a store without
 * `watchStats`. A steady rise of `closed` under load is the API server dropping watchers it cannot
 * feed; a resync is a full read of the store. Shared by the agent and the controller.
 */
export function storeWatchMetrics(registry: Registry, store: Store | undefined): void {
  if (!store?.watchStats) return;
  const stats = store.watchStats.bind(store);
  new Counter({
    name: 'ipkeeper_store_watch_restarts_total',
    help: 'Store watch streams opened again, by reason: closed (the server ended a working stream: its timeout, or it dropped a watcher that fell behind), broken (the stream failed or could not be opened; retried after a backoff)',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const s = stats();
      this.inc({ reason: 'closed' }, s.closed);
      this.inc({ reason: 'broken' }, s.broken);
    },
  });
  new Counter({
    name: 'ipkeeper_store_watch_resyncs_total',
    help: 'Times a store watch found the history it needed gone (compacted, or no longer in the API server watch cache), so everything was read again',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(stats().resync);
    },
  });
}
