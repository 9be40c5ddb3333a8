/**
 * @module controller/main
 * `ipkeeper controller`: one replica of the cluster controller (Kubernetes mode).
 *
 * Every replica
 *   - opens the `kubernetes` store and builds the `ControllerContext`,
 *   - serves the validating admission webhook over TLS (`--webhook-listen`, default 0.0.0.0:9443)
 *     with a certificate from `--webhook-cert-dir` or one it makes itself, and puts its CA into the
 *     ValidatingWebhookConfiguration it owns (webhook-config.ts),
 *   - campaigns for the Lease `--lease-name` in `--namespace`;
 * the leader alone runs the reconcilers (`RECONCILERS`), started in list order when it wins the
 * lease and stopped in reverse order when it loses it. Reconcilers start in the background, so a
 * slow first list never holds up lease renewals.
 *
 * `--listen` serves /healthz (the process is alive), /readyz (the store is open, the webhook serves
 * and — on the leader — the reconcilers have synced; a standby is ready too: it serves admission) and
 * /metrics, and the live pool map page of the agent (src/agent/ui/: `GET /`, `/v1/map`, SSE
 * `/v1/events`) drawn from the controller's claims/pools cache (src/controller/cache.ts) — the same
 * page, the whole cluster. Its "recent events" are the cluster's: claims made, re-owned and deleted
 * (seen on the claims watch), GC releases and failed reconcile passes (src/controller/cache.ts).
 * That cache is taken on the first page request, not at start: a standby
 * nobody looks at holds no copy of every claim. Logs are pino JSON on stderr. `close()` (SIGTERM) stops the reconcilers, releases the
 * lease so a standby takes over at once, and stops the servers.
 *
 * Namespace: `--namespace`, else $POD_NAMESPACE (the Downward API), else the service account's
 * namespace file when running in a pod, else `ipkeeper-system`.
 */
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { hostname } from 'node:os';
import pino from 'pino';
import { IpamError, isIpamError } from '../errors.ts';
import type { Store } from '../store/store.ts';
import type { OpenStoreOptions } from '../store/open.ts';
import { makeContext, type ControllerContext, type Reconciler } from './context.ts';
import { RECONCILERS } from './reconcilers.ts';
import { DEFAULT_LEASE_DURATION_S, DEFAULT_LEASE_NAME, LeaderElector, kubeLeaseClient } from './leader.ts';
import { readTlsDir, selfSignedTls, serviceNames, type TlsMaterial } from './certs.ts';
import { DEFAULT_WEBHOOK_LISTEN, parseListen, startWebhook, type WebhookServer } from './webhook.ts';
import { DEFAULT_WEBHOOK_CONFIG, ensureWebhookCa, type WebhookTarget } from './webhook-config.ts';
import { attachMetrics, createControllerMetrics, type ControllerMetrics } from './metrics.ts';
import { storeWatchMetrics } from '../agent/metrics.ts';
import {
  acquireCache,
  attachEvents,
  controllerEvents,
  recordReconcileErrors,
  type SharedCache,
} from './cache.ts';
import { UiHub } from '../agent/ui/hub.ts';
import { EventRing } from '../agent/ui/events.ts';
import { hostAllowed, mapOf, PAGE_HEADERS } from '../agent/ui/routes.ts';
import { PAGE_HTML } from '../agent/ui/page.ts';

export const DEFAULT_NAMESPACE = 'ipkeeper-system';
const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
/** How often the caBundle is re-checked and a mounted certificate re-read. */
export const WEBHOOK_RECHECK_MS = 60_000;
/** A reconciler that fails to start is retried after this (doubling, capped at 30 s). */
const RESTART_FIRST_MS = 1_000;
const RESTART_CAP_MS = 30_000;

