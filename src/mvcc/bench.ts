// MVCC benchmark: apply throughput (puts in batches of 1000 per applyBatch, one LMDB transaction
// each), point-get and 100-key prefix-range throughput, bytes on disk and RSS growth per 100k keys
// of 256-byte values, and writing / restoring an etcd-format snapshot of that keyspace. Bounded to
// well under 30 s. Run: node dist/src/mvcc/bench.js [--keys N] [--no-sync] [--encrypted]
// (--encrypted: encryption at rest with a random key, see sealing.ts; its range reads scan every key)
//
// Back-of-envelope: a put writes ~3 LMDB entries (revs ~300 B, history ~30 B, live ~45 B), so
// 100k keys should cost ~40 MB of B-tree pages including page slack; the hot path per put is a
// few Buffer encodes and three B-tree inserts, i.e. single-digit microseconds.

import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { BboltReader } from '../storage/bbolt/index.js';
import { EncryptionKeys } from '../storage/encryption.js';
import { createEtcdSnapshot, importEtcdSnapshot } from './etcd-snapshot.js';
import { COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT, Keyspace } from './keyspace.js';
import type { AppliedEntry } from './types.js';

const BATCH_ENTRIES = 1000;
const VALUE_BYTES = 256;
const READ_PHASE_MS = 3000;

