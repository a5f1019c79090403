import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { SnapshotMetadata } from '../../src/raft/types.js';
import { SnapshotCorruptionError } from '../../src/storage/errors.js';
import { SnapshotStore, snapshotFileName } from '../../src/storage/snapshot-store.js';
import { seededRandom, withTempDir } from './helpers.js';

const CHUNK = 64 * 1024;
const FRAME_OVERHEAD = 9;

function meta(index: number, term: number): SnapshotMetadata {
  return {
    index,
    term,
    confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [4], learnersNext: [], autoLeave: true },
  };
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

function headerFrameBytes(buf: Buffer): number {
  return 8 + buf.readUInt32LE(0);
}

function corruptAt(path: string, offset: number): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof SnapshotCorruptionError, `expected SnapshotCorruptionError, got ${String(err)}`);
    assert.equal(err.code, 'SNAPSHOT_CORRUPT');
    assert.equal(err.file, path);
    assert.equal(err.offset, offset);
    return true;
  };
}

describe('snapshot files', () => {
  it('round-trips metadata and data through chunked frames under <term>-<index>.snap', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(dir, { chunkBytes: CHUNK });
      const data = randomBytes(3 * CHUNK + 1234);
      const info = await store.write(meta(120, 4), data);
      assert.equal(info.path, join(dir, snapshotFileName(4, 120)));
      assert.match(snapshotFileName(4, 120), /^0{15}4-0{14}78\.snap$/);
      assert.equal(info.chunkCount, 4);
      assert.equal(info.dataBytes, data.length);
      assert.deepEqual(await readdir(dir), [snapshotFileName(4, 120)], 'no temp file left');
      const verified = await store.verify(info.path);
      assert.deepEqual(verified.metadata, meta(120, 4));
      assert.equal(verified.chunkCount, 4);
      assert.deepEqual(await collect(store.readData(info.path)), data);
    }));

  it('re-cuts a stream of small pieces into full chunks', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(dir, { chunkBytes: 1000 });
      const data = randomBytes(10_500);
      async function* pieces() {
        for (let at = 0; at < data.length; at += 333) yield data.subarray(at, at + 333);
      }
      const info = await store.write(meta(7, 1), pieces());
      assert.equal(info.chunkCount, 11);
      assert.deepEqual(await collect(store.readData(info.path)), data);
    }));

  it('an empty snapshot is valid', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(dir);
      const info = await store.write(meta(1, 1), new Uint8Array(0));
      assert.equal((await store.verify(info.path)).dataBytes, 0);
    }));

  it('installTo places a verified copy of the data and nothing else', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(join(dir, 'snap'), { chunkBytes: CHUNK });
      const data = randomBytes(2 * CHUNK + 5);
      const info = await store.write(meta(9, 2), data);
      const dest = join(dir, 'state.db');
      await store.installTo(info.path, dest);
      assert.deepEqual(await readFile(dest), data);
    }));

  it('keeps the newest N files and removes temp files a crash left', () =>
    withTempDir(async (dir) => {
      await writeFile(join(dir, `${snapshotFileName(1, 1)}.tmp`), 'partial');
      const store = await SnapshotStore.open(dir, { retain: 2 });
      assert.deepEqual(await readdir(dir), []);
      for (const [index, term] of [
        [10, 1],
        [30, 2],
        [20, 2],
        [40, 3],
      ] as const) {
        await store.write(meta(index, term), randomBytes(100));
      }
      const deleted = await store.prune();
      assert.equal(deleted.length, 2);
      assert.deepEqual((await readdir(dir)).sort(), [snapshotFileName(2, 30), snapshotFileName(3, 40)]);
    }));
});

