/**
 * @module ipam/choose
 * Which pools a request may take addresses from, per family, and why. The first rule that names
 * pools for the interface wins, exactly as users of Spiderpool know it:
 *
 *   1. pod annotation `ipkeeper.io/ippools` — per interface: `[{"interface":"net1","ipv4":["a"],"ipv6":["b"]}]`
 *   2. pod annotation `ipkeeper.io/ippool` — `{"ipv4":["a","backup"],"ipv6":["b"]}` (optional "interface")
 *   2½. the pod's application pool, made by the controller from `ipkeeper.io/subnet(s)` (app-pool.ts)
 *   3. namespace annotations `ipkeeper.io/default-ipv4-ippool` / `ipkeeper.io/default-ipv6-ippool`
 *   4. the CNI config's `ipam.pools`
 *   5. every pool marked `default: true`
 *
 * The `ipam.spidernet.io/*` annotations are accepted as aliases. Each list is an ordered set of
 * backups; names may hold `*` wildcards. The chosen pools are then filtered — disabled, node,
 * namespace, pod and network affinity — and every filtered pool gets a note saying why, so a refusal
 * can tell the user which rule chose which pools and what ruled each out.
 *
 * Errors: IpamError INVALID_OBJECT for a malformed annotation (naming it and the expected form).
 */
import { IpamError } from '../errors.ts';
import { annotationNames } from '../api/annotations.ts';
import type { Family } from '../net/addr.ts';
import type { LabelSelector } from '../api/kinds.ts';
import type { NamespaceInfo, NodeInfo, PodInfo } from './cluster-view.ts';
import type { CompiledPool } from './pools.ts';
import type { IpamState } from './state.ts';
import { chooseAppPools } from './app-pool.ts';

/** Each name with its accepted aliases, in lookup order, from the catalogue (`api/annotations.ts`). */
export const ANNOTATION = {
  ippools: annotationNames('ipkeeper.io/ippools'),
  ippool: annotationNames('ipkeeper.io/ippool'),
  nsDefault4: annotationNames('ipkeeper.io/default-ipv4-ippool'),
  nsDefault6: annotationNames('ipkeeper.io/default-ipv6-ippool'),
} as const;

export interface PoolChoice {
  /** Ordered candidates per family; a family absent here is not asked for. */
  families: Partial<Record<Family, string[]>>;
  /** The rule that decided, for messages: `pod annotation ipkeeper.io/ippool`, `default pools`. */
  rule: string;
}

export interface ChooseInput {
  configPools?: { ipv4?: string[]; ipv6?: string[] };
  ifName?: string;
  pod?: PodInfo;
  namespace?: NamespaceInfo;
}

