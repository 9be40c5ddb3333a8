/**
 * @module cni/client
 * One JSON POST to the node agent over its unix socket (`src/cni/protocol.ts` lists the endpoints).
 *
 * Failures come back as `IpamError`s from the one catalogue: an agent that cannot be reached (no
 * socket, nobody listening, no answer in time) is AGENT_UNAVAILABLE, which is CNI code 11 "try again
 * later", so the runtime retries rather than giving up on the pod — and, for DEL, so no address leaks.
 * An error the agent answers with keeps its own code.
 *
 * `node:http` is loaded on first use, so VERSION (and every failure before the agent is asked) does
 * not pay for it. `process.getBuiltinModule` rather than `import()`: it is synchronous and works in
 * every form the plugin ships as (source, ESM or CJS bundle, single executable with or without a
 * startup snapshot — the snapshot form has no dynamic-import callback).
 */

import { ERRORS, IpamError } from '../errors.ts';
import type { ErrorCode } from '../errors.ts';

export const DEFAULT_TIMEOUT_MS = 30_000;
/** How much of a body that is not JSON to quote in a message. */
const QUOTE_BYTES = 200;

const FIX = 'is the ipkeeper agent running? start it with `ipkeeper agent`';

export interface CallOptions {
  socket: string;
  timeoutMs?: number;
}

/**
 * POSTs `body` as JSON to `path` on the agent's socket and returns the parsed JSON answer of a 200.
 *
 * @throws IpamError AGENT_UNAVAILABLE when the socket is missing, refuses, resets, or the whole
 *   exchange takes longer than `timeoutMs`; BUSY on HTTP 429 without a body we can read; the
 *   agent's own code when it answers with an `ErrorBody`; INTERNAL when it answers with something
 *   that is neither.
 */
export async function postJson(path: string, body: unknown, opts: CallOptions): Promise<unknown> {
  const { request } = process.getBuiltinModule('node:http');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const socket = opts.socket;
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise<unknown>((resolve, reject) => {
    // One deadline for the whole exchange: `request`'s own `timeout` only measures idle time, so an
    // agent that trickles bytes would never time out.
    const timer = setTimeout(() => {
      req.destroy(
        new IpamError(
          'AGENT_UNAVAILABLE',
          `the ipkeeper agent did not answer on socket ${socket} within ${timeoutMs} ms; ${FIX} (it may also be overloaded: see its log)`,
          {
            socket,
            timeoutMs,
          },
        ),
      );
    }, timeoutMs);
    const fail = (e: unknown): void => {
      clearTimeout(timer);
      reject(e instanceof IpamError ? e : unreachable(e, socket));
    };
    const req = request(
      {
        socketPath: socket,
        path,
        method: 'POST',
        // No pooled keep-alive socket: the plugin makes one call and exits.
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': payload.length,
          connection: 'close',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(timer);
          try {
            resolve(readAnswer(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), socket, path));
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('error', fail);
    req.end(payload);
  });
}

/**
 * Turns an HTTP answer into a value or an `IpamError`. Exported for tests.
 *
 * @throws IpamError as described on `postJson`.
 */
export function readAnswer(status: number, text: string, socket: string, path: string): unknown {
  let json: unknown;
  let parsed = true;
  try {
    json = text === '' ? {} : JSON.parse(text);
  } catch {
    // Not JSON: reported below with the status, which says more than the parse error would.
    parsed = false;
  }
  if (status === 200 && parsed) return json;
  if (parsed && isErrorBody(json)) {
    return raise(new IpamError(json.code, json.message, { ...json.details, agentStatus: status }));
  }
  if (status === 429) {
    return raise(
      new IpamError(
        'BUSY',
        `the ipkeeper agent on socket ${socket} is over its request limit (HTTP 429); the runtime will retry`,
        { socket, status },
      ),
    );
  }
  if (status === 503) {
    return raise(
      new IpamError(
        'AGENT_UNAVAILABLE',
        `the ipkeeper agent on socket ${socket} is not available (HTTP 503); the runtime will retry`,
        { socket, status },
      ),
    );
  }
  const quoted = JSON.stringify(text.length > QUOTE_BYTES ? `${text.slice(0, QUOTE_BYTES)}...` : text);
  return raise(
    new IpamError(
      'INTERNAL',
      `the ipkeeper agent on socket ${socket} answered POST ${path} with HTTP ${status} and ${parsed ? 'a body that is not an error' : 'a body that is not JSON'}: ${quoted}; check that the agent and the plugin are the same ipkeeper version`,
      { socket, path, status },
    ),
  );
}

function raise(e: IpamError): never {
  throw e;
}

function isErrorBody(
  v: unknown,
): v is { code: ErrorCode; message: string; details?: Record<string, unknown> } {
  if (typeof v !== 'object' || v === null) return false;
  const b = v as { code?: unknown; message?: unknown; details?: unknown };
  return (
    typeof b.code === 'string' &&
    Object.hasOwn(ERRORS, b.code) &&
    typeof b.message === 'string' &&
    (b.details === undefined || (typeof b.details === 'object' && b.details !== null))
  );
}

/** A connection-level failure, named after what the plugin saw and with the fix. */
function unreachable(e: unknown, socket: string): IpamError {
  const errno = (e as NodeJS.ErrnoException | null)?.code;
  let what: string;
  switch (errno) {
    case 'ENOENT':
      what = `socket ${socket} does not exist`;
      break;
    case 'ECONNREFUSED':
      what = `nothing listens on socket ${socket}`;
      break;
    case 'EACCES':
    case 'EPERM':
      what = `permission denied on socket ${socket} (the plugin runs as the runtime's user, normally root)`;
      break;
    case 'ENOTSOCK':
      what = `${socket} is not a socket`;
      break;
    default:
      what = `the connection to socket ${socket} failed (${errno ?? (e as Error)?.message ?? String(e)})`;
  }
  return new IpamError(
    'AGENT_UNAVAILABLE',
    `cannot reach the ipkeeper agent: ${what}; ${FIX}`,
    { socket, errno },
    e,
  );
}
