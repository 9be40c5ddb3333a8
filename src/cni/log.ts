/**
 * @module cni/log
 * The plugin's log: one JSON object per line, appended to `ipam.logFile` when the config names one,
 * else written to stderr (which runtimes keep in their own log). Never stdout: stdout carries only the
 * CNI result or error.
 */

import { appendFileSync } from 'node:fs';

export type LogFields = Record<string, unknown>;
export type Log = (level: 'info' | 'error', event: string, fields: LogFields) => void;

/**
 * A log that appends to `file`, or writes with `stderr` when `file` is undefined. A file that cannot
 * be written does not fail the command: the line goes to stderr with the reason, because losing a
 * log line is better than failing a pod's network setup over it.
 */
export function makeLog(
  file: string | undefined,
  stderr: (text: string) => void,
  now: () => Date = () => new Date(),
): Log {
  return (level, event, fields) => {
    const line = JSON.stringify({ time: now().toISOString(), level, event, ...fields }) + '\n';
    if (file === undefined) {
      stderr(line);
      return;
    }
    try {
      appendFileSync(file, line);
    } catch (e) {
      stderr(
        JSON.stringify({
          time: now().toISOString(),
          level: 'error',
          event: 'log-file-failed',
          logFile: file,
          reason: (e as Error).message,
        }) + '\n',
      );
      stderr(line);
    }
  };
}
