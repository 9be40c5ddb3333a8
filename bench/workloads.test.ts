/**
 * The engine section's workloads (bench/engine.ts) do what their rows say: a pool stays at its fill
 * level cycle after cycle, every ADD gives one address and every DEL releases one claim. A workload
 * that drifted (a pool slowly emptying, a DEL that released nothing) would measure something else
 * under the same name. Small counts; nothing is timed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CASES, decisionBench, engineBench, netBench, runStoreBench, storeFloorBench } from './engine.ts';
import { prng } from './lib.ts';
import { parsePrefix, prefixFirst, prefixLast } from '../src/net/prefix.ts';

const CYCLES = 2000;

describe('bench engine workloads', () => {
  for (const subnet of ['10.6.168.128/28', '10.0.0.0/8', 'fd00::/64', 'fd00::/112']) {
    for (const pattern of ['contiguous', 'scattered'] as const) {
      it(`keeps the ${subnet} address set at 90% (${pattern}) while it cycles`, () => {
        const b = netBench(subnet, pattern, prng(1));
        const held = b.used.size();
        const span = subnet.endsWith('/28') ? 14n : undefined;
        if (span !== undefined) assert.equal(held, (span * 9n) / 10n);
        b.run(CYCLES);
        assert.equal(b.used.size(), held, 'one address taken and one released per cycle');
        assert.equal(b.counts.cycles, CYCLES);
        assert.ok(b.counts.draws >= CYCLES, 'at least one draw per release');
        // At 90% used, a uniform draw lands on a used address 9 times in 10.
        assert.ok(b.counts.draws / CYCLES < 1.3, `draws per release ${b.counts.draws / CYCLES}`);
      });
    }
  }

  it('keeps the run store alone at 90% of its window, one more run per release', () => {
    const b = runStoreBench(prng(5));
    const size = b.runs.size;
    assert.equal(size, 2 ** 52 * 0.9);
    b.run(CYCLES);
    assert.equal(b.runs.size, size);
    // Each release opens a hole the cursor never reaches again (a few may land beside an earlier one).
    assert.ok(b.runs.runCount > CYCLES * 0.99, `${b.runs.runCount} runs after ${CYCLES} releases`);
  });

  it('draws release points over the whole pool and nowhere else', () => {
    for (const subnet of ['10.6.168.128/28', 'fd00::/64']) {
      const p = parsePrefix(subnet);
      const first = prefixFirst(p) + 1n;
      const last = prefixLast(p) - 1n;
      const b = netBench(subnet, 'scattered', prng(2));
      let upper = 0;
      for (let i = 0; i < 1000; i++) {
        const v = b.point();
        assert.ok(v >= first && v <= last, `${subnet}: ${v} outside the pool's usable addresses`);
        if (v > first + (last - first) / 2n) upper++;
      }
      assert.ok(upper > 400 && upper < 600, `${subnet}: ${upper} of 1000 draws in the upper half`);
    }
  });

  for (const label of ['/28', '/64']) {
    it(`runs the allocation decision for ${label} without its fill level drifting`, () => {
      const c = CASES.find((x) => x.label === label)!;
      // The bench throws when a release finds other than one claim.
      assert.doesNotThrow(() => decisionBench(c, prng(3)).run(CYCLES));
    });
  }

  for (const kind of ['memory', 'noop'] as const) {
    it(`runs engine ADD+DEL on the ${kind} store, one address and one release per cycle`, async () => {
      const c = CASES.find((x) => x.label === '/28')!;
      const b = await engineBench(c, kind, prng(4));
      await assert.doesNotReject(async () => b.run(500));
    });
  }

  it('runs the memory store alone with the claim and Endpoint one engine ADD writes', async () => {
    const b = await storeFloorBench();
    await assert.doesNotReject(async () => b.run(500));
  });
});
