import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { allCrds, crdsYaml } from './crd.ts';
import { KINDS } from './kinds.ts';
import { SCHEMAS, schemaOf } from './schemas.ts';

it('deploy/crds/ipkeeper.io.yaml is what `ipkeeper crds` prints (regenerate: node scripts/gen-docs.ts)', () => {
  assert.equal(
    readFileSync(new URL('../../deploy/crds/ipkeeper.io.yaml', import.meta.url), 'utf8'),
    crdsYaml(),
  );
});

it('every kind has a CRD with a structural schema (no const, anyOf or patternProperties)', () => {
  const crds = allCrds();
  assert.equal(crds.length, Object.keys(KINDS).length + 1, 'every kind plus KeyValue');
  const walk = (s: unknown, path: string): void => {
    if (s === null || typeof s !== 'object') return;
    for (const bad of ['const', 'anyOf', 'patternProperties', '$id', '~kind']) {
      assert.ok(!(bad in (s as object)), `${path} has ${bad}`);
    }
    for (const [k, v] of Object.entries(s)) walk(v, `${path}.${k}`);
  };
  for (const c of crds) walk(c, String((c.metadata as { name: string }).name));
});

it('an IPPool CRD has the status subresource and the usage printer columns', () => {
  const pool = allCrds().find((c) => (c.metadata as { name: string }).name === 'ippools.ipkeeper.io') as any;
  const v = pool.spec.versions[0];
  assert.deepEqual(v.subresources, { status: {} });
  assert.deepEqual(
    v.additionalPrinterColumns
      .filter((c: { priority?: number }) => !c.priority)
      .map((c: { name: string }) => c.name),
    ['Subnet', 'Used', 'Total', 'Default', 'Disabled', 'Age'],
  );
  assert.deepEqual(pool.spec.names.shortNames, ['ipp', 'pool', 'pools']);
});

it('Subnet, Endpoint, NodePool and VIP show what `kubectl get` users look for', () => {
  const columns = (plural: string, wide = false): string[] => {
    const crd = allCrds().find(
      (c) => (c.metadata as { name: string }).name === `${plural}.ipkeeper.io`,
    ) as any;
    return crd.spec.versions[0].additionalPrinterColumns
      .filter((c: { priority?: number }) => wide || !c.priority)
      .map((c: { name: string }) => c.name);
  };
  assert.deepEqual(columns('subnets'), ['Subnet', 'Total', 'Allocated', 'Free', 'Age']);
  assert.deepEqual(columns('endpoints'), ['Node', 'IP', 'Fixed', 'Age']);
  assert.deepEqual(columns('nodepools'), ['Subnets', 'Updated', 'Age']);
  assert.ok(columns('vips', true).includes('Pods'));
  // Every column path names a field the schema has (a typo prints an empty column, silently).
  for (const crd of allCrds() as any[]) {
    const v = crd.spec.versions[0];
    for (const col of v.additionalPrinterColumns) {
      if (col.jsonPath.startsWith('.metadata.')) continue;
      let s = v.schema.openAPIV3Schema;
      for (const part of col.jsonPath.slice(1).split('.')) {
        const [name, ...idx] = part.split('[');
        s = s?.properties?.[name!];
        for (let i = 0; i < idx.length; i++) s = s?.items;
      }
      assert.ok(s, `${crd.metadata.name} column ${col.name}: ${col.jsonPath} is not in the schema`);
    }
  }
});

it("every kind's hasStatus says whether its schema has a status, and every kind has a schema", () => {
  for (const info of Object.values(KINDS)) {
    const props = (schemaOf(info) as { properties?: Record<string, unknown> }).properties ?? {};
    assert.equal(info.hasStatus, props.status !== undefined, info.kind);
  }
  assert.deepEqual(Object.keys(SCHEMAS).sort(), Object.keys(KINDS).sort());
});
