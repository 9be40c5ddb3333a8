/**
 * @module bench/section
 * Runs one benchmark section in its own process (started by `bench/run.ts` with `--expose-gc` and a
 * clean environment) and writes its `SectionResult` as JSON to the file named on the command line.
 *
 *   node --expose-gc bench/section.ts <engine|plugin|etcd|burst|restart|kube> <result.json> [--quick]
 *
 * Progress goes to stderr. A section that throws still writes a result, with `error` set.
 */
import { writeFileSync } from 'node:fs';
import { loadNow, nowMs, type Row, type SectionOptions, type SectionResult } from './lib.ts';

type Runner = (opts: SectionOptions) => Promise<{ rows: Row[]; notes: string[] }>;

export const SECTIONS: Record<string, { title: string; load: () => Promise<Runner> }> = {
  engine: { title: 'engine: allocation in process', load: async () => (await import('./engine.ts')).run },
  plugin: {
    title: 'plugin: process start and bridge ADD+DEL',
    load: async () => (await import('./plugin.ts')).run,
  },
  etcd: {
    title: 'etcd: allocations through 4 agents vs raw CAS',
    load: async () => (await import('./etcd.ts')).run,
  },
  burst: {
    title: 'burst: 1000 dual-stack pods over 10 agents',
    load: async () => (await import('./burst.ts')).run,
  },
  restart: {
    title: 'restart: agent ready with 100k claims',
    load: async () => (await import('./restart.ts')).run,
  },
  kube: {
    title: 'kube: agent ready with 100k claims in Kubernetes mode',
    load: async () => (await import('./kube.ts')).run,
  },
};

async function main(): Promise<void> {
  const [name, out] = process.argv.slice(2);
  const quick = process.argv.includes('--quick');
  const s = name ? SECTIONS[name] : undefined;
  if (!s || !out) {
    console.error(
      `usage: node bench/section.ts <${Object.keys(SECTIONS).join('|')}> <result.json> [--quick]`,
    );
    process.exit(2);
  }
  delete process.env.NODE_EXTRA_CA_CERTS;
  const start = loadNow();
  const t0 = nowMs();
  const log = (line: string): void => {
    process.stderr.write(`[bench ${name}] ${line}\n`);
  };
  const result: SectionResult = {
    name: name as string,
    title: s.title,
    rows: [],
    notes: [],
    seconds: 0,
    load: { start, end: start },
  };
  try {
    const r = await (await s.load())({ quick, log });
    result.rows = r.rows;
    result.notes = r.notes;
  } catch (e) {
    result.error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    log(`failed: ${result.error}`);
  }
  result.seconds = (nowMs() - t0) / 1000;
  result.load.end = loadNow();
  writeFileSync(out, JSON.stringify(result));
  // Sections may leave handles (etcd clients' timers); the result is written, so stop here.
  process.exit(0);
}

if (import.meta.main) await main();
