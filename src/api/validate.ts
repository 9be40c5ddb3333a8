/**
 * @module api/validate
 * Validation of objects with field paths: first the schema (from `kinds.ts`), then the semantic
 * rules a schema cannot express (addresses parse, lie in the subnet, one family). Every problem is
 * reported as `spec.ips[1]: "10.7.0.1" is outside subnet 10.6.0.0/16; ...` — the field, the value,
 * the fix — and all problems of an object are reported together.
 */
import Schema from 'typebox/schema';
import { IpamError } from '../errors.ts';
import { NetError, parseAddr } from '../net/addr.ts';
import { parsePrefix, prefixContains, type Prefix } from '../net/prefix.ts';
import { parseRange } from '../net/range.ts';
import {
  KINDS,
  API_VERSION,
  type AnyObject,
  type IPPool,
  type NetworkConfig,
  type NodePool,
  type ReservedIP,
  type VIP,
} from './kinds.ts';
import { schemaOf } from './schemas.ts';
import { nodePoolSemantics, vipSemantics } from './validate-vip.ts';
import { networkConfigSemantics } from './validate-netconfig.ts';

export interface FieldError {
  field: string;
  value?: unknown;
  message: string;
}

const compiled = new Map<string, ReturnType<typeof Schema.Compile>>();

/** `/spec/ips/0` -> `spec.ips[0]` */
export function fieldPath(pointer: string): string {
  let out = '';
  for (const seg of pointer.split('/').slice(1)) {
    const s = seg.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(s) ? `[${s}]` : out === '' ? s : `.${s}`;
  }
  return out === '' ? '(object)' : out;
}

function valueAt(obj: unknown, pointer: string): unknown {
  let cur: unknown = obj;
  for (const seg of pointer.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return cur;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? 'undefined' : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Structural errors of `obj` against its kind's schema. */
function schemaErrors(kind: string, obj: unknown): FieldError[] {
  const info = KINDS[kind];
  if (!info) return [{ field: 'kind', value: kind, message: 'unknown kind' }];
  const schema = schemaOf(info);
  let validator = compiled.get(kind);
  if (!validator) {
    validator = Schema.Compile(schema);
    compiled.set(kind, validator);
  }
  if (validator.Check(obj)) return [];
  const out: FieldError[] = [];
  const seen = new Set<string>();
  for (const e of Schema.Errors(schema, obj)[1]) {
    // `additionalProperties: false` is reported twice by TypeBox (once per extra key); keep the
    // per-key one, which names the field.
    if (e.keyword === 'boolean') {
      const f = fieldPath(e.instancePath);
      out.push({ field: f, message: `unknown field "${f}"; remove it (see \`ipkeeper explain ${kind}\`)` });
      seen.add(e.instancePath);
      continue;
    }
    if (e.keyword === 'additionalProperties') continue;
    const value = valueAt(obj, e.instancePath);
    let message = e.message;
    if (e.keyword === 'required') {
      const missing = (e.params as { requiredProperties?: string[] }).requiredProperties ?? [];
      for (const m of missing) {
        const f = fieldPath(`${e.instancePath}/${m}`);
        out.push({ field: f, message: `${f} is required` });
      }
      continue;
    }
    if (e.keyword === 'pattern' && e.instancePath.endsWith('/name')) {
      message = 'must be lower-case letters, digits, "-" and "." (a DNS-1123 name), e.g. "pool-a"';
    } else if (e.keyword === 'pattern' && e.instancePath.endsWith('/ipRetention')) {
      message = 'is not a retention; use 0, a duration such as 90s, 30m, 24h, 1h30m or 7d, or forever';
    } else if (e.keyword === 'const' && e.instancePath === '/apiVersion') {
      message = `must be "${API_VERSION}"`;
    }
    const key = `${e.instancePath}|${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ field: fieldPath(e.instancePath), value, message: `${show(value)} ${message}` });
  }
  return out;
}

function tryNet<T>(errors: FieldError[], field: string, value: unknown, f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof NetError) {
      errors.push({ field, value, message: e.message });
      return undefined;
    }
    throw e;
  }
}

function checkAddressList(
  errors: FieldError[],
  field: string,
  items: string[] | undefined,
  subnet: Prefix | undefined,
): void {
  items?.forEach((item, i) => {
    const f = `${field}[${i}]`;
    const r = tryNet(errors, f, item, () => parseRange(item));
    if (!r || !subnet) return;
    if (r.family !== subnet.family) {
      errors.push({
        field: f,
        value: item,
        message: `"${item}" is IPv${r.family} but the subnet is IPv${subnet.family}; one pool holds one family (make a second pool for the other)`,
      });
      return;
    }
    const inside = (v: bigint): boolean => prefixContains(subnet, { family: r.family, value: v });
    if (!inside(r.first) || !inside(r.last)) {
      errors.push({
        field: f,
        value: item,
        message: `"${item}" is outside the subnet; use addresses inside spec.subnet or widen it`,
      });
    }
  });
}

function poolSemantics(pool: IPPool): FieldError[] {
  const errors: FieldError[] = [];
  const spec = pool.spec;
  const subnet = tryNet(errors, 'spec.subnet', spec.subnet, () => parsePrefix(spec.subnet));
  checkAddressList(errors, 'spec.ips', spec.ips, subnet);
  checkAddressList(errors, 'spec.excludeIPs', spec.excludeIPs, subnet);
  if (spec.gateway !== undefined) {
    const gw = tryNet(errors, 'spec.gateway', spec.gateway, () => parseAddr(spec.gateway as string));
    if (gw && subnet && (gw.family !== subnet.family || !prefixContains(subnet, gw))) {
      errors.push({
        field: 'spec.gateway',
        value: spec.gateway,
        message: `"${spec.gateway}" is not inside subnet ${spec.subnet}; the gateway must be on the pool's subnet`,
      });
    }
  }
  spec.routes?.forEach((r, i) => {
    const dst = tryNet(errors, `spec.routes[${i}].dst`, r.dst, () => parsePrefix(r.dst));
    if (r.gw !== undefined) {
      const gw = tryNet(errors, `spec.routes[${i}].gw`, r.gw, () => parseAddr(r.gw as string));
      if (gw && dst && gw.family !== dst.family) {
        errors.push({
          field: `spec.routes[${i}].gw`,
          value: r.gw,
          message: `"${r.gw}" is IPv${gw.family} but dst ${r.dst} is IPv${dst.family}`,
        });
      }
    }
    if (dst && subnet && dst.family !== subnet.family) {
      errors.push({
        field: `spec.routes[${i}].dst`,
        value: r.dst,
        message: `"${r.dst}" is IPv${dst.family} but the pool is IPv${subnet.family}`,
      });
    }
  });
  return errors;
}

