/**
 * Micro-benchmark for the allocation hot path (not a test): one cycle is `nextFree` from a cursor +
 * `add` of the address found + `delete` of a pseudo-random used address, so the fill level holds.
 * Prints cycles per CPU-second for each pool size and fill pattern, so a /8 or a /64 can be compared
 * with a /28. CPU time rather than wall time, so the figure holds on a busy machine.
 *
 *   ./node_modules/.bin/node src/net/used-set.bench.ts [cpu-seconds-per-case, default 0.5]
 *
 * Patterns (the pool is the prefix minus its first and last address):
 *   contiguous  the first 90% of the pool used, as one run (addresses handed out in order)
 *   scattered   90% of the pool used, in up to 50,000 runs of random length with random holes
 *   claims      59,000 claims scattered over the first 65,536 addresses of a larger pool — what an
 *               IPv6 /64 looks like in practice (a /64 cannot hold 90% of 2^64 claims)
 *
 * The last column says which representation the used set is in: `number` (offsets in doubles) while
 * the claims fit in a 2^52 window, `bigint` beyond it (the 90%-full /64 rows).
 */
import { formatPrefix, parsePrefix, prefixFirst, prefixLast } from './prefix.ts';
import { IntervalSet } from './interval-set.ts';
import { UsedSet, nextFree } from './used-set.ts';

const SECONDS = Number(process.argv[2] ?? '0.5');
const MAX_RUNS = 50_000n;

type Pattern = 'contiguous' | 'scattered' | 'claims';

/** xorshift64*, so runs are reproducible. Returns a bigint in [0, below). */
function rng(seed: bigint): (below: bigint) => bigint {
  let s = seed;
  const mask = (1n << 64n) - 1n;
  const next64 = (): bigint => {
    s ^= s >> 12n;
    s ^= (s << 25n) & mask;
    s ^= s >> 27n;
    return (s * 0x2545f4914f6cdd1dn) & mask;
  };
  return (below) => {
    let v = next64();
    let range = 1n << 64n;
    while (range < below) {
      v = (v << 64n) | next64();
      range <<= 64n;
    }
    return v % below;
  };
}

/** 90% of [first, first + span) used, in about min(span / 10, MAX_RUNS) runs with holes between. */
function scatter(
  first: bigint,
  span: bigint,
  rand: (n: bigint) => bigint,
): { first: bigint; last: bigint }[] {
  const target = (span * 9n) / 10n;
  const runs = span / 10n < MAX_RUNS ? span / 10n || 1n : MAX_RUNS;
  const meanRun = target / runs;
  const meanHole = (span - target) / runs;
  const end = first + span - 1n;
  const ranges: { first: bigint; last: bigint }[] = [];
  let at = first;
  let placed = 0n;
  while (placed < target && at <= end) {
    let len = meanRun > 1n ? 1n + rand(2n * meanRun - 1n) : 1n;
    if (len > target - placed) len = target - placed;
    const last = at + len - 1n > end ? end : at + len - 1n;
    ranges.push({ first: at, last });
    placed += last - at + 1n;
    at = last + 1n + (meanHole > 1n ? 1n + rand(2n * meanHole - 1n) : 1n);
  }
  return ranges;
}

function bench(cidr: string, pattern: Pattern): void {
  const p = parsePrefix(cidr);
  const allowed = IntervalSet.of(p.family, [{ first: prefixFirst(p) + 1n, last: prefixLast(p) - 1n }]);
  const rand = rng(0x9e3779b97f4a7c15n);
  const first = allowed.min()!;
  const span = pattern === 'claims' ? 65_536n : allowed.size();
  const used =
    pattern === 'contiguous'
      ? UsedSet.of(p.family, [{ first, last: first + (span * 9n) / 10n - 1n }])
      : UsedSet.of(p.family, scatter(first, span, rand));
  const startCount = used.size();
  // Release points drawn up front, so the loop measures the set and not the generator.
  const probes = Array.from({ length: 4096 }, () => first + rand(span));
  const cpuMicros = (): number => {
    const c = process.cpuUsage();
    return c.user + c.system;
  };
  let cursor = first;
  let cycles = 0;
  let elapsed = 0;
  const t0 = cpuMicros();
  while (elapsed < SECONDS * 1e6) {
    for (let k = 0; k < 1000; k++) {
      const v = nextFree(allowed, used, cursor);
      if (v === undefined) throw new Error('pool unexpectedly full');
      used.add(v);
      cursor = v + 1n;
      const victim = used.ceil(probes[(cycles + k) & 4095]!) ?? used.ceil(0n)!;
      used.delete(victim);
    }
    cycles += 1000;
    elapsed = cpuMicros() - t0;
  }
  if (used.size() !== startCount) throw new Error('fill level drifted');
  const perSec = Math.round((cycles * 1e6) / elapsed).toLocaleString('en-US');
  console.log(
    `${formatPrefix(p).padEnd(16)} ${pattern.padEnd(10)} ${String(used.size()).padStart(20)} used in ${String(used.runCount).padStart(6)} runs ${perSec.padStart(11)} cycles/s  ${used.representation}`,
  );
}

console.log(`nextFree + add + delete, ${SECONDS} CPU-seconds per case`);
const cases: [string, Pattern][] = [
  ['10.6.168.128/28', 'contiguous'],
  ['10.6.0.0/16', 'contiguous'],
  ['10.0.0.0/8', 'contiguous'],
  ['fd00::/64', 'contiguous'],
  ['10.6.168.128/28', 'scattered'],
  ['10.6.0.0/16', 'scattered'],
  ['10.0.0.0/8', 'scattered'],
  ['fd00::/64', 'scattered'],
  ['10.0.0.0/8', 'claims'],
  ['fd00::/64', 'claims'],
];
for (const [cidr, pattern] of cases) bench(cidr, pattern);
