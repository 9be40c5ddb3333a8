/**
 * `npm run chaos [-- --operations 100000 --seed 7 --requesters 32 --agents 4 --checkpoint-ms 500]`:
 * the long chaos run (see test/chaos/runner.ts; `--checkpoint-ms 0`: agents without a claims cache).
 * Exits 1 if any address had two owners, any acknowledged address was
 * lost, or any claim is left without a live owner after GC.
 */
import { parseArgs } from 'node:util';
import { DEFAULTS, formatReport, runChaos } from '../test/chaos/runner.ts';

const { values } = parseArgs({
  options: {
    operations: { type: 'string', default: '100000' },
    seed: { type: 'string', default: String(Date.now() % 100000) },
    requesters: { type: 'string', default: String(DEFAULTS.requesters) },
    agents: { type: 'string', default: String(DEFAULTS.agents) },
    'fault-every-ms': { type: 'string', default: String(DEFAULTS.faultEveryMs) },
    'no-faults': { type: 'boolean', default: false },
    'checkpoint-ms': { type: 'string', default: String(DEFAULTS.checkpointMs) },
  },
});
const opts = {
  operations: Number(values.operations),
  seed: Number(values.seed),
  requesters: Number(values.requesters),
  agents: Number(values.agents),
  faultEveryMs: Number(values['fault-every-ms']),
  faults: !values['no-faults'],
  checkpointMs: Number(values['checkpoint-ms']),
  log: (l: string) => console.error(`[chaos] ${l}`),
};
console.error(`[chaos] ${JSON.stringify({ ...opts, log: undefined })}`);
const r = await runChaos(opts);
console.log(formatReport(r));
process.exit(r.duplicates === 0 && r.lost === 0 && r.leakedAfterGc === 0 ? 0 : 1);
