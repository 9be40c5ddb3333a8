import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventRing, EVENT_LIMIT } from './events.ts';

describe('events ring', () => {
  it('keeps the newest EVENT_LIMIT events, newest first', () => {
    const ring = new EventRing(EVENT_LIMIT, () => 0);
    for (let i = 1; i <= EVENT_LIMIT + 3; i++) ring.push({ kind: 'allocate', message: `m${i}` });
    const got = ring.recent();
    assert.equal(got.length, EVENT_LIMIT);
    assert.equal(got[0]?.message, `m${EVENT_LIMIT + 3}`);
    assert.equal(got.at(-1)?.message, 'm4');
    assert.equal(got[0]?.seq, EVENT_LIMIT + 3);
  });

  it('counts a repeated identical error instead of filling the ring with it', () => {
    let t = 0;
    const ring = new EventRing(5, () => t);
    const err = { kind: 'error' as const, command: 'STATUS', code: 'NOT_READY', message: 'no address' };
    ring.push({ kind: 'allocate', message: 'a' });
    ring.push(err);
    t = 1000;
    ring.push(err);
    ring.push(err);
    const got = ring.recent();
    assert.equal(got.length, 2);
    assert.equal(got[0]?.repeats, 3);
    assert.equal(got[0]?.at, '1970-01-01T00:00:01.000Z');
    ring.push({ ...err, code: 'BUSY' });
    assert.equal(ring.recent().length, 3, 'another code is another event');
  });

  it('tells listeners, and a throwing listener does not fail the push', () => {
    const ring = new EventRing();
    const seen: string[] = [];
    ring.subscribe(() => {
      throw new Error('broken stream');
    });
    const off = ring.subscribe((e) => seen.push(e.message));
    ring.push({ kind: 'release', message: 'x' });
    off();
    ring.push({ kind: 'release', message: 'y' });
    assert.deepEqual(seen, ['x']);
  });

  it('tee forwards every line and records only the listed event kinds', () => {
    const ring = new EventRing();
    const lines: string[] = [];
    const log = {
      info: (_o: object, m?: string) => lines.push(`info ${m}`),
      warn: (_o: object, m?: string) => lines.push(`warn ${m}`),
      error: (_o: object, m?: string) => lines.push(`error ${m}`),
    };
    const t = ring.tee(log, ['reclaim']);
    t.info(
      { event: 'reclaim', ip: '10.0.0.9', pool: 'p', reason: 'node-lease: node "n2" has no lease' },
      'reclaimed a leaked address',
    );
    t.warn({ task: 'lease' }, 'background task failed');
    t.info({ event: 'allocate' }, 'allocated');
    assert.deepEqual(lines, [
      'info reclaimed a leaked address',
      'warn background task failed',
      'info allocated',
    ]);
    const got = ring.recent();
    assert.equal(got.length, 1);
    assert.equal(got[0]?.kind, 'reclaim');
    assert.deepEqual(got[0]?.ips, ['10.0.0.9']);
    assert.match(got[0]?.message ?? '', /reclaimed a leaked address 10\.0\.0\.9 \(pool p\) — node-lease/);
  });
});
