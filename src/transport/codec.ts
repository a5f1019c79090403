// Binary codec for Raft messages (codec version 2, see src/transport/README.md).
//
// Two passes per batch: size every message, allocate once, write in place. Integers are unsigned
// LEB128 varints capped at 8 bytes (56 bits ≥ Number.MAX_SAFE_INTEGER), so small terms/indexes
// cost 1-4 bytes. Byte strings are varint length + raw bytes. Decoded byte fields are views into
// the frame payload (no copy per entry); the frame decoder hands out owned payload buffers.
//
// Message:     type u8 | flags u8 (bit0 reject, bit1 snapshot) | to | from | term | logTerm |
//              index | commit | rejectHint | context bytes | entryCount | entries... | [snapshot]
// Entry:       term | index | type u8 | data bytes
// Snapshot:    index | term | voters | learners | votersOutgoing | learnersNext (each: count ids...)
//              | autoLeave u8 | data bytes
// Batch:       codecVersion u8 | messageCount | (groupId | message)...
//
// Every message carries the id of the Raft group it belongs to, so one connection per node pair
// carries the messages of every group the two nodes share; a group id costs one byte below 128.

import {
  type ConfState,
  EMPTY_BYTES,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  type Snapshot,
} from '../raft/types.js';
import { TransportError } from './errors.js';
import type { GroupId } from './transport.js';

export const CODEC_VERSION = 2;

/** One message on the wire: the Raft message and the group it belongs to. */
export interface GroupMessage {
  group: GroupId;
  message: Message;
}

const FLAG_REJECT = 1;
const FLAG_SNAPSHOT = 2;
/** 8 varint bytes carry 56 bits, enough for any safe integer; more is a corrupt or hostile frame. */
const VARINT_BYTES_MAX = 8;
const MESSAGE_TYPE_MAX = MessageType.CheckQuorum;

export function varUintBytes(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new TransportError('CODEC_INVALID', `cannot encode ${value}: not a non-negative safe integer`);
  }
  let bytes = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    bytes++;
  }
  return bytes;
}

