// npm run powerloss -- [--cuts N=20] [--seed S=random] [--member-cut-every K=3] [--writers W=8]
//                     [--snapshot-count C=10000] [--unsafe-wal-no-fsync] [--unsafe-keyspace-no-sync]
// Runs a power-loss campaign (see campaign.ts) on a 3-member cluster, prints the seed first (run
// again with --seed to repeat the campaign's cuts), one line per cut and a summary, and exits
// non-zero when any acknowledged write was lost, members diverged or the cluster did not come back.

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { UNSAFE_KEYSPACE_NO_SYNC_ENV, UNSAFE_WAL_NO_FDATASYNC_ENV } from '../../src/storage/wal.js';
import { type CampaignOptions, runCampaign } from './campaign.js';
import { plfsUnavailableReason } from './plfs-mount.js';

const usage = `usage: powerloss [--cuts N=20] [--seed S] [--member-cut-every K=3] [--writers W=8]
                 [--snapshot-count C=10000] [--unsafe-wal-no-fsync] [--unsafe-keyspace-no-sync]`;

export class UsageError extends Error {
  readonly code = 'POWERLOSS_USAGE';
}

export function parsePowerlossArgs(argv: string[]): CampaignOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      cuts: { type: 'string', default: '20' },
      seed: { type: 'string' },
      'member-cut-every': { type: 'string', default: '3' },
      writers: { type: 'string', default: '8' },
      'snapshot-count': { type: 'string', default: '10000' },
      'unsafe-wal-no-fsync': { type: 'boolean', default: false },
      'unsafe-keyspace-no-sync': { type: 'boolean', default: false },
    },
  });
  const integer = (flag: string, text: string, min: number, max: number): number => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min || value > max)
      throw new UsageError(`--${flag} must be an integer in [${min}, ${max}], got "${text}"\n${usage}`);
    return value;
  };
  return {
    cuts: integer('cuts', values.cuts, 1, 100_000),
    seed:
      values.seed === undefined
        ? Math.floor(Math.random() * 2 ** 31)
        : integer('seed', values.seed, 0, 2 ** 31 - 1),
    memberCutEvery: integer('member-cut-every', values['member-cut-every'], 0, 100_000),
    writers: integer('writers', values.writers, 1, 256),
    snapshotCount: integer('snapshot-count', values['snapshot-count'], 1, 10_000_000),
    env: {
      ...(values['unsafe-wal-no-fsync'] ? { [UNSAFE_WAL_NO_FDATASYNC_ENV]: '1' } : {}),
      ...(values['unsafe-keyspace-no-sync'] ? { [UNSAFE_KEYSPACE_NO_SYNC_ENV]: '1' } : {}),
    },
  };
}

async function main(): Promise<void> {
  let options: CampaignOptions;
  try {
    options = parsePowerlossArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(2);
  }
  const unavailable = plfsUnavailableReason();
  if (unavailable !== undefined) {
    process.stderr.write(`powerloss: cannot run: ${unavailable}\n`);
    process.exit(2);
  }
  process.stdout.write(
    `powerloss: seed ${options.seed} (repeat with --seed ${options.seed}), ${options.cuts} cuts\n`,
  );
  const startedAt = Date.now();
  const result = await runCampaign({ ...options, log: (line) => process.stdout.write(`${line}\n`) });
  const seconds = ((Date.now() - startedAt) / 1000).toFixed(0);
  process.stdout.write(
    `powerloss: seed ${result.seed}: ${result.cuts.length} cuts in ${seconds} s, ${result.ackedTotal} writes acknowledged, ` +
      `${result.lostTotal} lost, ${result.failures} failed cuts\n`,
  );
  process.exit(result.failures === 0 && result.cuts.length === options.cuts ? 0 : 1);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: Error) => {
    process.stderr.write(`powerloss: ${error.stack ?? error.message}\n`);
    process.exit(1);
  });
}
