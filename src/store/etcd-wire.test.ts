import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeRangeResponse,
  decodeTxnResponse,
  decodeWatchResponse,
  encodeRangeRequest,
  encodeTxnRequest,
  encodeWatchCreate,
  lastKey,
  WireDecodeError,
  type KeyValueAt,
} from './etcd-wire.ts';

// A protobuf writer for the tests, written from the wire format (not from etcd-wire.ts): a field is
// a tag varint (field << 3 | wire type) and its payload.
function varint(v: bigint): number[] {
  let u = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    let b = Number(u & 0x7fn);
    u >>= 7n;
    if (u > 0n) b |= 0x80;
    out.push(b);
  } while (u > 0n);
  return out;
}
const field = {
  varint: (n: number, v: bigint): Buffer => Buffer.from([...varint(BigInt(n * 8)), ...varint(v)]),
  bytes: (n: number, b: Buffer): Buffer =>
    Buffer.concat([Buffer.from([...varint(BigInt(n * 8 + 2)), ...varint(BigInt(b.length))]), b]),
  fixed64: (n: number): Buffer => Buffer.concat([Buffer.from(varint(BigInt(n * 8 + 1))), Buffer.alloc(8, 7)]),
  fixed32: (n: number): Buffer => Buffer.concat([Buffer.from(varint(BigInt(n * 8 + 5))), Buffer.alloc(4, 9)]),
};

interface Kv {
  key: string;
  value: string;
  mod: bigint;
  create: bigint;
  version: bigint;
  lease: bigint;
}

/** mvccpb.KeyValue: key 1, create_revision 2, mod_revision 3, version 4, value 5, lease 6. */
function keyValue(kv: Kv, opts: { reverse?: boolean; unknown?: boolean } = {}): Buffer {
  const parts = [
    field.bytes(1, Buffer.from(kv.key)),
    field.varint(2, kv.create),
    field.varint(3, kv.mod),
    field.varint(4, kv.version),
    field.bytes(5, Buffer.from(kv.value)),
    field.varint(6, kv.lease),
  ];
  if (opts.unknown) parts.push(field.fixed64(17), field.fixed32(18), field.bytes(19, Buffer.from('x')));
  if (opts.reverse) parts.reverse();
  return Buffer.concat(parts);
}

/** RangeResponse: header 1 (ResponseHeader: cluster_id 1, member_id 2, revision 3, raft_term 4), kvs 2, more 3, count 4. */
function rangeResponse(
  kvs: Kv[],
  opts: { revision: bigint; more: boolean; reverse?: boolean; unknown?: boolean },
): Buffer {
  const header = Buffer.concat([
    field.varint(1, 0xfedcba9876543210n),
    field.varint(2, 12345n),
    field.varint(3, opts.revision),
    field.varint(4, 3n),
  ]);
  const parts = [
    field.bytes(1, header),
    ...kvs.map((kv) => field.bytes(2, keyValue(kv, opts))),
    ...(opts.more ? [field.varint(3, 1n)] : []),
    field.varint(4, BigInt(kvs.length)),
  ];
  if (opts.unknown) parts.push(field.bytes(99, Buffer.from('future')));
  // Field order is the writer's choice: a reader must take the header after the key-values too.
  if (opts.reverse) {
    const [h, ...rest] = parts;
    parts.splice(0, parts.length, ...rest, h as Buffer);
  }
  return Buffer.concat(parts);
}

function decoded(buf: Buffer): { revision: string; more: boolean; kvs: [string, string, string][] } {
  const page = decodeRangeResponse(buf);
  const kvs: [string, string, string][] = [];
  for (let i = 0; i < page.count; i++) {
    const s = page.spans.slice(i * 4, i * 4 + 4) as [number, number, number, number];
    kvs.push([
      buf.toString('utf8', s[0], s[1]),
      page.modRevisions[i] as string,
      buf.toString('utf8', s[2], s[3]),
    ]);
  }
  return { revision: page.revision, more: page.more, kvs };
}

