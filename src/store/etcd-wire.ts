/**
 * @module store/etcd-wire
 * etcd's messages on the wire for the store's calls: `KV/Range` (`EtcdStore.list`), `KV/Txn` (every
 * write) and `Watch/Watch` (every watcher) — request encoders and response decoders written against
 * etcd's `rpc.proto` and `kv.proto` (proto3), so a page of 10,000 claims, a transaction's answer and
 * a watch's events are read straight out of the gRPC message.
 *
 * Why not the etcd3 client's own `kv.range`, `kv.txn` and watch streams: they go through protobufjs
 * into objects (`fromObject`/`toObject`, every int64 through a Long into a string, a Buffer per key
 * and per value) before we look at a byte. At 100,000 claims that was most of an agent's restart on
 * etcd (DESIGN "As built": restart); on the allocation path it was the transaction's request and
 * answer and, in every agent, every claim's watch event. Here a decoder only finds where each key and
 * value lies in the message and reads each revision as text; the caller makes one string per key and
 * parses the value in place.
 *
 * Only the fields the store uses are read; every other field is skipped by its wire type, so a newer
 * etcd that adds fields still decodes. The connection, TLS, authentication and the choice of member
 * stay the etcd3 client's (`EtcdStore` calls through its pool with these bytes).
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
  /** Empty: the key alone. */
  rangeEnd: Buffer;
  /** 0: no limit. */
  limit: number;
  /** Decimal revision to read at; "0" for the newest. */
  revision: string;
}

/** A malformed message: a truncated field, an impossible wire type. */
export class WireDecodeError extends Error {
  constructor(message: string) {
    super(`etcd message: ${message}`);
    this.name = 'WireDecodeError';
  }
}

// ---- encoding ----

// Every encoder sizes its message first, then writes it into one buffer: a transaction of 64
// claims is one allocation, not a Buffer per field and per nesting level.

/** An int64 to write: a number while it is exact, else a bigint. */
type Int64 = number | bigint;

function int64(decimal: string): Int64 {
  const n = Number(decimal);
  return Number.isSafeInteger(n) ? n : BigInt(decimal);
}

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

/** Bytes of `v` as a varint (negative int64s take ten, as protobuf writes them). */
function varintSize(v: Int64): number {
  if (typeof v === 'bigint' || v < 0) return varintBytes(BigInt(v)).length;
  let size = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    size++;
  }
  return size;
}

/** Bytes of a length-delimited field (tag, length, payload) of `n` payload bytes; fields 1-15. */
const lenFieldSize = (n: number): number => 1 + varintSize(n) + n;
/** Bytes of a varint field; fields 1-15. */
const varintFieldSize = (v: Int64): number => 1 + varintSize(v);

/** Writes a message into a buffer of the size computed for it. Field numbers 1-15 (one-byte tags). */
class Writer {
  readonly buf: Buffer;
  pos = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  varint(v: Int64): void {
    const b = this.buf;
    if (typeof v === 'bigint' || v < 0) {
      for (const x of varintBytes(BigInt(v))) b[this.pos++] = x;
      return;
    }
    while (v >= 0x80) {
      b[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    b[this.pos++] = v;
  }

  varintField(field: number, v: Int64): void {
    this.buf[this.pos++] = field << 3;
    this.varint(v);
  }

  /** A length-delimited field's tag and length; its payload follows. */
  lenHeader(field: number, n: number): void {
    this.buf[this.pos++] = (field << 3) | 2;
    this.varint(n);
  }

  bytesField(field: number, bytes: Buffer): void {
    this.lenHeader(field, bytes.length);
    this.pos += bytes.copy(this.buf, this.pos);
  }

  /** The message, checked to fill exactly the size computed for it. */
  done(): Buffer {
    if (this.pos !== this.buf.length) {
      throw new Error(`etcd message encoder: wrote ${this.pos} bytes of ${this.buf.length}`);
    }
    return this.buf;
  }
}

/** `etcdserverpb.RangeRequest` with key (1), range_end (2), limit (3) and revision (4). */
export function encodeRangeRequest(r: RangeRequest): Buffer {
  // An empty range_end is left out, not sent empty: etcd reads a present but empty one as "every key
  // from key on", not as the single key.
  const revision = int64(r.revision);
  const size =
    lenFieldSize(r.key.length) +
    (r.rangeEnd.length > 0 ? lenFieldSize(r.rangeEnd.length) : 0) +
    (r.limit > 0 ? varintFieldSize(r.limit) : 0) +
    (r.revision !== '0' ? varintFieldSize(revision) : 0);
  const w = new Writer(size);
  w.bytesField(1, r.key);
  if (r.rangeEnd.length > 0) w.bytesField(2, r.rangeEnd);
  if (r.limit > 0) w.varintField(3, r.limit);
  if (r.revision !== '0') w.varintField(4, revision);
  return w.done();
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
      if (this.pos >= this.end) throw new WireDecodeError('truncated varint');
      const x = b[this.pos++] as number;
      if (shift < 28) v |= (x & 0x7f) << shift;
      else if (shift === 28) v += (x & 0x0f) * 2 ** 28;
      // Longer varints (a negative int32 as 10 bytes) keep only what fits; lengths are never that.
      if (x < 0x80) return v;
      shift += 7;
      if (shift > 63) throw new WireDecodeError('varint longer than 10 bytes');
    }
  }