export interface ControllerOptions {
  /** Kubeconfig path; undefined: $KUBECONFIG, in-cluster, ~/.kube/config. */
  kubeconfig?: string;
  namespace?: string;
  /** Leader-election identity (default `<hostname>-<pid>`). */
  id?: string;
  leaseName?: string;
  leaseDurationS?: number;
  /** Lease renew/retry period (default 2 s); tests shorten it. */
  retryPeriodMs?: number;
  /** `host:port` for /healthz, /readyz, /metrics. */
  listen?: string;
  /**
   * Serve no admission webhook and leave its configuration alone (`--no-webhook`; the chart's
   * `webhook.enabled=false`): objects are then checked only by the agents and the CLI.
   */
  noWebhook?: boolean;
  /** `host:port` of the webhook (default 0.0.0.0:9443). */
  webhookListen?: string;
  /** Directory with tls.crt, tls.key (and ca.crt); absent: a self-signed CA and certificate. */
  webhookCertDir?: string;
  /** ValidatingWebhookConfiguration to put the CA into (default `ipkeeper`). */
  webhookConfig?: string;
  /** `namespace/name[:port]` of the webhook Service (port default 443). */
  webhookService?: string;
  /** Or a URL the API server calls, e.g. https://127.0.0.1:9443/validate (tests, out-of-cluster). */
  webhookUrl?: string;
  logLevel?: string;
  /** Reconcilers the leader runs (default `RECONCILERS`). */
  reconcilers?: readonly (() => Reconciler)[];
  /** An open store (tests); default: the kubernetes store of the same kubeconfig. */
  store?: Store;
  /**
   * Or a store URL to open (`--store`): `kubernetes:` (the default, the same kubeconfig's API
   * server) or `etcd://...` — the agents' etcd, when they keep pools and claims there. The webhook
   * checks objects written to the API server, so a store elsewhere needs `noWebhook`.
   */
  storeUrl?: string;
  /** For `storeUrl`: an etcd store's TLS and user (`store/open.ts`). */
  storeOptions?: OpenStoreOptions;
  /** Collect process metrics (off in tests that run several controllers in one process). */
  defaultMetrics?: boolean;
}

export interface Controller {
  readonly ctx: ControllerContext;
  readonly identity: string;
  readonly metrics: ControllerMetrics;
  /** Undefined with `noWebhook`. */
  readonly webhook: WebhookServer | undefined;
  readonly tls: TlsMaterial;
  /** `host:port` of /healthz, /readyz, /metrics when `listen` was given. */
  readonly httpAddress: string | undefined;
  isLeader(): boolean;
  isReady(): boolean;
  /** Stops the reconcilers, releases the lease, stops the servers. Idempotent. */
  close(): Promise<void>;
}

/** Splits `ns/name[:port]`. @throws IpamError INVALID_CONFIG naming the flag and the form. */
export function parseService(v: string): { namespace: string; name: string; port: number } {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)(?::(\d{1,5}))?$/.exec(v);
  const port = m?.[5] ? Number(m[5]) : 443;
  if (!m || port < 1 || port > 65535) {
    throw new IpamError(
      'INVALID_CONFIG',
      `--webhook-service "${v}" must be namespace/name[:port], e.g. ipkeeper-system/ipkeeper-webhook`,
      {
        field: 'webhook-service',
        value: v,
      },
    );
  }
  return { namespace: m[1]!, name: m[3]!, port };
}

function defaultNamespace(): string {
  if (process.env.POD_NAMESPACE) return process.env.POD_NAMESPACE;
  if (existsSync(SA_NAMESPACE_FILE)) {
    const ns = readFileSync(SA_NAMESPACE_FILE, 'utf8').trim();
    if (ns) return ns;
  }
  return DEFAULT_NAMESPACE;
}

/** The names the self-made serving certificate is for. */
function certNames(o: ControllerOptions, namespace: string): string[] {
  const names = new Set<string>();
  if (o.webhookService) {
    const s = parseService(o.webhookService);
    for (const n of serviceNames(s.namespace, s.name)) names.add(n);
  } else {
    for (const n of serviceNames(namespace, 'ipkeeper-webhook')) names.add(n);
  }
  if (o.webhookUrl) names.add(new URL(o.webhookUrl).hostname.replace(/^\[|\]$/g, ''));
  names.add('localhost');
  names.add('127.0.0.1');
  return [...names];
}

/**
 * The pool map page's claims cache and hub for `ctx`: the agent's hub over the controller's cache,
 * showing the context's events ring (src/controller/cache.ts: claim changes, GC releases,
 * reconcile errors). Release `cache` when done.
 * @throws StoreError when the store cannot be listed.
 */
export async function pageHub(
  ctx: ControllerContext,
  node: string,
): Promise<{ cache: SharedCache; hub: UiHub }> {
  const cache = await acquireCache(ctx);
  const hub = new UiHub({
    ipam: cache.ipam,
    store: ctx.store,
    node,
    now: ctx.now,
    events: controllerEvents(ctx),
  });
  return { cache, hub };
}

