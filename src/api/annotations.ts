/**
 * @module api/annotations
 * THE catalogue of the annotations ipkeeper reads: for each, where it goes, the value's form with an
 * example, what it means, the default, the other projects' names accepted as aliases, and which
 * capability (docs/DESIGN.md) owns it. `docs/REFERENCE.md` is generated from this table, and
 * `annotations.test.ts` fails when the source reads an annotation (a string literal under
 * `ipkeeper.io/`, `ipam.spidernet.io/`, `ovn.kubernetes.io/`, `cni.projectcalico.org/`,
 * `k8s.ksyun.com/`) that is not catalogued here, or when an entry's `status` disagrees with whether
 * the source reads it.
 *
 * Read an annotation with `annotationValue(annotations, 'ipkeeper.io/...')`: it looks for the
 * ipkeeper name first, then the aliases in the order listed (Spiderpool, Kube-OVN, Calico, KCE), and
 * returns the first one present, its value translated into ipkeeper's form (a Calico JSON list of
 * addresses becomes `a,b`). The name is typed, so a misspelt annotation fails `tsc`.
 *
 * Imports only the error catalogue: the agent and the controller both read annotations.
 */
import { IpamError } from '../errors.ts';

/** Where an annotation is read from. `workload` = a Deployment/StatefulSet/... pod template. */
export type AnnotationTarget = 'pod' | 'workload' | 'namespace';

export type AliasProject = 'Spiderpool' | 'Kube-OVN' | 'Calico' | 'KCE';

export interface AnnotationAlias {
  name: string;
  project: AliasProject;
  /** How the alias's value differs, for the reference (absent: the same form). */
  note?: string;
  /**
   * Turns the alias's value into ipkeeper's form.
   * @throws IpamError INVALID_OBJECT naming the alias when its value is malformed.
   */
  translate?: (value: string) => string;
}

export interface AnnotationInfo {
  /** `ipkeeper.io/<name>`. */
  name: string;
  on: readonly AnnotationTarget[];
  /** The value's form, as a user writes it. */
  format: string;
  example: string;
  meaning: string;
  default: string;
  aliases: readonly AnnotationAlias[];
  /** The capability that owns it: a row of the table in docs/DESIGN.md. */
  feature: string;
  /** `implemented`: some code reads it (a test keeps this true); `planned`: catalogued, not read yet. */
  status: 'implemented' | 'planned';
}

/** The API group's prefix of every ipkeeper annotation. */
export const ANNOTATION_PREFIX = 'ipkeeper.io/';

/** The prefixes of annotations we read (ours and the accepted aliases'). */
export const ANNOTATION_PREFIXES = [
  ANNOTATION_PREFIX,
  'ipam.spidernet.io/',
  'ovn.kubernetes.io/',
  'cni.projectcalico.org/',
  'k8s.ksyun.com/',
] as const;

const spiderpool = (short: string): AnnotationAlias => ({
  name: `ipam.spidernet.io/${short}`,
  project: 'Spiderpool',
});

/** Calico's `["10.0.0.1", "fd00::1"]` -> `10.0.0.1,fd00::1`. */
function calicoAddrs(value: string): string {
  let list: unknown;
  try {
    list = JSON.parse(value);
  } catch {
    list = undefined;
  }
  if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string' && x !== '')) {
    throw new IpamError(
      'INVALID_OBJECT',
      `annotation cni.projectcalico.org/ipAddrs: ${JSON.stringify(value)} is not valid; expected a JSON list of addresses, e.g. ["10.6.168.140"]`,
      { annotation: 'cni.projectcalico.org/ipAddrs', value },
    );
  }
  return (list as string[]).join(',');
}

/** KCE's `"true"` (keep the address, no reclaim period set) -> `forever`; `"false"` -> `0`. */
function kceFixed(value: string): string {
  if (value === 'true') return 'forever';
  if (value === 'false') return '0';
  throw new IpamError(
    'INVALID_OBJECT',
    `annotation k8s.ksyun.com/pod-ip-fixed: ${JSON.stringify(value)} is not valid; expected "true" or "false"`,
    { annotation: 'k8s.ksyun.com/pod-ip-fixed', value },
  );
}

/**
 * Every annotation, in the order the reference lists them. Keys are the full names, so
 * `AnnotationName` is the union of them.
 */
