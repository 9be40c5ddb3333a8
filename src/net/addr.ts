/**
 * @module net/addr
 * A single IPv4 or IPv6 address as a number: `Addr` is `{ family, value }` with `value` a bigint in
 * `[0, maxValue(family)]`. Parsing, canonical formatting (dotted quad; RFC 5952 for IPv6), and the
 * store-key form used to name one claim per address.
 *
 * Imports only `node:net`, so every other layer (and the CNI plugin) may use it.
 */
import { isIP } from 'node:net';

export type Family = 4 | 6;

/** A parsed address. `value` is the address as an unsigned integer of 32 or 128 bits. */
export interface Addr {
  readonly family: Family;
  readonly value: bigint;
}

/**
 * Bad address, prefix or range text, or a value outside its family. The message quotes the value and
 * says what to write instead; callers at the API edge wrap it in an `IpamError` (`INVALID_OBJECT`,
 * `INVALID_CONFIG`) with `{ cause }`.
 */
export class NetError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'NetError';
  }
}

const MAX4 = (1n << 32n) - 1n;
const MAX6 = (1n << 128n) - 1n;

/** The largest value of an address of `family`: 2^32-1 or 2^128-1. */
export function maxValue(family: Family): bigint {
  return family === 4 ? MAX4 : MAX6;
}

/** Number of bits in an address of `family`: 32 or 128. */
export function familyBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** 'IPv4' or 'IPv6', for messages. */
export function familyName(family: Family): string {
  return family === 4 ? 'IPv4' : 'IPv6';
}

/**
 * Builds an `Addr` from a number.
 * @throws NetError when `value` is negative or above `maxValue(family)`.
 */
export function makeAddr(family: Family, value: bigint): Addr {
  checkValue(family, value);
  return Object.freeze({ family, value });
}

/** @throws NetError when `value` is not a valid address number of `family`. */
export function checkValue(family: Family, value: bigint): void {
  if (typeof value !== 'bigint' || value < 0n || value > maxValue(family)) {
    throw new NetError(
      `value ${String(value)} is not an ${familyName(family)} address (must be 0..${maxValue(family)})`,
    );
  }
}

const DOTTED = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/;

/**
 * Parses an IPv4 address in dotted-quad form or an IPv6 address in any RFC 4291 text form
 * (`fd00::1`, `FD00:0:0:0:0:0:0:1`, `::ffff:1.2.3.4`). An IPv4-mapped IPv6 address stays family 6.
 *
 * `node:net` `isIP()` is the gate, so octal-looking `010.0.0.1` (which some libraries read as 8.0.0.1),
 * short forms like `1.2.3`, and surrounding whitespace are all rejected rather than guessed at.
 * @throws NetError naming the text and the fix: leading zeros, zone ids (`fe80::1%eth0`), a prefix
 *   where an address belongs, whitespace, or text that is no address at all.
 */
export function parseAddr(s: string): Addr {
  if (typeof s !== 'string') {
    throw new NetError(`address ${describe(s)}: must be a string such as 10.0.0.1 or fd00::1`);
  }
  const fam = isIP(s);
  if (fam === 4) return Object.freeze({ family: 4, value: parse4(s) });
  if (fam === 6 && !s.includes('%')) return Object.freeze({ family: 6, value: parse6(s) });
  throw new NetError(`address ${JSON.stringify(s)}: ${whyBad(s)}`);
}

/** `parseAddr`, but `undefined` instead of throwing. */
export function tryParseAddr(s: string): Addr | undefined {
  if (typeof s !== 'string') return undefined;
  const fam = isIP(s);
  if (fam === 4) return Object.freeze({ family: 4, value: parse4(s) });
  if (fam === 6 && !s.includes('%')) return Object.freeze({ family: 6, value: parse6(s) });
  return undefined;
}