const kv = (key: string, mod: bigint, value = '{}'): Kv => ({
  key,
  value,
  mod,
  create: mod,
  version: 1n,
  lease: 0n,
});

describe('decodeRangeResponse', () => {
  it('reads the header revision, each key, mod_revision and value, and more', () => {
    const buf = rangeResponse([kv('/p/ipclaims/a', 5n, '{"a":1}'), kv('/p/ipclaims/b', 9n, '[]')], {
      revision: 12n,
      more: true,
    });
    assert.deepEqual(decoded(buf), {
      revision: '12',
      more: true,
      kvs: [
        ['/p/ipclaims/a', '5', '{"a":1}'],
        ['/p/ipclaims/b', '9', '[]'],
      ],
    });
    assert.equal(lastKey(buf, decodeRangeResponse(buf))?.toString(), '/p/ipclaims/b');
  });

  it('an empty page: no key-values, no last key, more false when the field is left out', () => {
    const buf = rangeResponse([], { revision: 1n, more: false });
    const page = decodeRangeResponse(buf);
    assert.deepEqual([page.count, page.more, page.revision], [0, false, '1']);
    assert.equal(lastKey(buf, page), undefined);
  });

  it('a revision above 2^53 keeps every digit', () => {
    const big = 2n ** 62n + 12345n;
    const buf = rangeResponse([kv('k', big)], { revision: big + 1n, more: false });
    const d = decoded(buf);
    assert.equal(d.revision, String(big + 1n));
    assert.equal(d.kvs[0]?.[1], String(big));
  });

  it('a value left out (proto3 leaves out empty bytes) is an empty range', () => {
    const buf = field.bytes(2, Buffer.concat([field.bytes(1, Buffer.from('k')), field.varint(3, 4n)]));
    assert.deepEqual(decoded(buf).kvs, [['k', '4', '']]);
  });

  it('skips fields it does not know, of every wire type, in any order', () => {
    const kvs = [kv('a', 3n, '"x"'), kv('b', 4n, '"y"')];
    const plain = decoded(rangeResponse(kvs, { revision: 7n, more: true }));
    const odd = decoded(rangeResponse(kvs, { revision: 7n, more: true, reverse: true, unknown: true }));
    assert.deepEqual(odd, plain);
  });

  it('refuses a truncated message and an invalid wire type with WireDecodeError', () => {
    const buf = rangeResponse([kv('key', 3n, '{"a":1}')], { revision: 7n, more: false });
    for (let cut = 1; cut < buf.length; cut++) {
      // Cutting inside the count field (the message's last) can leave a well-formed message; any
      // other cut must either decode or fail with WireDecodeError, never with anything else.
      try {
        decodeRangeResponse(buf.subarray(0, cut));
      } catch (e) {
        assert.ok(e instanceof WireDecodeError, `cut at ${cut}: ${String(e)}`);
      }
    }
    assert.throws(() => decodeRangeResponse(buf.subarray(0, 3)), WireDecodeError);
    assert.throws(() => decodeRangeResponse(Buffer.from([(1 << 3) | 3])), /wire type 3/);
    assert.throws(() => decodeRangeResponse(Buffer.from([0x12, 0x7f, 0x00])), /runs past its message/);
    // A varint field it skips (wire type 0, field 9): eleven bytes, or cut off, is refused too.
    const longVarint = [0x48, ...Array<number>(10).fill(0xff), 0x01];
    assert.throws(() => decodeRangeResponse(Buffer.from(longVarint)), /longer than 10 bytes/);
    assert.throws(() => decodeRangeResponse(Buffer.from([0x48, 0xff, 0xff])), /truncated varint/);
    assert.equal(decodeRangeResponse(Buffer.from([0x48, 0xff, 0x01])).count, 0);
  });

  it('property: whatever etcd sends in whatever field order, every key-value comes back as written', () => {
    const kvArb = fc.record({
      key: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
      value: fc.string({ maxLength: 200, unit: 'grapheme' }),
      mod: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
      create: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
      version: fc.bigInt({ min: 1n, max: 2n ** 40n }),
      lease: fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    });
    fc.assert(
      fc.property(
        fc.array(kvArb, { maxLength: 30 }),
        fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        (kvs, revision, more, reverse, unknown) => {
          const d = decoded(rangeResponse(kvs, { revision, more, reverse, unknown }));
          assert.deepEqual(d, {
            revision: String(revision),
            more,
            kvs: kvs.map((k) => [k.key, String(k.mod), k.value]),
          });
        },
      ),
    );
  });
});

