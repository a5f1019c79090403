// The bbolt file format (go.etcd.io/bbolt, the B+tree file etcd keeps its backend in), as far as
// a reader and a writer of whole files need it. Everything is little-endian (bbolt writes its
// structs in the machine's byte order; every platform etcd ships for is little-endian).
//
// A file is a sequence of pages of one size (the size is recorded in the meta pages):
//   page 0, page 1   meta pages: magic, version, page size, the root bucket, the freelist page,
//                    the page count (high-water mark), the transaction id and an FNV-64a checksum.
//                    A reader uses the valid one with the higher transaction id.
//   freelist page    the ids of free pages (or none: freelist id all ones = not persisted, every
//                    page no tree reaches is free).
//   branch page      elements {pos u32, ksize u32, child page id u64}, then the keys; each key is
//                    the first key of its child.
//   leaf page        elements {flags u32, pos u32, ksize u32, vsize u32}, then keys and values;
//                    flag 1 marks a value that is a nested bucket.
// `pos` counts from the element's own first byte. A page whose content is larger than one page
// continues on the `overflow` pages that follow it.
//
// A bucket value is {root page id u64, sequence u64}; root 0 means an inline bucket, whose single
// leaf page (header included) follows the 16 bytes inside the value itself.

import { BboltFormatError } from './errors.js';

export const BBOLT_MAGIC = 0xed0cdaed;
export const BBOLT_VERSION = 2;
/** What bbolt uses on every platform etcd runs on (the OS page size). */
export const BBOLT_PAGE_BYTES_DEFAULT = 4096;
export const PAGE_HEADER_BYTES = 16;
export const ELEMENT_BYTES = 16;
export const META_BYTES = 64;
export const BUCKET_HEADER_BYTES = 16;
/** Bytes of the meta covered by its checksum: every field before the checksum itself. */
const META_CHECKSUM_OFFSET = 56;

export const PAGE_BRANCH = 0x01;
export const PAGE_LEAF = 0x02;
export const PAGE_META = 0x04;
export const PAGE_FREELIST = 0x10;
export const ELEMENT_BUCKET = 0x01;

/** Freelist page id meaning "the freelist is not stored in the file". */
export const NO_FREELIST = 0xffff_ffff_ffff_ffffn;
/** A freelist page's count field holds this when the real count sits in the first u64. */
export const FREELIST_COUNT_OVERFLOW = 0xffff;
/** bbolt stores a bucket inline in its parent while its leaf is at most a quarter page. */
export const INLINE_BUCKET_FRACTION = 4;
/** bbolt refuses longer keys (MaxKeySize). */
export const KEY_BYTES_MAX = 32768;
/** Page sizes a reader accepts: what any OS page size bbolt could have used. */
export const PAGE_BYTES_MIN = 512;
export const PAGE_BYTES_MAX = 64 * 1024;

export interface PageHeader {
  id: number;
  flags: number;
  count: number;
  overflow: number;
}

export interface BboltMeta {
  magic: number;
  version: number;
  pageBytes: number;
  flags: number;
  rootPageId: number;
  rootSequence: bigint;
  /** NO_FREELIST when the freelist is not persisted. */
  freelistPageId: bigint;
  /** Pages in the file: every page id is below this. */
  pageCount: number;
  txid: bigint;
  checksum: bigint;
}

export function readPageHeader(buf: Buffer, offset: number): PageHeader {
  return {
    id: readPageId(buf, offset, 'page id'),
    flags: buf.readUInt16LE(offset + 8),
    count: buf.readUInt16LE(offset + 10),
    overflow: buf.readUInt32LE(offset + 12),
  };
}

export function writePageHeader(buf: Buffer, offset: number, header: PageHeader): void {
  buf.writeBigUInt64LE(BigInt(header.id), offset);
  buf.writeUInt16LE(header.flags, offset + 8);
  buf.writeUInt16LE(header.count, offset + 10);
  buf.writeUInt32LE(header.overflow, offset + 12);
}

/** A u64 page id as a number; ids past 2^53 cannot occur in a file that fits on a disk. */
export function readPageId(buf: Buffer, offset: number, what: string): number {
  const id = buf.readBigUInt64LE(offset);
  if (id > BigInt(Number.MAX_SAFE_INTEGER)) throw new BboltFormatError(`${what} ${id} is out of range`);
  return Number(id);
}

/** FNV-1a, 64 bits: bbolt's meta checksum. */
export function fnv64a(bytes: Uint8Array): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of bytes) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffff_ffff_ffff_ffffn;
  }
  return hash;
}

/** Decodes the meta that starts `offset` bytes into `buf` (after a page header). */
export function decodeMeta(buf: Buffer, offset: number): BboltMeta {
  return {
    magic: buf.readUInt32LE(offset),
    version: buf.readUInt32LE(offset + 4),
    pageBytes: buf.readUInt32LE(offset + 8),
    flags: buf.readUInt32LE(offset + 12),
    rootPageId: readPageId(buf, offset + 16, 'root page id'),
    rootSequence: buf.readBigUInt64LE(offset + 24),
    freelistPageId: buf.readBigUInt64LE(offset + 32),
    pageCount: readPageId(buf, offset + 40, 'page count'),
    txid: buf.readBigUInt64LE(offset + 48),
    checksum: buf.readBigUInt64LE(offset + 56),
  };
}

/** Why a meta cannot be used, or undefined when it can (bbolt's meta.validate, same order). */
export function metaProblem(buf: Buffer, offset: number): string | undefined {
  const magic = buf.readUInt32LE(offset);
  if (magic !== BBOLT_MAGIC) return `bad magic 0x${magic.toString(16)} (not a bbolt file)`;
  const version = buf.readUInt32LE(offset + 4);
  if (version !== BBOLT_VERSION) return `unsupported version ${version}`;
  const sum = fnv64a(buf.subarray(offset, offset + META_CHECKSUM_OFFSET));
  if (sum !== buf.readBigUInt64LE(offset + META_CHECKSUM_OFFSET)) return 'checksum mismatch';
  return undefined;
}

/** Writes a meta (checksum computed here) `offset` bytes into `buf`. */
export function encodeMeta(
  buf: Buffer,
  offset: number,
  meta: Omit<BboltMeta, 'magic' | 'version' | 'checksum'>,
): void {
  buf.writeUInt32LE(BBOLT_MAGIC, offset);
  buf.writeUInt32LE(BBOLT_VERSION, offset + 4);
  buf.writeUInt32LE(meta.pageBytes, offset + 8);
  buf.writeUInt32LE(meta.flags, offset + 12);
  buf.writeBigUInt64LE(BigInt(meta.rootPageId), offset + 16);
  buf.writeBigUInt64LE(meta.rootSequence, offset + 24);
  buf.writeBigUInt64LE(meta.freelistPageId, offset + 32);
  buf.writeBigUInt64LE(BigInt(meta.pageCount), offset + 40);
  buf.writeBigUInt64LE(meta.txid, offset + 48);
  buf.writeBigUInt64LE(fnv64a(buf.subarray(offset, offset + META_CHECKSUM_OFFSET)), offset + 56);
}

/** Bytes a leaf needs for these entries: header, one element each, keys and values. */
export function leafBytes(entryCount: number, keyValueBytes: number): number {
  return PAGE_HEADER_BYTES + entryCount * ELEMENT_BYTES + keyValueBytes;
}
