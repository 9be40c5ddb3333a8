/**
 * @module cli/client
 * The CLI's HTTP client for the agent's unix socket.
 */
import { request } from 'node:http';
import { IpamError, type ErrorCode } from '../errors.ts';

export const SOCKET_ENV = 'IPKEEPER_SOCKET';

/**
 * Calls the agent. Resolves with the JSON body of a 2xx answer.
 * @throws IpamError with the agent's code for an error answer; AGENT_UNAVAILABLE when nothing listens.
 */
export function call<T>(socket: string, method: string, path: string, body?: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {},
        timeout: 60_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text === '' ? {} : JSON.parse(text);
          } catch {
            parsed = { message: text };
          }
          if ((res.statusCode ?? 500) >= 400) {
            const b = parsed as { code?: ErrorCode; message?: string; details?: Record<string, unknown> };
            reject(
              new IpamError(b.code ?? 'INTERNAL', b.message ?? `agent answered ${res.statusCode}`, b.details),
            );
          } else resolve(parsed as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out after 60 s')));
    req.on('error', (e: NodeJS.ErrnoException) => {
      reject(
        new IpamError(
          'AGENT_UNAVAILABLE',
          `cannot reach the ipkeeper agent on ${socket} (${e.code ?? e.message}); is it running? start it with \`ipkeeper agent\`, or point --socket / ${SOCKET_ENV} at its socket`,
          { socket },
          e,
        ),
      );
    });
    if (data) req.write(data);
    req.end();
  });
}
