import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryStore } from '../store/memory.ts';
import type { Store, Versioned } from '../store/store.ts';
import type { IpamError } from '../errors.ts';
import { API_VERSION, type IPClaim } from '../api/kinds.ts';
import { Ipam, type AllocateRequest } from './engine.ts';
import { ObjectService } from './objects.ts';
import { CLAIM_PREFIX } from './state.ts';
import { rejects } from './test-util.ts';

function pool(name: string, spec: Record<string, unknown>) {
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: { name }, spec };
}
function reserved(name: string, ips: string[]) {
  return { apiVersion: API_VERSION, kind: 'ReservedIP', metadata: { name }, spec: { ips } };
}

async function setup(
  objects: unknown[] = [],
  opts: { store?: Store; node?: string; now?: () => number; endpointMemory?: number } = {},
) {
  const store = opts.store ?? new MemoryStore();
  const clock = { now: opts.now ?? (() => Date.parse('2026-01-01T00:00:00Z')) };
  const ipam = new Ipam({
    store,
    node: opts.node ?? 'node1',
    clock,
    random: () => 0.5,
    ...(opts.endpointMemory !== undefined ? { endpointMemory: opts.endpointMemory } : {}),
  });
  await ipam.start();
  const objs = new ObjectService(store, ipam, clock.now);
  if (objects.length > 0) await objs.apply(objects);
  return { store, ipam, objs };
}

let seq = 0;
function req(over: Partial<AllocateRequest> = {}): AllocateRequest {
  seq++;
  return {
    cniNetwork: 'net1',
    containerId: `c${seq}`,
    ifName: 'eth0',
    owner: { kind: 'Pod', namespace: 'default', name: `pod-${seq}`, uid: `uid-${seq}` },
    ...over,
  };
}

const ips = (r: { ips: { address: string }[] }) => r.ips.map((i) => i.address);

describe('engine: seed 000 (reserved IPs)', () => {
  it('walks the ReservedIP walkthrough', async () => {
    const { ipam, objs } = await setup([
      reserved('test-reservedip', ['10.6.168.131-10.6.168.132']),
      pool('test-ippool', { subnet: '10.6.0.0/16', ips: ['10.6.168.131-10.6.168.133'] }),
    ]);
    const cfg = { configPools: { ipv4: ['test-ippool'] } };
    const a = req(cfg);
    const b = req(cfg);
    assert.deepEqual(ips(await ipam.add(a)), ['10.6.168.133/16']);
    const err = await rejects(ipam.add(b), 'POOL_EXHAUSTED');
    assert.match(err.message, /test-ippool/);
    assert.match(err.message, /3 addresses, 2 reserved by "test-reservedip", 1 in use/);
    // Reserve .133 too and recreate the first pod: it fails as well.
    await objs.apply([reserved('test-reservedip', ['10.6.168.131-10.6.168.133'])]);
    await ipam.release(a);
    const a2 = req(cfg);
    await rejects(ipam.add(a2), 'POOL_EXHAUSTED', /3 reserved by "test-reservedip"/);
    await rejects(ipam.add(b), 'POOL_EXHAUSTED');
    // Remove the reservation: both pods get addresses.
    await objs.delete('ReservedIP', 'test-reservedip');
    const got = [...ips(await ipam.add(a2)), ...ips(await ipam.add(b))].sort();
    assert.equal(new Set(got).size, 2);
    for (const g of got) assert.match(g, /^10\.6\.168\.13[1-3]\/16$/);
  });

  it('never hands out an address reserved after the pool was made, nor the gateway or excluded ones', async () => {
    const { ipam, objs } = await setup([
      pool('p', { subnet: '10.0.0.0/29', gateway: '10.0.0.1', excludeIPs: ['10.0.0.2'] }),
    ]);
    await objs.apply([reserved('r', ['10.0.0.4'])]);
    const got: string[] = [];
    for (;;) {
      try {
        got.push(...ips(await ipam.add(req({ configPools: { ipv4: ['p'] } }))));
      } catch (e) {
        assert.equal((e as IpamError).code, 'POOL_EXHAUSTED');
        break;
      }
    }
    // /29: .0 network, .7 broadcast, .1 gateway, .2 excluded, .4 reserved -> .3 .5 .6
    assert.deepEqual(got.sort(), ['10.0.0.3/29', '10.0.0.5/29', '10.0.0.6/29']);
  });
});

