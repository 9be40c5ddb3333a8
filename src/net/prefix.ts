/**
 * @module net/prefix
 * CIDR prefixes (`10.6.0.0/16`, `fd00::/64`) as `{ family, base, bits }`, with the host bits of
 * `base` always zero:
 *
 * ```
 *   10.6.0.0/16      base = 10.6.0.0, bits = 16
 *   |<-- 16 network bits -->|<-- 16 host bits -->|
 *   first = base                 = 10.6.0.0
 *   last  = base | hostMask      = 10.6.255.255     hostMask = 2^(32-16) - 1
 *   size  = 2^(32-16)            = 65536
 * ```
 */
import type { Addr, Family } from './addr.ts';
import { NetError, familyBits, formatValue, maxValue, parseAddr } from './addr.ts';

export interface Prefix {
  readonly family: Family;
  /** The network address; its host bits are zero. */
  readonly base: bigint;
  /** Prefix length, 0..32 or 0..128. */
  readonly bits: number;
}

/** The mask of the host part of a `/bits` prefix of `family`. */
export function hostMask(family: Family, bits: number): bigint {
  return (1n << BigInt(familyBits(family) - bits)) - 1n;
}

function checkBits(family: Family, bits: number, what: string): void {
  if (!Number.isInteger(bits) || bits < 0 || bits > familyBits(family)) {
    throw new NetError(
      `${what}: prefix length ${bits} is out of range (${family === 4 ? 'IPv4: 0..32' : 'IPv6: 0..128'})`,
    );
  }
}

const BITS = /^(0|[1-9]\d{0,2})$/;

/**
 * Parses `address/bits`. The address may be any form `parseAddr` accepts.
 * @throws NetError when there is no `/bits`, the address is bad, the length is out of range, or host
 *   bits are set (`10.6.1.0/16 has host bits set; did you mean 10.6.0.0/16?`).
 */
export function parsePrefix(s: string): Prefix {
  if (typeof s !== 'string') throw new NetError(`prefix ${String(s)}: must be a string such as 10.6.0.0/16`);
  const slash = s.indexOf('/');
  if (slash < 0) {
    throw new NetError(
      `prefix ${JSON.stringify(s)}: missing the prefix length (write e.g. ${s.includes(':') ? `${s}/64` : `${s}/24`})`,
    );
  }
  const addrText = s.slice(0, slash);
  const bitsText = s.slice(slash + 1);
  let a: Addr;
  try {
    a = parseAddr(addrText);
  } catch (e) {
    throw new NetError(`prefix ${JSON.stringify(s)}: ${(e as Error).message}`, { cause: e });
  }
  if (!BITS.test(bitsText)) {
    throw new NetError(
      `prefix ${JSON.stringify(s)}: prefix length ${JSON.stringify(bitsText)} is not a number without leading zeros (${a.family === 4 ? 'IPv4: 0..32' : 'IPv6: 0..128'})`,
    );
  }
  const bits = Number(bitsText);
  checkBits(a.family, bits, `prefix ${JSON.stringify(s)}`);
  const mask = hostMask(a.family, bits);
  if ((a.value & mask) !== 0n) {
    const fixed = formatPrefix({ family: a.family, base: a.value & ~mask, bits });
    throw new NetError(`prefix ${JSON.stringify(s)}: ${s} has host bits set; did you mean ${fixed}?`);
  }
  return Object.freeze({ family: a.family, base: a.value, bits });
}

/** `parsePrefix`, but `undefined` instead of throwing. */
export function tryParsePrefix(s: string): Prefix | undefined {
  try {
    return parsePrefix(s);
  } catch {
    // The caller asked for a yes/no answer; the message is not needed.
    return undefined;
  }
}

/**
 * The `/bits` prefix that contains `a` (host bits cleared): `prefixOf(10.6.1.7, 16)` is `10.6.0.0/16`.
 * @throws NetError when `bits` is out of range for the family.
 */
export function prefixOf(a: Addr, bits: number): Prefix {
  checkBits(a.family, bits, `address ${formatValue(a.family, a.value)}`);
  return Object.freeze({
    family: a.family,
    base: a.value & ~hostMask(a.family, bits) & maxValue(a.family),
    bits,
  });
}

/** Canonical text: `10.6.0.0/16`, `fd00::/64`. */
export function formatPrefix(p: Prefix): string {
  return `${formatValue(p.family, p.base)}/${p.bits}`;
}

/** The network address (first address) of `p`. */
export function prefixFirst(p: Prefix): bigint {
  return p.base;
}

/** The last address of `p` (the IPv4 broadcast address, for prefixes shorter than /31). */
export function prefixLast(p: Prefix): bigint {
  return p.base | hostMask(p.family, p.bits);
}

/** Number of addresses in `p`: 2^(32-bits) or 2^(128-bits). */
export function prefixSize(p: Prefix): bigint {
  return 1n << BigInt(familyBits(p.family) - p.bits);
}

/** Whether `a` lies in `p` (false for the other family). */
export function prefixContains(p: Prefix, a: Addr): boolean {
  return a.family === p.family && (a.value & ~hostMask(p.family, p.bits)) === p.base;
}

/** Whether the two prefixes share any address (false across families). */
export function prefixOverlaps(a: Prefix, b: Prefix): boolean {
  if (a.family !== b.family) return false;
  // Prefixes nest or are disjoint: they overlap exactly when the shorter one contains the other's base.
  const bits = Math.min(a.bits, b.bits);
  const net = ~hostMask(a.family, bits);
  return (a.base & net) === (b.base & net);
}

/** Whether `inner` lies entirely in `outer` (false across families). */
export function prefixCovers(outer: Prefix, inner: Prefix): boolean {
  return (
    outer.family === inner.family &&
    outer.bits <= inner.bits &&
    (inner.base & ~hostMask(outer.family, outer.bits)) === outer.base
  );
}
