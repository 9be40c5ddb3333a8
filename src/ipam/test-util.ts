/**
 * @module ipam/test-util
 * Assertions shared by the engine's tests (imported by `*.test.ts` only).
 */
import assert from 'node:assert/strict';
import { IpamError } from '../errors.ts';

/**
 * Awaits `p` and asserts that it rejects with an IpamError of `code` whose message matches `re`.
 * @returns the error, for further checks.
 */
export async function rejects(p: Promise<unknown>, code: string, re?: RegExp): Promise<IpamError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof IpamError, `expected IpamError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (re) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected ${code}`);
}
