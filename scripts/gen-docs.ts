// Regenerates the generated files that tests keep in step with the code: docs/ERRORS.md, docs/REFERENCE.md, deploy/crds/.
import { writeFileSync } from 'node:fs';
import { renderErrorsDoc } from '../src/errors-doc.ts';
import { crdsYaml } from '../src/api/crd.ts';

const root = new URL('..', import.meta.url).pathname;
writeFileSync(`${root}docs/ERRORS.md`, renderErrorsDoc());
console.log('wrote docs/ERRORS.md');
writeFileSync(`${root}deploy/crds/ipkeeper.io.yaml`, crdsYaml());
console.log('wrote deploy/crds/ipkeeper.io.yaml');
// Kinds, annotations and the CLI's commands: the CLI is built (not run) to read its commands.
{
  const { renderReferenceDoc } = await import('../src/api/reference-doc.ts');
  const { buildCli } = await import('../src/cli/main.ts');
  writeFileSync(`${root}docs/REFERENCE.md`, renderReferenceDoc(buildCli()));
  console.log('wrote docs/REFERENCE.md');
}
// The chart's RBAC and CRDs, and deploy/manifests/: they follow the kinds too.
(await import('./gen-deploy.ts')).genDeploy();
