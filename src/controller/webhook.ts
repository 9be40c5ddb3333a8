/**
 * @module controller/webhook
 * The validating admission webhook: the API server POSTs an `AdmissionReview` (admission.k8s.io/v1,
 * or v1beta1 — answered in the apiVersion it came in) to `https://…/validate` before it stores an
 * ipkeeper object, and a denial reaches `kubectl apply` as `admission webhook "…" denied the request:
 * <our message>`. It runs on every controller replica (not only the leader): admission must answer
 * whoever leads.
 *
 * What it refuses (`admit`, pure apart from reading the store):
 *   - any ipkeeper.io object that fails `api/validate.ts` (schema and semantics: field paths, e.g.
 *     an address of spec.ips outside spec.subnet, a gateway off the subnet; a VIP naming
 *     neither or both of spec.pool and spec.subnet)                                     400 Invalid
 *   - IPPool CREATE/UPDATE whose addresses overlap another pool's in the same spec.network
 *     (`poolOverlapError`, the rule `ipkeeper apply` enforces)                          403 Forbidden
 *   - IPPool UPDATE that changes spec.subnet or spec.network                           403 Forbidden
 *   - IPPool UPDATE that takes out of the pool an address an IPClaim of that pool holds
 *     (by narrowing spec.ips, adding it to spec.excludeIPs, or making it the gateway);
 *     the message lists the holders                                                    403 Forbidden
 *
 * Immutable fields. `spec.subnet` and `spec.network` never change, even on an unused pool: claims are
 * keyed by network (`ipclaims/<network>.<address>`), and the subnet fixes the family and the prefix
 * length every holder was configured with; a "changed" pool is a different pool, so make a new one.
 * Everything else may change: spec.ips/excludeIPs are how pools grow and shrink (guarded by the
 * in-use rule), and gateway, routes, vlan, affinities, default and disable only affect attachments
 * made afterwards — refusing them would force a pool to be recreated for a router renumbering.
 *
 * An UPDATE that leaves `spec` as it is (labels, finalizers, status, a pool being deleted) is always
 * allowed, so our own finalizer and status writes never meet a denial for an object that was valid
 * under older rules. DELETE is not validated here: the `ipkeeper.io/pool-in-use` finalizer
 * (finalizer.ts) holds a pool with claims instead.
 *
 * Reads go to the store each time (a list of pools; on an UPDATE that removes addresses, a list of
 * claims). IPPool writes are rare, so fresh reads cost little and a claim made a moment ago is never
 * missed the way a lagging cache could miss it. When the store cannot be read the request is denied
 * (500): the webhook fails closed, as the API server does with failurePolicy Fail.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import { GROUP, type IPClaim, type IPPool } from '../api/kinds.ts';
import { objectErrors } from '../api/validate.ts';
import { formatValue, parseAddr } from '../net/addr.ts';
import { IntervalSet } from '../net/interval-set.ts';
import { compilePool, DEFAULT_NETWORK, type CompiledPool } from '../ipam/pools.ts';
import { poolOverlapError } from '../ipam/objects.ts';
import { CLAIM_PREFIX, POOL_PREFIX } from '../ipam/state.ts';
import type { Store } from '../store/store.ts';
import type { ControllerLogger } from './context.ts';
import type { TlsMaterial } from './certs.ts';
import type { ControllerMetrics } from './metrics.ts';

export const WEBHOOK_PATH = '/validate';
export const DEFAULT_WEBHOOK_LISTEN = '0.0.0.0:9443';
/** AdmissionReviews carry the object twice (object, oldObject); 3 MiB is the API server's own request limit. */
const BODY_LIMIT_BYTES = 3 << 20;
/** Holders named in an in-use denial. */
const HOLDERS_SHOWN = 5;

export interface AdmissionRequest {
  uid: string;
  kind?: { group?: string; version?: string; kind?: string };
  subResource?: string;
  operation?: string;
  name?: string;
  object?: unknown;
  oldObject?: unknown;
}

export interface AdmissionDecision {
  allowed: boolean;
  /** HTTP status the API server answers the client with (denials only). */
  code?: number;
  reason?: string;
  message?: string;
}

const allow: AdmissionDecision = { allowed: true };

