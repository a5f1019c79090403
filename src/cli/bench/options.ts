// Flags of `concord bench <workload>`, modelled on etcd's `benchmark` tool so its users find the
// same knobs: --endpoints, --conns, --clients, --total, --key-size, --val-size, --key-space-size,
// --consistency, --target-leader.

import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export const WORKLOADS = ['put', 'range', 'txn', 'watch', 'lease-keepalive', 'mixed'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

export class BenchFlagError extends Error {
  readonly code = 'BENCH_FLAG';
}

export interface BenchOptions {
  workload: WorkloadName;
  endpoints: string[];
  conns: number;
  clients: number;
  /** Operations to run; undefined when the run is bounded by `durationMs` instead. */
  total: number | undefined;
  durationMs: number | undefined;
  keySize: number;
  valSize: number;
  keySpaceSize: number;
  sequentialKeys: boolean;
  consistency: 'l' | 's';
  readRatio: number;
  watchers: number;
  watchStreams: number;
  leases: number;
  targetLeader: boolean;
  skipPreload: boolean;
  requestTimeoutMs: number;
  json: boolean;
  progress: boolean;
  /** TLS to the endpoints (etcd benchmark's --cacert/--cert/--key); undefined: plaintext. */
  tls?: BenchTls;
  /** put: keys start with this (counted in --key-size), so a run in a live cluster can be deleted. */
  keyPrefix?: string;
  /** etcd benchmark's --user: sign in once, then send the token with every call; undefined: none. */
  auth?: BenchAuth;
}

/** A user name and password, signed in with Authenticate; its token then goes with every call. */
export interface BenchAuth {
  user: string;
  password: string;
}

/** PEM material for TLS connections; insecureSkipVerify for self-signed (--auto-tls) members. */
export interface BenchTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  insecureSkipVerify?: boolean;
}

export const defaultTotal = 10_000;

export const benchHelp = `Usage: concord bench <workload> [flags]

Workloads:
  put              Put keys (--sequential-keys or random over --key-space-size)
  range            Get random keys of --key-space-size preloaded keys (--consistency l|s)
  txn              Compare-and-swap on mod_revision with contention over --key-space-size keys
  watch            --watchers watchers on a prefix, --clients writers; events/s and put→event latency
  lease-keepalive  --leases leases kept alive as fast as possible by --clients loops
  mixed            Gets and puts over --key-space-size keys, --read-ratio of them gets

Flags:
  --endpoints LIST       comma-separated client endpoints (default 127.0.0.1:2379)
  --conns N              gRPC connections (HTTP/2 channels) (default 1)
  --clients N            concurrent outstanding requests, spread over the conns (default 1)
  --total N              operations to run (default ${defaultTotal} unless --duration is given)
  --duration SECONDS     run for this long instead of --total
  --key-size BYTES       key size (default 8)
  --val-size BYTES       value size (default 8; watch needs at least 8)
  --key-space-size N     distinct keys (default 1000)
  --sequential-keys      put: keys 0,1,2,… instead of random
  --consistency l|s      range/mixed reads: linearizable or serializable (default l)
  --read-ratio R         mixed: fraction of operations that are gets (default 0.5)
  --watchers N           watch: watchers (default 100)
  --watch-streams N      watch: gRPC watch streams the watchers share (default: one per watcher)
  --leases N             lease-keepalive: leases (default 100, at least --clients)
  --target-leader        send everything to the leader's endpoint (found via Maintenance.Status)
  --skip-preload         range/mixed: keys are already there, do not write them first
  --request-timeout MS   per-request deadline (default 10000)
  --cacert FILE          TLS: verify the members with this CA (https:// endpoints)
  --cert FILE --key FILE TLS: client certificate and key (for --client-cert-auth)
  --insecure-skip-tls-verify  TLS without verifying the members' certificates (--auto-tls)
  --user NAME:PASSWORD   auth: sign in as this user and send its token with every request
  --json                 print one machine-readable JSON line instead of the report
  --help                 this text
`;

const flagSpecs = {
  endpoints: { type: 'string' },
  conns: { type: 'string' },
  clients: { type: 'string' },
  total: { type: 'string' },
  duration: { type: 'string' },
  'key-size': { type: 'string' },
  'val-size': { type: 'string' },
  'key-space-size': { type: 'string' },
  'sequential-keys': { type: 'boolean' },
  consistency: { type: 'string' },
  'read-ratio': { type: 'string' },
  watchers: { type: 'string' },
  'watch-streams': { type: 'string' },
  leases: { type: 'string' },
  'target-leader': { type: 'boolean' },
  'skip-preload': { type: 'boolean' },
  'request-timeout': { type: 'string' },
  json: { type: 'boolean' },
  cacert: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'insecure-skip-tls-verify': { type: 'boolean' },
  user: { type: 'string' },
  help: { type: 'boolean' },
} as const;

export type ParsedBenchArgs = { kind: 'help' } | { kind: 'run'; options: BenchOptions };

