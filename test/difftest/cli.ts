// npm run difftest -- [--seeds N] [--from S | --seed S] [--ops M] [--variant kv|watch|both]
//                     [--auth] [--parallel P] [--size 3] [--no-shrink] [--replay FILE] [--trace]
// Sends the same random operation sequences to a real etcd 3.4 cluster and a Concord cluster
// (fresh clusters per seed) and reports every seed whose answers, keyspace or watch events
// differ, with the seed, the shrunk sequence and the command that replays it. Exits 1 on any
// divergence. Without --from/--seed the first seed is random (printed), so every campaign also
// tries seeds nobody chose.

import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { etcdAvailable, etcdPath } from '../support/etcd-cluster.js';
import { generateAuthSequence, generateSequence, type Variant } from './generate.js';
import { avoidedEtcdBehaviours, deliberateDifferences, differences } from './normalise.js';
import { formatSequence, type OpSpec } from './ops.js';
import {
  type Divergence,
  defaultRunOptions,
  type RunOptions,
  runSequence,
  startClusterPair,
} from './runner.js';
import { runOnFreshPair, shrink } from './shrink.js';

const usage = `usage: npm run difftest -- [--seeds N=5] [--from S | --seed S] [--ops M=500]
         [--variant kv|watch|both=both] [--auth] [--parallel P=1] [--size 3] [--no-shrink]
         [--replay FILE] [--trace] [--list-normalisations]`;

export class UsageError extends Error {
  readonly code = 'DIFFTEST_USAGE';
}

export interface CampaignOptions {
  variants: Variant[];
  /** Operations run as a non-root user with auth enabled (auth.ts). */
  auth: boolean;
  firstSeed: number;
  seeds: number;
  ops: number;
  size: number;
  parallel: number;
  shrink: boolean;
  trace: boolean;
  replay: string | undefined;
  listNormalisations: boolean;
}

function positiveInt(name: string, text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0)
    throw new UsageError(`--${name} must be a non-negative integer`);
  return value;
}

/** parseArgs' own errors (an unknown option, a missing value) are usage errors. */
function parseOrUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS_'))
      throw new UsageError((error as Error).message);
    throw error;
  }
}

export function parseDifftestArgs(argv: string[]): CampaignOptions {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      strict: true,
      options: {
        seeds: { type: 'string', default: '5' },
        from: { type: 'string' },
        seed: { type: 'string' },
        ops: { type: 'string', default: '500' },
        variant: { type: 'string', default: 'both' },
        parallel: { type: 'string', default: '1' },
        size: { type: 'string', default: '3' },
        auth: { type: 'boolean', default: false },
        'no-shrink': { type: 'boolean', default: false },
        replay: { type: 'string' },
        trace: { type: 'boolean', default: false },
        'list-normalisations': { type: 'boolean', default: false },
      },
    }),
  );
  const variant = values.variant;
  if (variant !== 'kv' && variant !== 'watch' && variant !== 'both')
    throw new UsageError('--variant must be kv, watch or both');
  const single = values.seed !== undefined;
  const firstSeed = single
    ? positiveInt('seed', values.seed!)
    : values.from !== undefined
      ? positiveInt('from', values.from)
      : Math.floor(Math.random() * 1_000_000_000);
  return {
    variants: variant === 'both' ? ['kv', 'watch'] : [variant],
    auth: values.auth,
    firstSeed,
    seeds: single ? 1 : positiveInt('seeds', values.seeds),
    ops: positiveInt('ops', values.ops),
    size: positiveInt('size', values.size),
    parallel: Math.max(1, positiveInt('parallel', values.parallel)),
    shrink: !values['no-shrink'],
    trace: values.trace,
    replay: values.replay,
    listNormalisations: values['list-normalisations'],
  };
}

interface SeedOutcome {
  variant: Variant;
  seed: number;
  opsRun: number;
  divergence: Divergence | undefined;
  /** Set when the harness failed (no verdict for this seed). */
  error?: string;
  elapsedMs: number;
}

