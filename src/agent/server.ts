/**
 * @module agent/server
 * The node agent: serves the CNI plugin and the CLI over a root-only unix socket (and, optionally,
 * health/metrics over TCP on a loopback address), allocating through the engine.
 *
 * Routes (JSON): see `src/cni/protocol.ts` for `/v1/cni/*`; the CLI uses
 *   POST /v1/apply {objects}      GET /v1/objects/:kind[/[:namespace/]:name]      DELETE /v1/objects/:kind/[:namespace/]:name
 *   GET /v1/usage                 GET /healthz  GET /readyz  GET /metrics
 *   POST /v1/reclaim {endpoint: "NS/NAME" | ip, network?, force?}   GET /v1/endpoints/:ns/:name
 * and the operator routes of `src/agent/ui/routes.ts` (pool map page, check, describe, release).
 */
import { mkdirSync, chmodSync, existsSync, unlinkSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import pino from 'pino';
import { IpamError, isIpamError } from '../errors.ts';
import { StoreError, type Store } from '../store/store.ts';
import { openStore, withCredentialsLog, type OpenStoreOptions } from '../store/open.ts';
import { Ipam, type AllocateRequest, type Logger } from '../ipam/engine.ts';
import { ObjectService } from '../ipam/objects.ts';
import {
  LEASE_RENEW_MS,
  NODE_DEAD_MS,
  NodeLeaseSource,
  RECLAIM_GRACE_MS,
  Reclaimer,
  renewLease,
} from '../ipam/reclaim.ts';
import { LABEL_PATTERN } from '../api/kinds.ts';
import { resolveKind } from '../api/kinds.ts';
import type { CniRequest } from '../cni/protocol.ts';
import type { KubeView } from './kube-view.ts';
import { createMetrics, type AgentMetrics } from './metrics.ts';
import { registerUi, UiHub } from './ui/routes.ts';
import { NodePoolAgent } from './node-pool.ts';
import { VIP_CNI_ARG } from '../ipam/vip.ts';
import { registerCniExec } from './cni-exec.ts';

export const DEFAULT_MAX_IN_FLIGHT = 1024;
/** Far above what a node's runtime sends (a 1000-pod burst is spread over the nodes). */
export const DEFAULT_MAX_RATE = 5000;
export const BODY_LIMIT_BYTES = 1 << 20;

export interface AgentOptions {
  /** Store URL (`sqlite:PATH`, `memory:`, `etcd://...`) or an open store. */
  store: string | Store;
  /** For a store URL: how to open it (an etcd store's TLS and user, see `store/etcd-options.ts`). */
  storeOptions?: OpenStoreOptions;
  socket: string;
  node?: string;
  /** Also serve health, readiness and metrics on this loopback `host:port`. */
  listen?: string;
  logLevel?: string;
  /** Requests served at once before the agent answers BUSY (CNI 11). */
  maxInFlight?: number;
  /** CNI requests per second before the agent answers BUSY (token bucket; burst = one second's worth). */
  maxRate?: number;
  gcMinAgeMs?: number;
  /** Collect process metrics (off in tests that start many agents). */
  defaultMetrics?: boolean;
  /**
   * Read pods, namespaces and this node from Kubernetes (informers) for pool choice: a kubeconfig
   * path, or `true` for $KUBECONFIG / in-cluster / ~/.kube/config. Implied by a `kubernetes:` store.
   */
  kubeconfig?: string | true;
  /** How often the leak reclaimer scans (0: never). */
  reclaimIntervalMs?: number;
  nodeDeadMs?: number;
  reclaimGraceMs?: number;
  /**
   * Keep the claims in this file between runs (src/ipam/claims-cache.ts): written at `close` and
   * every `claimsCacheIntervalMs` while the claims change, read at the next start, which then asks
   * the store only for the changes since (kubernetes, etcd).
   */
  claimsCache?: string;
  /** How often the claims cache is rewritten while running (0: only at `close`; default 30 s). */
  claimsCacheIntervalMs?: number;
  /** Node-pool mode (seed 004): allocate only from this node's NodePool (src/agent/node-pool.ts). */
  nodePool?: boolean;
  /** How often, at most, node-pool mode writes the NodePool's status.used (default 15 s). */
  nodePoolStatusIntervalMs?: number;
  /** Node-pool mode: the node health-checks with one of its addresses, so readiness needs two. */
  nodePoolHealthCheck?: boolean;
}

export const RECLAIM_INTERVAL_MS = 30_000;

export interface Agent {
  ipam: Ipam;
  objects: ObjectService;
  store: Store;
  metrics: AgentMetrics;
  socket: string;
  /** The TCP address actually bound (when `listen` was given). */
  httpAddress?: string;
  close(): Promise<void>;
}

/** Whether something answers on the socket (a live agent) — a dead file may be replaced. */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function prepareSocket(path: string): Promise<void> {
  // The directory is root-only: the socket allocates addresses for whoever connects.
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  if (existsSync(path)) {
    if (!statSync(path).isSocket()) {
      throw new IpamError(
        'INVALID_CONFIG',
        `--socket ${path} exists and is not a socket; remove it or pick another path`,
      );
    }
    if (await socketAlive(path)) {
      throw new IpamError(
        'INVALID_CONFIG',
        `another agent already listens on ${path}; stop it or pick another --socket`,
      );
    }
    unlinkSync(path);
  }
}

function podOwner(req: CniRequest): AllocateRequest['owner'] {
  const a = req.args ?? {};
  if (a.K8S_POD_NAME) {
    return {
      kind: 'Pod',
      name: a.K8S_POD_NAME,
      ...(a.K8S_POD_NAMESPACE ? { namespace: a.K8S_POD_NAMESPACE } : {}),
      ...(a.K8S_POD_UID ? { uid: a.K8S_POD_UID } : {}),
    };
  }
  return { kind: 'Container', name: req.containerId ?? 'unknown' };
}

function requireAttachment(req: CniRequest): { containerId: string; ifName: string } {
  if (typeof req.containerId !== 'string' || req.containerId === '') {
    throw new IpamError('INVALID_ENV', 'containerId (CNI_CONTAINERID) is required');
  }
  if (typeof req.ifName !== 'string' || req.ifName === '') {
    throw new IpamError('INVALID_ENV', 'ifName (CNI_IFNAME) is required');
  }
  return { containerId: req.containerId, ifName: req.ifName };
}

function requireRequest(body: unknown): CniRequest {
  if (body === null || typeof body !== 'object')
    throw new IpamError('DECODE_FAILED', 'request body must be a JSON object');
  const r = body as CniRequest;
  if (typeof r.network !== 'string' || r.network === '') {
    throw new IpamError('INVALID_CONFIG', 'network (the CNI config "name") is required');
  }
  return { ...r, args: r.args ?? {}, ipam: r.ipam ?? { type: 'ipkeeper' } };
}

/** What a start has opened so far: what a failed start closes again. */
interface Started {
  store?: Store;
  kube?: KubeView;
  nodePool?: NodePoolAgent;
  ipam?: Ipam;
  /** The engine's start (its read of the store), once begun. */
  load?: Promise<void>;
  timers: NodeJS.Timeout[];
  servers: FastifyInstance[];
}

/**
 * Opens the store, loads the engine, and serves. Resolves when the socket is listening and the
 * engine is ready. A start that fails closes what it had opened (its servers, timers, watches, and
 * the store when it opened it) before it throws, so that nothing keeps a failed agent's process
 * alive.
 * @throws IpamError INVALID_CONFIG (bad store URL, socket in use), StoreError (store unreachable).
 */
export async function startAgent(opts: AgentOptions): Promise<Agent> {
  const started: Started = { timers: [], servers: [] };
  try {
    return await assemble(opts, started);
  } catch (e) {
    for (const t of started.timers) clearInterval(t);
    const quietly = (p: Promise<unknown> | undefined): Promise<unknown> | undefined =>
      p?.catch(() => undefined);
    for (const s of started.servers) await quietly(s.close());
    // The engine's read ends first (else it would start its checkpoints after the stop); then
    // its watches close, and it writes no claims cache unless its claims were all loaded.
    await quietly(started.load);
    await quietly(started.ipam?.stop());
    await quietly(started.nodePool?.close());
    await quietly(started.kube?.stop());
    await quietly(started.store?.close());
    throw e;
  }
}

async function assemble(opts: AgentOptions, started: Started): Promise<Agent> {
  // Flags are checked before anything is opened or read.
  const listenAt = opts.listen ? /^(.+):(\d+)$/.exec(opts.listen) : undefined;
  if (listenAt === null) {
    throw new IpamError('INVALID_CONFIG', `--listen ${opts.listen} must be host:port, e.g. 127.0.0.1:9610`);
  }
  const logger = pino({ level: opts.logLevel ?? 'info', base: { component: 'agent' } }, pino.destination(2));
  const storeOptions = withCredentialsLog(opts.storeOptions, logger);
  const store = typeof opts.store === 'string' ? await openStore(opts.store, storeOptions) : opts.store;
  if (typeof opts.store === 'string') started.store = store;
  const node = opts.node ?? hostname().toLowerCase();
  if (!new RegExp(LABEL_PATTERN).test(node) || node.length > 63) {
    throw new IpamError(
      'INVALID_CONFIG',
      `--node "${node}" must be a DNS label (lower-case letters, digits, "-"), like a Kubernetes node name`,
    );
  }
  let kube: KubeView | undefined;
  const kubeconfig =
    opts.kubeconfig ??
    (typeof opts.store === 'string' && /^(kubernetes|k8s):/.test(opts.store)
      ? opts.store.replace(/^(kubernetes|k8s):/, '') || true
      : undefined);
  if (kubeconfig !== undefined) {
    const { startKubeView } = await import('./kube-view.ts');
    kube = await startKubeView(kubeconfig === true ? undefined : kubeconfig, node, { log: logger });
    started.kube = kube;
  }
  const nodePool = opts.nodePool
    ? new NodePoolAgent({
        store,
        node,
        log: logger,
        ...(opts.nodePoolStatusIntervalMs !== undefined
          ? { statusIntervalMs: opts.nodePoolStatusIntervalMs }
          : {}),
        healthCheck: opts.nodePoolHealthCheck === true,
      })
    : undefined;
  started.nodePool = nodePool;
  const ipam = new Ipam({
    // Node-pool mode: the engine sees this node's NodePool as its only pools.
    store: nodePool?.store ?? store,
    node,
    log: logger as unknown as Logger,
    gcMinAgeMs: opts.gcMinAgeMs,
    ...(kube ? { view: kube.view } : {}),
    ...(opts.claimsCache !== undefined ? { claimsCache: opts.claimsCache } : {}),
    ...(opts.claimsCacheIntervalMs !== undefined
      ? { claimsCacheIntervalMs: opts.claimsCacheIntervalMs }
      : {}),
  });
  started.ipam = ipam;
  // The store is read while the rest is set up: the HTTP server is built and compiled during the
  // store's first answers (below, before `await loaded`), not after the last one.
  const loaded = ipam.start();
  loaded.catch(() => undefined); // awaited below, after the server is built
  started.load = loaded;
  const objects = new ObjectService(store, ipam);
  // The pool map page, `check`, `describe` and operator release (src/agent/ui/).
  const hub = new UiHub({ ipam, store, node, nodeDeadMs: opts.nodeDeadMs ?? NODE_DEAD_MS });
  const timers = started.timers;
  const every = (ms: number, what: string, fn: () => Promise<unknown>): void => {
    const t = setInterval(() => {
      fn().catch((e: unknown) =>
        logger.warn({ err: String(e), task: what }, 'background task failed; retrying next round'),
      );
    }, ms);
    t.unref();
    timers.push(t);
  };
  // Agents starting together on one sqlite file can find it locked for a moment: a retryable
  // store error here is retried, not fatal.
  for (let attempt = 1; ; attempt++) {
    try {
      await renewLease(store, node, { now: Date.now });
      break;
    } catch (e) {
      if (!(e instanceof StoreError) || !e.retryable || attempt >= 20) throw e;
      await new Promise((r) => setTimeout(r, Math.min(50 * attempt, 1000)));
    }
  }
  every(LEASE_RENEW_MS, 'lease', () => renewLease(store, node, { now: Date.now }));
  const reclaimer = new Reclaimer({
    store,
    state: ipam.state,
    sources: [new NodeLeaseSource(store, { now: Date.now }, opts.nodeDeadMs ?? NODE_DEAD_MS)],
    clock: { now: Date.now },
    graceMs: opts.reclaimGraceMs ?? RECLAIM_GRACE_MS,
    log: hub.events.tee(logger as unknown as Logger, ['reclaim']),
  });
  const metrics = createMetrics(ipam, { defaultMetrics: opts.defaultMetrics, store });
  const maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  let inFlight = 0;
  const maxRate = opts.maxRate ?? DEFAULT_MAX_RATE;
  let tokens = maxRate;
  let refilled = Date.now();
  /** Takes one token from the bucket; false when the agent is over its rate. */
  const admit = (): boolean => {
    const now = Date.now();
    tokens = Math.min(maxRate, tokens + ((now - refilled) / 1000) * maxRate);
    refilled = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };

  const sendError = (reply: FastifyReply, e: unknown, command: string): FastifyReply => {
    const err = isIpamError(e)
      ? e
      : new IpamError('INTERNAL', `unexpected failure: ${e instanceof Error ? e.message : String(e)}`, {}, e);
    if (err.code === 'INTERNAL') logger.error({ err: e, command }, 'internal error');
    metrics.errors.inc({ code: err.code });
    return reply.code(err.httpStatus).send(err.toJSON());
  };

  const build = (withApi: boolean): FastifyInstance => {
    const app = Fastify({ bodyLimit: BODY_LIMIT_BYTES, logger: false });
    // A body the JSON parser refuses never reaches a route: say what is wrong in our own terms (the
    // framework's own answer names neither the cause nor the fix), and change nothing.
    app.setErrorHandler((e: FastifyError, request, reply) => {
      if (isIpamError(e)) return sendError(reply, e, request.url);
      // A body the JSON parser refuses: say so in our own terms, naming the fix (the framework's
      // answer names neither). Too large stays 413; anything else keeps the framework's answer.
      if (e.code?.startsWith('FST_ERR_CTP_') && e.code !== 'FST_ERR_CTP_BODY_TOO_LARGE') {
        const code = request.url.startsWith('/v1/cni/') ? 'INVALID_CONFIG' : 'INVALID_OBJECT';
        return sendError(
          reply,
          new IpamError(
            code,
            `request body is not JSON the agent accepts (${e.message}); send plain JSON objects — keys named "__proto__" or "constructor" are refused`,
            { field: 'body' },
          ),
          request.url,
        );
      }
      return reply.send(e);
    });
    registerUi(app, hub, { withApi });
    app.get('/healthz', async () => ({ ok: true }));
    app.get('/readyz', async (_req, reply) => {
      if (!ipam.ready) return reply.code(503).send({ ready: false, reason: 'loading the store' });
      const np = nodePool?.readiness();
      if (np && !np.ready) {
        // code/message too, so a client that reads error bodies (the CLI) shows the reason.
        return reply
          .code(503)
          .send({ ready: false, reason: np.reason, code: 'NOT_READY', message: np.reason });
      }
      return { ready: true, node, store: store.backend, claims: ipam.claimsSource };
    });
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    });
    app.get('/v1/usage', async () => ipam.usage());
    if (!withApi) return app;

    const cni = (command: string, fn: (r: CniRequest) => Promise<unknown>) => {
      return async (request: FastifyRequest, reply: FastifyReply) => {
        if (!admit()) {
          metrics.errors.inc({ code: 'BUSY' });
          return reply
            .code(429)
            .send({ code: 'BUSY', message: `agent is over its rate limit (${maxRate} requests/s); retry` });
        }
        if (inFlight >= maxInFlight) {
          metrics.errors.inc({ code: 'BUSY' });
          return reply.code(429).send({
            code: 'BUSY',
            message: `agent is serving ${inFlight} requests (limit ${maxInFlight}); retry`,
          });
        }
        inFlight++;
        const end = metrics.duration.startTimer({ command });
        try {
          const out = await fn(requireRequest(request.body));
          end({ result: 'ok' });
          metrics.requests.inc({ command, result: 'ok' });
          return out;
        } catch (e) {
          const code = isIpamError(e) ? e.code : 'INTERNAL';
          end({ result: code });
          metrics.requests.inc({ command, result: code });
          const r = requireRequestSafe(request.body);
          logger.warn(
            {
              command,
              code,
              err: e instanceof Error ? e.message : String(e),
              network: r?.network,
              containerId: r?.containerId,
              ifName: r?.ifName,
              pod: r?.args?.K8S_POD_NAME
                ? `${r.args.K8S_POD_NAMESPACE ?? ''}/${r.args.K8S_POD_NAME}`
                : undefined,
            },
            'request failed',
          );
          return sendError(reply, e, command);
        } finally {
          inFlight--;
        }
      };
    };

    app.post(
      '/v1/cni/add',
      cni('ADD', async (r) => {
        const { containerId, ifName } = requireAttachment(r);
        return ipam.add({
          cniNetwork: r.network,
          containerId,
          ifName,
          owner: podOwner(r),
          // In node-pool mode the node's pool is the only one: the config's pools do not apply.
          ...(nodePool ? {} : { configPools: r.ipam.pools }),
          ...(r.args[VIP_CNI_ARG] ? { vip: r.args[VIP_CNI_ARG] } : {}),
          requestedIps: [...(r.requestedIps ?? []), ...(r.args.IP ? r.args.IP.split(',') : [])],
          extraRoutes: r.ipam.routes,
        });
      }),
    );
    app.post(
      '/v1/cni/del',
      cni('DEL', async (r) => {
        const { containerId, ifName } = requireAttachment(r);
        await ipam.release({ cniNetwork: r.network, containerId, ifName });
        return {};
      }),
    );
    app.post(
      '/v1/cni/check',
      cni('CHECK', async (r) => {
        const { containerId, ifName } = requireAttachment(r);
        await ipam.check({ cniNetwork: r.network, containerId, ifName });
        return {};
      }),
    );
    app.post(
      '/v1/cni/gc',
      cni('GC', async (r) => ({ released: await ipam.gc(r.network, r.validAttachments ?? []) })),
    );
    app.post(
      '/v1/cni/status',
      cni('STATUS', async (r) => {
        ipam.status(nodePool ? undefined : r.ipam.pools, r.network);
        return {};
      }),
    );

    const kindOf = (word: string): string => {
      const info = resolveKind(word);
      if (!info)
        throw new IpamError('NOT_FOUND', `unknown kind "${word}"; use ippool, reservedip or ipclaim`);
      return info.kind;
    };
    registerCniExec(app, opts.socket);

    app.post('/v1/apply', async (request, reply) => {
      try {
        const body = request.body as { objects?: unknown[] } | undefined;
        if (!body || !Array.isArray(body.objects)) {
          throw new IpamError('INVALID_OBJECT', 'body must be {"objects": [...]}');
        }
        return { results: await objects.apply(body.objects) };
      } catch (e) {
        return sendError(reply, e, 'apply');
      }
    });
    app.get('/v1/objects/:kind', async (request, reply) => {
      try {
        return { items: await objects.list(kindOf((request.params as { kind: string }).kind)) };
      } catch (e) {
        return sendError(reply, e, 'get');
      }
    });
    app.get('/v1/objects/:kind/:name', async (request, reply) => {
      try {
        const p = request.params as { kind: string; name: string };
        return await objects.get(kindOf(p.kind), p.name);
      } catch (e) {
        return sendError(reply, e, 'get');
      }
    });
    // A namespaced object (Endpoint): `ipkeeper get endpoint NS/NAME`.
    app.get('/v1/objects/:kind/:namespace/:name', async (request, reply) => {
      try {
        const p = request.params as { kind: string; namespace: string; name: string };
        return await objects.get(kindOf(p.kind), p.name, p.namespace);
      } catch (e) {
        return sendError(reply, e, 'get');
      }
    });
    const remove = async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        const p = request.params as { kind: string; namespace?: string; name: string };
        const q = request.query as { force?: string };
        await objects.delete(kindOf(p.kind), p.name, {
          force: q.force === 'true',
          ...(p.namespace !== undefined ? { namespace: p.namespace } : {}),
        });
        return { deleted: true };
      } catch (e) {
        return sendError(reply, e, 'delete');
      }
    };
    app.delete('/v1/objects/:kind/:name', remove);
    // A namespaced object (NetworkConfig): `ipkeeper delete networkconfig NS/NAME`.
    app.delete('/v1/objects/:kind/:namespace/:name', remove);
    // Manual reclaim of kept (fixed) addresses and Endpoint records: src/ipam/endpoint.ts.
    app.post('/v1/reclaim', async (request, reply) => {
      try {
        if (!ipam.ready) throw new IpamError('NOT_READY', 'the agent is still loading its store; retry');
        return await ipam.endpoints.reclaim(request.body);
      } catch (e) {
        return sendError(reply, e, 'reclaim');
      }
    });
    app.get('/v1/endpoints/:namespace/:name', async (request, reply) => {
      try {
        const p = request.params as { namespace: string; name: string };
        return await ipam.endpoints.describe(`${p.namespace}/${p.name}`);
      } catch (e) {
        return sendError(reply, e, 'describe');
      }
    });
    return app;
  };

  // Built and compiled (fastify's `ready`: routes, schemas) while the engine reads the store, so
  // that a start with many claims does not add it after the last page: ~25 ms of an etcd agent's
  // start on 100k claims (its first page takes etcd longer than this to send).
  await prepareSocket(opts.socket);
  const app = build(true);
  started.servers.push(app);
  await app.ready();
  await loaded;
  nodePool?.start(ipam.state);
  // The reclaimer reads the engine's claims: it runs only once they are all loaded.
  const reclaimEvery = opts.reclaimIntervalMs ?? RECLAIM_INTERVAL_MS;
  if (reclaimEvery > 0) {
    every(reclaimEvery, 'reclaim', async () => {
      for (const r of (await reclaimer.scan()).released) {
        metrics.reclaimed.inc({ source: r.reason.split(':')[0] ?? 'unknown' });
      }
    });
  }
  await app.listen({ path: opts.socket });
  chmodSync(opts.socket, 0o600);
  let http: FastifyInstance | undefined;
  let httpAddress: string | undefined;
  if (listenAt) {
    http = build(false);
    started.servers.push(http);
    httpAddress = await http.listen({ host: listenAt[1] as string, port: Number(listenAt[2]) });
  }
  logger.info({ socket: opts.socket, store: store.backend, node, http: httpAddress }, 'agent ready');

  return {
    ipam,
    objects,
    store,
    metrics,
    socket: opts.socket,
    ...(httpAddress ? { httpAddress } : {}),
    async close() {
      for (const t of timers) clearInterval(t);
      await app.close();
      await http?.close();
      await ipam.stop();
      await nodePool?.close();
      await kube?.stop();
      if (typeof opts.store === 'string') await store.close();
    },
  };
}

function requireRequestSafe(body: unknown): CniRequest | undefined {
  return body !== null && typeof body === 'object' ? (body as CniRequest) : undefined;
}
