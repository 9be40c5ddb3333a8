/**
 * @module bench/fixtures
 * Objects as the engine and the CLI write them, for filling stores fast: pools, and claims with the
 * same shape and field sizes as `Ipam.newClaim` makes (64-hex container ids, 36-character pod uids),
 * keyed `ipclaims/<network>.<address key>` like the engine keys them.
 */
import { createHash } from 'node:crypto';
import { API_VERSION, type IPClaim, type IPPool } from '../src/api/kinds.ts';
import { claimName } from '../src/ipam/engine.ts';
import { CLAIM_PREFIX, POOL_PREFIX } from '../src/ipam/state.ts';
import { DEFAULT_NETWORK } from '../src/ipam/pools.ts';
import { formatValue, type Family } from '../src/net/addr.ts';
import type { Store } from '../src/store/store.ts';

export function poolObject(name: string, subnet: string, extra: Partial<IPPool['spec']> = {}): IPPool {
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name }, spec: { subnet, ...extra } };
}

export const poolKey = (name: string): string => POOL_PREFIX + name;

/** A container id as runtimes make them: 64 hex digits. */
export function containerId(tag: string): string {
  return createHash('sha256').update(tag).digest('hex');
}

function uid(tag: string): string {
  const h = createHash('md5').update(tag).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export interface ClaimSpec {
  pool: string;
  family: Family;
  value: bigint;
  /** Distinguishes the pods: container id, pod name and uid derive from it. */
  tag: string;
  node: string;
  cniNetwork: string;
  network?: string;
}

/** A claim and its store key, as `Ipam.newClaim` would write it for the pod `tag`. */
export function claimObject(c: ClaimSpec): { key: string; claim: IPClaim } {
  const network = c.network ?? DEFAULT_NETWORK;
  const name = claimName(network, c.family, c.value);
  return {
    key: CLAIM_PREFIX + name,
    claim: {
      apiVersion: API_VERSION,
      kind: 'IPClaim',
      metadata: { name },
      spec: {
        network,
        ip: formatValue(c.family, c.value),
        family: c.family,
        pool: c.pool,
        owner: { kind: 'Pod', namespace: 'bench', name: `pod-${c.tag}`, uid: uid(c.tag) },
        cniNetwork: c.cniNetwork,
        containerId: containerId(c.tag),
        ifName: 'eth0',
        node: c.node,
        createdAt: new Date(Date.UTC(2026, 0, 1)).toISOString(),
      },
    },
  };
}

/**
 * Creates `claims` in the store, `concurrency` creates in flight at a time (so group-committing stores
 * batch them and remote stores pipeline them).
 * @throws Error when a key already exists; StoreError from the store.
 */
export async function writeClaims(
  store: Store,
  claims: Iterable<{ key: string; claim: IPClaim }>,
  concurrency: number,
  onProgress?: (done: number) => void,
): Promise<number> {
  const it = claims[Symbol.iterator]();
  let done = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const n = it.next();
      if (n.done) return;
      const r = await store.create(n.value.key, n.value.claim);
      if (!r.created) throw new Error(`claim ${n.value.key} already exists`);
      done++;
      if (onProgress && done % 10_000 === 0) onProgress(done);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done;
}

/** `count` distinct values picked at random from [first, first + span), ascending. */
export function scatteredValues(first: bigint, span: number, count: number, rand: () => number): bigint[] {
  if (count > span) throw new Error(`cannot pick ${count} of ${span}`);
  // Partial Fisher-Yates over offsets: exact count, no repeats.
  const offs = new Uint32Array(span);
  for (let i = 0; i < span; i++) offs[i] = i;
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rand() * (span - i));
    const t = offs[i] as number;
    offs[i] = offs[j] as number;
    offs[j] = t;
  }
  return Array.from(offs.subarray(0, count))
    .sort((a, b) => a - b)
    .map((o) => first + BigInt(o));
}

export function shuffle<T>(xs: T[], rand: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}