type Print = (line: string) => void;

/** The run options of a campaign: auth mode, and with --trace every answer printed. */
function runOptions(options: { auth: boolean; trace: boolean }, print: Print): RunOptions {
  if (!options.trace) return { ...defaultRunOptions, auth: options.auth };
  return {
    ...defaultRunOptions,
    auth: options.auth,
    trace: (index, op, etcd, concord) =>
      print(
        `${index} ${JSON.stringify(op)}\n  etcd    ${JSON.stringify(etcd)}\n  concord ${JSON.stringify(concord)}`,
      ),
  };
}

/** How a variant is named in reports and commands ("kv", "watch --auth"). */
function variantName(variant: Variant, auth: boolean): string {
  return auth ? `${variant} --auth` : variant;
}

function describeDivergence(ops: readonly OpSpec[], divergence: Divergence): string {
  const context = formatSequence(ops.slice(0, divergence.index + 1))
    .split('\n')
    .slice(-3)
    .join('\n');
  return [
    `  diverged at ${divergence.what} after operation ${divergence.index}:`,
    context,
    ...differences(divergence.etcd, divergence.concord).map((line) => `    ${line}`),
  ].join('\n');
}

async function runSeed(
  variant: Variant,
  seed: number,
  options: CampaignOptions,
  print: Print,
): Promise<SeedOutcome> {
  const started = Date.now();
  const ops = (options.auth ? generateAuthSequence : generateSequence)(seed, options.ops, variant);
  let result: Awaited<ReturnType<typeof runSequence>>;
  try {
    const pair = await startClusterPair(options.size);
    try {
      result = await runSequence(pair, ops, runOptions(options, print));
    } finally {
      await pair.dispose();
    }
  } catch (error) {
    // A harness failure (a cluster that did not start, a member that never caught up) is no
    // divergence, but the seed did not pass either: reported, counted, and the campaign goes on.
    print(`${variantName(variant, options.auth)} seed ${seed}: ERROR ${(error as Error).message}`);
    return { variant, seed, opsRun: 0, divergence: undefined, error: (error as Error).message, elapsedMs: 0 };
  }
  const elapsedMs = Date.now() - started;
  const outcome = { variant, seed, opsRun: result.opsRun, divergence: result.divergence, elapsedMs };
  if (result.divergence === undefined) {
    print(
      `${variantName(variant, options.auth)} seed ${seed}: ${result.opsRun} operations, no divergence (${(elapsedMs / 1000).toFixed(0)} s)`,
    );
    return outcome;
  }
  print(
    `${variantName(variant, options.auth)} seed ${seed}: DIVERGED\n${describeDivergence(ops, result.divergence)}`,
  );
  print(
    `  reproduce: npm run difftest -- --variant ${variantName(variant, options.auth)} --seed ${seed} --ops ${result.divergence.index + 1}`,
  );
  if (options.shrink) await shrinkAndReport(variant, seed, ops, result.divergence, options, print);
  return outcome;
}

async function shrinkAndReport(
  variant: Variant,
  seed: number,
  ops: readonly OpSpec[],
  divergence: Divergence,
  options: CampaignOptions,
  print: Print,
): Promise<void> {
  // Shrinking on 1-member clusters is faster; it is used when the divergence shows there too.
  const prefix = ops.slice(0, divergence.index + 1);
  const onOne =
    options.size > 1
      ? await runOnFreshPair(prefix, 1, runOptions({ ...options, trace: false }, print)).catch(
          () => undefined,
        )
      : undefined;
  const size = onOne !== undefined ? 1 : options.size;
  print(`  shrinking on ${size}-member clusters...`);
  const shrunk = await shrink(ops, onOne ?? divergence, {
    runCandidate: (candidate) =>
      runOnFreshPair(candidate, size, runOptions({ ...options, trace: false }, print)),
    attemptsMax: 150,
    timeMaxMs: 15 * 60 * 1000,
    log: print,
  });
  const file = join(tmpdir(), `concord-difftest-${variant}${options.auth ? '-auth' : ''}-${seed}.json`);
  writeFileSync(file, `${JSON.stringify({ size, auth: options.auth, ops: shrunk.ops }, null, 1)}\n`);
  print(
    `  shrunk to ${shrunk.ops.length} operations after ${shrunk.attempts} attempts (${size}-member clusters):`,
  );
  print(formatSequence(shrunk.ops));
  print(describeDivergence(shrunk.ops, shrunk.divergence));
  print(`  replay: npm run difftest -- --replay ${file}`);
}

