// WAL record framing and payload encodings.
//
// Record layout (little-endian):
//   u32 length   bytes of type + payload (always >= 1, so a zero length marks the zero tail
//                of a preallocated segment: the end of the log)
//   u32 crc32    over the 4 length bytes, then the type byte and payload; covering the length
//                means a damaged length field is caught instead of mis-framing what follows
//   u8  type     RecordType
//   ... payload
//
// Payloads (u64 = little-endian, limited to safe integers):
//   SegmentHeader  u32 magic 'CWAL' | u16 version | u64 segment sequence
//   HardState      u64 group | u64 term | u64 vote | u64 commit
//   Entries        u64 group | u32 count | count x (u64 term | u64 index | u8 type | u32 len | data)
//                  indexes inside one record are consecutive
//   SnapshotMarker u64 group | u64 index | u64 term | conf state
//                  (4 x (u32 count | count x u64): voters, learners, votersOutgoing, learnersNext;
//                   then u8 autoLeave)
//   SealedEntries  an Entries payload sealed with AES-256-GCM (encryption.ts envelope: key id,
//                  nonce, ciphertext, tag; aad "concord/wal-entries"). Written instead of Entries
//                  when the member runs with --encryption-key-file; the other record types hold
//                  no user data and stay as they are.

import { crc32 } from 'node:zlib';
import type { Entry, EntryType, HardState, SnapshotMetadata } from '../raft/types.js';
import { confStateBytes, DecodeError, Reader, Writer } from './codec.js';
import { EncryptionError, type EncryptionKeys, envelopeKeyId, envelopeOverheadBytes } from './encryption.js';
import { assertNever } from './errors.js';

export const RECORD_HEADER_BYTES = 9;
export const SEGMENT_MAGIC = 0x4c415743; // 'CWAL' read as little-endian u32
export const SEGMENT_VERSION = 1;

export enum RecordType {
  SegmentHeader = 1,
  HardState = 2,
  Entries = 3,
  SnapshotMarker = 4,
  SealedEntries = 5,
}

const SEALED_ENTRIES_AAD = Buffer.from('concord/wal-entries');

export type WalRecord =
  | { type: RecordType.SegmentHeader; seq: number }
  | { type: RecordType.HardState; group: number; hardState: HardState }
  | { type: RecordType.Entries; group: number; entries: Entry[]; keyId?: string }
  | { type: RecordType.SnapshotMarker; group: number; metadata: SnapshotMetadata };

const ENTRY_FIXED_BYTES = 8 + 8 + 1 + 4;

function frame(type: RecordType, payloadBytes: number, fill: (w: Writer) => void): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payloadBytes);
  const w = new Writer(buf);
  w.position = 8;
  w.u8(type);
  fill(w);
  if (w.position !== buf.length) throw new Error(`record size mismatch for type ${type}`);
  buf.writeUInt32LE(payloadBytes + 1, 0);
  buf.writeUInt32LE(recordCrc(buf, 0, buf.length), 4);
  return buf;
}

/** CRC of the record at [start, end): its length field, then type and payload (skipping the crc). */
export function recordCrc(buf: Buffer, start: number, end: number): number {
  return crc32(buf.subarray(start + 8, end), crc32(buf.subarray(start, start + 4)));
}

export function encodeSegmentHeader(seq: number): Buffer {
  return frame(RecordType.SegmentHeader, 4 + 2 + 8, (w) => {
    w.u32(SEGMENT_MAGIC);
    w.u16(SEGMENT_VERSION);
    w.u64(seq);
  });
}

export function encodeHardState(group: number, hs: HardState): Buffer {
  return frame(RecordType.HardState, 32, (w) => {
    w.u64(group);
    w.u64(hs.term);
    w.u64(hs.vote);
    w.u64(hs.commit);
  });
}

export function entriesPayloadBytes(entries: readonly Entry[]): number {
  let bytes = 8 + 4;
  for (const e of entries) bytes += ENTRY_FIXED_BYTES + e.data.length;
  return bytes;
}

export function encodeEntries(group: number, entries: readonly Entry[], payloadBytes: number): Buffer {
  return frame(RecordType.Entries, payloadBytes, (w) => {
    w.u64(group);
    w.u32(entries.length);
    for (const e of entries) {
      w.u64(e.term);
      w.u64(e.index);
      w.u8(e.type);
      w.u32(e.data.length);
      w.bytes(e.data);
    }
  });
}

/** Payload bytes of the SealedEntries record for an Entries payload of `payloadBytes` under `keys`' active key. */
export function sealedEntriesPayloadBytes(payloadBytes: number, keys: EncryptionKeys): number {
  return payloadBytes + envelopeOverheadBytes(keys.activeKeyId());
}