/** Why `isIP` said no (or why we refuse what it accepted), with the text to write instead. */
function whyBad(s: string): string {
  if (s === '') return 'empty; write an IPv4 address like 10.0.0.1 or an IPv6 address like fd00::1';
  const trimmed = s.trim();
  if (trimmed !== s && isIP(trimmed) !== 0) {
    return `surrounding whitespace is not allowed (write ${trimmed})`;
  }
  const pct = s.indexOf('%');
  if (pct >= 0 && isIP(s.slice(0, pct)) === 6) {
    return `zone ids are not allowed (write ${s.slice(0, pct)})`;
  }
  if (s.includes('/')) {
    return `expected a single address, not a prefix (write the address alone, e.g. ${s.slice(0, s.indexOf('/'))})`;
  }
  if (s.startsWith('[') && s.endsWith(']') && isIP(s.slice(1, -1)) === 6) {
    return `brackets are not allowed (write ${s.slice(1, -1)})`;
  }
  // IPv4, alone or as the tail of an IPv6 address.
  const lastColon = s.lastIndexOf(':');
  const v4 = lastColon >= 0 ? s.slice(lastColon + 1) : s;
  const m = DOTTED.exec(v4);
  if (m) {
    const octets = m.slice(1).map((o) => o.replace(/^0+(?=\d)/, ''));
    const big = octets.find((o) => o.length > 3 || Number(o) > 255);
    if (big !== undefined) return `octet ${big} is above 255`;
    const fixed = (lastColon >= 0 ? s.slice(0, lastColon + 1) : '') + octets.join('.');
    if (isIP(fixed) !== 0) return `leading zeros are not allowed (write ${fixed})`;
  }
  if (/^\d+(\.\d+){0,2}$/.test(s)) return 'an IPv4 address needs four dot-separated numbers, e.g. 10.0.0.1';
  return 'not an IPv4 or IPv6 address (write e.g. 10.0.0.1 or fd00::1)';
}

function describe(x: unknown): string {
  try {
    return JSON.stringify(x) ?? String(x);
  } catch {
    // Unserialisable (a cycle, a bigint): String() is enough for a message.
    return String(x);
  }
}

/** Dotted quad already validated by isIP: four decimal octets 0..255, no leading zeros. */
function parse4(s: string): bigint {
  let v = 0;
  let octet = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      v = v * 256 + octet;
      octet = 0;
    } else {
      octet = octet * 10 + (c - 48);
    }
  }
  return BigInt(v * 256 + octet);
}

/** Scratch for `parse6` and `format6`: the eight 16-bit groups (one call at a time; JS is single-threaded). */
const G = [0, 0, 0, 0, 0, 0, 0, 0];

/**
 * IPv6 text already validated by isIP: at most one '::', groups of 1-4 hex digits, optional IPv4 tail.
 * One pass over the characters, no split or arrays (it runs for every claim an agent loads).
 */
function parse6(s: string): bigint {
  const g = G;
  let n = 0; // groups written
  let gap = -1; // where '::' stands, as a group index
  let cur = 0;
  let digits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 58 /* : */) {
      if (digits > 0) {
        g[n++] = cur;
        cur = 0;
        digits = 0;
      }
      if (s.charCodeAt(i + 1) === 58) {
        gap = n;
        i++;
      }
    } else if (c === 46 /* . */) {
      // The IPv4 tail: its first octet was read as hex digits; read the whole tail again.
      const v4 = Number(parse4(s.slice(i - digits)));
      g[n++] = Math.floor(v4 / 65536);
      g[n++] = v4 % 65536;
      digits = 0;
      break;
    } else {
      cur = cur * 16 + (c <= 57 ? c - 48 : (c | 0x20) - 87);
      digits++;
    }
  }
  if (digits > 0) g[n++] = cur;
  if (gap >= 0) {
    // Move the groups after '::' to the end, zeros in between.
    const shift = 8 - n;
    for (let k = n - 1; k >= gap; k--) g[k + shift] = g[k]!;
    for (let k = gap; k < gap + shift; k++) g[k] = 0;
  }
  // Four 32-bit numbers, then four bigint steps (not eight).
  return (
    (BigInt(g[0]! * 65536 + g[1]!) << 96n) |
    (BigInt(g[2]! * 65536 + g[3]!) << 64n) |
    (BigInt(g[4]! * 65536 + g[5]!) << 32n) |
    BigInt(g[6]! * 65536 + g[7]!)
  );
}