describe('engine: pools at the boundaries', () => {
  const cases: { name: string; subnet: string; expect: string[] }[] = [
    { name: '/32 holds its one address', subnet: '10.1.1.1/32', expect: ['10.1.1.1/32'] },
    { name: '/31 holds both (RFC 3021)', subnet: '10.1.1.0/31', expect: ['10.1.1.0/31', '10.1.1.1/31'] },
    {
      name: '/30 drops network and broadcast',
      subnet: '10.1.1.0/30',
      expect: ['10.1.1.1/30', '10.1.1.2/30'],
    },
    { name: '/128 holds its one address', subnet: 'fd00::5/128', expect: ['fd00::5/128'] },
    { name: '/127 holds both', subnet: 'fd00::4/127', expect: ['fd00::4/127', 'fd00::5/127'] },
    {
      name: '/126 drops the subnet-router anycast',
      subnet: 'fd00::4/126',
      expect: ['fd00::5/126', 'fd00::6/126', 'fd00::7/126'],
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { ipam } = await setup([pool('p', { subnet: c.subnet })]);
      const fam = c.subnet.includes(':') ? 'ipv6' : 'ipv4';
      const got: string[] = [];
      for (let i = 0; i < c.expect.length; i++)
        got.push(...ips(await ipam.add(req({ configPools: { [fam]: ['p'] } }))));
      assert.deepEqual(got.sort(), [...c.expect].sort());
      await rejects(ipam.add(req({ configPools: { [fam]: ['p'] } })), 'POOL_EXHAUSTED');
    });
  }

  it('a /8 and a /64 allocate like a /28', async () => {
    const { ipam } = await setup([
      pool('big4', { subnet: '10.0.0.0/8' }),
      pool('big6', { subnet: 'fd00:1::/64' }),
    ]);
    const r = await ipam.add(req({ configPools: { ipv4: ['big4'], ipv6: ['big6'] } }));
    assert.deepEqual(ips(r), ['10.0.0.1/8', 'fd00:1::1/64']);
    const u = ipam.usage().find((p) => p.name === 'big4');
    assert.equal(u?.total, 2 ** 24 - 2);
    assert.equal(u?.used, 1);
  });
});

describe('engine: choice, backups, dual stack', () => {
  it('falls back to the next pool of the list when the first is full', async () => {
    const { ipam } = await setup([
      pool('a', { subnet: '10.0.0.0/24', ips: ['10.0.0.10'] }),
      pool('b', { subnet: '10.0.1.0/24', ips: ['10.0.1.10'] }),
    ]);
    const cfg = { configPools: { ipv4: ['a', 'b'] } };
    assert.deepEqual(ips(await ipam.add(req(cfg))), ['10.0.0.10/24']);
    const r = await ipam.add(req(cfg));
    assert.deepEqual(ips(r), ['10.0.1.10/24']);
    assert.equal(r.ips[0]?.pool, 'b');
    const e = await rejects(ipam.add(req(cfg)), 'POOL_EXHAUSTED');
    assert.match(e.message, /"a", "b"/);
  });

  it('skips disabled and missing pools, says why, and expands wildcards', async () => {
    const { ipam } = await setup([
      pool('rack1-a', { subnet: '10.0.0.0/24', disable: true }),
      pool('rack1-b', { subnet: '10.0.1.0/24', ips: ['10.0.1.7'] }),
    ]);
    assert.deepEqual(ips(await ipam.add(req({ configPools: { ipv4: ['rack1-*'] } }))), ['10.0.1.7/24']);
    const e = await rejects(ipam.add(req({ configPools: { ipv4: ['nope', 'rack1-*'] } })), 'POOL_EXHAUSTED');
    assert.match(e.message, /pool "nope" does not exist/);
    assert.match(e.message, /pool "rack1-a" is disabled/);
    await rejects(ipam.add(req({ configPools: { ipv4: ['nope'] } })), 'POOL_NOT_FOUND');
  });

  it('uses default pools when the config names none, and refuses clearly when there are none', async () => {
    const { ipam, objs } = await setup([pool('p', { subnet: '10.0.0.0/24' })]);
    await rejects(ipam.add(req()), 'NO_POOL', /spec\.default: true/);
    await objs.apply([
      pool('p', { subnet: '10.0.0.0/24', default: true }),
      pool('p6', { subnet: 'fd00::/120', default: true }),
    ]);
    assert.deepEqual(ips(await ipam.add(req())), ['10.0.0.1/24', 'fd00::1/120']);
  });

  it('dual stack is all or nothing: a full IPv6 pool leaves no IPv4 claim behind', async () => {
    const { ipam, store } = await setup([
      pool('v4', { subnet: '10.0.0.0/24' }),
      pool('v6', { subnet: 'fd00::/128' }),
    ]);
    const cfg = { configPools: { ipv4: ['v4'], ipv6: ['v6'] } };
    await ipam.add(req(cfg));
    const before = (await store.list(CLAIM_PREFIX)).length;
    await rejects(ipam.add(req(cfg)), 'POOL_EXHAUSTED', /IPv6/);
    assert.equal((await store.list(CLAIM_PREFIX)).length, before);
  });
});

