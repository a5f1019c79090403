// `concord bench <workload> [flags]`: load generator for any etcd v3 endpoint (Concord or etcd).

import { BenchFlagError, benchHelp, parseBenchArgs } from './options.js';
import { formatReport } from './report.js';
import { runWorkload } from './run.js';

export { type BenchOptions, parseBenchArgs } from './options.js';
export { type BenchResult, runWorkload } from './run.js';

/** Runs the command line after `bench`; returns the process exit code (1 if any op failed). */
export async function runBench(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseBenchArgs>;
  try {
    parsed = parseBenchArgs(argv, process.stderr.isTTY === true);
  } catch (error) {
    if (!(error instanceof BenchFlagError)) throw error;
    process.stderr.write(`concord bench: ${error.message}\n`);
    return 2;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(benchHelp);
    return 0;
  }
  try {
    const result = await runWorkload(parsed.options);
    process.stdout.write(parsed.options.json ? `${JSON.stringify(result)}\n` : `${formatReport(result)}\n`);
    return result.errors === 0 ? 0 : 1;
  } catch (error) {
    process.stderr.write(`concord bench: ${(error as Error).message}\n`);
    return 1;
  }
}
