/**
 * @module ipam/app-pool
 * Application pools (seed 001, Spiderpool's "SpiderSubnet"): a workload annotated
 * `ipkeeper.io/subnet` or `ipkeeper.io/subnets` gets one IPPool per interface and IP family, carved
 * from a `Subnet`, bound to the application and sized `N` (fixed) or `replicas + N`. This file is
 * the pure part: parsing the annotations, naming and labelling the pools, how many addresses an
 * application wants, which addresses to add or drop, and which pool a pod of the application
 * takes (the pool-choice rule). The controller (`src/controller/app-pools.ts`) does the I/O.
 *
 *   Subnet  10.6.0.0/16, ips 10.6.168.100-10.6.168.199
 *     ├── auto4-test-app-eth0-1a2b3   10.6.168.100-10.6.168.102   (Deployment ns/test-app, +1, 2 replicas)
 *     └── auto4-web-eth0-4c5d6       10.6.168.103-10.6.168.107   (StatefulSet ns/web, fixed 5)
 *
 * Carving takes the lowest free addresses of the subnet (not in any other pool of the same network,
 * not reserved), so the result is reproducible and a pool's `ips` stays a few short ranges; a
 * shrink drops the highest addresses that no claim holds, so addresses in use are never taken away.
 *
 * Errors: IpamError INVALID_OBJECT for a malformed annotation (naming it, its value and the form
 * expected), APP_POOL_PENDING when a pod's application pool does not exist yet (retryable).
 */
import { createHash } from 'node:crypto';
import { IpamError } from '../errors.ts';
import type { Family } from '../net/addr.ts';
import { IntervalSet } from '../net/interval-set.ts';
import { API_VERSION, type IPPool, type LabelSelector, type Subnet } from '../api/kinds.ts';
import { compilePool } from './pools.ts';
import type { OwnerRef, PodInfo } from './cluster-view.ts';
import type { IpamState } from './state.ts';

/** Ours first; Spiderpool's names are accepted so its manifests work unchanged. */
export const APP_ANNOTATION = {
  subnets: ['ipkeeper.io/subnets', 'ipam.spidernet.io/subnets'],
  subnet: ['ipkeeper.io/subnet', 'ipam.spidernet.io/subnet'],
  ipNumber: ['ipkeeper.io/ippool-ip-number', 'ipam.spidernet.io/ippool-ip-number'],
  reclaim: ['ipkeeper.io/ippool-reclaim', 'ipam.spidernet.io/ippool-reclaim'],
} as const;

/** Labels on an application pool: `kubectl get ippools -l ipkeeper.io/owner-application=...`. */
export const APP_LABEL = {
  app: 'ipkeeper.io/owner-application',
  kind: 'ipkeeper.io/owner-application-kind',
  namespace: 'ipkeeper.io/owner-application-namespace',
  subnet: 'ipkeeper.io/subnet',
  ifName: 'ipkeeper.io/interface',
  family: 'ipkeeper.io/ip-version',
} as const;
/** Annotations on an application pool (full values: labels hold at most 63 characters). */
export const APP_POOL_ANNOTATION = {
  app: 'ipkeeper.io/owner-application',
  uid: 'ipkeeper.io/owner-application-uid',
  ipNumber: 'ipkeeper.io/ippool-ip-number',
  reclaim: 'ipkeeper.io/ippool-reclaim',
} as const;

/** The workload kinds whose pods get application pools. */
export const APP_KINDS = ['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet', 'Job', 'CronJob'] as const;
export type AppKind = (typeof APP_KINDS)[number];

export const DEFAULT_IF = 'eth0';

export interface AppRef {
  kind: string;
  namespace: string;
  name: string;
}

/** One interface's subnets: the first subnet named per family is used (as Spiderpool does). */
export interface AppInterface {
  ifName: string;
  ipv4?: string;
  ipv6?: string;
}

export type AppPoolSize = { fixed: number } | { extra: number };

export interface AppPoolRequest {
  interfaces: AppInterface[];
  size: AppPoolSize;
  /** false: the pools outlive the application and a re-created one of the same name adopts them. */
  reclaim: boolean;
  /** The annotation that asked, for messages. */
  source: string;
}

