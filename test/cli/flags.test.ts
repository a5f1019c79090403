import assert from 'node:assert/strict';
import { test } from 'node:test';
import { envVarName, FlagError, parseCommandLine } from '../../src/cli/flags.js';

const cluster = ['--initial-cluster', 'n1=http://127.0.0.1:2380,n2=http://127.0.0.1:22380'];

test('etcd flag names and meanings are accepted, single or double dash', () => {
  const parsed = parseCommandLine(
    [
      '-name',
      'n1',
      '--data-dir',
      '/tmp/x',
      '--heartbeat-interval',
      '50',
      '--election-timeout',
      '500',
      ...cluster,
    ],
    {},
  );
  assert.equal(parsed.kind, 'run');
  if (parsed.kind !== 'run') return;
  assert.equal(parsed.flags.name, 'n1');
  assert.equal(parsed.flags.dataDir, '/tmp/x');
  assert.equal(parsed.flags.heartbeatIntervalMs, 50);
  assert.deepEqual(parsed.flags.initialCluster.get('n2'), ['http://127.0.0.1:22380']);
  assert.equal(parsed.flags.maxRequestBytes, 1.5 * 1024 * 1024);
});

test('CONCORD_* environment variables stand in for flags; flags win', () => {
  assert.equal(envVarName('data-dir'), 'CONCORD_DATA_DIR');
  const parsed = parseCommandLine(['--name', 'n1', ...cluster], {
    CONCORD_SNAPSHOT_COUNT: '42',
    CONCORD_NAME: 'n2',
  });
  assert.ok(parsed.kind === 'run');
  assert.equal(parsed.flags.snapshotCount, 42);
  assert.equal(parsed.flags.name, 'n1');
  assert.equal(parsed.flags.dataDir, 'n1.concord');
});

test('--experimental-snapshot-catchup-entries sets the entries kept behind a snapshot (etcd default 5000)', () => {
  const defaults = parseCommandLine(['--name', 'n1', ...cluster], {});
  assert.ok(defaults.kind === 'run');
  assert.equal(defaults.flags.snapshotCatchUpEntries, 5000);
  const parsed = parseCommandLine(
    ['--name', 'n1', ...cluster, '--experimental-snapshot-catchup-entries', '10'],
    {},
  );
  assert.ok(parsed.kind === 'run');
  assert.equal(parsed.flags.snapshotCatchUpEntries, 10);
  assert.throws(
    () => parseCommandLine(['--name', 'n1', ...cluster, '--experimental-snapshot-catchup-entries', '0'], {}),
    /must be a positive integer/,
  );
});

