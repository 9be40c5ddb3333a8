/**
 * @module store/etcd-range
 * etcd's `KV/Range` on the wire, for `EtcdStore.list`: a request encoder and a response decoder
 * written against etcd's `rpc.proto` and `kv.proto` (proto3), so a page of 10,000 claims is read
 * straight out of the gRPC message.
 *
 * Why not the etcd3 client's own `kv.range`: it decodes with protobufjs into objects (`toObject`,
 * every int64 through a Long into a string, a Buffer per key and per value) before we look at a
 * byte. At 100,000 claims that was most of an agent's restart on etcd (DESIGN "As built": restart).
 * Here the decoder only finds where each key and value lies in the message and reads each
 * `mod_revision` as text; the caller makes one string per key and parses the value in place.
 *
 * Only the fields `list` needs are read; every other field is skipped by its wire type, so a newer
 * etcd that adds fields still decodes.
 */

/** The part of a `RangeResponse` that `list` uses. */
export interface RangePage {
  /** The header's revision (the store revision the page was read at), decimal. */
  revision: string;
  /** More keys lie in the range beyond this page. */
  more: boolean;
  /** Keys in the page. */
  count: number;
  /**
   * Byte offsets into the message, four per key-value in key order: key start, key end, value
   * start, value end.
   */
  spans: number[];
  /** Each key-value's `mod_revision`, decimal. */
  modRevisions: string[];
}

/** The last key of a page, copied out of the message; undefined for an empty page. */
export function lastKey(buf: Buffer, page: RangePage): Buffer | undefined {
  if (page.count === 0) return undefined;
  const i = (page.count - 1) * 4;
  return Buffer.from(buf.subarray(page.spans[i], page.spans[i + 1]));
}

export interface RangeRequest {
  key: Buffer;
  rangeEnd: Buffer;
  /** 0: no limit. */
  limit: number;
  /** Decimal revision to read at; "0" for the newest. */
  revision: string;
}

/** A malformed message: a truncated field, an impossible wire type. */
export class RangeDecodeError extends Error {
  constructor(message: string) {
    super(`etcd Range response: ${message}`);
    this.name = 'RangeDecodeError';
  }
}

// ---- encoding ----

function varintBytes(v: bigint): number[] {
  if (v < 0n) v = BigInt.asUintN(64, v);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return out;
}

function bytesField(field: number, b: Buffer): Buffer {
  return Buffer.concat([Buffer.from([field * 8 + 2, ...varintBytes(BigInt(b.length))]), b]);
}

function varintField(field: number, v: bigint): Buffer {
  return Buffer.from([field * 8, ...varintBytes(v)]);
}

/** `etcdserverpb.RangeRequest` with key (1), range_end (2), limit (3) and revision (4). */
export function encodeRangeRequest(r: RangeRequest): Buffer {
  const parts = [bytesField(1, r.key), bytesField(2, r.rangeEnd)];
  if (r.limit > 0) parts.push(varintField(3, BigInt(r.limit)));
  if (r.revision !== '0') parts.push(varintField(4, BigInt(r.revision)));
  return Buffer.concat(parts);
}

// ---- decoding ----

/** Field tags (field number << 3 | wire type) of the fields read. */
const fieldTag = (field: number, wireType: 0 | 2): number => (field << 3) | wireType;
/** RangeResponse: header = 1, kvs = 2 (repeated), more = 3. */
const RESPONSE_HEADER = fieldTag(1, 2);
const RESPONSE_KVS = fieldTag(2, 2);
const RESPONSE_MORE = fieldTag(3, 0);
/** ResponseHeader: revision = 3. */
const HEADER_REVISION = fieldTag(3, 0);
/** mvccpb.KeyValue: key = 1, mod_revision = 3, value = 5. */
const KV_KEY = fieldTag(1, 2);
const KV_MOD_REVISION = fieldTag(3, 0);
const KV_VALUE = fieldTag(5, 2);

