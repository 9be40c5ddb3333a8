/**
 * @module bench/plugin
 * The CNI plugin as the runtime sees it, against Go's host-local as anchor:
 *
 *   start     VERSION of the installed ipkeeper executable (the native forwarder) vs
 *             `/usr/lib/cni/host-local` VERSION (and the Node single executable, and `node -e 0`, the
 *             floor any Node-based plugin pays)
 *   IPAM      ipkeeper ADD+DEL (agent on sqlite) vs host-local ADD+DEL, IPAM plugins called directly
 *   bridge    Debian's `bridge` plugin ADD+DEL in a network namespace with ipkeeper as IPAM vs the
 *             same bridge config with host-local over the same range (root only)
 *
 * Variants alternate run by run, so load changes hit both alike. Each run is one `spawnSync`, timed
 * on the wall clock from spawn to exit; CPU per run comes from the children's rusage (/proc cutime).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { installCni } from '../src/cni/install.ts';
import { buildCni } from '../scripts/build.ts';
import { call } from '../src/cli/client.ts';
import { poolObject } from './fixtures.ts';
import {
  NODE,
  childrenCpuMs,
  compared,
  median,
  nowMs,
  p99,
  startAgent,
  tempDir,
  type Row,
  type SectionOptions,
} from './lib.ts';
import { ensurePackages } from '../scripts/lib/system.ts';

const SYSTEM_CNI = '/usr/lib/cni';
const HOST_LOCAL = join(SYSTEM_CNI, 'host-local');
const BRIDGE = join(SYSTEM_CNI, 'bridge');
const START_GOAL = 1.5;
const BRIDGE_GOAL = 1.2;
const SUBNET = '10.251.0.0/16';

interface Sample {
  ms: number[];
  cpuMs: number;
  runs: number;
}
const sample = (): Sample => ({ ms: [], cpuMs: 0, runs: 0 });

/** Runs an executable once, CNI style; returns wall ms, and adds its CPU time to `s`. */
function exec(
  s: Sample,
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input: string,
): { ms: number; code: number | null; stdout: string; stderr: string } {
  const c0 = childrenCpuMs();
  const t0 = nowMs();
  const r = spawnSync(file, args, { env, input, encoding: 'utf8', timeout: 60_000 });
  const ms = nowMs() - t0;
  s.cpuMs += childrenCpuMs() - c0;
  s.runs++;
  return { ms, code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const cniEnv = (command: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
  CNI_COMMAND: command,
  ...extra,
});

function sh(cmd: string, args: string[], allowFail = false): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0 && !allowFail)
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
}

function latencyRow(
  figure: string,
  s: Sample,
  anchor?: { name: string; s: Sample },
  goal?: { text: string; max: number },
): Row {
  const m = median(s.ms);
  const cpu = s.runs > 0 ? s.cpuMs / s.runs : NaN;
  const base: Row = {
    figure,
    unit: 'ms',
    better: 'lower',
    median: m,
    p99: p99(s.ms),
    samples: s.ms.length,
    detail: `CPU ${cpu.toFixed(1)} ms/run (user+sys, mean of ${s.runs})`,
    ...(goal ? { goal: goal.text } : {}),
  };
  if (!anchor) return base;
  const row = compared({ ...base, anchor: anchor.name }, median(anchor.s.ms));
  const cpuA = anchor.s.runs > 0 ? anchor.s.cpuMs / anchor.s.runs : NaN;
  row.detail += `; CPU ratio ${(cpu / cpuA).toFixed(2)}×`;
  if (goal && row.ratio !== undefined) row.met = row.ratio <= goal.max;
  return row;
}