  /** An int64 varint as decimal text: a number's text up to 2^49, a bigint's above. */
  int64Text(): string {
    const b = this.buf;
    const start = this.pos;
    let v = 0;
    let mul = 1;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) throw new WireDecodeError('truncated varint');
      const x = b[this.pos++] as number;
      v += (x & 0x7f) * mul;
      if (x < 0x80) {
        if (i < 7) return String(v);
        return String(this.bigVarint(start));
      }
      mul *= 128;
      if (i >= 9) throw new WireDecodeError('varint longer than 10 bytes');
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
      if (this.pos >= this.end) throw new WireDecodeError('truncated varint');
      if ((b[this.pos++] as number) < 0x80) return;
      if (i >= 9) throw new WireDecodeError('varint longer than 10 bytes');
    }
  }

  /** A length-delimited field's `[start, end)`, moving past it. */
  span(): [number, number] {
    const len = this.uint32();
    const start = this.pos;
    const end = start + len;
    if (end > this.end) throw new WireDecodeError(`field of ${len} bytes runs past its message`);
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
        throw new WireDecodeError(`wire type ${wireType} is not valid in proto3`);
    }
    if (this.pos > this.end) throw new WireDecodeError('fixed-size field runs past its message');
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
 * @throws WireDecodeError when the bytes are not a well-formed message.
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
        const kv = readKeyValue(buf, s, e);
        page.spans.push(kv.keyStart, kv.keyEnd, kv.valueStart, kv.valueEnd);
        page.modRevisions.push(kv.modRevision);
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

/** Where an `mvccpb.KeyValue`'s key and value lie in the message, and its `mod_revision`. */
export interface KeyValueAt {
  keyStart: number;
  keyEnd: number;
  valueStart: number;
  valueEnd: number;
  /** Decimal. */
  modRevision: string;
}

/** The `mvccpb.KeyValue` in `[start, end)`: key = 1, mod_revision = 3, value = 5. */
function readKeyValue(buf: Buffer, start: number, end: number): KeyValueAt {
  const kv = new Reader(buf, start, end);
  const at: KeyValueAt = {
    keyStart: start,
    keyEnd: start,
    valueStart: start,
    valueEnd: start,
    modRevision: '0',
  };
  while (kv.pos < end) {
    const t = kv.uint32();
    if (t === KV_KEY) [at.keyStart, at.keyEnd] = kv.span();
    else if (t === KV_MOD_REVISION) at.modRevision = kv.int64Text();
    else if (t === KV_VALUE) [at.valueStart, at.valueEnd] = kv.span();
    else kv.skip(t & 7);
  }
  return at;
}

// ---- KV/Txn ----

/** A compare of a transaction: `target(key) == revision`, target a key's create or mod revision. */
export interface TxnCompare {
  key: Buffer;
  target: 'create' | 'mod';
  /** Decimal int64; "0" with `create` means "the key does not exist". */
  revision: string;
}

/** An operation of a transaction's branch: a put, a get of one key, or a delete of one key. */
export type TxnOp = { put: Buffer; value: Buffer } | { get: Buffer } | { delete: Buffer };

/** Compare.CompareTarget: CREATE = 1, MOD = 2 (result EQUAL = 0 is proto3's default, not written). */
const COMPARE_TARGET = { create: 1, mod: 2 } as const;
/** Compare's target_union: create_revision = 5, mod_revision = 6. */
const COMPARE_REVISION_FIELD = { create: 5, mod: 6 } as const;

/** Compare: target 2, key 3, and the target's revision (a oneof member: written even when 0). */
function compareSize(c: TxnCompare, revision: Int64): number {
  return 2 + lenFieldSize(c.key.length) + varintFieldSize(revision);
}