/** A cursor over one message's bytes. */
class Reader {
  pos: number;
  readonly buf: Buffer;
  readonly end: number;
  constructor(buf: Buffer, pos: number, end: number) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  /** A varint that fits 32 bits unsigned (tags, lengths). */
  uint32(): number {
    const b = this.buf;
    let v = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new RangeDecodeError('truncated varint');
      const x = b[this.pos++] as number;
      if (shift < 28) v |= (x & 0x7f) << shift;
      else if (shift === 28) v += (x & 0x0f) * 2 ** 28;
      // Longer varints (a negative int32 as 10 bytes) keep only what fits; lengths are never that.
      if (x < 0x80) return v;
      shift += 7;
      if (shift > 63) throw new RangeDecodeError('varint longer than 10 bytes');
    }
  }

  /** An int64 varint as decimal text: a number's text up to 2^49, a bigint's above. */
  int64Text(): string {
    const b = this.buf;
    const start = this.pos;
    let v = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) throw new RangeDecodeError('truncated varint');
      const x = b[this.pos++] as number;
      v += (x & 0x7f) * mul;
      if (x < 0x80) {
        if (i < 7) return String(v);
        return String(this.bigVarint(start));
      }
      mul *= 128;
      if (i >= 9) throw new RangeDecodeError('varint longer than 10 bytes');
    }
  }

  private bigVarint(start: number): bigint {
    let v = 0n;
    let shift = 0n;
    for (let p = start; p < this.pos; p++) {
      v |= BigInt((this.buf[p] as number) & 0x7f) << shift;
      shift += 7n;
    }
    return BigInt.asIntN(64, v);
  }

  /** Moves past a varint without reading it (the fields of a key-value that `list` does not use). */
  skipVarint(): void {
    const b = this.buf;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) throw new RangeDecodeError('truncated varint');
      if ((b[this.pos++] as number) < 0x80) return;
      if (i >= 9) throw new RangeDecodeError('varint longer than 10 bytes');
    }
  }

  /** A length-delimited field's `[start, end)`, moving past it. */
  span(): [number, number] {
    const len = this.uint32();
    const start = this.pos;
    const end = start + len;
    if (end > this.end) throw new RangeDecodeError(`field of ${len} bytes runs past its message`);
    this.pos = end;
    return [start, end];
  }

  bool(): boolean {
    return this.uint32() !== 0;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.skipVarint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.span();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new RangeDecodeError(`wire type ${wireType} is not valid in proto3`);
    }
    if (this.pos > this.end) throw new RangeDecodeError('fixed-size field runs past its message');
  }
}

/** `ResponseHeader.revision` (field 3) of the header in `[start, end)`. */
function headerRevision(buf: Buffer, start: number, end: number): string {
  const h = new Reader(buf, start, end);
  let revision = '0';
  while (h.pos < end) {
    const tag = h.uint32();
    if (tag === HEADER_REVISION) revision = h.int64Text();
    else h.skip(tag & 7);
  }
  return revision;
}

/**
 * Decodes an `etcdserverpb.RangeResponse`: where each key and value lies in `buf`, and its revision.
 * @throws RangeDecodeError when the bytes are not a well-formed message.
 */
export function decodeRangeResponse(buf: Buffer): RangePage {
  const r = new Reader(buf, 0, buf.length);
  const page: RangePage = { revision: '0', more: false, count: 0, spans: [], modRevisions: [] };
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag) {
      case RESPONSE_HEADER: {
        const [s, e] = r.span();
        page.revision = headerRevision(buf, s, e);
        break;
      }
      case RESPONSE_KVS: {
        const [s, e] = r.span();
        const kv = new Reader(buf, s, e);
        let ks = s;
        let ke = s;
        let vs = s;
        let ve = s;
        let mod = '0';
        while (kv.pos < e) {
          const t = kv.uint32();
          if (t === KV_KEY) [ks, ke] = kv.span();
          else if (t === KV_MOD_REVISION) mod = kv.int64Text();
          else if (t === KV_VALUE) [vs, ve] = kv.span();
          else kv.skip(t & 7);
        }
        page.spans.push(ks, ke, vs, ve);
        page.modRevisions.push(mod);
        page.count++;
        break;
      }
      case RESPONSE_MORE:
        page.more = r.bool();
        break;
      default:
        r.skip(tag & 7);
    }
  }
  return page;
}
