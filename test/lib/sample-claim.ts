/**
 * @module test/lib/sample-claim
 * One pod's claim as the engine writes it, for tests of how claims are stored and read.
 */
import { API_VERSION, type IPClaim } from '../../src/api/kinds.ts';

/** The claim's store key. */
export const SAMPLE_CLAIM_KEY = 'ipclaims/default.10.6.0.7';

/** A fresh copy of the claim stored under `SAMPLE_CLAIM_KEY`. */
export function sampleClaim(): IPClaim {
  return {
    apiVersion: API_VERSION,
    kind: 'IPClaim',
    metadata: { name: 'default.10.6.0.7' },
    spec: {
      network: 'default',
      ip: '10.6.0.7',
      family: 4,
      pool: 'p',
      owner: { kind: 'Pod', namespace: 'ns', name: 'web-0', uid: 'u-1' },
      cniNetwork: 'macvlan',
      containerId: 'c'.repeat(64),
      ifName: 'eth0',
      node: 'n1',
      createdAt: '2026-01-01T00:00:00.000Z',
    },
  };
}
