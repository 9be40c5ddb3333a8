/**
 * @module test/lib/ports
 * Free TCP ports on 127.0.0.1 for the servers tests start.
 */
import { createServer, type AddressInfo } from 'node:net';

/**
 * `n` distinct ports the kernel says are free on 127.0.0.1, all held open together so they differ.
 * Another process could take one between our close and the server's bind; that shows as a start
 * failure of that server.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
