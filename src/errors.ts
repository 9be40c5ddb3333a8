/**
 * @module errors
 * The one error catalogue. Every error ipkeeper reports has a stable `code`, the CNI error code the
 * plugin prints, and the HTTP status the agent answers with. Translate to CNI or HTTP only at the
 * edges (`src/cni`, `src/agent`); inside, throw `IpamError`. `docs/ERRORS.md` is checked against this
 * table by a test, so the reference cannot drift.
 *
 * Imports nothing: the CNI plugin bundles this file.
 */

export const ERRORS = {
  INCOMPATIBLE_CNI_VERSION: {
    cni: 1,
    http: 400,
    summary: 'the runtime asked for a CNI version this plugin does not speak',
  },
  INVALID_ENV: { cni: 4, http: 400, summary: 'a CNI_* environment variable is missing or malformed' },
  IO_FAILURE: { cni: 5, http: 500, summary: 'reading stdin or writing the result failed' },
  DECODE_FAILED: { cni: 6, http: 400, summary: 'the network configuration on stdin is not JSON' },
  INVALID_CONFIG: { cni: 7, http: 400, summary: 'the network configuration has a bad or missing field' },
  AGENT_UNAVAILABLE: {
    cni: 11,
    http: 503,
    summary: 'the ipkeeper agent cannot be reached on its socket; the runtime should retry',
  },
  STORE_UNAVAILABLE: { cni: 11, http: 503, summary: 'the store did not answer in time; retry' },
  BUSY: { cni: 11, http: 429, summary: 'the agent is over its request limit; retry' },
  NOT_READY: { cni: 50, http: 503, summary: 'the agent cannot give out an address right now' },
  APP_POOL_PENDING: {
    cni: 11,
    http: 503,
    summary:
      "the controller has not created the application's pool (ipkeeper.io/subnet) yet; the runtime should retry",
  },
  POOL_EXHAUSTED: { cni: 100, http: 409, summary: 'no free address in any of the chosen pools' },
  NO_POOL: { cni: 101, http: 422, summary: 'no pool applies to this request' },
  POOL_NOT_FOUND: { cni: 102, http: 404, summary: 'a named pool does not exist' },
  ADDRESS_RESERVED: { cni: 103, http: 409, summary: 'the requested address is reserved' },
  ADDRESS_IN_USE: { cni: 104, http: 409, summary: 'the requested address is held by another owner' },
  ADDRESS_NOT_IN_POOL: {
    cni: 105,
    http: 422,
    summary: 'the requested address is outside every allowed pool',
  },
  INVALID_OBJECT: { cni: 106, http: 422, summary: 'an object or annotation failed validation' },
  NOT_FOUND: { cni: 107, http: 404, summary: 'the object does not exist' },
  CONFLICT: { cni: 108, http: 409, summary: 'the object changed underneath; re-read and retry' },
  ADDRESS_IN_USE_BY_LIVE_POD: {
    cni: 104,
    http: 409,
    summary:
      'a manual reclaim was refused: a live pod still uses the address (pass --force to release it anyway)',
  },
  INTERNAL: { cni: 110, http: 500, summary: 'an unexpected failure inside ipkeeper' },
} as const satisfies Record<string, { cni: number; http: number; summary: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** An error from the catalogue. `details` carries the values the message quotes, for logs and APIs. */
export class IpamError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'IpamError';
    this.code = code;
    this.details = details;
  }
  get cniCode(): number {
    return ERRORS[this.code].cni;
  }
  get httpStatus(): number {
    return ERRORS[this.code].http;
  }
  toJSON(): { code: ErrorCode; message: string; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isIpamError(e: unknown): e is IpamError {
  return e instanceof IpamError;
}
