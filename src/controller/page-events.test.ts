/**
 * The controller's pool map page shows the cluster's recent events: the real page routes
 * (`servePage`) over the real controller hub (`pageHub`: the shared claims cache on the memory
 * store) on 127.0.0.1:0. Claims made, re-owned and deleted become `allocate` / `release` events in
 * `/v1/map` and a `change` on the SSE stream; the initial list and version bumps do not; a delete
 * the GC announced (`ownDelete`) is not reported twice; a failing reconcile pass is an `error`.
 * test/kube/controller-page.test.ts runs the same page in a real controller against an API server.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { MemoryStore } from '../store/memory.ts';
import { API_VERSION, type ClaimOwner, type IPClaim, type IPPool } from '../api/kinds.ts';
import type { AgentEvent } from '../agent/ui/events.ts';
import type { PoolMapPage } from '../agent/ui/map.ts';
import type { UiHub } from '../agent/ui/hub.ts';
import { storeContext } from '../../test/lib/controller-context.ts';
import { controllerEvents, recordReconcileErrors, type SharedCache } from './cache.ts';
import { pageHub, servePage } from './main.ts';
import { PassLoop } from './pass-loop.ts';
import { until as untilDone } from '../../test/lib/until.ts';

const DEADLINE_MS = 10_000;

function until<T>(what: string, check: () => Promise<T | undefined> | T | undefined): Promise<T> {
  return untilDone(what, check, DEADLINE_MS, 10);
}

function get(url: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      })
      .on('error', reject);
  });
}

/** The SSE stream: the event names seen so far. */
function sse(url: string): { names: string[]; opened: Promise<void>; close(): void } {
  const names: string[] = [];
  let req: http.ClientRequest | undefined;
  const opened = new Promise<void>((resolve, reject) => {
    req = http.get(url, (res) => {
      res.on('data', (d: Buffer) => {
        for (const m of d.toString().matchAll(/^event: (\w+)$/gm)) names.push(m[1]!);
        resolve();
      });
    });
    req.on('error', reject);
  });
  return { names, opened, close: () => req?.destroy() };
}

const owner = (name: string, uid = `uid-${name}`): ClaimOwner => ({
  kind: 'Pod',
  namespace: 'shop',
  name,
  uid,
});

const claim = (ip: string, o: ClaimOwner, extra: Partial<IPClaim['spec']> = {}): IPClaim => ({
  apiVersion: API_VERSION,
  kind: 'IPClaim',
  metadata: { name: `default.${ip.replaceAll('.', '-')}` },
  spec: {
    network: 'default',
    cniNetwork: 'macvlan-ens192',
    ip,
    family: 4,
    pool: 'p',
    owner: o,
    containerId: `c-${o.name}`,
    ifName: 'eth0',
    node: 'worker-1',
    createdAt: '2026-01-01T00:00:00Z',
    ...extra,
  },
});
const key = (ip: string): string => `ipclaims/default.${ip.replaceAll('.', '-')}`;

