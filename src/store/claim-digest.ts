/**
 * @module store/claim-digest
 * Reads what the engine's cache indexes a claim by (its address, network, family, pool and
 * attachment) straight from the claim's stored text, without building the rest of it: an agent's
 * start on etcd reads every claim, and JSON.parse of 100k claims and the garbage of their objects
 * were a third of that start (docs/BENCHMARKS.md, restart). The claim is then kept as its text and
 * parsed when something reads it (`LazyClaim` in ipam/state.ts).
 *
 * It reads the compact form only (a claim's spec alone, as `codec.ts` writes a claim whose envelope
 * its key implies) and only as `JSON.stringify` writes it: no whitespace. Anything else — a whole
 * object, whitespace, an escape in a top-level key or in one of the fields read, a field of another
 * type, a family other than 4 or 6 — gives undefined, and the caller parses the text as before.
 * When it gives a digest, the text is valid JSON throughout (every value is checked, not only the
 * fields read), so the later JSON.parse cannot fail, and the digest holds exactly what that parse
 * would give for those fields (a repeated key counts by its last occurrence, as in JSON.parse).
 */

/** What the engine's cache needs of a claim (`ClaimDigest` in ipam/state.ts). */
export interface StoredClaimDigest {
  ip: string;
  network: string;
  family: 4 | 6;
  pool: string;
  cniNetwork: string | undefined;
  containerId: string | undefined;
  ifName: string | undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
/** Nesting deeper than this (below the claim's own object) is left to JSON.parse. */
const MAX_DEPTH = 64;
/** The open containers of `skipValue`: 1 for an object, 2 for an array. */
const STACK = new Uint8Array(MAX_DEPTH + 1);

// Field ids of the digest, by their key's bytes.
const F_IP = 1;
const F_NETWORK = 2;
const F_FAMILY = 3;
const F_POOL = 4;
const F_CNI = 5;
const F_CONTAINER = 6;
const F_IFNAME = 7;
/** A key that makes the text a whole object, not the compact spec. */
const F_WHOLE = 8;

/** Whether bytes `a`.. of `b` spell `w` (ASCII; the caller knows they are in the text). */
function spells(b: Buffer, a: number, w: string): boolean {
  for (let k = 0; k < w.length; k++) if (b[a + k] !== w.charCodeAt(k)) return false;
  return true;
}

/** Which field the key at bytes [a, z) (its quotes excluded) names; 0 for one the digest skips. */
function field(b: Buffer, a: number, z: number): number {
  switch (z - a) {
    case 2:
      return spells(b, a, 'ip') ? F_IP : 0;
    case 4:
      return spells(b, a, 'pool') ? F_POOL : spells(b, a, 'spec') ? F_WHOLE : 0;
    case 6:
      return spells(b, a, 'family') ? F_FAMILY : spells(b, a, 'ifName') ? F_IFNAME : 0;
    case 7:
      return spells(b, a, 'network') ? F_NETWORK : 0;
    case 10:
      return spells(b, a, 'cniNetwork') ? F_CNI : spells(b, a, 'apiVersion') ? F_WHOLE : 0;
    case 11:
      return spells(b, a, 'containerId') ? F_CONTAINER : 0;
    default:
      return 0;
  }
}

const isHex = (h: number): boolean =>
  (h >= ZERO && h <= NINE) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66);

/** Bytes a string holds as they are (0), and the ones that end or escape it, or may not be in it (1). */
const SPECIAL = new Uint8Array(256);
for (let c = 0; c < 0x20; c++) SPECIAL[c] = 1;
SPECIAL[QUOTE] = 1;
SPECIAL[BACKSLASH] = 1;

/** Skips the rest of a string whose opening quote is before `i`; the index after its closing quote, or -1. */
function skipString(b: Buffer, i: number, end: number): number {
  for (;;) {
    while (i < end && SPECIAL[b[i]!] === 0) i++;
    if (i >= end) return -1;
    const c = b[i++]!;
    if (c === QUOTE) return i;
    if (c !== BACKSLASH) return -1; // a control character
    if (i >= end) return -1;
    const e = b[i++]!;
    if (e === 0x75 /* u */) {
      if (i + 4 > end || !isHex(b[i]!) || !isHex(b[i + 1]!) || !isHex(b[i + 2]!) || !isHex(b[i + 3]!))
        return -1;
      i += 4;
    } else if (
      e !== QUOTE &&
      e !== BACKSLASH &&
      e !== 0x2f /* / */ &&
      e !== 0x62 /* b */ &&
      e !== 0x66 /* f */ &&
      e !== 0x6e /* n */ &&
      e !== 0x72 /* r */ &&
      e !== 0x74 /* t */
    ) {
      return -1;
    }
  }
}

/** Skips digits from `i`: the index after them, or -1 when there is none. */
function skipDigits(b: Buffer, i: number, end: number): number {
  const from = i;
  while (i < end && b[i]! >= ZERO && b[i]! <= NINE) i++;
  return i === from ? -1 : i;
}

/** Skips a number at `i` (JSON's grammar): the index after it, or -1. */
function skipNumber(b: Buffer, i: number, end: number): number {
  if (b[i] === MINUS) i++;
  if (i < end && b[i] === ZERO) i++;
  else if ((i = skipDigits(b, i, end)) < 0) return -1;
  if (i < end && b[i] === 0x2e /* . */ && (i = skipDigits(b, i + 1, end)) < 0) return -1;
  if (i < end && (b[i] === 0x65 || b[i] === 0x45) /* e E */) {
    i++;
    if (i < end && (b[i] === 0x2b || b[i] === MINUS)) i++;
    if ((i = skipDigits(b, i, end)) < 0) return -1;
  }
  return i;
}

