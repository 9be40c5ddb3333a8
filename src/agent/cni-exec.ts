/**
 * @module agent/cni-exec
 * `POST /v1/cni/exec`: the whole CNI plugin run inside the agent, for the native forwarder
 * (`native/ipkeeper-cni.c`). The forwarder is a few kilobytes of C that starts in about a
 * millisecond: it sends the runtime's `CNI_*` environment and stdin here and copies back what
 * `runPlugin` (src/cni/plugin.ts — the same code the Node plugin runs) would have printed, with its
 * exit code. So the plugin's behaviour (config validation, error JSON, result per cniVersion, log
 * lines) exists once, in TypeScript, whichever executable the runtime starts.
 *
 *   request   {"env": {"CNI_COMMAND": "ADD", ...}, "stdin": "<the network configuration>"}
 *   answer    200, application/octet-stream: the plugin's stdout then its stderr;
 *             headers x-cni-exit-code (0 or 1) and x-cni-stdout-length (bytes of stdout)
 *
 * The inner `/v1/cni/*` call goes through `app.inject`, so admission (rate limit, in-flight cap),
 * metrics and logs are the same as for the Node plugin's direct call. VERSION never reaches the
 * agent: the forwarder answers it itself, because a runtime probes VERSION before any agent runs.
 */
import type { FastifyInstance } from 'fastify';
import { IpamError } from '../errors.ts';
import { readAnswer } from '../cni/client.ts';
import { runPlugin } from '../cni/plugin.ts';

export const EXEC_PATH = '/v1/cni/exec';

/** Only these reach the plugin code: the runtime's CNI variables. */
const ENV_NAME = /^CNI_[A-Z_]+$/;

export function registerCniExec(app: FastifyInstance, socket: string): void {
  app.post(EXEC_PATH, async (request, reply) => {
    const body = request.body as { env?: unknown; stdin?: unknown } | null;
    if (
      body === null ||
      typeof body !== 'object' ||
      typeof body.stdin !== 'string' ||
      typeof body.env !== 'object' ||
      body.env === null
    ) {
      throw new IpamError('DECODE_FAILED', `${EXEC_PATH} takes {"env": {...}, "stdin": "..."}`);
    }
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(body.env as Record<string, unknown>)) {
      if (ENV_NAME.test(k) && typeof v === 'string') env[k] = v;
    }
    const stdin = body.stdin;
    let out = '';
    let err = '';
    const code = await runPlugin({
      env,
      readStdin: async () => stdin,
      writeStdout: (t) => (out += t),
      writeStderr: (t) => (err += t),
      post: async (path, payload) => {
        const r = await app.inject({ method: 'POST', url: path, payload: payload as object });
        return readAnswer(r.statusCode, r.body, socket, path);
      },
    });
    const stdout = Buffer.from(out);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('x-cni-exit-code', String(code))
      .header('x-cni-stdout-length', String(stdout.length))
      .send(Buffer.concat([stdout, Buffer.from(err)]));
  });
}
