import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLAIMS_CACHE_FORMAT, readClaimsCache, writeClaimsCache } from './claims-cache.ts';
import { MemoryStore } from '../store/memory.ts';
import { Ipam } from './engine.ts';
import type { HeldClaim } from './state.ts';
import type { IPClaim } from '../api/kinds.ts';

const claim = (ip: string): IPClaim => ({
  apiVersion: 'ipkeeper.io/v1alpha1',
  kind: 'IPClaim',
  metadata: { name: `net.${ip}` },
  spec: {
    network: 'net',
    ip,
    family: 4,
    pool: 'p',
    owner: { kind: 'Pod', namespace: 'ns', name: `pod-${ip}`, uid: `u-${ip}` },
    createdAt: '2026-12-06T00:00:00Z',
  },
});
const held = (ip: string, version: string): HeldClaim => ({
  key: `ipclaims/net.${ip}`,
  claim: claim(ip),
  version,
  value: 0n,
});

describe('claims cache file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipk-cc-'));

  it('reads back what it wrote, for the same store only', () => {
    const f = join(dir, 'a.json');
    assert.equal(
      writeClaimsCache(f, 'kubernetes:uid-1', '120', [held('10.0.0.1', '100'), held('10.0.0.2', '130')]),
      2,
    );
    const r = readClaimsCache(f, 'kubernetes:uid-1');
    assert.ok(r.ok);
    assert.equal(r.revision, '120');
    assert.deepEqual(
      r.entries.map((e) => [e.key, e.version, e.value.spec.ip]),
      [
        ['ipclaims/net.10.0.0.1', '100', '10.0.0.1'],
        ['ipclaims/net.10.0.0.2', '130', '10.0.0.2'],
      ],
    );
    const other = readClaimsCache(f, 'kubernetes:uid-2');
    assert.equal(other.ok, false);
    assert.match(
      !other.ok ? other.reason : '',
      /another store's claims \(kubernetes:uid-1, this is kubernetes:uid-2\)/,
    );
    // Written whole: no temporary file left beside it.
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.startsWith('a.json')),
      ['a.json'],
    );
  });

  it('names what is wrong with a file it will not use', () => {
    const f = join(dir, 'b.json');
    const head = (h: object) =>
      JSON.stringify({ format: CLAIMS_CACHE_FORMAT, store: 's', revision: '9', count: 1, ...h });
    const entry = JSON.stringify([['ipclaims/net.10.0.0.1', '5', claim('10.0.0.1')]]);
    const cases: [string, RegExp][] = [
      [`${head({ format: 'x/v0' })}\n${entry}`, /its format is "x\/v0"/],
      [`${head({ revision: '09' })}\n${entry}`, /revision "09" is not a positive decimal/],
      [`${head({ count: 2 })}\n${entry}`, /lists 1 claims, its header 2/],
      [`${head({})}\n${entry.slice(0, -3)}`, /not valid JSON/],
      [
        `${head({})}\n[["pools/x","5",${JSON.stringify(claim('10.0.0.1'))}]]`,
        /entry 0 is not \[claim key, revision, IPClaim\]/,
      ],
      [`${head({})}\n[["ipclaims/x","v5",${JSON.stringify(claim('10.0.0.1'))}]]`, /entry 0 is not/],
      [`${head({})}\n[["ipclaims/x","5",{"spec":{"ip":1}}]]`, /entry 0 is not/],
    ];
    for (const [text, reason] of cases) {
      writeFileSync(f, text);
      const r = readClaimsCache(f, 's');
      assert.equal(r.ok, false, text);
      assert.match(!r.ok ? r.reason : '', reason);
    }
    const missing = readClaimsCache(join(dir, 'none.json'), 's');
    assert.deepEqual(missing, { ok: false, reason: 'no file yet' });
  });

  it('a failed write leaves the old file as it was', () => {
    const f = join(dir, 'c.json');
    writeClaimsCache(f, 's', '7', [held('10.0.0.1', '7')]);
    const before = readFileSync(f, 'utf8');
    assert.throws(() => writeClaimsCache(join(dir, 'no-such-dir', 'c.json'), 's', '8', []), /ENOENT/);
    assert.equal(readFileSync(f, 'utf8'), before);
  });

  it('an engine on a store that cannot resume a watch neither reads nor writes the file', async () => {
    const f = join(dir, 'd.json');
    writeClaimsCache(f, 'memory', '7', [held('10.0.0.9', '7')]);
    const before = readFileSync(f, 'utf8');
    const logged: string[] = [];
    const log = { info: (_o: object, m?: string) => logged.push(m ?? ''), warn() {}, error() {} };
    const ipam = new Ipam({ store: new MemoryStore(), node: 'n', claimsCache: f, log });
    await ipam.start();
    assert.equal(ipam.state.claims.size, 0);
    await ipam.stop();
    assert.equal(readFileSync(f, 'utf8'), before);
    assert.ok(
      logged.some((m) => /claims cache not used/.test(m)),
      logged.join('\n'),
    );
    assert.ok(existsSync(f));
  });
});
