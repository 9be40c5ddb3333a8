import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IpamError } from '../errors.ts';
import { API_VERSION, type Endpoint } from '../api/kinds.ts';
import { validateObject } from '../api/validate.ts';
import { parseRetention, reclaimDecision, statefulSetOrdinal, type ReclaimFacts } from './retention.ts';

describe('parseRetention', () => {
  const ok: [string, number][] = [
    ['0', 0],
    ['0s', 0],
    ['90s', 90_000],
    ['1500ms', 1_500],
    ['30m', 1_800_000],
    ['24h', 86_400_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['7d', 604_800_000],
    [' 24h ', 86_400_000],
    ['forever', Infinity],
  ];
  for (const [text, ms] of ok) it(`"${text}" is ${ms} ms`, () => assert.equal(parseRetention(text), ms));

  for (const bad of ['', '-1h', '24', 'h', '1y', 'Forever', 'never', '1h 30m', '1e3s', '.5h']) {
    it(`"${bad}" is refused, naming the annotation, the value and the accepted forms`, () => {
      assert.throws(
        () => parseRetention(bad),
        (e: unknown) =>
          e instanceof IpamError &&
          e.code === 'INVALID_OBJECT' &&
          e.message.includes('annotation ipkeeper.io/ip-retention') &&
          e.message.includes(JSON.stringify(bad)) &&
          e.message.includes('forever') &&
          e.message.includes('24h'),
      );
    });
  }

  it('an IPPool spec.ipRetention is validated with the same rule, naming the field', () => {
    const pool = (ipRetention: string) => ({
      apiVersion: API_VERSION,
      kind: 'IPPool',
      metadata: { name: 'p' },
      spec: { subnet: '10.0.0.0/24', ipRetention },
    });
    validateObject(pool('24h'));
    validateObject(pool('forever'));
    assert.throws(
      () => validateObject(pool('1 day')),
      /spec\.ipRetention: "1 day" is not a retention; use 0, a duration/,
    );
  });
});

describe('statefulSetOrdinal', () => {
  const cases: [string, string, number | undefined][] = [
    ['web-0', 'web', 0],
    ['web-12', 'web', 12],
    ['web-a-3', 'web-a', 3],
    ['web-03', 'web', undefined],
    ['web-', 'web', undefined],
    ['webx-1', 'web', undefined],
    ['db-1', 'web', undefined],
  ];
  for (const [pod, set, want] of cases)
    it(`${pod} of ${set} -> ${want}`, () => assert.equal(statefulSetOrdinal(pod, set), want));
});

describe('reclaimDecision', () => {
  const NOW = Date.parse('2026-01-02T00:00:00Z');
  const HOUR = 3_600_000;
  const ep = (spec: Partial<Endpoint['spec']>, name = 'web-1'): Endpoint => ({
    apiVersion: API_VERSION,
    kind: 'Endpoint',
    metadata: { name, namespace: 'db' },
    spec: { interfaces: [], podUid: 'pod-uid-1', ...spec },
  });
  const sts = { kind: 'StatefulSet', name: 'web', uid: 'sts-uid-1' };
  const vm = { kind: 'VirtualMachine', name: 'vm1', uid: 'vm-uid-1' };
  const at = (msAgo: number) => new Date(NOW - msAgo).toISOString();
  const facts = (f: Partial<ReclaimFacts>): ReclaimFacts => ({ podExists: false, now: NOW, ...f });

  const cases: {
    name: string;
    ep: Endpoint;
    facts: ReclaimFacts;
    reclaim: boolean;
    reason: RegExp;
    until?: number;
    markReleased?: boolean;
  }[] = [
    {
      name: 'a live fixed pod is never reclaimed, whatever its owner',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '0' }),
      facts: facts({ podExists: true, podUid: 'pod-uid-1', owner: { exists: false } }),
      reclaim: false,
      reason: /pod db\/web-1 exists/,
    },
    {
      name: 'a live non-fixed pod is never reclaimed',
      ep: ep({}),
      facts: facts({ podExists: true, podUid: 'pod-uid-1' }),
      reclaim: false,
      reason: /exists/,
    },
    {
      name: 'a fixed pod recreated (new uid) before its ADD keeps its addresses',
      ep: ep({ fixed: 'StatefulSet', owner: sts, releasedAt: at(HOUR) }),
      facts: facts({
        podExists: true,
        podUid: 'pod-uid-2',
        owner: { exists: true, uid: 'sts-uid-1', replicas: 3 },
      }),
      reclaim: false,
      reason: /gets these addresses back/,
    },
    {
      name: 'a non-fixed pod recreated under its name before its ADD: the old addresses go',
      ep: ep({}),
      facts: facts({ podExists: true, podUid: 'pod-uid-2' }),
      reclaim: true,
      reason: /recreated \(uid pod-uid-1 is now pod-uid-2\)/,
    },
    {
      name: 'a non-fixed pod gone: reclaimed at once',
      ep: ep({ releasedAt: at(0) }),
      facts: facts({}),
      reclaim: true,
      reason: /not fixed/,
    },
    {
      name: 'StatefulSet pod gone, set exists, ordinal within replicas: held',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '0', releasedAt: at(10 * HOUR) }),
      facts: facts({ owner: { exists: true, uid: 'sts-uid-1', replicas: 2 } }),
      reclaim: false,
      reason: /StatefulSet web still wants it/,
    },
    {
      name: 'StatefulSet scaled below the ordinal, retention 0: reclaimed',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '0', releasedAt: at(1000) }),
      facts: facts({ owner: { exists: true, uid: 'sts-uid-1', replicas: 1 } }),
      reclaim: true,
      reason: /scaled to 1 replicas, below ordinal 1/,
    },
    {
      name: 'StatefulSet scaled down, retention 24h, 1h after release: held until release + 24h',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '24h', releasedAt: at(HOUR) }),
      facts: facts({ owner: { exists: true, uid: 'sts-uid-1', replicas: 0 } }),
      reclaim: false,
      reason: /retention 24h since .* lasts until/,
      until: NOW + 23 * HOUR,
    },
    {
      name: 'StatefulSet scaled down, retention 24h, lapsed: reclaimed',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '24h', releasedAt: at(24 * HOUR) }),
      facts: facts({ owner: { exists: true, uid: 'sts-uid-1', replicas: 0 } }),
      reclaim: true,
      reason: /retention 24h is over/,
    },
    {
      name: 'StatefulSet deleted, retention forever: only by hand',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: 'forever', releasedAt: at(1000 * HOUR) }),
      facts: facts({ owner: { exists: false } }),
      reclaim: false,
      reason:
        /StatefulSet web is gone, but retention is forever: reclaim it by hand \(ipkeeper reclaim endpoint db\/web-1\)/,
    },
    {
      name: 'StatefulSet recreated with a new uid: the owner no longer wants it',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '0', releasedAt: at(1000) }),
      facts: facts({ owner: { exists: true, uid: 'sts-uid-2', replicas: 3 } }),
      reclaim: true,
      reason: /recreated \(uid sts-uid-1 is now sts-uid-2\)/,
    },
    {
      name: 'owner not looked up: held (not knowing frees nothing)',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '0', releasedAt: at(1000 * HOUR) }),
      facts: facts({}),
      reclaim: false,
      reason: /not looked up/,
    },
    {
      name: 'pod gone without a CNI DEL, owner gone, retention 1h: the clock starts now',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '1h' }),
      facts: facts({ owner: { exists: false } }),
      reclaim: false,
      reason: /without a CNI DEL/,
      markReleased: true,
    },
    {
      name: 'pod gone without a CNI DEL, owner gone, retention 0: reclaimed',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: '0' }),
      facts: facts({ owner: { exists: false } }),
      reclaim: true,
      reason: /retention 0/,
    },
    {
      name: 'no retention recorded counts as 0',
      ep: ep({ fixed: 'StatefulSet', owner: sts, releasedAt: at(1) }),
      facts: facts({ owner: { exists: false } }),
      reclaim: true,
      reason: /is gone/,
    },
    {
      name: 'VM stopped (VM exists, same uid): held',
      ep: ep({ fixed: 'VirtualMachine', owner: vm, retention: '0', releasedAt: at(HOUR) }, 'vm1'),
      facts: facts({ owner: { exists: true, uid: 'vm-uid-1' } }),
      reclaim: false,
      reason: /VirtualMachine vm1 still wants it/,
    },
    {
      name: 'VM deleted, retention 30m, lapsed: reclaimed',
      ep: ep({ fixed: 'VirtualMachine', owner: vm, retention: '30m', releasedAt: at(HOUR) }, 'vm1'),
      facts: facts({ owner: { exists: false } }),
      reclaim: true,
      reason: /VirtualMachine vm1 is gone/,
    },
    {
      name: 'a VirtualMachineInstance owner is recreated on every VM restart: its new uid is no reason',
      ep: ep(
        {
          fixed: 'VirtualMachine',
          owner: { kind: 'VirtualMachineInstance', name: 'vm1', uid: 'vmi-1' },
          releasedAt: at(HOUR),
        },
        'vm1',
      ),
      facts: facts({ owner: { exists: true, uid: 'vmi-2' } }),
      reclaim: false,
      reason: /still wants it/,
    },
    {
      name: 'a bare pod fixed by annotation (KCE), retention 2h, 1h after release: held',
      ep: ep({ fixed: 'Pod', retention: '2h', releasedAt: at(HOUR) }, 'static-1'),
      facts: facts({}),
      reclaim: false,
      reason: /no controller owns static-1/,
      until: NOW + HOUR,
    },
    {
      name: 'a retention that does not parse (hand edit) holds the addresses',
      ep: ep({ fixed: 'StatefulSet', owner: sts, retention: 'soon', releasedAt: at(1000 * HOUR) }),
      facts: facts({ owner: { exists: false } }),
      reclaim: false,
      reason: /Endpoint db\/web-1 spec\.retention: "soon" is not a retention.*reclaim it by hand/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = reclaimDecision(c.ep, c.facts);
      assert.equal(d.reclaim, c.reclaim, d.reason);
      assert.match(d.reason, c.reason);
      if (!d.reclaim) {
        assert.equal(d.until, c.until);
        assert.equal(d.markReleased, c.markReleased);
      }
    });
  }
});
