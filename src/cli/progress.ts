/**
 * @module cli/progress
 * Progress of long CLI operations (`apply -f` of many files, `release --from-report`, `check`), on
 * stderr only — stdout stays the command's answer, so `-o json` remains parseable. While it runs, one
 * line is rewritten in place with `\r`: `release: 1,500/20,000 done, 2,480/s, eta 8s` (or, while
 * waiting on one request, `check: waiting for the agent, 3.2s`). That line is drawn only when stderr
 * is a terminal or `--progress` is given; the final summary line (`release: 20,000/20,000 done in
 * 8.1s, 2,469/s`) is written always, so logs of scripted runs say how long it took.
 *
 * Time comes from an injected clock and redraws from an injected timer, so tests drive it with a
 * fake stream and no sleeps.
 */
import { Option } from 'commander';

/** What progress writes to: `process.stderr`, or a fake in tests. */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  /** Terminal width; a live line is cut to fit so `\r` rewrites one row. */
  columns?: number;
}

export interface ProgressOptions {
  /** The command, first on every line: `release`. */
  label: string;
  /** Units of work; undefined while the amount is unknown (one request in flight). */
  total?: number;
  /** What the line says while `total` is undefined: `waiting for the agent`. */
  phase?: string;
  stream?: ProgressStream;
  /** `--progress`: draw the live line even when the stream is not a terminal. */
  force?: boolean;
  /** Milliseconds, monotonic. */
  now?: () => number;
  /** Calls `fn` every `ms` until the returned function is called (redraws elapsed time). */
  every?: (fn: () => void, ms: number) => () => void;
}

/** Redraws on progress at most this often, so a fast loop is not slowed by its own output. */
export const REDRAW_MS = 100;
/** The timer's redraw, so elapsed time and eta move while one request is in flight. */
export const TICK_MS = 250;

const number = (n: number): string => Math.round(n).toLocaleString('en-US');

/** `0.4s`, `12s`, `3m04s`, `1h02m`. */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s - m * 60)).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h${String(m - h * 60).padStart(2, '0')}m`;
}

function formatRate(perSecond: number): string {
  return perSecond >= 100 ? `${number(perSecond)}/s` : `${perSecond.toFixed(1)}/s`;
}

function realEvery(fn: () => void, ms: number): () => void {
  const t = setInterval(fn, ms);
  // A progress line must never keep the process alive.
  t.unref();
  return () => clearInterval(t);
}

export class Progress {
  /** Whether the live line is drawn (a terminal, or forced). */
  readonly live: boolean;
  private readonly label: string;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly started: number;
  private total: number | undefined;
  private phase: string;
  private doneCount = 0;
  private phaseStarted: number;
  private lastDraw = -Infinity;
  private lastWidth = 0;
  private stopTimer: (() => void) | undefined;
  /** The live line is gone for good (cleared before stdout output, or at the end). */
  private cleared = false;
  /** The summary was written, or stop() gave it up. */
  private ended = false;

  constructor(opts: ProgressOptions) {
    this.label = opts.label;
    this.stream = opts.stream ?? process.stderr;
    this.now = opts.now ?? (() => performance.now());
    this.live = opts.force === true || this.stream.isTTY === true;
    this.total = opts.total;
    this.phase = opts.phase ?? 'working';
    this.started = this.now();
    this.phaseStarted = this.started;
    if (this.live) {
      this.stopTimer = (opts.every ?? realEvery)(() => this.draw(), TICK_MS);
      this.draw();
    }
  }

  /** The live line's text now. */
  line(): string {
    const t = this.now();
    if (this.total === undefined) return `${this.label}: ${this.phase}, ${formatDuration(t - this.started)}`;
    const secs = (t - this.phaseStarted) / 1000;
    const rate = secs > 0 ? this.doneCount / secs : 0;
    const left = this.total - this.doneCount;
    const eta = left <= 0 ? '0s' : rate > 0 ? formatDuration((left / rate) * 1000) : '?';
    return `${this.label}: ${number(this.doneCount)}/${number(this.total)} done, ${formatRate(rate)}, eta ${eta}`;
  }

  /** Counts `n` more units done; redraws when `REDRAW_MS` has passed or the work is complete. */
  add(n = 1): void {
    this.doneCount += n;
    const t = this.now();
    if (this.live && (t - this.lastDraw >= REDRAW_MS || this.doneCount === this.total)) this.draw();
  }

  /**
   * Starts a new stage: counted (`total`) or waiting (`phase` only). The rate and eta of a counted
   * stage are measured from its own start.
   */
  stage(phase: string, total?: number): void {
    this.phase = phase;
    this.total = total;
    this.doneCount = 0;
    this.phaseStarted = this.now();
    if (this.live) this.draw();
  }

  /**
   * Ends it: clears the live line and writes `<label>: <summary> in <elapsed>` (with the rate of a
   * counted stage) and a newline — always, live or not. Idempotent.
   */
  done(summary?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.clear();
    const t = this.now();
    const took = formatDuration(t - this.started);
    const secs = (t - this.phaseStarted) / 1000;
    const counted = this.total !== undefined;
    const what =
      summary ?? (counted ? `${number(this.doneCount)}/${number(this.total ?? 0)} done` : this.phase);
    const rate = counted && secs > 0 && this.doneCount > 0 ? `, ${formatRate(this.doneCount / secs)}` : '';
    this.stream.write(`${this.label}: ${what} in ${took}${rate}\n`);
  }

  /** Clears the live line without a summary (the command failed; its error follows). Idempotent. */
  stop(): void {
    this.ended = true;
    this.clear();
  }

  /**
   * Removes the live line for good, before the command prints its answer on stdout (on a terminal
   * the two share the screen); `done()` still writes the summary. Idempotent.
   */
  clear(): void {
    if (this.cleared) return;
    this.cleared = true;
    this.stopTimer?.();
    this.stopTimer = undefined;
    if (this.live && this.lastWidth > 0) this.stream.write(`\r${' '.repeat(this.lastWidth)}\r`);
    this.lastWidth = 0;
  }

  private draw(): void {
    if (this.cleared) return;
    let text = this.line();
    const max = (this.stream.columns ?? 0) - 1;
    if (max > 0 && text.length > max) text = text.slice(0, max);
    // Pad over the previous line's tail: no terminal escape codes, so a log file stays readable.
    this.stream.write(`\r${text.padEnd(this.lastWidth)}`);
    this.lastWidth = text.length;
    this.lastDraw = this.now();
  }
}

/** The `--progress` option of the commands that report progress. */
export function progressOption(): Option {
  return new Option('--progress', 'show progress on stderr even when it is not a terminal');
}

/**
 * Runs `work` with a progress; on success writes the summary `work` returns, on failure clears the
 * line and rethrows (so the error prints on a clean line).
 */
export async function withProgress<T>(
  opts: ProgressOptions,
  work: (p: Progress) => Promise<{ result: T; summary?: string }>,
): Promise<T> {
  const p = new Progress(opts);
  try {
    const { result, summary } = await work(p);
    p.done(summary);
    return result;
  } catch (e) {
    p.stop();
    throw e;
  }
}
