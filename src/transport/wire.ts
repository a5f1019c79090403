// Payloads of the control frames: handshake and snapshot stream. Message batches are in codec.ts.
//
// Hello:        protocolVersion u8 | kind u8 | from | to | clusterId (utf8 bytes)
// HelloAck:     accepted u8 | nodeId | clusterId | errorCode | reason   (strings as utf8 bytes)
// SnapshotChunk: offset | data (rest of the payload; the frame CRC covers it)
// SnapshotEnd:  totalBytes | crc32 of all data
// SnapshotAck:  ok u8 | reason

import { Reader, varUintBytes, writeVarUint } from './codec.js';
import { TransportError } from './errors.js';

export const PROTOCOL_VERSION = 2;

export enum ConnectionKind {
  /** The one long-lived connection per node pair that carries Raft message batches both ways. */
  Messages = 0,
  /** A short-lived connection that carries one snapshot, so heartbeats are never stuck behind it. */
  Snapshot = 1,
}

export interface Hello {
  protocolVersion: number;
  kind: ConnectionKind;
  from: number;
  to: number;
  clusterId: string;
}

export interface HelloAck {
  accepted: boolean;
  nodeId: number;
  clusterId: string;
  errorCode: string;
  reason: string;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function stringBytes(text: Uint8Array): number {
  return varUintBytes(text.length) + text.length;
}

function writeString(buf: Buffer, pos: number, text: Uint8Array): number {
  pos = writeVarUint(buf, pos, text.length);
  buf.set(text, pos);
  return pos + text.length;
}

function readString(r: Reader): string {
  try {
    return utf8Decoder.decode(r.bytesField());
  } catch (cause) {
    throw new TransportError('CODEC_INVALID', 'string field is not valid UTF-8', { cause });
  }
}

function expectEnd(r: Reader, what: string): void {
  if (r.remaining !== 0)
    throw new TransportError('CODEC_INVALID', `${r.remaining} trailing bytes after ${what}`);
}

export function encodeHello(hello: Hello): Buffer {
  const cluster = utf8.encode(hello.clusterId);
  const buf = Buffer.allocUnsafe(
    2 + varUintBytes(hello.from) + varUintBytes(hello.to) + stringBytes(cluster),
  );
  buf[0] = hello.protocolVersion;
  buf[1] = hello.kind;
  let pos = writeVarUint(buf, 2, hello.from);
  pos = writeVarUint(buf, pos, hello.to);
  writeString(buf, pos, cluster);
  return buf;
}

export function decodeHello(payload: Uint8Array): Hello {
  const r = new Reader(payload);
  const protocolVersion = r.u8();
  const kind = r.u8();
  if (kind !== ConnectionKind.Messages && kind !== ConnectionKind.Snapshot) {
    throw new TransportError('CODEC_INVALID', `unknown connection kind ${kind}`);
  }
  const hello = { protocolVersion, kind, from: r.varUint(), to: r.varUint(), clusterId: readString(r) };
  expectEnd(r, 'hello');
  return hello;
}

export function encodeHelloAck(ack: HelloAck): Buffer {
  const cluster = utf8.encode(ack.clusterId);
  const code = utf8.encode(ack.errorCode);
  const reason = utf8.encode(ack.reason);
  const buf = Buffer.allocUnsafe(
    1 + varUintBytes(ack.nodeId) + stringBytes(cluster) + stringBytes(code) + stringBytes(reason),
  );
  buf[0] = ack.accepted ? 1 : 0;
  let pos = writeVarUint(buf, 1, ack.nodeId);
  pos = writeString(buf, pos, cluster);
  pos = writeString(buf, pos, code);
  writeString(buf, pos, reason);
  return buf;
}

export function decodeHelloAck(payload: Uint8Array): HelloAck {
  const r = new Reader(payload);
  const accepted = r.u8() === 1;
  const ack = {
    accepted,
    nodeId: r.varUint(),
    clusterId: readString(r),
    errorCode: readString(r),
    reason: readString(r),
  };
  expectEnd(r, 'hello ack');
  return ack;
}

/** Chunk frame payload with the data copied in (one allocation per chunk frame). */
export function snapshotChunkPayloadBytes(offset: number, dataBytes: number): number {
  return varUintBytes(offset) + dataBytes;
}

export function writeSnapshotChunk(buf: Buffer, pos: number, offset: number, data: Uint8Array): number {
  pos = writeVarUint(buf, pos, offset);
  buf.set(data, pos);
  return pos + data.length;
}

export function decodeSnapshotChunk(payload: Buffer): { offset: number; data: Buffer } {
  const r = new Reader(payload);
  const offset = r.varUint();
  return { offset, data: payload.subarray(r.position) };
}

export function encodeSnapshotEnd(totalBytes: number, crc: number): Buffer {
  const buf = Buffer.allocUnsafe(varUintBytes(totalBytes) + varUintBytes(crc));
  writeVarUint(buf, writeVarUint(buf, 0, totalBytes), crc);
  return buf;
}

export function decodeSnapshotEnd(payload: Uint8Array): { totalBytes: number; crc: number } {
  const r = new Reader(payload);
  const end = { totalBytes: r.varUint(), crc: r.varUint() };
  expectEnd(r, 'snapshot end');
  return end;
}

export function encodeSnapshotAck(ok: boolean, reason: string): Buffer {
  const text = utf8.encode(reason);
  const buf = Buffer.allocUnsafe(1 + stringBytes(text));
  buf[0] = ok ? 1 : 0;
  writeString(buf, 1, text);
  return buf;
}

export function decodeSnapshotAck(payload: Uint8Array): { ok: boolean; reason: string } {
  const r = new Reader(payload);
  const ack = { ok: r.u8() === 1, reason: readString(r) };
  expectEnd(r, 'snapshot ack');
  return ack;
}
