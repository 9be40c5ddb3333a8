// Regenerates the reference docs that tests keep in step with the code.
import { writeFileSync } from 'node:fs';
import { renderErrorsDoc } from '../src/errors-doc.ts';

const root = new URL('..', import.meta.url).pathname;
writeFileSync(`${root}docs/ERRORS.md`, renderErrorsDoc());
console.log('wrote docs/ERRORS.md');
