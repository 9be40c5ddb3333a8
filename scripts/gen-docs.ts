// Regenerates the generated files that tests keep in step with the code: docs/ERRORS.md, deploy/crds/.
import { writeFileSync } from 'node:fs';
import { renderErrorsDoc } from '../src/errors-doc.ts';
import { crdsYaml } from '../src/api/crd.ts';

const root = new URL('..', import.meta.url).pathname;
writeFileSync(`${root}docs/ERRORS.md`, renderErrorsDoc());
console.log('wrote docs/ERRORS.md');
writeFileSync(`${root}deploy/crds/ipkeeper.io.yaml`, crdsYaml());
console.log('wrote deploy/crds/ipkeeper.io.yaml');