async function replay(file: string, options: CampaignOptions, print: Print): Promise<boolean> {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { size?: number; auth?: boolean; ops: OpSpec[] };
  const size = saved.size ?? options.size;
  print(`replaying ${saved.ops.length} operations from ${file} on ${size}-member clusters`);
  const pair = await startClusterPair(size);
  try {
    const { divergence } = await runSequence(
      pair,
      saved.ops,
      runOptions({ ...options, auth: saved.auth ?? options.auth }, print),
    );
    if (divergence === undefined) {
      print('no divergence');
      return true;
    }
    print(describeDivergence(saved.ops, divergence));
    return false;
  } finally {
    await pair.dispose();
  }
}

/** Runs the campaign; resolves true when nothing diverged. */
export async function runCampaign(options: CampaignOptions, print: Print): Promise<boolean> {
  if (options.listNormalisations) {
    for (const d of deliberateDifferences) print(`normalised  ${d.name}: ${d.why}`);
    for (const d of avoidedEtcdBehaviours) print(`avoided     ${d.name}: ${d.why}`);
    return true;
  }
  if (!etcdAvailable()) throw new UsageError(`no etcd at ${etcdPath} (set E2E_ETCD_BIN)`);
  if (options.replay !== undefined) return replay(options.replay, options, print);
  const jobs: { variant: Variant; seed: number }[] = [];
  for (const variant of options.variants) {
    for (let i = 0; i < options.seeds; i++) jobs.push({ variant, seed: options.firstSeed + i });
  }
  print(
    `difftest: ${options.variants.map((v) => variantName(v, options.auth)).join(' + ')} seeds ${options.firstSeed}..${options.firstSeed + options.seeds - 1}, ` +
      `${options.ops} operations each, ${options.size}-member clusters (etcd ${etcdPath}), ${options.parallel} at a time`,
  );
  const outcomes: SeedOutcome[] = [];
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      outcomes.push(await runSeed(job.variant, job.seed, options, print));
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.parallel, jobs.length) }, worker));
  for (const variant of options.variants) {
    const mine = outcomes.filter((o) => o.variant === variant);
    const diverged = mine.filter((o) => o.divergence !== undefined);
    const failed = mine.filter((o) => o.error !== undefined);
    const opsRun = mine.reduce((sum, o) => sum + o.opsRun, 0);
    print(
      `difftest ${variantName(variant, options.auth)}: ${mine.length} seeds, ${opsRun} operations, ${diverged.length} divergences` +
        (diverged.length > 0 ? ` (seeds ${diverged.map((o) => o.seed).join(', ')})` : '') +
        (failed.length > 0
          ? `, ${failed.length} harness errors (seeds ${failed.map((o) => o.seed).join(', ')})`
          : ''),
    );
  }
  return outcomes.every((o) => o.divergence === undefined && o.error === undefined);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // Interrupted: exit through process.exit, so the cluster harness kills its members and removes
  // their data dirs (its 'exit' handler), instead of leaving them behind.
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  try {
    const ok = await runCampaign(parseDifftestArgs(process.argv.slice(2)), (line) =>
      process.stdout.write(`${line}\n`),
    );
    process.exitCode = ok ? 0 : 1;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`difftest: ${error.message}\n${usage}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`difftest: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    }
  }
}
