/**
 * @module api/crd
 * CustomResourceDefinitions (`apiextensions.k8s.io/v1`) generated from the same TypeBox schemas that
 * type and validate the objects, so the API server and ipkeeper can never disagree on a field.
 * `ipkeeper crds` prints them; `deploy/crds/` holds the committed copy (a test keeps it in step).
 *
 * Kubernetes wants *structural* schemas, so the JSON Schema is rewritten on the way: `const` and
 * unions of literals become `enum`, `patternProperties` maps become `additionalProperties`,
 * `additionalProperties: false` is dropped (the API server prunes unknown fields), and `metadata`
 * is left to the API server.
 */
import { stringify } from 'yaml';
import type { TSchema } from 'typebox';
import { GROUP, KINDS, VERSION, type KindInfo } from './kinds.ts';
import { schemaOf } from './schemas.ts';

type Json = Record<string, unknown>;

const KEEP = [
  'type',
  'description',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'default',
  'enum',
  'format',
  'minItems',
  'maxItems',
];

/** Rewrites a JSON Schema into a Kubernetes structural schema. */
export function toStructural(schema: unknown): Json {
  const s = schema as Json;
  const out: Json = {};
  for (const k of KEEP) if (s[k] !== undefined) out[k] = s[k];
  if (s.const !== undefined) {
    out.enum = [s.const];
    if (out.type === undefined) out.type = typeof s.const === 'number' ? 'number' : 'string';
  }
  if (Array.isArray(s.anyOf)) {
    const alts = s.anyOf as Json[];
    if (alts.every((a) => a.const !== undefined)) {
      out.type = alts[0]?.type ?? (typeof alts[0]?.const === 'number' ? 'number' : 'string');
      out.enum = alts.map((a) => a.const);
    } else {
      out['x-kubernetes-preserve-unknown-fields'] = true;
    }
  }
  if (s.properties) {
    const props: Json = {};
    for (const [k, v] of Object.entries(s.properties as Json)) props[k] = toStructural(v);
    out.properties = props;
    if (Array.isArray(s.required) && s.required.length > 0) out.required = s.required;
  }
  if (s.patternProperties) {
    const first = Object.values(s.patternProperties as Json)[0];
    out.additionalProperties = toStructural(first);
  }
  if (s.additionalProperties && typeof s.additionalProperties === 'object') {
    out.additionalProperties = toStructural(s.additionalProperties);
  }
  if (s.items) out.items = toStructural(s.items);
  return out;
}

interface Column {
  name: string;
  type: string;
  jsonPath: string;
  priority?: number;
  description?: string;
}

const COLUMNS: Record<string, Column[]> = {
  IPPool: [
    { name: 'Subnet', type: 'string', jsonPath: '.spec.subnet' },
    { name: 'Used', type: 'integer', jsonPath: '.status.used' },
    { name: 'Total', type: 'integer', jsonPath: '.status.total' },
    { name: 'Default', type: 'boolean', jsonPath: '.spec.default' },
    { name: 'Disabled', type: 'boolean', jsonPath: '.spec.disable' },
    { name: 'Free', type: 'integer', jsonPath: '.status.free', priority: 1 },
    { name: 'Reserved', type: 'integer', jsonPath: '.status.reserved', priority: 1 },
    { name: 'VLAN', type: 'integer', jsonPath: '.spec.vlan', priority: 1 },
  ],
  ReservedIP: [{ name: 'IPs', type: 'string', jsonPath: '.spec.ips' }],
  NetworkConfig: [
    { name: 'Type', type: 'string', jsonPath: '.spec.type' },
    { name: 'Master', type: 'string', jsonPath: '.spec.master' },
    { name: 'VLAN', type: 'integer', jsonPath: '.spec.vlan' },
    { name: 'IPv4 Pools', type: 'string', jsonPath: '.spec.ippools.ipv4', priority: 1 },
    { name: 'IPv6 Pools', type: 'string', jsonPath: '.spec.ippools.ipv6', priority: 1 },
  ],
  IPClaim: [
    { name: 'IP', type: 'string', jsonPath: '.spec.ip' },
    { name: 'Pool', type: 'string', jsonPath: '.spec.pool' },
    { name: 'Owner', type: 'string', jsonPath: '.spec.owner.name' },
    { name: 'Node', type: 'string', jsonPath: '.spec.node' },
    { name: 'Interface', type: 'string', jsonPath: '.spec.ifName', priority: 1 },
  ],
  // As `kubectl get vip` shows Kube-OVN's Vip (seed 002).
  VIP: [
    { name: 'V4IP', type: 'string', jsonPath: '.status.v4ip' },
    { name: 'MAC', type: 'string', jsonPath: '.status.mac' },
    { name: 'V6IP', type: 'string', jsonPath: '.status.v6ip' },
    { name: 'Pool', type: 'string', jsonPath: '.spec.pool' },
    { name: 'Ready', type: 'boolean', jsonPath: '.status.ready' },
    { name: 'Subnet', type: 'string', jsonPath: '.spec.subnet', priority: 1 },
    { name: 'Type', type: 'string', jsonPath: '.spec.type', priority: 1 },
    { name: 'Pod', type: 'string', jsonPath: '.status.pod', priority: 1 },
    { name: 'Namespace', type: 'string', jsonPath: '.spec.namespace', priority: 1 },
    { name: 'Pods', type: 'string', jsonPath: '.status.pods', priority: 1 },
  ],
  NodePool: [
    { name: 'Subnets', type: 'string', jsonPath: '.spec.subnets' },
    { name: 'Updated', type: 'date', jsonPath: '.status.updatedAt' },
    { name: 'Network', type: 'string', jsonPath: '.spec.network', priority: 1 },
  ],
  // As the seed 001 walkthrough reads a SpiderSubnet: what it can give, what its apps hold.
  Subnet: [
    { name: 'Subnet', type: 'string', jsonPath: '.spec.subnet' },
    { name: 'Total', type: 'integer', jsonPath: '.status.total' },
    { name: 'Allocated', type: 'integer', jsonPath: '.status.allocated' },
    { name: 'Free', type: 'integer', jsonPath: '.status.free' },
    { name: 'VLAN', type: 'integer', jsonPath: '.spec.vlan', priority: 1 },
  ],
  // The API server prints the first match of a column's path only, so the first address is shown;
  // `ipkeeper get endpoints` lists them all.
  Endpoint: [
    { name: 'Node', type: 'string', jsonPath: '.spec.node' },
    { name: 'IP', type: 'string', jsonPath: '.spec.interfaces[0].ips[0].ip' },
    { name: 'Fixed', type: 'string', jsonPath: '.spec.fixed' },
    { name: 'Owner', type: 'string', jsonPath: '.spec.owner.name', priority: 1 },
    { name: 'Interface', type: 'string', jsonPath: '.spec.interfaces[0].ifName', priority: 1 },
    { name: 'Released', type: 'date', jsonPath: '.spec.releasedAt', priority: 1 },
  ],
};