function pick(
  ann: Record<string, string> | undefined,
  names: readonly string[],
): [string, string] | undefined {
  if (!ann) return undefined;
  for (const n of names) if (ann[n] !== undefined) return [n, ann[n] as string];
  return undefined;
}

function bad(name: string, value: string, fix: string): IpamError {
  const v = value.length > 120 ? `${value.slice(0, 117)}...` : value;
  return new IpamError('INVALID_OBJECT', `annotation ${name}: ${JSON.stringify(v)} is not valid; ${fix}`, {
    annotation: name,
    value,
  });
}

const SUBNET_FORM = 'expected {"ipv4": ["<subnet>"], "ipv6": ["<subnet>"]} naming Subnet objects';
const SUBNETS_FORM =
  'expected [{"interface": "eth0", "ipv4": ["<subnet>"]}, {"interface": "net1", "ipv4": ["<subnet>"]}] naming Subnet objects';

function parseEntry(name: string, raw: string, o: unknown, form: string, needIf: boolean): AppInterface {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw bad(name, raw, form);
  const e = o as Record<string, unknown>;
  const first = (k: 'ipv4' | 'ipv6'): string | undefined => {
    const v = e[k];
    if (v === undefined) return undefined;
    // A bare string is what a hand-written annotation often holds; accept it as a one-item list.
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || list.length === 0 || !list.every((x) => typeof x === 'string' && x !== '')) {
      throw bad(name, raw, `"${k}" must be a list of Subnet names; ${form}`);
    }
    return list[0] as string;
  };
  if (e.interface !== undefined && (typeof e.interface !== 'string' || e.interface === '')) {
    throw bad(name, raw, `"interface" must be an interface name such as "eth0"; ${form}`);
  }
  if (needIf && e.interface === undefined) throw bad(name, raw, `every entry needs "interface"; ${form}`);
  const ipv4 = first('ipv4');
  const ipv6 = first('ipv6');
  if (!ipv4 && !ipv6) throw bad(name, raw, `name a subnet for "ipv4" or "ipv6"; ${form}`);
  return {
    ifName: (e.interface as string | undefined) ?? DEFAULT_IF,
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
  };
}

function json(name: string, raw: string, form: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw bad(name, raw, `it is not JSON; ${form}`);
  }
}

/** Only the subnet part: which Subnet each interface and family takes, or undefined when none. */
export function parseSubnetAnnotations(
  ann: Record<string, string> | undefined,
): { interfaces: AppInterface[]; source: string } | undefined {
  const multi = pick(ann, APP_ANNOTATION.subnets);
  if (multi) {
    const [name, raw] = multi;
    const list = json(name, raw, SUBNETS_FORM);
    if (!Array.isArray(list) || list.length === 0) throw bad(name, raw, SUBNETS_FORM);
    const interfaces = list.map((e) => parseEntry(name, raw, e, SUBNETS_FORM, true));
    const seen = new Set<string>();
    for (const i of interfaces) {
      if (seen.has(i.ifName))
        throw bad(name, raw, `interface "${i.ifName}" is listed twice; list each interface once`);
      seen.add(i.ifName);
    }
    return { interfaces, source: name };
  }
  const single = pick(ann, APP_ANNOTATION.subnet);
  if (single) {
    const [name, raw] = single;
    return {
      interfaces: [parseEntry(name, raw, json(name, raw, SUBNET_FORM), SUBNET_FORM, false)],
      source: name,
    };
  }
  return undefined;
}

/**
 * Reads the application-pool annotations of a workload (its pod template's annotations first, then
 * its own). Undefined when it names no subnet.
 * @throws IpamError INVALID_OBJECT naming the annotation, its value and the expected form.
 */
