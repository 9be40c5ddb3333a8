import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { postJson, readAnswer } from './client.ts';
import { IpamError } from '../errors.ts';

const SOCK = '/run/test/agent.sock';

describe('readAnswer', () => {
  it('returns the JSON of a 200', () => {
    assert.deepEqual(readAnswer(200, '{"released":3}', SOCK, '/v1/cni/gc'), { released: 3 });
  });
  it('reads an empty 200 as {}', () => {
    assert.deepEqual(readAnswer(200, '', SOCK, '/v1/cni/del'), {});
  });

  const cases: { name: string; status: number; body: string; code: string; cni: number; says: RegExp }[] = [
    {
      name: 'ErrorBody keeps its code and message',
      status: 409,
      body: JSON.stringify({
        code: 'POOL_EXHAUSTED',
        message: 'no free address in pool `test-ippool`',
        details: { pool: 'test-ippool' },
      }),
      code: 'POOL_EXHAUSTED',
      cni: 100,
      says: /^no free address in pool `test-ippool`$/,
    },
    {
      name: 'ErrorBody NOT_READY',
      status: 503,
      body: JSON.stringify({ code: 'NOT_READY', message: 'store not synced' }),
      code: 'NOT_READY',
      cni: 50,
      says: /store not synced/,
    },
    {
      name: 'ErrorBody BUSY',
      status: 429,
      body: JSON.stringify({ code: 'BUSY', message: 'over the limit' }),
      code: 'BUSY',
      cni: 11,
      says: /over the limit/,
    },
    {
      name: '429 without a body',
      status: 429,
      body: '',
      code: 'BUSY',
      cni: 11,
      says: /agent\.sock is over its request limit \(HTTP 429\)/,
    },
    {
      name: '429 with text',
      status: 429,
      body: 'Too Many Requests',
      code: 'BUSY',
      cni: 11,
      says: /HTTP 429/,
    },
    {
      name: '503 with text',
      status: 503,
      body: 'unavailable',
      code: 'AGENT_UNAVAILABLE',
      cni: 11,
      says: /HTTP 503/,
    },
    {
      name: 'an error code this plugin does not know',
      status: 400,
      body: JSON.stringify({ code: 'NEW_THING', message: 'x' }),
      code: 'INTERNAL',
      cni: 110,
      says: /HTTP 400 and a body that is not an error/,
    },
    {
      name: '500 with HTML',
      status: 500,
      body: '<html>oops</html>',
      code: 'INTERNAL',
      cni: 110,
      says: /HTTP 500 and a body that is not JSON: "<html>oops<\/html>"; check that the agent and the plugin are the same ipkeeper version/,
    },
    { name: '200 that is not JSON', status: 200, body: 'ok', code: 'INTERNAL', cni: 110, says: /HTTP 200/ },
    {
      name: '404 (old agent without the endpoint)',
      status: 404,
      body: '{"message":"Route POST:/v1/cni/gc not found"}',
      code: 'INTERNAL',
      cni: 110,
      says: /POST \/v1\/cni\/gc with HTTP 404/,
    },
  ];
  for (const c of cases) {
    it(`maps ${c.name} to ${c.code} (CNI ${c.cni})`, () => {
      assert.throws(
        () => readAnswer(c.status, c.body, SOCK, '/v1/cni/gc'),
        (e: unknown) => {
          assert.ok(e instanceof IpamError);
          assert.equal(e.code, c.code);
          assert.equal(e.cniCode, c.cni);
          assert.match(e.message, c.says);
          return true;
        },
      );
    });
  }

  it('quotes at most 200 characters of a body', () => {
    assert.throws(
      () => readAnswer(500, 'x'.repeat(5000), SOCK, '/v1/cni/add'),
      (e: unknown) => e instanceof IpamError && e.message.length < 600,
    );
  });
});

describe('postJson without an agent', () => {
  let dir: string;
  let silent: Server;
  const held: Socket[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ipkeeper-cni-client-'));
    writeFileSync(join(dir, 'regular-file'), '');
    // Accepts and never answers: stands for an agent that hangs. Not an agent: it speaks no HTTP.
    silent = createServer((s) => held.push(s));
    await new Promise<void>((resolve) => silent.listen(join(dir, 'silent.sock'), resolve));
  });
  after(() => {
    for (const s of held) s.destroy();
    silent.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const unavailable = (socket: string, says: RegExp) => (e: unknown) => {
    assert.ok(e instanceof IpamError, String(e));
    assert.equal(e.code, 'AGENT_UNAVAILABLE');
    assert.equal(e.cniCode, 11);
    assert.ok(e.message.includes(socket), e.message);
    assert.match(e.message, /is the ipkeeper agent running\? start it with `ipkeeper agent`/);
    assert.match(e.message, says);
    return true;
  };

  it('a socket that does not exist is AGENT_UNAVAILABLE naming it', async () => {
    const socket = join(dir, 'missing.sock');
    await assert.rejects(postJson('/v1/cni/add', {}, { socket }), unavailable(socket, /does not exist/));
  });

  it('a path nobody listens on is AGENT_UNAVAILABLE naming it', async () => {
    const socket = join(dir, 'regular-file');
    await assert.rejects(postJson('/v1/cni/del', {}, { socket }), unavailable(socket, /nothing listens/));
  });

  it('an agent that does not answer in time is AGENT_UNAVAILABLE naming the timeout', async () => {
    const socket = join(dir, 'silent.sock');
    await assert.rejects(
      postJson('/v1/cni/add', {}, { socket, timeoutMs: 50 }),
      unavailable(socket, /within 50 ms/),
    );
  });
});
