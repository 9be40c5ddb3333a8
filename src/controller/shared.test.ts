import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ControllerContext } from './context.ts';
import { acquireShared } from './shared.ts';

const ctx = () => ({}) as ControllerContext;

describe('acquireShared: one running thing per context and key, counted by reference', () => {
  it('the first acquire starts it, the last release stops it; a new acquire starts afresh', async () => {
    const c = ctx();
    const log: string[] = [];
    let n = 0;
    const start = async () => {
      log.push('start');
      return ++n;
    };
    const stop = async (v: number) => void log.push(`stop ${v}`);
    const [a, b] = await Promise.all([
      acquireShared(c, 'k', start, stop),
      acquireShared(c, 'k', start, stop),
    ]);
    assert.equal(a.value, 1);
    assert.equal(b.value, 1, 'the second shares the first');
    await a.release();
    await a.release(); // twice: counted once
    assert.deepEqual(log, ['start']);
    await b.release();
    assert.deepEqual(log, ['start', 'stop 1']);
    const again = await acquireShared(c, 'k', start, stop);
    assert.equal(again.value, 2);
    await again.release();
  });

  it('other contexts and other keys get their own', async () => {
    const c1 = ctx();
    const c2 = ctx();
    let n = 0;
    const start = async () => ++n;
    const stop = async () => {};
    const x = await acquireShared(c1, 'k', start, stop);
    const y = await acquireShared(c2, 'k', start, stop);
    const z = await acquireShared(c1, 'other', start, stop);
    assert.deepEqual([x.value, y.value, z.value], [1, 2, 3]);
  });

  it('a failed start is not kept: the next acquire tries again', async () => {
    const c = ctx();
    let fail = true;
    const start = async () => {
      if (fail) throw new Error('listing /api/v1/pods failed');
      return 'ok';
    };
    await assert.rejects(
      acquireShared(c, 'k', start, async () => {}),
      /listing \/api\/v1\/pods failed/,
    );
    fail = false;
    assert.equal((await acquireShared(c, 'k', start, async () => {})).value, 'ok');
  });
});