describe('the controller page: cluster-wide recent events', () => {
  const store = new MemoryStore();
  const { ctx } = storeContext(store);
  let ui: { cache: SharedCache; hub: UiHub };
  let server: http.Server;
  let base: string;

  const events = async (): Promise<AgentEvent[]> => {
    const r = await get(`${base}/v1/map`);
    assert.equal(r.status, 200, r.text);
    return (JSON.parse(r.text) as PoolMapPage).events;
  };
  /** Waits until the SSE stream has said `change` more than `n` times. */
  const changedAfter = (s: { names: string[] }, n: number) =>
    until(`change #${n + 1} on the stream`, () =>
      s.names.filter((x) => x === 'change').length > n ? true : undefined,
    );
  const changes = (s: { names: string[] }) => s.names.filter((x) => x === 'change').length;

  before(async () => {
    const pool: IPPool = {
      apiVersion: API_VERSION,
      kind: 'IPPool',
      metadata: { name: 'p' },
      spec: { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.19'], network: 'default' },
    };
    await store.create('ippools/p', pool);
    // Claims that exist before the cache loads are history: the initial list is no event.
    await store.create(key('10.9.0.10'), claim('10.9.0.10', owner('old-0')));
    await store.create(key('10.9.0.11'), claim('10.9.0.11', owner('old-1')));
    // ... and so is one written while it loads (its watch event comes before the list is done).
    const loading = pageHub(ctx, 'controller test');
    await store.create(key('10.9.0.19'), claim('10.9.0.19', owner('mid-0')));
    ui = await loading;
    server = http.createServer((req, res) => {
      void servePage(req, res, async () => ui.hub).then((served) => {
        if (!served) {
          res.writeHead(404);
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const a = server.address();
    base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  });

  after(async () => {
    ui?.hub.close();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await ui?.cache.release();
    await store.close();
  });

  it('the initial list makes no event; the page shows the pre-existing claims all the same', async () => {
    assert.deepEqual(await events(), []);
    const map = JSON.parse((await get(`${base}/v1/map`)).text) as PoolMapPage;
    assert.equal(map.pools.find((p) => p.name === 'p')?.counts.claims, 3);
  });

  it('a new claim is an allocate event (ip, pool, pod, node, network) and a change on the stream', async () => {
    const s = sse(`${base}/v1/events`);
    try {
      await s.opened;
      assert.equal(s.names[0], 'hello');
      await store.create(key('10.9.0.12'), claim('10.9.0.12', owner('web-0')));
      await changedAfter(s, 0);
      const [e, ...rest] = await until('the allocate event', async () => {
        const es = await events();
        return es.length > 0 ? es : undefined;
      });
      assert.deepEqual(rest, []);
      assert.equal(e!.kind, 'allocate');
      assert.deepEqual(e!.ips, ['10.9.0.12']);
      assert.deepEqual(e!.pools, ['p']);
      assert.equal(e!.pod, 'shop/web-0');
      assert.equal(e!.node, 'worker-1');
      assert.equal(e!.network, 'macvlan-ens192');
      assert.equal(e!.ifName, 'eth0');
      assert.equal(e!.message, 'allocated 10.9.0.12 (pool p) to pod shop/web-0 eth0 on node worker-1');
    } finally {
      s.close();
    }
  });

  it('a version bump of the same owner is no event; a claim re-attached to a new pod is an allocate', async () => {
    const s = sse(`${base}/v1/events`);
    try {
      await s.opened;
      const k = key('10.9.0.12');
      const cur = (await store.get<IPClaim>(k))!;
      // Same owner, other container and a later time: the engine's status rewrites look like this.
      const bumped = claim('10.9.0.12', owner('web-0'), {
        containerId: 'c-restarted',
        createdAt: '2026-02-01T00:00:00Z',
      });
      const u1 = await store.update(k, bumped, cur.version);
      assert.ok(u1.ok);
      await changedAfter(s, 0);
      const seen = changes(s);
      assert.equal((await events()).length, 1, 'still only the first allocate');
      // A fixed claim handed to the StatefulSet's next pod of the name: a new uid, a new owner.
      const u2 = await store.update(
        k,
        claim('10.9.0.12', owner('web-0', 'uid-web-0-b'), { node: 'worker-2' }),
        u1.version,
      );
      assert.ok(u2.ok);
      await changedAfter(s, seen);
      const [e] = await until('the re-owned allocate', async () => {
        const es = await events();
        return es.length === 2 ? es : undefined;
      });
      assert.equal(e!.kind, 'allocate');
      assert.equal(e!.pod, 'shop/web-0');
      assert.equal(e!.node, 'worker-2');
      assert.match(
        e!.message,
        /^allocated 10\.9\.0\.12 \(pool p\) to pod shop\/web-0 eth0 on node worker-2 \(was pod shop\/web-0\)$/,
      );
    } finally {
      s.close();
    }
  });

  it('a deleted claim is a release event named from its last value', async () => {
    const s = sse(`${base}/v1/events`);
    try {
      await s.opened;
      const k = key('10.9.0.10');
      const cur = (await store.get<IPClaim>(k))!;
      assert.ok((await store.delete(k, cur.version)).ok);
      await changedAfter(s, 0);
      const [e] = await until('the release event', async () => {
        const es = await events();
        return es[0]?.kind === 'release' ? es : undefined;
      });
      assert.deepEqual(e!.ips, ['10.9.0.10']);
      assert.equal(e!.pod, 'shop/old-0');
      assert.equal(e!.message, 'released 10.9.0.10 (pool p) of pod shop/old-0 eth0 on node worker-1');
    } finally {
      s.close();
    }
  });

  it('a delete the controller announced (the GC) is not reported again by the watch', async () => {
    const k = key('10.9.0.11');
    const before = (await events()).length;
    const cur = (await store.get<IPClaim>(k))!;
    const done = ui.cache.ownDelete(k);
    const r = await store.delete(k, cur.version);
    done(r.ok);
    assert.ok(r.ok);
    await until('the cache to drop it', () => (ui.cache.ipam.state.claims.has(k) ? undefined : true));
    assert.equal((await events()).length, before);
    // A failed own delete does not hide the claim's later delete.
    await store.create(k, claim('10.9.0.11', owner('new-1')));
    await until('the allocate', async () => ((await events())[0]?.pod === 'shop/new-1' ? true : undefined));
    const fresh = (await store.get<IPClaim>(k))!;
    ui.cache.ownDelete(k)(false);
    assert.ok((await store.delete(k, fresh.version)).ok);
    const [e] = await until('the release', async () => {
      const es = await events();
      return es[0]?.kind === 'release' ? es : undefined;
    });
    assert.equal(e!.pod, 'shop/new-1');
  });

  it('a failing reconcile pass is an error event, repeated failures counted on one line', async () => {
    const s = sse(`${base}/v1/events`);
    try {
      await s.opened;
      let fail = 2;
      const loop = new PassLoop({
        name: 'pool-status',
        delayMs: 1,
        errorDelayMs: 1,
        log: recordReconcileErrors(ctx.log, controllerEvents(ctx)),
        run: async () => {
          if (fail-- > 0) throw new Error('API server said 500');
        },
      });
      loop.kick();
      const [e] = await until('two failures', async () => {
        const es = await events();
        return es[0]?.kind === 'error' && es[0].repeats === 2 ? es : undefined;
      });
      await loop.stop();
      assert.equal(e!.message, 'reconciler pool-status: reconcile pass failed: Error: API server said 500');
      assert.equal(e!.command, 'pool-status');
      await changedAfter(s, 0);
    } finally {
      s.close();
    }
  });
});
