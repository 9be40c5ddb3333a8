/**
 * The etcd test harness itself: members stop and restart by PID with their data, the leader can be
 * found and replaced, and members of a test process that died without cleaning up are killed by the
 * next cluster start instead of leaking.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { startEtcdCluster } from './cluster.ts';

async function put(clientUrl: string, key: string, value: string): Promise<void> {
  const res = await fetch(`${clientUrl}/v3/kv/put`, {
    method: 'POST',
    body: JSON.stringify({ key: btoa(key), value: btoa(value) }),
  });
  assert.equal(res.status, 200, await res.text());
}

async function get(clientUrl: string, key: string): Promise<string | undefined> {
  const res = await fetch(`${clientUrl}/v3/kv/range`, {
    method: 'POST',
    body: JSON.stringify({ key: btoa(key) }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { kvs?: { value: string }[] };
  return body.kvs?.[0] ? atob(body.kvs[0].value) : undefined;
}

/** Whether `pid` is a live process (a zombie waiting to be reaped counts as dead). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function untilDead(pid: number): Promise<void> {
  for (let i = 0; i < 1000 && running(pid); i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(running(pid), false, `pid ${pid} still runs`);
}

describe('etcd test cluster', () => {
  it('replaces a killed leader, restarts it with its data, and stops everything by PID', async () => {
    const c = await startEtcdCluster(3);
    try {
      assert.equal(c.members.length, 3);
      assert.ok(c.members.every((m) => m.running && m.pid !== undefined));
      assert.match(c.url, /^etcd:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
      await put(c.endpoints[0]!, 'k', 'before');

      const leader = await c.leaderIndex();
      const oldPid = c.members[leader]!.pid!;
      await c.stop(leader, 'SIGKILL');
      assert.equal(c.members[leader]!.running, false);
      assert.equal(c.members[leader]!.pid, undefined);
      await untilDead(oldPid);
      const next = await c.leaderIndex();
      assert.notEqual(next, leader);
      await put(c.endpoints[next]!, 'k', 'during');

      await c.start(leader);
      await c.waitHealthy();
      assert.ok(c.members[leader]!.running);
      assert.notEqual(c.members[leader]!.pid, oldPid);
      // The restarted member kept its data and caught up with what it missed.
      assert.equal(await get(c.members[leader]!.clientUrl, 'k'), 'during');

      const pids = c.members.map((m) => m.pid!);
      await c.stopAll();
      for (const pid of pids) await untilDead(pid);
      await c.stopAll(); // twice is harmless
    } finally {
      await c.stopAll();
    }
  });

  it('kills the members left behind by a test process that died with SIGKILL', async () => {
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { startEtcdCluster } from ${JSON.stringify(new URL('./cluster.ts', import.meta.url).href)};
         const c = await startEtcdCluster(1);
         console.log(JSON.stringify({ pid: c.members[0].pid }));
         process.kill(process.pid, 'SIGKILL');`,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(child.signal, 'SIGKILL', child.stderr);
    const { pid } = JSON.parse(child.stdout) as { pid: number };
    assert.ok(running(pid), 'the orphaned member runs until someone cleans up');
    const dir = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .find((a) => a.startsWith('--data-dir='))!
      .slice('--data-dir='.length);

    const c = await startEtcdCluster(1);
    try {
      await untilDead(pid);
      assert.equal(existsSync(dir), false, `${dir} was left behind`);
    } finally {
      await c.stopAll();
    }
  });
});
