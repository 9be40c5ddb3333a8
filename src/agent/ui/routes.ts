/**
 * @module agent/ui/routes
 * The operator routes of the agent, registered by `registerUi` on both of its listeners:
 *
 *   GET  /                              the live pool map page (HTML, self-contained)
 *   GET  /v1/map[?at=pool:index,...]    the page's data (`map.ts`)
 *   GET  /v1/events                     Server-Sent Events: `change` when the map changed (`hub.ts`)
 *
 * and on the unix socket only (they name pods and one of them deletes; the TCP listener is for
 * health, metrics and the page):
 *
 *   GET  /v1/check                      problem claims (`check.ts`), for `ipkeeper check`
 *   POST /v1/release {items:[{key,version}]}   release listed claims at their versions (`release.ts`)
 *   GET  /v1/describe/ippools/:name     one pool, its reservations and holders (`inspect.ts`)
 *   GET  /v1/describe/ipclaims/:ip      the claims of one address and their problems
 *
 * On the socket it also hooks the answers of `/v1/cni/*` to record allocations, releases and errors
 * in the events ring.
 *
 * The controller serves the same page from its claims/pools cache (src/controller/main.ts) on its
 * plain `node:http` listener: `PAGE_HEADERS`, `hostAllowed`, `mapOf` and `UiHub.openStream` are
 * what both use, so the page, its data and its stream cannot differ between the two.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isIP } from 'node:net';
import { IpamError, isIpamError } from '../../errors.ts';
import { StoreError } from '../../store/store.ts';
import type { CniRequest, IpamResult } from '../../cni/protocol.ts';
import { NodeLeaseSource } from '../../ipam/reclaim.ts';
import { buildMap, parseAt, type PoolMapPage } from './map.ts';
import { parseReleaseItems, releaseClaims } from './release.ts';
import { PAGE_CSP, PAGE_HTML } from './page.ts';
import type { UiHub } from './hub.ts';

export { UiHub } from './hub.ts';

function sendError(reply: FastifyReply, e: unknown): FastifyReply {
  const err = isIpamError(e)
    ? e
    : e instanceof StoreError
      ? new IpamError(e.retryable ? 'STORE_UNAVAILABLE' : 'INTERNAL', `store failed: ${e.message}`, {}, e)
      : new IpamError('INTERNAL', `unexpected failure: ${e instanceof Error ? e.message : String(e)}`, {}, e);
  return reply.code(err.httpStatus).send(err.toJSON());
}

/**
 * Whether the request names this listener by an address or `localhost`. A page on another site can
 * point its own host name at 127.0.0.1 (DNS rebinding) and read what a loopback listener serves;
 * such a request carries that host name, so it is refused.
 */
export function hostAllowed(request: { headers: { host?: string | undefined } }): boolean {
  const host = request.headers.host ?? '';
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || isIP(name) !== 0;
}

const podOf = (r: CniRequest): string | undefined =>
  r.args?.K8S_POD_NAME
    ? `${r.args.K8S_POD_NAMESPACE ? `${r.args.K8S_POD_NAMESPACE}/` : ''}${r.args.K8S_POD_NAME}`
    : undefined;

/** The headers `GET /` answers with: the page is self-contained, and nothing may frame or cache it. */
export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': PAGE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/**
 * `GET /v1/map`'s answer from the hub's engine cache; `at` is the query's `at` parameter.
 * @throws IpamError INVALID_OBJECT for a malformed `at`.
 */
export function mapOf(hub: UiHub, at: unknown): PoolMapPage {
  return buildMap(hub.ipam.state, {
    node: hub.node,
    store: hub.store.backend,
    now: hub.now,
    at: parseAt(at),
    events: hub.events.recent(),
  });
}

/** Records the outcome of a CNI request in the events ring (socket listener only). */
function hookCni(app: FastifyInstance, hub: UiHub): void {
  const heldBefore = new WeakMap<FastifyRequest, string[]>();
  app.addHook('preHandler', async (request) => {
    const url = request.routeOptions.url;
    if (url !== '/v1/cni/add' && url !== '/v1/cni/del') return;
    const r = request.body as CniRequest | undefined;
    if (!r || typeof r !== 'object' || typeof r.network !== 'string') return;
    if (typeof r.containerId !== 'string' || typeof r.ifName !== 'string') return;
    heldBefore.set(
      request,
      hub.ipam.state.claimsOf(r.network, r.containerId, r.ifName).map((h) => h.claim.spec.ip),
    );
  });
  app.addHook('onSend', async (request, reply, payload) => {
    const url = request.routeOptions.url;
    if (typeof url !== 'string' || !url.startsWith('/v1/cni/') || typeof payload !== 'string') return payload;
    try {
      recordCni(
        hub,
        url.slice('/v1/cni/'.length).toUpperCase(),
        request,
        reply.statusCode,
        payload,
        heldBefore.get(request),
      );
    } catch {
      // The answer is what matters to the runtime; a failure to note it must not change it.
    }
    return payload;
  });
}

