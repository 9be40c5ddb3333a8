/**
 * @module ipam/objects
 * Applying, reading and deleting user objects (pools, reservations) with the rules that keep held
 * addresses safe: a pool may not drop an address that is in use, change its subnet or network
 * while it holds claims, or be deleted while it holds claims (unless forced). Every object of an
 * apply is validated before anything is written, so a bad manifest changes nothing.
 *
 * Errors: IpamError INVALID_OBJECT, NOT_FOUND, CONFLICT; StoreError from the store.
 */
import { IpamError } from '../errors.ts';
import type { Store } from '../store/store.ts';
import { mutate } from '../store/retry.ts';
import { formatValue } from '../net/addr.ts';
import { KINDS, storeKey, type AnyObject, type IPPool, type KindInfo, type VIP } from '../api/kinds.ts';
import { compilePool, type CompiledPool } from './pools.ts';
import type { Ipam } from './engine.ts';
import {
  allocateVips,
  checkVips,
  dropClaims,
  releaseVip,
  vipUsers,
  withVipStatus,
  type VipAllocation,
  type VipDeps,
} from './vip.ts';

export interface ApplyOutcome {
  kind: string;
  name: string;
  action: 'created' | 'configured' | 'unchanged';
}

function sameSpec(a: AnyObject, b: AnyObject): boolean {
  return (
    JSON.stringify(a.spec) === JSON.stringify(b.spec) &&
    JSON.stringify(a.metadata.labels ?? {}) === JSON.stringify(b.metadata.labels ?? {}) &&
    JSON.stringify(a.metadata.annotations ?? {}) === JSON.stringify(b.metadata.annotations ?? {})
  );
}

/**
 * The refusal for a pool (`n`, compiled, named `name`) whose addresses overlap one of `others` in the
 * same network and family, or undefined. Pure: the agent's apply and the controller's admission
 * webhook share it. Pools in `others` that do not compile (never validated) are skipped.
 */
export function poolOverlapError(
  n: CompiledPool,
  name: string,
  others: Map<string, IPPool>,
): IpamError | undefined {
  for (const [otherName, other] of others) {
    if (otherName === name) continue;
    let p: CompiledPool;
    try {
      p = compilePool(other);
    } catch {
      continue;
    }
    if (p.network !== n.network || p.family !== n.family) continue;
    const both = p.allocatable.intersect(n.allocatable);
    if (!both.isEmpty()) {
      return new IpamError(
        'INVALID_OBJECT',
        `IPPool "${name}": spec.ips overlaps IPPool "${otherName}" in network "${n.network}" at ${both.toStrings().slice(0, 3).join(', ')}; give each pool its own addresses (or put them in different spec.network)`,
        { field: 'spec.ips', overlaps: otherName },
      );
    }
  }
  return undefined;
}

export class ObjectService {
  private readonly store: Store;
  private readonly ipam: Ipam;
  private readonly now: () => number;

  constructor(store: Store, ipam: Ipam, now: () => number = Date.now) {
    this.store = store;
    this.ipam = ipam;
    this.now = now;
  }

  private info(kind: string): KindInfo {
    const info = KINDS[kind];
    if (!info) throw new IpamError('INVALID_OBJECT', `unknown kind "${kind}"`);
    return info;
  }

  /**
   * Refuses a pool whose addresses overlap another pool's in the same network: one address must
   * have one pool, or usage, reservations and fixed IPs become ambiguous.
   */
  private checkOverlap(next: IPPool, batch: AnyObject[]): void {
    const n = compilePool(next);
    const others = new Map<string, IPPool>();
    for (const [name, e] of this.ipam.state.pools) others.set(name, e.obj);
    for (const o of batch) if (o.kind === 'IPPool') others.set(o.metadata.name, o as IPPool);
    others.delete(next.metadata.name);
    const e = poolOverlapError(n, next.metadata.name, others);
    if (e) throw e;
  }

  /** Refuses a pool change that would strand an address in use. */
  private checkPoolChange(next: IPPool): void {
    const prev = this.ipam.state.pools.get(next.metadata.name);
    const claims = this.ipam.state.claimCountOf(next.metadata.name);
    if (!prev || claims === 0) return;
    const p = prev.compiled;
    const n = compilePool(next);
    if (n.network !== p.network || n.subnet.bits !== p.subnet.bits || n.subnet.base !== p.subnet.base) {
      throw new IpamError(
        'INVALID_OBJECT',
        `IPPool "${next.metadata.name}": spec.subnet and spec.network cannot change while the pool holds ${claims} claim(s); release them or make a new pool`,
        { field: 'spec.subnet' },
      );
    }
    const stranded: string[] = [];
    for (const h of this.ipam.state.claims.values()) {
      if (h.claim.spec.pool !== p.name) continue;
      if (!n.allocatable.contains(h.value)) stranded.push(formatValue(p.family, h.value));
      if (stranded.length >= 10) break;
    }
    if (stranded.length > 0) {
      throw new IpamError(
        'INVALID_OBJECT',
        `IPPool "${next.metadata.name}": the change removes address(es) in use: ${stranded.join(', ')}; release them first (ipkeeper get ipclaims)`,
        { field: 'spec.ips', inUse: stranded },
      );
    }
  }

