/**
 * The memory store: the contract suite, plus what only this backend promises (watch delivery never
 * re-enters the writer).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from './memory.ts';
import { storeContract } from './contract.ts';
import { StoreError } from './store.ts';
import type { WatchEvent } from './store.ts';

storeContract('MemoryStore contract', async () => new MemoryStore());

describe('MemoryStore', () => {
  it('delivers watch events after the write returns, never inside it', async () => {
    const s = new MemoryStore();
    const seen: WatchEvent[] = [];
    s.watch('claims/', (ev) => seen.push(ev));
    const p = s.create('claims/a', { n: 1 });
    assert.equal(seen.length, 0, 'no event may be delivered synchronously inside create()');
    await p;
    await Promise.resolve();
    assert.equal(seen.length, 1);
    await s.close();
  });

  it('lets a listener write to the store from inside onEvent', async () => {
    const s = new MemoryStore();
    const keys: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    s.watch('claims/', (ev) => {
      keys.push(ev.key);
      if (ev.key === 'claims/a') void s.create('claims/b', {});
      if (ev.key === 'claims/b') done();
    });
    await s.create('claims/a', {});
    await finished;
    assert.deepEqual(keys, ['claims/a', 'claims/b']);
    await s.close();
  });

  it('rejects every call after close() with a StoreError', async () => {
    const s = new MemoryStore();
    await s.close();
    await assert.rejects(s.get('claims/a'), StoreError);
    await assert.rejects(s.create('claims/a', {}), StoreError);
    await assert.rejects(s.list('claims/'), StoreError);
    assert.throws(() => s.watch('claims/', () => {}), StoreError);
  });

  it('refuses values JSON cannot carry, and writes nothing', async () => {
    const s = new MemoryStore();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const bad of [undefined, () => 1, cyclic, 10n]) {
      await assert.rejects(
        s.create('claims/a', bad),
        (e: unknown) => e instanceof StoreError && !e.retryable,
      );
    }
    assert.equal(s.size, 0);
    await s.close();
  });
});