function recordCni(
  hub: UiHub,
  command: string,
  request: FastifyRequest,
  status: number,
  payload: string,
  before: string[] | undefined,
): void {
  const r = (request.body ?? {}) as Partial<CniRequest>;
  const pod = podOf(r as CniRequest);
  const who = [
    pod ? `pod ${pod}` : undefined,
    r.ifName,
    r.containerId ? `(container ${r.containerId.slice(0, 12)})` : undefined,
  ]
    .filter((x) => x !== undefined)
    .join(' ');
  const base = {
    command,
    ...(typeof r.network === 'string' ? { network: r.network } : {}),
    ...(pod ? { pod } : {}),
    ...(typeof r.containerId === 'string' ? { containerId: r.containerId } : {}),
    ...(typeof r.ifName === 'string' ? { ifName: r.ifName } : {}),
  };
  if (status >= 400) {
    const body = JSON.parse(payload) as { code?: string; message?: string };
    hub.events.push({
      ...base,
      kind: 'error',
      code: body.code ?? String(status),
      message: `${command}${who ? ` ${who}` : ''} failed: ${body.code ?? status}: ${body.message ?? ''}`,
    });
    return;
  }
  if (command === 'ADD') {
    const res = JSON.parse(payload) as IpamResult;
    const fresh = res.ips.filter((i) => !(before ?? []).includes(i.address.split('/')[0] ?? ''));
    // An ADD repeated for an attachment that holds its addresses changes nothing: not an event.
    if (fresh.length === 0) return;
    const ips = fresh.map((i) => i.address.split('/')[0] ?? i.address);
    hub.events.push({
      ...base,
      kind: 'allocate',
      ips,
      pools: fresh.map((i) => i.pool),
      message: `allocated ${fresh.map((i) => `${i.address.split('/')[0]} (pool ${i.pool})`).join(', ')} to ${who}`,
    });
  } else if (command === 'DEL') {
    if (!before || before.length === 0) return;
    hub.events.push({
      ...base,
      kind: 'release',
      ips: before,
      message: `released ${before.join(', ')} of ${who}`,
    });
  } else if (command === 'GC') {
    const n = (JSON.parse(payload) as { released?: number }).released ?? 0;
    if (n > 0)
      hub.events.push({
        ...base,
        kind: 'gc',
        message: `CNI GC released ${n} address(es) on network "${r.network}"`,
      });
  }
}

/**
 * Registers the operator routes on one listener. `withApi` is true for the unix socket (the full
 * API), false for the TCP listener (page and map only, and only for requests that name it by
 * address or `localhost`).
 */
export function registerUi(app: FastifyInstance, hub: UiHub, opts: { withApi: boolean }): void {
  const guard = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (opts.withApi || hostAllowed(request)) return;
    await reply.code(403).send({
      code: 'INVALID_CONFIG',
      message: `open the pool map by address (http://127.0.0.1:PORT/), not by the host name in "${request.headers.host}"`,
    });
  };

  app.get('/', { preHandler: guard }, async (_request, reply) => {
    return reply.headers(PAGE_HEADERS).send(PAGE_HTML);
  });
  app.get('/v1/map', { preHandler: guard }, async (request, reply) => {
    try {
      const q = request.query as { at?: string };
      reply.header('cache-control', 'no-store');
      return mapOf(hub, q.at);
    } catch (e) {
      return sendError(reply, e);
    }
  });
  app.get('/v1/events', { preHandler: guard }, (_request, reply) => {
    reply.hijack();
    hub.openStream(reply.raw);
  });
  // Open streams would keep `close()` waiting for ever: end them first.
  app.addHook('preClose', (done) => {
    hub.close();
    done();
  });
  if (!opts.withApi) return;

  hookCni(app, hub);
  app.get('/v1/check', async (_request, reply) => {
    try {
      // Loaded on first use, as below: they validate objects, and the validator (TypeBox's
      // schemas) is left out of the agent's start.
      const { runCheck } = await import('./check.ts');
      return await runCheck(hub.store, { agent: hub.node, now: hub.now, nodeDeadMs: hub.nodeDeadMs });
    } catch (e) {
      return sendError(reply, e);
    }
  });
  app.post('/v1/release', async (request, reply) => {
    try {
      const items = parseReleaseItems(request.body);
      const results = await releaseClaims(hub.store, hub.ipam.state, items);
      const released = results.filter((r) => r.outcome === 'released').map((r) => r.ip);
      if (released.length > 0) {
        hub.events.push({
          kind: 'operator-release',
          ips: released,
          message: `operator released ${released.join(', ')}${results.length > released.length ? ` (${results.length - released.length} skipped)` : ''}`,
        });
      }
      return { results };
    } catch (e) {
      return sendError(reply, e);
    }
  });
  app.get('/v1/describe/ippools/:name', async (request, reply) => {
    try {
      const { describePool } = await import('./inspect.ts');
      return describePool(hub.ipam.state, (request.params as { name: string }).name);
    } catch (e) {
      return sendError(reply, e);
    }
  });
  app.get('/v1/describe/ipclaims/:ip', async (request, reply) => {
    try {
      const leases = new NodeLeaseSource(hub.store, { now: hub.now }, hub.nodeDeadMs);
      await leases.refresh();
      const { describeClaim } = await import('./inspect.ts');
      return describeClaim(hub.ipam.state, (request.params as { ip: string }).ip, (c) => leases.why(c));
    } catch (e) {
      return sendError(reply, e);
    }
  });
}
