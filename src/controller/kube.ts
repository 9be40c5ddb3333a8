/**
 * @module controller/kube
 * One JSON request to the API server with the kubeconfig's credentials, for the few built-in
 * resources the controller touches itself (its Lease, its ValidatingWebhookConfiguration). Our own
 * kinds go through the `Store`; this is deliberately smaller: status codes come back as values (a 409
 * on a Lease is an expected outcome, not an exception), one deadline per call, no retries — the
 * callers (leader election, the caBundle patch) have their own loops.
 *
 * Requests go out through node:https rather than the generated clients of `@kubernetes/client-node`,
 * so the Lease's MicroTime fields are sent exactly as the server wants them and preconditions and
 * status codes stay under our control (the same reason src/store/kubernetes.ts gives).
 */
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

export const KUBE_TIMEOUT_MS = 5_000;

export interface KubeReply {
  status: number;
  /** The parsed JSON (an object or a Status), or the text when it is not JSON. */
  body: unknown;
}

/**
 * Sends `method path` with `body` as JSON (`contentType` for PATCH, default JSON merge patch).
 * @throws Error on a network or TLS failure or after `timeoutMs`; HTTP statuses are returned.
 */
export async function kubeJson(
  kc: KubeConfig,
  method: string,
  path: string,
  body?: unknown,
  opts: { timeoutMs?: number; contentType?: string } = {},
): Promise<KubeReply> {
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server)
    throw new Error(`the kubeconfig's context "${kc.getCurrentContext()}" names no server`);
  const o: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(o);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number | string[]> = {};
  for (const [k, v] of Object.entries((o.headers ?? {}) as http.OutgoingHttpHeaders)) {
    if (v !== undefined) headers[k] = v;
  }
  headers.Accept = 'application/json';
  headers['User-Agent'] = 'ipkeeper-controller';
  if (payload) {
    headers['Content-Type'] =
      opts.contentType ?? (method === 'PATCH' ? 'application/merge-patch+json' : 'application/json');
    headers['Content-Length'] = payload.length;
  }
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  const mod = url.protocol === 'http:' ? http : https;
  const signal = AbortSignal.timeout(opts.timeoutMs ?? KUBE_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      {
        method,
        headers,
        ca: o.ca,
        cert: o.cert,
        key: o.key,
        pfx: o.pfx,
        passphrase: o.passphrase,
        rejectUnauthorized: o.rejectUnauthorized,
        servername: o.servername,
        auth: o.auth,
        ...(o.agent ? { agent: o.agent } : {}),
        signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON ("404 page not found"): the text is the best message there is.
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** The message of a Kubernetes Status reply, for errors and logs. */
export function replyMessage(r: KubeReply): string {
  const b = r.body as { message?: unknown } | string | undefined;
  if (b && typeof b === 'object' && typeof b.message === 'string') return `HTTP ${r.status}: ${b.message}`;
  if (typeof b === 'string' && b.trim() !== '') return `HTTP ${r.status}: ${b.trim().slice(0, 300)}`;
  return `HTTP ${r.status}`;
}
