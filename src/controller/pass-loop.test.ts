import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassLoop } from './pass-loop.ts';

const log = { debug() {}, info() {}, warn() {}, error() {} };

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('PassLoop', () => {
  it('many kicks before the pass runs are one pass', async () => {
    let runs = 0;
    const done = deferred();
    const loop = new PassLoop({
      name: 't',
      delayMs: 5,
      log,
      run: async () => {
        runs++;
        done.resolve();
      },
    });
    for (let i = 0; i < 100; i++) loop.kick();
    await done.promise;
    await loop.stop();
    assert.equal(runs, 1);
  });

  it('a kick during a pass schedules exactly one more', async () => {
    const results: string[] = [];
    let runs = 0;
    const gate = deferred();
    const second = deferred();
    const loop = new PassLoop({
      name: 't',
      delayMs: 1,
      log,
      run: async () => {
        runs++;
        if (runs === 1) await gate.promise;
        if (runs === 2) second.resolve();
      },
      onResult: (r) => results.push(r),
    });
    const first = loop.pass();
    loop.kick();
    loop.kick();
    gate.resolve();
    await first;
    await second.promise;
    await loop.stop();
    assert.equal(runs, 2);
    assert.deepEqual(results, ['ok', 'ok']);
  });

  it('a failed pass is retried until it succeeds, and reported as an error each time', async () => {
    const results: string[] = [];
    let runs = 0;
    const done = deferred();
    const loop = new PassLoop({
      name: 't',
      delayMs: 1,
      errorDelayMs: 1,
      log,
      run: async () => {
        runs++;
        if (runs < 3) throw new Error('API server unreachable');
        done.resolve();
      },
      onResult: (r) => results.push(r),
    });
    await loop.pass();
    await done.promise;
    await loop.stop();
    assert.deepEqual(results, ['error', 'error', 'ok']);
  });

  it('after stop, kicks run nothing', async () => {
    let runs = 0;
    const loop = new PassLoop({ name: 't', delayMs: 1, log, run: async () => void runs++ });
    await loop.stop();
    loop.kick();
    await loop.pass();
    assert.equal(runs, 0);
  });
});