describe('encodeRangeRequest', () => {
  it('writes key, range_end, limit and revision as RangeRequest fields 1-4', () => {
    const got = encodeRangeRequest({
      key: Buffer.from('a'),
      rangeEnd: Buffer.from('b'),
      limit: 300,
      revision: '5',
    });
    const want = Buffer.concat([
      field.bytes(1, Buffer.from('a')),
      field.bytes(2, Buffer.from('b')),
      field.varint(3, 300n),
      field.varint(4, 5n),
    ]);
    assert.deepEqual(got, want);
  });

  it('leaves out a zero limit and revision "0" (proto3 defaults), and keeps a big revision exact', () => {
    const none = encodeRangeRequest({
      key: Buffer.from('k'),
      rangeEnd: Buffer.from('l'),
      limit: 0,
      revision: '0',
    });
    assert.deepEqual(
      none,
      Buffer.concat([field.bytes(1, Buffer.from('k')), field.bytes(2, Buffer.from('l'))]),
    );
    const big = encodeRangeRequest({
      key: Buffer.from('k'),
      rangeEnd: Buffer.from('l'),
      limit: 0,
      revision: String(2n ** 62n + 1n),
    });
    assert.deepEqual(big.subarray(none.length), field.varint(4, 2n ** 62n + 1n));
  });

  it('leaves out an empty range_end: etcd reads a present empty one as "from key on"', () => {
    const one = encodeRangeRequest({
      key: Buffer.from('k'),
      rangeEnd: Buffer.alloc(0),
      limit: 0,
      revision: '0',
    });
    assert.deepEqual(one, field.bytes(1, Buffer.from('k')));
  });
});

/** [key, mod_revision, value] of a decoded key-value, read out of the message it points into. */
function kvText(buf: Buffer, at: KeyValueAt | undefined): [string, string, string] | undefined {
  if (!at) return undefined;
  return [
    buf.toString('utf8', at.keyStart, at.keyEnd),
    at.modRevision,
    buf.toString('utf8', at.valueStart, at.valueEnd),
  ];
}

const header = (revision: bigint): Buffer =>
  Buffer.concat([
    field.varint(1, 0xfedcba9876543210n),
    field.varint(2, 77n),
    field.varint(3, revision),
    field.varint(4, 2n),
  ]);

