// The bbolt reader and writer: round trips through every page kind (inline buckets, leaves,
// several branch levels, overflow pages), damage detected with a clear error, and bbolt's own
// consistency check (in etcdctl) accepting what the writer produces.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { etcdSnapshotStatus } from '../../src/mvcc/etcd-snapshot.js';
import {
  type BboltBucketSource,
  BboltFormatError,
  BboltReader,
  BboltWriteError,
  type BboltWriteOptions,
  planBboltFile,
} from '../../src/storage/bbolt/index.js';
import { crc32c } from '../../src/util/crc32c.js';

const scratch = mkdtempSync(join(tmpdir(), 'bbolt-test-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let fileNumber = 0;

function key(i: number, width = 8): Buffer {
  const out = Buffer.alloc(width);
  out.writeUIntBE(i, width - 6, 6);
  return out;
}

/** A bucket of `count` entries; every `bigEvery`-th value is `bigBytes` long (overflow pages). */
function bucket(
  name: string,
  count: number,
  options: { bigEvery?: number; bigBytes?: number } = {},
): BboltBucketSource {
  return {
    name: Buffer.from(name),
    *entries() {
      for (let i = 0; i < count; i++) {
        const big = options.bigEvery !== undefined && i % options.bigEvery === 0;
        yield {
          key: key(i),
          value: Buffer.alloc(big ? (options.bigBytes ?? 10_000) : 20 + (i % 7), i % 251),
        };
      }
    },
  };
}

async function writeFile(
  buckets: BboltBucketSource[],
  options: BboltWriteOptions = {},
): Promise<{ path: string; bytes: Buffer }> {
  const plan = await planBboltFile(buckets, options);
  const chunks: Buffer[] = [];
  for await (const chunk of plan.chunks()) {
    assert.ok(chunk.length <= (options.chunkBytesMax ?? 64 * 1024), 'chunks are bounded');
    chunks.push(Buffer.from(chunk));
  }
  const bytes = Buffer.concat(chunks);
  assert.equal(bytes.length, plan.totalBytes, 'the plan knows the size before writing');
  const path = join(scratch, `f${fileNumber++}.db`);
  writeFileSync(path, bytes);
  return { path, bytes };
}

function readAll(path: string, name: string): { key: Buffer; value: Buffer }[] {
  const reader = BboltReader.open(path);
  try {
    return [...reader.entries([Buffer.from(name)])].map((e) => ({
      key: Buffer.from(e.key),
      value: Buffer.from(e.value),
    }));
  } finally {
    reader.close();
  }
}

function expected(source: BboltBucketSource): { key: Buffer; value: Buffer }[] {
  return [...source.entries()].map((e) => ({ key: Buffer.from(e.key), value: Buffer.from(e.value) }));
}

/** Page types in the file by page id (meta 4, freelist 16, branch 1, leaf 2), overflow pages skipped. */
function pageKinds(bytes: Buffer, pageBytes: number): Map<number, number> {
  const kinds = new Map<number, number>();
  for (let id = 0; id * pageBytes < bytes.length; ) {
    const flags = bytes.readUInt16LE(id * pageBytes + 8);
    kinds.set(flags, (kinds.get(flags) ?? 0) + 1);
    id += 1 + bytes.readUInt32LE(id * pageBytes + 12);
  }
  return kinds;
}

describe('bbolt round trip', () => {
  test('inline, empty, many-page and overflow buckets read back exactly, and the file checks clean', async () => {
    const sources = [
      bucket('many', 20_000, { bigEvery: 997, bigBytes: 50_000 }),
      bucket('small', 3),
      bucket('empty', 0),
      bucket('one-huge', 1, { bigEvery: 1, bigBytes: 3_000_000 }),
    ];
    const { path, bytes } = await writeFile(sources);
    const reader = BboltReader.open(path);
    try {
      assert.deepEqual(
        reader.bucketNames().map(String),
        ['empty', 'many', 'one-huge', 'small'],
        'buckets in byte order',
      );
      assert.equal(reader.databaseBytes(), bytes.length);
      assert.deepEqual(reader.check(), []);
    } finally {
      reader.close();
    }
    for (const source of sources) assert.deepEqual(readAll(path, String(source.name)), expected(source));
    const kinds = pageKinds(bytes, 4096);
    assert.ok((kinds.get(1) ?? 0) >= 1, 'a branch page');
    assert.ok((kinds.get(2) ?? 0) > 100, 'many leaf pages');
    const root = readAll(path, '');
    assert.equal(root.length, 0, 'the root bucket holds buckets only, no plain entries');
  });

  test('small pages give several branch levels, and the keys still come back in order', async () => {
    const source = bucket('deep', 5000);
    const { path, bytes } = await writeFile([source], { pageBytes: 512 });
    assert.deepEqual(readAll(path, 'deep'), expected(source));
    const reader = BboltReader.open(path);
    try {
      assert.equal(reader.pageBytes, 512);
      assert.deepEqual(reader.check(), []);
      // The bucket's root is a branch whose children are branches: three levels at least.
      const rootValue = [...reader.entries([])][0]!.value;
      const rootPage = Number(rootValue.readBigUInt64LE(0));
      assert.equal(bytes.readUInt16LE(rootPage * 512 + 8), 1, 'root is a branch page');
      const firstChild = Number(bytes.readBigUInt64LE(rootPage * 512 + 16 + 8));
      assert.equal(bytes.readUInt16LE(firstChild * 512 + 8), 1, 'its child is a branch page too');
    } finally {
      reader.close();
    }
  });

  test('a trailer after the pages (etcd snapshot sha256) is ignored when dataBytes says where the file ends', async () => {
    const source = bucket('b', 100);
    const { path, bytes } = await writeFile([source]);
    writeFileSync(path, Buffer.concat([bytes, Buffer.alloc(32, 7)]));
    const reader = BboltReader.open(path, { dataBytes: bytes.length });
    try {
      assert.equal([...reader.entries([Buffer.from('b')])].length, 100);
    } finally {
      reader.close();
    }
  });
});

describe('bbolt damage is reported, never crashes or returns wrong data', () => {
  async function sample(): Promise<{ path: string; bytes: Buffer }> {
    return writeFile([bucket('data', 2000, { bigEvery: 500, bigBytes: 9000 }), bucket('tiny', 2)]);
  }

  function damaged(bytes: Buffer, change: (copy: Buffer) => void): string {
    const copy = Buffer.from(bytes);
    change(copy);
    const path = join(scratch, `d${fileNumber++}.db`);
    writeFileSync(path, copy);
    return path;
  }

  function readEverything(path: string): void {
    const reader = BboltReader.open(path);
    try {
      for (const name of reader.bucketNames())
        for (const _ of reader.entries([name])) {
        }
    } finally {
      reader.close();
    }
  }

  test('a bad checksum on meta page 0 falls back to meta page 1, as bbolt does', async () => {
    const { bytes } = await sample();
    const path = damaged(bytes, (copy) => {
      copy[16 + 40] = (copy[16 + 40]! + 1) & 0xff; // page count, covered by the checksum
    });
    const reader = BboltReader.open(path);
    try {
      assert.equal(reader.meta.txid, 1n, 'meta page 1 (the lower txid) is used');
      assert.equal([...reader.entries([Buffer.from('data')])].length, 2000);
    } finally {
      reader.close();
    }
  });

  test('both meta pages bad: "invalid database" with both reasons', async () => {
    const { bytes } = await sample();
    const path = damaged(bytes, (copy) => {
      copy[16 + 48] ^= 1;
      copy[4096 + 16 + 48] ^= 1;
    });
    assert.throws(
      () => BboltReader.open(path),
      (error: unknown) => {
        assert.ok(error instanceof BboltFormatError);
        assert.equal(error.code, 'BBOLT_CORRUPT');
        assert.match(
          error.message,
          /invalid database \(meta page 0: checksum mismatch; meta page 1: checksum mismatch\)/,
        );
        return true;
      },
    );
  });

  test('not a bbolt file at all', () => {
    const path = join(scratch, 'garbage.db');
    writeFileSync(path, Buffer.alloc(16384, 0x42));
    assert.throws(() => BboltReader.open(path), /invalid database \(meta page 0: bad magic/);
  });

  test('a truncated file', async () => {
    const { bytes } = await sample();
    const path = join(scratch, `t${fileNumber++}.db`);
    writeFileSync(path, bytes.subarray(0, bytes.length - 4096));
    assert.throws(() => BboltReader.open(path), /truncated: the meta counts \d+ pages/);
  });

  test('a leaf page whose header names another page', async () => {
    const { bytes } = await sample();
    const leaf = findPage(bytes, 2, 8);
    const path = damaged(bytes, (copy) => copy.writeBigUInt64LE(BigInt(leaf + 1), leaf * 4096));
    assert.throws(() => readEverything(path), new RegExp(`page ${leaf} has id ${leaf + 1} in its header`));
  });

  test('a leaf element pointing past its page', async () => {
    const { bytes } = await sample();
    const leaf = findPage(bytes, 2, 8);
    const path = damaged(bytes, (copy) => copy.writeUInt32LE(100_000, leaf * 4096 + 16 + 4));
    assert.throws(() => readEverything(path), /element 0 runs past the page/);
  });

  test('keys out of order within a leaf', async () => {
    const { bytes } = await sample();
    const leaf = findPage(bytes, 2, 8);
    // Second key of the page made smaller than the first: its last byte set to 0.
    const path = damaged(bytes, (copy) => {
      const at = leaf * 4096 + 16 + 16;
      const keyAt = at + copy.readUInt32LE(at + 4);
      copy.fill(0, keyAt, keyAt + 8);
    });
    assert.throws(() => readEverything(path), /keys out of order|key below its parent's separator/);
  });

  test('a branch pointing outside the file, and a page type that is not a tree page', async () => {
    const { bytes } = await sample();
    const branch = findPage(bytes, 1, 0);
    const outside = damaged(bytes, (copy) => copy.writeBigUInt64LE(999_999n, branch * 4096 + 16 + 8));
    assert.throws(() => readEverything(outside), /points at page 999999, outside/);
    const leaf = findPage(bytes, 2, 8);
    const wrongType = damaged(bytes, (copy) => copy.writeUInt16LE(0x10, leaf * 4096 + 8));
    assert.throws(() => readEverything(wrongType), /expected a branch or leaf page, found flags 16/);
  });

  test('check() lists pages nothing reaches and the freelist does not hold', async () => {
    const { bytes } = await sample();
    const extra = Buffer.alloc(4096);
    const grown = Buffer.concat([bytes, extra]);
    // Raise the page count in both metas (and re-checksum them by rewriting through the writer's meta code).
    const pageCount = grown.length / 4096;
    const { encodeMeta, decodeMeta } = await import('../../src/storage/bbolt/format.js');
    for (const page of [0, 1]) {
      const meta = decodeMeta(grown, page * 4096 + 16);
      encodeMeta(grown, page * 4096 + 16, { ...meta, pageCount });
    }
    const path = join(scratch, `u${fileNumber++}.db`);
    writeFileSync(path, grown);
    const reader = BboltReader.open(path);
    try {
      assert.deepEqual(reader.check(), [`page ${pageCount - 1}: unreachable unfreed`]);
    } finally {
      reader.close();
    }
  });
});

/** The id of the first page with these flags whose first element's key is `keyBytes` long (0 = any). */
function findPage(bytes: Buffer, flags: number, keyBytes: number): number {
  for (let id = 3; id * 4096 < bytes.length; id++) {
    const at = id * 4096;
    if (bytes.readUInt16LE(at + 8) !== flags || bytes.readUInt16LE(at + 10) < 2) continue;
    if (keyBytes !== 0 && bytes.readUInt32LE(at + 16 + 8) !== keyBytes) continue;
    return id;
  }
  throw new Error(`no page with flags ${flags}`);
}

describe('the writer refuses what bbolt cannot store', () => {
  test('keys out of order, empty keys, duplicate buckets', async () => {
    const unsorted: BboltBucketSource = {
      name: Buffer.from('u'),
      *entries() {
        yield { key: Buffer.from('b'), value: Buffer.alloc(0) };
        yield { key: Buffer.from('a'), value: Buffer.alloc(0) };
      },
    };
    await assert.rejects(
      planBboltFile([unsorted]),
      (error: unknown) => error instanceof BboltWriteError && /strictly increasing/.test(error.message),
    );
    const empty: BboltBucketSource = {
      name: Buffer.from('e'),
      *entries() {
        yield { key: Buffer.alloc(0), value: Buffer.alloc(1) };
      },
    };
    await assert.rejects(planBboltFile([empty]), /is empty/);
    await assert.rejects(planBboltFile([bucket('x', 1), bucket('x', 2)]), /given twice/);
  });

  test('a source that yields something else in the writing pass fails the stream', async () => {
    let pass = 0;
    const shifting: BboltBucketSource = {
      name: Buffer.from('s'),
      *entries() {
        pass++;
        for (let i = 0; i < 1000 + pass; i++) yield { key: key(i), value: Buffer.alloc(30) };
      },
    };
    const plan = await planBboltFile([shifting]);
    await assert.rejects(async () => {
      for await (const _ of plan.chunks()) {
      }
    }, /the source changed between the planning and the writing pass/);
  });
});

test('crc32c matches the Castagnoli check value', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(Buffer.from('6789'), crc32c(Buffer.from('12345'))), 0xe3069283);
});

const etcdctl = '/usr/bin/etcdctl';

describe('bbolt itself accepts what the writer produces (etcdctl snapshot status runs bbolt Tx.Check)', {
  skip: !existsSync(etcdctl),
}, () => {
  for (const pageBytes of [4096, 512]) {
    test(`branch levels, overflow pages, inline and empty buckets, ${pageBytes}-byte pages`, async () => {
      const { path } = await writeFile(
        [
          bucket('data', 30_000, { bigEvery: 3001, bigBytes: 70_000 }),
          bucket('meta', 2),
          bucket('authUsers', 0),
        ],
        { pageBytes },
      );
      const run = spawnSync(etcdctl, ['snapshot', 'status', path, '-w', 'json'], {
        encoding: 'utf8',
        env: { ...process.env, ETCDCTL_API: '3' },
      });
      assert.equal(run.status, 0, run.stderr);
      const theirs = JSON.parse(run.stdout) as { hash: number; totalKey: number; totalSize: number };
      const reader = BboltReader.open(path);
      try {
        const ours = etcdSnapshotStatus(reader);
        assert.deepEqual(
          { hash: theirs.hash, totalKey: theirs.totalKey, totalSize: theirs.totalSize },
          { hash: ours.hash, totalKey: ours.totalKey, totalSize: ours.totalSize },
        );
        assert.equal(ours.totalKey, 30_002);
        assert.equal(ours.totalSize, readFileSync(path).length);
      } finally {
        reader.close();
      }
    });
  }
});
