/**
 * @module cli/yaml-out
 * The CLI's `-o yaml` output, with the YAML package loaded on first use: every start of the CLI,
 * the agent's included, would otherwise load its ~70 files for output it seldom prints.
 */

/** `value` as YAML, without the trailing newline. */
export async function yamlText(value: unknown): Promise<string> {
  const { stringify } = await import('yaml');
  return stringify(value).trimEnd();
}