export const ANNOTATIONS = {
  'ipkeeper.io/ippool': {
    name: 'ipkeeper.io/ippool',
    on: ['pod', 'workload'],
    format: 'JSON `{"ipv4": [pool, ...], "ipv6": [pool, ...]}`, optional `"interface"`; names may hold `*`',
    example: '{"ipv4": ["test-ippool", "backup-ippool"]}',
    meaning:
      'the pools the interface (default `eth0`, or `interface`) takes its addresses from; each list is an ordered set of backups. Wins over the namespace defaults, the CNI config and default pools',
    default: 'the namespace defaults, then the CNI config `ipam.pools`, then pools with `default: true`',
    aliases: [spiderpool('ippool')],
    feature: 'pool choice',
    status: 'implemented',
  },
  'ipkeeper.io/ippools': {
    name: 'ipkeeper.io/ippools',
    on: ['pod', 'workload'],
    format: 'JSON list `[{"interface": ifname, "ipv4": [pool, ...], "ipv6": [pool, ...]}, ...]`',
    example: '[{"interface": "eth0", "ipv4": ["pool-10-6"]}, {"interface": "net1", "ipv4": ["pool-10-7"]}]',
    meaning: 'pools per interface (multi-NIC); wins over `ipkeeper.io/ippool` for the interfaces it names',
    default: 'as `ipkeeper.io/ippool`',
    aliases: [spiderpool('ippools')],
    feature: 'multi-NIC',
    status: 'implemented',
  },
  'ipkeeper.io/subnet': {
    name: 'ipkeeper.io/subnet',
    on: ['workload'],
    format: 'JSON `{"ipv4": [subnet], "ipv6": [subnet]}`, optional `"interface"`',
    example: '{"ipv4": ["subnet-10-6"]}',
    meaning:
      'ipkeeper creates an application pool from this `Subnet`, bound to the workload and sized by `ipkeeper.io/ippool-ip-number`; its pods take fixed addresses from it',
    default: 'no application pool',
    aliases: [spiderpool('subnet')],
    feature: 'fixed IPs, stateless',
    status: 'implemented',
  },
  'ipkeeper.io/subnets': {
    name: 'ipkeeper.io/subnets',
    on: ['workload'],
    format: 'JSON list `[{"interface": ifname, "ipv4": [subnet], "ipv6": [subnet]}, ...]`',
    example:
      '[{"interface": "eth0", "ipv4": ["subnet-10-6"]}, {"interface": "net1", "ipv4": ["subnet-10-7"]}]',
    meaning: 'one application pool per interface, each from its own `Subnet` (multi-NIC fixed IPs)',
    default: 'no application pools',
    aliases: [spiderpool('subnets')],
    feature: 'fixed IPs, stateless',
    status: 'implemented',
  },
  'ipkeeper.io/ippool-ip-number': {
    name: 'ipkeeper.io/ippool-ip-number',
    on: ['workload'],
    format: '`N` (a fixed count) or `+N` (replicas + N, followed as the workload scales)',
    example: '+1',
    meaning:
      'how many addresses the application pool of `ipkeeper.io/subnet(s)` holds; `+N` leaves N spare for rolling updates',
    default: '`+1`',
    aliases: [spiderpool('ippool-ip-number')],
    feature: 'fixed IPs, stateless',
    status: 'implemented',
  },
  'ipkeeper.io/ippool-reclaim': {
    name: 'ipkeeper.io/ippool-reclaim',
    on: ['workload'],
    format: '`true` or `false`',
    example: 'false',
    meaning:
      'whether the application pool is deleted with its workload (`false` keeps it, and its addresses, for a re-created workload)',
    default: '`true`',
    aliases: [spiderpool('ippool-reclaim')],
    feature: 'fixed IPs, stateless',
    status: 'implemented',
  },
  'ipkeeper.io/ip-retention': {
    name: 'ipkeeper.io/ip-retention',
    on: ['pod', 'workload'],
    format: '`0`, a duration (`90s`, `1h30m`, `7d`; units ms, s, m, h, d) or `forever`',
    example: '24h',
    meaning:
      'how long a fixed address (StatefulSet or VM pod) stays held after its owner stops wanting it, before it is reclaimed; overrides the pool',
    default:
      "the pool's `spec.ipRetention`, else `0` (held while the StatefulSet or VM wants the pod, released when it stops); `forever` for a pod fixed by `k8s.ksyun.com/pod-ip-fixed`",
    aliases: [
      {
        name: 'k8s.ksyun.com/pod-ip-fixed',
        project: 'KCE',
        note: '`"true"` marks the pod fixed; with no retention given it is held `forever`, as KCE documents; `"false"` reads as `0`',
        translate: kceFixed,
      },
    ],
    feature: 'IP retention',
    status: 'implemented',
  },
  'ipkeeper.io/ip-address': {
    name: 'ipkeeper.io/ip-address',
    on: ['pod'],
    format:
      'one address, or one per family separated by `,` (for `eth0`); or JSON per interface `{"eth0": "10.6.168.140", "net1": "10.7.0.5,fd00:7::5"}`',
    example: '10.6.168.140,fd00:6::140',
    meaning:
      "the pod's exact address(es); refused if reserved, held by another owner or in none of the pod's pools. Must agree with the runtime's own request (`runtimeConfig.ips`, `IP=`)",
    default: 'an address chosen from the pools',
    aliases: [
      { name: 'ovn.kubernetes.io/ip_address', project: 'Kube-OVN' },
      {
        name: 'cni.projectcalico.org/ipAddrs',
        project: 'Calico',
        note: 'a JSON list, `["10.6.168.140"]`',
        translate: calicoAddrs,
      },
    ],
    feature: 'fixed IPs, stateful',
    status: 'implemented',
  },
  'ipkeeper.io/ip-list': {
    name: 'ipkeeper.io/ip-list',
    on: ['workload'],
    format:
      'addresses separated by `,` (dual stack: the i-th IPv4 pairs with the i-th IPv6, or entries separated by `;`); or JSON per interface',
    example: '10.6.168.140,10.6.168.141,10.6.168.142',
    meaning:
      'StatefulSet pods: ordinal i (pod `<name>-<i>`) takes entry i; other pods are refused (use an IPPool)',
    default: 'addresses chosen from the pools',
    aliases: [{ name: 'ovn.kubernetes.io/ip_pool', project: 'Kube-OVN' }],
    feature: 'fixed IPs, stateful',
    status: 'implemented',
  },
  'ipkeeper.io/vip': {
    name: 'ipkeeper.io/vip',
    on: ['pod', 'workload'],
    format: 'the name of a `VIP`',
    example: 'pod-use-vip',
    meaning:
      "the pod takes the VIP's address as its own (fixed) address; StatefulSet and VM pods keep it when re-created",
    default: 'no VIP',
    aliases: [{ name: 'ovn.kubernetes.io/vip', project: 'Kube-OVN' }],
    feature: 'VIPs',
    status: 'implemented',
  },
  'ipkeeper.io/aaps': {
    name: 'ipkeeper.io/aaps',
    on: ['pod', 'workload'],
    format: '`VIP` names separated by `,`',
    example: 'vip-aap,vip-aap2',
    meaning:
      "allowed address pairs: the pod may also use these VIPs' addresses (keepalived) on its interface in the VIP's network; the VIP's namespace and selector must match the pod",
    default: 'none',
    aliases: [{ name: 'ovn.kubernetes.io/aaps', project: 'Kube-OVN' }],
    feature: 'VIPs',
    status: 'implemented',
  },
  'ipkeeper.io/default-route-nic': {
    name: 'ipkeeper.io/default-route-nic',
    on: ['pod', 'workload'],
    format: 'an interface name',
    example: 'net1',
    meaning:
      'the interface that gets the default route; the others get policy routes so replies leave by the interface the request came in on',
    default: '`eth0`',
    aliases: [spiderpool('default-route-nic')],
    feature: 'multi-NIC',
    status: 'implemented',
  },
  'ipkeeper.io/default-ipv4-ippool': {
    name: 'ipkeeper.io/default-ipv4-ippool',
    on: ['namespace'],
    format: 'a pool name, or a JSON list of pool names (`*` wildcards allowed)',
    example: '["ns-pool-v4", "backup-v4"]',
    meaning: "IPv4 pools for the namespace's pods that name none themselves",
    default: 'the CNI config `ipam.pools`, then pools with `default: true`',
    aliases: [spiderpool('default-ipv4-ippool')],
    feature: 'pool choice',
    status: 'implemented',
  },
  'ipkeeper.io/default-ipv6-ippool': {
    name: 'ipkeeper.io/default-ipv6-ippool',
    on: ['namespace'],
    format: 'a pool name, or a JSON list of pool names (`*` wildcards allowed)',
    example: '["ns-pool-v6"]',
    meaning: "IPv6 pools for the namespace's pods that name none themselves",
    default: 'the CNI config `ipam.pools`, then pools with `default: true`',
    aliases: [spiderpool('default-ipv6-ippool')],
    feature: 'pool choice',
    status: 'implemented',
  },
} as const satisfies Record<string, AnnotationInfo>;