describe('snapshot file writer', () => {
  it('writes pieces as they come (smaller or larger than a chunk) into a file that verifies', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(dir, { chunkBytes: CHUNK });
      const data = randomBytes(5 * CHUNK + 77);
      const target = join(dir, 'elsewhere.snap');
      const writer = await store.writer(meta(300, 6), target);
      const cuts = [0, 100, CHUNK + 5, 3 * CHUNK, 3 * CHUNK + 1, data.length];
      for (let i = 1; i < cuts.length; i++) {
        await writer.append(data.subarray(cuts[i - 1], cuts[i]));
        assert.deepEqual(await readdir(dir), ['elsewhere.snap.tmp'], 'nothing under the name before commit');
      }
      const info = await writer.commit();
      assert.equal(info.dataBytes, data.length);
      assert.deepEqual(await readdir(dir), ['elsewhere.snap']);
      const verified = await store.verify(target);
      assert.deepEqual(verified.metadata, meta(300, 6));
      assert.deepEqual(await collect(store.readData(target)), data);
    }));

  it('discard removes the unfinished file, also after a failed commit', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(dir, { chunkBytes: CHUNK });
      const writer = await store.writer(meta(5, 1));
      await writer.append(randomBytes(CHUNK * 2));
      await writer.discard();
      await writer.discard();
      assert.deepEqual(await readdir(dir), []);
    }));

  it('adopt moves a finished file into the store under its name', () =>
    withTempDir(async (dir) => {
      const snapDir = join(dir, 'snap');
      const store = await SnapshotStore.open(snapDir, { chunkBytes: CHUNK });
      const data = randomBytes(CHUNK + 3);
      const writer = await store.writer(meta(42, 3), join(dir, 'received.snap'));
      await writer.append(data);
      await writer.commit();
      const path = await store.adopt(join(dir, 'received.snap'), meta(42, 3));
      assert.equal(path, join(snapDir, snapshotFileName(3, 42)));
      assert.deepEqual(await readdir(snapDir), [snapshotFileName(3, 42)]);
      assert.deepEqual(
        (await store.list()).map((f) => f.index),
        [42],
      );
      assert.deepEqual(await collect(store.readData(path)), data);
    }));
});

describe('snapshot corruption', () => {
  it('a bad chunk CRC is reported with path and the chunk offset, and nothing is installed', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(join(dir, 'snap'), { chunkBytes: CHUNK });
      const info = await store.write(meta(50, 3), randomBytes(3 * CHUNK));
      const buf = await readFile(info.path);
      const secondChunk = headerFrameBytes(buf) + FRAME_OVERHEAD + CHUNK;
      buf[secondChunk + 100] = buf[secondChunk + 100]! ^ 1;
      await writeFile(info.path, buf);

      await assert.rejects(store.verify(info.path), corruptAt(info.path, secondChunk));
      const dest = join(dir, 'state.db');
      await assert.rejects(store.installTo(info.path, dest), corruptAt(info.path, secondChunk));
      assert.deepEqual((await readdir(dir)).sort(), ['snap'], 'no partial install left');
      // Streaming readers get the good first chunk, never the bad one.
      let yielded = 0;
      await assert.rejects(async () => {
        for await (const _ of store.readData(info.path)) yielded++;
      }, SnapshotCorruptionError);
      assert.equal(yielded, 1);
    }));

  it('a truncated file, a dropped chunk or swapped chunks are caught by the trailer', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(dir, { chunkBytes: CHUNK });
      const data = randomBytes(3 * CHUNK);
      const info = await store.write(meta(5, 1), data);
      const original = await readFile(info.path);
      const head = headerFrameBytes(original);
      const frame = FRAME_OVERHEAD + CHUNK;
      const chunkAt = (i: number) => original.subarray(head + i * frame, head + (i + 1) * frame);
      const trailer = original.subarray(head + 3 * frame);

      await writeFile(
        info.path,
        Buffer.concat([original.subarray(0, head), chunkAt(0), chunkAt(2), trailer]),
      );
      await assert.rejects(store.verify(info.path), /trailer says \d+ data bytes, file holds/);
      await writeFile(
        info.path,
        Buffer.concat([original.subarray(0, head), chunkAt(1), chunkAt(0), chunkAt(2), trailer]),
      );
      await assert.rejects(store.verify(info.path), /whole-file CRC/);
      await writeFile(info.path, original);
      await truncate(info.path, original.length - 3);
      await assert.rejects(store.verify(info.path), /before the trailer/);
      await writeFile(info.path, Buffer.concat([original, Buffer.from([1, 2, 3])]));
      await assert.rejects(store.verify(info.path), /after the trailer/);
    }));

  it('newestValid skips a corrupt newer file and reports it', () =>
    withTempDir(async (dir) => {
      const store = await SnapshotStore.open(dir, { chunkBytes: CHUNK });
      await store.write(meta(10, 1), randomBytes(1000));
      const newer = await store.write(meta(20, 1), randomBytes(1000));
      await truncate(newer.path, 100);
      const reported: string[] = [];
      const best = await store.newestValid((err) => reported.push(err.file));
      assert.equal(best?.metadata.index, 10);
      assert.deepEqual(reported, [newer.path]);
    }));
});

