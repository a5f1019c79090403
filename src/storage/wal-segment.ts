// Segment files: naming and the recovery scan of one segment.
//
// A segment is `<seq>.wal` where seq is its 16-hex-digit sequence number, so a plain sort of the
// directory listing is the log order. Segments are preallocated (ftruncate) and filled front to
// back; the first all-zero length field starts the zero tail, which must stay zero to the end.
// New segments are written under `<seq>.wal.tmp` and renamed once their header is durable, so a
// file with the final name always starts with a valid header.

import { join } from 'node:path';
import { DecodeError, isAllZero } from './codec.js';
import type { EncryptionKeys } from './encryption.js';
import { WalCorruptionError } from './errors.js';
import { decodeRecord, RECORD_HEADER_BYTES, RecordType, recordCrc, type WalRecord } from './wal-record.js';

const SEGMENT_NAME = /^([0-9a-f]{16})\.wal$/;
export const TEMP_SUFFIX = '.tmp';

export function segmentFileName(seq: number): string {
  return `${seq.toString(16).padStart(16, '0')}.wal`;
}

export function segmentPath(dir: string, seq: number): string {
  return join(dir, segmentFileName(seq));
}

/** The sequence number of a segment file name, or null for any other file. */
export function parseSegmentName(name: string): number | null {
  const match = SEGMENT_NAME.exec(name);
  return match ? Number.parseInt(match[1]!, 16) : null;
}

export interface ScannedRecord {
  record: WalRecord;
  offset: number;
}

export interface TornTail {
  file: string;
  /** Where the torn record started; the segment is zeroed from here on. */
  offset: number;
  reason: string;
}

export interface ScannedSegment {
  seq: number;
  path: string;
  records: ScannedRecord[];
  /** Offset just past the last valid record: where the next append goes. */
  validEnd: number;
  fileBytes: number;
  torn: TornTail | null;
}

/**
 * Verifies every record of one segment. A bad record is forgiven only in the last segment and
 * only when nothing but zeros follows it: that is the shape an interrupted append leaves in a
 * preallocated file. Anything else throws WalCorruptionError with the file and offset.
 */
export function scanSegment(
  path: string,
  seq: number,
  buf: Buffer,
  isLast: boolean,
  keys?: EncryptionKeys,
): ScannedSegment {
  const records: ScannedRecord[] = [];
  let offset = 0;
  let torn: TornTail | null = null;
  while (offset < buf.length) {
    const step = scanOne(path, buf, offset, keys);
    if (step.kind === 'end') break;
    if (step.kind === 'record') {
      checkPlacement(path, seq, step.record, offset, records.length);
      records.push({ record: step.record, offset });
      offset = step.next;
      continue;
    }
    if (!isLast || !looksTorn(buf, offset, step.claimedEnd)) {
      throw new WalCorruptionError(path, offset, step.reason);
    }
    torn = { file: path, offset, reason: step.reason };
    break;
  }
  if (records.length === 0) throw new WalCorruptionError(path, 0, 'segment has no header record');
  return { seq, path, records, validEnd: offset, fileBytes: buf.length, torn };
}

/**
 * An interrupted append writes a prefix of its bytes and leaves zeros after them. So a bad record
 * is a torn tail only if nothing but zeros follows its claimed end, and no intact record starts
 * inside it: a damaged length field can claim to cover later, acknowledged records (or run past
 * the end of the file), and those must fail recovery instead of being cut away.
 */
function looksTorn(buf: Buffer, offset: number, claimedEnd: number): boolean {
  const end = Math.min(claimedEnd, buf.length);
  if (!isAllZero(buf, end, buf.length)) return false;
  for (let at = offset + 1; at + RECORD_HEADER_BYTES <= end; at++) {
    const length = buf.readUInt32LE(at);
    if (length === 0 || at + 8 + length > buf.length) continue;
    if (recordCrc(buf, at, at + 8 + length) === buf.readUInt32LE(at + 4)) return false;
  }
  return true;
}

type ScanStep =
  | { kind: 'end' }
  | { kind: 'record'; record: WalRecord; next: number }
  | { kind: 'bad'; reason: string; claimedEnd: number };

function scanOne(path: string, buf: Buffer, offset: number, keys: EncryptionKeys | undefined): ScanStep {
  const remaining = buf.length - offset;
  if (remaining < RECORD_HEADER_BYTES) {
    if (isAllZero(buf, offset, buf.length)) return { kind: 'end' };
    return {
      kind: 'bad',
      reason: 'short read: partial record header at end of file',
      claimedEnd: buf.length,
    };
  }
  const length = buf.readUInt32LE(offset);
  if (length === 0) {
    if (isAllZero(buf, offset, buf.length)) return { kind: 'end' };
    return { kind: 'bad', reason: 'zero record length followed by non-zero bytes', claimedEnd: offset + 8 };
  }
  const end = offset + 8 + length;
  if (end > buf.length) {
    return {
      kind: 'bad',
      reason: `short read: record of ${length} bytes runs past end of file`,
      claimedEnd: end,
    };
  }
  if (recordCrc(buf, offset, end) !== buf.readUInt32LE(offset + 4)) {
    return { kind: 'bad', reason: 'CRC mismatch', claimedEnd: end };
  }
  try {
    const where = `WAL ${path} at byte offset ${offset}`;
    return { kind: 'record', record: decodeRecord(buf, offset, end, { keys, where }), next: end };
  } catch (err) {
    // The CRC matched, so this is not a torn write: the writer produced it. Never forgivable.
    if (err instanceof DecodeError)
      throw new WalCorruptionError(path, offset, `malformed record: ${err.message}`);
    throw err;
  }
}

function checkPlacement(
  path: string,
  seq: number,
  record: WalRecord,
  offset: number,
  position: number,
): void {
  const isHeader = record.type === RecordType.SegmentHeader;
  if (position === 0 && !isHeader)
    throw new WalCorruptionError(path, offset, 'segment does not start with a header');
  if (position > 0 && isHeader)
    throw new WalCorruptionError(path, offset, 'segment header in the middle of a segment');
  if (isHeader && record.seq !== seq) {
    throw new WalCorruptionError(path, offset, `header names segment ${record.seq}, file name says ${seq}`);
  }
}
