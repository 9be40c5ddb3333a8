/**
 * @module scripts/gen-deploy
 * Writes the generated parts of deploy/: the chart's RBAC template (from src/deploy/rbac.ts), the
 * chart's copy of the CRDs, and deploy/manifests/ipkeeper.yaml (the chart rendered with default
 * values). Run by `node scripts/gen-docs.ts`; src/deploy/chart.test.ts keeps the files in step.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, relative } from 'node:path';
import { crdsYaml } from '../src/api/crd.ts';
import {
  CHART_CRDS_FILE,
  MANIFESTS_FILE,
  RBAC_TEMPLATE_FILE,
  ROOT,
  plainManifests,
} from '../src/deploy/chart.ts';
import { rbacTemplate } from '../src/deploy/rbac.ts';

export function genDeploy(): void {
  // The RBAC template first: the plain manifests are rendered from it.
  const files: [string, () => string][] = [
    [RBAC_TEMPLATE_FILE, rbacTemplate],
    [CHART_CRDS_FILE, crdsYaml],
    [MANIFESTS_FILE, () => plainManifests()],
  ];
  for (const [file, make] of files) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, make());
    console.log(`wrote ${relative(ROOT, file)}`);
  }
}

if (import.meta.main) genDeploy();
