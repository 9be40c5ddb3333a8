/**
 * @module store/etcd-services
 * etcd's gRPC service definitions for grpc-js's `loadPackageDefinition`, built from protobufjs JSON
 * of etcd3's rpc.proto, as the agent bundle's etcd3 uses them (scripts/build.ts `etcdProtoPrebuilt`
 * puts this in place of etcd3's `loadSync` of the .proto text, with the JSON made at build time).
 *
 * proto-loader's `loadSync` also gives every message a definition with its reflection descriptors,
 * which a client never reads; that was most of the 45–55 ms etcd3 took to load. The methods built
 * here are proto-loader's: the same path, stream flags and method name, and serializers made the
 * same way (`fromObject` + `encode` out, `decode` + `toObject` with the caller's options in);
 * etcd-services.test.ts compares the two on every method of etcd's services.
 */

/** The part of a protobufjs message type the serializers use. */
interface MessageType {
  name: string;
  fromObject(o: unknown): unknown;
  encode(m: unknown): { finish(): Uint8Array };
  decode(b: Uint8Array): unknown;
  toObject(m: unknown, options: object): unknown;
}

interface Method {
  name: string;
  requestStream?: boolean;
  responseStream?: boolean;
  resolvedRequestType: MessageType | null;
  resolvedResponseType: MessageType | null;
}

interface Namespace {
  name: string;
  nestedArray?: Namespace[];
  methodsArray?: Method[];
}

/** The protobufjs module (passed in: it is etcd3's dependency, not ours). */
export interface Protobuf {
  Root: { fromJSON(json: unknown): Namespace & { resolveAll(): unknown } };
  Service: abstract new (...args: never[]) => unknown;
}

export interface MethodDefinition {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: unknown) => Buffer;
  requestDeserialize: (bytes: Buffer) => unknown;
  responseSerialize: (value: unknown) => Buffer;
  responseDeserialize: (bytes: Buffer) => unknown;
  originalName: string;
  options: Record<string, never>;
}

/** The part of protobufjs that parses .proto text (the build's). */
export interface ProtobufParser {
  Root: new () => { loadSync(file: string, o: object): { resolveAll(): { toJSON(): unknown } } };
}

/**
 * protobufjs JSON of `file` and the files it imports, parsed as proto-loader parses them for etcd3
 * (one root, field names kept as written): what the bundle carries in place of the .proto text.
 */
export function protoJson(protobuf: ProtobufParser, file: string): unknown {
  return new protobuf.Root().loadSync(file, { keepCase: true }).resolveAll().toJSON();
}

/**
 * A gRPC method name as proto-loader's `originalName` spells it (lodash's camelCase): words split
 * at a lower-to-upper change and before the last capital of a run of capitals followed by a lower
 * case letter, then joined in camel case — "DeleteRange" → "deleteRange", "HashKV" → "hashKv",
 * "LeaseTimeToLive" → "leaseTimeToLive".
 */
export function camelCase(name: string): string {
  const words = name.match(/[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+/g) ?? [];
  return words
    .map((w, i) => (i === 0 ? w.toLowerCase() : w.charAt(0).toUpperCase() + w.slice(1).toLowerCase()))
    .join('');
}

function serializer(cls: MessageType): (value: unknown) => Buffer {
  return (value) => {
    if (Array.isArray(value)) {
      throw new Error(
        `Failed to serialize message: expected object with ${cls.name} structure, got array instead`,
      );
    }
    return cls.encode(cls.fromObject(value)).finish() as Buffer;
  };
}

function deserializer(cls: MessageType, options: object): (bytes: Buffer) => unknown {
  return (bytes) => cls.toObject(cls.decode(bytes), options);
}

/**
 * Every service under the root of `json` (protobufjs `Root#toJSON` of the loaded .proto files), by
 * its full name ("etcdserverpb.KV"), each method as proto-loader defines it; `options` are
 * proto-loader's (etcd3 passes keepCase, longs: String, enums: String, defaults, oneofs).
 * @throws Error when a method's request or response type does not resolve.
 */
export function etcdServiceDefinitions(
  protobuf: Protobuf,
  json: unknown,
  options: object,
): Record<string, Record<string, MethodDefinition>> {
  const root = protobuf.Root.fromJSON(json);
  root.resolveAll();
  const out: Record<string, Record<string, MethodDefinition>> = {};
  const walk = (ns: Namespace, prefix: string): void => {
    for (const obj of ns.nestedArray ?? []) {
      const name = prefix ? `${prefix}.${obj.name}` : obj.name;
      if (obj instanceof protobuf.Service) {
        const service: Record<string, MethodDefinition> = {};
        for (const m of obj.methodsArray ?? []) {
          const req = m.resolvedRequestType;
          const res = m.resolvedResponseType;
          if (!req || !res)
            throw new Error(`${name}.${m.name}: its request or response type did not resolve`);
          service[m.name] = {
            path: `/${name}/${m.name}`,
            requestStream: !!m.requestStream,
            responseStream: !!m.responseStream,
            requestSerialize: serializer(req),
            requestDeserialize: deserializer(req, options),
            responseSerialize: serializer(res),
            responseDeserialize: deserializer(res, options),
            originalName: camelCase(m.name),
            options: {},
          };
        }
        out[name] = service;
      } else if (obj.nestedArray) walk(obj, name);
    }
  };
  walk(root, '');
  return out;
}
