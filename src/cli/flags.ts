// etcd-compatible command-line flags and CONCORD_* environment variables for `concord`.
// A script written for etcd should work by changing the binary name, so flag names, defaults
// and meanings follow etcd 3.4 (https://etcd.io/docs/v3.4/op-guide/configuration/).

import { parseArgs } from 'node:util';
import type { ServerConfig } from '../node/config.js';
import { QuorumConfigError } from '../paxos/errors.js';
import { type AuthTokenConfig, parseAuthTokenFlag } from '../replica/auth-tokens.js';
import { CONSENSUS_KINDS, checkPhase2Quorum } from '../replica/consensus.js';
import { cipherList, parseTlsMinVersion, type TlsSettings } from '../transport/tls-config.js';

export type ServerFlags = ServerConfig;

export class FlagError extends Error {
  readonly code = 'FLAG_ERROR';
}

/** etcd's defaults mention the member name as the literal text "${name}". */
const NAME_PLACEHOLDER = '$' + '{name}';

interface FlagSpec {
  type: 'string' | 'boolean';
  default?: string;
  help: string;
}

/** Every flag we accept, with etcd's defaults. The order is the order of --help. */
export const FLAG_SPECS: Record<string, FlagSpec> = {
  name: { type: 'string', default: 'default', help: 'Human-readable name for this member.' },
  'data-dir': { type: 'string', default: `${NAME_PLACEHOLDER}.concord`, help: 'Path to the data directory.' },
  'listen-client-urls': {
    type: 'string',
    default: 'http://localhost:2379',
    help: 'List of URLs to listen on for client traffic.',
  },
  'advertise-client-urls': {
    type: 'string',
    default: 'http://localhost:2379',
    help: "List of this member's client URLs to advertise to the public.",
  },
  'listen-peer-urls': {
    type: 'string',
    default: 'http://localhost:2380',
    help: 'List of URLs to listen on for peer traffic.',
  },
  'initial-advertise-peer-urls': {
    type: 'string',
    default: 'http://localhost:2380',
    help: "List of this member's peer URLs to advertise to the rest of the cluster.",
  },
  'initial-cluster': {
    type: 'string',
    default: `${NAME_PLACEHOLDER}=http://localhost:2380`,
    help: 'Initial cluster configuration for bootstrapping (name=peer-url,...).',
  },
  'initial-cluster-state': {
    type: 'string',
    default: 'new',
    help: "Initial cluster state ('new' or 'existing').",
  },
  'initial-cluster-token': {
    type: 'string',
    default: 'etcd-cluster',
    help: 'Initial cluster token for the cluster during bootstrap.',
  },
  'heartbeat-interval': {
    type: 'string',
    default: '100',
    help: 'Time (in milliseconds) of a heartbeat interval.',
  },
  'election-timeout': {
    type: 'string',
    default: '1000',
    help: 'Time (in milliseconds) for an election to timeout.',
  },
  'snapshot-count': {
    type: 'string',
    default: '100000',
    help: 'Number of committed transactions to trigger a snapshot to disk.',
  },
  'experimental-snapshot-catchup-entries': {
    type: 'string',
    default: '5000',
    help: 'Number of entries kept in the log behind a snapshot for slow followers to catch up from.',
  },
  'quota-backend-bytes': {
    type: 'string',
    default: '0',
    help: 'Raise alarms when backend size exceeds the given quota (0 defaults to low space quota, 2 GiB).',
  },
  'max-request-bytes': {
    type: 'string',
    default: '1572864',
    help: 'Maximum client request size in bytes the server will accept.',
  },
  'max-txn-ops': {
    type: 'string',
    default: '128',
    help: 'Maximum number of operations permitted in a transaction.',
  },
  'max-concurrent-streams': {
    type: 'string',
    default: '4294967295',
    help: 'Maximum concurrent streams that each client can open at a time.',
  },
  'max-client-connections': {
    type: 'string',
    default: '10000',
    help: 'Concord extension: maximum open client connections; more are closed as soon as accepted (0: no limit).',
  },
  'max-watchers-per-stream': {
    type: 'string',
    default: '10000',
    help: 'Concord extension: maximum watchers on one Watch stream; a create beyond it is canceled with a reason.',
  },
  'auto-compaction-mode': {
    type: 'string',
    default: 'periodic',
    help: "Interpret 'auto-compaction-retention' one of: 'periodic', 'revision'.",
  },
  'auto-compaction-retention': {
    type: 'string',
    default: '0',
    help: "Auto compaction retention length. 0 means disable auto compaction ('1h', '30m', or hours; revisions for 'revision' mode).",
  },
  'auth-token': {
    type: 'string',
    default: 'simple',
    help: "Specify auth token specific options: 'simple' or 'jwt,pub-key=…,priv-key=…,sign-method=RS256,ttl=5m'.",
  },
  'auth-token-ttl': {
    type: 'string',
    default: '300',
    help: 'The lifetime in seconds of the auth token (simple tokens).',
  },
  'bcrypt-cost': {
    type: 'string',
    default: '10',
    help: 'Specify bcrypt algorithm cost factor for auth password hashing (4 to 31).',
  },
  'cert-file': { type: 'string', default: '', help: 'Path to the client server TLS cert file.' },
  'key-file': { type: 'string', default: '', help: 'Path to the client server TLS key file.' },
  'client-cert-auth': { type: 'boolean', help: 'Enable client cert authentication.' },
  'trusted-ca-file': {
    type: 'string',
    default: '',
    help: 'Path to the client server TLS trusted CA cert file.',
  },
  'auto-tls': { type: 'boolean', help: 'Client TLS using generated certificates.' },
  'peer-cert-file': { type: 'string', default: '', help: 'Path to the peer server TLS cert file.' },
  'peer-key-file': { type: 'string', default: '', help: 'Path to the peer server TLS key file.' },
  'peer-client-cert-auth': { type: 'boolean', help: 'Enable peer client cert authentication.' },
  'peer-trusted-ca-file': {
    type: 'string',
    default: '',
    help: 'Path to the peer server TLS trusted CA file.',
  },
  'peer-auto-tls': {
    type: 'boolean',
    help: 'Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.',
  },
  'cipher-suites': {
    type: 'string',
    default: '',
    help: 'Comma-separated list of supported TLS cipher suites between client/server and peers (empty: the defaults).',
  },
  'tls-min-version': {
    type: 'string',
    default: 'TLS1.2',
    help: "Minimum TLS version supported: 'TLS1.2' or 'TLS1.3'.",
  },
  consensus: {
    type: 'string',
    default: 'raft',
    help: "Consensus engine of the cluster: 'raft' or 'multi-paxos'. Chosen when the cluster is created; a data dir keeps it.",
  },
  'paxos-phase2-quorum': {
    type: 'string',
    help: 'Multi-Paxos only: acceptances that commit a write (flexible quorums); elections then need max(majority, N - K + 1) promises. Default: a majority.',
  },
  'log-level': { type: 'string', default: 'info', help: "Log level: 'debug', 'info', 'warn', 'error'." },
  'log-outputs': {
    type: 'string',
    default: 'default',
    help: "Where to write logs: 'default' (stderr), 'stderr', 'stdout', or file paths, comma-separated. JSON lines, or text when every output is a terminal.",
  },
  'warning-apply-duration': {
    type: 'string',
    default: '100ms',
    help: 'Time an apply may take before a warning is logged (e.g. 100ms, 1s).',
  },
  'encryption-key-file': {
    type: 'string',
    default: '',
    help: 'Concord extension: encrypt the WAL, snapshots and stored keys and values with AES-256-GCM; the file holds <id>:<base64 32-byte key> lines (the first starts a new data dir). See docs/operations.md.',
  },
  'experimental-fault-injection': {
    type: 'boolean',
    help: 'TEST ONLY: serve /debug/faults on the client URL to drop or delay peer messages.',
  },
  'experimental-stale-reads': {
    type: 'boolean',
    help: 'TEST ONLY, UNSAFE: serve linearizable reads without ReadIndex (to prove the fault tests catch it).',
  },
  version: { type: 'boolean', help: 'Print the version and exit.' },
  help: { type: 'boolean', help: 'Show this help and exit.' },
};

