/**
 * @module api/convert
 * Reads manifests: multi-document YAML or JSON, `List` objects, and other projects' kinds converted
 * to ours so a migrating team can apply the YAML it already has verbatim:
 *
 * | theirs                                                   | ours         |
 * |----------------------------------------------------------|--------------|
 * | spiderpool.spidernet.io/v2beta1 SpiderIPPool             | IPPool       |
 * | spiderpool.spidernet.io/v2beta1 SpiderReservedIP         | ReservedIP   |
 * | spiderpool.spidernet.io/v2beta1 SpiderSubnet             | Subnet       |
 * | spiderpool.spidernet.io/v2beta1 SpiderMultusConfig       | NetworkConfig (convert-netconfig.ts) |
 * | kubeovn.io/v1 Vip                                        | VIP          |
 * | cilium.io/v2 CiliumNode (spec.ipam.pool, CRD-backed mode) | NodePool     |
 *
 * Conversion keeps every field we understand and refuses a field we do not (naming it), so nothing
 * a user wrote is silently dropped. Reading the text itself is `manifests.ts` (it loads the YAML
 * parser, which what only needs the converters does not).
 */
import { IpamError } from '../errors.ts';
import { API_VERSION, type AnyObject } from './kinds.ts';
import { convertSpiderMultusConfig } from './convert-netconfig.ts';

export const SPIDERPOOL_API = 'spiderpool.spidernet.io/v2beta1';

/** What a converter produced, with the original's identity for messages. */
export interface Converted {
  object: AnyObject;
  /** e.g. `SpiderIPPool test-ippool (spiderpool.spidernet.io/v2beta1)` when converted. */
  from?: string;
}

type Json = Record<string, unknown>;

function isObj(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function refuseUnknown(kind: string, spec: Json, known: string[], name: string): void {
  for (const k of Object.keys(spec)) {
    if (!known.includes(k)) {
      throw new IpamError(
        'INVALID_OBJECT',
        `${kind} "${name}": spec.${k} is not supported by ipkeeper's converter; remove it or write an ${API_VERSION} object`,
        { field: `spec.${k}` },
      );
    }
  }
}

function meta(m: unknown): Json {
  // Keep identity and labels; drop server-set fields of the other project's object.
  if (!isObj(m)) return {};
  const out: Json = {};
  for (const k of ['name', 'namespace', 'labels', 'annotations']) if (m[k] !== undefined) out[k] = m[k];
  return out;
}

function convertSpiderIPPool(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m = meta(o.metadata);
  refuseUnknown(
    'SpiderIPPool',
    spec,
    [
      'ipVersion',
      'subnet',
      'ips',
      'excludeIPs',
      'gateway',
      'vlan',
      'routes',
      'default',
      'disable',
      'nodeName',
      'namespaceName',
      'multusName',
      'nodeAffinity',
      'namespaceAffinity',
      'podAffinity',
    ],
    String(m.name),
  );
  const { ipVersion: _v, ...rest } = spec;
  return { apiVersion: API_VERSION, kind: 'IPPool', metadata: m as AnyObject['metadata'], spec: rest };
}

function convertSpiderReservedIP(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m = meta(o.metadata);
  refuseUnknown('SpiderReservedIP', spec, ['ipVersion', 'ips'], String(m.name));
  return {
    apiVersion: API_VERSION,
    kind: 'ReservedIP',
    metadata: m as AnyObject['metadata'],
    spec: { ips: spec.ips },
  };
}

function convertSpiderSubnet(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m = meta(o.metadata);
  refuseUnknown(
    'SpiderSubnet',
    spec,
    ['ipVersion', 'subnet', 'ips', 'excludeIPs', 'gateway', 'vlan', 'routes'],
    String(m.name),
  );
  const { ipVersion: _v, ...rest } = spec;
  return { apiVersion: API_VERSION, kind: 'Subnet', metadata: m as AnyObject['metadata'], spec: rest };
}

/** `apiVersion/kind` of each foreign kind we read -> its converter (docs/REFERENCE.md lists them). */
export const KUBEOVN_API = 'kubeovn.io/v1';
export const CILIUM_API = 'cilium.io/v2';

/** Kube-OVN's `Vip`: its subnet is the pool the address comes from; `macAddress` is our `mac`. */
function convertKubeOvnVip(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m = meta(o.metadata);
  refuseUnknown(
    'Vip',
    spec,
    ['subnet', 'type', 'v4ip', 'v6ip', 'macAddress', 'namespace', 'selector'],
    String(m.name),
  );
  const out: Json = {};
  if (spec.subnet !== undefined) out.pool = spec.subnet;
  // Kube-OVN writes empty strings for "not set" (and type "" is the default, an IPAM placeholder);
  // ours leaves the field out, which is also what an API server that refuses "" in a CR can store.
  for (const [from, to] of [
    ['type', 'type'],
    ['v4ip', 'v4ip'],
    ['v6ip', 'v6ip'],
    ['macAddress', 'mac'],
    ['namespace', 'namespace'],
    ['selector', 'selector'],
  ] as const) {
    const v = spec[from];
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v) && v.length === 0) continue;
    out[to] = v;
  }
  return { apiVersion: API_VERSION, kind: 'VIP', metadata: m as AnyObject['metadata'], spec: out };
}