/** Skips `"key":` at `i`: the index after the colon, or -1. */
function skipKey(b: Buffer, i: number, end: number): number {
  if (i >= end || b[i] !== QUOTE || (i = skipString(b, i + 1, end)) < 0) return -1;
  return i < end && b[i] === COLON ? i + 1 : -1;
}

/** Skips one value at `i` (nested ones iteratively): the index after it, or -1 when it is not JSON. */
function skipValue(b: Buffer, i: number, end: number): number {
  let depth = 0;
  for (;;) {
    // A value starts at i.
    if (i >= end) return -1;
    const c = b[i]!;
    if (c === QUOTE) {
      if ((i = skipString(b, i + 1, end)) < 0) return -1;
    } else if (c === LBRACE || c === LBRACKET) {
      if (depth === MAX_DEPTH) return -1;
      const object = c === LBRACE;
      i++;
      if (i < end && b[i] === (object ? RBRACE : RBRACKET)) {
        i++;
      } else {
        STACK[++depth] = object ? 1 : 2;
        if (object && (i = skipKey(b, i, end)) < 0) return -1;
        continue;
      }
    } else if (c === MINUS || (c >= ZERO && c <= NINE)) {
      if ((i = skipNumber(b, i, end)) < 0) return -1;
    } else if (c === 0x74 /* t */ && i + 4 <= end && spells(b, i, 'true')) {
      i += 4;
    } else if (c === 0x66 /* f */ && i + 5 <= end && spells(b, i, 'false')) {
      i += 5;
    } else if (c === 0x6e /* n */ && i + 4 <= end && spells(b, i, 'null')) {
      i += 4;
    } else {
      return -1;
    }
    // A value ended at i: close what it ends, or go on to the next member.
    for (;;) {
      if (depth === 0) return i;
      if (i >= end) return -1;
      const d = b[i]!;
      const object = STACK[depth] === 1;
      if (d === COMMA) {
        i++;
        if (object && (i = skipKey(b, i, end)) < 0) return -1;
        break;
      }
      if (d !== (object ? RBRACE : RBRACKET)) return -1;
      depth--;
      i++;
    }
  }
}

/**
 * The last text read per field, reused when the next claim's bytes spell it again: the network,
 * pool, CNI network and interface repeat from claim to claim, and the cache then holds one string
 * for all of them instead of one per claim (and a decode call is saved per field).
 */
const LAST: string[] = ['', '', '', '', '', '', '', ''];

/** The string of bytes [a, z) of `b` (UTF-8 when `wide`, else ASCII), for field `f`. */
function text(b: Buffer, a: number, z: number, wide: boolean, f: number): string {
  if (f === F_IP || f === F_CONTAINER) return b.toString(wide ? 'utf8' : 'latin1', a, z);
  const last = LAST[f]!;
  if (!wide && last.length === z - a) {
    let k = 0;
    while (k < last.length && last.charCodeAt(k) === b[a + k]) k++;
    if (k === last.length) return last;
  }
  const s = b.toString(wide ? 'utf8' : 'latin1', a, z);
  LAST[f] = s;
  return s;
}

/**
 * The digest of the claim stored as UTF-8 bytes `start`..`end` of `b` (the buffer may hold more),
 * or undefined when the text is not a compact claim in `JSON.stringify`'s form with every field the
 * digest needs (the caller then parses it whole).
 */
export function readClaimDigest(b: Buffer, start: number, end: number): StoredClaimDigest | undefined {
  let ip: string | undefined;
  let network: string | undefined;
  let family: 4 | 6 | undefined;
  let pool: string | undefined;
  let cniNetwork: string | undefined;
  let containerId: string | undefined;
  let ifName: string | undefined;
  let i = start;
  if (i >= end || b[i] !== LBRACE) return undefined;
  i++;
  if (i < end && b[i] === RBRACE) return undefined; // no fields at all
  for (;;) {
    // A top-level key, without escapes (an escaped one could spell a field's name).
    if (i >= end || b[i] !== QUOTE) return undefined;
    const k = ++i;
    while (i < end && SPECIAL[b[i]!] === 0) i++;
    if (i >= end || b[i] !== QUOTE) return undefined;
    const f = field(b, k, i);
    i++;
    if (i >= end || b[i] !== COLON || f === F_WHOLE) return undefined;
    i++;
    if (f === 0) {
      if ((i = skipValue(b, i, end)) < 0) return undefined;
    } else if (f === F_FAMILY) {
      // Exactly `4` or `6`: what follows must end the member (checked below), so `46` or `4.0` fail.
      if (i >= end || (b[i] !== 0x34 && b[i] !== 0x36)) return undefined;
      family = b[i] === 0x34 ? 4 : 6;
      i++;
    } else {
      // A string without escapes: its bytes between the quotes are its text.
      if (i >= end || b[i] !== QUOTE) return undefined;
      const v = ++i;
      let bits = 0;
      while (i < end && SPECIAL[b[i]!] === 0) bits |= b[i++]!;
      if (i >= end || b[i] !== QUOTE) return undefined;
      const s = text(b, v, i, bits > 0x7f, f);
      i++;
      if (f === F_IP) ip = s;
      else if (f === F_NETWORK) network = s;
      else if (f === F_POOL) pool = s;
      else if (f === F_CNI) cniNetwork = s;
      else if (f === F_CONTAINER) containerId = s;
      else ifName = s;
    }
    if (i >= end) return undefined;
    if (b[i] === COMMA) {
      i++;
      continue;
    }
    if (b[i] !== RBRACE || i + 1 !== end) return undefined;
    break;
  }
  if (ip === undefined || network === undefined || family === undefined || pool === undefined)
    return undefined;
  return { ip, network, family, pool, cniNetwork, containerId, ifName };
}
