/**
 * @module store/codec
 * How the memory, sqlite and etcd backends write a value as text, and read it back.
 *
 * Every value is JSON. One kind is written shorter: an IPClaim under `ipclaims/` whose envelope says
 * nothing its key does not (`apiVersion` and `kind` of an IPClaim, `metadata` holding only the
 * name, which is the key's) is stored as its `spec` alone, and read back with the envelope put
 * around it. That is a third less text per claim (451 → 301 bytes for a pod's claim), and a third
 * less for JSON.parse at an agent's start, which reads every claim (docs/BENCHMARKS.md, restart).
 * Any other claim (one with labels, say) and every other kind is stored whole.
 *
 * Reading accepts both forms under `ipclaims/`: a stored object with `apiVersion` or `spec` is a
 * whole object, any other object a claim's spec. So writing an object with neither under
 * `ipclaims/` is refused: it would read back as something else. An agent built before this format
 * reads a compact claim as a broken one, so the agents of one store run one version (no release
 * predates the format). The kubernetes backend does not use this: its objects are custom
 * resources, read by kubectl and other clients.
 */
import { API_VERSION } from '../api/kinds.ts';
import { StoreError } from './store.ts';
import type { Version, WatchEvent } from './store.ts';

/** The claims' key prefix (`CLAIM_PREFIX` in ipam/state.ts, which the store does not import). */
const CLAIMS = 'ipclaims/';

/**
 * The text stored for `value` under `key`.
 * @throws StoreError (not retryable) for what JSON cannot carry (undefined, functions, cycles,
 *   BigInt), and for an object under `ipclaims/` with neither `apiVersion` nor `spec`.
 */
export function encodeValue(key: string, value: unknown): string {
  if (!key.startsWith(CLAIMS)) return toJson(key, value);
  const spec = compactClaim(key, value);
  if (spec !== undefined) return toJson(key, spec);
  if (isObject(value) && !('apiVersion' in value) && !('spec' in value)) {
    // It would read back as a claim's spec: no such object belongs here.
    throw new StoreError(
      `store value for "${key}" is not an IPClaim (it has neither apiVersion nor spec); keys under ${CLAIMS} hold IPClaim objects`,
      { retryable: false },
    );
  }
  return toJson(key, value);
}

/**
 * The value stored as `text` under `key`.
 * @throws SyntaxError when `text` is not JSON (the caller names the key and the backend).
 */
export function decodeValue(key: string, text: string): unknown {
  const v = JSON.parse(text) as unknown;
  if (!key.startsWith(CLAIMS) || !isObject(v) || 'apiVersion' in v || 'spec' in v) return v;
  return { apiVersion: API_VERSION, kind: 'IPClaim', metadata: { name: key.slice(CLAIMS.length) }, spec: v };
}

/**
 * A put event whose `value` is decoded from `json` when first read, then kept. A listener that drops
 * the event by its version (its own write coming back) never pays the parse. Only for text this
 * process encoded (a corrupt value would throw in the listener's hands). The memory store shares one
 * such event among the listeners of a write (none of ours mutates a value); the sqlite store gives
 * each watcher its own.
 */
export function lazyPut(key: string, json: string, version: Version): WatchEvent<unknown> {
  let parsed: { value: unknown } | undefined;
  return {
    type: 'put',
    key,
    version,
    get value(): unknown {
      parsed ??= { value: decodeValue(key, json) };
      return parsed.value;
    },
  };
}

/**
 * Serializes a store value as it is.
 * @throws StoreError (not retryable) for what JSON cannot carry: undefined, functions, cycles, BigInt.
 */
export function toJson(key: string, value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (cause) {
    throw new StoreError(`store value for "${key}" cannot be written as JSON: ${String(cause)}`, {
      retryable: false,
      cause,
    });
  }
  if (json === undefined) {
    throw new StoreError(`store value for "${key}" is ${typeof value}, which JSON cannot carry`, {
      retryable: false,
    });
  }
  return json;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The spec to store for a claim whose envelope the key implies; undefined to store it whole. */
function compactClaim(key: string, value: unknown): unknown {
  if (!isObject(value)) return undefined;
  const { apiVersion, kind, metadata, spec, ...rest } = value;
  if (apiVersion !== API_VERSION || kind !== 'IPClaim' || Object.keys(rest).length > 0) return undefined;
  if (!isObject(metadata) || !isObject(spec) || 'apiVersion' in spec || 'spec' in spec) return undefined;
  const { name, ...more } = metadata;
  if (name !== key.slice(CLAIMS.length) || Object.keys(more).length > 0) return undefined;
  return spec;
}
