import assert from 'node:assert/strict';
import { readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { WalCorruptionError } from '../../src/storage/errors.js';
import { Wal } from '../../src/storage/wal.js';
import { entries, recordOffsets, seededRandom, walFiles, withTempDir } from './helpers.js';

const SEGMENT_BYTES = 4096;

/** Writes `batches` synced batches of 5 entries each; returns the segment paths, oldest first. */
async function writeLog(dir: string, batches: number): Promise<string[]> {
  const { wal } = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES });
  for (let b = 0; b < batches; b++) {
    wal.appendEntries(1, entries(b * 5 + 1, b * 5 + 5));
    await wal.sync();
  }
  await wal.close();
  return (await walFiles(dir)).sort().map((n) => join(dir, n));
}

async function flipByte(path: string, offset: number): Promise<void> {
  const buf = await readFile(path);
  buf[offset] = buf[offset]! ^ 0x5a;
  await writeFile(path, buf);
}

function expectCorruption(file: string, offset: number) {
  return (err: unknown) => {
    assert.ok(err instanceof WalCorruptionError, `expected WalCorruptionError, got ${String(err)}`);
    assert.equal(err.code, 'WAL_CORRUPT');
    assert.equal(err.file, file);
    assert.equal(err.offset, offset);
    assert.ok(err.message.includes(file) && err.message.includes(String(offset)));
    return true;
  };
}

describe('WAL corruption is never skipped', () => {
  it('a flipped byte in the middle of an older segment fails open naming file and record offset', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 40);
      assert.ok(segments.length >= 3);
      const victim = segments[1]!;
      const offsets = recordOffsets(await readFile(victim));
      const recordStart = offsets[Math.floor(offsets.length / 2)]!;
      await flipByte(victim, recordStart + 20);
      await assert.rejects(
        Wal.open(dir, { segmentBytes: SEGMENT_BYTES }),
        expectCorruption(victim, recordStart),
      );
    }));

  it('a flipped byte in the last segment followed by valid records is corruption, not a torn tail', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 40);
      const last = segments[segments.length - 1]!;
      const offsets = recordOffsets(await readFile(last));
      assert.ok(offsets.length >= 4, 'last segment has several records');
      const recordStart = offsets[1]!;
      await flipByte(last, recordStart + 12);
      await assert.rejects(
        Wal.open(dir, { segmentBytes: SEGMENT_BYTES }),
        expectCorruption(last, recordStart),
      );
    }));

  it('a damaged length field is caught by the CRC instead of mis-framing the rest', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 40);
      const victim = segments[0]!;
      const offsets = recordOffsets(await readFile(victim));
      await flipByte(victim, offsets[2]!);
      await assert.rejects(
        Wal.open(dir, { segmentBytes: SEGMENT_BYTES }),
        expectCorruption(victim, offsets[2]!),
      );
    }));

  it('a damaged length field in the last segment cannot hide the acknowledged records after it', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 40);
      const last = segments[segments.length - 1]!;
      const buf = await readFile(last);
      const offsets = recordOffsets(buf);
      assert.ok(offsets.length >= 4);
      // Claim the record runs to (or past) the end of the file, swallowing the records after it.
      for (const claimed of [SEGMENT_BYTES - offsets[1]! - 8, 0x00ff_ffff]) {
        buf.writeUInt32LE(claimed, offsets[1]!);
        await writeFile(last, buf);
        await assert.rejects(
          Wal.open(dir, { segmentBytes: SEGMENT_BYTES }),
          expectCorruption(last, offsets[1]!),
        );
      }
    }));

  it('non-zero bytes inside the zero tail of an older segment are corruption', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 40);
      const victim = segments[0]!;
      const offsets = recordOffsets(await readFile(victim));
      const end = offsets[offsets.length - 1]!;
      await flipByte(victim, SEGMENT_BYTES - 3);
      await assert.rejects(Wal.open(dir, { segmentBytes: SEGMENT_BYTES }), expectCorruption(victim, end));
    }));

  it('a record with a valid CRC but a malformed payload fails even at the tail', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 2);
      const last = segments[segments.length - 1]!;
      const buf = await readFile(last);
      const offsets = recordOffsets(buf);
      const at = offsets[offsets.length - 1]!;
      // Type 99 does not exist; framing and CRC are otherwise perfect.
      const record = Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 99, 7]);
      record.writeUInt32LE(crc32(record.subarray(8), crc32(record.subarray(0, 4))), 4);
      record.copy(buf, at);
      await writeFile(last, buf);
      await assert.rejects(Wal.open(dir, { segmentBytes: SEGMENT_BYTES }), expectCorruption(last, at));
    }));

  it('a segment renamed to another sequence number fails open (header disagrees with name)', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 40);
      const last = segments[segments.length - 1]!;
      const lastSeq = Number.parseInt(last.slice(-20, -4), 16);
      const moved = join(dir, `${(lastSeq + 1).toString(16).padStart(16, '0')}.wal`);
      await writeFile(moved, await readFile(last));
      await assert.rejects(Wal.open(dir, { segmentBytes: SEGMENT_BYTES }), expectCorruption(moved, 0));
    }));

  it('a half-created segment (temp file from a crash during rollover) is removed on open', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 10);
      const tmp = join(dir, `${(segments.length + 1).toString(16).padStart(16, '0')}.wal.tmp`);
      await writeFile(tmp, Buffer.alloc(SEGMENT_BYTES));
      const { wal, recovered } = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES });
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(1, 50));
      assert.deepEqual(
        (await walFiles(dir)).sort(),
        segments.map((p) => p.slice(dir.length + 1)),
      );
      await wal.close();
    }));

  it('a missing segment in the middle of the sequence fails open', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 40);
      await rm(segments[1]!);
      await assert.rejects(Wal.open(dir, { segmentBytes: SEGMENT_BYTES }), expectCorruption(segments[2]!, 0));
    }));
});