/** The request inside a RequestOp: PutRequest key 1, value 2; RangeRequest / DeleteRangeRequest key 1. */
function requestSize(op: TxnOp): number {
  if ('put' in op) return lenFieldSize(op.put.length) + lenFieldSize(op.value.length);
  return lenFieldSize(('get' in op ? op.get : op.delete).length);
}

/** RequestOp: request_range = 1, request_put = 2, request_delete_range = 3, holding `requestSize` bytes. */
function writeOp(w: Writer, field: number, op: TxnOp): void {
  const inner = requestSize(op);
  w.lenHeader(field, lenFieldSize(inner));
  if ('put' in op) {
    w.lenHeader(2, inner);
    w.bytesField(1, op.put);
    w.bytesField(2, op.value);
  } else if ('get' in op) {
    w.lenHeader(1, inner);
    w.bytesField(1, op.get);
  } else {
    w.lenHeader(3, inner);
    w.bytesField(1, op.delete);
  }
}

/** `etcdserverpb.TxnRequest`: compare = 1, success = 2, failure = 3 (all repeated). */
export function encodeTxnRequest(
  compare: readonly TxnCompare[],
  success: readonly TxnOp[],
  failure: readonly TxnOp[],
): Buffer {
  const revisions = compare.map((c) => int64(c.revision));
  let size = 0;
  for (let i = 0; i < compare.length; i++) {
    size += lenFieldSize(compareSize(compare[i] as TxnCompare, revisions[i] as Int64));
  }
  for (const op of success) size += lenFieldSize(lenFieldSize(requestSize(op)));
  for (const op of failure) size += lenFieldSize(lenFieldSize(requestSize(op)));
  const w = new Writer(size);
  for (let i = 0; i < compare.length; i++) {
    const c = compare[i] as TxnCompare;
    const revision = revisions[i] as Int64;
    w.lenHeader(1, compareSize(c, revision));
    w.varintField(2, COMPARE_TARGET[c.target]);
    w.bytesField(3, c.key);
    w.varintField(COMPARE_REVISION_FIELD[c.target], revision);
  }
  for (const op of success) writeOp(w, 2, op);
  for (const op of failure) writeOp(w, 3, op);
  return w.done();
}

/** The part of a `TxnResponse` the store uses. */
export interface TxnAnswer {
  /** The header's revision: the transaction's, when it wrote. Decimal. */
  revision: string;
  succeeded: boolean;
  /**
   * One entry per response of the branch taken, in order: for a get, the first key-value it found
   * (undefined when the key is absent); undefined for a put or a delete.
   */
  gets: (KeyValueAt | undefined)[];
}

/** TxnResponse: header = 1, succeeded = 2, responses = 3. ResponseOp: response_range = 1. */
const TXN_HEADER = fieldTag(1, 2);
const TXN_SUCCEEDED = fieldTag(2, 0);
const TXN_RESPONSES = fieldTag(3, 2);
const OP_RESPONSE_RANGE = fieldTag(1, 2);

/**
 * Decodes an `etcdserverpb.TxnResponse`.
 * @throws WireDecodeError when the bytes are not a well-formed message.
 */
export function decodeTxnResponse(buf: Buffer): TxnAnswer {
  const r = new Reader(buf, 0, buf.length);
  const answer: TxnAnswer = { revision: '0', succeeded: false, gets: [] };
  while (r.pos < r.end) {
    const tag = r.uint32();
    if (tag === TXN_HEADER) {
      const [s, e] = r.span();
      answer.revision = headerRevision(buf, s, e);
    } else if (tag === TXN_SUCCEEDED) {
      answer.succeeded = r.bool();
    } else if (tag === TXN_RESPONSES) {
      const [s, e] = r.span();
      answer.gets.push(firstKeyValue(buf, s, e));
    } else r.skip(tag & 7);
  }
  return answer;
}

/** The first key-value of the RangeResponse inside the ResponseOp in `[start, end)`, if it is one. */
function firstKeyValue(buf: Buffer, start: number, end: number): KeyValueAt | undefined {
  const op = new Reader(buf, start, end);
  let found: KeyValueAt | undefined;
  while (op.pos < end) {
    const tag = op.uint32();
    if (tag !== OP_RESPONSE_RANGE) {
      op.skip(tag & 7);
      continue;
    }
    const [s, e] = op.span();
    const range = new Reader(buf, s, e);
    while (range.pos < e) {
      const t = range.uint32();
      if (t === RESPONSE_KVS && found === undefined) {
        const [ks, ke] = range.span();
        found = readKeyValue(buf, ks, ke);
      } else range.skip(t & 7);
    }
  }
  return found;
}