describe('snapshot streaming', () => {
  it('a receiver fed the sender frames in arbitrary pieces produces an identical verified file', () =>
    withTempDir(async (dir) => {
      const sender = await SnapshotStore.open(join(dir, 'a'), { chunkBytes: CHUNK });
      const receiver = await SnapshotStore.open(join(dir, 'b'));
      const info = await sender.write(meta(77, 5), randomBytes(5 * CHUNK + 17));
      const random = seededRandom(3);
      async function* recut() {
        for await (const frame of sender.frames(info.path)) {
          for (let at = 0; at < frame.length; ) {
            const size = 1 + Math.floor(random() * 20_000);
            yield frame.subarray(at, at + size);
            at += size;
          }
        }
      }
      const received = await receiver.receive().pushAll(recut());
      assert.equal(received.path, join(dir, 'b', snapshotFileName(5, 77)));
      assert.deepEqual(received.metadata, meta(77, 5));
      assert.deepEqual(await readFile(received.path), await readFile(info.path));
      assert.equal((await receiver.verify(received.path)).chunkCount, 6);
    }));

  it('a receiver rejects a damaged chunk as it arrives and leaves no file behind', () =>
    withTempDir(async (dir) => {
      const sender = await SnapshotStore.open(join(dir, 'a'), { chunkBytes: CHUNK });
      const receiverDir = join(dir, 'b');
      const receiver = await SnapshotStore.open(receiverDir);
      const info = await sender.write(meta(8, 2), randomBytes(4 * CHUNK));
      const frames: Buffer[] = [];
      for await (const frame of sender.frames(info.path)) frames.push(Buffer.from(frame));
      frames[2]![50] = frames[2]![50]! ^ 0x80;
      const rx = receiver.receive();
      await rx.push(frames[0]!);
      await rx.push(frames[1]!);
      const damagedAt = frames[0]!.length + frames[1]!.length;
      await assert.rejects(rx.push(frames[2]!), (err: unknown) => {
        assert.ok(err instanceof SnapshotCorruptionError);
        assert.equal(err.offset, damagedAt);
        return true;
      });
      assert.deepEqual(await readdir(receiverDir), []);
    }));

  it('a stream that ends before the trailer is rejected and cleaned up', () =>
    withTempDir(async (dir) => {
      const sender = await SnapshotStore.open(join(dir, 'a'), { chunkBytes: CHUNK });
      const receiverDir = join(dir, 'b');
      const receiver = await SnapshotStore.open(receiverDir);
      const info = await sender.write(meta(8, 2), randomBytes(2 * CHUNK));
      const rx = receiver.receive();
      const whole = await readFile(info.path);
      await rx.push(whole.subarray(0, whole.length - 10));
      await assert.rejects(rx.finish(), /before the trailer/);
      assert.deepEqual(await readdir(receiverDir), []);
      assert.ok((await stat(info.path)).size > 0);
    }));
});