describe('engine: idempotence and release', () => {
  it('ADD twice for one container and interface gives the same addresses; DEL twice succeeds', async () => {
    const { ipam, store } = await setup([pool('p', { subnet: '10.0.0.0/24' })]);
    const r = req({ configPools: { ipv4: ['p'] } });
    const first = await ipam.add(r);
    assert.deepEqual(await ipam.add(r), first);
    assert.equal((await store.list(CLAIM_PREFIX)).length, 1);
    assert.equal(await ipam.release(r), 1);
    assert.equal(await ipam.release(r), 0);
    assert.equal(await ipam.release({ cniNetwork: 'net1', containerId: 'never-added', ifName: 'eth0' }), 0);
    assert.equal((await store.list(CLAIM_PREFIX)).length, 0);
  });

  it('a second interface of the same container gets its own address', async () => {
    const { ipam } = await setup([pool('p', { subnet: '10.0.0.0/24' })]);
    const r = req({ configPools: { ipv4: ['p'] } });
    const a = await ipam.add(r);
    const b = await ipam.add({ ...r, ifName: 'net1' });
    assert.notDeepEqual(ips(a), ips(b));
  });

  it('does not reuse a just-released address at once (round robin, like host-local)', async () => {
    const { ipam } = await setup([pool('p', { subnet: '10.0.0.0/24' })]);
    const r = req({ configPools: { ipv4: ['p'] } });
    const a = ips(await ipam.add(r));
    await ipam.release(r);
    const b = ips(await ipam.add(req({ configPools: { ipv4: ['p'] } })));
    assert.notDeepEqual(a, b);
  });

  it('CHECK passes for a held attachment and fails naming it otherwise', async () => {
    const { ipam } = await setup([pool('p', { subnet: '10.0.0.0/24' })]);
    const r = req({ configPools: { ipv4: ['p'] } });
    await ipam.add(r);
    await ipam.check(r);
    await ipam.release(r);
    await rejects(ipam.check(r), 'NOT_FOUND', new RegExp(r.containerId));
  });
});

/** `store` with its deletes and reads logged ("get KEY", "delete KEY", "deleteMany KEY,KEY"). */
function logged(store: MemoryStore, before?: { deleteMany?: () => Promise<void> }) {
  const calls: string[] = [];
  const s = Object.create(store) as MemoryStore;
  s.get = <T>(key: string) => {
    calls.push(`get ${key}`);
    return store.get.call<MemoryStore, [string], Promise<Versioned<T> | undefined>>(s, key);
  };
  s.delete = (key, version) => {
    calls.push(`delete ${key}`);
    return store.delete.call(s, key, version);
  };
  s.deleteMany = async (entries) => {
    calls.push(`deleteMany ${entries.map((e) => e.key).join(',')}`);
    await before?.deleteMany?.();
    return store.deleteMany.call(s, entries);
  };
  return { store: s, calls };
}

