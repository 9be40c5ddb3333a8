/**
 * @module store/tls-context
 * One TLS context per set of TLS material, for HTTPS agents that would otherwise build one per
 * connection.
 *
 * Node's `tls.connect` builds a `SecureContext` from `ca`/`cert`/`key` for every new connection
 * unless it is handed one; building it parses the PEMs, and was the larger part of a new
 * connection's CPU to the API server here (cluster/connections.ts has the figures). Kubeconfig
 * material is read again for every request (a client certificate may rotate), so the context is
 * kept for as long as that material stays the same, and built anew when it changes.
 */
import tls from 'node:tls';

/** The request options `tls.createSecureContext` reads. */
const CONTEXT_OPTIONS = [
  'ca',
  'cert',
  'key',
  'pfx',
  'passphrase',
  'ciphers',
  'honorCipherOrder',
  'ecdhCurve',
  'crl',
  'dhparam',
  'secureOptions',
  'secureProtocol',
  'sessionIdContext',
] as const;

type Material = Partial<Record<(typeof CONTEXT_OPTIONS)[number], unknown>>;

function same(a: unknown, b: unknown): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  return a === b;
}

/** Whether two option sets carry the same TLS material (Buffers compared by content). */
function sameMaterial(a: object, b: object): boolean {
  const x = a as Material;
  const y = b as Material;
  return CONTEXT_OPTIONS.every((k) => same(x[k], y[k]));
}

/** Whether two option objects hold the same values under every key either has (Buffers by content). */
export function sameOptions(a: object, b: object): boolean {
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) if (!same(x[k], y[k])) return false;
  return true;
}

/** The last context built, handed out again while the material it came from is unchanged. */
export class TlsContexts {
  #last: { material: Material; context: tls.SecureContext } | undefined;

  /**
   * The context for the TLS material in `options` (request or agent options).
   * @throws Error as `tls.createSecureContext` does for unreadable material.
   */
  for(options: object): tls.SecureContext {
    if (this.#last && sameMaterial(this.#last.material, options)) return this.#last.context;
    const o = options as Material;
    const material: Material = {};
    for (const k of CONTEXT_OPTIONS) if (o[k] !== undefined) material[k] = o[k];
    const context = tls.createSecureContext(material as tls.SecureContextOptions);
    this.#last = { material, context };
    return context;
  }
}
