/**
 * SlotMap: the same answers as a Map for any sequence of writes and deletes, and the empty slots
 * it keeps instead of deleting stay bounded.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { COMPACT_SLACK, SlotMap } from './slot-map.ts';

type Op = { op: 'set'; key: string; value: number } | { op: 'delete'; key: string };

const KEYS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'];

const ops = fc.array(
  fc.oneof(
    {
      weight: 10,
      arbitrary: fc.record({
        op: fc.constant('set' as const),
        key: fc.constantFrom(...KEYS),
        value: fc.integer(),
      }),
    },
    {
      weight: 10,
      arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.constantFrom(...KEYS) }),
    },
  ),
  { maxLength: 200 },
);

function sameAs(s: SlotMap<number>, m: Map<string, number>): void {
  assert.equal(s.size, m.size);
  for (const k of KEYS) {
    assert.equal(s.get(k), m.get(k), `get(${k})`);
    assert.equal(s.has(k), m.has(k), `has(${k})`);
  }
  assert.deepEqual([...s.keys()].sort(), [...m.keys()].sort());
}

describe('SlotMap', () => {
  it('answers get, has, size and keys as a Map does after any writes and deletes', () => {
    fc.assert(
      fc.property(ops, (seq: Op[]) => {
        const s = new SlotMap<number>();
        const m = new Map<string, number>();
        for (const o of seq) {
          if (o.op === 'set') {
            assert.equal(s.set(o.key, o.value), s);
            m.set(o.key, o.value);
          } else {
            assert.equal(s.delete(o.key), m.delete(o.key), `delete(${o.key})`);
          }
          sameAs(s, m);
        }
      }),
    );
  });

  it('keeps the values that are falsy but not undefined: 0, false, null, the empty string', () => {
    const s = new SlotMap<number | boolean | string | null>();
    for (const [k, v] of [
      ['zero', 0],
      ['no', false],
      ['nil', null],
      ['empty', ''],
    ] as const)
      s.set(k, v);
    assert.equal(s.size, 4);
    assert.equal(s.get('zero'), 0);
    assert.equal(s.get('no'), false);
    assert.equal(s.get('nil'), null);
    assert.equal(s.get('empty'), '');
    assert.equal(s.has('nil'), true);
  });

  it('fills the same slot when a deleted key is written again (no empty slot left behind)', () => {
    const s = new SlotMap<number>();
    s.set('hot', 1);
    for (let i = 0; i < 5000; i++) {
      assert.equal(s.delete('hot'), true);
      assert.equal(s.emptySlots, 1);
      s.set('hot', i);
      assert.equal(s.emptySlots, 0);
    }
    assert.equal(s.delete('hot'), true);
    assert.equal(s.delete('hot'), false, 'a second delete finds nothing');
    assert.equal(s.emptySlots, 1, 'and leaves the count of empty slots alone');
  });

  it('drops its empty slots once they outnumber the keys held by more than COMPACT_SLACK', () => {
    const s = new SlotMap<number>();
    const held = 3000;
    for (let i = 0; i < held; i++) s.set(`keep-${i}`, i);
    let most = 0;
    // Keys never written again: every delete leaves an empty slot until a rebuild.
    for (let i = 0; i < 20_000; i++) {
      s.set(`once-${i}`, i);
      s.delete(`once-${i}`);
      most = Math.max(most, s.emptySlots);
      assert.ok(s.emptySlots <= s.size + COMPACT_SLACK, `${s.emptySlots} empty slots beside ${s.size} keys`);
    }
    assert.equal(most, held + COMPACT_SLACK, 'it waits until the bound before rebuilding');
    assert.ok(s.emptySlots < held + COMPACT_SLACK, 'and rebuilt at least once');
    assert.equal(s.size, held);
    assert.equal(s.get('keep-0'), 0);
    assert.equal(s.get(`keep-${held - 1}`), held - 1);
    assert.equal(s.get('once-0'), undefined);
    assert.deepEqual([...s.keys()].length, held);
  });
});