describe('engine: DEL in one write', () => {
  const pools = [pool('p4', { subnet: '10.0.0.0/24' }), pool('p6', { subnet: 'fd00::/120' })];
  const dual = { configPools: { ipv4: ['p4'], ipv6: ['p6'] } };

  /** A dual-stack pod added, then released with the store's calls from the DEL on logged. */
  const addThenDel = async (opts: { endpointMemory?: number } = {}) => {
    const { store, calls } = logged(new MemoryStore());
    const { ipam } = await setup(pools, { store, ...opts });
    const r = req(dual);
    await ipam.add(r);
    const [endpoint] = await store.list('endpoints/');
    assert.ok(endpoint);
    calls.length = 0;
    assert.equal(await ipam.release(r), 2);
    return { store, calls, endpoint, ipam, r };
  };

  it('a pod that is not fixed loses its claims and its endpoint in one deleteMany', async () => {
    const { store, calls, endpoint, ipam, r } = await addThenDel();
    const claimKeys = calls.filter((c) => c.startsWith('deleteMany'));
    assert.equal(claimKeys.length, 1, calls.join('; '));
    assert.match(claimKeys[0]!, new RegExp(`${CLAIM_PREFIX}.*,${CLAIM_PREFIX}.*,${endpoint.key}$`));
    assert.deepEqual(
      calls.filter((c) => c.startsWith('delete ')),
      [],
    );
    // The endpoint this engine created is deleted at the version it wrote, without a read first.
    assert.ok(!calls.includes(`get ${endpoint.key}`), calls.join('; '));
    assert.deepEqual(await store.list(CLAIM_PREFIX), []);
    assert.deepEqual(await store.list('endpoints/'), []);
    assert.equal(ipam.state.claimsOf(r.cniNetwork, r.containerId, r.ifName).length, 0);
    // The addresses are free again for the next pods.
    assert.equal((await ipam.add(req(dual))).ips.length, 2);
  });

  it('a DEL that leaves another interface of the pod goes key by key and keeps the endpoint', async () => {
    const { store, calls } = logged(new MemoryStore());
    const { ipam } = await setup(pools, { store });
    const r = req({ configPools: { ipv4: ['p4'] } });
    await ipam.add(r);
    await ipam.add({ ...r, ifName: 'net1' });
    calls.length = 0;
    assert.equal(await ipam.release(r), 1);
    assert.ok(!calls.some((c) => c.startsWith('deleteMany')), calls.join('; '));
    const [endpoint] = await store.list<{ spec: { interfaces: { ifName: string }[] } }>('endpoints/');
    assert.deepEqual(
      endpoint?.value.spec.interfaces.map((i) => i.ifName),
      ['net1'],
    );
    calls.length = 0;
    assert.equal(await ipam.release({ ...r, ifName: 'net1' }), 1);
    assert.ok(
      calls.some((c) => c.startsWith('deleteMany')),
      calls.join('; '),
    );
    assert.deepEqual(await store.list('endpoints/'), []);
    assert.deepEqual(await store.list(CLAIM_PREFIX), []);
  });

  it('with endpointMemory 0 the DEL reads the endpoint, then deletes it with the claims in one write', async () => {
    const { store, calls, endpoint } = await addThenDel({ endpointMemory: 0 });
    assert.deepEqual(
      calls.filter((c) => c.startsWith('get ') || c.startsWith('deleteMany')).map((c) => c.split(' ')[0]),
      ['get', 'deleteMany'],
    );
    assert.ok(calls.includes(`get ${endpoint.key}`), calls.join('; '));
    assert.deepEqual(await store.list('endpoints/'), []);
  });

  it('an endpoint changed since the ADD wrote it: the one write is refused, and the DEL reads and releases', async () => {
    const base = new MemoryStore();
    const { store, calls } = logged(base);
    const { ipam } = await setup(pools, { store });
    const r = req(dual);
    await ipam.add(r);
    const [endpoint] = await base.list<Record<string, unknown>>('endpoints/');
    assert.ok(endpoint);
    // Another writer (a controller, a person) rewrites it: the version the engine kept is stale.
    const u = await base.update(endpoint.key, { ...endpoint.value, note: 'touched' }, endpoint.version);
    assert.ok(u.ok);
    calls.length = 0;
    assert.equal(await ipam.release(r), 2);
    assert.ok(
      calls.some((c) => c.startsWith('deleteMany')),
      calls.join('; '),
    );
    assert.ok(calls.includes(`get ${endpoint.key}`), calls.join('; '));
    assert.deepEqual(await base.list(CLAIM_PREFIX), []);
    assert.deepEqual(await base.list('endpoints/'), []);
  });

  it('a claim rewritten just before the write: nothing is deleted by it, and the key-by-key path releases', async () => {
    const base = new MemoryStore();
    let claimKey = '';
    const { store, calls } = logged(base, {
      // Another writer changes the claim between the cache's read and the write (same owner).
      deleteMany: async () => {
        const cur = await base.get<IPClaim>(claimKey);
        assert.ok(cur);
        const u = await base.update(
          claimKey,
          { ...cur.value, metadata: { ...cur.value.metadata, labels: { a: 'b' } } },
          cur.version,
        );
        assert.ok(u.ok);
      },
    });
    const { ipam } = await setup(pools, { store });
    const r = req({ configPools: { ipv4: ['p4'] } });
    await ipam.add(r);
    claimKey = (await base.list(CLAIM_PREFIX))[0]!.key;
    calls.length = 0;
    assert.equal(await ipam.release(r), 1);
    assert.ok(
      calls.some((c) => c.startsWith('deleteMany')),
      calls.join('; '),
    );
    assert.ok(calls.includes(`delete ${claimKey}`), calls.join('; '));
    assert.deepEqual(await base.list(CLAIM_PREFIX), []);
    assert.deepEqual(await base.list('endpoints/'), []);
  });
});

