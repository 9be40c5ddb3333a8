/**
 * @module cni/args
 * CNI_ARGS: `K=V;K=V` pairs from the runtime (`IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;...`).
 *
 * Every key is kept and forwarded to the agent, which reads the pod identity (`K8S_POD_*`) and a
 * requested address (`IP`) from it. Because nothing is dropped, an unknown key is never an error,
 * whatever `IgnoreUnknown` says; `IgnoreUnknown` itself is still checked to be a boolean, as the Go
 * plugins do, so a typo there is reported rather than silently read as "false".
 */

import { IpamError } from '../errors.ts';
import { checkIpOrCidr } from './ip.ts';

export interface CniArgs {
  /** Every pair, in the runtime's spelling of the keys. */
  args: Record<string, string>;
  /** `IgnoreUnknown` (any case) was `1`/`true`. */
  ignoreUnknown: boolean;
}

const KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const TRUE = new Set(['1', 'true']);
const FALSE = new Set(['0', 'false']);

/**
 * Parses CNI_ARGS. Empty segments (a trailing `;`) are tolerated; a value may contain `=` (split at the
 * first one). `IP` may list several addresses separated by commas, each an address or address/prefix.
 *
 * @throws IpamError INVALID_ENV (CNI 4) naming the bad pair: no `=`, an empty or odd key, a repeated
 *   key, a non-boolean `IgnoreUnknown`, or an `IP` that is not an address.
 */
export function parseCniArgs(raw: string | undefined): CniArgs {
  // A Map, not an object literal, so a key such as `__proto__` stays an ordinary key.
  const args = new Map<string, string>();
  let ignoreUnknown = false;
  if (raw === undefined || raw === '') return { args: {}, ignoreUnknown };
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq < 0) {
      throw bad(pair, 'has no `=`; write each argument as KEY=VALUE, separated by `;`');
    }
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!KEY.test(key)) {
      throw bad(
        pair,
        `has the key ${JSON.stringify(key)}; a key is a letter or _ followed by letters, digits, _ . -`,
      );
    }
    if (args.has(key)) {
      throw bad(pair, `repeats the key ${key}; give each key once`);
    }
    if (key.toUpperCase() === 'IGNOREUNKNOWN') {
      const v = value.toLowerCase();
      if (TRUE.has(v)) ignoreUnknown = true;
      else if (!FALSE.has(v)) throw bad(pair, 'is not a boolean; write IgnoreUnknown=1 or IgnoreUnknown=0');
    }
    if (key === 'IP') {
      for (const ip of value.split(',')) {
        const why = checkIpOrCidr(ip);
        if (why !== undefined) throw bad(pair, `lists ${JSON.stringify(ip)}, which ${why}`);
      }
    }
    args.set(key, value);
  }
  return { args: Object.fromEntries(args), ignoreUnknown };
}

function bad(pair: string, why: string): IpamError {
  return new IpamError('INVALID_ENV', `CNI_ARGS: the pair ${JSON.stringify(pair)} ${why}`, {
    variable: 'CNI_ARGS',
    pair,
  });
}
