// bbolt writer benchmark: what the plan of a file holds in memory while the file streams, and how
// fast a file is planned, written and read back, from a synthetic bucket shaped like etcd's key
// bucket (17-byte revision keys, 300-byte values). Run with the GC exposed so the memory figure
// means something: node --expose-gc dist/src/storage/bbolt/bench.js [--entries N]
//
// Back of the envelope: a 4 KiB leaf holds ~12 such entries, so N entries make N/12 pages; the
// plan keeps per page a count, a span, a key end and the 17-byte first key (~40 bytes plus array
// slack), i.e. about 1-2 % of the file, whatever the values weigh.

import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { BboltReader } from './reader.js';
import { type BboltBucketSource, planBboltFile } from './writer.js';

const VALUE_BYTES = 300;

function argNumber(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function heldBytes(): number {
  global.gc?.();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

async function main(): Promise<void> {
  const entries = argNumber('--entries', 1_000_000);
  const value = Buffer.alloc(VALUE_BYTES, 0x61);
  const source: BboltBucketSource = {
    name: Buffer.from('key'),
    *entries() {
      for (let i = 0; i < entries; i++) {
        const key = Buffer.alloc(17);
        key.writeUInt32BE(Math.floor(i / 2 ** 32), 0);
        key.writeUInt32BE(i >>> 0, 4);
        key[8] = 0x5f;
        yield { key, value };
      }
    },
  };
  const dir = mkdtempSync(join(tmpdir(), 'bbolt-bench-'));
  const rows: [string, string][] = [];
  try {
    const t0 = performance.now();
    let plan: Awaited<ReturnType<typeof planBboltFile>> | undefined = await planBboltFile([source]);
    const planMs = performance.now() - t0;
    const withPlan = heldBytes();
    const path = join(dir, 'bench.db');
    const fd = openSync(path, 'w');
    const t1 = performance.now();
    try {
      for await (const chunk of plan.chunks()) writeSync(fd, chunk);
    } finally {
      closeSync(fd);
    }
    const writeMs = performance.now() - t1;
    const pages = plan.pageCount;
    plan = undefined;
    await sleep(10);
    const planBytes = withPlan - heldBytes();
    const fileBytes = statSync(path).size;
    const t2 = performance.now();
    const reader = BboltReader.open(path);
    let read = 0;
    try {
      for (const _ of reader.entries([Buffer.from('key')])) read++;
    } finally {
      reader.close();
    }
    const readMs = performance.now() - t2;
    if (read !== entries) throw new Error(`read back ${read} entries of ${entries}`);
    rows.push(['file bytes', fileBytes.toLocaleString('en-US')]);
    rows.push(['pages', pages.toLocaleString('en-US')]);
    rows.push([
      `memory the plan holds, bytes${global.gc ? '' : ' (run with --expose-gc)'}`,
      planBytes.toLocaleString('en-US'),
    ]);
    rows.push(['  per page, bytes', (planBytes / pages).toFixed(0)]);
    rows.push(['  of the file, %', ((planBytes / fileBytes) * 100).toFixed(2)]);
    rows.push(['plan pass, entries/s', Math.round((entries / planMs) * 1000).toLocaleString('en-US')]);
    rows.push(['write pass, MB/s', ((fileBytes / 1e6 / writeMs) * 1000).toFixed(1)]);
    rows.push(['read back, entries/s', Math.round((entries / readMs) * 1000).toLocaleString('en-US')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(
    `bbolt bench: ${entries} entries, 17-byte keys, ${VALUE_BYTES}-byte values, node ${process.version}`,
  );
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v.padStart(14)}`);
}

await main();