export function encodeSealedEntries(
  group: number,
  entries: readonly Entry[],
  payloadBytes: number,
  keys: EncryptionKeys,
): Buffer {
  const plain = encodeEntries(group, entries, payloadBytes).subarray(RECORD_HEADER_BYTES);
  const sealed = keys.seal(plain, SEALED_ENTRIES_AAD);
  return frame(RecordType.SealedEntries, sealed.length, (w) => w.bytes(sealed));
}

export function encodeSnapshotMarker(group: number, meta: SnapshotMetadata): Buffer {
  return frame(RecordType.SnapshotMarker, 24 + confStateBytes(meta.confState), (w) => {
    w.u64(group);
    w.u64(meta.index);
    w.u64(meta.term);
    w.confState(meta.confState);
  });
}

/** What decoding a sealed record needs: the key ring (absent: the member runs without encryption). */
export interface RecordDecodeContext {
  keys?: EncryptionKeys;
  /** Names the record in errors, e.g. "<file> at byte offset <n>". */
  where: string;
}

/**
 * Decodes the payload of a record whose CRC has already been verified. Throws DecodeError, or
 * EncryptionError for a sealed record without the key it names or whose tag does not verify.
 * Entry data in the result are views of buf (or of the decrypted payload).
 */
export function decodeRecord(
  buf: Buffer,
  start: number,
  end: number,
  context: RecordDecodeContext = { where: 'WAL record' },
): WalRecord {
  const type = buf[start + 8]! as RecordType;
  if (type === RecordType.SealedEntries)
    return decodeSealedEntries(buf.subarray(start + RECORD_HEADER_BYTES, end), context);
  const r = new Reader(buf, start + RECORD_HEADER_BYTES, end);
  const record = decodePayload(type, r, start);
  r.expectEnd();
  return record;
}

function decodeSealedEntries(sealed: Buffer, context: RecordDecodeContext): WalRecord {
  if (context.keys === undefined) {
    throw new EncryptionError(
      'ENCRYPTION_KEY_MISSING',
      `${context.where}: the WAL is encrypted; start the member with --encryption-key-file`,
    );
  }
  const plain = context.keys.open(sealed, SEALED_ENTRIES_AAD, context.where);
  const r = new Reader(plain, 0, plain.length);
  const record = decodeEntries(r, 0);
  r.expectEnd();
  return { ...record, keyId: envelopeKeyId(sealed, context.where) } as WalRecord;
}

function decodePayload(type: RecordType, r: Reader, start: number): WalRecord {
  switch (type) {
    case RecordType.SegmentHeader: {
      const magic = r.u32();
      if (magic !== SEGMENT_MAGIC) throw new DecodeError('bad segment magic', start);
      const version = r.u16();
      if (version !== SEGMENT_VERSION) throw new DecodeError(`unsupported segment version ${version}`, start);
      return { type, seq: r.u64() };
    }
    case RecordType.HardState: {
      const group = r.u64();
      return { type, group, hardState: { term: r.u64(), vote: r.u64(), commit: r.u64() } };
    }
    case RecordType.Entries:
      return decodeEntries(r, start);
    case RecordType.SnapshotMarker: {
      const group = r.u64();
      const index = r.u64();
      const term = r.u64();
      return { type, group, metadata: { index, term, confState: r.confState() } };
    }
    case RecordType.SealedEntries:
      throw new DecodeError('sealed entries decoded as plain', start + 8);
    default:
      throw new DecodeError(`unknown record type ${type as number}`, start + 8);
  }
}

function decodeEntries(r: Reader, start: number): WalRecord {
  const group = r.u64();
  const count = r.u32();
  if (count === 0) throw new DecodeError('entries record with no entries', start);
  const entries: Entry[] = [];
  // Entry data are views of the segment's read buffer: recovery copies only the entries that
  // survive the replay (see GroupReplay.detachFrom); most are inside a snapshot and dropped.
  for (let i = 0; i < count; i++) {
    const term = r.u64();
    const index = r.u64();
    const type = r.u8();
    if (type > 1) throw new DecodeError(`unknown entry type ${type}`, r.position - 1);
    const data = r.view(r.u32());
    if (i > 0 && index !== entries[i - 1]!.index + 1) {
      throw new DecodeError('entry indexes in one record are not consecutive', start);
    }
    entries.push({ term, index, type: type as EntryType, data });
  }
  return { type: RecordType.Entries, group, entries };
}

export function recordTypeName(type: RecordType): string {
  switch (type) {
    case RecordType.SegmentHeader:
      return 'segment-header';
    case RecordType.HardState:
      return 'hard-state';
    case RecordType.Entries:
      return 'entries';
    case RecordType.SnapshotMarker:
      return 'snapshot-marker';
    case RecordType.SealedEntries:
      return 'sealed-entries';
    default:
      return assertNever(type);
  }
}