describe('WAL torn tail recovery', () => {
  it('tearing the last segment at random points recovers every record before the tear', async () => {
    const random = seededRandom(20261125);
    for (let trial = 0; trial < 25; trial++) {
      await withTempDir(async (dir) => {
        const segments = await writeLog(dir, 4);
        assert.equal(segments.length, 1, 'everything in one segment for this test');
        const path = segments[0]!;
        const buf = await readFile(path);
        const offsets = recordOffsets(buf);
        const firstEntryRecord = offsets[1]!;
        const end = offsets[offsets.length - 1]!;
        const tear = firstEntryRecord + Math.floor(random() * (end - firstEntryRecord));
        const shortFile = trial % 2 === 0;
        if (shortFile) await truncate(path, tear);
        else await writeFile(path, Buffer.concat([buf.subarray(0, tear), Buffer.alloc(buf.length - tear)]));
        const complete = offsets.filter((o, i) => i > 0 && o <= tear).length - 1;
        const { wal, recovered } = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES });
        const expectedEntries = entries(1, complete * 5);
        assert.deepEqual(
          recovered.groups.get(1)?.entries ?? [],
          expectedEntries,
          `trial ${trial} tear ${tear}`,
        );
        const atBoundary = offsets.includes(tear);
        if (atBoundary && !shortFile) assert.equal(recovered.tornTail, null);
        if (!atBoundary) assert.equal(recovered.tornTail?.offset, offsets[complete + 1]);
        // The log is writable after the cut and the next start is clean.
        wal.appendEntries(1, entries(complete * 5 + 1, complete * 5 + 5));
        await wal.close();
        const again = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES });
        assert.equal(again.recovered.tornTail, null);
        assert.deepEqual(again.recovered.groups.get(1)!.entries, entries(1, complete * 5 + 5));
        await again.wal.close();
      });
    }
  });

  it('a bad CRC in the last record followed only by zeros is truncated and reported', () =>
    withTempDir(async (dir) => {
      const segments = await writeLog(dir, 3);
      const path = segments[0]!;
      const offsets = recordOffsets(await readFile(path));
      const lastRecord = offsets[offsets.length - 2]!;
      await flipByte(path, lastRecord + 30);
      const { wal, recovered } = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES });
      assert.equal(recovered.tornTail?.file, path);
      assert.equal(recovered.tornTail?.offset, lastRecord);
      assert.match(recovered.tornTail!.reason, /CRC/);
      assert.deepEqual(recovered.groups.get(1)!.entries, entries(1, 10));
      await wal.close();
    }));
});