function deny(code: 400 | 403 | 500, message: string): AdmissionDecision {
  const reason = code === 400 ? 'BadRequest' : code === 403 ? 'Forbidden' : 'InternalError';
  return { allowed: false, code, reason, message };
}

function sameSubnet(a: CompiledPool, b: CompiledPool): boolean {
  return (
    a.subnet.family === b.subnet.family && a.subnet.bits === b.subnet.bits && a.subnet.base === b.subnet.base
  );
}

function ownerText(c: IPClaim): string {
  const o = c.spec.owner;
  return `${o.kind} ${o.namespace ? `${o.namespace}/` : ''}${o.name}`;
}

/** Which field of the new spec takes `v` out of the pool. */
function removingField(n: CompiledPool, v: bigint): string {
  if (n.spec.gateway !== undefined && parseAddr(n.spec.gateway).value === v) return 'spec.gateway';
  if (n.spec.excludeIPs && IntervalSet.parse(n.family, n.spec.excludeIPs).contains(v))
    return 'spec.excludeIPs';
  return 'spec.ips';
}

/**
 * Decides one admission request.
 * @returns the decision; never throws (a store failure is a 500 denial).
 */
export async function admit(req: AdmissionRequest, store: Store): Promise<AdmissionDecision> {
  if (req.kind?.group !== GROUP) return allow;
  if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return allow;
  if (req.subResource) return allow;
  const obj = req.object as { kind?: string; metadata?: { name?: string }; spec?: unknown } | undefined;
  const old = req.oldObject as { spec?: unknown } | undefined;
  if (req.operation === 'UPDATE' && old && obj && isDeepStrictEqual(old.spec, obj.spec)) return allow;
  const kind = obj?.kind ?? req.kind?.kind ?? 'object';
  const name = obj?.metadata?.name ?? req.name ?? '?';
  const errors = objectErrors(obj);
  if (errors.length > 0) {
    return deny(
      400,
      `${kind} "${name}" is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`,
    );
  }
  if (kind !== 'IPPool') return allow;
  try {
    return await admitPool(
      obj as IPPool,
      req.operation === 'UPDATE' ? (old as IPPool | undefined) : undefined,
      store,
    );
  } catch (e) {
    return deny(
      500,
      `IPPool "${name}" could not be checked against the pools and claims in the store: ${(e as Error).message}; retry`,
    );
  }
}

async function admitPool(next: IPPool, prev: IPPool | undefined, store: Store): Promise<AdmissionDecision> {
  const name = next.metadata.name;
  const n = compilePool(next);
  let p: CompiledPool | undefined;
  if (prev) {
    try {
      p = compilePool(prev);
    } catch {
      // The stored pool predates validation (written around the webhook): nothing to compare with.
    }
  }
  if (p) {
    if (!sameSubnet(p, n)) {
      return deny(
        403,
        `IPPool "${name}": spec.subnet is immutable: "${prev!.spec.subnet}" cannot become "${next.spec.subnet}"; create a new IPPool with the new subnet and move the workloads to it`,
      );
    }
    if (p.network !== n.network) {
      return deny(
        403,
        `IPPool "${name}": spec.network is immutable: "${prev!.spec.network ?? DEFAULT_NETWORK}" cannot become "${next.spec.network ?? DEFAULT_NETWORK}" (claims are kept per network); create a new IPPool in that network instead`,
      );
    }
  }
  const others = new Map<string, IPPool>();
  for (const e of await store.list<IPPool>(POOL_PREFIX)) others.set(e.value.metadata.name, e.value);
  const overlap = poolOverlapError(n, name, others);
  if (overlap) return deny(403, overlap.message);
  if (!p) return allow;
  const removed = p.allocatable.difference(n.allocatable);
  if (removed.isEmpty()) return allow;
  const stranded: { claim: IPClaim; value: bigint }[] = [];
  for (const e of await store.list<IPClaim>(CLAIM_PREFIX)) {
    const c = e.value;
    if (c.spec?.pool !== name) continue;
    let v: bigint;
    try {
      v = parseAddr(c.spec.ip).value;
    } catch {
      continue;
    }
    if (removed.contains(v)) stranded.push({ claim: c, value: v });
  }
  if (stranded.length === 0) return allow;
  stranded.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  const shown = stranded
    .slice(0, HOLDERS_SHOWN)
    .map(
      (s) =>
        `${removingField(n, s.value)} removes ${formatValue(n.family, s.value)}, held by ${ownerText(s.claim)} (IPClaim ${s.claim.metadata.name})`,
    );
  const more = stranded.length > HOLDERS_SHOWN ? `; and ${stranded.length - HOLDERS_SHOWN} more` : '';
  return deny(
    403,
    `IPPool "${name}": the change takes ${stranded.length} address(es) in use out of the pool: ${shown.join('; ')}${more}; release them first (delete those pods; see ipkeeper get ipclaims) or keep them in the pool`,
  );
}

