/**
 * `npm start`: the main job on the embedded default.
 *
 * Starts the agent on the embedded store (sqlite), applies `examples/demo-pools.yaml`, and — when run
 * as root — attaches a few network namespaces through Debian's real `bridge` plugin with ipkeeper as
 * IPAM, prints their addresses and the pool usage, pings between them, and cleans up. On a terminal
 * the agent keeps running for you to try the CLI until Ctrl-C; otherwise the demo ends by itself.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePackages, isRoot, CNI_BIN_DIR } from './lib/system.ts';
import { installCni } from '../src/cni/install.ts';
import { Lab, cli, runPlugin, startAgent, tempDir, type AgentProcess } from '../test/e2e/harness.ts';

const root = new URL('..', import.meta.url).pathname;
const asRoot = isRoot();
const stateDir = asRoot ? '/var/lib/ipkeeper' : join(root, '.ipkeeper');
const runDir = asRoot ? '/run/ipkeeper' : join(root, '.ipkeeper');
const store = `sqlite:${join(stateDir, 'ipkeeper.db')}`;
const socket = join(runDir, 'ipkeeper.sock');
const say = (s: string): void => console.log(s);

function ipkeeper(args: string[]): string {
  const r = cli([...args, '--socket', socket]);
  if (r.code !== 0) throw new Error(`ipkeeper ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout.trimEnd();
}

async function main(): Promise<void> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  say(`== ipkeeper agent: store ${store}, socket ${socket}`);
  const agent: AgentProcess = await startAgent({
    store,
    socket,
    node: 'demo-node',
    extra: ['--log-level', 'warn'],
  });
  let lab: Lab | undefined;
  const attached: { netns: string; id: string }[] = [];
  let conf: unknown;
  let binDir = '';
  const cleanup = async (): Promise<void> => {
    for (const a of attached.splice(0)) {
      runPlugin(join(CNI_BIN_DIR, 'bridge'), {
        command: 'DEL',
        containerId: a.id,
        netns: a.netns,
        ifName: 'eth0',
        config: conf,
        cniPath: `${binDir}:${CNI_BIN_DIR}`,
      });
    }
    lab?.cleanup();
    await agent.kill();
  };
  try {
    say('\n== ipkeeper apply -f examples/demo-pools.yaml');
    say(ipkeeper(['apply', '-f', join(root, 'examples/demo-pools.yaml')]));
    if (!asRoot) {
      say('\n(not root: skipping the network namespaces; run `sudo npm start` for the full demo)');
    } else {
      ensurePackages(['containernetworking-plugins', 'iproute2', 'iputils-ping']);
      binDir = join(tempDir('demo'), 'bin');
      say(`\n== ipkeeper install-cni --dir ${binDir}`);
      await installCni(binDir);
      lab = new Lab();
      const bridge = lab.linkName('ipkdemo');
      conf = {
        // Debian's bridge plugin (v1.1.1) speaks CNI up to 1.0.0.
        cniVersion: '1.0.0',
        name: 'demo',
        type: 'bridge',
        bridge,
        isGateway: true,
        ipam: { type: 'ipkeeper', socket },
      };
      say(`\n== three pods on bridge ${bridge}, IPAM by ipkeeper (default pools demo-v4 + demo-v6)`);
      const ips: string[] = [];
      for (const i of [1, 2, 3]) {
        const netns = lab.addNetns(`pod${i}`);
        const id = `demo-container-${i}`;
        const r = runPlugin(join(CNI_BIN_DIR, 'bridge'), {
          command: 'ADD',
          containerId: id,
          netns,
          ifName: 'eth0',
          args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=pod-${i};K8S_POD_UID=uid-${i}`,
          config: conf,
          cniPath: `${binDir}:${CNI_BIN_DIR}`,
        });
        if (r.code !== 0) throw new Error(`bridge ADD for pod-${i} failed: ${r.stdout}${r.stderr}`);
        attached.push({ netns, id });
        const got = (r.json.ips as { address: string }[]).map((x) => x.address);
        ips.push((got[0] as string).split('/')[0] as string);
        say(`pod-${i}: ${got.join(', ')}`);
      }
      say('\n== ping pod-1 -> pod-2, pod-3');
      for (const target of ips.slice(1)) {
        const p = lab.exec(attached[0]?.netns as string, ['ping', '-c', '1', '-W', '2', target]);
        say(`${target}: ${p.code === 0 ? 'reply' : `no reply (${p.stdout.trim()})`}`);
        if (p.code !== 0) process.exitCode = 1;
      }
    }
    say('\n== ipkeeper get ipclaims');
    say(ipkeeper(['get', 'ipclaims']) || '(none)');
    say('\n== ipkeeper usage');
    say(ipkeeper(['usage']));
    if (process.stdin.isTTY) {
      say(
        `\nThe agent keeps running. In another shell: IPKEEPER_SOCKET=${socket} node bin/ipkeeper.ts get ippools`,
      );
      say('Press Ctrl-C to release the addresses, remove the namespaces and stop.');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
  } finally {
    say('\n== cleaning up: CNI DEL for every pod, namespaces removed, agent stopped');
    await cleanup();
  }
  say('done.');
}

main().catch((e: unknown) => {
  console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
