/**
 * @module errors-doc
 * Renders the error catalogue as the Markdown reference `docs/ERRORS.md`; `errors.test.ts` checks
 * that the committed file equals this rendering, so the docs cannot drift from the code.
 * Regenerate with `node scripts/gen-docs.ts`.
 */
import { ERRORS } from './errors.ts';

export function renderErrorsDoc(): string {
  const rows = Object.entries(ERRORS).map(
    ([code, e]) => `| \`${code}\` | ${e.cni} | ${e.http} | ${e.summary} |`,
  );
  return [
    '# ipkeeper error reference',
    '',
    'Every error ipkeeper reports carries a stable code. The CNI plugin prints it as CNI error JSON',
    '(`{"cniVersion", "code", "msg", "details"}`) with the CNI code below and exits non-zero; the agent',
    'answers its HTTP API with the status below and `{"code", "message", "details"}`; the CLI prints',
    '`error: <message>` and exits 1. Messages quote the values involved and say what to do.',
    '',
    "CNI codes 1–11 are the CNI specification's own (11: try again later — the runtime retries);",
    '50 is STATUS\'s "not available"; 100 and up are ipkeeper\'s.',
    '',
    '| code | CNI | HTTP | meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
