/**
 * The short chaos run inside `npm test` (the long one is `npm run chaos`): 32 requesters, 4 agent
 * processes, a real 3-member etcd; agent kill -9, leader kill -9 and a quorum loss during the run.
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
    assert.equal(r.duplicates, 0, lines.join('\n'));
    assert.equal(r.lost, 0, lines.join('\n'));
    assert.equal(r.leakedAfterGc, 0, lines.join('\n'));
    assert.equal(r.claims, r.held);
    assert.equal(r.operations, 3000);
  },
);
