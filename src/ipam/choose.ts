/**
 * @module ipam/choose
 * Which pools a request may take addresses from, per family, and why — the first matching rule wins:
 *
 *   1. the CNI config's `ipam.pools` (`ipv4: [...]`, `ipv6: [...]`), each list an ordered set of backups
 *   2. every pool marked `default: true`, by name
 *
 * (Kubernetes mode adds the pod and namespace annotations above these; see DESIGN.md.) Pool names may
 * hold `*` wildcards, expanded against the existing pools in name order. The `trace` explains the
 * decision so a refusal can say which rule chose which pools.
 */
import type { Family } from '../net/addr.ts';
import type { IpamState } from './state.ts';

export interface PoolChoice {
  /** Ordered candidates per family; a family absent here is not asked for. */
  families: Partial<Record<Family, string[]>>;
  /** The rule that decided, for messages: `CNI config ipam.pools`, `default pools`. */
  rule: string;
}

export interface ChooseInput {
  configPools?: { ipv4?: string[]; ipv6?: string[] };
}

function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${body}$`);
}

/** Expands wildcards against existing pools (sorted); plain names stay even if missing. */
export function expandNames(names: string[], state: IpamState): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const all = [...state.pools.keys()].sort();
  for (const n of names) {
    const matches = n.includes('*') ? all.filter((p) => globToRegExp(n).test(p)) : [n];
    for (const m of matches) {
      if (!seen.has(m)) {
        seen.add(m);
        out.push(m);
      }
    }
  }
  return out;
}

export function choosePools(input: ChooseInput, state: IpamState): PoolChoice {
  const cfg = input.configPools;
  if (cfg && ((cfg.ipv4?.length ?? 0) > 0 || (cfg.ipv6?.length ?? 0) > 0)) {
    const families: PoolChoice['families'] = {};
    if (cfg.ipv4 && cfg.ipv4.length > 0) families[4] = expandNames(cfg.ipv4, state);
    if (cfg.ipv6 && cfg.ipv6.length > 0) families[6] = expandNames(cfg.ipv6, state);
    return { families, rule: 'CNI config ipam.pools' };
  }
  const families: PoolChoice['families'] = {};
  for (const name of [...state.pools.keys()].sort()) {
    const p = state.pools.get(name)?.compiled;
    if (!p || !p.isDefault) continue;
    (families[p.family] ??= []).push(name);
  }
  return { families, rule: 'pools marked default: true' };
}