function argNumber(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function keyOf(n: number): Buffer {
  return Buffer.from(`bench/key/${String(n).padStart(8, '0')}`);
}

function diskBytes(dir: string): { apparent: number; allocated: number } {
  let apparent = 0;
  let allocated = 0;
  for (const name of readdirSync(dir)) {
    const st = statSync(join(dir, name));
    apparent += st.size;
    allocated += st.blocks * 512;
  }
  return { apparent, allocated };
}

function timeLoop(
  budgetMs: number,
  body: (i: number) => void,
  opsPerCheck = 100,
): { ops: number; ms: number } {
  const start = performance.now();
  let i = 0;
  while (performance.now() - start < budgetMs) {
    for (let j = 0; j < opsPerCheck; j++) body(i++);
  }
  return { ops: i, ms: performance.now() - start };
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

async function main(): Promise<void> {
  const keys = argNumber('--keys', 100_000);
  const noSync = process.argv.includes('--no-sync');
  const encryption = process.argv.includes('--encrypted')
    ? EncryptionKeys.of([['k1', randomBytes(32)]])
    : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'mvcc-bench-'));
  const ks = Keyspace.open(join(dir, 'ks'), { noSync, encryption });
  const rows: [string, string][] = [];
  try {
    const value = Buffer.alloc(VALUE_BYTES, 0x61);
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    let index = 0;
    const t0 = performance.now();
    for (let base = 0; base < keys; base += BATCH_ENTRIES) {
      const batch: AppliedEntry[] = [];
      for (let i = base; i < Math.min(keys, base + BATCH_ENTRIES); i++) {
        batch.push({ index: ++index, op: { type: 'put', request: { key: keyOf(i), value } } });
      }
      ks.applyBatch(batch);
    }
    const putMs = performance.now() - t0;
    global.gc?.();
    const rssAfter = process.memoryUsage().rss;
    const disk = diskBytes(join(dir, 'ks'));
    rows.push([
      `puts/s (batches of ${BATCH_ENTRIES}, ${noSync ? 'noSync' : 'fsync'} per batch)`,
      fmt((keys / putMs) * 1000),
    ]);
    rows.push(['µs per put', ((putMs * 1000) / keys).toFixed(2)]);

    let sink = 0;
    const gets = timeLoop(READ_PHASE_MS, (i) => {
      sink += ks.range({ key: keyOf((i * 7919) % keys) }).count;
    });
    rows.push(['point gets/s', fmt((gets.ops / gets.ms) * 1000)]);
    const prefixes = Math.max(1, Math.floor(keys / 100));
    const ranges = timeLoop(
      READ_PHASE_MS,
      (i) => {
        const p = Buffer.from(`bench/key/${String((i * 31) % prefixes).padStart(6, '0')}`);
        const end = Buffer.from(p);
        end[end.length - 1]!++;
        sink += ks.range({ key: p, rangeEnd: end }).kvs.length;
        // Encrypted, a range scans every key: check the clock after each one.
      },
      encryption ? 1 : 100,
    );
    rows.push(['100-key prefix ranges/s', fmt((ranges.ops / ranges.ms) * 1000)]);
    rows.push(['ms per 100-key prefix range', (ranges.ms / ranges.ops).toFixed(2)]);
    const old = timeLoop(READ_PHASE_MS / 3, (i) => {
      sink += ks.range({
        key: keyOf((i * 7919) % keys),
        revision: Math.max(1, ks.currentRevision() >> 1),
      }).count;
    });
    rows.push(['historical point gets/s', fmt((old.ops / old.ms) * 1000)]);
    if (sink === 0) throw new Error('reads found nothing');

    // Overwrite every key once, then compact away the first generation in bounded steps.
    const t1 = performance.now();
    for (let base = 0; base < keys; base += BATCH_ENTRIES) {
      const batch: AppliedEntry[] = [];
      for (let i = base; i < Math.min(keys, base + BATCH_ENTRIES); i++) {
        batch.push({ index: ++index, op: { type: 'put', request: { key: keyOf(i), value } } });
      }
      ks.applyBatch(batch);
    }
    rows.push(['overwrite puts/s', fmt((keys / (performance.now() - t1)) * 1000)]);
    const before = ks.storageStats().revisions;
    const t2 = performance.now();
    // The compact entry's own batch already runs the first bounded step.
    ks.applyBatch([{ index: ++index, op: { type: 'compact', request: { revision: ks.currentRevision() } } }]);
    let steps = 1;
    let stepMsMax = performance.now() - t2;
    for (;;) {
      const s0 = performance.now();
      const more = ks.compactStep();
      stepMsMax = Math.max(stepMsMax, performance.now() - s0);
      steps++;
      if (!more) break;
    }
    const removed = before - ks.storageStats().revisions;
    rows.push([
      'compaction: superseded versions removed/s',
      fmt((removed / (performance.now() - t2)) * 1000),
    ]);
    rows.push([
      `compaction: slowest of ${steps} steps, ms (${COMPACTION_RECORDS_PER_BATCH_MAX_DEFAULT} entries/step)`,
      stepMsMax.toFixed(1),
    ]);

    // etcd-format snapshot of the compacted keyspace: plan + stream to a file, then restore it.
    const snapshotPath = join(dir, 'snapshot.db');
    const t3 = performance.now();
    const snapshot = await createEtcdSnapshot(ks, {
      members: [],
      removedMemberIds: [],
      alarms: [],
      clusterVersion: '3.4.0',
    });
    const planMs = performance.now() - t3;
    const fd = openSync(snapshotPath, 'w');
    const t3b = performance.now();
    try {
      for await (const chunk of snapshot.chunks()) writeSync(fd, chunk);
    } finally {
      closeSync(fd);
    }
    const snapshotMs = planMs + (performance.now() - t3b);
    const snapshotBytes = statSync(snapshotPath).size;
    rows.push(['etcd snapshot: file bytes per 100k keys', fmt((snapshotBytes * 100_000) / keys)]);
    rows.push(['etcd snapshot: plan pass, ms', planMs.toFixed(0)]);
    rows.push(['etcd snapshot: plan + write, MB/s', ((snapshotBytes / 1e6 / snapshotMs) * 1000).toFixed(1)]);
    const restored = Keyspace.open(join(dir, 'restored'), { noSync: true });
    const reader = BboltReader.open(snapshotPath);
    try {
      const t4 = performance.now();
      const result = await importEtcdSnapshot(reader, restored);
      rows.push([
        'etcd snapshot: restore, revisions/s',
        fmt((result.records / (performance.now() - t4)) * 1000),
      ]);
    } finally {
      reader.close();
      await restored.close();
    }

    const per100k = 100_000 / keys;
    rows.push(['data file bytes per 100k keys', fmt(disk.apparent * per100k)]);
    rows.push(['allocated disk bytes per 100k keys', fmt(disk.allocated * per100k)]);
    rows.push(['bytes per key (allocated)', fmt(disk.allocated / keys)]);
    rows.push(['RSS growth per 100k keys', fmt((rssAfter - rssBefore) * per100k)]);
  } finally {
    await ks.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`mvcc bench: ${keys} keys, ${VALUE_BYTES}-byte values, node ${process.version}`);
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v.padStart(12)}`);
}

await main();
