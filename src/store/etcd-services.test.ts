/**
 * The etcd service definitions the agent bundle builds (etcd-services.ts, put in place by
 * scripts/build.ts) against proto-loader's `loadSync` of the same rpc.proto with etcd3's options:
 * every service and method, their paths, stream flags and names, and the bytes and objects their
 * codecs make.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  camelCase,
  etcdServiceDefinitions,
  protoJson,
  type MethodDefinition,
  type Protobuf,
  type ProtobufParser,
} from './etcd-services.ts';

// etcd3's own dependencies, as its module loads them.
const etcd3 = createRequire(import.meta.url).resolve('etcd3');
const fromEtcd3 = createRequire(etcd3);
const RPC_PROTO = join(dirname(etcd3), '../proto/rpc.proto');
const OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

type Loaded = Record<string, Record<string, MethodDefinition> | { format: string }>;
const protoLoader = fromEtcd3('@grpc/proto-loader') as { loadSync(f: string, o: object): Loaded };
const protobuf = fromEtcd3('protobufjs') as Protobuf & ProtobufParser;

function ours(): Record<string, Record<string, MethodDefinition>> {
  // The JSON as the build makes it (scripts/build.ts etcdProtoPrebuilt).
  const json = protoJson(protobuf, RPC_PROTO);
  // Through JSON text, as the bundle carries it.
  return etcdServiceDefinitions(protobuf, JSON.parse(JSON.stringify(json)), OPTIONS);
}

/** Requests and responses with the field kinds etcd's messages use: bytes, int64, enums, oneofs, nesting. */
const SAMPLES: Record<string, { request: unknown; response: unknown }> = {
  '/etcdserverpb.KV/Range': {
    request: {
      key: Buffer.from('/ipkeeper/ipclaims/a'),
      range_end: Buffer.from([0]),
      limit: '10000',
      revision: '42',
    },
    response: {
      header: {
        cluster_id: '18446744073709551615',
        member_id: '1',
        revision: '9007199254740993',
        raft_term: '3',
      },
      kvs: [
        {
          key: Buffer.from('k'),
          create_revision: '5',
          mod_revision: '7',
          version: '2',
          value: Buffer.from('{"a":1}'),
          lease: '0',
        },
      ],
      more: true,
      count: '1',
    },
  },
  '/etcdserverpb.KV/Txn': {
    request: {
      compare: [{ result: 'Equal', target: 'Create', key: Buffer.from('k'), create_revision: '0' }],
      success: [{ request_put: { key: Buffer.from('k'), value: Buffer.from('v'), lease: '7' } }],
      failure: [{ request_range: { key: Buffer.from('k') } }],
    },
    response: {
      header: { revision: '8' },
      succeeded: true,
      responses: [{ response_put: { header: { revision: '8' } } }],
    },
  },
  '/etcdserverpb.Watch/Watch': {
    request: {
      create_request: {
        key: Buffer.from('/p/'),
        range_end: Buffer.from('/p0'),
        start_revision: '9',
        prev_kv: false,
      },
    },
    response: {
      header: { revision: '10' },
      watch_id: '1',
      created: false,
      compact_revision: '0',
      events: [{ type: 'Delete', kv: { key: Buffer.from('k'), mod_revision: '10' } }],
    },
  },
  '/etcdserverpb.Lease/LeaseGrant': {
    request: { TTL: '30', ID: '0' },
    response: { ID: '7587', TTL: '30', error: '' },
  },
};

