/**
 * The short chaos run inside `npm test` (the long one is `npm run chaos`): 32 requesters, 4 agent
 * processes with claims caches checkpointed every 500 ms, a real 3-member etcd; agent kill -9 (the
 * agent restarts from its last checkpoint), leader kill -9 and a quorum loss during the run.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, runChaos } from './runner.ts';

it(
  'no duplicate, no lost address, no leak after GC, through agent and etcd failures',
  { timeout: 600_000 },
  async () => {
    const lines: string[] = [];
    const r = await runChaos({ operations: 3000, seed: 42, faultEveryMs: 1200, log: (l) => lines.push(l) });
    console.log(formatReport(r));
    assert.ok(
      r.agentKills >= 1 && r.leaderKills >= 1 && r.quorumLosses >= 1,
      `faults were injected: ${formatReport(r)}\n${lines.join('\n')}`,
    );
    // Killed agents restart from the last checkpoint of their claims cache, not a full list: the
    // checks below then also cover a start from a file that is behind the store.
    assert.ok(
      r.restartsFromCache >= 1,
      `a restart from a checkpoint: ${formatReport(r)}\n${lines.join('\n')}`,
    );
    assert.equal(r.duplicates, 0, lines.join('\n'));
    assert.equal(r.lost, 0, lines.join('\n'));
    assert.equal(r.leakedAfterGc, 0, lines.join('\n'));
    assert.equal(r.claims, r.held);
    assert.equal(r.operations, 3000);
  },
);
