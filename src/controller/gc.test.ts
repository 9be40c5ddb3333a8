import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { API_VERSION, type IPClaim } from '../api/kinds.ts';
import { gcReleaseReason, podLeakReason, type PodFacts } from './gc.ts';

const claim = (uid?: string): IPClaim => ({
  apiVersion: API_VERSION,
  kind: 'IPClaim',
  metadata: { name: 'default.10.0.0.5' },
  spec: {
    network: 'default',
    ip: '10.0.0.5',
    family: 4,
    pool: 'p',
    owner: { kind: 'Pod', namespace: 'ns', name: 'web', ...(uid ? { uid } : {}) },
    createdAt: '2026-01-01T00:00:00Z',
  },
});

const T = Date.parse('2026-01-01T01:00:00Z');
const both = { terminatingOnReadyNode: true, terminatingOnNotReadyNode: true };
const terminating = (at: string, grace = 30): PodFacts => ({
  uid: 'u1',
  phase: 'Running',
  nodeName: 'n1',
  deletionTimestamp: at,
  deletionGracePeriodSeconds: grace,
});

describe('gc: which pods leaked their addresses', () => {
  const cases: {
    name: string;
    pod: PodFacts | undefined;
    ready?: boolean;
    opts?: typeof both;
    uid?: string;
    want: RegExp | undefined;
  }[] = [
    { name: 'running pod keeps it', pod: { uid: 'u1', phase: 'Running' }, uid: 'u1', want: undefined },
    { name: 'pending pod keeps it', pod: { uid: 'u1', phase: 'Pending' }, uid: 'u1', want: undefined },
    {
      name: 'a claim without uid matches any pod of the name',
      pod: { uid: 'u9', phase: 'Running' },
      want: undefined,
    },
    { name: 'gone', pod: undefined, uid: 'u1', want: /^pod ns\/web is gone$/ },
    {
      name: 'recreated',
      pod: { uid: 'u2', phase: 'Running' },
      uid: 'u1',
      want: /was recreated \(uid u1 is now u2\)/,
    },
    {
      name: 'Succeeded',
      pod: { uid: 'u1', phase: 'Succeeded' },
      uid: 'u1',
      want: /has finished \(phase Succeeded\)/,
    },
    { name: 'Failed', pod: { uid: 'u1', phase: 'Failed' }, uid: 'u1', want: /has finished \(phase Failed\)/ },
    // deletionTimestamp already includes the grace; the grace is waited once more (Spiderpool's rule).
    {
      name: 'terminating, within deletionTimestamp + grace',
      pod: terminating('2026-01-01T00:59:40Z'),
      ready: true,
      uid: 'u1',
      want: undefined,
    },
    {
      name: 'terminating, exactly at the deadline',
      pod: terminating('2026-01-01T00:59:30Z'),
      ready: true,
      uid: 'u1',
      want: undefined,
    },
    {
      name: 'terminating past it on a Ready node',
      pod: terminating('2026-01-01T00:59:29Z'),
      ready: true,
      uid: 'u1',
      want: /terminating past its grace period .* on Ready node n1/,
    },
    {
      name: 'terminating past it on a NotReady node',
      pod: terminating('2026-01-01T00:50:00Z'),
      ready: false,
      uid: 'u1',
      want: /on NotReady node n1/,
    },
    {
      name: 'unknown node counts as NotReady',
      pod: terminating('2026-01-01T00:50:00Z'),
      ready: undefined,
      uid: 'u1',
      want: /on NotReady node/,
    },
    {
      name: 'Ready-node switch off',
      pod: terminating('2026-01-01T00:50:00Z'),
      ready: true,
      opts: { ...both, terminatingOnReadyNode: false },
      uid: 'u1',
      want: undefined,
    },
    {
      name: 'NotReady-node switch off',
      pod: terminating('2026-01-01T00:50:00Z'),
      ready: false,
      opts: { ...both, terminatingOnNotReadyNode: false },
      uid: 'u1',
      want: undefined,
    },
    {
      name: 'NotReady switch off leaves Ready on',
      pod: terminating('2026-01-01T00:50:00Z'),
      ready: true,
      opts: { ...both, terminatingOnNotReadyNode: false },
      uid: 'u1',
      want: /on Ready node/,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = podLeakReason(claim(c.uid), c.pod, c.ready, T, c.opts ?? both);
      if (c.want === undefined) assert.equal(got, undefined);
      else assert.match(got ?? '(kept)', c.want);
    });
  }
});

describe('gc: the metric label of a release', () => {
  const cases: { name: string; pod: PodFacts | undefined; fixed?: boolean; want: string }[] = [
    { name: 'pod gone', pod: undefined, want: 'pod_gone' },
    { name: 'pod recreated', pod: { uid: 'u2', phase: 'Running' }, want: 'pod_recreated' },
    { name: 'pod finished', pod: { uid: 'u1', phase: 'Succeeded' }, want: 'pod_finished' },
    { name: 'pod failed', pod: { uid: 'u1', phase: 'Failed' }, want: 'pod_finished' },
    {
      name: 'pod terminating past its grace',
      pod: terminating('2026-01-01T00:00:00Z'),
      want: 'pod_terminating',
    },
    { name: "a fixed endpoint's address (retention)", pod: undefined, fixed: true, want: 'fixed_owner_gone' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      // Only for claims podLeakReason (or retention) releases: the label agrees with the reason.
      if (!c.fixed) assert.ok(podLeakReason(claim('u1'), c.pod, true, T, both));
      assert.equal(gcReleaseReason(claim('u1'), c.pod, c.fixed === true), c.want);
    });
  }
});
