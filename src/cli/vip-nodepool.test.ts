import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { API_VERSION, type VIP } from '../api/kinds.ts';
import { describeVip, vipSource, vipTable } from './vip-nodepool.ts';

const vip = (spec: VIP['spec']): VIP => ({
  apiVersion: API_VERSION,
  kind: 'VIP',
  metadata: { name: 'v' },
  spec,
});

describe('how a VIP names where its address comes from', () => {
  it('pools as they are, Subnets as subnet/<name>', () => {
    assert.equal(vipSource(vip({ pool: 'p4', ipv6Pool: 'p6' })), 'p4,p6');
    assert.equal(vipSource(vip({ subnet: 's4' })), 'subnet/s4');
    assert.equal(vipSource(vip({ subnet: 's4', ipv6Subnet: 's6' })), 'subnet/s4,subnet/s6');
  });
  it('get vip shows it in the POOL column; describe shows a Subnet row', () => {
    const v = { ...vip({ subnet: 'lb-net' }), status: { ready: true, v4ip: '10.7.0.13' } };
    assert.match(vipTable([v], false).split('\n')[1] ?? '', /10\.7\.0\.13\s.*subnet\/lb-net\s+true/);
    assert.match(describeVip(v), /^Subnet:\s+lb-net$/m);
    assert.doesNotMatch(describeVip(v), /^Pool:/m);
    assert.match(describeVip(vip({ pool: 'p4' })), /^Pool:\s+p4$/m);
  });
});
