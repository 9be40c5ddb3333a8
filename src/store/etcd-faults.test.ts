/**
 * The etcd store under member failures, on a real 3-member cluster: a leader killed with SIGKILL
 * in the middle of concurrent creates, a cluster that lost its quorum, and watches across a leader
 * kill. What must hold: an acknowledged create is never lost, a key never has two winners, every
 * failure is a retryable StoreError that arrives by the deadline, and watches keep delivering.
 *
 * A lost answer is staged exactly with a proxy that lets a write through to etcd and then, once the
 * write is visible, resets the connection before etcd's answer gets back: the store must report
 * such a write as a retryable failure, never as done and never as "not created".
 *
 * No assertion depends on timing: the leader is killed once a number of creates were acknowledged,
 * and waits are for events (with node:test's per-test timeout as the hang guard).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { openEtcdStore } from './etcd.ts';
import { StoreError } from './store.ts';
import type { Store, Version, WatchEvent } from './store.ts';
import { startEtcdCluster } from '../../test/etcd/cluster.ts';
import type { EtcdCluster } from '../../test/etcd/cluster.ts';

/** Short enough that calls stuck on a dead leader fail fast; long enough for a loopback election. */
const TIMEOUT_MS = 2_000;
const HANG_GUARD = { timeout: 60_000 };

let prefixes = 0;
const freshPrefix = (): string => `/ipkeeper-faults/${process.pid}-${++prefixes}/`;

function assertRetryable(e: unknown): void {
  assert.ok(e instanceof StoreError, `expected a StoreError, got ${String(e)}`);
  assert.equal(e.retryable, true, `not retryable: ${e.message}`);
  assert.ok(e.cause !== undefined || /no answer/.test(e.message), `no cause: ${e.message}`);
}

/**
 * Creates `key`, retrying retryable failures. An earlier attempt whose answer was lost may have
 * committed: finding our own value there counts as created (the caller-side rule for unknown
 * outcomes). Returns the version.
 */
async function createSurely(s: Store, key: string, value: unknown, errors: unknown[] = []): Promise<Version> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      const r = await s.create(key, value);
      if (r.created) return r.version;
      assert.deepEqual(r.existing.value, value, `${key} was created by someone else`);
      return r.existing.version;
    } catch (e) {
      assertRetryable(e);
      errors.push(e);
    }
  }
  throw new Error(`create ${key}: no answer after 50 attempts`);
}

/** Collects watch events; `until` resolves once a condition over them holds. */
class Events {
  readonly list: WatchEvent[] = [];
  resets = 0;
  private waiter: (() => void) | undefined;
  readonly onEvent = (ev: WatchEvent): void => {
    this.list.push(ev);
    this.waiter?.();
  };
  readonly onReset = (): void => {
    this.resets++;
  };
  /** Resolves once `check()` holds; rejects after 20 s (a hang guard), showing what arrived. */
  until(check: () => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`watch: still waiting after 20 s; got ${JSON.stringify(this.list)}`));
      }, 20_000);
      this.waiter = () => {
        if (check()) {
          this.waiter = undefined;
          clearTimeout(timer);
          resolve();
        }
      };
      this.waiter();
    });
  }
  hasVersion(v: Version): boolean {
    return this.list.some((e) => e.version === v);
  }
}

/**
 * A TCP proxy to one etcd member that can lose an answer: after `cutNext(done)`, the bytes the
 * client sends next still reach etcd, nothing etcd sends back reaches the client, and once `done()`
 * resolves (the write is visible in etcd) both connections are reset.
 */
class AnswerCuttingProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private armed: { done: () => Promise<void>; cut: () => void } | undefined;

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(targetPort: number): Promise<AnswerCuttingProxy> {
    const server = createServer();
    const proxy = new AnswerCuttingProxy(server);
    server.on('connection', (client) => proxy.pipe(client, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Resolves once a request was let through and its connection reset. */
  cutNext(done: () => Promise<void>): Promise<void> {
    return new Promise((cut) => (this.armed = { done, cut }));
  }

  private pipe(client: Socket, targetPort: number): void {
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    this.sockets.add(client).add(upstream);
    let cutting = false;
    client.on('data', (chunk) => {
      upstream.write(chunk);
      const armed = this.armed;
      if (!armed || cutting) return;
      this.armed = undefined;
      cutting = true;
      void armed.done().finally(() => {
        client.resetAndDestroy();
        upstream.destroy();
        armed.cut();
      });
    });
    upstream.on('data', (chunk) => {
      if (!cutting) client.write(chunk);
    });
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => {
        b.destroy();
        this.sockets.delete(a);
      });
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** Polls `check` until it holds (the write became visible). */
async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`still waiting for ${what}`);
}

describe('etcd store under member failures (3 members)', () => {
  let cluster: EtcdCluster;

  before(async () => {
    cluster = await startEtcdCluster(3);
  });
  after(async () => {
    await cluster?.stopAll();
  });

  /** Starts every stopped member and waits for a healthy cluster: each test begins whole. */
  async function restoreAll(): Promise<void> {
    for (let i = 0; i < cluster.members.length; i++) {
      if (!cluster.members[i]!.running) await cluster.start(i);
    }
    await cluster.waitHealthy();
  }

  it(
    'leader killed under 32 concurrent creators: no acknowledged create lost, no key with two winners',
    HANG_GUARD,
    async (t) => {
      const CREATORS = 32;
      const ROUNDS = 20;
      const KILL_AFTER_ACKS = 200;
      const prefix = freshPrefix();
      const stores = await Promise.all(
        Array.from({ length: CREATORS }, () => openEtcdStore(cluster.url, { prefix, timeoutMs: TIMEOUT_MS })),
      );
      /** Distinct keys: what each creator was told, keyed by key. */
      const acked = new Map<string, { value: unknown; version: Version }>();
      /** Shared keys: every racer's answer. */
      type Answer = { w: number; created: boolean; version: Version; value: unknown };
      const answers = new Map<string, Answer[]>();
      const errors: unknown[] = [];
      let acks = 0;
      let acksAfterKill = 0;
      let kill: Promise<void> | undefined;
      let killedIndex = -1;

      try {
        await Promise.all(
          stores.map(async (s, w) => {
            for (let r = 0; r < ROUNDS; r++) {
              const key = `claims/w${w}-r${r}`;
              const value = { w, r };
              acked.set(key, { value, version: await createSurely(s, key, value, errors) });
              acks++;
              if (kill) acksAfterKill++;
              if (acks === KILL_AFTER_ACKS) {
                kill = cluster.leaderIndex().then((i) => {
                  killedIndex = i;
                  return cluster.stop(i, 'SIGKILL');
                });
              }
              // Every creator races for the same shared key each round; each records what it was told.
              const shared = `claims/shared-${r}`;
              try {
                const res = await s.create(shared, { w });
                const list = answers.get(shared) ?? [];
                list.push(
                  res.created
                    ? { w, created: true, version: res.version, value: { w } }
                    : { w, created: false, version: res.existing.version, value: res.existing.value },
                );
                answers.set(shared, list);
              } catch (e) {
                assertRetryable(e);
                errors.push(e);
              }
            }
          }),
        );
        await kill;
        assert.ok(killedIndex >= 0, 'the leader was killed');
        assert.ok(acksAfterKill > 0, 'creates were acknowledged after the leader was killed');
        t.diagnostic(
          `killed member ${killedIndex}; ${errors.length} retryable failures; ${acksAfterKill} acks after the kill`,
        );

        await restoreAll();
        const check = await openEtcdStore(cluster.url, { prefix });
        try {
          const stored = new Map((await check.list('claims/')).map((e) => [e.key, e]));
          for (const [key, want] of acked) {
            assert.deepEqual(
              stored.get(key),
              { key, value: want.value, version: want.version },
              `lost ${key}`,
            );
          }
          for (const [key, list] of answers) {
            const winners = list.filter((a) => a.created);
            assert.ok(
              winners.length <= 1,
              `${key} has ${winners.length} winners: ${JSON.stringify(winners)}`,
            );
            const now = stored.get(key);
            assert.ok(now, `${key} was answered but is not stored`);
            for (const a of list) {
              // The racer whose value is stored won; telling it "not created" would be a lie (a
              // store that re-sent its create after a lost answer would find its own value).
              if (!a.created) {
                assert.notDeepEqual(a.value, { w: a.w }, `racer ${a.w} won ${key} but was told it lost`);
              }
              assert.deepEqual(
                { value: a.value, version: a.version },
                { value: now.value, version: now.version },
                `racer ${a.w} on ${key} was told something else than what is stored`,
              );
            }
          }
        } finally {
          await check.close();
        }
      } finally {
        await Promise.all(stores.map((s) => s.close()));
        await restoreAll();
      }
    },
  );

  it(
    'quorum lost: calls fail by the deadline with retryable StoreErrors; back, they succeed and data is intact',
    HANG_GUARD,
    async () => {
      const prefix = freshPrefix();
      const s = await openEtcdStore(cluster.url, { prefix, timeoutMs: 1_000 });
      try {
        const before = new Map<string, Version>();
        for (let i = 0; i < 20; i++) before.set(`claims/c${i}`, await createSurely(s, `claims/c${i}`, { i }));

        const leader = await cluster.leaderIndex();
        const follower = (leader + 1) % 3;
        await cluster.stop(leader, 'SIGTERM');
        await cluster.stop(follower, 'SIGKILL');

        const outcomes = await Promise.allSettled([
          s.get('claims/c0'),
          s.list('claims/'),
          s.create('claims/during-outage', { during: true }),
          s.update('claims/c1', { i: 1, updated: true }, before.get('claims/c1')!),
          s.delete('claims/c2', before.get('claims/c2')!),
        ]);
        for (const [i, o] of outcomes.entries()) {
          assert.equal(o.status, 'rejected', `call ${i} succeeded without a quorum: ${JSON.stringify(o)}`);
          assertRetryable(o.reason);
        }

        await cluster.start(leader);
        await cluster.start(follower);
        await cluster.waitHealthy();

        // The same store (its connections broke) works again, without help.
        const after = await s.create('claims/after-outage', { after: true });
        assert.ok(after.created);
        const got = new Map((await s.list('claims/')).map((e) => [e.key, e]));
        // The outage writes had unknown outcomes (a leader without a quorum may have logged them, and
        // they may commit once it has one again): each key is as before, or exactly as asked.
        const c1 = got.get('claims/c1');
        assert.ok(
          (c1?.version === before.get('claims/c1') && c1 !== undefined) ||
            JSON.stringify(c1?.value) === JSON.stringify({ i: 1, updated: true }),
          `claims/c1 is ${JSON.stringify(c1)}`,
        );
        const c2 = got.get('claims/c2');
        assert.ok(
          c2 === undefined || c2.version === before.get('claims/c2'),
          `claims/c2 is ${JSON.stringify(c2)}`,
        );
        const during = got.get('claims/during-outage');
        if (during) assert.deepEqual(during.value, { during: true });
        // Everything else is intact.
        for (const [key, version] of before) {
          if (key === 'claims/c1' || key === 'claims/c2') continue;
          assert.equal(got.get(key)?.version, version, `${key} changed`);
        }
        assert.deepEqual(
          [...got.keys()].filter((k) => !before.has(k) && k !== 'claims/during-outage'),
          ['claims/after-outage'],
        );
      } finally {
        await s.close();
        await restoreAll();
      }
    },
  );

  for (const where of ['every member', 'only the leader'] as const) {
    it(
      `a watch connected to ${where} keeps delivering every event, once and in order, across a leader kill`,
      HANG_GUARD,
      async () => {
        const prefix = freshPrefix();
        const leader = await cluster.leaderIndex();
        const watchUrl =
          where === 'every member'
            ? cluster.url
            : `etcd://${cluster.members[leader]!.clientUrl.slice('http://'.length)}`;
        const watching = await openEtcdStore(watchUrl, { prefix, timeoutMs: TIMEOUT_MS });
        const writer = await openEtcdStore(cluster.url, { prefix, timeoutMs: TIMEOUT_MS });
        const events = new Events();
        const w = watching.watch('claims/', events.onEvent, events.onReset);
        try {
          const versions: Version[] = [];
          for (let i = 0; i < 10; i++) versions.push(await createSurely(writer, `claims/k${i}`, { i }));
          await events.until(() => events.hasVersion(versions.at(-1)!));

          await cluster.stop(leader, 'SIGKILL');
          for (let i = 10; i < 20; i++) versions.push(await createSurely(writer, `claims/k${i}`, { i }));
          // Watching only the dead member: it can resume only once that member is back.
          if (where === 'only the leader') await cluster.start(leader);
          await events.until(() => events.hasVersion(versions.at(-1)!));

          assert.equal(events.resets, 0, 'the stream resumed where it broke: nothing to re-list');
          // What the agent's metrics report: the stream started over, and never had to re-list.
          const stats = watching.watchStats!();
          assert.equal(stats.resync, 0);
          if (where === 'only the leader') assert.ok(stats.broken + stats.closed >= 1, JSON.stringify(stats));
          assert.deepEqual(
            events.list,
            versions.map((version, i) => ({ type: 'put', key: `claims/k${i}`, value: { i }, version })),
          );
        } finally {
          w.close();
          await watching.close();
          await writer.close();
          await restoreAll();
        }
      },
    );
  }

  describe('a write whose answer is lost is a retryable failure, not an answer', () => {
    const CASES: {
      name: string;
      setup: (s: Store) => Promise<Version | undefined>;
      write: (s: Store, v: Version | undefined) => Promise<unknown>;
      visible: (check: Store) => Promise<boolean>;
    }[] = [
      {
        name: 'create',
        setup: async () => undefined,
        write: (s) => s.create('claims/x', { v: 1 }),
        visible: async (c) => (await c.get('claims/x')) !== undefined,
      },
      {
        name: 'update',
        setup: (s) => createSurely(s, 'claims/x', { v: 1 }),
        write: (s, v) => s.update('claims/x', { v: 2 }, v!),
        visible: async (c) => JSON.stringify((await c.get('claims/x'))?.value) === '{"v":2}',
      },
      {
        name: 'delete',
        setup: (s) => createSurely(s, 'claims/x', { v: 1 }),
        write: (s, v) => s.delete('claims/x', v!),
        visible: async (c) => (await c.get('claims/x')) === undefined,
      },
    ];
    for (const c of CASES) {
      it(c.name, HANG_GUARD, async () => {
        const prefix = freshPrefix();
        const member = Number(new URL(cluster.members[0]!.clientUrl).port);
        const proxy = await AnswerCuttingProxy.start(member);
        const s = await openEtcdStore(`etcd://127.0.0.1:${proxy.port}`, { prefix });
        const direct = await openEtcdStore(cluster.url, { prefix });
        try {
          const v = await c.setup(s);
          const cut = proxy.cutNext(() => eventually(`the ${c.name} to commit`, () => c.visible(direct)));
          await assert.rejects(c.write(s, v), (e: unknown) => {
            assertRetryable(e);
            assert.match((e as Error).message, /may or may not have been applied/);
            return true;
          });
          await cut;
          assert.ok(await c.visible(direct), `the ${c.name} committed although its answer was lost`);
          if (c.name === 'create') {
            // The caller resolves the unknown outcome by reading: its own value is there.
            const again = await s.create('claims/x', { v: 1 });
            assert.deepEqual(again.created ? undefined : again.existing.value, { v: 1 });
          }
        } finally {
          await s.close();
          await direct.close();
          await proxy.close();
        }
      });
    }
  });
});