/**
 * Serves the agent's pool map page (`GET /`, `/v1/map`, SSE `/v1/events`) from `hub()`, under the
 * agent's rules; returns false for any other request (nothing written).
 */
export async function servePage(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  hub: () => Promise<UiHub>,
): Promise<boolean> {
  const path = (req.url ?? '').split('?')[0];
  if (req.method !== 'GET' || (path !== '/' && path !== '/v1/map' && path !== '/v1/events')) return false;
  const json = (status: number, body: unknown): void => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  // The agent's rule (src/agent/ui/routes.ts): by address or localhost, never a host name.
  if (!hostAllowed(req)) {
    json(403, {
      code: 'INVALID_CONFIG',
      message: `open the pool map by address (http://127.0.0.1:PORT/), not by the host name in "${req.headers.host}"`,
    });
    return true;
  }
  if (path === '/') {
    res.writeHead(200, PAGE_HEADERS);
    res.end(PAGE_HTML);
    return true;
  }
  try {
    const h = await hub();
    if (path === '/v1/events') {
      h.openStream(res);
      return true;
    }
    const at = new URL(req.url ?? '/', 'http://x').searchParams.get('at') ?? undefined;
    res.setHeader('cache-control', 'no-store');
    json(200, mapOf(h, at));
  } catch (e) {
    if (isIpamError(e)) json(e.httpStatus, e.toJSON());
    else json(503, { code: 'STORE_UNAVAILABLE', message: `the claims cache did not load: ${String(e)}` });
  }
  return true;
}

/**
 * Runs the leader's reconcilers for one term: starts them in order in the background (retrying one
 * that fails to start), and stops the started ones in reverse order.
 */
class Term {
  private readonly started: Reconciler[] = [];
  private cancelled = false;
  private readonly run: Promise<void>;
  private wake: (() => void) | undefined;
  synced = false;

  constructor(ctx: ControllerContext, factories: readonly (() => Reconciler)[]) {
    this.run = (async () => {
      for (const make of factories) {
        let delay = RESTART_FIRST_MS;
        for (;;) {
          if (this.cancelled) return;
          const r = make();
          try {
            await r.start(ctx);
            this.started.push(r);
            ctx.log.info({ reconciler: r.name }, 'reconciler started');
            break;
          } catch (e) {
            ctx.log.error(
              { reconciler: r.name, err: String(e), retryInMs: delay },
              'reconciler failed to start',
            );
            await r.stop().catch(() => undefined);
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, delay);
              this.wake = () => {
                clearTimeout(timer);
                resolve();
              };
            });
            delay = Math.min(delay * 2, RESTART_CAP_MS);
          }
        }
      }
      this.synced = true;
    })();
  }

  async stop(ctx: ControllerContext): Promise<void> {
    this.cancelled = true;
    this.wake?.();
    await this.run;
    for (const r of this.started.splice(0).reverse()) {
      try {
        await r.stop();
      } catch (e) {
        ctx.log.error({ reconciler: r.name, err: String(e) }, 'reconciler failed to stop');
      }
    }
  }
}

/**
 * Starts one controller replica (see the module comment). Resolves once the webhook serves and the
 * election runs (not when it leads).
 * @throws IpamError INVALID_CONFIG for bad options; StoreError when the store cannot be opened
 *   (CRDs missing, API server unreachable); Error when a port cannot be bound or the cert dir read.
 */