export function parseAppPoolAnnotations(ann: Record<string, string> | undefined): AppPoolRequest | undefined {
  const subnets = parseSubnetAnnotations(ann);
  if (!subnets) return undefined;
  let size: AppPoolSize = { extra: 1 };
  const num = pick(ann, APP_ANNOTATION.ipNumber);
  if (num) {
    const [name, raw] = num;
    const v = raw.trim();
    const m = /^(\+?)(\d{1,6})$/.exec(v);
    if (!m) throw bad(name, raw, 'use a number of addresses ("3") or replicas plus a number ("+1")');
    const n = Number(m[2]);
    if (m[1] === '+') size = { extra: n };
    else if (n < 1) throw bad(name, raw, 'a fixed pool needs at least 1 address; use "1" or more, or "+0"');
    else size = { fixed: n };
  }
  let reclaim = true;
  const rec = pick(ann, APP_ANNOTATION.reclaim);
  if (rec) {
    const [name, raw] = rec;
    const v = raw.trim().toLowerCase();
    if (v !== 'true' && v !== 'false')
      throw bad(
        name,
        raw,
        'use "true" (delete the pools with the application) or "false" (keep them for a re-created one)',
      );
    reclaim = v === 'true';
  }
  return { interfaces: subnets.interfaces, size, reclaim, source: subnets.source };
}

/** How many addresses an application pool holds for `replicas` replicas. */
export function desiredSize(size: AppPoolSize, replicas: number): number {
  return 'fixed' in size ? size.fixed : Math.max(0, replicas) + size.extra;
}

/** `3` or `+1`, as the annotation writes it. */
export function formatSize(size: AppPoolSize): string {
  return 'fixed' in size ? String(size.fixed) : `+${size.extra}`;
}

