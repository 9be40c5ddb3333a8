import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { CLAIMS_CACHE_FORMAT, readClaimsCache, writeClaimsCache } from './claims-cache.ts';
import { IpamState, LazyClaim } from './state.ts';
import { readClaimDigest } from '../store/claim-digest.ts';
import { encodeValue } from '../store/codec.ts';
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
    cniNetwork: 'net',
    containerId: `c-${ip}`,
    ifName: 'eth0',
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

  it('reads back what it wrote, for the same store only', async () => {
    const f = join(dir, 'a.json');
    const w = await writeClaimsCache(f, 'kubernetes:uid-1', '120', [
      held('10.0.0.1', '100'),
      held('10.0.0.2', '130'),
    ]);
    assert.deepEqual(w, { count: 2, bytes: statSync(f).size });
    const r = readClaimsCache(f, 'kubernetes:uid-1');
    assert.ok(r.ok);
    assert.equal(r.revision, '120');
    assert.deepEqual(
      r.claims.map((e) => [e.key, e.version, e.ip, JSON.parse(e.text!).spec.ip]),
      [
        ['ipclaims/net.10.0.0.1', '100', '10.0.0.1', '10.0.0.1'],
        ['ipclaims/net.10.0.0.2', '130', '10.0.0.2', '10.0.0.2'],
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

  it('names what is wrong with a file it will not use', async () => {
    const f = join(dir, 'b.json');
    await writeClaimsCache(f, 's', '9', [held('10.0.0.1', '5'), held('10.0.0.2', '6')]);
    const good = readFileSync(f, 'utf8');
    const [head, ...rest] = good.split('\n');
    const body = rest.join('\n');
    const h = JSON.parse(head!);
    /** The file with its header edited, and the body's length, checksum and index line's place made to match `b`. */
    const make = (edit: object, b = body): string => {
      const bytes = Buffer.byteLength(b);
      const index = Buffer.byteLength(b.slice(0, b.lastIndexOf('\n', b.length - 2) + 1));
      return `${JSON.stringify({ ...h, bytes, crc32: crc32(b), index, ...edit })}\n${b}`;
    };
    const [t0, t1, rows] = body.split('\n');
    const withRows = (edit: (r: { strings: string[]; claims: any[] }) => void): string => {
      const r = JSON.parse(rows!);
      edit(r);
      return make({}, [t0, t1, JSON.stringify(r), ''].join('\n'));
    };
    const cases: [string, RegExp][] = [
      [make({ format: 'x/v0' }), /its format is "x\/v0"/],
      [make({ format: 'ipkeeper-claims-cache/v1' }), /its format is "ipkeeper-claims-cache\/v1", not .*\/v2/],
      [make({ store: 't' }), /another store's claims \(t, this is s\)/],
      [make({ revision: '09' }), /revision "09" is not a positive decimal/],
      [make({ count: 3 }), /lists 2 claims, its header 3/],
      [make({ index: 5 }), /index line is not at byte 5 of its claims/],
      [make({ index: -1 }), /index line is not at byte -1/],
      [make({}, body.slice(0, -1) + ' '), /index line is not at byte/],
      [good.slice(0, -20), /bytes of claims, its header/],
      [good.replace('10.0.0.2"', '10.0.0.3"'), /do not match its checksum/],
      [`{"format":${JSON.stringify(CLAIMS_CACHE_FORMAT)}`, /header is not JSON/],
      [make({}, body.replace('{"claims"', '{claims')), /index of claims is not JSON/],
      [withRows((r) => (r.claims[10 + 4] = 5)), /claim 1 is not key, revision, ip, network, 4\|6/],
      [withRows((r) => (r.claims[0] = 'ippools/x')), /claim 0 is not/],
      [withRows((r) => (r.claims[1] = 'v5')), /claim 0 is not/],
      [withRows((r) => (r.claims[2] = '10.0.0.300')), /claim 0 is not/],
      [withRows((r) => (r.claims[2] = 'fd00::1')), /claim 0 is not/],
      [withRows((r) => (r.claims[3] = 99)), /claim 0 is not/],
      [withRows((r) => (r.claims[3] = -1)), /claim 0 is not/],
      [withRows((r) => (r.claims[7] = 7)), /claim 0 is not/],
      [withRows((r) => r.claims.pop()), /it lists 1\.9 claims, its header 2/],
      [withRows((r) => (r.strings = [1] as never)), /not \{claims, strings\}/],
      [make({}, [t0, rows, ''].join('\n')), /claim 1's JSON is not where its length puts it/],
      [withRows((r) => (r.claims[9] -= 1)), /claim 0's JSON is not where/],
      [withRows((r) => (r.claims[9] = 'x')), /claim 0's JSON is not where/],
      [make({}, [t0, t1, '{}', rows, ''].join('\n')), /more claims' JSON than its header's 2/],
    ];
    for (const [text, reason] of cases) {
      writeFileSync(f, text);
      const r = readClaimsCache(f, 's');
      assert.equal(r.ok, false, text.slice(0, 600));
      assert.match(!r.ok ? r.reason : '', reason);
    }
    const missing = readClaimsCache(join(dir, 'none.json'), 's');
    assert.deepEqual(missing, { ok: false, reason: 'no file yet' });
  });

  it('keeps absent and empty optional fields apart', async () => {
    const f = join(dir, 'e.json');
    const odd = held('10.0.0.5', '3');
    odd.claim.spec.containerId = '';
    delete odd.claim.spec.ifName;
    await writeClaimsCache(f, 's', '9', [odd, held('10.0.0.6', '4')]);
    const r = readClaimsCache(f, 's');
    assert.ok(r.ok);
    assert.equal(r.claims[0]!.containerId, '');
    assert.equal(r.claims[0]!.ifName, undefined);
    assert.equal(r.claims[1]!.containerId, 'c-10.0.0.6');
  });

  it('a claim read from the file is parsed when read, and written again as it was read', async () => {
    const f = join(dir, 'g.json');
    await writeClaimsCache(f, 's', '9', [held('10.0.0.7', '3')]);
    const r = readClaimsCache(f, 's');
    assert.ok(r.ok);
    const state = new IpamState();
    const lazy = r.claims[0]!;
    const text = lazy.text;
    assert.equal(state.putLazy(lazy), true);
    assert.equal(state.claims.get(lazy.key), lazy);
    const f2 = join(dir, 'g2.json');
    await writeClaimsCache(f2, 's', '9', Array.from(state.claims.values()));
    assert.equal(lazy.text, text, 'writing did not parse it');
    const rest = (p: string) => readFileSync(p, 'utf8').split('\n').slice(1).join('\n');
    assert.equal(rest(f2), rest(f));
    assert.equal(lazy.claim.spec.owner.name, 'pod-10.0.0.7');
    assert.equal(lazy.text, undefined);
    assert.deepEqual(
      state.claimsOf('net', 'c-10.0.0.7', 'eth0').map((h) => h.key),
      [lazy.key],
    );
  });

  it('a claim still as its compact stored text (an etcd start) is written whole, and released without parsing', async () => {
    const c = claim('10.0.0.8');
    const stored = Buffer.from(`xx${encodeValue(`ipclaims/${c.metadata.name}`, c)}yy`);
    const digest = readClaimDigest(stored, 2, stored.length - 2);
    assert.ok(digest);
    const lazy = new LazyClaim(
      `ipclaims/${c.metadata.name}`,
      '4',
      167772168n,
      digest,
      stored,
      2,
      stored.length - 2,
      true,
    );
    assert.equal(lazy.text, undefined, 'no whole-claim text to copy');
    assert.equal(lazy.bytes, undefined);
    const state = new IpamState();
    assert.equal(state.putLazy(lazy), true);
    const f = join(dir, 'g3.json');
    await writeClaimsCache(f, 's', '9', Array.from(state.claims.values()));
    const r = readClaimsCache(f, 's');
    assert.ok(r.ok);
    assert.deepEqual(r.claims[0]!.claim, c, 'the file holds the whole claim');
    // A claim still as text leaves the indexes by its digest: no parse.
    const second = new LazyClaim(lazy.key, '4', 167772168n, digest, stored, 2, stored.length - 2, true);
    const state2 = new IpamState();
    state2.putLazy(second);
    assert.ok(state2.usedSet('net', 4).has(167772168n));
    assert.equal(state2.remove(second.key, '5'), true);
    assert.equal(second.unparsed, true);
    assert.equal(state2.usedSet('net', 4).has(167772168n), false);
    assert.deepEqual(state2.claimsOf('net', 'c-10.0.0.8', 'eth0'), []);
    assert.deepEqual(second.claim, c, 'read, it is the whole claim');
  });

  it('a failed write leaves the old file as it was, and no temporary file', async () => {
    const f = join(dir, 'c.json');
    await writeClaimsCache(f, 's', '7', [held('10.0.0.1', '7')]);
    const before = readFileSync(f, 'utf8');
    await assert.rejects(writeClaimsCache(join(dir, 'no-such-dir', 'c.json'), 's', '8', []), /ENOENT/);
    // The file's place is a directory: the rename fails after the whole file was written.
    const d = join(dir, 'c-dir.json');
    mkdirSync(join(d, 'inside'), { recursive: true });
    await assert.rejects(writeClaimsCache(d, 's', '8', [held('10.0.0.1', '7')]), /EISDIR|ENOTEMPTY|EEXIST/);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n.includes('.tmp')),
      [],
    );
    assert.equal(readFileSync(f, 'utf8'), before);
  });

  it('a write removes the temporary files of writers killed mid-write, and only those', async () => {
    const own = mkdtempSync(join(dir, 'k-'));
    const f = join(own, 'k.json');
    writeFileSync(`${f}.4242.tmp`, 'half a checkpoint');
    writeFileSync(`${f}.other.tmp`, 'not ours');
    writeFileSync(join(own, 'k2.json.4242.tmp'), 'another file');
    await writeClaimsCache(f, 's', '9', [held('10.0.0.1', '5')]);
    assert.equal(existsSync(`${f}.4242.tmp`), false);
    assert.equal(existsSync(`${f}.other.tmp`), true);
    assert.equal(existsSync(join(own, 'k2.json.4242.tmp')), true);
    assert.ok(readClaimsCache(f, 's').ok);
  });

  it('written in slices, between other work, it is the same file', async () => {
    const many = Array.from({ length: 3000 }, (_, i) => held(`10.1.${i >> 8}.${i & 255}`, String(i + 1)));
    const whole = join(dir, 'w1.json');
    const sliced = join(dir, 'w2.json');
    await writeClaimsCache(whole, 's', '3000', many);
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    try {
      await writeClaimsCache(sliced, 's', '3000', many, { sliceMs: 0 });
    } finally {
      clearInterval(ticker);
    }
    assert.ok(turns > 0, 'the event loop ran while it was written');
    const rest = (p: string) => readFileSync(p, 'utf8').split('\n').slice(1).join('\n');
    assert.equal(rest(sliced), rest(whole));
    const r = readClaimsCache(sliced, 's');
    assert.ok(r.ok);
    assert.deepEqual(
      r.claims.map((c) => [c.key, c.version, c.claim.spec.ip]),
      many.map((h) => [h.key, h.version, h.claim.spec.ip]),
    );
  });

  it('a claim larger than the write buffer, and one of many UTF-8 bytes, come back whole', async () => {
    const f = join(dir, 'big.json');
    const big = held('10.0.0.11', '5');
    (big.claim.spec as unknown as Record<string, unknown>).note = 'x'.repeat(1_500_000);
    const wide = held('10.0.0.12', '6');
    wide.claim.spec.owner.name = 'pod-ü€😀'.repeat(10_000);
    await writeClaimsCache(f, 's', '9', [held('10.0.0.10', '4'), big, wide, held('10.0.0.13', '7')]);
    const r = readClaimsCache(f, 's');
    assert.ok(r.ok, !r.ok ? r.reason : '');
    assert.deepEqual(
      r.claims.map((c) => c.claim),
      [held('10.0.0.10', '4').claim, big.claim, wide.claim, held('10.0.0.13', '7').claim],
    );
  });

  it('an engine on a store that cannot resume a watch neither reads nor writes the file', async () => {
    const f = join(dir, 'd.json');
    await writeClaimsCache(f, 'memory', '7', [held('10.0.0.9', '7')]);
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