/**
 * Cilium's `CiliumNode` in CRD-backed IPAM mode: `spec.ipam.pool` (and `ipv6-pool`) become the node
 * pool. The node's datapath facts Cilium keeps beside it (addresses, health, encryption, ...) are not
 * IPAM and are left behind; another IPAM mode's fields (eni, azure, podCIDRs, ...) are refused.
 * `status` is dropped: the agent reports `status.used` itself.
 */
function convertCiliumNode(o: Json): AnyObject {
  const spec = isObj(o.spec) ? o.spec : {};
  const m = meta(o.metadata);
  const datapath = ['addresses', 'health', 'encryption', 'nodeidentity', 'instance-id', 'bootid', 'ingress'];
  refuseUnknown('CiliumNode', spec, ['ipam', ...datapath], String(m.name));
  const ipam = isObj(spec.ipam) ? spec.ipam : {};
  for (const k of Object.keys(ipam)) {
    if (k !== 'pool' && k !== 'ipv6-pool') {
      throw new IpamError(
        'INVALID_OBJECT',
        `CiliumNode "${String(m.name)}": spec.ipam.${k} belongs to another Cilium IPAM mode; ipkeeper's NodePool is CRD-backed mode (spec.ipam.pool): remove it`,
        { field: `spec.ipam.${k}` },
      );
    }
  }
  const pool: Json = {};
  for (const part of [ipam.pool, ipam['ipv6-pool']]) {
    if (!isObj(part)) continue;
    for (const [ip, v] of Object.entries(part)) {
      // An entry's owner is left blank in spec (Cilium's own rule); keep only its resource.
      const resource =
        isObj(v) && typeof v.resource === 'string' && v.resource !== '' ? { resource: v.resource } : {};
      pool[ip] = resource;
    }
  }
  return { apiVersion: API_VERSION, kind: 'NodePool', metadata: m as AnyObject['metadata'], spec: { pool } };
}

export const CONVERTERS: Record<string, (o: Json) => AnyObject> = {
  [`${KUBEOVN_API}/Vip`]: convertKubeOvnVip,
  [`${CILIUM_API}/CiliumNode`]: convertCiliumNode,
  [`${SPIDERPOOL_API}/SpiderIPPool`]: convertSpiderIPPool,
  [`${SPIDERPOOL_API}/SpiderReservedIP`]: convertSpiderReservedIP,
  [`${SPIDERPOOL_API}/SpiderSubnet`]: convertSpiderSubnet,
  [`${SPIDERPOOL_API}/SpiderMultusConfig`]: convertSpiderMultusConfig,
};

/**
 * Converts one parsed document to our kinds (ours pass through unchanged).
 * @throws IpamError INVALID_OBJECT for an unknown apiVersion/kind or an unsupported field.
 */
export function convertObject(doc: unknown): Converted {
  if (!isObj(doc)) {
    throw new IpamError(
      'INVALID_OBJECT',
      `a manifest document must be a mapping, got ${JSON.stringify(doc)}`,
    );
  }
  const apiVersion = String(doc.apiVersion ?? '');
  const kind = String(doc.kind ?? '');
  if (apiVersion === API_VERSION) return { object: doc as unknown as AnyObject };
  const conv = CONVERTERS[`${apiVersion}/${kind}`];
  if (!conv) {
    const accepted = [API_VERSION, ...Object.keys(CONVERTERS)].join(', ');
    throw new IpamError(
      'INVALID_OBJECT',
      `apiVersion "${apiVersion}" kind "${kind}" is not something ipkeeper reads; accepted: ${accepted}`,
      { field: 'apiVersion', apiVersion, kind },
    );
  }
  const name = isObj(doc.metadata) ? String(doc.metadata.name) : '?';
  return { object: conv(doc), from: `${kind} ${name} (${apiVersion})` };
}
