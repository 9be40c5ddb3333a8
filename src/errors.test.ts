import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS, IpamError } from './errors.ts';
import { renderErrorsDoc } from './errors-doc.ts';

it('docs/ERRORS.md is in step with the catalogue (regenerate: node scripts/gen-docs.ts)', () => {
  const doc = readFileSync(new URL('../docs/ERRORS.md', import.meta.url), 'utf8');
  assert.equal(doc, renderErrorsDoc());
});

it('ipkeeper codes are 100+ and CNI codes stay within the spec ranges', () => {
  for (const [code, e] of Object.entries(ERRORS)) {
    assert.ok([1, 2, 3, 4, 5, 6, 7, 11, 50, 51].includes(e.cni) || e.cni >= 100, code);
    assert.ok(e.http >= 400 && e.http < 600, code);
  }
});

it('an IpamError maps to its CNI code and HTTP status and serialises without a stack', () => {
  const e = new IpamError('POOL_EXHAUSTED', 'no free address', { pool: 'p' });
  assert.equal(e.cniCode, 100);
  assert.equal(e.httpStatus, 409);
  assert.deepEqual(JSON.parse(JSON.stringify(e)), {
    code: 'POOL_EXHAUSTED',
    message: 'no free address',
    details: { pool: 'p' },
  });
});
