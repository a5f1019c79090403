// Binary encodings of the keyspace's LMDB records. Fixed layouts, no JSON on the hot path.
//
// LMDB layout (one environment, named sub-databases, binary keys and values):
//   revs      revKey(main u64be, sub u32be)            → record (below). Every change, tombstones
//                                                         included: the history that watch catch-up,
//                                                         hashKV and compaction walk in revision order.
//   history   escape(userKey) ‖ revKey                  → 1 byte kind (0 put, 1 tombstone). Key-major
//                                                         index for reads at an old revision.
//   live      userKey                                   → liveRecord: where the current version lives
//                                                         plus its metadata (tombstoned keys absent),
//                                                         so current reads and compares skip history.
//   leases    leaseKey(id i64 sign-flipped be)          → ttlSeconds f64 ‖ remainingTtlSeconds f64
//   leaseKeys leaseKey(id) ‖ userKey                    → empty: which keys a revoke must delete
//   meta      ascii name                                → u64 (appliedIndex, currentRevision,
//                                                         compactRevision, formatVersion)
//
// record: kind u8 | createRevision u64 | version u64 | lease i64 | keyLength u32 | key | value
// liveRecord: main u64 | sub u32 | createRevision u64 | version u64 | lease i64
//
// escape() maps 0x00 → 0x00 0xFF and appends 0x00 0x01, which keeps byte order between different
// user keys even though they are followed by a revision.

export const KIND_PUT = 0;
export const KIND_TOMBSTONE = 1;

export const REV_KEY_BYTES = 12;
export const RECORD_HEADER_BYTES = 29;
export const LIVE_RECORD_BYTES = 36;

const TWO_32 = 2 ** 32;

export function writeU64(buf: Buffer, offset: number, value: number): void {
  buf.writeUInt32BE(Math.floor(value / TWO_32), offset);
  buf.writeUInt32BE(value >>> 0, offset + 4);
}

export function readU64(buf: Uint8Array, offset: number): number {
  const b = buf as Buffer;
  return b.readUInt32BE(offset) * TWO_32 + b.readUInt32BE(offset + 4);
}

export interface Rev {
  main: number;
  sub: number;
}

export function encodeRevKey(main: number, sub: number): Buffer {
  const buf = Buffer.allocUnsafe(REV_KEY_BYTES);
  writeU64(buf, 0, main);
  buf.writeUInt32BE(sub, 8);
  return buf;
}

export function decodeRevKey(buf: Uint8Array, offset = 0): Rev {
  return { main: readU64(buf, offset), sub: (buf as Buffer).readUInt32BE(offset + 8) };
}

export function escapedLength(key: Uint8Array): number {
  let n = key.length + 2;
  for (let i = 0; i < key.length; i++) if (key[i] === 0) n++;
  return n;
}

function writeEscaped(target: Buffer, key: Uint8Array): number {
  let o = 0;
  for (let i = 0; i < key.length; i++) {
    const b = key[i]!;
    target[o++] = b;
    if (b === 0) target[o++] = 0xff;
  }
  target[o++] = 0;
  target[o++] = 1;
  return o;
}

/** history-db key for (userKey, main, sub). */
export function encodeHistoryKey(key: Uint8Array, main: number, sub: number): Buffer {
  const buf = Buffer.allocUnsafe(escapedLength(key) + REV_KEY_BYTES);
  const o = writeEscaped(buf, key);
  writeU64(buf, o, main);
  buf.writeUInt32BE(sub, o + 8);
  return buf;
}

/** The escaped prefix alone: every history entry of `key` sorts in [prefix, prefix ‖ 0xff…). */
export function encodeHistoryPrefix(key: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(escapedLength(key));
  writeEscaped(buf, key);
  return buf;
}

/** Splits a history-db key into the user key and its revision. */
export function decodeHistoryKey(buf: Uint8Array): { key: Buffer; main: number; sub: number } {
  const end = buf.length - REV_KEY_BYTES;
  const out = Buffer.allocUnsafe(end);
  let o = 0;
  for (let i = 0; i < end - 2; i++) {
    const b = buf[i]!;
    out[o++] = b;
    if (b === 0) i++;
  }
  const { main, sub } = decodeRevKey(buf, end);
  return { key: out.subarray(0, o), main, sub };
}

export interface StoredRecord {
  kind: number;
  key: Buffer;
  createRevision: number;
  version: number;
  lease: bigint;
  value: Buffer;
}

export function encodeRecord(
  kind: number,
  key: Uint8Array,
  createRevision: number,
  version: number,
  lease: bigint,
  value: Uint8Array,
): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_HEADER_BYTES + key.length + value.length);
  buf[0] = kind;
  writeU64(buf, 1, createRevision);
  writeU64(buf, 9, version);
  buf.writeBigInt64BE(lease, 17);
  buf.writeUInt32BE(key.length, 25);
  buf.set(key, RECORD_HEADER_BYTES);
  buf.set(value, RECORD_HEADER_BYTES + key.length);
  return buf;
}

export function decodeRecord(buf: Buffer): StoredRecord {
  const keyLength = buf.readUInt32BE(25);
  return {
    kind: buf[0]!,
    createRevision: readU64(buf, 1),
    version: readU64(buf, 9),
    lease: buf.readBigInt64BE(17),
    key: buf.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + keyLength),
    value: buf.subarray(RECORD_HEADER_BYTES + keyLength),
  };
}

export interface LiveEntry {
  main: number;
  sub: number;
  createRevision: number;
  version: number;
  lease: bigint;
}

export function encodeLive(e: LiveEntry): Buffer {
  const buf = Buffer.allocUnsafe(LIVE_RECORD_BYTES);
  writeU64(buf, 0, e.main);
  buf.writeUInt32BE(e.sub, 8);
  writeU64(buf, 12, e.createRevision);
  writeU64(buf, 20, e.version);
  buf.writeBigInt64BE(e.lease, 28);
  return buf;
}

export function decodeLive(buf: Buffer): LiveEntry {
  return {
    main: readU64(buf, 0),
    sub: buf.readUInt32BE(8),
    createRevision: readU64(buf, 12),
    version: readU64(buf, 20),
    lease: buf.readBigInt64BE(28),
  };
}

/** Lease IDs are signed; flipping the sign bit makes their big-endian bytes sort numerically. */
export function encodeLeaseKey(id: bigint, suffix?: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(8 + (suffix?.length ?? 0));
  buf.writeBigUInt64BE(BigInt.asUintN(64, id) ^ (1n << 63n), 0);
  if (suffix) buf.set(suffix, 8);
  return buf;
}

export function decodeLeaseKey(buf: Uint8Array): bigint {
  return BigInt.asIntN(64, (buf as Buffer).readBigUInt64BE(0) ^ (1n << 63n));
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/** The smallest key strictly greater than every key that starts with `key` (etcd's prefix end). */
export function prefixEnd(key: Uint8Array): Uint8Array {
  const end = Uint8Array.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return new Uint8Array([0]);
}