export function writeVarUint(buf: Uint8Array, pos: number, value: number): number {
  while (value >= 0x80) {
    buf[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buf[pos++] = value;
  return pos;
}

function bytesFieldBytes(data: Uint8Array): number {
  return varUintBytes(data.length) + data.length;
}

function writeBytesField(buf: Uint8Array, pos: number, data: Uint8Array): number {
  pos = writeVarUint(buf, pos, data.length);
  buf.set(data, pos);
  return pos + data.length;
}

function idListBytes(ids: readonly number[]): number {
  let bytes = varUintBytes(ids.length);
  for (const id of ids) bytes += varUintBytes(id);
  return bytes;
}

function writeIdList(buf: Uint8Array, pos: number, ids: readonly number[]): number {
  pos = writeVarUint(buf, pos, ids.length);
  for (const id of ids) pos = writeVarUint(buf, pos, id);
  return pos;
}

function entryBytes(entry: Entry): number {
  return varUintBytes(entry.term) + varUintBytes(entry.index) + 1 + bytesFieldBytes(entry.data);
}

function confStateBytes(cs: ConfState): number {
  return (
    idListBytes(cs.voters) +
    idListBytes(cs.learners) +
    idListBytes(cs.votersOutgoing) +
    idListBytes(cs.learnersNext) +
    1
  );
}

function snapshotBytes(snapshot: Snapshot): number {
  const md = snapshot.metadata;
  return (
    varUintBytes(md.index) +
    varUintBytes(md.term) +
    confStateBytes(md.confState) +
    bytesFieldBytes(snapshot.data)
  );
}

/** Exact encoded size of one message; throws CODEC_INVALID on fields that cannot be encoded. */
export function messageBytes(m: Message): number {
  let bytes =
    2 +
    varUintBytes(m.to) +
    varUintBytes(m.from) +
    varUintBytes(m.term) +
    varUintBytes(m.logTerm) +
    varUintBytes(m.index) +
    varUintBytes(m.commit) +
    varUintBytes(m.rejectHint) +
    bytesFieldBytes(m.context) +
    varUintBytes(m.entries.length);
  for (const entry of m.entries) bytes += entryBytes(entry);
  if (m.snapshot !== undefined) bytes += snapshotBytes(m.snapshot);
  return bytes;
}

function writeSnapshot(buf: Uint8Array, pos: number, snapshot: Snapshot): number {
  const md = snapshot.metadata;
  pos = writeVarUint(buf, pos, md.index);
  pos = writeVarUint(buf, pos, md.term);
  pos = writeIdList(buf, pos, md.confState.voters);
  pos = writeIdList(buf, pos, md.confState.learners);
  pos = writeIdList(buf, pos, md.confState.votersOutgoing);
  pos = writeIdList(buf, pos, md.confState.learnersNext);
  buf[pos++] = md.confState.autoLeave ? 1 : 0;
  return writeBytesField(buf, pos, snapshot.data);
}

/** Writes one message at `pos` and returns the position after it. The caller sized the buffer. */
export function writeMessage(buf: Uint8Array, pos: number, m: Message): number {
  if (!Number.isInteger(m.type) || m.type < 0 || m.type > MESSAGE_TYPE_MAX) {
    throw new TransportError('CODEC_INVALID', `cannot encode message type ${m.type}`);
  }
  buf[pos++] = m.type;
  buf[pos++] = (m.reject ? FLAG_REJECT : 0) | (m.snapshot !== undefined ? FLAG_SNAPSHOT : 0);
  pos = writeVarUint(buf, pos, m.to);
  pos = writeVarUint(buf, pos, m.from);
  pos = writeVarUint(buf, pos, m.term);
  pos = writeVarUint(buf, pos, m.logTerm);
  pos = writeVarUint(buf, pos, m.index);
  pos = writeVarUint(buf, pos, m.commit);
  pos = writeVarUint(buf, pos, m.rejectHint);
  pos = writeBytesField(buf, pos, m.context);
  pos = writeVarUint(buf, pos, m.entries.length);
  for (const entry of m.entries) {
    pos = writeVarUint(buf, pos, entry.term);
    pos = writeVarUint(buf, pos, entry.index);
    buf[pos++] = entry.type;
    pos = writeBytesField(buf, pos, entry.data);
  }
  if (m.snapshot !== undefined) pos = writeSnapshot(buf, pos, m.snapshot);
  return pos;
}

/** Exact encoded size of one message with its group id. */
export function groupMessageBytes(item: GroupMessage): number {
  return varUintBytes(item.group) + messageBytes(item.message);
}

/** Size of a batch payload holding items whose individual sizes (groupMessageBytes) are given. */
export function batchBytes(itemSizes: readonly number[], from = 0, to = itemSizes.length): number {
  let bytes = 1 + varUintBytes(to - from);
  for (let i = from; i < to; i++) bytes += itemSizes[i]!;
  return bytes;
}

export function writeBatch(
  buf: Uint8Array,
  pos: number,
  items: readonly GroupMessage[],
  from = 0,
  to = items.length,
): number {
  buf[pos++] = CODEC_VERSION;
  pos = writeVarUint(buf, pos, to - from);
  for (let i = from; i < to; i++) {
    const item = items[i]!;
    pos = writeVarUint(buf, pos, item.group);
    pos = writeMessage(buf, pos, item.message);
  }
  return pos;
}

/** Encodes a batch payload into a fresh buffer (one allocation). */
export function encodeBatch(items: readonly GroupMessage[]): Buffer {
  const sizes = items.map(groupMessageBytes);
  const buf = Buffer.allocUnsafe(batchBytes(sizes));
  const end = writeBatch(buf, 0, items);
  if (end !== buf.length) throw new Error(`codec size mismatch: wrote ${end} of ${buf.length} bytes`);
  return buf;
}

/** Sequential reader over one payload; every read is bounds-checked. */
export class Reader {
  private pos: number;
  constructor(
    private readonly buf: Uint8Array,
    start = 0,
    private readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get position(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  u8(): number {
    if (this.pos >= this.end) throw truncated();
    return this.buf[this.pos++]!;
  }

  varUint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < VARINT_BYTES_MAX; i++) {
      const byte = this.u8();
      value += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) {
        if (!Number.isSafeInteger(value)) throw new TransportError('CODEC_INVALID', 'varint exceeds 2^53-1');
        return value;
      }
      scale *= 0x80;
    }
    throw new TransportError('CODEC_INVALID', `varint longer than ${VARINT_BYTES_MAX} bytes`);
  }

  /** A view (no copy) of the next `length` bytes. */
  bytes(length: number): Uint8Array {
    if (length > this.end - this.pos) throw truncated();
    if (length === 0) return EMPTY_BYTES;
    const view = new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.pos, length);
    this.pos += length;
    return view;
  }

  bytesField(): Uint8Array {
    return this.bytes(this.varUint());
  }

  /** A count of items that each take at least `itemBytesMin` bytes: bounded by what is left. */
  count(itemBytesMin: number): number {
    const n = this.varUint();
    if (n * itemBytesMin > this.remaining) throw truncated();
    return n;
  }
}

