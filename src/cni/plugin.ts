/**
 * @module cni/plugin
 * The CNI commands, wired: read the environment and stdin, validate, ask the agent, print the result
 * or the CNI error, return the exit code. All I/O comes in through `PluginIo`, so the whole plugin
 * runs in a test without a process; `main.ts` binds it to the real process.
 *
 *   VERSION  prints the supported versions; never reads config beyond `cniVersion`, never calls the agent
 *   ADD      POST /v1/cni/add    -> prints the result converted to the config's cniVersion
 *   DEL      POST /v1/cni/del    -> prints nothing (an unreachable agent is code 11, so the runtime
 *                                   retries and the address does not leak)
 *   CHECK    POST /v1/cni/check  -> prints nothing
 *   GC       POST /v1/cni/gc     -> prints nothing; sends `cni.dev/valid-attachments`
 *   STATUS   POST /v1/cni/status -> prints nothing; any "try again" failure becomes code 50
 *
 * Errors: `{cniVersion, code, msg, details}` on stdout and exit 1. `details` is the ipkeeper error code
 * (`POOL_EXHAUSTED`), stable for scripts; the structured details go to the log.
 */

import { ERRORS, IpamError } from '../errors.ts';
import type { CniCommand, CniRequest, IpamResult } from './protocol.ts';
import { DEFAULT_SOCKET } from './protocol.ts';
import { parseCniArgs } from './args.ts';
import {
  LATEST_VERSION,
  SUPPORTED_VERSIONS,
  isSupportedVersion,
  parseNetConf,
  replyVersion,
} from './config.ts';
import type { NetConf } from './config.ts';
import { postJson } from './client.ts';
import type { CallOptions } from './client.ts';
import { toCniResult } from './result.ts';
import { makeLog } from './log.ts';
import type { Log, LogFields } from './log.ts';

export interface PluginIo {
  env: Readonly<Record<string, string | undefined>>;
  readStdin(): Promise<string>;
  writeStdout(text: string): void;
  writeStderr(text: string): void;
  /** The agent call; `postJson` unless a test replaces it. */
  post?: (path: string, body: unknown, opts: CallOptions) => Promise<unknown>;
  now?: () => number;
}

const COMMANDS: readonly string[] = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'];
/** Linux IFNAMSIZ is 16 with the NUL. */
const MAX_IFNAME = 15;
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Runs one CNI command and returns the exit code (0 or 1). Never throws. */
export async function runPlugin(io: PluginIo): Promise<number> {
  const now = io.now ?? Date.now;
  const started = now();
  let log: Log = makeLog(undefined, io.writeStderr);
  let stdinText: string | undefined;
  const ctx: LogFields = {};
  let event = 'unknown';
  let conf: NetConf | undefined;
  try {
    // Read first, so that even an environment error can echo the config's own cniVersion.
    let readError: unknown;
    stdinText = await io.readStdin().catch((e: unknown) => {
      readError = e;
      return undefined;
    });
    const command = parseCommand(io.env.CNI_COMMAND);
    event = command;
    if (command === 'VERSION') {
      io.writeStdout(versionJson(stdinText ?? ''));
      return 0;
    }
    if (stdinText === undefined) {
      throw new IpamError(
        'IO_FAILURE',
        `reading the network configuration from stdin failed: ${(readError as Error)?.message}`,
        {},
        readError,
      );
    }
    const containerId =
      command === 'GC' || command === 'STATUS' ? undefined : requireEnv(io.env, 'CNI_CONTAINERID');
    const ifName = command === 'GC' || command === 'STATUS' ? undefined : requireEnv(io.env, 'CNI_IFNAME');
    // A DEL is never refused over the shape of its ids: the agent answers 200 for what it never
    // added, and refusing would leave the runtime retrying forever.
    if (command === 'ADD' || command === 'CHECK') checkIds(containerId as string, ifName as string);
    const { args } = parseCniArgs(io.env.CNI_ARGS);
    Object.assign(ctx, { containerId, ifName, pod: podOf(args), podUid: args.K8S_POD_UID });

    conf = parseNetConf(stdinText, command);
    ctx.network = conf.name;
    if (conf.ipam.logFile !== undefined) log = makeLog(conf.ipam.logFile, io.writeStderr);

    const request = buildRequest(command, conf, args, io.env, containerId, ifName);
    const call: CallOptions = { socket: conf.ipam.socket ?? DEFAULT_SOCKET };
    if (conf.ipam.timeoutMs !== undefined) call.timeoutMs = conf.ipam.timeoutMs;
    const post = io.post ?? postJson;
    const fields = await dispatch(command, request, conf, call, post, io);
    log('info', command, { ...ctx, ...fields, durationMs: now() - started });
    return 0;
  } catch (e) {
    const err = asIpamError(e);
    io.writeStdout(errorJson(err, replyVersion(stdinText)));
    // A config that failed validation elsewhere may still name its log file: keep its events together.
    const logFile = peekLogFile(stdinText);
    if (logFile !== undefined && conf === undefined) log = makeLog(logFile, io.writeStderr);
    const fields: LogFields = {
      ...ctx,
      code: err.code,
      cniCode: err.cniCode,
      msg: err.message,
      details: err.details,
      durationMs: now() - started,
    };
    // Only a bug gets a stack, and only in the log: the runtime shows stdout to users.
    if (err.code === 'INTERNAL') fields.stack = (err.cause as Error | undefined)?.stack ?? err.stack;
    log('error', event, fields);
    return 1;
  }
}