describe('encodeTxnRequest', () => {
  it('writes compares, then the success and failure branches, as TxnRequest fields 1-3', () => {
    const k = Buffer.from('/p/ipclaims/a');
    const got = encodeTxnRequest(
      [
        { key: k, target: 'create', revision: '0' },
        { key: Buffer.from('/p/b'), target: 'mod', revision: String(2n ** 62n) },
      ],
      [{ put: k, value: Buffer.from('{"x":1}') }, { delete: Buffer.from('/p/b') }],
      [{ get: k }],
    );
    // Compare: result 1 (EQUAL = 0, left out), target 2 (CREATE = 1, MOD = 2), key 3,
    // create_revision 5 / mod_revision 6 (a oneof: written even when 0).
    const want = Buffer.concat([
      field.bytes(1, Buffer.concat([field.varint(2, 1n), field.bytes(3, k), field.varint(5, 0n)])),
      field.bytes(
        1,
        Buffer.concat([field.varint(2, 2n), field.bytes(3, Buffer.from('/p/b')), field.varint(6, 2n ** 62n)]),
      ),
      // RequestOp: request_put 2 (PutRequest key 1, value 2), request_delete_range 3 (key 1).
      field.bytes(
        2,
        field.bytes(2, Buffer.concat([field.bytes(1, k), field.bytes(2, Buffer.from('{"x":1}'))])),
      ),
      field.bytes(2, field.bytes(3, field.bytes(1, Buffer.from('/p/b')))),
      // request_range 1 (RangeRequest key 1).
      field.bytes(3, field.bytes(1, field.bytes(1, k))),
    ]);
    assert.deepEqual(got, want);
  });

  it('property: any keys, values (past 127 bytes: multi-byte lengths) and revisions encode as the wire format says', () => {
    const bytesArb = fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a));
    const keyArb = fc.uint8Array({ minLength: 1, maxLength: 300 }).map((a) => Buffer.from(a));
    const revArb = fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }));
    const opArb = fc.oneof(
      fc.record({ put: keyArb, value: bytesArb }),
      fc.record({ get: keyArb }),
      fc.record({ delete: keyArb }),
    );
    const cmpArb = fc.record({
      key: keyArb,
      target: fc.constantFrom('create' as const, 'mod' as const),
      revision: revArb,
    });
    const opBytes = (op: { put: Buffer; value: Buffer } | { get: Buffer } | { delete: Buffer }): Buffer =>
      'put' in op
        ? field.bytes(2, Buffer.concat([field.bytes(1, op.put), field.bytes(2, op.value)]))
        : 'get' in op
          ? field.bytes(1, field.bytes(1, op.get))
          : field.bytes(3, field.bytes(1, op.delete));
    fc.assert(
      fc.property(
        fc.array(cmpArb, { maxLength: 5 }),
        fc.array(opArb, { maxLength: 5 }),
        fc.array(opArb, { maxLength: 5 }),
        (cmps, success, failure) => {
          const got = encodeTxnRequest(
            cmps.map((c) => ({ ...c, revision: String(c.revision) })),
            success,
            failure,
          );
          const want = Buffer.concat([
            ...cmps.map((c) =>
              field.bytes(
                1,
                Buffer.concat([
                  field.varint(2, c.target === 'create' ? 1n : 2n),
                  field.bytes(3, c.key),
                  field.varint(c.target === 'create' ? 5 : 6, c.revision),
                ]),
              ),
            ),
            ...success.map((op) => field.bytes(2, opBytes(op))),
            ...failure.map((op) => field.bytes(3, opBytes(op))),
          ]);
          assert.deepEqual(got, want);
        },
      ),
    );
  });

  it('an empty transaction is an empty message', () => {
    assert.equal(encodeTxnRequest([], [], []).length, 0);
  });
});