/** What the filters know of the request. */
export interface FilterContext {
  cniNetwork: string;
  nodeName: string;
  podNamespace?: string;
  pod?: PodInfo;
  namespace?: NamespaceInfo;
  node?: NodeInfo;
  /** Whether labels come from a live cluster view (false: selectors cannot be evaluated). */
  live: boolean;
  /** No pod is involved (STATUS): only node and network filters apply. */
  podIndependent?: boolean;
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${body}$`);
}

/** Expands wildcards against existing pools (sorted); plain names stay even if missing. */
export function expandNames(names: string[], state: IpamState): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  let all: string[] | undefined;
  for (const n of names) {
    let matches = [n];
    if (n.includes('*')) {
      all ??= [...state.pools.keys()].sort();
      const re = globToRegExp(n);
      matches = all.filter((p) => re.test(p));
    }
    for (const m of matches) {
      if (!seen.has(m)) {
        seen.add(m);
        out.push(m);
      }
    }
  }
  return out;
}

function pick(
  ann: Record<string, string> | undefined,
  names: readonly string[],
): [string, string] | undefined {
  if (!ann) return undefined;
  for (const n of names) if (ann[n] !== undefined) return [n, ann[n] as string];
  return undefined;
}

function badAnnotation(name: string, value: string, expected: string): IpamError {
  return new IpamError(
    'INVALID_OBJECT',
    `annotation ${name}: ${JSON.stringify(value.length > 120 ? `${value.slice(0, 117)}...` : value)} is not valid; expected ${expected}`,
    { annotation: name, value },
  );
}

function nameList(v: unknown): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && x !== '')) return undefined;
  return v as string[];
}

const FAMILY_FORM = '{"ipv4": ["pool", ...], "ipv6": ["pool", ...]}';

function parseFamilies(
  name: string,
  raw: string,
  obj: unknown,
): { ipv4?: string[]; ipv6?: string[]; interface?: string } {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj))
    throw badAnnotation(name, raw, FAMILY_FORM);
  const o = obj as Record<string, unknown>;
  const ipv4 = nameList(o.ipv4);
  const ipv6 = nameList(o.ipv6);
  if ((o.ipv4 !== undefined && !ipv4) || (o.ipv6 !== undefined && !ipv6))
    throw badAnnotation(name, raw, FAMILY_FORM);
  if (o.interface !== undefined && typeof o.interface !== 'string')
    throw badAnnotation(name, raw, FAMILY_FORM);
  return {
    ...(ipv4 ? { ipv4 } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    ...(typeof o.interface === 'string' ? { interface: o.interface } : {}),
  };
}

function parseJson(name: string, raw: string, expected: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw badAnnotation(name, raw, expected);
  }
}

function families(
  f: { ipv4?: string[]; ipv6?: string[] },
  state: IpamState,
): Partial<Record<Family, string[]>> {
  const out: Partial<Record<Family, string[]>> = {};
  if (f.ipv4 && f.ipv4.length > 0) out[4] = expandNames(f.ipv4, state);
  if (f.ipv6 && f.ipv6.length > 0) out[6] = expandNames(f.ipv6, state);
  return out;
}

/**
 * Applies the rules above.
 * @throws IpamError INVALID_OBJECT for a malformed annotation.
 */
export function choosePools(input: ChooseInput, state: IpamState): PoolChoice {
  const ifName = input.ifName ?? 'eth0';
  const podAnn = input.pod?.annotations;

  const multi = pick(podAnn, ANNOTATION.ippools);
  if (multi) {
    const [name, raw] = multi;
    const form = '[{"interface": "eth0", "ipv4": ["pool"], "ipv6": ["pool"]}, ...]';
    const list = parseJson(name, raw, form);
    if (!Array.isArray(list)) throw badAnnotation(name, raw, form);
    const entries = list.map((e) => parseFamilies(name, raw, e));
    if (entries.some((e) => e.interface === undefined)) throw badAnnotation(name, raw, form);
    const mine = entries.find((e) => e.interface === ifName);
    if (mine) {
      const f = families(mine, state);
      if (Object.keys(f).length > 0)
        return { families: f, rule: `pod annotation ${name} (interface ${ifName})` };
    }
  }
  const single = pick(podAnn, ANNOTATION.ippool);
  if (single) {
    const [name, raw] = single;
    const f = parseFamilies(name, raw, parseJson(name, raw, FAMILY_FORM));
    if (f.interface === undefined || f.interface === ifName) {
      const fam = families(f, state);
      if (Object.keys(fam).length > 0) return { families: fam, rule: `pod annotation ${name}` };
    }
  }
  // Application pools (ipkeeper.io/subnet(s)) come after the pod's own pools, as in Spiderpool.
  const app = chooseAppPools(input.pod, ifName, state);
  if (app) return app;
  const nsAnn = input.namespace?.annotations;
  const ns4 = pick(nsAnn, ANNOTATION.nsDefault4);
  const ns6 = pick(nsAnn, ANNOTATION.nsDefault6);
  if (ns4 || ns6) {
    const list = (p: [string, string] | undefined): string[] | undefined => {
      if (!p) return undefined;
      const [name, raw] = p;
      // A plain pool name is accepted as well as a JSON list.
      if (/^[a-z0-9*][-a-z0-9.*]*$/.test(raw)) return [raw];
      const l = nameList(parseJson(name, raw, '["pool", ...]'));
      if (!l) throw badAnnotation(name, raw, '["pool", ...]');
      return l;
    };
    const fam = families({ ipv4: list(ns4), ipv6: list(ns6) }, state);
    if (Object.keys(fam).length > 0) {
      return {
        families: fam,
        rule: `namespace ${input.namespace?.name} annotation ${[ns4?.[0], ns6?.[0]].filter(Boolean).join(' / ')}`,
      };
    }
  }
  const cfg = input.configPools;
  if (cfg && ((cfg.ipv4?.length ?? 0) > 0 || (cfg.ipv6?.length ?? 0) > 0)) {
    return { families: families(cfg, state), rule: 'CNI config ipam.pools' };
  }
  const out: PoolChoice['families'] = {};
  for (const name of [...state.pools.keys()].sort()) {
    const p = state.pools.get(name)?.compiled;
    if (!p || !p.isDefault) continue;
    (out[p.family] ??= []).push(name);
  }
  return { families: out, rule: 'pools marked default: true' };
}

/** Whether `labels` match a Kubernetes label selector (an empty selector matches everything). */
export function matchSelector(sel: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const val = labels[e.key];
    const values = e.values ?? [];
    switch (e.operator) {
      case 'In':
        if (!has || !values.includes(val as string)) return false;
        break;
      case 'NotIn':
        if (has && values.includes(val as string)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/**
 * Why a pool may not serve this request, or undefined when it may. The checks follow the pool's
 * spec: disable, nodeName, namespaceName, multusName, nodeAffinity, namespaceAffinity, podAffinity.
 */
export function excludedBecause(p: CompiledPool, ctx: FilterContext): string | undefined {
  const s = p.spec;
  if (p.disabled) return `pool "${p.name}" is disabled (spec.disable: true)`;
  if (s.nodeName && s.nodeName.length > 0 && !s.nodeName.includes(ctx.nodeName)) {
    return `pool "${p.name}" is for nodes ${s.nodeName.join(', ')} (spec.nodeName), not ${ctx.nodeName}`;
  }
  if (
    !ctx.podIndependent &&
    s.namespaceName &&
    s.namespaceName.length > 0 &&
    !s.namespaceName.includes(ctx.podNamespace ?? '')
  ) {
    return `pool "${p.name}" is for namespaces ${s.namespaceName.join(', ')} (spec.namespaceName), not ${ctx.podNamespace ?? '(unknown)'}`;
  }
  if (s.multusName && s.multusName.length > 0) {
    const ok = s.multusName.some((m) => m === ctx.cniNetwork || m.split('/').pop() === ctx.cniNetwork);
    if (!ok)
      return `pool "${p.name}" is for networks ${s.multusName.join(', ')} (spec.multusName), not ${ctx.cniNetwork}`;
  }
  const selectors: [LabelSelector | undefined, string, Record<string, string> | undefined][] = [
    [s.nodeAffinity, 'nodeAffinity', ctx.node?.labels],
    [s.namespaceAffinity, 'namespaceAffinity', ctx.namespace?.labels],
    [s.podAffinity, 'podAffinity', ctx.pod?.labels],
  ];
  for (const [sel, field, labels] of selectors) {
    if (!sel || (ctx.podIndependent && field !== 'nodeAffinity')) continue;
    if (!labels) {
      return `pool "${p.name}" has spec.${field} but the ${field.replace('Affinity', '')}'s labels are unknown${ctx.live ? '' : ' (no cluster view: embedded mode)'}`;
    }
    if (!matchSelector(sel, labels))
      return `pool "${p.name}" spec.${field} does not match the ${field.replace('Affinity', '')}'s labels`;
  }
  return undefined;
}