const DEFAULT_QUOTA_BACKEND_BYTES = 2 * 1024 * 1024 * 1024;

/** etcd reads ETCD_NAME, ETCD_DATA_DIR, …; we read CONCORD_NAME, CONCORD_DATA_DIR, … */
export function envVarName(flag: string): string {
  return `CONCORD_${flag.toUpperCase().replaceAll('-', '_')}`;
}

export type ParsedCommandLine = { kind: 'version' } | { kind: 'help' } | { kind: 'run'; flags: ServerFlags };

export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv): ParsedCommandLine {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const [flag, spec] of Object.entries(FLAG_SPECS)) options[flag] = { type: spec.type };
  let values: Record<string, string | boolean | undefined>;
  try {
    // etcd accepts both -flag and --flag; node's parseArgs needs the double dash.
    const normalized = argv.map((arg) => (/^-[a-z][a-z-]+/.test(arg) ? `-${arg}` : arg));
    values = parseArgs({ args: normalized, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new FlagError(`${(error as Error).message}. Run 'concord --help' for the list of flags.`);
  }
  if (values.version === true) return { kind: 'version' };
  if (values.help === true) return { kind: 'help' };

  const lookup = (flag: string): string => {
    const fromArgs = values[flag];
    if (typeof fromArgs === 'string') return fromArgs;
    const fromEnv = env[envVarName(flag)];
    if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
    return FLAG_SPECS[flag]?.default ?? '';
  };
  const lookupBool = (flag: string): boolean => {
    if (values[flag] === true) return true;
    const fromEnv = env[envVarName(flag)];
    return fromEnv === 'true' || fromEnv === '1';
  };
  const name = lookup('name');
  const expand = (text: string): string => text.replaceAll(NAME_PLACEHOLDER, name);
  return {
    kind: 'run',
    flags: {
      ...buildFlags(lookup, expand, name),
      ...tlsFlags(lookup, lookupBool),
      experimentalFaultInjection: lookupBool('experimental-fault-injection'),
      experimentalStaleReads: lookupBool('experimental-stale-reads'),
      ...(lookup('encryption-key-file') === '' ? {} : { encryptionKeyFile: lookup('encryption-key-file') }),
    },
  };
}

type StringFlags = Omit<
  ServerFlags,
  'experimentalFaultInjection' | 'experimentalStaleReads' | 'clientTls' | 'peerTls' | 'encryptionKeyFile'
>;

/** The TLS flags of both sides; a side with none of its flags given is absent (plaintext). */
function tlsFlags(
  lookup: (flag: string) => string,
  lookupBool: (flag: string) => boolean,
): Pick<ServerFlags, 'clientTls' | 'peerTls'> {
  let cipherSuites: string[];
  let minVersion: TlsSettings['minVersion'];
  try {
    cipherSuites = lookup('cipher-suites')
      .split(',')
      .map((name) => name.trim())
      .filter((name) => name !== '');
    cipherList(cipherSuites);
    minVersion = parseTlsMinVersion(lookup('tls-min-version'));
  } catch (error) {
    throw new FlagError((error as Error).message);
  }
  const side = (prefix: '' | 'peer-'): TlsSettings | undefined => {
    const settings: TlsSettings = {
      certFile: lookup(`${prefix}cert-file`),
      keyFile: lookup(`${prefix}key-file`),
      trustedCaFile: lookup(`${prefix}trusted-ca-file`),
      clientCertAuth: lookupBool(`${prefix}client-cert-auth`),
      autoTls: lookupBool(`${prefix}auto-tls`),
      cipherSuites,
      minVersion,
    };
    const given = settings.certFile !== '' || settings.keyFile !== '' || settings.autoTls;
    return given || settings.trustedCaFile !== '' || settings.clientCertAuth ? settings : undefined;
  };
  return { clientTls: side(''), peerTls: side('peer-') };
}

function buildFlags(
  lookup: (flag: string) => string,
  expand: (t: string) => string,
  name: string,
): StringFlags {
  const initialClusterState = lookup('initial-cluster-state');
  if (initialClusterState !== 'new' && initialClusterState !== 'existing') {
    throw new FlagError(
      `invalid value "${initialClusterState}" for flag -initial-cluster-state: must be 'new' or 'existing'`,
    );
  }
  const autoCompactionMode = lookup('auto-compaction-mode');
  if (autoCompactionMode !== 'periodic' && autoCompactionMode !== 'revision') {
    throw new FlagError(`unknown auto-compaction-mode ${JSON.stringify(autoCompactionMode)}`);
  }
  const logLevel = lookup('log-level');
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    throw new FlagError(`unknown log level ${JSON.stringify(logLevel)}`);
  }
  const heartbeatIntervalMs = parsePositiveInt('heartbeat-interval', lookup('heartbeat-interval'));
  const electionTimeoutMs = parsePositiveInt('election-timeout', lookup('election-timeout'));
  if (electionTimeoutMs < 5 * heartbeatIntervalMs) {
    throw new FlagError(
      `--election-timeout[${electionTimeoutMs}ms] should be at least as 5 times as --heartbeat-interval[${heartbeatIntervalMs}ms]`,
    );
  }
  const quota = parseNonNegativeInt('quota-backend-bytes', lookup('quota-backend-bytes'));
  const flags: StringFlags = {
    name,
    dataDir: expand(lookup('data-dir')),
    listenClientUrls: parseUrlList('listen-client-urls', lookup('listen-client-urls')),
    advertiseClientUrls: parseUrlList('advertise-client-urls', lookup('advertise-client-urls')),
    listenPeerUrls: parseUrlList('listen-peer-urls', lookup('listen-peer-urls')),
    initialAdvertisePeerUrls: parseUrlList(
      'initial-advertise-peer-urls',
      lookup('initial-advertise-peer-urls'),
    ),
    initialCluster: parseInitialCluster(expand(lookup('initial-cluster'))),
    initialClusterState,
    initialClusterToken: lookup('initial-cluster-token'),
    heartbeatIntervalMs,
    electionTimeoutMs,
    snapshotCount: parsePositiveInt('snapshot-count', lookup('snapshot-count')),
    snapshotCatchUpEntries: parsePositiveInt(
      'experimental-snapshot-catchup-entries',
      lookup('experimental-snapshot-catchup-entries'),
    ),
    quotaBackendBytes: quota === 0 ? DEFAULT_QUOTA_BACKEND_BYTES : quota,
    maxRequestBytes: parsePositiveInt('max-request-bytes', lookup('max-request-bytes')),
    maxTxnOps: parsePositiveInt('max-txn-ops', lookup('max-txn-ops')),
    ...clientLimitFlags(lookup),
    autoCompactionMode,
    autoCompactionRetention: parseRetention(autoCompactionMode, lookup('auto-compaction-retention')),
    logLevel: logLevel as ServerFlags['logLevel'],
    logOutputs: parseLogOutputs(lookup('log-outputs')),
    warningApplyDurationMs: parseDurationMs('warning-apply-duration', lookup('warning-apply-duration')),
    ...authFlags(lookup),
  };
  if (flags.initialClusterState === 'new' && !flags.initialCluster.has(name)) {
    throw new FlagError(
      `couldn't find local name "${name}" in the initial cluster configuration (--initial-cluster=${lookup('initial-cluster')})`,
    );
  }
  return { ...flags, ...consensusFlags(lookup, flags.initialCluster.size) };
}

