// `concord`: runs one member. Flags and CONCORD_* variables follow etcd's (see flags.ts).

import { setFlagsFromString } from 'node:v8';
import { type ApiServer, startApiServer } from '../api/api-server.js';
import { defaultGrpcServerOptions } from '../api/grpc-server.js';
import { clientTlsWatcher } from '../node/member-tls.js';
import { QuorumConfigError } from '../paxos/errors.js';
import { ConsensusMismatchError } from '../replica/consensus.js';
import { ConcordServer, ETCD_API_VERSION } from '../server/server.js';
import { EncryptionError } from '../storage/encryption.js';
import { EXIT_STORAGE_FAILED } from '../storage/fail-stop.js';
import { createLogger, type Logger, sinksFor } from '../util/logger.js';
import { dashboardRoutes } from './dashboard.js';
import { FlagError, helpText, parseCommandLine } from './flags.js';
import { limitRefusalLogger } from './limit-log.js';
import { createMemberMetrics } from './metrics.js';
import { SERVING_V8_FLAGS } from './serving-flags.js';
import { CONCORD_VERSION } from './version.js';

const GRACEFUL_STOP_MS = 5000;

function tuneHeapForServing(): void {
  const given = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
  for (const [flag, value] of Object.entries(SERVING_V8_FLAGS)) {
    if (!given.includes(flag)) setFlagsFromString(`${flag}=${value}`);
  }
}

/** The member's logger once flags are read (fatal errors after that are logged through it). */
let log: Logger | undefined;

async function main(): Promise<number> {
  if (process.argv[2] === 'bench') {
    const { runBench } = await import('./bench/index.js');
    return runBench(process.argv.slice(3));
  }
  let parsed: ReturnType<typeof parseCommandLine>;
  try {
    parsed = parseCommandLine(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof FlagError) {
      process.stderr.write(`concord: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (parsed.kind === 'version') {
    process.stdout.write(
      `concord Version: ${CONCORD_VERSION}\netcd API Version: ${ETCD_API_VERSION}\nNode Version: ${process.version}\n`,
    );
    return 0;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(`${helpText(CONCORD_VERSION)}\n`);
    return 0;
  }
  tuneHeapForServing();
  const config = parsed.flags;
  let started: ConcordServer | undefined;
  const memberLog = createLogger({
    level: config.logLevel,
    base: { name: config.name },
    sinks: sinksFor(config.logOutputs ?? ['default']),
    // Once the member runs, every line carries its id, term and applied index (zap's fields).
    context: () => (started === undefined ? {} : started.logContext()),
  });
  log = memberLog;
  const clientTls = clientTlsWatcher(config, memberLog);
  const server = await ConcordServer.start(config, memberLog);
  started = server;
  const apis: ApiServer[] = [];
  const metrics = createMemberMetrics(server, apis);
  const dashboard = dashboardRoutes(server, metrics, config.name);
  let stopping = false;
  // A fatal storage error (the server logged the cause): stop serving clients and exit non-zero,
  // so a supervisor sees the member gone and restarts it once the disk is fixed.
  void server.whenFailed().then(async () => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(EXIT_STORAGE_FAILED), GRACEFUL_STOP_MS);
    force.unref();
    await Promise.all(apis.map((api) => api.close(0).catch(() => undefined)));
    await server.stop().catch(() => undefined);
    process.exit(EXIT_STORAGE_FAILED);
  });
  const onLimitRefused = limitRefusalLogger(memberLog);
  // etcd serves clients only once its publish is applied: a member list never shows a serving
  // member without its name and client URLs.
  await Promise.race([server.whenPublished(), server.whenFailed()]);
  for (const url of config.listenClientUrls) {
    if (stopping) break;
    const parsedUrl = new URL(url);
    const api = await startApiServer({
      backend: server,
      host: parsedUrl.hostname === 'localhost' ? '127.0.0.1' : parsedUrl.hostname,
      port: Number(parsedUrl.port),
      grpc: {
        ...defaultGrpcServerOptions,
        limits: { txnOpsMax: config.maxTxnOps, requestBytesMax: config.maxRequestBytes },
        watch: {
          ...defaultGrpcServerOptions.watch,
          watchersPerStreamMax:
            config.maxWatchersPerStream ?? defaultGrpcServerOptions.watch.watchersPerStreamMax,
        },
        concurrentStreamsMax: config.maxConcurrentStreams ?? defaultGrpcServerOptions.concurrentStreamsMax,
      },
      clientConnectionsMax: config.maxClientConnections,
      onLimitRefused,
      serverVersion: ETCD_API_VERSION,
      clusterVersion: '3.4.0',
      health: () => server.health(),
      metrics: () => metrics.report(),
      extraRoutes: async (request, response, path) =>
        (await dashboard(request, response, path)) ||
        (await server.encryptionRoutes(request, response, path)) ||
        (await server.shardRoutes(request, response, path)) ||
        server.faultRoutes(request, response, path),
      tls: parsedUrl.protocol === 'https:' ? clientTls : undefined,
    });
    apis.push(api);
    log.info('serving client requests', { url: api.url });
  }
  if (stopping) {
    // Failed while the listeners were starting: the failure handler may have missed the last one.
    await Promise.all(apis.map((api) => api.close(0).catch(() => undefined)));
    return -1;
  }
  log.info('ready to serve client requests');

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    memberLog.info('received signal; shutting down', { signal });
    const force = setTimeout(() => process.exit(1), GRACEFUL_STOP_MS * 2);
    force.unref();
    await Promise.all(apis.map((api) => api.close(GRACEFUL_STOP_MS).catch(() => undefined)));
    clientTls?.close();
    await server.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (error: Error & { code?: string }) => {
    // Errors that tell the operator what to change (an engine mismatch, an unusable certificate)
    // are printed without a stack.
    const told =
      error instanceof ConsensusMismatchError ||
      error instanceof QuorumConfigError ||
      error instanceof EncryptionError ||
      error.code === 'TLS_CONFIG';
    const text = told ? error.message : (error.stack ?? error.message);
    if (log !== undefined) log.error('fatal error; the member stops', { error: text });
    else process.stderr.write(`concord: ${text}\n`);
    process.exit(told && error.code !== 'TLS_CONFIG' ? 2 : 1);
  },
);