describe('engine: requested addresses', () => {
  it('gives a free requested address and refuses a held or reserved one naming why', async () => {
    const { ipam } = await setup([pool('p', { subnet: '10.0.0.0/24' }), reserved('r', ['10.0.0.99'])]);
    const cfg = { configPools: { ipv4: ['p'] } };
    const a = req({ ...cfg, requestedIps: ['10.0.0.50'] });
    assert.deepEqual(ips(await ipam.add(a)), ['10.0.0.50/24']);
    const e = await rejects(ipam.add(req({ ...cfg, requestedIps: ['10.0.0.50'] })), 'ADDRESS_IN_USE');
    assert.match(e.message, new RegExp(`Pod default/${a.owner.name}`));
    await rejects(ipam.add(req({ ...cfg, requestedIps: ['10.0.0.99/24'] })), 'ADDRESS_RESERVED', /"r"/);
    await rejects(ipam.add(req({ ...cfg, requestedIps: ['10.9.0.1'] })), 'ADDRESS_NOT_IN_POOL');
    await rejects(ipam.add(req({ ...cfg, requestedIps: ['010.0.0.1'] })), 'INVALID_CONFIG');
  });
});

describe('engine: GC', () => {
  it('releases only old claims of this node and network whose attachment is not valid', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const { ipam, store } = await setup([pool('p', { subnet: '10.0.0.0/24' })], { now: () => now });
    const cfg = { configPools: { ipv4: ['p'] } };
    const keep = req(cfg);
    const drop = req(cfg);
    const otherNet = req({ ...cfg, cniNetwork: 'net2' });
    await ipam.add(keep);
    await ipam.add(drop);
    await ipam.add(otherNet);
    now += 120_000;
    const young = req(cfg);
    await ipam.add(young);
    const n = await ipam.gc('net1', [{ containerID: keep.containerId, ifname: 'eth0' }]);
    assert.equal(n, 1);
    const left = (await store.list<IPClaim>(CLAIM_PREFIX)).map((e) => e.value.spec.containerId).sort();
    assert.deepEqual(left, [keep.containerId, otherNet.containerId, young.containerId].sort());
  });
});