/** --auth-token, --auth-token-ttl and --bcrypt-cost (etcd's). */
function authFlags(
  lookup: (flag: string) => string,
): Pick<ServerFlags, 'authToken' | 'authTokenTtlSeconds' | 'bcryptCost'> {
  let authToken: AuthTokenConfig;
  try {
    authToken = parseAuthTokenFlag(lookup('auth-token'));
  } catch (error) {
    throw new FlagError((error as Error).message);
  }
  const bcryptCost = parsePositiveInt('bcrypt-cost', lookup('bcrypt-cost'));
  // bcrypt's own bounds (Go's bcrypt.MinCost and MaxCost).
  if (bcryptCost < 4 || bcryptCost > 31)
    throw new FlagError(`invalid value "${bcryptCost}" for flag -bcrypt-cost: must be between 4 and 31`);
  return {
    authToken,
    authTokenTtlSeconds: parsePositiveInt('auth-token-ttl', lookup('auth-token-ttl')),
    bcryptCost,
  };
}

/**
 * --consensus and --paxos-phase2-quorum. The phase-2 quorum is checked for intersection with the
 * phase-1 quorum over the --initial-cluster voters here; the engine checks it again against the
 * membership it starts with (which, for a restarted member, may have changed since).
 */
function consensusFlags(
  lookup: (flag: string) => string,
  voters: number,
): Pick<ServerFlags, 'consensus' | 'paxosPhase2Quorum'> {
  const consensus = CONSENSUS_KINDS.find((kind) => kind === lookup('consensus'));
  if (consensus === undefined) {
    throw new FlagError(
      `invalid value "${lookup('consensus')}" for flag -consensus: must be one of ${CONSENSUS_KINDS.join(', ')}`,
    );
  }
  const phase2Text = lookup('paxos-phase2-quorum');
  if (phase2Text === '') return { consensus };
  if (consensus !== 'multi-paxos')
    throw new FlagError('--paxos-phase2-quorum applies to --consensus multi-paxos only');
  const paxosPhase2Quorum = parsePositiveInt('paxos-phase2-quorum', phase2Text);
  try {
    checkPhase2Quorum(voters, paxosPhase2Quorum);
  } catch (error) {
    if (!(error instanceof QuorumConfigError)) throw error;
    throw new FlagError(
      `invalid --paxos-phase2-quorum ${paxosPhase2Quorum} for the ${voters} members of --initial-cluster: ${error.message}`,
    );
  }
  return { consensus, paxosPhase2Quorum };
}