export async function runController(o: ControllerOptions = {}): Promise<Controller> {
  const logger = pino(
    { level: o.logLevel ?? 'info', base: { component: 'controller' } },
    pino.destination(2),
  );
  const namespace = o.namespace ?? defaultNamespace();
  const identity = o.id ?? `${hostname()}-${process.pid}`;
  const leaseDurationS = o.leaseDurationS ?? DEFAULT_LEASE_DURATION_S;
  if (!Number.isInteger(leaseDurationS) || leaseDurationS < 3) {
    throw new IpamError(
      'INVALID_CONFIG',
      `--lease-duration ${leaseDurationS} must be a whole number of seconds, at least 3 (default 15)`,
      {
        field: 'lease-duration',
        value: leaseDurationS,
      },
    );
  }
  const storeElsewhere = o.storeUrl !== undefined && !/^(kubernetes|k8s):/.test(o.storeUrl);
  if (storeElsewhere && !o.noWebhook) {
    throw new IpamError(
      'INVALID_CONFIG',
      `--store ${o.storeUrl}: the admission webhook checks objects written to the API server, which this store does not keep; add --no-webhook (Helm: etcd mode does)`,
      { field: 'store', value: o.storeUrl },
    );
  }
  if (o.noWebhook && (o.webhookService || o.webhookUrl || o.webhookCertDir)) {
    const flag = o.webhookService
      ? '--webhook-service'
      : o.webhookUrl
        ? '--webhook-url'
        : '--webhook-cert-dir';
    throw new IpamError(
      'INVALID_CONFIG',
      `--no-webhook and ${flag} contradict each other: drop ${flag}, or --no-webhook to serve the webhook`,
      { field: 'no-webhook' },
    );
  }
  if (o.webhookService && o.webhookUrl) {
    throw new IpamError(
      'INVALID_CONFIG',
      '--webhook-service and --webhook-url name the same thing; give one of them',
    );
  }
  let target: WebhookTarget | undefined;
  if (o.webhookService) target = { service: parseService(o.webhookService) };
  if (o.webhookUrl) {
    let u: URL;
    try {
      u = new URL(o.webhookUrl);
    } catch {
      throw new IpamError(
        'INVALID_CONFIG',
        `--webhook-url "${o.webhookUrl}" is not a URL; use e.g. https://127.0.0.1:9443/validate`,
      );
    }
    if (u.protocol !== 'https:') {
      throw new IpamError(
        'INVALID_CONFIG',
        `--webhook-url "${o.webhookUrl}" must be https:// (the API server only calls webhooks over TLS)`,
      );
    }
    target = { url: o.webhookUrl };
  }
  const webhookListen = o.webhookListen ?? DEFAULT_WEBHOOK_LISTEN;
  const listen = o.listen ? parseListen('--listen', o.listen) : undefined;
  parseListen('--webhook-listen', webhookListen);
  const webhookConfig = o.webhookConfig ?? DEFAULT_WEBHOOK_CONFIG;
  const factories = o.reconcilers ?? RECONCILERS;

  const tls = o.webhookCertDir ? readTlsDir(o.webhookCertDir) : selfSignedTls(certNames(o, namespace));
  let store = o.store;
  if (!store && storeElsewhere) {
    const { openStore, withCredentialsLog } = await import('../store/open.ts');
    store = await openStore(o.storeUrl!, withCredentialsLog(o.storeOptions, logger));
  }
  if (!store) {
    const { openKubernetesStore } = await import('../store/kubernetes.ts');
    store = await openKubernetesStore(o.kubeconfig ? `kubernetes:${o.kubeconfig}` : 'kubernetes:');
  }
  const ownStore = o.store === undefined;
  // The page's events ring exists from the start: the GC and a failing reconciler write to it
  // before anyone opens the page.
  const events = new EventRing();
  const ctx = await makeContext({
    store,
    namespace,
    log: recordReconcileErrors(logger, events),
    ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
  });
  attachEvents(ctx, events);
  const metrics = createControllerMetrics({ defaultMetrics: o.defaultMetrics ?? true });
  storeWatchMetrics(metrics.registry, store);
  attachMetrics(ctx, metrics);

  const log = logger;
  let webhook: WebhookServer | undefined;
  let health: http.Server | undefined;
  const timers: NodeJS.Timeout[] = [];
  let elector: LeaderElector | undefined;
  let term: Term | undefined;
  /** Term starts and stops run one after another, never interleaved. */
  let termChain: Promise<void> = Promise.resolve();
  let closed = false;
  let currentTls = tls;
  /** The pool map's cache and hub, from the first page request on (see the module comment). */
  let ui: Promise<{ cache: SharedCache; hub: UiHub }> | undefined;
  const uiHub = async (): Promise<UiHub> => {
    ui ??= pageHub(ctx, `controller ${identity}`);
    try {
      return (await ui).hub;
    } catch (e) {
      ui = undefined; // The store was away: the next request tries again.
      throw e;
    }
  };

  const ensureCa = async (): Promise<void> => {
    if (o.noWebhook || !currentTls.ca) return;
    try {
      await ensureWebhookCa(ctx.kc, webhookConfig, currentTls.ca, target, log);
    } catch (e) {
      // Admission then fails (or is skipped, by the configuration's failurePolicy) until the next
      // check; the controller's own work goes on.
      log.error({ err: String(e), webhookConfig }, 'could not put the CA into the webhook configuration');
    }
  };

  try {
    if (!o.noWebhook) {
      webhook = await startWebhook({ listen: webhookListen, tls, store, log, metrics });
      await ensureCa();
    }
    if (!o.noWebhook)
      timers.push(
        setInterval(() => {
          if (o.webhookCertDir) {
            try {
              const next = readTlsDir(o.webhookCertDir);
              if (next.cert !== currentTls.cert || next.key !== currentTls.key || next.ca !== currentTls.ca) {
                webhook?.setTls(next);
                currentTls = next;
                log.info({ dir: o.webhookCertDir }, 'reloaded the webhook certificate');
              }
            } catch (e) {
              log.warn({ err: String(e) }, 'could not re-read the webhook certificate; keeping the old one');
            }
          }
          void ensureCa();
        }, WEBHOOK_RECHECK_MS),
      );

    elector = new LeaderElector({
      client: kubeLeaseClient(ctx.kc, namespace, o.leaseName ?? DEFAULT_LEASE_NAME),
      identity,
      leaseDurationS,
      ...(o.retryPeriodMs !== undefined ? { retryPeriodMs: o.retryPeriodMs } : {}),
      log,
      onStartedLeading: () => {
        metrics.leader.set(1);
        termChain = termChain.then(() => {
          if (closed) return;
          term = new Term(ctx, factories);
        });
      },
      onStoppedLeading: () => {
        metrics.leader.set(0);
        // Inside the chain: the term a quick start-then-stop made is the one stopped.
        termChain = termChain.then(async () => {
          const t = term;
          term = undefined;
          await t?.stop(ctx);
        });
        return termChain;
      },
    });

    if (listen) {
      health = http.createServer((req, res) => {
        void (async () => {
          const path = (req.url ?? '').split('?')[0];
          const json = (status: number, body: unknown): void => {
            res.writeHead(status, { 'Content-Type': 'application/json' });
            res.end(JSON.stringify(body));
          };
          if (path === '/healthz') return json(200, { ok: true });
          if (path === '/readyz') {
            const leader = elector?.isLeader ?? false;
            const ready = !closed && (!leader || term?.synced === true);
            return json(ready ? 200 : 503, {
              ready,
              leader,
              identity,
              holder: elector?.observedHolder ?? null,
            });
          }
          if (path === '/metrics') {
            const text = await metrics.registry.metrics();
            res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
            return res.end(text);
          }
          if (await servePage(req, res, uiHub)) return;
          json(404, { error: `no route ${path}; try /, /v1/map, /healthz, /readyz, /metrics` });
        })().catch((e: unknown) => {
          res.writeHead(500);
          res.end(String(e));
        });
      });
      await new Promise<void>((resolve, reject) => {
        health!.once('error', reject);
        health!.listen(listen.port, listen.host, () => resolve());
      });
    }
    elector.start();
  } catch (e) {
    for (const t of timers) clearInterval(t);
    await webhook?.close();
    health?.close();
    if (ownStore) await store.close();
    throw e;
  }
  const addr = health?.address();
  const httpAddress = addr && typeof addr === 'object' ? `${addr.address}:${addr.port}` : undefined;
  log.info(
    {
      identity,
      namespace,
      lease: o.leaseName ?? DEFAULT_LEASE_NAME,
      webhook: webhook?.address ?? 'off',
      http: httpAddress,
    },
    'controller running',
  );

  const el = elector;
  const wh = webhook;
  let closing: Promise<void> | undefined;
  return {
    ctx,
    identity,
    metrics,
    webhook: wh,
    tls,
    httpAddress,
    isLeader: () => el.isLeader,
    isReady: () => !closed && (!el.isLeader || term?.synced === true),
    close() {
      closing ??= (async () => {
        closed = true;
        for (const t of timers) clearInterval(t);
        // Stops the reconcilers (onStoppedLeading) and hands the lease over before the servers go.
        await el.stop();
        await termChain;
        await wh?.close();
        // Open page streams would keep the server from closing: end them first.
        const pageUi = await ui?.catch(() => undefined);
        pageUi?.hub.close();
        await new Promise<void>((resolve) => {
          if (!health) return resolve();
          health.close(() => resolve());
          health.closeAllConnections();
        });
        await pageUi?.cache.release();
        if (ownStore) await store.close();
        log.info({ identity }, 'controller stopped');
      })();
      return closing;
    },
  };
}
