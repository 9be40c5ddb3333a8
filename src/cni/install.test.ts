import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installCni } from './install.ts';

describe('installCni', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipkeeper-cni-install-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const source = join(dir, 'plugin-v1');
  writeFileSync(source, '#!/bin/sh\necho v1\n', { mode: 0o600 });

  it('installs as `ipkeeper`, mode 0755, creating the directory', async () => {
    const bin = join(dir, 'opt/cni/bin');
    const path = await installCni(bin, { source });
    assert.equal(path, join(bin, 'ipkeeper'));
    assert.equal(readFileSync(path, 'utf8'), '#!/bin/sh\necho v1\n');
    assert.equal(statSync(path).mode & 0o777, 0o755);
    assert.deepEqual(readdirSync(bin), ['ipkeeper'], 'no temporary file left behind');
  });

  it('replaces an installed plugin with a new file (rename, not a write into the old one)', async () => {
    const bin = join(dir, 'replace');
    const first = await installCni(bin, { source });
    const inode = statSync(first).ino;
    const v2 = join(dir, 'plugin-v2');
    writeFileSync(v2, '#!/bin/sh\necho v2\n');
    const second = await installCni(bin, { source: v2 });
    assert.equal(second, first);
    assert.equal(readFileSync(second, 'utf8'), '#!/bin/sh\necho v2\n');
    // A new inode: a runtime that had the old file open (or running) keeps reading the old one whole.
    assert.notEqual(statSync(second).ino, inode);
    assert.deepEqual(readdirSync(bin), ['ipkeeper']);
  });

  it('installs under another name', async () => {
    const path = await installCni(join(dir, 'named'), { source, name: 'ipkeeper-test' });
    assert.equal(path, join(dir, 'named', 'ipkeeper-test'));
  });

  for (const name of ['', '.', '..', 'a/b']) {
    it(`refuses the name ${JSON.stringify(name)}`, async () => {
      await assert.rejects(installCni(join(dir, 'bad'), { source, name }), /is not a file name/);
    });
  }

  it('fails naming a missing source, and leaves nothing behind', async () => {
    const bin = join(dir, 'missing-source');
    await assert.rejects(
      installCni(bin, { source: join(dir, 'nope') }),
      /nope does not exist; build it with `npm run build`/,
    );
  });
});
