/**
 * @module test/lib/socket-get
 * A GET over an agent's unix socket that returns the body as text (e.g. its Prometheus /metrics),
 * where `call` (src/cli/client.ts) expects JSON.
 */
import { request } from 'node:http';

/** @throws Error on a connection failure. Any status is returned with its body. */
export function socketGet(socket: string, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end();
  });
}
