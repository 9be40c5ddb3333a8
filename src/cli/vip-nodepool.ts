/**
 * @module cli/vip-nodepool
 * How `ipkeeper get vip|nodepool` and `ipkeeper describe vip|nodepool` print VIPs (as `kubectl get vip`
 * prints Kube-OVN's, seed 002) and node pools (addresses, which are used and by whom, seed 004).
 */
import type { NodePool, VIP } from '../api/kinds.ts';
import { renderTable } from './table.ts';

/** Where the VIP's address comes from: its pools, or `subnet/<name>` for a VIP from a Subnet. */
export function vipSource(v: VIP, sep = ','): string {
  if (v.spec.subnet !== undefined)
    return [v.spec.subnet, v.spec.ipv6Subnet]
      .filter((x) => x !== undefined)
      .map((x) => `subnet/${x}`)
      .join(sep);
  return [v.spec.pool, v.spec.ipv6Pool].filter(Boolean).join(sep);
}

export function vipTable(items: VIP[], wide: boolean): string {
  const head = ['NAME', 'V4IP', 'MAC', 'V6IP', 'POOL', 'READY', 'POD', 'AAP-PODS'];
  if (wide) head.push('TYPE', 'NAMESPACE', 'SELECTOR', 'MESSAGE');
  return renderTable(
    head,
    items.map((v) => {
      const s = v.status ?? {};
      const row = [
        v.metadata.name,
        s.v4ip ?? '',
        s.mac ?? '',
        s.v6ip ?? '',
        vipSource(v),
        String(s.ready === true),
        s.pod ?? '',
        (s.pods ?? []).join(','),
      ];
      if (wide)
        row.push(
          v.spec.type ?? '',
          v.spec.namespace ?? '',
          (v.spec.selector ?? []).join(','),
          s.message ?? '',
        );
      return row;
    }),
  );
}

export function nodePoolTable(items: NodePool[], wide: boolean): string {
  const head = ['NAME', 'ADDRESSES', 'USED', 'UPDATED'];
  if (wide) head.push('SUBNETS', 'NETWORK');
  return renderTable(
    head,
    items.map((np) => {
      const row = [
        np.metadata.name,
        String(Object.keys(np.spec.pool ?? {}).length),
        String(Object.keys(np.status?.used ?? {}).length),
        np.status?.updatedAt ?? '',
      ];
      if (wide) row.push((np.spec.subnets ?? []).join(','), np.spec.network ?? 'default');
      return row;
    }),
  );
}

/** `describe vip`: addresses, MAC, the pod using it and the pods bound by allowed address pairs. */
export function describeVip(v: VIP): string {
  const s = v.status ?? {};
  const rows: [string, string][] = [
    ['Name', v.metadata.name],
    ['Type', v.spec.type || '<ipam placeholder>'],
    v.spec.subnet !== undefined
      ? ['Subnet', [v.spec.subnet, v.spec.ipv6Subnet].filter(Boolean).join(', ')]
      : ['Pool', [v.spec.pool, v.spec.ipv6Pool].filter(Boolean).join(', ')],
    ['V4IP', s.v4ip ?? '<none>'],
    ['V6IP', s.v6ip ?? '<none>'],
    ['MAC', s.mac ?? '<none>'],
    ['Ready', String(s.ready === true)],
    ['Used by pod', s.pod ?? '<none>'],
    ['AAP namespace', v.spec.namespace ?? '<none>'],
    [
      'AAP selector',
      [...(v.spec.selector ?? []), ...(v.spec.podSelector ? [JSON.stringify(v.spec.podSelector)] : [])].join(
        ', ',
      ) || '<none>',
    ],
    ['AAP pods', (s.pods ?? []).join(', ') || '<none>'],
  ];
  if (s.message) rows.push(['Message', s.message]);
  const w = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, x]) => `${`${k}:`.padEnd(w)}${x}`).join('\n');
}

/** `describe nodepool`: every address, listed or only still in use, with its owner and resource. */
export function describeNodePool(np: NodePool): string {
  const pool = np.spec.pool ?? {};
  const used = np.status?.used ?? {};
  const ips = [...new Set([...Object.keys(pool), ...Object.keys(used)])];
  const rows = ips.map((ip) => [
    ip,
    ip in pool ? (ip in used ? 'used' : 'free') : 'removed, still in use',
    used[ip]?.owner ?? '',
    pool[ip]?.resource ?? used[ip]?.resource ?? '',
  ]);
  return [
    `Name:      ${np.metadata.name}`,
    `Subnets:   ${(np.spec.subnets ?? []).join(', ') || '<none: /32 and /128 host addresses>'}`,
    `Updated:   ${np.status?.updatedAt ?? '<never: the node agent has not reported yet>'}`,
    '',
    renderTable(['IP', 'STATE', 'OWNER', 'RESOURCE'], rows),
  ].join('\n');
}