/** The CRD of a kind, from its schema (`schemaOf(info)` unless given: a test's own kind). */
export function crdFor(info: KindInfo, kindSchema: TSchema = schemaOf(info)): Json {
  const schema = toStructural(kindSchema);
  const props = schema.properties as Json;
  props.metadata = { type: 'object' };
  props.apiVersion = { type: 'string' };
  props.kind = { type: 'string' };
  schema.required = (schema.required as string[] | undefined)?.filter(
    (r) => !['metadata', 'apiVersion', 'kind'].includes(r),
  );
  if ((schema.required as string[]).length === 0) delete schema.required;
  const hasStatus = props.status !== undefined;
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${info.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: info.namespaced ? 'Namespaced' : 'Cluster',
      names: {
        kind: info.kind,
        listKind: `${info.kind}List`,
        plural: info.plural,
        singular: info.singular,
        shortNames: info.shortNames,
        categories: ['ipkeeper'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: schema },
          ...(hasStatus ? { subresources: { status: {} } } : {}),
          additionalPrinterColumns: [
            ...(COLUMNS[info.kind] ?? []),
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
        },
      ],
    },
  };
}

/**
 * The CustomResourceDefinition of `KeyValue` (`keyvalues.ipkeeper.io`): cluster-scoped, `spec.key`
 * a string, `spec.value` any JSON (`x-kubernetes-preserve-unknown-fields`, `nullable` so a null
 * value is not pruned).
 */
export function keyValueCrd(): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `keyvalues.${GROUP}` },
    spec: {
      group: GROUP,
      scope: 'Cluster',
      names: {
        kind: 'KeyValue',
        listKind: 'KeyValueList',
        plural: 'keyvalues',
        singular: 'keyvalue',
        shortNames: ['ipkv'],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description:
                'ipkeeper state that is not one of its kinds (node leases, ...), one store key per object; written by ipkeeper only',
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec: {
                  type: 'object',
                  required: ['key'],
                  properties: {
                    key: { type: 'string', description: 'the store key, e.g. nodeleases/node-1' },
                    value: {
                      description: 'the stored JSON value, verbatim',
                      nullable: true,
                      'x-kubernetes-preserve-unknown-fields': true,
                    },
                  },
                },
              },
              required: ['spec'],
            },
          },
          additionalPrinterColumns: [
            { name: 'Key', type: 'string', jsonPath: '.spec.key' },
            { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
          ],
        },
      ],
    },
  };
}

export function allCrds(): Json[] {
  return [...Object.values(KINDS).map((info) => crdFor(info)), keyValueCrd()];
}

/** Every CRD as one multi-document YAML stream. */
export function crdsYaml(): string {
  return allCrds()
    .map((c) => stringify(c, { lineWidth: 0 }))
    .join('---\n');
}