export type AnnotationName = keyof typeof ANNOTATIONS;

/** The catalogue entry of `name`. */
export function annotationInfo(name: AnnotationName): AnnotationInfo {
  return ANNOTATIONS[name];
}

/** `name` and its aliases, in the order `annotationValue` looks for them. */
export function annotationNames(name: AnnotationName): string[] {
  return [name, ...ANNOTATIONS[name].aliases.map((a) => a.name)];
}

/** Which catalogue entry a name (ours or an alias) belongs to, or undefined. */
export function canonicalAnnotation(name: string): AnnotationName | undefined {
  for (const info of Object.values(ANNOTATIONS) as AnnotationInfo[]) {
    if (info.name === name || info.aliases.some((a) => a.name === name)) return info.name as AnnotationName;
  }
  return undefined;
}

export interface FoundAnnotation {
  /** The name that was present: ours or an alias (quote this one in messages). */
  name: string;
  /** The value in ipkeeper's form (an alias's translated). */
  value: string;
  /** The value as written. */
  raw: string;
}

/**
 * The value of annotation `name` in `annotations`, looking at `ipkeeper.io/...` first, then its
 * aliases in catalogue order (Spiderpool, Kube-OVN, Calico, KCE); the first present wins, so an
 * ipkeeper annotation overrides a migrated one. Undefined when none is present.
 * @throws IpamError INVALID_OBJECT when an alias's value cannot be translated (naming the alias).
 */