/** etcd's --max-concurrent-streams and Concord's client limits. */
function clientLimitFlags(
  lookup: (flag: string) => string,
): Pick<ServerFlags, 'maxConcurrentStreams' | 'maxClientConnections' | 'maxWatchersPerStream'> {
  const streams = parseUint32('max-concurrent-streams', lookup('max-concurrent-streams'));
  return {
    // grpc-go (etcd) reads 0 as "no limit"; in HTTP/2 it would forbid every call.
    maxConcurrentStreams: streams === 0 ? UINT32_MAX : streams,
    maxClientConnections: parseNonNegativeInt('max-client-connections', lookup('max-client-connections')),
    maxWatchersPerStream: parsePositiveInt('max-watchers-per-stream', lookup('max-watchers-per-stream')),
  };
}

const UINT32_MAX = 2 ** 32 - 1;

/** A uint32 as etcd's flag package reads it (Go's strconv.ParseUint with base 0), errors included. */
export function parseUint32(flag: string, text: string): number {
  const match = /^(?:0x([0-9a-f]+)|0o([0-7]+)|0b([01]+)|(0[0-7]*)|([1-9][0-9]*))$/i.exec(text);
  const fail = (reason: string): never => {
    throw new FlagError(
      `invalid value "${text}" for flag -${flag}: strconv.ParseUint: parsing ${JSON.stringify(text)}: ${reason}`,
    );
  };
  if (match === null) return fail('invalid syntax');
  const [, hex, octal, binary, leadingZeroOctal, decimal] = match;
  const value =
    hex !== undefined
      ? BigInt(`0x${hex}`)
      : octal !== undefined
        ? BigInt(`0o${octal}`)
        : binary !== undefined
          ? BigInt(`0b${binary}`)
          : leadingZeroOctal !== undefined
            ? BigInt(`0o${leadingZeroOctal}`)
            : BigInt(decimal!);
  if (value > BigInt(UINT32_MAX)) return fail('value out of range');
  return Number(value);
}

