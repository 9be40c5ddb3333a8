/**
 * The etcd store and the agent against a real etcd that is secured as production etcd clusters
 * are: serving clients over TLS and asking them for a certificate (`--client-cert-auth`), or with
 * authentication enabled and the agent's user allowed only the store's prefix. What works, and that
 * each wrong setting is refused with a message saying what to change — writing nothing.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { selfSignedTls } from '../../src/controller/certs.ts';
import { call } from '../../src/cli/client.ts';
import type { CniRequest } from '../../src/cni/protocol.ts';
import { openEtcdStore } from '../../src/store/etcd.ts';
import type { CredentialsEvent, EtcdStoreOptions } from '../../src/store/etcd.ts';
import { ETCD_PASSWORD_ENV, etcdConnection } from '../../src/store/etcd-options.ts';
import { StoreError, type Store, type WatchEvent } from '../../src/store/store.ts';
import { runAgentToExit as runAgent, startAgent, tempDir, type AgentProcess } from '../e2e/harness.ts';
import { startEtcdCluster, type EtcdCluster } from './cluster.ts';

const POOL = 'secure-pool';

/** `ipkeeper agent`'s store, socket and node flags. */
function agentArgs(url: string, socket: string, node: string): string[] {
  return ['--store', url, '--socket', socket, '--node', node];
}

/** Opens the store; the error's message when it cannot (failing the test when it can). */
async function refused(url: string, opts: EtcdStoreOptions): Promise<string> {
  let store: Store | undefined;
  try {
    store = await openEtcdStore(url, { timeoutMs: 1500, ...opts });
  } catch (e) {
    return (e as Error).message;
  }
  await store.close();
  assert.fail(`${url} opened with ${JSON.stringify(Object.keys(opts))}`);
}

/** Opens the store and makes a round trip through it: create, read, list, a watch event, delete. */
async function roundTrip(url: string, opts: EtcdStoreOptions, name: string): Promise<void> {
  const store = await openEtcdStore(url, opts);
  try {
    await trip(store, name);
  } finally {
    await store.close();
  }
}

async function trip(store: Store, name: string): Promise<void> {
  const seen: WatchEvent[] = [];
  const w = store.watch(`things/`, (ev) => seen.push(ev));
  const made = await store.create(`things/${name}`, { n: 1 });
  assert.ok(made.created);
  assert.deepEqual((await store.get<{ n: number }>(`things/${name}`))?.value, { n: 1 });
  assert.deepEqual(
    (await store.list('things/')).map((e) => e.key),
    [`things/${name}`],
  );
  for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(seen[0]?.key, `things/${name}`, 'the watch delivers the create');
  assert.ok((await store.delete(`things/${name}`, made.version)).ok);
  w.close();
}

/** An agent's ADD of pod `pod` from POOL: the address it gives. */
async function add(socket: string, pod: string): Promise<string> {
  const r = await call<{ ips?: { address: string }[] }>(socket, 'POST', '/v1/cni/add', {
    command: 'ADD',
    containerId: `c-${pod}`,
    ifName: 'eth0',
    network: 'secure-net',
    cniVersion: '1.1.0',
    args: { K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: pod, K8S_POD_UID: `uid-${pod}` },
    ipam: { type: 'ipkeeper', pools: { ipv4: [POOL] } },
  } satisfies CniRequest);
  return r.ips![0]!.address;
}

/** Applies POOL through the agent, then ADDs pod `pod` once the agent holds the pool: its address. */
async function applyPoolAndAdd(socket: string, pod: string): Promise<string | undefined> {
  await call(socket, 'POST', '/v1/apply', {
    objects: [
      {
        apiVersion: 'ipkeeper.io/v1alpha1',
        kind: 'IPPool',
        metadata: { name: POOL },
        spec: { subnet: '10.9.0.0/24', ips: ['10.9.0.10-10.9.0.20'] },
      },
    ],
  });
  let ip: string | undefined;
  for (let i = 0; i < 100 && ip === undefined; i++) {
    ip = await add(socket, pod).catch(() => undefined);
    if (ip === undefined) await new Promise((r) => setTimeout(r, 50));
  }
  return ip;
}