// ---- Watch/Watch ----

export interface WatchCreate {
  key: Buffer;
  rangeEnd: Buffer;
  /** First revision to deliver; 0n: from when etcd registers the watch. */
  startRevision: bigint;
  progressNotify: boolean;
}

/**
 * `etcdserverpb.WatchRequest` carrying a create_request (1): WatchCreateRequest key = 1,
 * range_end = 2, start_revision = 3, progress_notify = 4.
 */
export function encodeWatchCreate(c: WatchCreate): Buffer {
  const inner =
    lenFieldSize(c.key.length) +
    lenFieldSize(c.rangeEnd.length) +
    (c.startRevision !== 0n ? varintFieldSize(c.startRevision) : 0) +
    (c.progressNotify ? 2 : 0);
  const w = new Writer(lenFieldSize(inner));
  w.lenHeader(1, inner);
  w.bytesField(1, c.key);
  w.bytesField(2, c.rangeEnd);
  if (c.startRevision !== 0n) w.varintField(3, c.startRevision);
  if (c.progressNotify) w.varintField(4, 1);
  return w.done();
}

/** One event of a watch response: a put or a delete of the key-value at `kv`. */
export interface WatchEventAt {
  type: 'put' | 'delete';
  kv: KeyValueAt;
}

/** The part of a `WatchResponse` the store uses. */
export interface WatchAnswer {
  /** The header's revision, decimal. */
  revision: string;
  created: boolean;
  canceled: boolean;
  /** Decimal; "0" unless etcd cancelled the watch for a compacted start revision. */
  compactRevision: string;
  cancelReason: string;
  events: WatchEventAt[];
}

/** WatchResponse: header = 1, created = 3, canceled = 4, compact_revision = 5, cancel_reason = 6, events = 11. */
const WATCH_HEADER = fieldTag(1, 2);
const WATCH_CREATED = fieldTag(3, 0);
const WATCH_CANCELED = fieldTag(4, 0);
const WATCH_COMPACT_REVISION = fieldTag(5, 0);
const WATCH_CANCEL_REASON = fieldTag(6, 2);
const WATCH_EVENTS = fieldTag(11, 2);
/** mvccpb.Event: type = 1 (PUT = 0, DELETE = 1), kv = 2. */
const EVENT_TYPE = fieldTag(1, 0);
const EVENT_KV = fieldTag(2, 2);

/**
 * Decodes an `etcdserverpb.WatchResponse`.
 * @throws WireDecodeError when the bytes are not a well-formed message, or an event has no
 *   key-value or a type this decoder does not know.
 */
export function decodeWatchResponse(buf: Buffer): WatchAnswer {
  const r = new Reader(buf, 0, buf.length);
  const answer: WatchAnswer = {
    revision: '0',
    created: false,
    canceled: false,
    compactRevision: '0',
    cancelReason: '',
    events: [],
  };
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag) {
      case WATCH_HEADER: {
        const [s, e] = r.span();
        answer.revision = headerRevision(buf, s, e);
        break;
      }
      case WATCH_CREATED:
        answer.created = r.bool();
        break;
      case WATCH_CANCELED:
        answer.canceled = r.bool();
        break;
      case WATCH_COMPACT_REVISION:
        answer.compactRevision = r.int64Text();
        break;
      case WATCH_CANCEL_REASON: {
        const [s, e] = r.span();
        answer.cancelReason = buf.toString('utf8', s, e);
        break;
      }
      case WATCH_EVENTS: {
        const [s, e] = r.span();
        answer.events.push(readEvent(buf, s, e));
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  return answer;
}

function readEvent(buf: Buffer, start: number, end: number): WatchEventAt {
  const ev = new Reader(buf, start, end);
  let type = 0;
  let kv: KeyValueAt | undefined;
  while (ev.pos < end) {
    const t = ev.uint32();
    if (t === EVENT_TYPE) type = ev.uint32();
    else if (t === EVENT_KV) {
      const [s, e] = ev.span();
      kv = readKeyValue(buf, s, e);
    } else ev.skip(t & 7);
  }
  if (kv === undefined) throw new WireDecodeError('a watch event without its key-value');
  if (type !== 0 && type !== 1) throw new WireDecodeError(`a watch event of unknown type ${type}`);
  return { type: type === 0 ? 'put' : 'delete', kv };
}