describe('decodeTxnResponse', () => {
  /** TxnResponse: header 1, succeeded 2, responses 3 (ResponseOp: response_range 1, response_put 2, response_delete_range 3). */
  function txnResponse(
    revision: bigint,
    succeeded: boolean,
    ops: ({ range: Kv[] } | 'put' | 'delete')[],
    opts: { reverse?: boolean; unknown?: boolean } = {},
  ): Buffer {
    const parts = [
      field.bytes(1, header(revision)),
      ...(succeeded ? [field.varint(2, 1n)] : []),
      ...ops.map((op) => {
        if (op === 'put') return field.bytes(3, field.bytes(2, field.bytes(1, header(revision))));
        if (op === 'delete') {
          return field.bytes(
            3,
            field.bytes(3, Buffer.concat([field.bytes(1, header(revision)), field.varint(2, 1n)])),
          );
        }
        const range = Buffer.concat([
          field.bytes(1, header(revision)),
          ...op.range.map((k) => field.bytes(2, keyValue(k, opts))),
          field.varint(4, BigInt(op.range.length)),
        ]);
        return field.bytes(3, field.bytes(1, range));
      }),
    ];
    if (opts.unknown) parts.push(field.fixed64(40), field.bytes(41, Buffer.from('later')));
    if (opts.reverse) parts.reverse();
    return Buffer.concat(parts);
  }

  it('reads the revision, succeeded, and the first key-value of each get, in branch order', () => {
    const buf = txnResponse(31n, false, [
      { range: [kv('/p/a', 30n, '{"a":1}'), kv('/p/z', 2n)] },
      { range: [] },
      'put',
      'delete',
    ]);
    const t = decodeTxnResponse(buf);
    assert.equal(t.revision, '31');
    assert.equal(t.succeeded, false);
    assert.deepEqual(
      t.gets.map((g) => kvText(buf, g)),
      [['/p/a', '30', '{"a":1}'], undefined, undefined, undefined],
    );
  });

  it('succeeded is true only when the field says so; a message of nothing is a failed txn at revision 0', () => {
    assert.equal(decodeTxnResponse(txnResponse(5n, true, ['put'])).succeeded, true);
    assert.deepEqual(decodeTxnResponse(Buffer.alloc(0)), { revision: '0', succeeded: false, gets: [] });
  });

  it('property: any field order, unknown fields, any revision: the same answer', () => {
    const kvArb = fc.record({
      key: fc.string({ minLength: 1, maxLength: 30, unit: 'grapheme' }),
      value: fc.string({ maxLength: 100, unit: 'grapheme' }),
      mod: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
      create: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
      version: fc.bigInt({ min: 1n, max: 2n ** 40n }),
      lease: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }),
    });
    const opArb = fc.oneof(
      fc.constant('put' as const),
      fc.constant('delete' as const),
      fc.record({ range: fc.array(kvArb, { maxLength: 3 }) }),
    );
    fc.assert(
      fc.property(
        fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }),
        fc.boolean(),
        fc.array(opArb, { maxLength: 8 }),
        fc.boolean(),
        (rev, ok, ops, odd) => {
          const plain = txnResponse(rev, ok, ops);
          const twisted = txnResponse(rev, ok, ops, { reverse: odd, unknown: odd });
          for (const buf of [plain, twisted]) {
            const t = decodeTxnResponse(buf);
            assert.equal(t.revision, String(rev));
            assert.equal(t.succeeded, ok);
            const gets = t.gets.map((g) => kvText(buf, g));
            // Reversing reverses the responses too: compare as the message lists them.
            const listed = buf === twisted && odd ? [...ops].reverse() : ops;
            assert.deepEqual(
              gets,
              listed.map((op) =>
                typeof op === 'object' && op.range[0]
                  ? [op.range[0].key, String(op.range[0].mod), op.range[0].value]
                  : undefined,
              ),
            );
          }
        },
      ),
    );
  });

  it('refuses a cut message with WireDecodeError, never anything else', () => {
    const buf = txnResponse(9n, false, [{ range: [kv('/p/key', 3n, '{"v":true}')] }]);
    for (let cut = 1; cut < buf.length; cut++) {
      try {
        decodeTxnResponse(buf.subarray(0, cut));
      } catch (e) {
        assert.ok(e instanceof WireDecodeError, `cut at ${cut}: ${String(e)}`);
      }
    }
    assert.throws(() => decodeTxnResponse(buf.subarray(0, buf.length - 1)), WireDecodeError);
  });
});

