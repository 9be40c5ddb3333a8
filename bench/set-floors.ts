/**
 * @module bench/set-floors
 * `node bench/set-floors.ts`: floors under the /64's address-set rows, outside `npm run bench` (their
 * table takes 128 MB at the default rounds, and they say nothing about ipkeeper's code; docs/BENCHMARKS.md
 * quotes them).
 *
 * The /64's cycle in the bench leaves one isolated hole per release in a 90%-used space far too
 * large for a bitmap, so after a few seconds the set holds millions of holes. Two questions, each
 * answered against the bench's /28 cycle run in the same process, round after round:
 *
 * - *Is it the memory?* The same cycle with the holes in an unordered, pre-sized open-addressing
 *   table (a `Float64Array`, linear probing): one random access per operation, no order.
 * - *What can an ordered store do at best?* Lookups alone — no insert, no delete — in the same
 *   number of sorted keys, by binary search in a flat `Float64Array` and in Eytzinger (breadth-first)
 *   order, 1.11 per cycle as the bench's releases draw at 90%. Any store that binary-searches its
 *   holes does at least this work per cycle.
 *
 *   node bench/set-floors.ts                      3 million keys for the lookups, 6 rounds
 *   node bench/set-floors.ts --keys 300000 --rounds 3
 */
import { parseArgs } from 'node:util';
import { netBench } from './engine.ts';
import { cpuMs, prng } from './lib.ts';

const { values } = parseArgs({
  options: { keys: { type: 'string', default: '3000000' }, rounds: { type: 'string', default: '6' } },
});
const KEYS = Number(values.keys);
const ROUNDS = Number(values.rounds);
if (!Number.isInteger(KEYS) || KEYS < 1000 || KEYS > 6_000_000)
  throw new Error(`--keys ${values.keys}: must be a whole number from 1000 to 6000000`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1)
  throw new Error(`--rounds ${values.rounds}: must be a whole number >= 1`);

const rand = prng(42);
/** Offsets are drawn in a 2^52 space, so that every one is an exact double. */
const SPACE = 2 ** 52;
const CYCLES = 1_000_000;

// The bench's /28 cycle, as `npm run bench` runs it: nextFree after the cursor, add, then release a
// used address drawn uniformly.
const anchor = netBench('10.6.168.128/28', 'contiguous', rand);

// Unordered: the holes in a table with room for every hole the rounds make (load <= 1/2).
const TABLE_BITS = Math.ceil(Math.log2(2 * ROUNDS * CYCLES + 1));
const TABLE_MASK = 2 ** TABLE_BITS - 1;
const table = new Float64Array(2 ** TABLE_BITS).fill(-1);
let tableCursor = SPACE * 0.9;
let holes = 0;
function slot(q: number): number {
  let i = Math.floor(q / 2 ** (52 - TABLE_BITS)) & TABLE_MASK;
  while (table[i] !== -1 && table[i] !== q) i = (i + 1) & TABLE_MASK;
  return i;
}
function unordered(n: number): void {
  for (let i = 0; i < n; i++) {
    tableCursor++; // the next free address: the free tail has no holes
    let q: number;
    do q = Math.floor(rand() * SPACE);
    while (q >= tableCursor || table[slot(q)] === q);
    table[slot(q)] = q;
    holes++;
  }
}

// Ordered, lookups only.
const keys = new Float64Array(KEYS);
for (let i = 0; i < KEYS; i++) keys[i] = Math.floor(rand() * SPACE);
keys.sort();
const eytzinger = new Float64Array(KEYS + 1);
{
  // In-order walk of the implicit tree, iteratively: node i's children are 2i and 2i + 1.
  let k = 0;
  const stack: number[] = [];
  let i = 1;
  while (stack.length > 0 || i <= KEYS) {
    if (i <= KEYS) {
      stack.push(i);
      i *= 2;
    } else {
      i = stack.pop()!;
      eytzinger[i] = keys[k++]!;
      i = 2 * i + 1;
    }
  }
}
let sink = 0;
function lookups(n: number, eyt: boolean): void {
  for (let c = 0; c < n; c++) {
    const reps = rand() < 0.11 ? 2 : 1;
    for (let r = 0; r < reps; r++) {
      const q = Math.floor(rand() * SPACE);
      if (eyt) {
        let i = 1;
        while (i <= KEYS) i = 2 * i + (eytzinger[i]! <= q ? 1 : 0);
        sink += i;
      } else {
        let lo = 0;
        let hi = KEYS;
        while (lo < hi) {
          const m = (lo + hi) >>> 1;
          if (keys[m]! <= q) lo = m + 1;
          else hi = m;
        }
        sink += lo;
      }
    }
  }
}

function rate(run: () => void): number {
  const c0 = cpuMs();
  run();
  return (CYCLES * 1000) / (cpuMs() - c0);
}

const k = (x: number): string => `${Math.round(x / 1000).toLocaleString('en-US')}k`;
console.log(
  `cycles/CPU-s, ${CYCLES.toLocaleString('en-US')} cycles per figure; ratio to the /28 of the same round; lookups in ${KEYS.toLocaleString('en-US')} sorted keys`,
);
for (let r = 1; r <= ROUNDS; r++) {
  const a = rate(() => void anchor.run(CYCLES));
  const u = rate(() => unordered(CYCLES));
  const s = rate(() => lookups(CYCLES, false));
  const e = rate(() => lookups(CYCLES, true));
  console.log(
    `round ${r}: /28 ${k(a)}; unordered table ${k(u)} (${(u / a).toFixed(2)}×, ${holes.toLocaleString('en-US')} holes); ` +
      `sorted lookups ${k(s)} (${(s / a).toFixed(2)}×); Eytzinger lookups ${k(e)} (${(e / a).toFixed(2)}×)`,
  );
}
// sink is read so that the lookups are not optimized away; it is never negative.
if (sink < 0) console.log(sink);
