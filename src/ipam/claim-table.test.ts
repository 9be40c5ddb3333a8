/**
 * ClaimTable: claims and the tombstones of their deletes in one Map, overwritten in place; the
 * tombstones bounded, oldest first.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ClaimTable } from './claim-table.ts';
import type { HeldClaim } from './state.ts';

const held = (key: string, version: string): HeldClaim =>
  ({ key, version, value: 1n, claim: { spec: {} } }) as unknown as HeldClaim;

describe('ClaimTable', () => {
  it('a delete leaves a tombstone in place of the claim; a put replaces it', () => {
    const t = new ClaimTable(10);
    t.set('ipclaims/a', held('ipclaims/a', '1'));
    assert.equal(t.size, 1);
    assert.equal(t.get('ipclaims/a')?.version, '1');
    assert.equal(t.tombstone('ipclaims/a'), undefined);
    t.bury('ipclaims/a', '2');
    assert.equal(t.size, 0);
    assert.equal(t.get('ipclaims/a'), undefined);
    assert.equal(t.has('ipclaims/a'), false);
    assert.equal(t.tombstone('ipclaims/a'), '2');
    assert.deepEqual([...t.values()], []);
    t.set('ipclaims/a', held('ipclaims/a', '3'));
    assert.equal(t.size, 1);
    assert.equal(t.tombstone('ipclaims/a'), undefined);
    assert.deepEqual(
      [...t.values()].map((h) => h.version),
      ['3'],
    );
    // Burying a key never held is a tombstone too (a delete seen before its put).
    t.bury('ipclaims/b', '4');
    assert.equal(t.size, 1);
    assert.equal(t.tombstone('ipclaims/b'), '4');
  });

  it('putIfNewer holds a claim only over an older claim or tombstone, and says what it replaced', () => {
    const t = new ClaimTable(10);
    assert.equal(t.putIfNewer(held('ipclaims/a', '5')), undefined, 'nothing was there');
    assert.equal(t.size, 1);
    assert.equal(t.putIfNewer(held('ipclaims/a', '5')), false, 'the same version changes nothing');
    assert.equal(t.putIfNewer(held('ipclaims/a', '4')), false, 'an older version changes nothing');
    assert.equal(t.get('ipclaims/a')?.version, '5');
    assert.equal(
      (t.putIfNewer(held('ipclaims/a', '10')) as HeldClaim).version,
      '5',
      'replaced the claim at 5',
    );
    assert.equal(t.size, 1);
    t.bury('ipclaims/a', '12');
    assert.equal(t.putIfNewer(held('ipclaims/a', '11')), false, 'a put older than the delete is dropped');
    assert.equal(t.size, 0);
    assert.equal(t.tombstone('ipclaims/a'), '12');
    assert.equal(t.putIfNewer(held('ipclaims/a', '13')), undefined, 'over a tombstone: no claim replaced');
    assert.equal(t.size, 1);
    assert.equal(t.tombstone('ipclaims/a'), undefined);
    // The tombstone count went down with it: three more tombstones fit under a limit of 3.
    const small = new ClaimTable(3);
    small.bury('ipclaims/x', '1');
    small.putIfNewer(held('ipclaims/x', '2'));
    for (const k of ['p', 'q', 'r']) small.bury(`ipclaims/${k}`, '3');
    assert.deepEqual(
      ['p', 'q', 'r'].map((k) => small.tombstone(`ipclaims/${k}`)),
      ['3', '3', '3'],
    );
  });

  it('keeps at most `limit` tombstones, dropping the oldest; re-buried and re-held keys keep their place', () => {
    const t = new ClaimTable(3);
    for (const k of ['a', 'b', 'c']) t.bury(k, '1');
    t.bury('a', '2'); // a is now the newest tombstone
    t.bury('d', '3'); // over the limit: the oldest still there is b
    assert.equal(t.tombstone('b'), undefined);
    assert.equal(t.tombstone('a'), '2');
    assert.equal(t.tombstone('c'), '1');
    assert.equal(t.tombstone('d'), '3');
    t.set('c', held('c', '5')); // c is a claim again: not a tombstone to drop
    t.bury('e', '6');
    t.bury('f', '7'); // a goes (the oldest tombstone), c stays a claim
    assert.equal(t.get('c')?.version, '5');
    assert.equal(t.tombstone('a'), undefined);
    assert.deepEqual(
      ['d', 'e', 'f'].map((k) => t.tombstone(k)),
      ['3', '6', '7'],
    );
  });

  it('a long churn of a few keys beside many others: counts stay exact, nothing else is lost', () => {
    const t = new ClaimTable(1000);
    for (let i = 0; i < 5000; i++) t.set(`other/${i}`, held(`other/${i}`, '1'));
    let v = 1;
    for (let i = 0; i < 20_000; i++) {
      const k = `hot/${i % 16}`;
      t.set(k, held(k, String(++v)));
      t.bury(k, String(++v));
    }
    assert.equal(t.size, 5000);
    assert.equal([...t.values()].length, 5000);
    for (let i = 0; i < 16; i++) assert.ok(t.tombstone(`hot/${i}`) !== undefined);
    t.clear();
    assert.equal(t.size, 0);
    assert.equal(t.tombstone('hot/0'), undefined);
  });
});
