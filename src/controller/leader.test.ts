import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LeaderElector, MemoryLeaseClient, microTime } from './leader.ts';

/** Two candidates on one in-memory lease, a manual clock, and a log of their callbacks. */
function setup() {
  let t = 1_000_000;
  const clock = { now: () => t, advance: (ms: number) => (t += ms) };
  const client = new MemoryLeaseClient();
  const calls: string[] = [];
  const make = (id: string) =>
    new LeaderElector({
      client,
      identity: id,
      leaseDurationS: 15,
      now: clock.now,
      onStartedLeading: () => void calls.push(`${id} started`),
      onStoppedLeading: () => void calls.push(`${id} stopped`),
    });
  return { clock, client, calls, a: make('a'), b: make('b') };
}

describe('leader election state machine', () => {
  it('the first candidate creates the lease and leads; the second stands by', async () => {
    const { client, calls, a, b } = setup();
    assert.equal(await a.step(), true);
    assert.equal(await b.step(), false);
    assert.equal(await a.step(), true, 'renewal');
    assert.equal(await b.step(), false);
    const l = await client.get();
    assert.equal(l?.spec.holderIdentity, 'a');
    assert.equal(l?.spec.leaseDurationSeconds, 15);
    assert.equal(l?.spec.leaseTransitions, 0);
    assert.deepEqual(calls, ['a started']);
    assert.equal(b.observedHolder, 'a');
  });

  it('a renewal moves renewTime and keeps acquireTime', async () => {
    const { clock, client, a } = setup();
    await a.step();
    const first = await client.get();
    clock.advance(2_000);
    await a.step();
    const second = await client.get();
    assert.equal(second?.spec.acquireTime, first?.spec.acquireTime);
    assert.equal(second?.spec.renewTime, microTime(clock.now()));
    assert.notEqual(second?.spec.renewTime, first?.spec.renewTime);
  });

  it('a standby takes over only after a full duration without renewal, by its own clock', async () => {
    const { clock, client, calls, a, b } = setup();
    await a.step();
    await b.step();
    clock.advance(14_999);
    assert.equal(await b.step(), false, 'one millisecond before expiry');
    clock.advance(1);
    assert.equal(await b.step(), true, 'expired');
    const l = await client.get();
    assert.equal(l?.spec.holderIdentity, 'b');
    assert.equal(l?.spec.leaseTransitions, 1);
    // The old leader's next step sees the other holder and steps down at once.
    assert.equal(await a.step(), false);
    assert.deepEqual(calls, ['a started', 'b started', 'a stopped']);
  });

  it('a standby that starts late waits a full duration from its first sight, whatever renewTime says', async () => {
    const { clock, client, a, b } = setup();
    await a.step();
    clock.advance(60_000); // a is long dead, but b has never seen the lease
    assert.equal(await b.step(), false);
    clock.advance(15_000);
    assert.equal(await b.step(), true);
    assert.equal((await client.get())?.spec.holderIdentity, 'b');
  });

  it('renewals keep the lease: a standby never takes it while the leader renews', async () => {
    const { clock, a, b } = setup();
    await a.step();
    for (let i = 0; i < 20; i++) {
      clock.advance(2_000);
      assert.equal(await a.step(), true);
      assert.equal(await b.step(), false);
    }
  });

  it('release hands the lease over at once; leaseTransitions counts every change of holder', async () => {
    const { client, calls, a, b } = setup();
    await a.step();
    await b.step();
    await a.release();
    assert.equal((await client.get())?.spec.holderIdentity, '');
    assert.equal(a.isLeader, false);
    assert.equal(await b.step(), true, 'no wait after a release');
    const l = await client.get();
    assert.equal(l?.spec.holderIdentity, 'b');
    assert.equal(l?.spec.leaseTransitions, 1);
    assert.equal(l?.spec.leaseDurationSeconds, 15);
    assert.deepEqual(calls, ['a started', 'a stopped', 'b started']);
  });

  it('renew failures: the leader keeps leading until the renew deadline, then steps down', async () => {
    const { clock, client, calls, a } = setup();
    await a.step();
    client.down = true;
    clock.advance(9_999);
    assert.equal(await a.step(), true, 'within the 10 s renew deadline');
    clock.advance(1);
    assert.equal(await a.step(), false, 'at the deadline');
    assert.deepEqual(calls, ['a started', 'a stopped']);
    client.down = false;
    assert.equal(await a.step(), true, 'it still holds the record, so it renews and leads again');
    assert.deepEqual(calls, ['a started', 'a stopped', 'a started']);
  });

  it('of two candidates racing for an expired lease exactly one wins', async () => {
    const { clock, client, a } = setup();
    await a.step();
    const contenders = ['b', 'c', 'd'].map(
      (id) => new LeaderElector({ client, identity: id, leaseDurationS: 15, now: clock.now }),
    );
    for (const c of contenders) await c.step();
    clock.advance(15_000);
    const won = await Promise.all(contenders.map((c) => c.step()));
    assert.equal(won.filter(Boolean).length, 1, `winners: ${JSON.stringify(won)}`);
    const holder = (await client.get())?.spec.holderIdentity;
    assert.equal(contenders[won.indexOf(true)]?.identity, holder);
  });

  it('refuses a renew deadline at or above the lease duration', () => {
    assert.throws(
      () =>
        new LeaderElector({
          client: new MemoryLeaseClient(),
          identity: 'x',
          leaseDurationS: 5,
          renewDeadlineMs: 5_000,
        }),
      /renew deadline \(5000 ms\) must be below the lease duration \(5 s\)/,
    );
    assert.throws(
      () => new LeaderElector({ client: new MemoryLeaseClient(), identity: '' }),
      /identity must not be empty/,
    );
  });

  it('MicroTime has six fractional digits', () => {
    assert.equal(microTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678)), '2026-01-02T03:04:05.678000Z');
  });
});
