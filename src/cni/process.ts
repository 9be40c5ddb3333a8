/**
 * @module cni/process
 * Binds `runPlugin` to the process. Kept to node:fs and the plugin modules, because the runtime
 * starts this program for every pod network change and every millisecond of startup is on the pod's
 * path (`npm run build` makes it a single executable).
 *
 * No top-level await: the bundle is CommonJS, which a Node single executable application requires.
 */

import { readFileSync, writeSync } from 'node:fs';
import { asIpamError, errorJson, runPlugin } from './plugin.ts';
import { LATEST_VERSION } from './config.ts';

/** Writes all of `text` to `fd` synchronously, so `process.exit` cannot cut it short. */
function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      // A non-blocking pipe that is momentarily full: try again (the output is a few hundred bytes).
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}

async function readStdin(): Promise<string> {
  try {
    return readFileSync(0, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // No stdin at all reads as empty; the config parser then says so.
    if (code === 'EBADF') return '';
    if (code !== 'EAGAIN') throw e;
  }
  // A non-blocking stdin (some parents hand one down): read it as a stream instead.
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs the command the environment names and exits with its code. */
export function main(): void {
  process.on('uncaughtException', (e) => {
    writeAll(1, errorJson(asIpamError(e), LATEST_VERSION));
    writeAll(
      2,
      JSON.stringify({
        time: new Date().toISOString(),
        level: 'error',
        event: 'uncaught',
        stack: (e as Error)?.stack,
      }) + '\n',
    );
    process.exit(1);
  });
  void runPlugin({
    env: process.env,
    readStdin,
    writeStdout: (t) => writeAll(1, t),
    writeStderr: (t) => {
      try {
        writeAll(2, t);
      } catch {
        // stderr closed by the caller: the log line is lost, which must not fail the command.
      }
    },
  }).then((code) => process.exit(code));
}
