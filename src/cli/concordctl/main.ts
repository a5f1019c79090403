// concordctl: etcdctl's commands, flags and output formats, on the Concord client.

import { Client, ConcordError, fromGrpcError, type TlsOptions } from '../../client/index.js';
import { type FlagSpec, flagString, parseArgs, parseDurationMs, UsageError } from './args.js';
import { checkCapacity } from './capacity.js';
import * as cluster from './cluster.js';
import { type Command, type CommandContext, CommandError } from './context.js';
import * as coord from './coord.js';
import * as encryption from './encryption.js';
import * as kv from './kv.js';
import * as lease from './lease.js';
import { type Output, parseWriteOut } from './output.js';
import { checkPerf } from './perf.js';
import * as shard from './shard.js';

const flagSpecs: FlagSpec[] = [
  { name: 'endpoints', type: 'string', default: '127.0.0.1:2379' },
  { name: 'write-out', alias: 'w', type: 'string', default: 'simple' },
  { name: 'dial-timeout', type: 'string', default: '2s' },
  { name: 'command-timeout', type: 'string', default: '5s' },
  { name: 'cacert', type: 'string' },
  { name: 'cert', type: 'string' },
  { name: 'key', type: 'string' },
  { name: 'insecure-skip-tls-verify', type: 'boolean' },
  { name: 'user', type: 'string' },
  { name: 'help', alias: 'h', type: 'boolean' },
  // command flags (etcdctl's names)
  { name: 'prefix', type: 'boolean' },
  { name: 'from-key', type: 'boolean' },
  { name: 'limit', type: 'string' },
  { name: 'rev', type: 'string' },
  { name: 'sort-by', type: 'string' },
  { name: 'order', type: 'string' },
  { name: 'keys-only', type: 'boolean' },
  { name: 'count-only', type: 'boolean' },
  { name: 'print-value-only', type: 'boolean' },
  { name: 'consistency', type: 'string' },
  { name: 'lease', type: 'string' },
  { name: 'prev-kv', type: 'boolean' },
  { name: 'ignore-value', type: 'boolean' },
  { name: 'ignore-lease', type: 'boolean' },
  { name: 'interactive', alias: 'i', type: 'boolean' },
  { name: 'physical', type: 'boolean' },
  { name: 'keys', type: 'boolean' },
  { name: 'once', type: 'boolean' },
  { name: 'ttl', type: 'string' },
  { name: 'listen', alias: 'l', type: 'boolean' },
  { name: 'peer-urls', type: 'string' },
  { name: 'name', type: 'string' },
  { name: 'data-dir', type: 'string' },
  { name: 'initial-cluster', type: 'string' },
  { name: 'initial-cluster-token', type: 'string' },
  { name: 'initial-advertise-peer-urls', type: 'string' },
  { name: 'skip-hash-check', type: 'boolean' },
  { name: 'learner', type: 'boolean' },
  { name: 'cluster', type: 'boolean' },
  { name: 'load', type: 'string' },
  { name: 'duration', type: 'string' },
  { name: 'by', type: 'string' },
  // check capacity
  { name: 'interval', type: 'string' },
  { name: 'no-bench', type: 'boolean' },
  { name: 'recorded', type: 'string' },
  { name: 'save', type: 'string' },
  { name: 'publish', type: 'boolean' },
  { name: 'target-writes-per-s', type: 'string' },
  { name: 'target-keys', type: 'string' },
  { name: 'target-bytes', type: 'string' },
];

const commands: Record<string, Command | Record<string, Command>> = {
  get: kv.get,
  put: kv.put,
  del: kv.del,
  txn: kv.txn,
  watch: kv.watch,
  compaction: kv.compaction,
  counter: { incr: kv.counterIncr },
  lease: {
    grant: lease.leaseGrant,
    revoke: lease.leaseRevoke,
    timetolive: lease.leaseTimeToLive,
    list: lease.leaseList,
    'keep-alive': lease.leaseKeepAlive,
  },
  lock: coord.lock,
  elect: coord.elect,
  member: {
    list: cluster.memberList,
    add: cluster.memberAdd,
    remove: cluster.memberRemove,
    update: cluster.memberUpdate,
    promote: cluster.memberPromote,
  },
  endpoint: {
    status: cluster.endpointStatus,
    health: cluster.endpointHealth,
    hashkv: cluster.endpointHashKv,
  },
  snapshot: { save: cluster.snapshotSave, status: cluster.snapshotStatus, restore: cluster.snapshotRestore },
  defrag: cluster.defrag,
  alarm: { list: cluster.alarmList, disarm: cluster.alarmDisarm },
  'move-leader': cluster.moveLeader,
  check: { perf: checkPerf, capacity: checkCapacity },
  encryption: { 'rotate-key': encryption.rotateKey, status: encryption.status },
  shard: { list: shard.list, split: shard.split },
};

