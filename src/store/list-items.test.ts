import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ListItems } from './list-items.ts';

/** Feeds `text` in chunks cut at `cuts` (byte offsets); returns the items and the rest. */
function read(text: string, cuts: number[] = []): { items: unknown[]; rest: unknown } {
  const bytes = Buffer.from(text, 'utf8');
  const r = new ListItems();
  const items: unknown[] = [];
  let at = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < bytes.length).sort((a, b) => a - b), bytes.length]) {
    r.push(bytes.subarray(at, c), (t) => items.push(JSON.parse(t)));
    at = c;
  }
  assert.equal(r.count, items.length);
  return { items, rest: JSON.parse(r.end()) };
}

const tricky = [
  {
    metadata: { name: 'a', resourceVersion: '7' },
    spec: { note: 'braces } { and brackets ] [ in a string' },
  },
  { metadata: { name: 'b' }, spec: { quote: 'say "hi" \\ back\\slash \\" end', list: [1, [2, { x: '}' }]] } },
  { metadata: { name: 'ü-é' }, spec: { text: 'naïve 😀 — €', empty: {}, none: [] } },
];
const listOf = (items: unknown[]): Record<string, unknown> => ({
  apiVersion: 'ipkeeper.io/v1alpha1',
  items,
  kind: 'IPClaimList',
  metadata: { continue: '', resourceVersion: '1234' },
});

describe('ListItems: a list answer read as it streams in', () => {
  it('hands over every item and keeps the rest, however the bytes are cut (every 2-way cut)', () => {
    const text = JSON.stringify(listOf(tricky));
    const whole = Buffer.byteLength(text);
    for (let cut = 0; cut <= whole; cut++) {
      const { items, rest } = read(text, [cut]);
      assert.deepEqual(items, tricky, `cut at byte ${cut}`);
      assert.deepEqual(rest, listOf([]), `cut at byte ${cut}`);
    }
  });

  it('reads one byte at a time, pretty-printed JSON included', () => {
    for (const text of [JSON.stringify(listOf(tricky)), JSON.stringify(listOf(tricky), null, 2)]) {
      const cuts = Array.from({ length: Buffer.byteLength(text) }, (_, i) => i);
      const { items, rest } = read(text, cuts);
      assert.deepEqual(items, tricky);
      assert.deepEqual(rest, listOf([]));
    }
  });

  it('an empty list and a list whose items come last', () => {
    assert.deepEqual(read(JSON.stringify(listOf([]))), { items: [], rest: listOf([]) });
    const last = '{"metadata":{"resourceVersion":"9"},"kind":"L","items":[{"a":1},{"b":[2]}]}';
    assert.deepEqual(read(last, [40]), {
      items: [{ a: 1 }, { b: [2] }],
      rest: { metadata: { resourceVersion: '9' }, kind: 'L', items: [] },
    });
  });

  it('any objects as items, cut anywhere, come back equal (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.dictionary(fc.string(), fc.jsonValue()), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (objs, rawCuts) => {
          const text = JSON.stringify(listOf(objs));
          const n = Buffer.byteLength(text);
          const { items, rest } = read(
            text,
            rawCuts.map((c) => c % (n + 1)),
          );
          assert.deepEqual(items, JSON.parse(JSON.stringify(objs)));
          assert.deepEqual(rest, listOf([]));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('an answer cut short fails at the end, naming how many items came', () => {
    const text = JSON.stringify(listOf(tricky));
    for (const len of [10, text.indexOf('"b"'), text.length - 3]) {
      const r = new ListItems();
      r.push(Buffer.from(text.slice(0, len)), () => {});
      assert.throws(() => r.end(), /the list answer ended early \(after \d+ items\)/);
    }
  });

  it('an item that is not an object is refused', () => {
    for (const bad of ['{"items":[{"a":1},"x"]}', '{"items":[3]}', '{"items":[null]}']) {
      const r = new ListItems();
      assert.throws(() => r.push(Buffer.from(bad), () => {}), /item \d+ is not an object/, bad);
    }
  });
});
