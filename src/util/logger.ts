// Structured logs in the shape of etcd's zap logger: one JSON object per line with level, ts,
// caller and msg first, then the member's context (name, local-member-id, term, index where
// known) and the event's own fields, so tools written for etcd's logs parse ours. On a terminal
// the same record is printed as one readable line instead.
//
// Outputs follow etcd's --log-outputs: 'default' or 'stderr', 'stdout', or file paths (appended).

import { closeSync, openSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const TEXT_LEVELS: Record<LogLevel, string> = {
  debug: 'DEBUG',
  info: 'INFO ',
  warn: 'WARN ',
  error: 'ERROR',
};

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** One place log lines go: a function taking a finished line, and whether it is a terminal. */
export interface LogSink {
  write(line: string): void;
  readonly isTty: boolean;
  close?(): void;
}

export interface LoggerOptions {
  level: LogLevel;
  /** Fields on every line (e.g. the member name). */
  base?: Record<string, unknown>;
  /** Fields read at each line, for what changes (member id once known, term, applied index). */
  context?: () => Record<string, unknown>;
  /** Where lines go (default: stderr). */
  sinks?: LogSink[];
  /** 'auto' (default): text when every sink is a terminal, JSON otherwise. */
  format?: 'json' | 'text' | 'auto';
  /** Adds `caller` (file:line of the log call, from a stack trace). Default true. */
  caller?: boolean;
}

export const LOG_LEVELS = Object.keys(LEVELS) as LogLevel[];

function serializable(value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return value.message;
  return value;
}

/** The compiled sources' root (…/src/), stripped from caller paths: "replica/group-replica.js:571". */
const SOURCE_ROOT = fileURLToPath(new URL('../', import.meta.url));

/** file:line of the frame that called the logger method; only computed for lines written. */
function callerOf(depth: number): string {
  const holder: { stack?: string } = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = depth + 1;
  Error.captureStackTrace(holder, callerOf);
  Error.stackTraceLimit = limit;
  const frame = holder.stack?.split('\n')[depth] ?? '';
  const match = /\(?(?:file:\/\/)?([^()\s]+):(\d+):\d+\)?$/.exec(frame.trim());
  if (match === null) return '';
  const path = match[1]!.startsWith(SOURCE_ROOT) ? match[1]!.slice(SOURCE_ROOT.length) : match[1]!;
  return `${path}:${match[2]}`;
}

export function stderrSink(): LogSink {
  return { write: (line) => process.stderr.write(line), isTty: process.stderr.isTTY === true };
}

/** A file opened for appending; lines are written synchronously (logs are rare, order matters). */
export function fileSink(path: string): LogSink {
  const fd = openSync(path, 'a');
  return {
    write: (line) => {
      writeSync(fd, line);
    },
    isTty: false,
    close: () => closeSync(fd),
  };
}

/** etcd's --log-outputs values to sinks: 'default'/'stderr', 'stdout', or a file path. */
export function sinksFor(outputs: readonly string[]): LogSink[] {
  return outputs.map((output) => {
    if (output === 'default' || output === 'stderr') return stderrSink();
    if (output === 'stdout')
      return { write: (line: string) => process.stdout.write(line), isTty: process.stdout.isTTY === true };
    return fileSink(output);
  });
}

export function createLogger(
  levelOrOptions: LogLevel | LoggerOptions,
  base: Record<string, unknown> = {},
  write?: (line: string) => void,
): Logger {
  const options: LoggerOptions =
    typeof levelOrOptions === 'string'
      ? { level: levelOrOptions, base, sinks: write === undefined ? undefined : [{ write, isTty: false }] }
      : levelOrOptions;
  const sinks = options.sinks ?? [stderrSink()];
  const format = options.format ?? 'auto';
  const text = format === 'text' || (format === 'auto' && sinks.length > 0 && sinks.every((s) => s.isTty));
  const threshold = LEVELS[options.level];
  const withCaller = options.caller ?? true;
  const baseFields = options.base ?? {};
  const log = (at: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[at] < threshold) return;
    const record: Record<string, unknown> = { level: at, ts: new Date().toISOString() };
    // Frames: callerOf, log, the level method, the caller.
    if (withCaller) record.caller = callerOf(3);
    record.msg = msg;
    Object.assign(record, baseFields);
    if (options.context) for (const [k, v] of Object.entries(options.context())) record[k] = serializable(v);
    if (fields) for (const [k, v] of Object.entries(fields)) record[k] = serializable(v);
    const line = text ? textLine(at, record) : `${JSON.stringify(record)}\n`;
    for (const sink of sinks) sink.write(line);
  };
  return {
    debug: (msg, fields) => log('debug', msg, fields),
    info: (msg, fields) => log('info', msg, fields),
    warn: (msg, fields) => log('warn', msg, fields),
    error: (msg, fields) => log('error', msg, fields),
  };
}

/** "2026-12-05T07:50:44.141Z INFO  replica/group-replica.js:571  became leader  term=2 index=1" */
function textLine(level: LogLevel, record: Record<string, unknown>): string {
  const { ts, caller, msg, level: _level, ...rest } = record;
  const pairs = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return `${ts} ${TEXT_LEVELS[level]} ${caller ?? ''}  ${msg}${pairs.length > 0 ? `  ${pairs.join(' ')}` : ''}\n`;
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
