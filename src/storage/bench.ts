// Storage benchmark: the disk's fdatasync latency, WAL throughput with and without group commit,
// and snapshot write/verify bandwidth. Run: `npm run bench:storage` (or node dist/src/storage/bench.js
// [--dir <path on the disk to measure>] [--payload <bytes>] [--seconds <per case>]).
//
// Back of the envelope: one fdatasync costs the disk's flush latency L (typically 0.05-2 ms on
// SSD/NVMe, 5-10 ms on spinning disks, much more on some cloud volumes). One sync per record
// bounds throughput at 1/L records/s whatever the CPU does; group commit divides that cost by
// the batch size, so throughput becomes bounded by encode + write bandwidth instead. Expected:
// per-record ≈ 1/L; batches of 100 ≈ min(100/L, CPU bound); 1,000 ≈ CPU/bandwidth bound.

import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Entry, EntryType } from '../raft/types.js';
import { SnapshotStore } from './snapshot-store.js';
import { Wal } from './wal.js';

interface BenchArgs {
  dir: string | null;
  payloadBytes: number;
  secondsPerCase: number;
}

interface Row {
  case: string;
  records: number;
  syncs: number;
  seconds: number;
  recordsPerSecond: number;
  mbPerSecond: number;
  batchP50Ms: number;
  batchP99Ms: number;
}

const FSYNC_SAMPLES_MAX = 2000;

function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { dir: null, payloadBytes: 256, secondsPerCase: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`missing value for ${argv[i]}`);
    if (argv[i] === '--dir') args.dir = value;
    else if (argv[i] === '--payload') args.payloadBytes = Number(value);
    else if (argv[i] === '--seconds') args.secondsPerCase = Number(value);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return args;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Raw disk: 4 KiB write + fdatasync into a preallocated file, as the WAL does. */
async function measureFsync(dir: string, seconds: number): Promise<number[]> {
  const path = join(dir, 'fsync-probe');
  const fh = await open(path, 'w+');
  const block = randomBytes(4096);
  const samples: number[] = [];
  try {
    await fh.truncate(64 * 1024 * 1024);
    const deadline = performance.now() + seconds * 1000;
    for (let i = 0; samples.length < FSYNC_SAMPLES_MAX && performance.now() < deadline; i++) {
      await fh.write(block, 0, block.length, (i * block.length) % (64 * 1024 * 1024));
      const start = performance.now();
      await fh.datasync();
      samples.push(performance.now() - start);
    }
  } finally {
    await fh.close();
    await rm(path, { force: true });
  }
  return samples.sort((a, b) => a - b);
}

async function measureWal(
  dir: string,
  label: string,
  batchRecords: number,
  args: BenchArgs,
  preallocate: 'sparse' | 'zero-fill' = 'sparse',
): Promise<Row> {
  const walDir = join(dir, `wal-${batchRecords}-${preallocate}`);
  const { wal } = await Wal.open(walDir, { preallocate });
  const data = randomBytes(args.payloadBytes);
  const latencies: number[] = [];
  const syncsBefore = wal.stats().datasyncs;
  let index = 0;
  const started = performance.now();
  const deadline = started + args.secondsPerCase * 1000;
  try {
    while (performance.now() < deadline) {
      const batchStart = performance.now();
      // Separate calls, as separate proposals would make them: group commit must merge them.
      for (let i = 0; i < batchRecords; i++) {
        index++;
        const entry: Entry = { term: 1, index, type: EntryType.Normal, data };
        wal.appendEntries(1, [entry]);
      }
      await wal.sync();
      latencies.push(performance.now() - batchStart);
    }
  } finally {
    await wal.close();
    await rm(walDir, { recursive: true, force: true });
  }
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    case: label,
    records: index,
    syncs: wal.stats().datasyncs - syncsBefore,
    seconds,
    recordsPerSecond: index / seconds,
    mbPerSecond: (index * args.payloadBytes) / seconds / 1e6,
    batchP50Ms: percentile(latencies, 50),
    batchP99Ms: percentile(latencies, 99),
  };
}

async function measureSnapshot(
  dir: string,
): Promise<{ writeMBps: number; verifyMBps: number; bytes: number }> {
  const store = await SnapshotStore.open(join(dir, 'snap'));
  const bytes = 64 * 1024 * 1024;
  const piece = randomBytes(1024 * 1024);
  const pieces = Array.from({ length: bytes / piece.length }, () => piece);
  let start = performance.now();
  const info = await store.write({ index: 1, term: 1, confState: emptyConf() }, pieces);
  const writeMBps = bytes / ((performance.now() - start) / 1000) / 1e6;
  start = performance.now();
  await store.verify(info.path);
  const verifyMBps = bytes / ((performance.now() - start) / 1000) / 1e6;
  return { writeMBps, verifyMBps, bytes };
}

function emptyConf() {
  return { voters: [1], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
}

function printTable(rows: Row[]): void {
  const header = ['case', 'records', 'fdatasyncs', 'records/s', 'MB/s', 'batch p50 ms', 'batch p99 ms'];
  const lines = rows.map((r) => [
    r.case,
    String(r.records),
    String(r.syncs),
    r.recordsPerSecond.toFixed(0),
    r.mbPerSecond.toFixed(2),
    r.batchP50Ms.toFixed(3),
    r.batchP99Ms.toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(fmt(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dir = await mkdtemp(join(args.dir ?? tmpdir(), 'concord-storage-bench-'));
  try {
    console.log(`storage bench in ${dir}, payload ${args.payloadBytes} B, ${args.secondsPerCase} s per case`);
    const fsync = await measureFsync(dir, Math.min(3, args.secondsPerCase));
    console.log(
      `fdatasync latency over ${fsync.length} syncs (4 KiB write each): ` +
        `p50 ${percentile(fsync, 50).toFixed(3)} ms, p99 ${percentile(fsync, 99).toFixed(3)} ms, ` +
        `max ${fsync[fsync.length - 1]!.toFixed(3)} ms\n`,
    );
    const rows: Row[] = [];
    rows.push(await measureWal(dir, 'WAL, 1 fdatasync per record', 1, args));
    rows.push(await measureWal(dir, 'WAL, group commit 100/turn', 100, args));
    rows.push(await measureWal(dir, 'WAL, group commit 1000/turn', 1000, args));
    rows.push(await measureWal(dir, 'WAL, 1 fdatasync/record, zero-filled', 1, args, 'zero-fill'));
    rows.push(await measureWal(dir, 'WAL, 100/turn, zero-filled segments', 100, args, 'zero-fill'));
    printTable(rows);
    const snap = await measureSnapshot(dir);
    console.log(
      `\nsnapshot file (${snap.bytes / 1024 / 1024} MiB, 1 MiB chunks): write+fsync ${snap.writeMBps.toFixed(0)} MB/s, ` +
        `verify ${snap.verifyMBps.toFixed(0)} MB/s`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