/** Commands that never talk to a server. */
const offline = new Set(['snapshot status', 'snapshot restore']);

function usage(): string {
  const lines = ['usage: concordctl [global flags] <command> [flags] [args]', '', 'commands:'];
  for (const [name, entry] of Object.entries(commands)) {
    if (typeof entry === 'function') lines.push(`  ${name}`);
    else lines.push(`  ${name} ${Object.keys(entry).join('|')}`);
  }
  lines.push(
    '',
    'global flags: --endpoints a,b,c  --write-out simple|json|table  --dial-timeout 2s  --command-timeout 5s',
  );
  lines.push('              --cacert --cert --key --insecure-skip-tls-verify (TLS)  --user name:password');
  return lines.join('\n');
}

function resolveCommand(positionals: string[]): { command: Command; name: string; operands: string[] } {
  const [first, second, ...rest] = positionals;
  if (first === undefined) throw new UsageError(usage());
  const entry = commands[first];
  if (entry === undefined) throw new UsageError(`unknown command "${first}"\n${usage()}`);
  if (typeof entry === 'function') return { command: entry, name: first, operands: positionals.slice(1) };
  const sub = second === undefined ? undefined : entry[second];
  if (sub === undefined)
    throw new UsageError(`${first} needs a subcommand: ${Object.keys(entry).join(', ')}`);
  return { command: sub, name: `${first} ${second}`, operands: rest };
}

/** Endpoints as etcdctl takes them, with or without a scheme (kept as given for output). */
function endpointList(text: string): string[] {
  return text
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
}

export interface Io extends Output {
  stdin: NodeJS.ReadableStream;
}

async function tlsOptions(args: ReturnType<typeof parseArgs>): Promise<TlsOptions | undefined> {
  const { readFile } = await import('node:fs/promises');
  const [ca, cert, key] = ['cacert', 'cert', 'key'].map((n) => flagString(args, n));
  const skipVerify = args.flags.get('insecure-skip-tls-verify') === 'true';
  if (ca === undefined && cert === undefined && key === undefined && !skipVerify) return undefined;
  // etcdctl's checks and texts.
  if (cert !== undefined && key === undefined)
    throw new UsageError(`KeyFile and CertFile must both be present[key: , cert: ${cert}]`);
  if (key !== undefined && cert === undefined)
    throw new UsageError(`KeyFile and CertFile must both be present[key: ${key}, cert: ]`);
  return {
    ca: ca === undefined ? undefined : await readFile(ca),
    cert: cert === undefined ? undefined : await readFile(cert),
    key: key === undefined ? undefined : await readFile(key),
    insecureSkipVerify: skipVerify,
  };
}

/** Runs one concordctl invocation; returns the exit code (etcdctl's: 1 error, 128 bad args). */
export async function runConcordctl(argv: readonly string[], io: Io, signal: AbortSignal): Promise<number> {
  let client: Client | undefined;
  try {
    const args = parseArgs(argv, flagSpecs);
    if (args.flags.get('help') === 'true' || args.positionals.length === 0) {
      io.out(usage());
      return 0;
    }
    const { command, name, operands } = resolveCommand(args.positionals);
    const endpoints = endpointList(flagString(args, 'endpoints') ?? '127.0.0.1:2379');
    const commandTimeoutMs = parseDurationMs(flagString(args, 'command-timeout') ?? '5s');
    const dialTimeoutMs = parseDurationMs(flagString(args, 'dial-timeout') ?? '2s');
    const user = flagString(args, 'user');
    const [username, password] =
      user === undefined ? [] : [user.split(':')[0] as string, user.split(':').slice(1).join(':')];
    const tls = await tlsOptions(args);
    client = new Client({
      endpoints,
      dialTimeoutMs,
      requestTimeoutMs: commandTimeoutMs,
      tls,
      auth: username === undefined ? undefined : { username, password: password ?? '' },
      leaderRefreshMs: offline.has(name) ? 0 : undefined,
    });
    const ctx: CommandContext = {
      client,
      endpoints,
      tls,
      writeOut: parseWriteOut(flagString(args, 'write-out')),
      io,
      args,
      operands,
      stdin: io.stdin,
      commandTimeoutMs,
      dialTimeoutMs,
      signal,
    };
    return await command(ctx);
  } catch (error) {
    return reportError(error, io);
  } finally {
    client?.close();
  }
}

function reportError(error: unknown, io: Output): number {
  if (error instanceof UsageError) {
    io.err(`Error: ${error.message}`);
    return 128;
  }
  if (error instanceof CommandError) {
    io.err(`Error: ${error.message}`);
    return error.exitCode;
  }
  const typed = error instanceof ConcordError ? error : fromGrpcError(error);
  io.err(`Error: ${typed.message}`);
  // etcdctl: 2 when no endpoint could be reached.
  return typed.code === 'unavailable' && typed.outcome === 'not-applied' ? 2 : 1;
}
