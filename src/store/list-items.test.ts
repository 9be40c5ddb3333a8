import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ListItems, withoutManagedFields } from './list-items.ts';

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

describe('withoutManagedFields', () => {
  /** What the store keeps of an object: everything but metadata.managedFields. */
  const kept = (o: Record<string, any>): unknown => {
    const { managedFields: _m, ...metadata } = o.metadata ?? {};
    return { ...o, metadata };
  };
  const claim = {
    apiVersion: 'ipkeeper.io/v1alpha1',
    kind: 'IPClaim',
    metadata: {
      creationTimestamp: '2026-12-06T12:56:54Z',
      labels: { 'ipkeeper.io/shard': '7' },
      managedFields: [
        {
          apiVersion: 'ipkeeper.io/v1alpha1',
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:spec': { '.': {}, 'f:ip': {}, 'f:owner': { 'f:name': {} } } },
          manager: 'ipkeeper',
          operation: 'Update',
          time: '2026-12-06T12:56:54Z',
        },
      ],
      name: 'default.10.64.0.3',
      uid: 'c50b05c3',
    },
    spec: { ip: '10.64.0.3', owner: { kind: 'Pod', name: 'p' } },
  };

  it("cuts an API server object's managedFields, leaving the same object otherwise", () => {
    const text = JSON.stringify(claim);
    const cut = withoutManagedFields(text);
    assert.ok(cut.length < text.length - 150, cut);
    assert.deepEqual(JSON.parse(cut), kept(claim));
    // The only key of metadata, the first, the last.
    for (const metadata of [
      { managedFields: [{ a: 1 }] },
      { managedFields: [{ a: 1 }], name: 'x' },
      { name: 'x', managedFields: [] },
    ]) {
      const o = { apiVersion: 'v1', metadata, spec: {} };
      assert.deepEqual(JSON.parse(withoutManagedFields(JSON.stringify(o))), kept(o));
    }
    // A watch event: the object inside.
    const ev = { type: 'ADDED', object: claim };
    assert.deepEqual(JSON.parse(withoutManagedFields(JSON.stringify(ev))), {
      type: 'ADDED',
      object: kept(claim),
    });
  });

  it('leaves text alone when the key is in a string, in spec, or the layout is not the API server’s', () => {
    const cases: unknown[] = [
      { metadata: { name: 'x', annotations: { a: '"managedFields":[1]' } }, spec: {} },
      { metadata: { name: 'x' }, spec: { managedFields: [1, 2] } },
      { spec: { managedFields: [1] }, metadata: { name: 'x', managedFields: [2] } },
      { managedFields: [1], metadata: { name: 'x' } },
      { metadata: { name: 'x' } },
    ];
    for (const o of cases) {
      const text = JSON.stringify(o);
      assert.equal(withoutManagedFields(text), text, text);
    }
    // Cut short (a damaged answer): left whole, for JSON.parse to refuse.
    const short = JSON.stringify(claim).slice(0, 200);
    assert.equal(withoutManagedFields(short), short);
  });

  it('for any object, parses to what the store keeps of it, or is the text itself', () => {
    const json = fc.jsonValue({ maxDepth: 3 });
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
        fc.option(fc.array(json, { maxLength: 3 }), { nil: undefined }),
        json,
        fc.string(),
        (labels, managed, spec, name) => {
          const metadata = {
            labels,
            ...(managed === undefined ? {} : { managedFields: managed }),
            name,
          };
          const o = { apiVersion: 'ipkeeper.io/v1alpha1', kind: 'IPClaim', metadata, spec };
          const text = JSON.stringify(o);
          const cut = withoutManagedFields(text);
          const whole = JSON.parse(text) as Record<string, any>;
          assert.deepEqual(JSON.parse(cut), managed === undefined ? whole : kept(whole));
        },
      ),
    );
  });
});