function truncated(): TransportError {
  return new TransportError('CODEC_INVALID', 'truncated or corrupt payload');
}

function readIdList(r: Reader): number[] {
  const n = r.count(1);
  const ids = new Array<number>(n);
  for (let i = 0; i < n; i++) ids[i] = r.varUint();
  return ids;
}

function readEntry(r: Reader): Entry {
  const term = r.varUint();
  const index = r.varUint();
  const type = r.u8();
  if (type !== EntryType.Normal && type !== EntryType.ConfChange) {
    throw new TransportError('CODEC_INVALID', `unknown entry type ${type}`);
  }
  return { term, index, type, data: r.bytesField() };
}

function readSnapshot(r: Reader): Snapshot {
  const index = r.varUint();
  const term = r.varUint();
  const voters = readIdList(r);
  const learners = readIdList(r);
  const votersOutgoing = readIdList(r);
  const learnersNext = readIdList(r);
  const autoLeave = r.u8();
  if (autoLeave > 1) throw new TransportError('CODEC_INVALID', `bad autoLeave byte ${autoLeave}`);
  const confState: ConfState = { voters, learners, votersOutgoing, learnersNext, autoLeave: autoLeave === 1 };
  return { metadata: { index, term, confState }, data: r.bytesField() };
}

export function readMessage(r: Reader): Message {
  const type = r.u8();
  if (type > MESSAGE_TYPE_MAX) throw new TransportError('CODEC_INVALID', `unknown message type ${type}`);
  const flags = r.u8();
  if (flags & ~(FLAG_REJECT | FLAG_SNAPSHOT)) throw new TransportError('CODEC_INVALID', `bad flags ${flags}`);
  const m: Message = {
    type: type as MessageType,
    to: r.varUint(),
    from: r.varUint(),
    term: r.varUint(),
    logTerm: r.varUint(),
    index: r.varUint(),
    commit: r.varUint(),
    reject: (flags & FLAG_REJECT) !== 0,
    rejectHint: r.varUint(),
    context: r.bytesField(),
    entries: [],
  };
  // Smallest entry: term, index, type, data length: 4 bytes.
  const entryCount = r.count(4);
  for (let i = 0; i < entryCount; i++) m.entries.push(readEntry(r));
  if (flags & FLAG_SNAPSHOT) m.snapshot = readSnapshot(r);
  return m;
}

/** Decodes a batch payload; the whole payload must be consumed exactly. */
export function decodeBatch(payload: Uint8Array): GroupMessage[] {
  const r = new Reader(payload);
  const version = r.u8();
  if (version !== CODEC_VERSION) {
    throw new TransportError(
      'CODEC_VERSION',
      `unsupported codec version ${version} (this node speaks ${CODEC_VERSION})`,
    );
  }
  // Smallest item: group id, then type, flags, 7 varints, context length, entry count: 12 bytes.
  const n = r.count(12);
  const items = new Array<GroupMessage>(n);
  for (let i = 0; i < n; i++) {
    const group = r.varUint();
    items[i] = { group, message: readMessage(r) };
  }
  if (r.remaining !== 0)
    throw new TransportError('CODEC_INVALID', `${r.remaining} trailing bytes after batch`);
  return items;
}
