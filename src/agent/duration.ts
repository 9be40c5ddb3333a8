/**
 * @module agent/duration
 * Durations on the agent's command line: `15s`, `500ms`, `5m`, or a whole number of milliseconds.
 */
import { IpamError } from '../errors.ts';

/**
 * Milliseconds of the duration `v` given for `flag`, at least `min`.
 * @throws IpamError INVALID_CONFIG naming the flag, the value and the accepted forms.
 */
export function parseDuration(flag: string, v: string, min: number): number {
  const m = /^(\d+)(ms|s|m)?$/.exec(v.trim());
  const n = m ? Number(m[1]) * (m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 1) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new IpamError(
      'INVALID_CONFIG',
      `${flag} ${v} must be a duration such as 15s, 500ms or 1m (at least ${min === 0 ? '0, which turns it off' : `${min}ms`})`,
    );
  }
  return n;
}