test('bad flags are refused with a clear message', () => {
  assert.throws(() => parseCommandLine(['--bogus'], {}), FlagError);
  assert.throws(() => parseCommandLine(['--name', 'zz', ...cluster], {}), /couldn't find local name "zz"/);
  assert.throws(
    () => parseCommandLine(['--heartbeat-interval', '300', ...cluster, '--name', 'n1'], {}),
    /at least as 5 times/,
  );
  assert.throws(
    () => parseCommandLine(['--listen-client-urls', 'localhost', '--name', 'n1', ...cluster], {}),
    /invalid URL/,
  );
  assert.throws(() => parseCommandLine(['--initial-cluster-state', 'old'], {}), /'new' or 'existing'/);
});

test('--version and --help short-circuit', () => {
  assert.deepEqual(parseCommandLine(['--version'], {}), { kind: 'version' });
  assert.deepEqual(parseCommandLine(['--help'], {}), { kind: 'help' });
});

test('auto-compaction retention reads hours by default, durations with units', () => {
  const run = (value: string) => {
    const parsed = parseCommandLine(['--name', 'n1', ...cluster, '--auto-compaction-retention', value], {});
    assert.ok(parsed.kind === 'run');
    return parsed.flags.autoCompactionRetention;
  };
  assert.equal(run('1'), 3_600_000);
  assert.equal(run('30m'), 1_800_000);
});

test('--log-outputs and --warning-apply-duration as etcd takes them', () => {
  const base = ['--name', 'n1', '--initial-cluster', 'n1=http://127.0.0.1:2380'];
  const defaults = parseCommandLine(base, {});
  assert.ok(defaults.kind === 'run');
  assert.deepEqual(defaults.flags.logOutputs, ['default']);
  assert.equal(defaults.flags.warningApplyDurationMs, 100);
  const given = parseCommandLine(
    [...base, '--log-outputs', 'stderr,/tmp/x.log', '--warning-apply-duration', '1.5s'],
    {},
  );
  assert.ok(given.kind === 'run');
  assert.deepEqual(given.flags.logOutputs, ['stderr', '/tmp/x.log']);
  assert.equal(given.flags.warningApplyDurationMs, 1500);
  assert.throws(
    () => parseCommandLine([...base, '--warning-apply-duration', '100'], {}),
    /time: invalid duration "100"/,
  );
});

test('TLS flags of both sides, as etcd names them', () => {
  const parsed = parseCommandLine(
    [
      '--name',
      'n1',
      ...cluster,
      '--cert-file',
      '/c.pem',
      '--key-file',
      '/k.pem',
      '--trusted-ca-file',
      '/ca.pem',
      '--client-cert-auth',
      '--peer-auto-tls',
      '--cipher-suites',
      'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
      '--tls-min-version',
      'TLS1.3',
    ],
    {},
  );
  assert.equal(parsed.kind, 'run');
  if (parsed.kind !== 'run') return;
  assert.deepEqual(parsed.flags.clientTls, {
    certFile: '/c.pem',
    keyFile: '/k.pem',
    trustedCaFile: '/ca.pem',
    clientCertAuth: true,
    autoTls: false,
    cipherSuites: ['TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'],
    minVersion: 'TLSv1.3',
  });
  assert.equal(parsed.flags.peerTls?.autoTls, true);
  assert.equal(parsed.flags.peerTls?.certFile, '');
  const plain = parseCommandLine(['--name', 'n1', ...cluster], { CONCORD_PEER_CLIENT_CERT_AUTH: 'false' });
  assert.equal(plain.kind === 'run' && plain.flags.clientTls, undefined);
  assert.equal(plain.kind === 'run' && plain.flags.peerTls, undefined);
});

test('an unknown cipher suite or TLS version is a flag error', () => {
  assert.throws(
    () => parseCommandLine(['--name', 'n1', ...cluster, '--cipher-suites', 'TLS_RSA_WITH_RC4_128_SHA'], {}),
    (error: Error) => error instanceof FlagError && /unexpected TLS cipher suite/.test(error.message),
  );
  assert.throws(
    () => parseCommandLine(['--name', 'n1', ...cluster, '--tls-min-version', 'TLS1.0'], {}),
    FlagError,
  );
});

test('--consensus picks the engine (default raft); --paxos-phase2-quorum is checked against --initial-cluster', () => {
  const five = [
    '--initial-cluster',
    [1, 2, 3, 4, 5].map((i) => `n${i}=http://127.0.0.1:${2380 + i}`).join(','),
  ];
  const run = (args: string[]) => {
    const parsed = parseCommandLine(['--name', 'n1', ...args], {});
    assert.ok(parsed.kind === 'run');
    return parsed.flags;
  };
  assert.equal(run(cluster).consensus, 'raft');
  assert.equal(run(cluster).paxosPhase2Quorum, undefined);
  assert.equal(run([...cluster, '--consensus', 'multi-paxos']).consensus, 'multi-paxos');
  const flexible = run([...five, '--consensus', 'multi-paxos', '--paxos-phase2-quorum', '2']);
  assert.equal(flexible.paxosPhase2Quorum, 2);
  assert.throws(
    () => run([...cluster, '--consensus', 'paxos']),
    (e: unknown) => e instanceof FlagError && /must be one of raft, multi-paxos/.test(e.message),
  );
  assert.throws(
    () => run([...cluster, '--paxos-phase2-quorum', '1']),
    (e: unknown) => e instanceof FlagError && /multi-paxos only/.test(e.message),
  );
  assert.throws(
    () => run([...five, '--consensus', 'multi-paxos', '--paxos-phase2-quorum', '6']),
    (e: unknown) => e instanceof FlagError && /phase-2 quorum 6 is larger than the 5 voters/.test(e.message),
  );
  assert.throws(
    () => run([...five, '--consensus', 'multi-paxos', '--paxos-phase2-quorum', '0']),
    (e: unknown) => e instanceof FlagError && /must be a positive integer/.test(e.message),
  );
});

test('client limits: defaults, etcd-style --max-concurrent-streams (0 is no limit), bad values refused', () => {
  const run = (args: string[]) => {
    const parsed = parseCommandLine(['--name', 'n1', ...cluster, ...args], {});
    assert.ok(parsed.kind === 'run');
    return parsed.flags;
  };
  const defaults = run([]);
  assert.equal(defaults.maxConcurrentStreams, 2 ** 32 - 1, "etcd's math.MaxUint32");
  assert.equal(defaults.maxClientConnections, 10_000);
  assert.equal(defaults.maxWatchersPerStream, 10_000);
  assert.equal(run(['--max-concurrent-streams', '100']).maxConcurrentStreams, 100);
  assert.equal(run(['--max-concurrent-streams', '0x10']).maxConcurrentStreams, 16, 'Go base-0 syntax');
  assert.equal(run(['--max-concurrent-streams', '0']).maxConcurrentStreams, 2 ** 32 - 1);
  assert.equal(run(['--max-client-connections', '0']).maxClientConnections, 0);
  assert.equal(run(['--max-watchers-per-stream', '3']).maxWatchersPerStream, 3);
  // etcd 3.4's own texts for the uint32 flag.
  assert.throws(
    () => run(['--max-concurrent-streams', 'abc']),
    new FlagError(
      'invalid value "abc" for flag -max-concurrent-streams: strconv.ParseUint: parsing "abc": invalid syntax',
    ),
  );
  assert.throws(() => run(['--max-concurrent-streams=-1']), /parsing "-1": invalid syntax/);
  assert.throws(
    () => run(['--max-concurrent-streams', '4294967296']),
    /parsing "4294967296": value out of range/,
  );
  assert.throws(
    () => run(['--max-client-connections=-5']),
    /-max-client-connections: must be a non-negative/,
  );
  assert.throws(
    () => run(['--max-watchers-per-stream', '0']),
    /-max-watchers-per-stream: must be a positive/,
  );
});