describe('encodeWatchCreate', () => {
  it('a WatchRequest with create_request (1): key 1, range_end 2, start_revision 3, progress_notify 4', () => {
    const got = encodeWatchCreate({
      key: Buffer.from('/p/'),
      rangeEnd: Buffer.from('/p0'),
      startRevision: 2n ** 60n,
      progressNotify: true,
    });
    const want = field.bytes(
      1,
      Buffer.concat([
        field.bytes(1, Buffer.from('/p/')),
        field.bytes(2, Buffer.from('/p0')),
        field.varint(3, 2n ** 60n),
        field.varint(4, 1n),
      ]),
    );
    assert.deepEqual(got, want);
  });

  it('leaves out start_revision 0 ("from now") and progress_notify false', () => {
    const got = encodeWatchCreate({
      key: Buffer.from('a'),
      rangeEnd: Buffer.from('b'),
      startRevision: 0n,
      progressNotify: false,
    });
    assert.deepEqual(
      got,
      field.bytes(1, Buffer.concat([field.bytes(1, Buffer.from('a')), field.bytes(2, Buffer.from('b'))])),
    );
  });
});

describe('decodeWatchResponse', () => {
  /** mvccpb.Event: type 1 (PUT 0 left out, DELETE 1), kv 2, prev_kv 3. */
  function event(type: 0 | 1, k: Kv, withPrev = false): Buffer {
    return Buffer.concat([
      ...(type === 1 ? [field.varint(1, 1n)] : []),
      field.bytes(2, keyValue(k)),
      ...(withPrev ? [field.bytes(3, keyValue({ ...k, value: 'before' }))] : []),
    ]);
  }

  it('reads the revision and each event: its type, key, mod_revision and value', () => {
    const buf = Buffer.concat([
      field.bytes(1, header(40n)),
      field.varint(2, 7n), // watch_id
      field.bytes(11, event(0, kv('/p/a', 39n, '{"n":1}'))),
      field.bytes(11, event(1, { ...kv('/p/b', 40n), value: '' }, true)),
    ]);
    const w = decodeWatchResponse(buf);
    assert.deepEqual(
      [w.revision, w.created, w.canceled, w.compactRevision, w.cancelReason],
      ['40', false, false, '0', ''],
    );
    assert.deepEqual(
      w.events.map((e) => [e.type, kvText(buf, e.kv)]),
      [
        ['put', ['/p/a', '39', '{"n":1}']],
        ['delete', ['/p/b', '40', '']],
      ],
    );
  });

  it('reads created, and a cancel with its compact revision and reason', () => {
    const created = decodeWatchResponse(Buffer.concat([field.bytes(1, header(3n)), field.varint(3, 1n)]));
    assert.deepEqual([created.revision, created.created, created.events.length], ['3', true, 0]);
    const canceled = decodeWatchResponse(
      Buffer.concat([
        field.bytes(1, header(90n)),
        field.varint(4, 1n),
        field.varint(5, 2n ** 55n + 3n),
        field.bytes(6, Buffer.from('mvcc: required revision has been compacted')),
        field.fixed32(30),
      ]),
    );
    assert.deepEqual(
      [canceled.canceled, canceled.compactRevision, canceled.cancelReason],
      [true, String(2n ** 55n + 3n), 'mvcc: required revision has been compacted'],
    );
  });

  it('refuses an event without its key-value, an event type it does not know, and a cut message', () => {
    assert.throws(() => decodeWatchResponse(field.bytes(11, field.varint(1, 1n))), /without its key-value/);
    assert.throws(
      () =>
        decodeWatchResponse(
          field.bytes(11, Buffer.concat([field.varint(1, 2n), field.bytes(2, keyValue(kv('k', 1n)))])),
        ),
      /unknown type 2/,
    );
    const buf = Buffer.concat([field.bytes(1, header(4n)), field.bytes(11, event(0, kv('/p/x', 4n, '"v"')))]);
    for (let cut = 1; cut < buf.length; cut++) {
      try {
        decodeWatchResponse(buf.subarray(0, cut));
      } catch (e) {
        assert.ok(e instanceof WireDecodeError, `cut at ${cut}: ${String(e)}`);
      }
    }
    assert.throws(() => decodeWatchResponse(buf.subarray(0, buf.length - 1)), WireDecodeError);
  });
});