describe('engine: uniqueness under concurrency', () => {
  it('200 concurrent ADDs on one agent get 200 distinct addresses', async () => {
    const { ipam, store } = await setup([pool('p', { subnet: '10.0.0.0/24' })]);
    const rs = Array.from({ length: 200 }, () => req({ configPools: { ipv4: ['p'] } }));
    const out = await Promise.all(rs.map((r) => ipam.add(r)));
    const all = out.flatMap(ips);
    assert.equal(new Set(all).size, 200);
    assert.equal((await store.list(CLAIM_PREFIX)).length, 200);
  });

  it('four agents with separate caches on one store never give one address twice', async () => {
    const store = new MemoryStore();
    const { objs } = await setup([pool('p', { subnet: '10.0.0.0/26' })], { store });
    void objs;
    const agents = await Promise.all(
      [1, 2, 3, 4].map(async (i) => (await setup([], { store, node: `node${i}` })).ipam),
    );
    const results = await Promise.allSettled(
      Array.from({ length: 80 }, (_, i) => agents[i % 4]!.add(req({ configPools: { ipv4: ['p'] } }))),
    );
    const ok = results.filter((r) => r.status === 'fulfilled').flatMap((r) => ips(r.value));
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(new Set(ok).size, ok.length, 'an address was given twice');
    assert.equal(ok.length, 62, 'a /26 has 62 usable addresses');
    for (const f of failed)
      assert.equal(((f as PromiseRejectedResult).reason as IpamError).code, 'POOL_EXHAUSTED');
    assert.equal((await store.list(CLAIM_PREFIX)).length, 62);
    // They did race (all four proposed the same first addresses): the store decided, and counted.
    assert.ok(agents.reduce((n, a) => n + a.stats.racesLost, 0) > 0);
  });

  it('one ADD at a time takes the next address; ADDs overlapping on an agent start at random', async () => {
    const { ipam } = await setup([pool('p', { subnet: '10.0.0.0/24' })]);
    const cfg = { configPools: { ipv4: ['p'] } };
    assert.deepEqual(ips(await ipam.add(req(cfg))), ['10.0.0.1/24']);
    assert.deepEqual(ips(await ipam.add(req(cfg))), ['10.0.0.2/24']);
    // Three at once: the first from the cursor, the others from a random address (0.5 here: the
    // middle of the pool's 254), the third past the second's, which is in flight.
    const out = await Promise.all([1, 2, 3].map(() => ipam.add(req(cfg))));
    assert.deepEqual(out.map(ips).flat(), ['10.0.0.3/24', '10.0.0.128/24', '10.0.0.129/24']);
    // Alone again: from the cursor, after the last address handed out (.129).
    assert.deepEqual(ips(await ipam.add(req(cfg))), ['10.0.0.130/24']);
  });

  it('a burst on four agents barely races: overlapping ADDs spread over the pool', async () => {
    // A seeded generator, so the count below is the same on every run.
    let x = 20261206;
    const random = (): number => {
      x = (x + 0x6d2b79f5) | 0;
      let t = Math.imul(x ^ (x >>> 15), 1 | x);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const store = new MemoryStore();
    await setup([pool('p', { subnet: '10.0.0.0/16' })], { store });
    const agents = await Promise.all(
      [1, 2, 3, 4].map(async (i) => {
        const ipam = new Ipam({ store, node: `node${i}`, random });
        await ipam.start();
        return ipam;
      }),
    );
    const out = await Promise.all(
      Array.from({ length: 400 }, (_, i) => agents[i % 4]!.add(req({ configPools: { ipv4: ['p'] } }))),
    );
    assert.equal(new Set(out.flatMap(ips)).size, 400);
    const lost = agents.reduce((n, a) => n + a.stats.racesLost, 0);
    // Each agent's first ADD starts at the pool's first address, as the others' do: 3 lost races
    // there; every other ADD overlaps its agent's first and starts at random. (Every ADD starting
    // from the cursor lost ~300: each agent's 100 proposed the same 100 addresses.)
    assert.ok(lost <= 6, `${lost} races lost`);
    for (const a of agents) await a.stop();
  });

  it('random ADD/DEL sequences across two agents keep claims unique and complete (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ agent: fc.nat(1), op: fc.constantFrom('add', 'del'), pod: fc.nat(11) }), {
          maxLength: 60,
        }),
        async (ops) => {
          const store = new MemoryStore();
          await setup([pool('p', { subnet: '10.0.0.0/29' })], { store });
          const agents = [(await setup([], { store })).ipam, (await setup([], { store })).ipam];
          const holding = new Map<number, string>();
          for (const o of ops) {
            const r = {
              cniNetwork: 'n',
              containerId: `c${o.pod}`,
              ifName: 'eth0',
              owner: { kind: 'Pod', name: `p${o.pod}` },
              configPools: { ipv4: ['p'] },
            };
            // Each pod is served by one agent (its node), as in a cluster.
            const a = agents[o.pod % 2]!;
            if (o.op === 'add') {
              try {
                const got = ips(await a.add(r))[0]!;
                if (holding.has(o.pod)) assert.equal(got, holding.get(o.pod));
                holding.set(o.pod, got);
              } catch (e) {
                assert.equal((e as IpamError).code, 'POOL_EXHAUSTED');
                assert.ok(holding.size >= 6, `exhausted with only ${holding.size} held`);
              }
            } else {
              await a.release(r);
              holding.delete(o.pod);
            }
          }
          const claims = await store.list<IPClaim>(CLAIM_PREFIX);
          assert.equal(claims.length, holding.size);
          const byPod = new Map(
            claims.map((c) => [Number(c.value.spec.containerId?.slice(1)), `${c.value.spec.ip}/29`]),
          );
          assert.deepEqual(new Map([...byPod].sort()), new Map([...holding].sort()));
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('objects: safe changes', () => {
  it('refuses to drop an in-use address from a pool or delete a pool with claims', async () => {
    const { ipam, objs } = await setup([pool('p', { subnet: '10.0.0.0/24', ips: ['10.0.0.10-10.0.0.20'] })]);
    const r = req({ configPools: { ipv4: ['p'] } });
    await ipam.add(r);
    await rejects(
      objs.apply([pool('p', { subnet: '10.0.0.0/24', ips: ['10.0.0.11-10.0.0.20'] })]),
      'INVALID_OBJECT',
      /10\.0\.0\.10/,
    );
    await rejects(objs.apply([pool('p', { subnet: '10.0.0.0/16' })]), 'INVALID_OBJECT', /spec\.subnet/);
    await rejects(objs.delete('IPPool', 'p'), 'CONFLICT', /1 claim/);
    assert.deepEqual(
      (await objs.apply([pool('p', { subnet: '10.0.0.0/24', ips: ['10.0.0.10-10.0.0.30'] })])).map(
        (o) => o.action,
      ),
      ['configured'],
    );
    await ipam.release(r);
    await objs.delete('IPPool', 'p');
    await rejects(objs.get('IPPool', 'p'), 'NOT_FOUND');
  });

  it('refuses a pool whose addresses overlap another pool of the same network', async () => {
    const { objs } = await setup([pool('a', { subnet: '10.6.0.0/16', ips: ['10.6.168.131-10.6.168.133'] })]);
    await rejects(
      objs.apply([pool('b', { subnet: '10.6.0.0/16', ips: ['10.6.168.133-10.6.168.140'] })]),
      'INVALID_OBJECT',
      /overlaps IPPool "a" in network "default" at 10\.6\.168\.133/,
    );
    // Disjoint ranges of one subnet, or the same range in another network, are fine.
    await objs.apply([pool('b', { subnet: '10.6.0.0/16', ips: ['10.6.168.134-10.6.168.140'] })]);
    await objs.apply([pool('c', { subnet: '10.6.0.0/16', ips: ['10.6.168.131'], network: 'vlan20' })]);
  });

  it('validates every object before writing any', async () => {
    const { objs, store } = await setup();
    await rejects(
      objs.apply([
        pool('good', { subnet: '10.0.0.0/24' }),
        pool('bad', { subnet: '10.0.0.0/24', vlan: 5000 }),
      ]),
      'INVALID_OBJECT',
      /spec\.vlan/,
    );
    assert.equal((await store.list('ippools/')).length, 0);
  });
});

describe('engine: a pool marked for deletion', () => {
  it('gives out no new address from it, names why, and falls back to the next pool', async () => {
    const { store, ipam } = await setup([
      pool('going', { subnet: '10.40.0.0/29' }),
      pool('backup', { subnet: '10.41.0.0/29' }),
    ]);
    const held = await ipam.add(req({ configPools: { ipv4: ['going'] } }));
    const e = await store.get<Record<string, any>>('ippools/going');
    assert.ok(e);
    // What the kubernetes store shows while the pool's finalizer holds it.
    const marked = {
      ...e.value,
      metadata: { ...e.value.metadata, deletionTimestamp: '2026-01-01T00:00:00Z' },
    };
    assert.ok((await store.update('ippools/going', marked, e.version)).ok);
    await ipam.resync();
    await rejects(
      ipam.add(req({ configPools: { ipv4: ['going'] } })),
      'POOL_EXHAUSTED',
      /pool "going" is being deleted/,
    );
    assert.match(
      ips(await ipam.add(req({ configPools: { ipv4: ['going', 'backup'] } })))[0] ?? '',
      /^10\.41\./,
    );
    assert.equal(held.ips.length, 1, 'what it already gave out stays');
  });
});