export function annotationValue(
  annotations: Record<string, string> | undefined,
  name: AnnotationName,
): FoundAnnotation | undefined {
  if (!annotations) return undefined;
  const own = annotations[name];
  if (own !== undefined) return { name, value: own, raw: own };
  for (const a of ANNOTATIONS[name].aliases as readonly AnnotationAlias[]) {
    const raw = annotations[a.name];
    if (raw === undefined) continue;
    return { name: a.name, value: a.translate ? a.translate(raw) : raw, raw };
  }
  return undefined;
}

/**
 * Keys under `ipkeeper.io/` that are not annotations users set: labels, annotations and finalizers
 * ipkeeper writes on objects it owns. Listed so the reference can explain them and so the
 * catalogue test can tell them from an uncatalogued annotation.
 */
export interface ObjectKeyInfo {
  name: string;
  what: 'label' | 'annotation' | 'finalizer';
  on: string;
  meaning: string;
}

export const OBJECT_KEYS: readonly ObjectKeyInfo[] = [
  {
    name: 'ipkeeper.io/owner-application',
    what: 'label',
    on: 'application IPPool',
    meaning:
      'the workload the pool belongs to (`kubectl get ippools -l ipkeeper.io/owner-application=NAME`); also an annotation with the full value',
  },
  {
    name: 'ipkeeper.io/owner-application-kind',
    what: 'label',
    on: 'application IPPool',
    meaning: "the workload's kind",
  },
  {
    name: 'ipkeeper.io/owner-application-namespace',
    what: 'label',
    on: 'application IPPool',
    meaning: "the workload's namespace",
  },
  {
    name: 'ipkeeper.io/owner-application-uid',
    what: 'annotation',
    on: 'application IPPool',
    meaning: "the workload's uid",
  },
  {
    name: 'ipkeeper.io/subnet',
    what: 'label',
    on: 'application IPPool',
    meaning: 'the Subnet the pool was carved from',
  },
  {
    name: 'ipkeeper.io/interface',
    what: 'label',
    on: 'application IPPool',
    meaning: 'the pod interface the pool serves',
  },
  {
    name: 'ipkeeper.io/ip-version',
    what: 'label',
    on: 'application IPPool',
    meaning: "the pool's IP family, `4` or `6`",
  },
  {
    name: 'ipkeeper.io/ippool-ip-number',
    what: 'annotation',
    on: 'application IPPool',
    meaning: "the workload's size request, copied from the workload",
  },
  {
    name: 'ipkeeper.io/ippool-reclaim',
    what: 'annotation',
    on: 'application IPPool',
    meaning: "the workload's reclaim choice, copied from the workload",
  },
  {
    name: 'ipkeeper.io/node-pool',
    what: 'label',
    on: 'IPPool compiled from a NodePool (node-pool mode)',
    meaning: 'the node whose NodePool the pool was compiled from',
  },
  {
    name: 'ipkeeper.io/network-config',
    what: 'annotation',
    on: 'NetworkAttachmentDefinition made from a NetworkConfig kept in etcd (the controller on an etcd store)',
    meaning:
      'the NetworkConfig it was made from, where no ownerReference can say it (the NetworkConfig is not an API server object): the controller updates and deletes only NADs that name their NetworkConfig so',
  },
  {
    name: 'ipkeeper.io/pool-in-use',
    what: 'finalizer',
    on: 'IPPool (Kubernetes mode)',
    meaning: 'holds the deletion of a pool while claims still hold its addresses',
  },
  {
    name: 'ipkeeper.io/key-kind',
    what: 'label',
    on: 'KeyValue (Kubernetes store)',
    meaning: "the store key's first segment, so a list or watch asks for one kind of key",
  },
];
