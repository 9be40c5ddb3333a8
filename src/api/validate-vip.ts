/**
 * @module api/validate-vip
 * The semantic rules of `VIP` and `NodePool` that their schemas cannot express: addresses parse and
 * are of the right family, a selector is `key: value`, allowed address pairs name a namespace, and a
 * node pool lists single addresses in their canonical spelling, inside its subnets. Called by
 * `validate.ts` after the schema check; each problem names the field, the value and the fix.
 */
import { NetError, formatAddr, parseAddr, type Addr, type Family } from '../net/addr.ts';
import { parsePrefix, prefixContains, type Prefix } from '../net/prefix.ts';
import type { NodePool, VIP } from './kinds.ts';

export interface FieldProblem {
  field: string;
  value?: unknown;
  message: string;
}

/** A Kube-OVN selector item: `key: value` (or `key=value`). */
const SELECTOR_ITEM = /^\s*([A-Za-z0-9][-A-Za-z0-9_./]*)\s*[:=]\s*([-A-Za-z0-9_.]*)\s*$/;

/**
 * Parses Kube-OVN's selector list (`["app: aap1"]`) into labels.
 * @returns undefined when an item is not `key: value` (validation reports which).
 */
export function parseSelectorItems(items: string[]): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  for (const item of items) {
    const m = SELECTOR_ITEM.exec(item);
    if (!m) return undefined;
    out[m[1] as string] = m[2] as string;
  }
  return out;
}

function addr(problems: FieldProblem[], field: string, value: string): Addr | undefined {
  try {
    return parseAddr(value);
  } catch (e) {
    if (!(e instanceof NetError)) throw e;
    problems.push({ field, value, message: `${JSON.stringify(value)} is not an IP address: ${e.message}` });
    return undefined;
  }
}

function prefix(problems: FieldProblem[], field: string, value: string): Prefix | undefined {
  try {
    return parsePrefix(value);
  } catch (e) {
    if (!(e instanceof NetError)) throw e;
    problems.push({ field, value, message: e.message });
    return undefined;
  }
}

export function vipSemantics(v: VIP): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const s = v.spec;
  // Where the address comes from: exactly one IPPool (spec.pool) or Subnet (spec.subnet).
  if (s.pool === undefined && s.subnet === undefined) {
    problems.push({
      field: 'spec.pool',
      message:
        'neither spec.pool nor spec.subnet is set; name the IPPool (spec.pool) or the Subnet (spec.subnet) the address comes from',
    });
  } else if (s.pool !== undefined && s.subnet !== undefined) {
    problems.push({
      field: 'spec.subnet',
      value: s.subnet,
      message: `spec.pool "${s.pool}" and spec.subnet "${s.subnet}" are both set; a VIP takes its address from one: drop one of them`,
    });
  }
  if (s.ipv6Pool !== undefined && s.pool === undefined) {
    problems.push({
      field: 'spec.ipv6Pool',
      value: s.ipv6Pool,
      message: 'spec.ipv6Pool goes with spec.pool; with spec.subnet name the IPv6 Subnet in spec.ipv6Subnet',
    });
  }
  if (s.ipv6Subnet !== undefined && s.subnet === undefined) {
    problems.push({
      field: 'spec.ipv6Subnet',
      value: s.ipv6Subnet,
      message: 'spec.ipv6Subnet goes with spec.subnet; with spec.pool name the IPv6 pool in spec.ipv6Pool',
    });
  }
  for (const [field, want, other] of [
    ['v4ip', 4, 'v6ip'],
    ['v6ip', 6, 'v4ip'],
  ] as const) {
    const value = s[field];
    if (value === undefined || value === '') continue;
    const a = addr(problems, `spec.${field}`, value);
    if (a && a.family !== want) {
      problems.push({
        field: `spec.${field}`,
        value,
        message: `${JSON.stringify(value)} is IPv${a.family}; put it in spec.${other}`,
      });
    }
  }
  s.selector?.forEach((item, i) => {
    if (!SELECTOR_ITEM.test(item)) {
      problems.push({
        field: `spec.selector[${i}]`,
        value: item,
        message: `${JSON.stringify(item)} is not a label "key: value", e.g. "app: aap1"`,
      });
    }
  });
  if ((s.selector !== undefined || s.podSelector !== undefined) && s.namespace === undefined) {
    problems.push({
      field: 'spec.namespace',
      message:
        'spec.namespace is required with spec.selector/podSelector: allowed address pairs bind only pods of one namespace; name it',
    });
  }
  return problems;
}

export function nodePoolSemantics(np: NodePool): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const s = np.spec;
  const subnets = new Map<Family, Prefix>();
  s.subnets?.forEach((item, i) => {
    const p = prefix(problems, `spec.subnets[${i}]`, item);
    if (!p) return;
    if (subnets.has(p.family)) {
      problems.push({
        field: `spec.subnets[${i}]`,
        value: item,
        message: `a second IPv${p.family} subnet; a node pool has at most one subnet per family`,
      });
      return;
    }
    subnets.set(p.family, p);
  });
  const gateways = new Set<Family>();
  s.gateways?.forEach((item, i) => {
    const a = addr(problems, `spec.gateways[${i}]`, item);
    if (!a) return;
    const sub = subnets.get(a.family);
    if (gateways.has(a.family)) {
      problems.push({
        field: `spec.gateways[${i}]`,
        value: item,
        message: `a second IPv${a.family} gateway; give one per family`,
      });
    } else if (!sub || !prefixContains(sub, a)) {
      problems.push({
        field: `spec.gateways[${i}]`,
        value: item,
        message: `${JSON.stringify(item)} is not inside an IPv${a.family} subnet of spec.subnets; add the subnet or fix the gateway`,
      });
    }
    gateways.add(a.family);
  });
  for (const key of Object.keys(s.pool ?? {})) {
    const field = `spec.pool[${JSON.stringify(key)}]`;
    if (key.includes('/') || key.includes('-')) {
      problems.push({
        field,
        value: key,
        message:
          "a node pool lists single addresses (no CIDRs or ranges, as in Cilium's CRD mode); list each address",
      });
      continue;
    }
    const a = addr(problems, field, key);
    if (!a) continue;
    const canonical = formatAddr(a);
    if (canonical !== key) {
      problems.push({
        field,
        value: key,
        message: `write the address as ${JSON.stringify(canonical)} (one spelling per address)`,
      });
    }
    const sub = subnets.get(a.family);
    if (sub && !prefixContains(sub, a)) {
      problems.push({
        field,
        value: key,
        message: `${key} is outside spec.subnets' IPv${a.family} subnet; widen it or drop the address`,
      });
    }
  }
  s.routes?.forEach((r, i) => {
    prefix(problems, `spec.routes[${i}].dst`, r.dst);
    if (r.gw !== undefined) addr(problems, `spec.routes[${i}].gw`, r.gw);
  });
  return problems;
}
