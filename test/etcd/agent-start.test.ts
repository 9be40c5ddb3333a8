/**
 * An agent process that cannot start, on a real etcd, says why and exits 1 — its open etcd
 * connection and watches do not keep a failed agent's process alive (they did: it printed the
 * error and kept running, neither serving nor restarted). The agent already serving is untouched.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { call } from '../../src/cli/client.ts';
import { runAgentToExit as runAgent, startAgent, tempDir, type AgentProcess } from '../e2e/harness.ts';
import { startEtcdCluster, type EtcdCluster } from './cluster.ts';

describe('an agent that cannot start (etcd)', () => {
  let cluster: EtcdCluster;
  let dir: string;
  let url: string;
  let serving: AgentProcess;

  before(async () => {
    cluster = await startEtcdCluster(1);
    dir = tempDir('agent-start');
    url = `${cluster.url}/agent-start-${process.pid}/`;
    serving = await startAgent({ store: url, socket: join(dir, 'a.sock'), node: 'n1' });
  });
  after(async () => {
    await serving?.kill('SIGTERM');
    await cluster?.stopAll();
  });

  it('exits 1 naming the socket when another agent serves it, and that agent goes on serving', async () => {
    const r = await runAgent(['--store', url, '--socket', serving.socket, '--node', 'n2'], 30_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /another agent already listens on .*a\.sock; stop it or pick another --socket/);
    assert.equal((await call<{ ready: boolean }>(serving.socket, 'GET', '/readyz')).ready, true);
  });

  it('exits 1 naming the value when --listen is not host:port, before it takes its socket', async () => {
    const socket = join(dir, 'b.sock');
    const r = await runAgent(
      ['--store', url, '--socket', socket, '--node', 'n3', '--listen', 'nonsense'],
      30_000,
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--listen nonsense must be host:port, e\.g\. 127\.0\.0\.1:9610/);
    assert.equal(existsSync(socket), false, 'the socket was created');
    const next = await startAgent({ store: url, socket, node: 'n3' });
    await next.kill('SIGTERM');
  });
});