function parsePositiveInt(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new FlagError(`invalid value "${text}" for flag -${flag}: must be a positive integer`);
  }
  return value;
}

function parseNonNegativeInt(flag: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new FlagError(`invalid value "${text}" for flag -${flag}: must be a non-negative integer`);
  }
  return value;
}

export function parseUrlList(flag: string, text: string): string[] {
  const urls = text
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (urls.length === 0) throw new FlagError(`flag -${flag} needs at least one URL`);
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new FlagError(`invalid URL "${url}" for flag -${flag}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:' && parsed.protocol !== 'unix:') {
      throw new FlagError(`URL scheme must be http, https, unix or unixs: ${url}`);
    }
    if (parsed.protocol !== 'unix:' && parsed.port === '') {
      throw new FlagError(`URL address does not have the form "host:port": ${url}`);
    }
  }
  return urls;
}

export function parseInitialCluster(text: string): Map<string, string[]> {
  const cluster = new Map<string, string[]>();
  for (const part of text.split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') continue;
    const eq = trimmed.indexOf('=');
    if (eq <= 0) throw new FlagError(`invalid --initial-cluster entry "${trimmed}": expected name=url`);
    const name = trimmed.slice(0, eq);
    const [url] = parseUrlList('initial-cluster', trimmed.slice(eq + 1));
    const urls = cluster.get(name) ?? [];
    urls.push(url!);
    cluster.set(name, urls);
  }
  if (cluster.size === 0) throw new FlagError('--initial-cluster is empty');
  return cluster;
}

function parseLogOutputs(text: string): string[] {
  const outputs = text
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  if (outputs.length === 0) throw new FlagError('--log-outputs needs at least one output');
  return outputs;
}

const DURATION_UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A Go duration as etcd's flags take them ("100ms", "1.5s", "1m30s"), in milliseconds. */
export function parseDurationMs(flag: string, text: string): number {
  const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)];
  const joined = parts.map((p) => p[0]).join('');
  if (parts.length === 0 || joined !== text.trim()) {
    throw new FlagError(`invalid value "${text}" for flag -${flag}: time: invalid duration "${text}"`);
  }
  return parts.reduce((total, p) => total + Number(p[1]) * DURATION_UNIT_MS[p[2]!]!, 0);
}

/** etcd's retention: plain numbers are hours in periodic mode ('1h', '30m', '90s' also accepted). */
function parseRetention(mode: 'periodic' | 'revision', text: string): number {
  if (mode === 'revision') return parseNonNegativeInt('auto-compaction-retention', text);
  const match = /^(\d+(?:\.\d+)?)(h|m|s|ms)?$/.exec(text.trim());
  if (!match) throw new FlagError(`invalid auto-compaction-retention "${text}"`);
  const amount = Number(match[1]);
  const unitMs = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 }[match[2] ?? 'h'] ?? 3_600_000;
  return Math.round(amount * unitMs);
}

export function helpText(version: string): string {
  const lines = [
    `concord ${version}: a distributed, strongly consistent key-value store (etcd v3 API)`,
    '',
    'Usage: concord [flags]          run a member',
    '       concord bench WORKLOAD   load-test a cluster (put, range, txn, watch, lease-keepalive, mixed)',
    '',
  ];
  for (const [flag, spec] of Object.entries(FLAG_SPECS)) {
    const dflt = spec.default !== undefined ? ` (default "${spec.default}")` : '';
    lines.push(`  --${flag}`, `      ${spec.help}${dflt}`);
  }
  lines.push(
    '',
    'Every flag can also be set through the environment: --data-dir as CONCORD_DATA_DIR, and so on.',
  );
  return lines.join('\n');
}
