/**
 * The pool-status and pool-finalizer reconcilers against the memory store. The memory store has no
 * API server, so a deletion is played the way the API server marks one: the pool is updated with
 * `metadata.deletionTimestamp` (test/kube/controller.test.ts runs the real thing).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../store/memory.ts';
import type { WatchEvent } from '../store/store.ts';
import { API_VERSION, type IPClaim, type IPPool } from '../api/kinds.ts';
import { storeContext } from '../../test/lib/controller-context.ts';
import { PoolStatusReconciler } from './pool-status.ts';
import { PoolFinalizerReconciler, POOL_FINALIZER, heldByMessage } from './finalizer.ts';
import { attachMetrics, createControllerMetrics } from './metrics.ts';
import { until as untilDone } from '../../test/lib/until.ts';

const DEADLINE_MS = 10_000;

function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  return untilDone(what, check, DEADLINE_MS, 10);
}

const pool = (name: string, spec: IPPool['spec']): IPPool => ({
  apiVersion: API_VERSION,
  kind: 'IPPool',
  metadata: { name },
  spec,
});

const claim = (pool: string, ip: string, owner: string): IPClaim => ({
  apiVersion: API_VERSION,
  kind: 'IPClaim',
  metadata: { name: `default.${ip.replaceAll('.', '-')}` },
  spec: {
    network: 'default',
    ip,
    family: 4,
    pool,
    owner: { kind: 'Pod', namespace: 'ns', name: owner },
    createdAt: '2026-01-01T00:00:00Z',
  },
});

const claimKey = (ip: string): string => `ipclaims/default.${ip.replaceAll('.', '-')}`;

describe('pool status reconciler', () => {
  it('writes total/used/reserved/free, follows claims and reservations, and coalesces a burst into one write', async () => {
    const store = new MemoryStore();
    const { ctx } = storeContext(store);
    const metrics = createControllerMetrics({ defaultMetrics: false });
    attachMetrics(ctx, metrics);
    await store.create('ippools/a', pool('a', { subnet: '10.6.0.0/24', ips: ['10.6.0.10-10.6.0.109'] }));
    await store.create('reservedips/r', {
      apiVersion: API_VERSION,
      kind: 'ReservedIP',
      metadata: { name: 'r' },
      spec: { ips: ['10.6.0.100-10.6.0.109'] },
    });
    await store.create(claimKey('10.6.0.10'), claim('a', '10.6.0.10', 'p0'));
    const r = new PoolStatusReconciler({ intervalMs: 20 });
    await r.start(ctx);
    try {
      const status = async () => (await store.get<IPPool>('ippools/a'))?.value.status;
      assert.deepEqual(
        await status(),
        { total: 100, used: 1, reserved: 10, free: 89 },
        'the first pass runs inside start',
      );
      const writes = async () =>
        (await metrics.registry.getSingleMetric('ipkeeper_pool_status_writes_total')!.get()).values[0]?.value;
      assert.equal(await writes(), 1);
      // 50 claims in one go (no timer can fire between these awaits): one pass, one write.
      for (let i = 11; i < 61; i++)
        await store.create(claimKey(`10.6.0.${i}`), claim('a', `10.6.0.${i}`, `p${i}`));
      await until('used 51', async () => ((await status())?.used === 51 ? true : undefined));
      assert.deepEqual(await status(), { total: 100, used: 51, reserved: 10, free: 39 });
      assert.equal(await writes(), 2, 'a burst of 50 claims is one status write');
      // The echo of our own write changes nothing: no further write.
      await r['loop']!.pass();
      assert.equal(await writes(), 2);
      const res = await store.get('reservedips/r');
      await store.delete('reservedips/r', res!.version);
      await until('reserved 0', async () => ((await status())?.reserved === 0 ? true : undefined));
      assert.deepEqual(await status(), { total: 100, used: 51, reserved: 0, free: 49 });
      const ok = (
        await metrics.registry.getSingleMetric('ipkeeper_controller_reconciles_total')!.get()
      ).values.find((v) => v.labels.reconciler === 'pool-status' && v.labels.result === 'ok');
      assert.ok((ok?.value ?? 0) >= 3);
    } finally {
      await r.stop();
    }
  });

  it('keeps the spec as it is when it writes the status', async () => {
    const store = new MemoryStore();
    const { ctx } = storeContext(store);
    const p = pool('b', { subnet: '10.7.0.0/30', gateway: '10.7.0.1' });
    await store.create('ippools/b', p);
    const r = new PoolStatusReconciler({ intervalMs: 20 });
    await r.start(ctx);
    await r.stop();
    const got = (await store.get<IPPool>('ippools/b'))!.value;
    assert.deepEqual(got.spec, p.spec);
    assert.deepEqual(got.status, { total: 1, used: 0, reserved: 0, free: 1 });
  });
});

describe('pool finalizer reconciler', () => {
  it('adds the finalizer, holds a deleted pool while claims name it, and lets go after the last one', async () => {
    const store = new MemoryStore();
    const { ctx, events } = storeContext(store);
    await store.create('ippools/a', pool('a', { subnet: '10.6.0.0/24' }));
    await store.create(claimKey('10.6.0.5'), claim('a', '10.6.0.5', 'web-0'));
    await store.create(claimKey('10.6.0.6'), claim('a', '10.6.0.6', 'web-1'));
    const r = new PoolFinalizerReconciler({ delayMs: 10 });
    await r.start(ctx);
    try {
      const get = async () => (await store.get<IPPool>('ippools/a'))!;
      assert.deepEqual((await get()).value.metadata.finalizers, [POOL_FINALIZER]);
      // The API server's deletion mark.
      const cur = await get();
      await store.update(
        'ippools/a',
        { ...cur.value, metadata: { ...cur.value.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' } },
        cur.version,
      );
      const ev = await until('the PoolInUse event', () => events.find((e) => e.reason === 'PoolInUse'));
      assert.equal(ev.type, 'Warning');
      assert.equal(ev.regarding.kind, 'IPPool');
      assert.equal(ev.regarding.name, 'a');
      assert.match(
        ev.message,
        /IPPool "a" is being deleted but is held by 2 claims: 10\.6\.0\.5 \(Pod ns\/web-0\), 10\.6\.0\.6 \(Pod ns\/web-1\)/,
      );
      assert.deepEqual((await get()).value.metadata.finalizers, [POOL_FINALIZER]);
      const c1 = await store.get(claimKey('10.6.0.5'));
      await store.delete(claimKey('10.6.0.5'), c1!.version);
      await until('the second event', () =>
        events.filter((e) => e.reason === 'PoolInUse').length === 2 ? true : undefined,
      );
      assert.match(events.at(-1)!.message, /held by 1 claim: 10\.6\.0\.6 \(Pod ns\/web-1\)/);
      assert.deepEqual((await get()).value.metadata.finalizers, [POOL_FINALIZER], 'still held by one claim');
      const c2 = await store.get(claimKey('10.6.0.6'));
      await store.delete(claimKey('10.6.0.6'), c2!.version);
      await until('the finalizer to go', async () =>
        (await get()).value.metadata.finalizers?.length === 0 ? true : undefined,
      );
      assert.ok(events.some((e) => e.reason === 'PoolReleased'));
    } finally {
      await r.stop();
    }
  });

  it('the pool-status and finalizer reconcilers share one cache', async () => {
    const store = new MemoryStore();
    const { ctx } = storeContext(store);
    let watches = 0;
    const counting = Object.create(store) as MemoryStore;
    counting.watch = <T>(prefix: string, onEvent: (ev: WatchEvent<T>) => void, onReset?: () => void) => {
      watches++;
      return store.watch<T>(prefix, onEvent, onReset);
    };
    const shared = { ...ctx, store: counting };
    const a = new PoolStatusReconciler();
    const b = new PoolFinalizerReconciler();
    await a.start(shared);
    await b.start(shared);
    assert.equal(watches, 3, 'pools, reservations, claims: once');
    await a.stop();
    await b.stop();
  });

  it('the held-by message names at most five claims', () => {
    const many = Array.from({ length: 7 }, (_, i) => claim('a', `10.6.0.${i + 1}`, `p${i}`));
    assert.equal(
      heldByMessage(many),
      'held by 7 claims: 10.6.0.1 (Pod ns/p0), 10.6.0.2 (Pod ns/p1), 10.6.0.3 (Pod ns/p2), 10.6.0.4 (Pod ns/p3), 10.6.0.5 (Pod ns/p4), and 2 more',
    );
  });
});