describe('etcd service definitions built from JSON (the agent bundle)', () => {
  const theirs = protoLoader.loadSync(RPC_PROTO, OPTIONS);
  const mine = ours();

  it('has every service proto-loader has, each with the same methods, paths, stream flags and names', () => {
    const services = Object.keys(theirs).filter((k) => !('format' in (theirs[k] as object)));
    assert.deepEqual(Object.keys(mine).sort(), services.sort());
    assert.ok(
      services.includes('etcdserverpb.KV') && services.includes('etcdserverpb.Watch'),
      services.join(' '),
    );
    let methods = 0;
    for (const name of services) {
      const t = theirs[name] as Record<string, MethodDefinition>;
      const m = mine[name] as Record<string, MethodDefinition>;
      assert.deepEqual(Object.keys(m).sort(), Object.keys(t).sort(), name);
      for (const [method, def] of Object.entries(t)) {
        const d = m[method] as MethodDefinition;
        assert.deepEqual(
          [d.path, d.requestStream, d.responseStream, d.originalName],
          [def.path, def.requestStream, def.responseStream, def.originalName],
          `${name}.${method}`,
        );
        methods++;
      }
    }
    assert.ok(methods >= 40, `only ${methods} methods`);
  });

  it('serializes and deserializes as proto-loader does, requests and responses', () => {
    const byPath = new Map<string, [MethodDefinition, MethodDefinition]>();
    for (const [name, t] of Object.entries(theirs)) {
      if ('format' in t) continue;
      for (const [method, def] of Object.entries(t as Record<string, MethodDefinition>)) {
        byPath.set(def.path, [
          def,
          (mine[name] as Record<string, MethodDefinition>)[method] as MethodDefinition,
        ]);
      }
    }
    for (const [path, sample] of Object.entries(SAMPLES)) {
      const pair = byPath.get(path);
      assert.ok(pair, `no method ${path}`);
      const [t, m] = pair;
      const reqBytes = t.requestSerialize(sample.request);
      assert.ok(reqBytes.length > 0, path);
      assert.deepEqual(
        Buffer.from(m.requestSerialize(sample.request)),
        Buffer.from(reqBytes),
        `${path} request bytes`,
      );
      assert.deepEqual(
        m.requestDeserialize(reqBytes),
        t.requestDeserialize(reqBytes),
        `${path} request object`,
      );
      const resBytes = t.responseSerialize(sample.response);
      assert.deepEqual(
        Buffer.from(m.responseSerialize(sample.response)),
        Buffer.from(resBytes),
        `${path} response bytes`,
      );
      const decoded = m.responseDeserialize(resBytes);
      assert.deepEqual(decoded, t.responseDeserialize(resBytes), `${path} response object`);
    }
    // etcd3's options reach the decoder: int64 as strings, enums by name, defaults filled in.
    const range = byPath.get('/etcdserverpb.KV/Range')![1];
    const res = range.responseDeserialize(
      range.responseSerialize(SAMPLES['/etcdserverpb.KV/Range']!.response),
    ) as {
      header: { revision: string; cluster_id: string };
      kvs: { lease: string; value: Buffer }[];
    };
    assert.equal(res.header.revision, '9007199254740993');
    assert.equal(res.header.cluster_id, '18446744073709551615');
    assert.equal(res.kvs[0]!.lease, '0');
    assert.equal(String(res.kvs[0]!.value), '{"a":1}');
    const watch = byPath.get('/etcdserverpb.Watch/Watch')![1];
    const ev = watch.responseDeserialize(
      watch.responseSerialize(SAMPLES['/etcdserverpb.Watch/Watch']!.response),
    ) as {
      events: { type: string }[];
      canceled: boolean;
    };
    assert.equal(ev.events[0]!.type, 'Delete');
    assert.equal(ev.canceled, false);
    const txn = byPath.get('/etcdserverpb.KV/Txn')![1];
    assert.throws(() => txn.requestSerialize([]), /expected object with TxnRequest structure, got array/);
  });

  it('names methods as proto-loader does (lodash camelCase)', () => {
    const camel = fromEtcd3(
      fromEtcd3.resolve('lodash.camelcase', { paths: [dirname(fromEtcd3.resolve('@grpc/proto-loader'))] }),
    ) as (s: string) => string;
    for (const name of [
      'Range',
      'DeleteRange',
      'HashKV',
      'LeaseTimeToLive',
      'MemberAdd',
      'UserGrantRole',
      'KVs',
      'AuthStatus',
      'ABCDef',
      'Status2x',
    ])
      assert.equal(camelCase(name), camel(name), name);
  });
});