async function dispatch(
  command: CniCommand,
  request: CniRequest,
  conf: NetConf,
  call: CallOptions,
  post: NonNullable<PluginIo['post']>,
  io: PluginIo,
): Promise<LogFields> {
  switch (command) {
    case 'ADD': {
      const answer = (await post('/v1/cni/add', request, call)) as IpamResult;
      const result = toCniResult(answer, conf.cniVersion, conf.ipam.routes);
      io.writeStdout(JSON.stringify(result) + '\n');
      return {
        ips: result.ips.map((ip) => ip.address),
        pools: Array.isArray(answer.ips) ? answer.ips.map((ip) => ip.pool) : [],
      };
    }
    case 'DEL':
      await post('/v1/cni/del', request, call);
      return {};
    case 'CHECK':
      await post('/v1/cni/check', request, call);
      return {};
    case 'GC': {
      const answer = (await post('/v1/cni/gc', request, call)) as { released?: unknown };
      return { kept: request.validAttachments?.length ?? 0, released: answer.released };
    }
    case 'STATUS':
      try {
        await post('/v1/cni/status', request, call);
      } catch (e) {
        // STATUS has its own codes: whatever would make an ADD "try again later" means "not available".
        if (e instanceof IpamError && e.cniCode === 11) {
          throw new IpamError(
            'NOT_READY',
            `ipkeeper cannot give out addresses now: ${e.message}`,
            e.details,
            e,
          );
        }
        throw e;
      }
      return {};
  }
}

/** The body sent to the agent. Exported for tests. */
export function buildRequest(
  command: CniCommand,
  conf: NetConf,
  args: Record<string, string>,
  env: Readonly<Record<string, string | undefined>>,
  containerId: string | undefined,
  ifName: string | undefined,
): CniRequest {
  const request: CniRequest = {
    command,
    network: conf.name,
    cniVersion: conf.cniVersion,
    args,
    ipam: conf.ipam,
  };
  if (containerId !== undefined) request.containerId = containerId;
  if (ifName !== undefined) request.ifName = ifName;
  if (env.CNI_NETNS !== undefined && env.CNI_NETNS !== '') request.netns = env.CNI_NETNS;
  if (conf.requestedIps.length > 0) request.requestedIps = conf.requestedIps;
  if (conf.validAttachments !== undefined) request.validAttachments = conf.validAttachments;
  return request;
}

