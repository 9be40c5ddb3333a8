import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crdsYaml } from '../api/crd.ts';
import {
  CHART_CRDS_FILE,
  CHART_DIR,
  MANIFESTS_FILE,
  RBAC_TEMPLATE_FILE,
  ROOT,
  loadChart,
  plainManifests,
} from './chart.ts';
import { rbacTemplate } from './rbac.ts';

const REGEN = '(regenerate: node scripts/gen-docs.ts)';

describe('generated deploy files are in step with the code', () => {
  it(`templates/rbac.yaml is what src/deploy/rbac.ts makes ${REGEN}`, () => {
    assert.equal(readFileSync(RBAC_TEMPLATE_FILE, 'utf8'), rbacTemplate());
  });
  it(`the chart's crds/ipkeeper.io.yaml is what \`ipkeeper crds\` prints ${REGEN}`, () => {
    assert.equal(readFileSync(CHART_CRDS_FILE, 'utf8'), crdsYaml());
  });
  it(`deploy/manifests/ipkeeper.yaml is the chart rendered with default values ${REGEN}`, () => {
    assert.equal(readFileSync(MANIFESTS_FILE, 'utf8'), plainManifests());
  });
});

describe('the chart', () => {
  const chart = loadChart();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

  it("appVersion is package.json's version, and the image defaults to it", () => {
    assert.equal(chart.appVersion, pkg.version);
    const image = chart.values.image as Record<string, unknown>;
    assert.equal(image.repository, 'ghcr.io/ipkeeper/ipkeeper');
    assert.equal(image.tag, '');
    assert.match(
      plainManifests(),
      new RegExp(`image: "ghcr\\.io/ipkeeper/ipkeeper:${pkg.version.replaceAll('.', '\\.')}"`),
    );
  });

  // Every path a template reads exists in values.yaml (nothing silently empty), and every value is read.
  const leaves = (v: unknown, path: string, out: string[]): string[] => {
    if (
      v !== null &&
      typeof v === 'object' &&
      !Array.isArray(v) &&
      Object.keys(v).length > 0 &&
      !path.endsWith('resources') &&
      !path.endsWith('nodeSelector') &&
      !path.endsWith('annotations')
    ) {
      for (const [k, x] of Object.entries(v)) leaves(x, `${path}.${k}`, out);
    } else out.push(path);
    return out;
  };
  const read = new Set<string>();
  for (const text of Object.values(chart.templates))
    for (const m of text.matchAll(/\.Values((?:\.\w+)+)/g)) read.add(`.Values${m[1]}`);
  const defined = leaves(chart.values, '.Values', []);

  it('templates read only values that values.yaml defines', () => {
    const has = (p: string): boolean => {
      let v: unknown = chart.values;
      for (const k of p.split('.').slice(2)) {
        if (v === null || typeof v !== 'object' || !(k in v)) return false;
        v = (v as Record<string, unknown>)[k];
      }
      return true;
    };
    assert.deepEqual(
      [...read].filter((p) => !has(p)),
      [],
    );
  });

  it('every value in values.yaml is read by a template and described in the README', () => {
    const readme = readFileSync(join(CHART_DIR, 'README.md'), 'utf8');
    assert.deepEqual(
      defined.filter((p) => !read.has(p)),
      [],
      'values no template reads',
    );
    assert.deepEqual(
      defined.filter((p) => !readme.includes(`\`${p.slice('.Values.'.length)}\``)),
      [],
      'values the README does not describe',
    );
  });
});