/** The AdmissionReview answer, in the apiVersion of the request. */
export function reviewResponse(apiVersion: string, uid: string, d: AdmissionDecision): object {
  return {
    apiVersion,
    kind: 'AdmissionReview',
    response: {
      uid,
      allowed: d.allowed,
      ...(d.allowed
        ? {}
        : { status: { status: 'Failure', code: d.code, reason: d.reason, message: d.message } }),
    },
  };
}

export interface WebhookServer {
  /** `host:port` actually bound. */
  address: string;
  port: number;
  /** Swaps the serving certificate (a rotated Secret) without dropping the listener. */
  setTls(tls: TlsMaterial): void;
  close(): Promise<void>;
}

export interface WebhookOptions {
  listen: string;
  tls: TlsMaterial;
  store: Store;
  log: ControllerLogger;
  metrics?: ControllerMetrics;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > BODY_LIMIT_BYTES) return undefined;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses `host:port`. @throws Error naming the flag value and its form. */
export function parseListen(flag: string, v: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d{1,5})$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535)
    throw new Error(`${flag} "${v}" must be host:port, e.g. 0.0.0.0:9443 or 127.0.0.1:9443`);
  return { host: m[1] || '0.0.0.0', port };
}

/**
 * Serves POST /validate (and GET /healthz) over TLS.
 * @throws Error when the address cannot be bound.
 */
export async function startWebhook(o: WebhookOptions): Promise<WebhookServer> {
  const { host, port } = parseListen('--webhook-listen', o.listen);
  const server = https.createServer({ cert: o.tls.cert, key: o.tls.key }, (req, res) => {
    void (async () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
      if (path !== WEBHOOK_PATH)
        return send(res, 404, {
          error: `no route ${req.method} ${path}; the webhook is POST ${WEBHOOK_PATH}`,
        });
      if (req.method !== 'POST') return send(res, 405, { error: `${WEBHOOK_PATH} takes POST` });
      const text = await readBody(req);
      if (text === undefined)
        return send(res, 413, { error: `AdmissionReview larger than ${BODY_LIMIT_BYTES} bytes` });
      let review: { apiVersion?: string; request?: AdmissionRequest };
      try {
        review = JSON.parse(text);
      } catch {
        return send(res, 400, {
          error: 'the body is not JSON; expected an admission.k8s.io/v1 AdmissionReview',
        });
      }
      const r = review.request;
      if (!r || typeof r.uid !== 'string') {
        return send(res, 400, {
          error: 'the AdmissionReview has no request.uid; expected an admission.k8s.io/v1 AdmissionReview',
        });
      }
      const decision = await admit(r, o.store);
      const kind = r.kind?.kind ?? 'unknown';
      const operation = r.operation ?? 'unknown';
      const result = decision.allowed ? 'allowed' : decision.code === 500 ? 'error' : 'denied';
      o.metrics?.admissions.inc({ kind, operation, result });
      if (!decision.allowed) {
        o.log.info(
          { kind, operation, name: r.name, code: decision.code, reason: decision.message },
          'admission denied',
        );
      }
      send(res, 200, reviewResponse(review.apiVersion ?? 'admission.k8s.io/v1', r.uid, decision));
    })().catch((e: unknown) => {
      o.log.error({ err: String(e) }, 'webhook request failed');
      if (!res.headersSent) send(res, 500, { error: String(e) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  o.log.info({ address: `${addr.address}:${addr.port}`, path: WEBHOOK_PATH }, 'admission webhook listening');
  return {
    address: `${addr.address}:${addr.port}`,
    port: addr.port,
    setTls(tls) {
      server.setSecureContext({ cert: tls.cert, key: tls.key });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
