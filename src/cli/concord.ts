// `concord`: runs one member. Flags and CONCORD_* variables follow etcd's (see flags.ts).

import { setFlagsFromString } from 'node:v8';
import { type ApiServer, startApiServer } from '../api/api-server.js';
import { defaultGrpcServerOptions } from '../api/grpc-server.js';
import { QuorumConfigError } from '../paxos/errors.js';
import { ConsensusMismatchError } from '../server/consensus.js';
import { EXIT_STORAGE_FAILED } from '../server/fail-stop.js';
import { createLogger } from '../server/logger.js';
import { CONCORD_VERSION, ConcordServer } from '../server/server.js';
import { FlagError, helpText, parseCommandLine } from './flags.js';
import { metricsReport } from './metrics.js';
import { SERVING_V8_FLAGS } from './serving-flags.js';

const GRACEFUL_STOP_MS = 5000;

function tuneHeapForServing(): void {
  const given = `${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`;
  for (const [flag, value] of Object.entries(SERVING_V8_FLAGS)) {
    if (!given.includes(flag)) setFlagsFromString(`${flag}=${value}`);
  }
}

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
      `concord Version: ${CONCORD_VERSION}\nAPI: etcd v3 (3.4 compatible)\nNode Version: ${process.version}\n`,
    );
    return 0;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(`${helpText(CONCORD_VERSION)}\n`);
    return 0;
  }
  tuneHeapForServing();
  const config = parsed.flags;
  const log = createLogger(config.logLevel, { member: config.name });
  const server = await ConcordServer.start(config, log);
  const apis: ApiServer[] = [];
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
      },
      serverVersion: CONCORD_VERSION,
      clusterVersion: '3.4.0',
      health: () => server.health(),
      metrics: () => metricsReport(server),
      extraRoutes: (request, response, path) => server.faultRoutes(request, response, path),
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
    log.info('received signal; shutting down', { signal });
    const force = setTimeout(() => process.exit(1), GRACEFUL_STOP_MS * 2);
    force.unref();
    await Promise.all(apis.map((api) => api.close(GRACEFUL_STOP_MS).catch(() => undefined)));
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
  (error: Error) => {
    // Errors that tell the operator what to change are printed without a stack.
    const told = error instanceof ConsensusMismatchError || error instanceof QuorumConfigError;
    process.stderr.write(`concord: ${told ? error.message : (error.stack ?? error.message)}\n`);
    process.exit(told ? 2 : 1);
  },
);