// Kubernetes objects as the API returns them; only the fields read below.
interface TemplateMeta {
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** What is read of a workload object (raw JSON from the API server), whatever its kind. */
export interface WorkloadObject {
  metadata?: { name?: string; annotations?: Record<string, string> };
  spec?: {
    replicas?: number;
    parallelism?: number;
    selector?: LabelSelector;
    template?: { metadata?: TemplateMeta };
    jobTemplate?: { spec?: { parallelism?: number; template?: { metadata?: TemplateMeta } } };
  };
  status?: { desiredNumberScheduled?: number };
}

/**
 * The replica count the pool follows: `spec.replicas` (Deployment, ReplicaSet, StatefulSet; absent
 * = 1), the nodes a DaemonSet is scheduled to (`status.desiredNumberScheduled`), a Job's
 * `spec.parallelism` (absent = 1), a CronJob's job template parallelism.
 */
export function replicasOf(kind: string, obj: WorkloadObject): number {
  const n = (v: unknown, dflt: number): number => (typeof v === 'number' && Number.isFinite(v) ? v : dflt);
  switch (kind) {
    case 'Deployment':
    case 'ReplicaSet':
    case 'StatefulSet':
      return n(obj.spec?.replicas, 1);
    case 'DaemonSet':
      return n(obj.status?.desiredNumberScheduled, 0);
    case 'Job':
      return n(obj.spec?.parallelism, 1);
    case 'CronJob':
      return n(obj.spec?.jobTemplate?.spec?.parallelism, 1);
    default:
      return 0;
  }
}

/** The pod template's metadata of a workload (a CronJob's is inside its job template). */
export function templateOf(
  kind: string,
  obj: WorkloadObject,
): { labels: Record<string, string>; annotations: Record<string, string> } {
  const t = kind === 'CronJob' ? obj.spec?.jobTemplate?.spec?.template : obj.spec?.template;
  return { labels: t?.metadata?.labels ?? {}, annotations: t?.metadata?.annotations ?? {} };
}

/** Template annotations win over the workload's own: the template is what Spiderpool reads. */
export function appAnnotations(kind: string, obj: WorkloadObject): Record<string, string> {
  return { ...(obj.metadata?.annotations ?? {}), ...templateOf(kind, obj).annotations };
}

/**
 * The selector the pool's podAffinity uses: the workload's `spec.selector` (a Job's includes its
 * `controller-uid`), or for a CronJob the job template's pod labels.
 */
export function selectorOf(kind: string, obj: WorkloadObject): LabelSelector | undefined {
  const sel = kind === 'CronJob' ? undefined : obj.spec?.selector;
  if (sel && (Object.keys(sel.matchLabels ?? {}).length > 0 || (sel.matchExpressions ?? []).length > 0)) {
    // A Job's generated selector names its uid; a re-created Job of the same name would not match.
    if (kind === 'Job' && sel.matchLabels?.['controller-uid']) {
      const jobName = obj.metadata?.name;
      return jobName ? { matchLabels: { 'job-name': jobName } } : undefined;
    }
    return {
      ...(sel.matchLabels ? { matchLabels: sel.matchLabels } : {}),
      ...(sel.matchExpressions ? { matchExpressions: sel.matchExpressions } : {}),
    };
  }
  const labels = templateOf(kind, obj).labels;
  return Object.keys(labels).length > 0 ? { matchLabels: labels } : undefined;
}

function hex(s: string, n: number): string {
  return createHash('sha256').update(s).digest('hex').slice(0, n);
}

/** `Deployment_ns_name`: how the pool's label names its application. */
export function appId(app: AppRef): string {
  return `${app.kind}_${app.namespace}_${app.name}`;
}

/**
 * A label value (at most 63 characters) for `s`: `s` itself when it fits, else its head and a hash,
 * so two long names stay apart.
 */
export function labelValue(s: string): string {
  if (s.length <= 63) return s;
  return `${s.slice(0, 46).replace(/[^A-Za-z0-9]+$/, '')}-${hex(s, 16)}`;
}

function sanitize(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

/**
 * The pool's name: `auto4-<app name>-<interface>-<hash of kind/namespace/name>`. Deterministic, so
 * a re-created application of the same kind, namespace and name finds (adopts) its kept pool, and
 * the pool-choice rule finds it by name without a search.
 */
export function appPoolName(app: AppRef, family: Family, ifName: string): string {
  const h = hex(`${app.kind}/${app.namespace}/${app.name}`, 5);
  const ifPart = sanitize(ifName) || 'if';
  const room = 253 - `auto${family}--${ifPart}-${h}`.length;
  const name = sanitize(app.name).slice(0, Math.max(1, room)).replace(/-+$/, '') || 'app';
  return `auto${family}-${name}-${ifPart}-${h}`;
}

/** Every usable address a Subnet can give to pools (ips ∩ subnet − excludeIPs − gateway). */
export function subnetAddresses(subnet: Subnet): IntervalSet {
  return compilePool({
    apiVersion: API_VERSION,
    kind: 'IPPool',
    metadata: { name: subnet.metadata.name },
    spec: subnet.spec,
  }).allocatable;
}

export interface ResizeInput {
  /** What the Subnet offers, minus reservations. */
  offered: IntervalSet;
  /** The pool's addresses now (empty for a new pool). */
  current: IntervalSet;
  /** Addresses held by other pools of the same network (never carved). */
  taken: IntervalSet;
  /** Addresses of this pool some claim holds (never dropped). */
  claimed: IntervalSet;
  want: number;
}

export interface ResizeResult {
  ips: IntervalSet;
  /** How many addresses the pool is short of `want` (the subnet ran out). */
  short: number;
  /** How many it is over `want` because the rest are held by claims. */
  stuck: number;
}

/**
 * The pool's new addresses: grown by the lowest free addresses of the subnet, or shrunk by its
 * highest addresses that no claim holds. Addresses of the pool that the subnet no longer offers are
 * kept (the pool is not the place to take addresses from running pods).
 */
export function resize(inp: ResizeInput): ResizeResult {
  const have = inp.current.size();
  const want = BigInt(inp.want);
  if (have === want) return { ips: inp.current, short: 0, stuck: 0 };
  if (have < want) {
    const free = inp.offered.difference(inp.taken).difference(inp.current);
    const need = want - have;
    const take = takeLowest(free, need);
    return { ips: inp.current.union(take), short: Number(need - take.size()), stuck: 0 };
  }
  const droppable = inp.current.difference(inp.claimed);
  const excess = have - want;
  const drop = takeHighest(droppable, excess);
  return { ips: inp.current.difference(drop), short: 0, stuck: Number(excess - drop.size()) };
}

/** The `n` lowest members of `set` (all of them when it is smaller). */
export function takeLowest(set: IntervalSet, n: bigint): IntervalSet {
  const out: { first: bigint; last: bigint }[] = [];
  let left = n;
  for (const r of set.runs()) {
    if (left <= 0n) break;
    const len = r.last - r.first + 1n;
    const k = len < left ? len : left;
    out.push({ first: r.first, last: r.first + k - 1n });
    left -= k;
  }
  return IntervalSet.of(set.family, out);
}

/** The `n` highest members of `set`. */
export function takeHighest(set: IntervalSet, n: bigint): IntervalSet {
  const out: { first: bigint; last: bigint }[] = [];
  let left = n;
  const runs = set.runs();
  for (let i = runs.length - 1; i >= 0 && left > 0n; i--) {
    const r = runs[i]!;
    const len = r.last - r.first + 1n;
    const k = len < left ? len : left;
    out.push({ first: r.last - k + 1n, last: r.last });
    left -= k;
  }
  return IntervalSet.of(set.family, out);
}

export interface AppPoolInput {
  app: AppRef & { uid?: string; apiVersion?: string };
  ifName: string;
  family: Family;
  subnet: Subnet;
  ips: IntervalSet;
  size: AppPoolSize;
  reclaim: boolean;
  podAffinity?: LabelSelector;
}

/**
 * The IPPool object of an application pool. With `reclaim` it carries an ownerReference to the
 * workload, so Kubernetes' garbage collector deletes it with the application even when the
 * controller is down; without, nothing ties it to one incarnation of the application.
 */
export function buildAppPool(
  inp: AppPoolInput,
): IPPool & { metadata: { ownerReferences?: Record<string, unknown>[] } } {
  const s = inp.subnet.spec;
  const name = appPoolName(inp.app, inp.family, inp.ifName);
  const owner =
    inp.reclaim && inp.app.uid
      ? [
          {
            apiVersion:
              inp.app.apiVersion ??
              (inp.app.kind === 'CronJob' || inp.app.kind === 'Job' ? 'batch/v1' : 'apps/v1'),
            kind: inp.app.kind,
            name: inp.app.name,
            uid: inp.app.uid,
            // Not a controller: the pool is ours, the workload merely decides its lifetime.
            blockOwnerDeletion: false,
          },
        ]
      : undefined;
  return {
    apiVersion: API_VERSION,
    kind: 'IPPool',
    metadata: {
      name,
      labels: {
        [APP_LABEL.app]: labelValue(appId(inp.app)),
        [APP_LABEL.kind]: inp.app.kind,
        [APP_LABEL.namespace]: inp.app.namespace,
        [APP_LABEL.subnet]: labelValue(inp.subnet.metadata.name),
        [APP_LABEL.ifName]: labelValue(sanitize(inp.ifName) || 'if'),
        [APP_LABEL.family]: `IPv${inp.family}`,
      },
      annotations: {
        [APP_POOL_ANNOTATION.app]: `${inp.app.kind}/${inp.app.namespace}/${inp.app.name}`,
        ...(inp.app.uid ? { [APP_POOL_ANNOTATION.uid]: inp.app.uid } : {}),
        [APP_POOL_ANNOTATION.ipNumber]: formatSize(inp.size),
        [APP_POOL_ANNOTATION.reclaim]: String(inp.reclaim),
      },
      ...(owner ? { ownerReferences: owner } : {}),
    },
    spec: {
      subnet: s.subnet,
      ips: inp.ips.toStrings(),
      ...(s.gateway ? { gateway: s.gateway } : {}),
      ...(s.routes ? { routes: s.routes } : {}),
      ...(s.vlan !== undefined ? { vlan: s.vlan } : {}),
      ...(s.network ? { network: s.network } : {}),
      ...(inp.podAffinity ? { podAffinity: inp.podAffinity } : {}),
    },
  };
}

/**
 * The applications a pod may belong to, most specific last: its top owner, and — while the owner
 * chain stops at a ReplicaSet or Job — the Deployment or CronJob that the name and the
 * `pod-template-hash` label point to (a ReplicaSet is named `<deployment>-<hash>`, a CronJob's Job
 * `<cronjob>-<minutes>`).
 */
export function appsOfPod(pod: PodInfo): AppRef[] {
  const top: OwnerRef | undefined = pod.owners[pod.owners.length - 1];
  if (!top) return [];
  const out: AppRef[] = [{ kind: top.kind, namespace: pod.namespace, name: top.name }];
  if (top.kind === 'ReplicaSet') {
    const hash = pod.labels['pod-template-hash'];
    if (hash && top.name.endsWith(`-${hash}`)) {
      out.push({ kind: 'Deployment', namespace: pod.namespace, name: top.name.slice(0, -hash.length - 1) });
    }
  } else if (top.kind === 'Job') {
    const m = /^(.+)-\d+$/.exec(top.name);
    if (m) out.push({ kind: 'CronJob', namespace: pod.namespace, name: m[1] as string });
  }
  return out;
}

/**
 * The pool-choice rule for application pools (between the pod's own ippool annotations and the
 * namespace default): the pod's application has pools for this interface, or the pod asks for one
 * with `ipkeeper.io/subnet(s)`. Undefined when the rule does not apply.
 * @throws IpamError APP_POOL_PENDING when the pod asks but its pool — or the pool of another
 *   interface it asks for — does not exist yet (the runtime retries; the controller creates them
 *   within moments), so a pod takes no address until it can take all; INVALID_OBJECT for a malformed
 *   annotation or a pod without a controller.
 */
export function chooseAppPools(
  pod: PodInfo | undefined,
  ifName: string,
  state: IpamState,
): { families: Partial<Record<Family, string[]>>; rule: string } | undefined {
  if (!pod) return undefined;
  const asked = parseSubnetAnnotations(pod.annotations);
  const mine = asked?.interfaces.find((i) => i.ifName === ifName);
  const apps = appsOfPod(pod);
  // The most specific application with a pool for this interface wins.
  for (const app of [...apps].reverse()) {
    const out: Partial<Record<Family, string[]>> = {};
    for (const f of [4, 6] as Family[]) {
      const n = appPoolName(app, f, ifName);
      if (state.pools.has(n)) out[f] = [n];
    }
    const wantFams = mine ? ([4, 6] as Family[]).filter((f) => (f === 4 ? mine.ipv4 : mine.ipv6)) : [];
    if (Object.keys(out).length === 0) continue;
    const missing = wantFams.filter((f) => !out[f]);
    if (missing.length > 0) throw pending(pod, app, ifName, missing, asked?.source);
    // Every interface the pod asks for, not just this one: an interface whose pool is still to come
    // would fail the sandbox after this one took its address — given back by the runtime's DEL, with
    // the pool's cursor already past it (the next sandbox gets the address after).
    for (const other of asked?.interfaces ?? []) {
      if (other.ifName === ifName) continue;
      const fams = ([4, 6] as Family[]).filter((f) => (f === 4 ? other.ipv4 : other.ipv6));
      const absent = fams.filter((f) => !state.pools.has(appPoolName(app, f, other.ifName)));
      if (absent.length > 0) throw pending(pod, app, other.ifName, absent, asked?.source);
    }
    return {
      families: out,
      rule: `application pool of ${app.kind} ${app.namespace}/${app.name} (interface ${ifName})`,
    };
  }
  if (!asked) return undefined;
  if (!mine) return undefined;
  if (apps.length === 0) {
    throw new IpamError(
      'INVALID_OBJECT',
      `pod ${pod.namespace}/${pod.name} has annotation ${asked.source} but no controller; application pools are made for ${APP_KINDS.join(', ')} — use ipkeeper.io/ippool for a bare pod`,
      { annotation: asked.source },
    );
  }
  const app = apps[apps.length - 1] as AppRef;
  throw pending(
    pod,
    app,
    ifName,
    ([4, 6] as Family[]).filter((f) => (f === 4 ? mine.ipv4 : mine.ipv6)),
    asked.source,
  );
}

function pending(
  pod: PodInfo,
  app: AppRef,
  ifName: string,
  fams: Family[],
  source: string | undefined,
): IpamError {
  const names = fams.map((f) => `"${appPoolName(app, f, ifName)}"`).join(', ');
  return new IpamError(
    'APP_POOL_PENDING',
    `pod ${pod.namespace}/${pod.name}: the controller has not created the application pool ${names} of ${app.kind} ${app.namespace}/${app.name} (interface ${ifName}, asked by ${source ?? 'an earlier application pool'}) yet; the runtime retries. If this lasts, check that ipkeeper-controller runs and the workload's events (kubectl describe ${app.kind.toLowerCase()} ${app.name} -n ${app.namespace})`,
    { pool: names, app: appId(app), ifName },
  );
}