export function parseBenchArgs(argv: string[], stderrIsTty: boolean): ParsedBenchArgs {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; options: typeof flagSpecs; allowPositionals: true }>
  >;
  try {
    parsed = parseArgs({ args: argv, options: flagSpecs, allowPositionals: true, strict: true });
  } catch (error) {
    throw new BenchFlagError(`${(error as Error).message}. Run 'concord bench --help'.`);
  }
  const { values, positionals } = parsed;
  if (values.help === true) return { kind: 'help' };
  if (positionals.length !== 1) throw new BenchFlagError(`expected one workload (${WORKLOADS.join(', ')})`);
  const workload = positionals[0]!;
  if (!isWorkload(workload))
    throw new BenchFlagError(`unknown workload '${workload}' (${WORKLOADS.join(', ')})`);
  const durationSec = values.duration === undefined ? undefined : positiveNumber('duration', values.duration);
  if (durationSec !== undefined && values.total !== undefined)
    throw new BenchFlagError('give --total or --duration, not both');
  const json = values.json === true;
  const clients = positiveInt('clients', values.clients ?? '1');
  const watchers = positiveInt('watchers', values.watchers ?? '100');
  const options: BenchOptions = {
    workload,
    endpoints: (values.endpoints ?? '127.0.0.1:2379').split(',').filter((e) => e.trim() !== ''),
    conns: positiveInt('conns', values.conns ?? '1'),
    clients,
    total: durationSec === undefined ? positiveInt('total', values.total ?? String(defaultTotal)) : undefined,
    durationMs: durationSec === undefined ? undefined : durationSec * 1000,
    keySize: positiveInt('key-size', values['key-size'] ?? '8'),
    valSize: positiveInt('val-size', values['val-size'] ?? '8'),
    keySpaceSize: positiveInt('key-space-size', values['key-space-size'] ?? '1000'),
    sequentialKeys: values['sequential-keys'] === true,
    consistency: consistency(values.consistency ?? 'l'),
    readRatio: ratio(values['read-ratio'] ?? '0.5'),
    watchers,
    watchStreams: positiveInt('watch-streams', values['watch-streams'] ?? String(watchers)),
    leases: positiveInt('leases', values.leases ?? '100'),
    targetLeader: values['target-leader'] === true,
    skipPreload: values['skip-preload'] === true,
    requestTimeoutMs: positiveInt('request-timeout', values['request-timeout'] ?? '10000'),
    json,
    progress: !json && stderrIsTty,
    tls: tlsFlags(values),
    auth: values.user === undefined ? undefined : userFlag(values.user),
  };
  validateOptions(options);
  return { kind: 'run', options };
}

function tlsFlags(values: {
  cacert?: string;
  cert?: string;
  key?: string;
  'insecure-skip-tls-verify'?: boolean;
}): BenchTls | undefined {
  const skip = values['insecure-skip-tls-verify'] === true;
  if (values.cacert === undefined && values.cert === undefined && values.key === undefined && !skip)
    return undefined;
  if ((values.cert === undefined) !== (values.key === undefined))
    throw new BenchFlagError('--cert and --key must be given together');
  const read = (path: string | undefined) => (path === undefined ? undefined : readFileSync(path));
  return {
    ca: read(values.cacert),
    cert: read(values.cert),
    key: read(values.key),
    insecureSkipVerify: skip,
  };
}

/** `name:password` (etcd benchmark's --user; this tool never prompts, so the password is required). */
function userFlag(text: string): BenchAuth {
  const at = text.indexOf(':');
  if (at <= 0) throw new BenchFlagError(`--user must be NAME:PASSWORD, got '${text}'`);
  return { user: text.slice(0, at), password: text.slice(at + 1) };
}

/** Checks the combinations no single flag parser can; also used for options built in code. */
export function validateOptions(options: BenchOptions): void {
  if (options.endpoints.length === 0) throw new BenchFlagError('--endpoints is empty');
  if ((options.total === undefined) === (options.durationMs === undefined))
    throw new BenchFlagError('exactly one of total and duration must be set');
  const keyDigits = String(options.keySpaceSize - 1).length;
  const prefixBytes = options.workload === 'watch' ? watchKeyPrefix.length : (options.keyPrefix?.length ?? 0);
  if (options.keySize < keyDigits + prefixBytes)
    throw new BenchFlagError(
      `--key-size ${options.keySize} is too small for ${options.keySpaceSize} distinct keys (needs ${keyDigits + prefixBytes})`,
    );
  if (options.workload === 'watch' && options.valSize < 8)
    throw new BenchFlagError('watch needs --val-size of at least 8 (the value carries the send time)');
  if (options.workload === 'lease-keepalive' && options.clients > options.leases)
    throw new BenchFlagError(
      `--clients ${options.clients} exceeds --leases ${options.leases}; each client owns its leases`,
    );
  if (options.watchStreams > options.watchers)
    throw new BenchFlagError(
      `--watch-streams ${options.watchStreams} exceeds --watchers ${options.watchers}`,
    );
}

/** Keys written by the watch workload start with this, and the watchers watch this prefix. */
export const watchKeyPrefix = 'w';

function isWorkload(name: string): name is WorkloadName {
  return (WORKLOADS as readonly string[]).includes(name);
}

function positiveInt(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1)
    throw new BenchFlagError(`--${flag} must be a positive integer, got '${text}'`);
  return value;
}

function positiveNumber(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0)
    throw new BenchFlagError(`--${flag} must be a positive number, got '${text}'`);
  return value;
}

function ratio(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0 || value > 1)
    throw new BenchFlagError(`--read-ratio must be in [0, 1], got '${text}'`);
  return value;
}

function consistency(text: string): 'l' | 's' {
  if (text === 'l' || text === 's') return text;
  throw new BenchFlagError(`--consistency must be 'l' or 's', got '${text}'`);
}
