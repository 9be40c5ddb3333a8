/**
 * @module store/crash-writer
 * A child process for the sqlite durability and multi-process tests (sqlite-crash.test.ts,
 * sqlite.test.ts). Not part of ipkeeper itself.
 *
 *   node crash-writer.ts crash DB TAG   writes until killed; one stdout line per ACKNOWLEDGED write:
 *                                        `C key` created, `D key` deleted, `U key n` counter set to n
 *   node crash-writer.ts race DB TAG N  prints `ready`, waits for a line on stdin, then tries to create
 *                                        `race/k0..k(N-1)` with value { by: TAG } and prints `W key`
 *                                        (won) or `L key` (lost) for each, then exits 0
 *
 * A line is printed only after the write's promise resolved, so the parent may hold the store to
 * every line it read. (stdout to a pipe is synchronous on Linux, so no acknowledged line is left in
 * a buffer at SIGKILL; a lost line would only make the test check less, never wrongly.)
 */
import { createInterface } from 'node:readline';
import { SqliteStore } from './sqlite.ts';

const CONCURRENCY = 8;

const [mode, db, tag, countArg] = process.argv.slice(2);
if ((mode !== 'crash' && mode !== 'race') || !db || !tag) {
  console.error('usage: crash-writer.ts crash DB TAG | race DB TAG N');
  process.exit(2);
}

const store = new SqliteStore(db);
const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

/** The value a crash-mode create writes for key number i; sqlite-crash.test.ts checks it exactly. */
function crashValue(tag: string, i: number): { tag: string; i: number; pad: string } {
  return { tag, i, pad: `${tag}:${i}:`.repeat(20) };
}

async function crashLoop(next: () => number): Promise<never> {
  const counter = `counters/${tag}`;
  for (;;) {
    const i = next();
    const key = `crash/${tag}-${i}`;
    const r = await store.create(key, crashValue(tag!, i));
    if (!r.created) throw new Error(`${key} already existed`);
    say(`C ${key}`);
    if (i % 7 === 3) {
      const d = await store.delete(key, r.version);
      if (!d.ok) throw new Error(`delete ${key} failed`);
      say(`D ${key}`);
    }
    if (i % 5 === 0) {
      for (;;) {
        const cur = await store.get<{ n: number }>(counter);
        if (!cur) {
          if ((await store.create(counter, { n: 1 })).created) {
            say(`U ${counter} 1`);
            break;
          }
          continue;
        }
        const u = await store.update(counter, { n: cur.value.n + 1 }, cur.version);
        if (u.ok) {
          say(`U ${counter} ${cur.value.n + 1}`);
          break;
        }
      }
    }
  }
}

async function race(n: number): Promise<void> {
  say('ready');
  const rl = createInterface({ input: process.stdin });
  await new Promise<void>((resolve) => rl.once('line', () => resolve()));
  rl.close();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < n; i = next++) {
        const key = `race/k${i}`;
        const r = await store.create(key, { by: tag });
        say(`${r.created ? 'W' : 'L'} ${key}`);
      }
    }),
  );
  await store.close();
}

if (mode === 'crash') {
  let i = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, () => crashLoop(() => i++)));
} else {
  await race(Number(countArg ?? 100));
}
