/**
 * @module bench/sqlite-writer
 * A worker for the burst anchor: opens the shared sqlite file, says `ready` on stdout, waits for a
 * line on stdin, then creates `count` claim keys at once through `SqliteStore` (as an agent's
 * concurrent ADDs would) and prints the milliseconds it took.
 *
 *   node bench/sqlite-writer.ts <db path> <key prefix> <count>
 */
import { SqliteStore } from '../src/store/sqlite.ts';
import { claimObject } from './fixtures.ts';
import { nowMs } from './lib.ts';

const [path, prefix, countText] = process.argv.slice(2);
if (!path || !prefix || !countText) {
  console.error('usage: node bench/sqlite-writer.ts <db path> <key prefix> <count>');
  process.exit(2);
}
const count = Number(countText);
const store = new SqliteStore(path);
const claims = Array.from({ length: count }, (_, i) => {
  const c = claimObject({
    pool: 'anchor',
    family: 4,
    value: 0x0a000001n + BigInt(i),
    tag: `${prefix}-${i}`,
    node: prefix,
    cniNetwork: 'anchor',
  });
  return { key: `ipclaims/${prefix}.${i}`, claim: c.claim };
});
process.stdout.write('ready\n');
process.stdin.once('data', () => {
  void (async () => {
    const t0 = nowMs();
    const results = await Promise.all(claims.map((c) => store.create(c.key, c.claim)));
    const ms = nowMs() - t0;
    if (results.some((r) => !r.created)) throw new Error('a key existed');
    process.stdout.write(`${ms}\n`);
    await store.close();
    process.exit(0);
  })();
});