/** Fills `G` with the eight groups of `v`: two 64-bit halves as bigints, then plain numbers. */
function groups6(v: bigint): void {
  const hi = v >> 64n;
  const lo = v & 0xffffffffffffffffn;
  const hiHi = Number(hi >> 32n);
  const hiLo = Number(hi & 0xffffffffn);
  const loHi = Number(lo >> 32n);
  const loLo = Number(lo & 0xffffffffn);
  G[0] = hiHi >>> 16;
  G[1] = hiHi & 0xffff;
  G[2] = hiLo >>> 16;
  G[3] = hiLo & 0xffff;
  G[4] = loHi >>> 16;
  G[5] = loHi & 0xffff;
  G[6] = loLo >>> 16;
  G[7] = loLo & 0xffff;
}

function format4(v: bigint): string {
  const n = Number(v);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/**
 * RFC 5952: lower-case hex without leading zeros; the longest run of two or more zero groups becomes
 * `::` (the first such run on a tie); a single zero group is written `0`. IPv4-mapped addresses
 * (`::ffff:0:0/96`) keep the dotted tail, as section 5 recommends: `::ffff:1.2.3.4`.
 */
function format6(v: bigint): string {
  if (v >> 32n === 0xffffn) return `::ffff:${format4(v & MAX4)}`;
  groups6(v);
  const g = G;
  let bestStart = -1;
  let bestEnd = -1;
  let bestLen = 1; // a run must be at least 2 groups to be compressed
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestEnd = j;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += '::';
      i = bestEnd - 1;
      continue;
    }
    if (i > 0 && i !== bestEnd) out += ':';
    out += g[i]!.toString(16);
  }
  return out;
}

/** Canonical text of `a`: dotted quad, or RFC 5952 IPv6 (see `format6`). */
export function formatAddr(a: Addr): string {
  return formatValue(a.family, a.value);
}

/**
 * Canonical text of the address `v` of `family`.
 * @throws NetError when `v` is outside the family.
 */
export function formatValue(family: Family, v: bigint): string {
  checkValue(family, v);
  return family === 4 ? format4(v) : format6(v);
}

/**
 * A name for `a` that is safe as a store key or Kubernetes object name segment: IPv4 as its dotted
 * quad (`10.6.168.133`), IPv6 as all eight groups, four lower-case hex digits each, joined by `-`
 * (`fd00-0000-0000-0000-0000-0000-0000-0005`) — fixed width, so keys sort like addresses within a
 * family, and one address has exactly one key.
 */
export function addrKey(a: Addr): string {
  checkValue(a.family, a.value);
  if (a.family === 4) return format4(a.value);
  const hex = a.value.toString(16).padStart(32, '0');
  return `${hex.slice(0, 4)}-${hex.slice(4, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 24)}-${hex.slice(24, 28)}-${hex.slice(28, 32)}`;
}

const KEY6 = /^[0-9a-f]{4}(?:-[0-9a-f]{4}){7}$/;

/**
 * The inverse of `addrKey`. Only the exact key form is accepted (no upper case, no short groups).
 * @throws NetError when `k` is not a key `addrKey` could have produced.
 */
export function parseAddrKey(k: string): Addr {
  if (typeof k === 'string') {
    if (isIP(k) === 4) return Object.freeze({ family: 4, value: parse4(k) });
    if (KEY6.test(k)) return Object.freeze({ family: 6, value: BigInt('0x' + k.replaceAll('-', '')) });
  }
  throw new NetError(
    `address key ${describe(k)}: expected a dotted quad (10.0.0.1) or eight 4-digit lower-case hex groups joined by '-' (fd00-0000-0000-0000-0000-0000-0000-0001)`,
  );
}