export async function run(opts: SectionOptions): Promise<{ rows: Row[]; notes: string[] }> {
  const rows: Row[] = [];
  const notes: string[] = [];
  // The anchors are Debian's plugins: installed here on a machine that has not run the tests yet.
  ensurePackages(['containernetworking-plugins', 'iproute2']);
  const tmp = tempDir('plugin');
  const binDir = join(tmp.path, 'bin');
  opts.log('installing the plugin executable');
  const plugin = await installCni(binDir);
  const nodePlugin = await installCni(binDir, {
    name: 'ipkeeper-node',
    source: await buildCni({ ifStale: true, log: () => {} }),
  });

  // ---- process start: VERSION ----
  const runs = opts.quick ? 40 : 200;
  const ipk = sample();
  const hl = sample();
  const bare = sample();
  const sea = sample();
  const version = '{"cniVersion":"1.1.0"}';
  opts.log(`VERSION x ${runs} each, alternating`);
  for (let i = -4; i < runs; i++) {
    // Rotate the order so no variant always follows another.
    const order = [0, 1, 2, 3].map((k) => (k + i + 4) % 4);
    for (const k of order) {
      const s = i < 0 ? sample() : [ipk, hl, bare, sea][k]!;
      if (k === 0) {
        const r = exec(s, plugin, [], cniEnv('VERSION'), version);
        if (r.code !== 0) throw new Error(`ipkeeper VERSION failed (${r.code}): ${r.stdout}${r.stderr}`);
        s.ms.push(r.ms);
      } else if (k === 1) {
        const r = exec(s, HOST_LOCAL, [], cniEnv('VERSION'), version);
        if (r.code !== 0) throw new Error(`host-local VERSION failed (${r.code}): ${r.stdout}${r.stderr}`);
        s.ms.push(r.ms);
      } else if (k === 2) {
        const r = exec(s, NODE, ['-e', '0'], { PATH: process.env.PATH }, '');
        s.ms.push(r.ms);
      } else {
        const r = exec(s, nodePlugin, [], cniEnv('VERSION'), version);
        if (r.code !== 0) throw new Error(`ipkeeper-node VERSION failed (${r.code}): ${r.stdout}${r.stderr}`);
        s.ms.push(r.ms);
      }
    }
  }
  const startGoal = { text: `≤ ${START_GOAL}× host-local`, max: START_GOAL };
  rows.push(
    latencyRow('host-local VERSION (Go)', hl),
    latencyRow(
      'ipkeeper VERSION (installed executable)',
      ipk,
      { name: 'host-local VERSION', s: hl },
      startGoal,
    ),
    latencyRow('ipkeeper-node VERSION (Node single executable, for reference)', sea, {
      name: 'host-local VERSION',
      s: hl,
    }),
    latencyRow('node -e 0 (Node 24 start, for reference)', bare, { name: 'host-local VERSION', s: hl }),
  );

  // ---- ADD+DEL: the IPAM plugins directly, then through bridge in a network namespace ----
  const dir = tmp.path;
  const socket = join(dir, 'run', 'agent.sock');
  mkdirSync(join(dir, 'hl'), { recursive: true });
  opts.log('starting the agent (sqlite)');
  const agent = await startAgent({ store: `sqlite:${join(dir, 'ipkeeper.db')}`, socket, node: 'bench' });
  const netnsName = `ipkb-${process.pid}`;
  const br = `ipkbr${process.pid % 100000}`;
  let haveNetns = false;
  try {
    await call(socket, 'POST', '/v1/apply', { objects: [poolObject('bench-bridge', SUBNET)] });
    const network = 'bench-bridge';
    const ipamIpk = { type: 'ipkeeper', socket, pools: { ipv4: ['bench-bridge'] } };
    const ipamHl = { type: 'host-local', ranges: [[{ subnet: SUBNET }]], dataDir: join(dir, 'hl') };
    const cniPath = `${binDir}:${SYSTEM_CNI}`;

    const n = opts.quick ? 20 : 100;
    const ipamIpkS = sample();
    const ipamHlS = sample();
    const ipamSeaS = sample();
    opts.log(`IPAM ADD+DEL x ${n} each`);
    const ipamOnce = (s: Sample | undefined, which: 'ipk' | 'hl' | 'sea', id: string): void => {
      const conf = JSON.stringify({
        cniVersion: '1.0.0',
        name: network,
        ipam: which === 'hl' ? ipamHl : ipamIpk,
      });
      const file = which === 'ipk' ? plugin : which === 'sea' ? nodePlugin : HOST_LOCAL;
      const extra = {
        CNI_CONTAINERID: id,
        CNI_NETNS: '/var/run/netns/none',
        CNI_IFNAME: 'eth0',
        CNI_PATH: cniPath,
      };
      const scratch = sample();
      const a = exec(s ?? scratch, file, [], cniEnv('ADD', extra), conf);
      if (a.code !== 0) throw new Error(`${which} IPAM ADD failed (${a.code}): ${a.stdout}${a.stderr}`);
      const d = exec(s ?? scratch, file, [], cniEnv('DEL', extra), conf);
      if (d.code !== 0) throw new Error(`${which} IPAM DEL failed (${d.code}): ${d.stdout}${d.stderr}`);
      if (s) {
        s.ms.push(a.ms + d.ms);
        s.runs--; // two processes, one sample
      }
    };
    for (let i = -2; i < n; i++) {
      const trio: ('ipk' | 'hl' | 'sea')[] = [
        ['ipk', 'hl', 'sea'] as const,
        ['hl', 'sea', 'ipk'] as const,
        ['sea', 'ipk', 'hl'] as const,
      ][(i + 3) % 3]!.slice();
      for (const w of trio)
        ipamOnce(
          i < 0 ? undefined : w === 'ipk' ? ipamIpkS : w === 'sea' ? ipamSeaS : ipamHlS,
          w,
          `ipam-${w}-${i + 2}`,
        );
    }
    // The same requests straight to the agent's socket: what ipkeeper costs without its process start.
    const direct = sample();
    for (let i = -2; i < n; i++) {
      const req = {
        command: 'ADD',
        containerId: `direct-${i + 2}`,
        ifName: 'eth0',
        network,
        cniVersion: '1.0.0',
        args: {},
        ipam: ipamIpk,
      };
      const t0 = nowMs();
      await call(socket, 'POST', '/v1/cni/add', req);
      await call(socket, 'POST', '/v1/cni/del', { ...req, command: 'DEL' });
      if (i >= 0) direct.ms.push(nowMs() - t0);
    }
    const directRow = latencyRow('agent ADD+DEL over its socket (no plugin process)', direct, {
      name: 'host-local ADD+DEL',
      s: ipamHlS,
    });
    directRow.detail = 'the agent’s share of the row above: HTTP over the unix socket, engine, sqlite commit';
    rows.push(
      latencyRow('host-local ADD+DEL (IPAM plugin alone)', ipamHlS),
      latencyRow('ipkeeper ADD+DEL (IPAM plugin alone, agent on sqlite)', ipamIpkS, {
        name: 'host-local ADD+DEL',
        s: ipamHlS,
      }),
      latencyRow('ipkeeper-node ADD+DEL (Node single executable, agent on sqlite)', ipamSeaS, {
        name: 'host-local ADD+DEL',
        s: ipamHlS,
      }),
      directRow,
    );

    if (process.getuid?.() !== 0) {
      rows.push({
        figure: 'bridge + ipkeeper ADD+DEL in a netns',
        unit: 'ms',
        better: 'lower',
        median: undefined,
        skipped: 'needs root (network namespaces)',
        goal: `≤ ${BRIDGE_GOAL}× bridge+host-local`,
      });
    } else {
      sh('ip', ['netns', 'add', netnsName]);
      haveNetns = true;
      const netns = `/var/run/netns/${netnsName}`;
      const bIpk = sample();
      const bHl = sample();
      const addIpk: number[] = [];
      const addHl: number[] = [];
      opts.log(`bridge ADD+DEL x ${n} each`);
      const bridgeOnce = (
        s: Sample | undefined,
        adds: number[] | undefined,
        which: 'ipk' | 'hl',
        id: string,
      ): void => {
        const conf = JSON.stringify({
          cniVersion: '1.0.0',
          name: network,
          type: 'bridge',
          bridge: br,
          ipam: which === 'ipk' ? ipamIpk : ipamHl,
        });
        const extra = { CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0', CNI_PATH: cniPath };
        const scratch = sample();
        const a = exec(s ?? scratch, BRIDGE, [], cniEnv('ADD', extra), conf);
        if (a.code !== 0) throw new Error(`bridge+${which} ADD failed (${a.code}): ${a.stdout}${a.stderr}`);
        const d = exec(s ?? scratch, BRIDGE, [], cniEnv('DEL', extra), conf);
        if (d.code !== 0) throw new Error(`bridge+${which} DEL failed (${d.code}): ${d.stdout}${d.stderr}`);
        if (s) {
          s.ms.push(a.ms + d.ms);
          s.runs--;
          adds?.push(a.ms);
        }
      };
      for (let i = -2; i < n; i++) {
        const pair: ('ipk' | 'hl')[] = i % 2 === 0 ? ['ipk', 'hl'] : ['hl', 'ipk'];
        for (const w of pair) {
          const on = i >= 0;
          bridgeOnce(
            on ? (w === 'ipk' ? bIpk : bHl) : undefined,
            on ? (w === 'ipk' ? addIpk : addHl) : undefined,
            w,
            `br-${w}-${i + 2}`,
          );
        }
      }
      const hlRow = latencyRow('bridge + host-local ADD+DEL in a netns', bHl);
      hlRow.detail += `; ADD alone p50 ${median(addHl).toFixed(1)} ms`;
      const ipkRow = latencyRow(
        'bridge + ipkeeper ADD+DEL in a netns',
        bIpk,
        { name: 'bridge + host-local ADD+DEL', s: bHl },
        { text: `≤ ${BRIDGE_GOAL}× bridge+host-local`, max: BRIDGE_GOAL },
      );
      ipkRow.detail += `; ADD alone p50 ${median(addIpk).toFixed(1)} ms`;
      rows.push(hlRow, ipkRow);
    }
  } finally {
    if (haveNetns) sh('ip', ['netns', 'del', netnsName], true);
    sh('ip', ['link', 'del', br], true);
    await agent.stop();
    tmp.cleanup();
  }

  notes.push(
    `Process start: \`CNI_COMMAND=VERSION\` with \`${version}\` on stdin, ${runs} runs per executable, alternating; wall time from spawn to exit as seen by a Node parent (\`spawnSync\`), which adds the same fork/exec cost to every variant. The environment holds only PATH and the CNI variables (no NODE_OPTIONS, no NODE_EXTRA_CA_CERTS).`,
    'The ipkeeper executable is what `installCni` installs: the native forwarder (native/ipkeeper-cni.c, dist/ipkeeper-cni), which answers VERSION itself and hands every other command to the agent’s /v1/cni/exec, where the TypeScript plugin code runs. ipkeeper-node is the same plugin as a Node 24 single executable application (dist/ipkeeper-cni-node), which runs the plugin code in its own process. `node -e 0` is the bare Node 24 runtime start — a lower bound for any plugin written for Node, shown for reference.',
    `ADD+DEL: one ADD then one DEL of a new container id, the pair timed; ipkeeper's agent runs on sqlite (synchronous=FULL, one fsync per write) with a ${SUBNET} pool, host-local uses the same range with its file store in a temp dir. The bridge rows run Debian's bridge plugin (${BRIDGE}) in one network namespace, reused across runs (the namespace is not part of the timing).`,
    'CPU per run is the user+system time of the plugin processes (and, for bridge, its IPAM child), from /proc/self/stat cutime/cstime (10 ms ticks, averaged over every run); it excludes the agent.',
  );
  return { rows, notes };
}
