/**
 * @module net/range
 * Inclusive address ranges `{ family, first, last }` in the seeds' syntax: `10.6.168.131-10.6.168.133`,
 * a single address `10.6.168.131`, or a whole CIDR `10.6.0.0/24`; IPv6 alike (`fd00::10-fd00::20`).
 */
import type { Family } from './addr.ts';
import { NetError, checkValue, familyName, formatValue, parseAddr } from './addr.ts';
import { parsePrefix, prefixFirst, prefixLast } from './prefix.ts';

export interface Range {
  readonly family: Family;
  readonly first: bigint;
  /** Inclusive; `first <= last`. */
  readonly last: bigint;
}

function wrap(s: string, e: unknown): NetError {
  return new NetError(`range ${JSON.stringify(s)}: ${(e as Error).message}`, { cause: e });
}

/**
 * Parses `a-b` (whitespace around `-` allowed), a single address, or `prefix/bits` (the whole prefix,
 * network and broadcast addresses included — exclude them separately if they must not be handed out).
 * @throws NetError naming the text: a bad address or prefix, a reversed range (with the order to
 *   write), or two ends of different families.
 */
export function parseRange(s: string): Range {
  if (typeof s !== 'string')
    throw new NetError(`range ${String(s)}: must be a string such as 10.0.0.5-10.0.0.9`);
  const dash = s.indexOf('-');
  if (dash < 0) {
    if (s.includes('/')) {
      try {
        const p = parsePrefix(s);
        return Object.freeze({ family: p.family, first: prefixFirst(p), last: prefixLast(p) });
      } catch (e) {
        throw wrap(s, e);
      }
    }
    try {
      const a = parseAddr(s);
      return Object.freeze({ family: a.family, first: a.value, last: a.value });
    } catch (e) {
      throw wrap(s, e);
    }
  }
  if (s.indexOf('-', dash + 1) >= 0) {
    throw new NetError(
      `range ${JSON.stringify(s)}: more than one '-' (write first-last, e.g. 10.0.0.5-10.0.0.9)`,
    );
  }
  const leftText = s.slice(0, dash).trimEnd();
  const rightText = s.slice(dash + 1).trimStart();
  let first, last;
  try {
    first = parseAddr(leftText);
    last = parseAddr(rightText);
  } catch (e) {
    throw wrap(s, e);
  }
  if (first.family !== last.family) {
    throw new NetError(
      `range ${JSON.stringify(s)}: mixes ${familyName(first.family)} and ${familyName(last.family)}; both ends must be the same family`,
    );
  }
  if (first.value > last.value) {
    throw new NetError(
      `range ${JSON.stringify(s)} is reversed (write ${formatValue(first.family, last.value)}-${formatValue(first.family, first.value)})`,
    );
  }
  return Object.freeze({ family: first.family, first: first.value, last: last.value });
}

/**
 * Builds a range from numbers.
 * @throws NetError when an end is outside the family or `first > last`.
 */
export function makeRange(family: Family, first: bigint, last: bigint): Range {
  checkValue(family, first);
  checkValue(family, last);
  if (first > last) {
    throw new NetError(
      `range ${formatValue(family, first)}-${formatValue(family, last)} is reversed (write ${formatValue(family, last)}-${formatValue(family, first)})`,
    );
  }
  return Object.freeze({ family, first, last });
}

/** Canonical text: the single address when `first == last`, else `first-last`. */
export function formatRange(r: Range): string {
  const a = formatValue(r.family, r.first);
  return r.first === r.last ? a : `${a}-${formatValue(r.family, r.last)}`;
}

/** Number of addresses in `r`. */
export function rangeSize(r: Range): bigint {
  return r.last - r.first + 1n;
}