describe(
  'etcd over TLS with client certificates (real etcd, --client-cert-auth)',
  { timeout: 120_000 },
  () => {
    const material = selfSignedTls(['127.0.0.1'], Date.now(), {
      caName: 'ipkeeper-test-etcd-ca',
      clientAuth: true,
    });
    const stranger = selfSignedTls(['127.0.0.1'], Date.now(), { caName: 'another-ca', clientAuth: true });
    const tls = {
      ca: Buffer.from(material.ca),
      cert: Buffer.from(material.cert),
      key: Buffer.from(material.key),
    };
    let cluster: EtcdCluster;
    let dir: string;
    let url: string;
    const agents: AgentProcess[] = [];
    const file = (name: string, text: string): string => {
      const p = join(dir, name);
      writeFileSync(p, text, { mode: 0o600 });
      return p;
    };

    before(async () => {
      cluster = await startEtcdCluster(1, { tls: material });
      dir = tempDir('etcd-tls');
      url = `${cluster.url}/tls-${process.pid}/`;
    });
    after(async () => {
      for (const a of agents) await a.kill('SIGTERM');
      await cluster?.stopAll();
    });

    it('serves the store with the CA, the client certificate and its key', async () => {
      await roundTrip(url, { tls }, 'tls');
    });

    it('refuses to connect without a client certificate, with the wrong CA, or without TLS, saying what to change', async () => {
      assert.match(
        await refused(url, { tls: { ca: tls.ca } }),
        /bad certificate.*: etcd asks its clients for a certificate \(--client-cert-auth\): give --etcd-cert and --etcd-key/s,
      );
      assert.match(
        await refused(url, {
          tls: { ...tls, cert: Buffer.from(stranger.cert), key: Buffer.from(stranger.key) },
        }),
        /refused this client's certificate: give an --etcd-cert .* signed by a CA in the members' --trusted-ca-file/,
      );
      assert.match(
        await refused(url, { tls: { ...tls, ca: Buffer.from(stranger.ca) } }),
        /unable to verify.*: the members' certificate is not one --etcd-cacert vouches for/s,
      );
      assert.match(
        await refused(url, {}),
        /No connection established.*: if the members serve TLS .* give --etcd-cacert/s,
      );
      const store = await openEtcdStore(url, { tls });
      try {
        assert.deepEqual(await store.list('things/'), [], 'nothing was written');
      } finally {
        await store.close();
      }
    });

    it('an agent started with --etcd-cacert, --etcd-cert and --etcd-key allocates, and the claim is in etcd', async () => {
      const socket = join(dir, 'a.sock');
      const flags = [
        '--etcd-cacert',
        file('ca.crt', material.ca),
        '--etcd-cert',
        file('tls.crt', material.cert),
        '--etcd-key',
        file('tls.key', material.key),
      ];
      const agent = await startAgent({ store: url, socket, node: 'n1', extra: flags });
      agents.push(agent);
      const ip = await applyPoolAndAdd(socket, 'p1');
      assert.match(ip ?? '(none)', /^10\.9\.0\.(1\d|20)\/24$/);
      const store = await openEtcdStore(url, { tls });
      try {
        const claims = await store.list<{ spec: { ip: string; containerId: string } }>('ipclaims/');
        assert.deepEqual(
          claims.map((c) => [c.value.spec.ip, c.value.spec.containerId]),
          [[ip!.split('/')[0], 'c-p1']],
        );
      } finally {
        await store.close();
      }
      // grpc-js names the member 127.0.0.1 as TLS server name; Node's DEP0123 about it is dropped.
      assert.doesNotMatch(agent.log(), /Warning/);
    });

    it('an agent whose --etcd-cacert is not the members’ CA exits 1 saying so', async () => {
      const r = await runAgent(
        [
          ...agentArgs(url, join(dir, 'b.sock'), 'n2'),
          '--etcd-cacert',
          file('stranger.crt', stranger.ca),
          '--etcd-cert',
          join(dir, 'tls.crt'),
          '--etcd-key',
          join(dir, 'tls.key'),
        ],
        60_000,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /the members' certificate is not one --etcd-cacert vouches for/);
    });

    it('an agent whose --etcd-key is not its certificate’s exits 1 before connecting, naming the flag', async () => {
      const r = await runAgent(
        [
          ...agentArgs(url, join(dir, 'c.sock'), 'n3'),
          '--etcd-cacert',
          join(dir, 'ca.crt'),
          '--etcd-cert',
          join(dir, 'tls.crt'),
          '--etcd-key',
          file('stranger.key', stranger.key),
        ],
        60_000,
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.stderr,
        /--etcd-key .*stranger\.key: is not the private key of the certificate in .*tls\.crt/,
      );
    });
  },
);

/**
 * Turns authentication on, as `etcdctl user add root; user grant-role root root; role add ...; auth
 * enable` would: `user` gets a role with readwrite on `prefix` only. Through etcd's JSON gateway,
 * as no one (before auth is on).
 */
async function enableAuth(
  cluster: EtcdCluster,
  prefix: string,
  user: { username: string; password: string },
): Promise<void> {
  const gateway = async (path: string, body: unknown): Promise<void> => {
    const res = await fetch(`${cluster.endpoints[0]}${path}`, { method: 'POST', body: JSON.stringify(body) });
    assert.equal(res.status, 200, `${path}: ${await res.text()}`);
  };
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  await gateway('/v3/auth/user/add', { name: 'root', password: 'pw-of-root' });
  await gateway('/v3/auth/user/grant', { user: 'root', role: 'root' });
  await gateway('/v3/auth/role/add', { name: 'ipkeeper' });
  await gateway('/v3/auth/role/grant', {
    name: 'ipkeeper',
    perm: { permType: 'READWRITE', key: b64(prefix), range_end: b64(prefix.slice(0, -1) + '0') },
  });
  await gateway('/v3/auth/user/add', { name: user.username, password: user.password });
  await gateway('/v3/auth/user/grant', { user: user.username, role: 'ipkeeper' });
  await gateway('/v3/auth/enable', {});
}

describe(
  'etcd with authentication enabled (real etcd, a user allowed only the store’s prefix)',
  { timeout: 120_000 },
  () => {
    let cluster: EtcdCluster;
    let dir: string;
    const prefix = `/auth-${process.pid}/`;
    let url: string;
    const agents: AgentProcess[] = [];
    const user = { username: 'ipkeeper', password: 'pw-of-ipkeeper' };

    before(async () => {
      cluster = await startEtcdCluster(1);
      dir = tempDir('etcd-auth');
      url = `${cluster.url}${prefix}`;
      await enableAuth(cluster, prefix, user);
    });
    after(async () => {
      for (const a of agents) await a.kill('SIGTERM');
      await cluster?.stopAll();
    });

    it('serves the store as a user with readwrite on its prefix (reads, writes and watches)', async () => {
      await roundTrip(url, { auth: user }, 'auth');
    });

    it('refuses a wrong password, no user, and a prefix the user may not touch, saying what to change', async () => {
      assert.match(
        await refused(url, { auth: { ...user, password: 'wrong' } }),
        /authentication failed.*: etcd did not accept user "ipkeeper" with that password: check --etcd-user and the password \(IPKEEPER_ETCD_PASSWORD or --etcd-password-file\)/s,
      );
      assert.match(
        await refused(url, {}),
        /user name is empty.*: authentication is enabled on this etcd: give --etcd-user and its password/s,
      );
      assert.match(
        await refused(`${cluster.url}/elsewhere/`, { auth: user }),
        /permission denied.*: user "ipkeeper" may not read or write the store's keys: grant it a role with readwrite on the prefix \/elsewhere\//s,
      );
    });

    it('an agent started with --etcd-user and IPKEEPER_ETCD_PASSWORD allocates; with a wrong password it exits 1', async () => {
      const socket = join(dir, 'a.sock');
      const agent = await startAgent({
        store: url,
        socket,
        node: 'n1',
        extra: ['--etcd-user', user.username],
        env: { [ETCD_PASSWORD_ENV]: user.password },
      });
      agents.push(agent);
      const ip = await applyPoolAndAdd(socket, 'p1');
      assert.match(ip ?? '(none)', /^10\.9\.0\.(1\d|20)\/24$/);

      const pwFile = join(dir, 'password');
      writeFileSync(pwFile, 'not-the-password\n', { mode: 0o600 });
      const r = await runAgent(
        [
          ...agentArgs(url, join(dir, 'b.sock'), 'n2'),
          '--etcd-user',
          user.username,
          '--etcd-password-file',
          pwFile,
        ],
        60_000,
        { [ETCD_PASSWORD_ENV]: undefined },
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /etcd did not accept user "ipkeeper" with that password/);
    });

    it('an agent reads --etcd-password-file again: after the password changes in etcd and in the file, it allocates on', async () => {
      const pwFile = join(dir, 'password-renewed');
      writeFileSync(pwFile, `${user.password}\n`, { mode: 0o600 });
      const socket = join(dir, 'c.sock');
      const agent = await startAgent({
        store: url,
        socket,
        node: 'n3',
        extra: [
          '--etcd-user',
          user.username,
          '--etcd-password-file',
          pwFile,
          '--etcd-credentials-check',
          '200ms',
        ],
        env: { [ETCD_PASSWORD_ENV]: undefined },
      });
      agents.push(agent);
      assert.match((await applyPoolAndAdd(socket, 'p3')) ?? '(none)', /^10\.9\.0\./);
      const renewed = 'pw-of-ipkeeper-renewed';
      try {
        await changePassword(cluster, user.username, renewed);
        // A restarted member knows no token handed out before: the agent must sign in again, which
        // only the new password does.
        await cluster.stop(0);
        await cluster.start(0);
        writeFileSync(pwFile, `${renewed}\n`, { mode: 0o600 });
        let ip: string | undefined;
        for (const until = Date.now() + 20_000; ip === undefined && Date.now() < until;) {
          ip = await add(socket, 'p4').catch(() => undefined);
          if (ip === undefined) await new Promise((r) => setTimeout(r, 100));
        }
        assert.match(ip ?? '(none)', /^10\.9\.0\./, agent.log());
        assert.match(agent.log(), /"changed":\["password"\].*etcd credentials changed on disk/);
      } finally {
        await changePassword(cluster, user.username, user.password);
      }
    });
  },
);

/** Sets etcd user `name`'s password, as root (the cluster has auth enabled by `enableAuth`). */
async function changePassword(cluster: EtcdCluster, name: string, password: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      const auth = await fetch(`${cluster.endpoints[0]}/v3/auth/authenticate`, {
        method: 'POST',
        body: JSON.stringify({ name: 'root', password: 'pw-of-root' }),
      });
      const { token } = (await auth.json()) as { token: string };
      const res = await fetch(`${cluster.endpoints[0]}/v3/auth/user/changepw`, {
        method: 'POST',
        headers: { Authorization: token },
        body: JSON.stringify({ name, password }),
      });
      assert.equal(res.status, 200, await res.text());
      return;
    } catch (e) {
      // (A member just restarted may not serve yet.)
      if (i >= 50) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

describe(
  'etcd with authentication enabled and a short token lifetime (real etcd, --auth-token-ttl 1)',
  { timeout: 120_000 },
  () => {
    let cluster: EtcdCluster;
    const prefix = `/ttl-${process.pid}/`;
    const user = { username: 'ipkeeper', password: 'pw-of-ipkeeper' };

    before(async () => {
      cluster = await startEtcdCluster(1, { args: ['--auth-token-ttl', '1'] });
      await enableAuth(cluster, prefix, user);
    });
    after(async () => {
      await cluster?.stopAll();
    });

    it('keeps reading, writing and watching after its token expires (it asks for a new one)', async () => {
      const store = await openEtcdStore(`${cluster.url}${prefix}`, { auth: user, timeoutMs: 3000 });
      try {
        const seen: WatchEvent[] = [];
        const w = store.watch('things/', (ev) => seen.push(ev));
        await trip(store, 'before');
        // etcd forgets a simple token once it has not been used for --auth-token-ttl seconds.
        await new Promise((r) => setTimeout(r, 2500));
        assert.deepEqual(await store.list('things/'), [], 'a list with an expired token');
        const made = await store.create('things/after', { n: 2 });
        assert.ok(made.created, 'a create with an expired token');
        await new Promise((r) => setTimeout(r, 2500));
        assert.ok((await store.delete('things/after', made.version)).ok, 'a delete with an expired token');
        await new Promise((r) => setTimeout(r, 2500));
        const again = await store.create('things/again', { n: 3 });
        assert.deepEqual((await store.get('things/again'))?.value, { n: 3 }, 'a get with an expired token');
        assert.ok((await store.delete('things/again', again.created ? again.version : '0')).ok);
        for (let i = 0; i < 100 && seen.length < 6; i++) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(
          seen.map((e) => `${e.type} ${e.key}`),
          [
            'put things/before',
            'delete things/before',
            'put things/after',
            'delete things/after',
            'put things/again',
            'delete things/again',
          ],
          'the watch opened before the token expired delivers every change',
        );
        w.close();
      } finally {
        await store.close();
      }
    });

    it('a watch that reconnects with a token etcd no longer knows asks for a new one, and misses nothing', async () => {
      const url = `${cluster.url}${prefix}`;
      const watching = await openEtcdStore(url, { auth: user, timeoutMs: 3000 });
      const writing = await openEtcdStore(url, { auth: user, timeoutMs: 3000 });
      try {
        const seen: string[] = [];
        const w = watching.watch('events/', (ev) => seen.push(`${ev.type} ${ev.key}`));
        await writing.create('events/one', { n: 1 });
        for (let i = 0; i < 100 && seen.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
        // A restarted member knows no token it handed out before: the watch's stream breaks, and
        // the watching store makes no other call that could renew its token for it.
        await cluster.stop(0);
        await cluster.start(0);
        // (The harness's health check reads as no one, which auth refuses: wait by reading instead.)
        for (let i = 0; ; i++) {
          const up = await writing.get('events/none').then(
            () => true,
            () => false,
          );
          if (up) break;
          assert.ok(i < 20, 'the member answers again after its restart');
        }
        await writing.create('events/two', { n: 2 });
        for (let i = 0; i < 250 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(seen, ['put events/one', 'put events/two']);
        w.close();
      } finally {
        await watching.close();
        await writing.close();
      }
    });
  },
);

describe(
  'renewed TLS credentials (real etcd, --client-cert-auth, its CA and certificates replaced)',
  { timeout: 120_000 },
  () => {
    const first = selfSignedTls(['127.0.0.1'], Date.now(), {
      caName: 'ipkeeper-test-ca-one',
      clientAuth: true,
    });
    const second = selfSignedTls(['127.0.0.1'], Date.now(), {
      caName: 'ipkeeper-test-ca-two',
      clientAuth: true,
    });
    let cluster: EtcdCluster;
    let dir: string;
    let url: string;
    /** The members' TLS material now. */
    let current = first;

    before(async () => {
      cluster = await startEtcdCluster(1, { tls: first });
      dir = tempDir('etcd-tls-renew');
      url = `${cluster.url}/renew-${process.pid}/`;
    });
    after(async () => {
      await cluster?.stopAll();
    });

    type Material = { ca: string; cert: string; key: string };
    /** Credential files under `tag` in the test dir, and a writer of some or all of them. */
    const files = (tag: string) => {
      const flags = {
        cacert: join(dir, `${tag}-ca.pem`),
        cert: join(dir, `${tag}-cert.pem`),
        key: join(dir, `${tag}-key.pem`),
      };
      const put = (m: Material, which: ('ca' | 'cert' | 'key')[] = ['ca', 'cert', 'key']) => {
        for (const w of which) writeFileSync(flags[w === 'ca' ? 'cacert' : w], m[w], { mode: 0o600 });
      };
      return { flags, put };
    };
    /** A store that reads `flags` again every `checkMs`, telling `events` what it did. */
    const renewingStore = (
      flags: ReturnType<typeof files>['flags'],
      checkMs: number,
      events: CredentialsEvent[],
    ) =>
      openEtcdStore(url, {
        ...etcdConnection(flags),
        credentials: () => etcdConnection(flags),
        credentialsCheckMs: checkMs,
        onCredentials: (e) => events.push(e),
        timeoutMs: 2000,
      });

    /** The members restart with `m`'s CA and certificate. */
    const moveCluster = async (m: Material) => {
      cluster.setTls(m);
      current = m;
      await cluster.stop(0);
      await cluster.start(0);
      await cluster.waitHealthy();
    };
    /** Whether `store` creates `key` within `tries` tries, 100 ms apart (each try its deadline). */
    const createsWithin = async (store: Store, key: string, tries: number): Promise<boolean> => {
      for (let i = 0; i < tries; i++) {
        if (
          await store.create(key, { i }).then(
            (r) => r.created,
            () => false,
          )
        )
          return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };

    it('a store given `credentials` reads the files again and carries on with the new ones; a store without stays cut off', async () => {
      const { flags, put } = files('renew');
      put(first);
      const events: CredentialsEvent[] = [];
      const renewing = await renewingStore(flags, 100, events);
      const fixed = await openEtcdStore(url, { ...etcdConnection(flags), timeoutMs: 2000 });
      try {
        const seen: string[] = [];
        const w = renewing.watch('rot/', (ev) => seen.push(`${ev.type} ${ev.key}`));
        assert.ok((await renewing.create('rot/before', { n: 1 })).created);
        assert.ok((await fixed.create('rot/fixed-before', { n: 1 })).created);
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(events.length, 0, 'files unchanged: nothing reloaded');

        // The certificate is renewed before its key is written: that pair does not match, so the
        // check keeps the client it has and says why.
        put(second, ['cert']);
        for (let i = 0; i < 50 && events.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
        assert.equal(events[0]?.kind, 'unreadable');
        assert.match((events[0] as { message: string }).message, /--etcd-key/);
        assert.ok(
          (await renewing.create('rot/half-written', { n: 2 })).created,
          'the old client still serves',
        );

        // The cluster moves to a new CA: its members restart with certificates of it.
        await moveCluster(second);
        put(second, ['ca', 'key']);
        assert.ok(
          await createsWithin(renewing, 'rot/after', 100),
          'the renewing store writes again once the new files are in place',
        );
        const reloaded = events.filter((e) => e.kind === 'reloaded');
        assert.deepEqual(reloaded, [{ kind: 'reloaded', changed: ['ca', 'cert', 'key'] }]);
        assert.deepEqual((await renewing.get('rot/fixed-before'))?.value, { n: 1 });
        for (let i = 0; i < 250 && !seen.includes('put rot/after'); i++)
          await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(
          seen,
          ['put rot/before', 'put rot/fixed-before', 'put rot/half-written', 'put rot/after'],
          'the watch followed',
        );

        // Without `credentials` the store keeps the old CA and certificate, which the members no
        // longer accept.
        await assert.rejects(fixed.create('rot/fixed-after', { n: 4 }), StoreError);
        w.close();
      } finally {
        await renewing.close();
        await fixed.close();
      }
    });

    it('a call refused for its certificate reads the files at once, not at the next check', async () => {
      // Files and members move to a third CA; the next periodic check is ten minutes away.
      const third = selfSignedTls(['127.0.0.1'], Date.now(), {
        caName: 'ipkeeper-test-ca-three',
        clientAuth: true,
      });
      const { flags, put } = files('soon');
      put(current);
      const events: CredentialsEvent[] = [];
      const store = await renewingStore(flags, 600_000, events);
      try {
        assert.ok((await store.create('soon/before', { n: 1 })).created);
        put(third);
        await moveCluster(third);
        // At most 50 tries of a 2 s deadline: well inside the ten minutes to the next check.
        assert.ok(
          await createsWithin(store, 'soon/after', 50),
          `writes again after the refusal (${events.length} credential events)`,
        );
        assert.deepEqual(
          events.filter((e) => e.kind === 'reloaded'),
          [{ kind: 'reloaded', changed: ['ca', 'cert', 'key'] }],
        );
      } finally {
        await store.close();
      }
    });
  },
);
