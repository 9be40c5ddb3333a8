/**
 * @module cni/ip
 * The few address checks the plugin needs, on `node:net` only (the plugin bundles nothing else).
 * `isIP` rejects `010.0.0.1` and other octal-looking forms, which is why it is used rather than a
 * hand-written pattern. Each check returns `undefined` when the text is fine, else the reason as a
 * phrase that completes "... which <reason>".
 */

import { isIP } from 'node:net';

/** `10.0.0.1` or `fd00::1`. */
export function checkIp(text: unknown): string | undefined {
  if (typeof text !== 'string') return 'is not a string';
  return isIP(text) === 0 ? 'is not an IPv4 or IPv6 address' : undefined;
}

/** `10.0.0.0/8`, `fd00::/64`: the prefix is required. */
export function checkCidr(text: unknown): string | undefined {
  if (typeof text !== 'string') return 'is not a string';
  if (!text.includes('/')) return 'has no prefix length; write it as address/prefix, e.g. 10.0.0.0/8';
  return checkIpOrCidr(text);
}

/** An address with or without a prefix length: `10.0.0.5` or `10.0.0.5/24`. */
export function checkIpOrCidr(text: unknown): string | undefined {
  if (typeof text !== 'string') return 'is not a string';
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return 'is not an IPv4 or IPv6 address';
  if (slash < 0) return undefined;
  const prefix = text.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  // Digits only, no leading zero (so `/024` and `/+24` are refused rather than guessed at).
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefix) || Number(prefix) > max) {
    return `has the prefix length ${JSON.stringify(prefix)}; an IPv${family} prefix is 0 to ${max}`;
  }
  return undefined;
}
