// npm run jepsen -- --workload W --nemesis N --time S --seed K [--nodes 3|5] [--stale-reads]
//                   [--consensus raft|multi-paxos] [--paxos-phase2-quorum K]
// Runs one Jepsen-style test on real processes, prints the summary line (and the explanation
// when the history is not valid) and exits non-zero on any anomaly or undecided verdict.

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { isNemesisName, NEMESES } from './nemesis.js';
import {
  failureReport,
  isWorkloadName,
  type RunOptions,
  runJepsen,
  runPassed,
  WORKLOAD_NAMES,
} from './runner.js';

const usage = `usage: jepsen --workload ${WORKLOAD_NAMES.join('|')} --nemesis ${Object.keys(NEMESES).join('|')}
              [--time SECONDS=20] [--seed N=1] [--nodes 3|5] [--stale-reads]
              [--clients N=5] [--timeout-ms MS=1000] [--verbose] [--skip-compare]
              [--consensus raft|multi-paxos] [--paxos-phase2-quorum K] [--help]`;

export class UsageError extends Error {
  readonly code = 'JEPSEN_USAGE';
}

/** --help: the usage goes to stdout and the exit code is 0. */
export class HelpRequested extends Error {
  readonly code = 'JEPSEN_HELP';
}

export function parseJepsenArgs(argv: string[]): RunOptions & { verbose: boolean } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      workload: { type: 'string' },
      nemesis: { type: 'string', default: 'none' },
      time: { type: 'string', default: '20' },
      seed: { type: 'string', default: '1' },
      nodes: { type: 'string', default: '3' },
      clients: { type: 'string', default: '5' },
      'timeout-ms': { type: 'string', default: '1000' },
      'stale-reads': { type: 'boolean', default: false },
      'skip-compare': { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      consensus: { type: 'string', default: 'raft' },
      'paxos-phase2-quorum': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) throw new HelpRequested(usage);
  const workload = values.workload ?? '';
  if (!isWorkloadName(workload)) throw new UsageError(`unknown --workload "${workload}"\n${usage}`);
  const nemesis = values.nemesis;
  if (!isNemesisName(nemesis)) throw new UsageError(`unknown --nemesis "${nemesis}"\n${usage}`);
  const integer = (flag: string, text: string, min: number, max: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max)
      throw new UsageError(`--${flag} must be an integer in [${min}, ${max}], got "${text}"\n${usage}`);
    return value;
  };
  const nodes = integer('nodes', values.nodes, 3, 5);
  if (nodes !== 3 && nodes !== 5) throw new UsageError(`--nodes must be 3 or 5\n${usage}`);
  const consensus = values.consensus;
  if (consensus !== 'raft' && consensus !== 'multi-paxos')
    throw new UsageError(`--consensus must be raft or multi-paxos, got "${consensus}"\n${usage}`);
  const phase2Text = values['paxos-phase2-quorum'];
  if (phase2Text !== undefined && consensus !== 'multi-paxos')
    throw new UsageError(`--paxos-phase2-quorum needs --consensus multi-paxos\n${usage}`);
  const paxosPhase2Quorum =
    phase2Text === undefined ? undefined : integer('paxos-phase2-quorum', phase2Text, 1, nodes);
  return {
    workload,
    nemesis,
    nodes,
    timeMs: integer('time', values.time, 1, 3600) * 1000,
    seed: integer('seed', values.seed, 0, 2 ** 31 - 1),
    clients: integer('clients', values.clients, 1, 32),
    requestTimeoutMs: integer('timeout-ms', values['timeout-ms'], 50, 60_000),
    staleReads: values['stale-reads'],
    skipCompare: values['skip-compare'],
    consensus,
    ...(paxosPhase2Quorum === undefined ? {} : { paxosPhase2Quorum }),
    verbose: values.verbose,
  };
}

async function main(): Promise<number> {
  let options: ReturnType<typeof parseJepsenArgs>;
  try {
    options = parseJepsenArgs(process.argv.slice(2));
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(`${error.message}\n`);
      return 0;
    }
    process.stderr.write(`${(error as Error).message}\n`);
    return 2;
  }
  const result = await runJepsen({
    ...options,
    log: (line) => {
      if (options.verbose || line.startsWith('run failed')) process.stderr.write(`${line}\n`);
    },
  });
  process.stdout.write(`${result.summary}\n`);
  if (options.verbose) process.stdout.write(`nemesis log:\n  ${result.nemesisLog.join('\n  ')}\n`);
  if (runPassed(result)) return 0;
  process.stdout.write(`${failureReport(result)}\n`);
  if (options.verbose && result.memberLogs !== undefined) process.stderr.write(result.memberLogs);
  return 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // Ctrl-C must still run the harness's exit hook, which kills the members (paused ones too).
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`jepsen: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 3;
    },
  );
}