function reservedSemantics(r: ReservedIP): FieldError[] {
  const errors: FieldError[] = [];
  r.spec.ips.forEach((item, i) => tryNet(errors, `spec.ips[${i}]`, item, () => parseRange(item)));
  return errors;
}

/**
 * All problems of `obj`, structural and semantic; empty when it is valid.
 */
export function objectErrors(obj: unknown): FieldError[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    return [{ field: '(object)', value: obj, message: 'an object must be a YAML/JSON mapping' }];
  }
  const o = obj as Partial<AnyObject>;
  if (typeof o.kind !== 'string' || !KINDS[o.kind]) {
    return [
      {
        field: 'kind',
        value: o.kind,
        message: `${show(o.kind)} is not a kind of ${API_VERSION}; use one of ${Object.keys(KINDS).join(', ')}`,
      },
    ];
  }
  const errors = schemaErrors(o.kind, obj);
  if (errors.length > 0) return errors;
  if (o.kind === 'IPPool') return poolSemantics(obj as IPPool);
  if (o.kind === 'ReservedIP') return reservedSemantics(obj as ReservedIP);
  if (o.kind === 'VIP') return vipSemantics(obj as VIP);
  if (o.kind === 'NodePool') return nodePoolSemantics(obj as NodePool);
  if (o.kind === 'NetworkConfig') return networkConfigSemantics(obj as NetworkConfig);
  // A Subnet's fields are a pool's (subnet, ips, excludeIPs, gateway, routes): the same rules.
  if (o.kind === 'Subnet') return poolSemantics(obj as unknown as IPPool);
  return [];
}

/**
 * Validates an object.
 * @throws IpamError INVALID_OBJECT listing every field error, e.g.
 *   `IPPool "a" is invalid: spec.vlan: 5000 must be <= 4094`
 */
export function validateObject<T extends AnyObject>(obj: unknown): T {
  const errors = objectErrors(obj);
  if (errors.length > 0) {
    const o = (obj ?? {}) as Partial<AnyObject>;
    const what = `${typeof o.kind === 'string' ? o.kind : 'object'} "${o.metadata?.name ?? '?'}"`;
    throw new IpamError(
      'INVALID_OBJECT',
      `${what} is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join('; ')}`,
      { errors },
    );
  }
  return obj as T;
}