  /**
   * Validates every object, then creates or updates each one.
   * @throws IpamError INVALID_OBJECT (nothing written) for any invalid object or unsafe change.
   */
  async apply(objects: unknown[]): Promise<ApplyOutcome[]> {
    // Loaded on first use: the validator (TypeBox's schemas) is left out of the agent's start.
    const { validateObject } = await import('../api/validate.ts');
    const valid = objects.map((o) => validateObject<AnyObject>(o));
    for (const o of valid) {
      if (!this.info(o.kind).userApplied) {
        throw new IpamError(
          'INVALID_OBJECT',
          `${o.kind} objects are written by ipkeeper itself, not applied`,
          {
            kind: o.kind,
          },
        );
      }
      if (o.kind === 'IPPool') {
        this.checkPoolChange(o as IPPool);
        this.checkOverlap(o as IPPool, valid);
      }
    }
    // A VIP's address is checked before anything is written (a refused one changes nothing) and taken
    // once the batch's pools are stored, so a manifest may carry a VIP and its pool (vip.ts).
    await checkVips(this.vipDeps(), valid);
    const ordered = [...valid.filter((o) => o.kind !== 'VIP'), ...valid.filter((o) => o.kind === 'VIP')];
    let vips: VipAllocation | undefined;
    const out: ApplyOutcome[] = [];
    for (const o of ordered) {
      if (o.kind === 'VIP') vips ??= await allocateVips(this.vipDeps(), valid);
      const info = this.info(o.kind);
      const key = storeKey(info, o.metadata.name, o.metadata.namespace);
      const r = await mutate<AnyObject>(this.store, key, (cur) => {
        if (cur && sameSpec(cur, o)) return cur;
        const { status: _s, ...rest } = o;
        return {
          ...rest,
          // Status is ipkeeper's (a node pool's status.used, written by its agent): a new spec keeps it.
          ...(cur?.status !== undefined ? { status: cur.status } : {}),
          metadata: {
            ...o.metadata,
            creationTimestamp: cur?.metadata.creationTimestamp ?? new Date(this.now()).toISOString(),
            generation: (cur?.metadata.generation ?? 0) + 1,
          },
        };
      });
      if (r.action === 'created' || r.action === 'updated') this.ipam.state.put(key, r.value, r.version);
      out.push({
        kind: o.kind,
        name: o.metadata.name,
        action: r.action === 'created' ? 'created' : r.action === 'updated' ? 'configured' : 'unchanged',
      });
    }
    await dropClaims(this.vipDeps(), vips?.stale ?? []);
    return out;
  }

  async list(kind: string): Promise<AnyObject[]> {
    const info = this.info(kind);
    return (await this.store.list<AnyObject>(`${info.plural}/`)).map((e) => this.withStatus(e.value));
  }

  /** @throws IpamError NOT_FOUND */
  async get(kind: string, name: string, namespace?: string): Promise<AnyObject> {
    const info = this.info(kind);
    const e = await this.store.get<AnyObject>(storeKey(info, name, namespace));
    if (!e) throw new IpamError('NOT_FOUND', `${kind} "${name}" not found`, { kind, name });
    return this.withStatus(e.value);
  }

  private vipDeps(): VipDeps {
    return { store: this.store, state: this.ipam.state, clock: { now: this.now } };
  }

  private withStatus(o: AnyObject): AnyObject {
    if (o.kind === 'VIP') return withVipStatus(this.ipam.state, o as VIP);
    if (o.kind !== 'IPPool') return o;
    const u = this.ipam.usage().find((p) => p.name === o.metadata.name);
    if (!u) return o;
    return { ...o, status: { total: u.total, used: u.used, reserved: u.reserved, free: u.free } };
  }

  /**
   * Deletes an object. A pool holding claims is refused unless `force` (its claims then stay valid
   * until released, but no new address comes from it).
   * @throws IpamError NOT_FOUND, CONFLICT.
   */
  async delete(
    kind: string,
    name: string,
    opts: { force?: boolean; namespace?: string } = {},
  ): Promise<void> {
    const info = this.info(kind);
    if (!info.userApplied && !opts.force) {
      throw new IpamError(
        'INVALID_OBJECT',
        `${kind} objects are managed by ipkeeper; release the address with CNI DEL, or pass --force`,
      );
    }
    if (kind === 'IPPool' && !opts.force) {
      const n = this.ipam.state.claimCountOf(name);
      if (n > 0) {
        throw new IpamError(
          'CONFLICT',
          `IPPool "${name}" still holds ${n} claim(s); delete the pods using it first, or pass --force`,
          { claims: n },
        );
      }
    }
    const users = kind === 'VIP' ? vipUsers(this.ipam.state, name) : [];
    if (users.length > 0 && !opts.force) {
      throw new IpamError(
        'CONFLICT',
        `VIP "${name}" is the address of pod ${users.join(', ')}; delete the pod first, or pass --force (the address is then released when the pod goes)`,
        { pods: users },
      );
    }
    const key = storeKey(info, name, opts.namespace);
    const r = await mutate<AnyObject>(this.store, key, () => undefined);
    if (r.action === 'absent')
      throw new IpamError('NOT_FOUND', `${kind} "${name}" not found`, { kind, name });
    if (r.action === 'deleted') this.ipam.state.remove(key, r.version);
    // A VIP's addresses go with it; one a pod still uses stays until that pod's DEL (vip.ts).
    if (kind === 'VIP') await releaseVip(this.vipDeps(), name);
  }
}
