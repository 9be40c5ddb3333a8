import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeRangeResponse, encodeRangeRequest, lastKey, RangeDecodeError } from './etcd-range.ts';

// A protobuf writer for the tests, written from the wire format (not from etcd-range.ts): a field is
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

  it('refuses a truncated message and an invalid wire type with RangeDecodeError', () => {
    const buf = rangeResponse([kv('key', 3n, '{"a":1}')], { revision: 7n, more: false });
    for (let cut = 1; cut < buf.length; cut++) {
      // Cutting inside the count field (the message's last) can leave a well-formed message; any
      // other cut must either decode or fail with RangeDecodeError, never with anything else.
      try {
        decodeRangeResponse(buf.subarray(0, cut));
      } catch (e) {
        assert.ok(e instanceof RangeDecodeError, `cut at ${cut}: ${String(e)}`);
      }
    }
    assert.throws(() => decodeRangeResponse(buf.subarray(0, 3)), RangeDecodeError);
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
});