/** The VERSION answer: echoes the config's `cniVersion` when we speak it (CNI spec), else the latest. */
export function versionJson(stdinText: string): string {
  let v: unknown;
  try {
    v = (JSON.parse(stdinText) as { cniVersion?: unknown } | null)?.cniVersion;
  } catch {
    // VERSION must answer whatever stdin holds: a runtime probes with it before anything else.
  }
  return (
    JSON.stringify({
      cniVersion: isSupportedVersion(v) ? v : LATEST_VERSION,
      supportedVersions: SUPPORTED_VERSIONS,
    }) + '\n'
  );
}

/** The CNI error object, one line. */
export function errorJson(err: IpamError, cniVersion: string): string {
  return JSON.stringify({ cniVersion, code: err.cniCode, msg: err.message, details: err.code }) + '\n';
}

/** Any thrown value as an `IpamError`; anything not from the catalogue is a bug, INTERNAL (110). */
export function asIpamError(e: unknown): IpamError {
  if (e instanceof IpamError && Object.hasOwn(ERRORS, e.code)) return e;
  const what = e instanceof Error ? e.message : String(e);
  return new IpamError(
    'INTERNAL',
    `unexpected failure in the ipkeeper CNI plugin: ${what}; this is a bug, please report it with the plugin log (ipam.logFile, or the runtime's log of the plugin's stderr)`,
    {},
    e,
  );
}

/**
 * @throws IpamError INVALID_ENV when CNI_COMMAND is missing or not a CNI command.
 */
export function parseCommand(v: string | undefined): CniCommand | 'VERSION' {
  if (v === undefined || v === '') {
    throw new IpamError(
      'INVALID_ENV',
      `CNI_COMMAND: missing; set it to one of ${COMMANDS.join(', ')} (this program is a CNI plugin, run by the container runtime)`,
      { variable: 'CNI_COMMAND' },
    );
  }
  if (!COMMANDS.includes(v)) {
    throw new IpamError(
      'INVALID_ENV',
      `CNI_COMMAND: ${JSON.stringify(v)} is not a CNI command; set it to one of ${COMMANDS.join(', ')}`,
      { variable: 'CNI_COMMAND', value: v },
    );
  }
  return v as CniCommand | 'VERSION';
}

function requireEnv(env: PluginIo['env'], name: string): string {
  const v = env[name];
  if (v === undefined || v === '') {
    throw new IpamError(
      'INVALID_ENV',
      `${name}: missing; the runtime must set ${name} for ${env.CNI_COMMAND}`,
      { variable: name },
    );
  }
  return v;
}

/** @throws IpamError INVALID_ENV when the container id or interface name breaks the CNI spec's rules. */
function checkIds(containerId: string, ifName: string): void {
  if (!CONTAINER_ID.test(containerId)) {
    throw new IpamError(
      'INVALID_ENV',
      `CNI_CONTAINERID: ${JSON.stringify(containerId)} is not a container id; it must start with a letter or digit, then letters, digits, _ . -`,
      { variable: 'CNI_CONTAINERID', value: containerId },
    );
  }
  let why: string | undefined;
  if (ifName.length > MAX_IFNAME) why = `is longer than ${MAX_IFNAME} characters`;
  else if (ifName === '.' || ifName === '..') why = 'is not allowed';
  else if (/[/:\s]/.test(ifName)) why = 'contains /, : or whitespace';
  if (why !== undefined) {
    throw new IpamError(
      'INVALID_ENV',
      `CNI_IFNAME: ${JSON.stringify(ifName)} ${why}; use a Linux interface name such as eth0 or net1`,
      { variable: 'CNI_IFNAME', value: ifName },
    );
  }
}

/** `ipam.logFile` from a config that may be invalid elsewhere; undefined when it is not usable. */
export function peekLogFile(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  try {
    const f: unknown = (JSON.parse(text) as { ipam?: { logFile?: unknown } } | null)?.ipam?.logFile;
    return typeof f === 'string' && f.startsWith('/') ? f : undefined;
  } catch {
    // Not JSON: there is no log file to find; stderr it is.
    return undefined;
  }
}

function podOf(args: Record<string, string>): string | undefined {
  const ns = args.K8S_POD_NAMESPACE;
  const name = args.K8S_POD_NAME;
  return ns !== undefined && name !== undefined ? `${ns}/${name}` : name;
}
