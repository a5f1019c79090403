// Reads a bbolt database file (see format.ts) page by page with positional reads: nothing is
// mapped and only the pages on the path being walked are in memory, so a snapshot of any size can
// be read with a small, bounded footprint. Every page is checked as it is read (id, type, bounds
// of each element, key order against its neighbours and its parent) and a damaged file fails with
// a BboltFormatError naming the page, never with a crash or silently wrong data.

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { BboltFormatError } from './errors.js';
import {
  BBOLT_PAGE_BYTES_DEFAULT,
  type BboltMeta,
  BUCKET_HEADER_BYTES,
  decodeMeta,
  ELEMENT_BUCKET,
  ELEMENT_BYTES,
  FREELIST_COUNT_OVERFLOW,
  metaProblem,
  NO_FREELIST,
  PAGE_BRANCH,
  PAGE_BYTES_MAX,
  PAGE_BYTES_MIN,
  PAGE_FREELIST,
  PAGE_HEADER_BYTES,
  PAGE_LEAF,
  type PageHeader,
  readPageHeader,
  readPageId,
} from './format.js';

export interface BboltEntry {
  key: Buffer;
  value: Buffer;
  /** The value is a nested bucket's header (and inline page), not user data. */
  isBucket: boolean;
}

export interface BboltOpenOptions {
  /** Bytes at the start of the file that hold the database (a snapshot may end in a trailer). */
  dataBytes?: number;
}

/** Where a bucket's tree lives: a page of the file, or a leaf page inline in its parent's value. */
type BucketRoot = { pageId: number } | { inline: Buffer };

/** Problems check() lists before it stops looking. */
const CHECK_PROBLEMS_MAX = 100;
/** Nested buckets deeper than this are refused (bbolt itself has no limit; etcd nests one level). */
const BUCKET_DEPTH_MAX = 64;
/** A B+tree of 2^53 pages is less than 64 levels deep: a deeper one is a damaged (or made-up) chain. */
const TREE_DEPTH_MAX = 64;

interface Page {
  id: number;
  header: PageHeader;
  /** The page and its overflow pages. */
  bytes: Buffer;
}

export class BboltReader {
  private fd: number | undefined;
  readonly meta: BboltMeta;
  readonly pageBytes: number;

  private constructor(
    readonly path: string,
    fd: number,
    readonly dataBytes: number,
  ) {
    this.fd = fd;
    this.meta = this.readMeta();
    this.pageBytes = this.meta.pageBytes;
  }

  /** Opens `path` read-only; throws BboltFormatError unless it holds a usable bbolt meta page. */
  static open(path: string, options: BboltOpenOptions = {}): BboltReader {
    const fd = openSync(path, 'r');
    try {
      const fileBytes = fstatSync(fd).size;
      const dataBytes = options.dataBytes ?? fileBytes;
      if (dataBytes > fileBytes) throw new BboltFormatError(`${path}: shorter than ${dataBytes} bytes`);
      return new BboltReader(path, fd, dataBytes);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    closeSync(this.fd);
    this.fd = undefined;
  }

  /** The size bbolt reports for the database (Tx.Size): pages times page size. */
  databaseBytes(): number {
    return this.meta.pageCount * this.pageBytes;
  }

  /** Names of the buckets in the root bucket, in key order. */
  bucketNames(): Buffer[] {
    const names: Buffer[] = [];
    for (const entry of this.entries([])) if (entry.isBucket) names.push(entry.key);
    return names;
  }

  hasBucket(path: readonly Uint8Array[]): boolean {
    return this.findBucket(path) !== undefined;
  }

  /**
   * The entries of the bucket at `path` (names from the root bucket down; [] is the root), in key
   * order. A missing bucket yields nothing.
   */
  *entries(path: readonly Uint8Array[]): Generator<BboltEntry> {
    const root = this.findBucket(path);
    if (root === undefined) return;
    yield* this.walkBucket(root, bucketLabel(path), undefined);
  }

  /**
   * bbolt's consistency check (Tx.Check): every page below the high-water mark is reachable from
   * exactly one place or free, free pages are listed once and reached by nothing, tree pages are
   * branch or leaf pages, keys are in order. Returns the problems found (empty when consistent).
   */
  check(): string[] {
    const problems: string[] = [];
    const report = (problem: string): void => {
      if (problems.length < CHECK_PROBLEMS_MAX) problems.push(problem);
    };
    const freed = new Set<number>();
    const persistedFreelist = this.meta.freelistPageId !== NO_FREELIST;
    const reachable = new Set<number>([0, 1]);
    try {
      if (persistedFreelist) {
        const page = this.readPage(Number(this.meta.freelistPageId), 'freelist');
        if (page.header.flags !== PAGE_FREELIST)
          report(`page ${page.id}: freelist page has type ${page.header.flags}`);
        for (let i = 0; i <= page.header.overflow; i++) reachable.add(page.id + i);
        for (const id of freelistIds(page)) {
          if (freed.has(id)) report(`page ${id}: already freed`);
          freed.add(id);
        }
      }
      const visit = (page: Page): void => {
        for (let i = 0; i <= page.header.overflow; i++) {
          const id = page.id + i;
          if (reachable.has(id)) report(`page ${id}: multiple references`);
          reachable.add(id);
        }
        if (freed.has(page.id)) report(`page ${page.id}: reachable freed`);
      };
      this.checkBucket({ pageId: this.meta.rootPageId }, '(root)', visit, 0);
    } catch (error) {
      if (!(error instanceof BboltFormatError)) throw error;
      report(error.message);
    }
    if (persistedFreelist) {
      for (let id = 0; id < this.meta.pageCount; id++) {
        if (!reachable.has(id) && !freed.has(id)) report(`page ${id}: unreachable unfreed`);
      }
    }
    return problems;
  }

  private checkBucket(root: BucketRoot, label: string, visit: (page: Page) => void, depth: number): void {
    if (depth > BUCKET_DEPTH_MAX)
      throw new BboltFormatError(`${this.path}: buckets nested deeper than ${BUCKET_DEPTH_MAX}`);
    for (const entry of this.walkBucket(root, label, visit)) {
      if (entry.isBucket)
        this.checkBucket(
          this.openBucket(entry.value, label),
          `${label}/${printable(entry.key)}`,
          visit,
          depth + 1,
        );
    }
  }

  private findBucket(path: readonly Uint8Array[]): BucketRoot | undefined {
    let root: BucketRoot = { pageId: this.meta.rootPageId };
    for (let depth = 0; depth < path.length; depth++) {
      const name = path[depth]!;
      let found: BucketRoot | undefined;
      for (const entry of this.walkBucket(root, bucketLabel(path.slice(0, depth)), undefined)) {
        if (!entry.key.equals(name)) continue;
        if (!entry.isBucket) return undefined;
        found = this.openBucket(entry.value, bucketLabel(path.slice(0, depth + 1)));
        break;
      }
      if (found === undefined) return undefined;
      root = found;
    }
    return root;
  }

  private openBucket(value: Buffer, label: string): BucketRoot {
    if (value.length < BUCKET_HEADER_BYTES)
      throw new BboltFormatError(`${this.path}: bucket ${label} has a ${value.length}-byte header`);
    const pageId = readPageId(value, 0, `bucket ${label} root page`);
    if (pageId !== 0) return { pageId };
    const inline = value.subarray(BUCKET_HEADER_BYTES);
    if (inline.length < PAGE_HEADER_BYTES)
      throw new BboltFormatError(`${this.path}: inline bucket ${label} is truncated`);
    return { inline };
  }

  /**
   * Entries of one bucket's tree in key order; `visit` sees every page of the tree. Keys must be
   * strictly increasing and lie within the bounds the parent branch pages give them.
   */
  private *walkBucket(
    root: BucketRoot,
    label: string,
    visit: ((page: Page) => void) | undefined,
  ): Generator<BboltEntry> {
    let previous: Buffer | undefined;
    const inOrder = (key: Buffer, where: string): void => {
      if (previous !== undefined && Buffer.compare(previous, key) >= 0)
        throw new BboltFormatError(`${this.path}: bucket ${label}: keys out of order at ${where}`);
      previous = key;
    };
    if ('inline' in root) {
      const header = readPageHeader(root.inline, 0);
      if (header.flags !== PAGE_LEAF)
        throw new BboltFormatError(
          `${this.path}: inline bucket ${label} is not a leaf page (flags ${header.flags})`,
        );
      for (const entry of leafEntries(root.inline, header, `inline bucket ${label}`, this.path)) {
        inOrder(entry.key, `inline bucket ${label}`);
        yield entry;
      }
      return;
    }
    const seen = new Set<number>();
    for (const { entry, pageId } of this.walkPage(root.pageId, label, seen, visit, undefined, undefined, 0)) {
      inOrder(entry.key, `page ${pageId}`);
      yield entry;
    }
  }

  private *walkPage(
    pageId: number,
    label: string,
    seen: Set<number>,
    visit: ((page: Page) => void) | undefined,
    lowerBound: Buffer | undefined,
    upperBound: Buffer | undefined,
    depth: number,
  ): Generator<{ entry: BboltEntry; pageId: number }> {
    if (depth > TREE_DEPTH_MAX)
      throw new BboltFormatError(
        `${this.path}: bucket ${label} is more than ${TREE_DEPTH_MAX} levels deep at page ${pageId}`,
      );
    if (seen.has(pageId))
      throw new BboltFormatError(`${this.path}: page ${pageId} is referenced twice in bucket ${label}`);
    seen.add(pageId);
    const page = this.readPage(pageId, `bucket ${label}`);
    visit?.(page);
    const where = `page ${pageId} (bucket ${label})`;
    const within = (key: Buffer): void => {
      if (lowerBound !== undefined && Buffer.compare(key, lowerBound) < 0)
        throw new BboltFormatError(`${this.path}: ${where}: key below its parent's separator`);
      if (upperBound !== undefined && Buffer.compare(key, upperBound) >= 0)
        throw new BboltFormatError(`${this.path}: ${where}: key at or above the next separator`);
    };
    if (page.header.flags === PAGE_LEAF) {
      for (const entry of leafEntries(page.bytes, page.header, where, this.path)) {
        within(entry.key);
        yield { entry, pageId };
      }
      return;
    }
    if (page.header.flags !== PAGE_BRANCH)
      throw new BboltFormatError(
        `${this.path}: ${where}: expected a branch or leaf page, found flags ${page.header.flags}`,
      );
    const children = branchChildren(page.bytes, page.header, where, this.path);
    for (let i = 0; i < children.length; i++) {
      const child = children[i]!;
      within(child.key);
      const next = children[i + 1]?.key ?? upperBound;
      if (next !== undefined && Buffer.compare(child.key, next) >= 0)
        throw new BboltFormatError(`${this.path}: ${where}: separators out of order`);
      yield* this.walkPage(child.pageId, label, seen, visit, child.key, next, depth + 1);
    }
  }

  /** Reads page `id` and its overflow pages; `what` names the reader of the page for errors. */
  private readPage(id: number, what: string): Page {
    const { pageCount } = this.meta;
    if (id < 2 || id >= pageCount)
      throw new BboltFormatError(`${this.path}: ${what} points at page ${id}, outside 2..${pageCount - 1}`);
    const first = this.readBytes(id * this.pageBytes, this.pageBytes);
    const header = readPageHeader(first, 0);
    if (header.id !== id)
      throw new BboltFormatError(`${this.path}: page ${id} has id ${header.id} in its header`);
    if (header.overflow === 0) return { id, header, bytes: first };
    const span = 1 + header.overflow;
    if (id + span > pageCount)
      throw new BboltFormatError(`${this.path}: page ${id} overflows ${header.overflow} pages past the end`);
    return { id, header, bytes: this.readBytes(id * this.pageBytes, span * this.pageBytes) };
  }

  private readBytes(position: number, length: number): Buffer {
    if (this.fd === undefined) throw new Error(`${this.path}: reader is closed`);
    if (position + length > this.dataBytes)
      throw new BboltFormatError(
        `${this.path}: truncated: needs bytes up to ${position + length}, has ${this.dataBytes}`,
      );
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, position + done);
      if (n === 0) throw new BboltFormatError(`${this.path}: truncated at byte ${position + done}`);
      done += n;
    }
    return buf;
  }

  /** bbolt's choice: the valid meta page with the higher transaction id. */
  private readMeta(): BboltMeta {
    if (this.dataBytes < 2 * PAGE_BYTES_MIN)
      throw new BboltFormatError(`${this.path}: ${this.dataBytes} bytes is too small for a bbolt file`);
    const first = this.readBytes(0, Math.min(this.dataBytes, PAGE_BYTES_MAX));
    const problem0 = metaProblem(first, PAGE_HEADER_BYTES);
    // Meta page 0 gives the page size; bbolt falls back to the OS page size when it is unreadable.
    const pageBytes =
      problem0 === undefined ? decodeMeta(first, PAGE_HEADER_BYTES).pageBytes : BBOLT_PAGE_BYTES_DEFAULT;
    if (!isPageSize(pageBytes))
      throw new BboltFormatError(`${this.path}: unsupported page size ${pageBytes}`);
    const second =
      this.dataBytes >= 2 * pageBytes ? this.readBytes(pageBytes, PAGE_HEADER_BYTES + 64) : undefined;
    const problem1 = second === undefined ? 'file ends before it' : metaProblem(second, PAGE_HEADER_BYTES);
    const candidates: BboltMeta[] = [];
    if (problem0 === undefined) candidates.push(decodeMeta(first, PAGE_HEADER_BYTES));
    if (problem1 === undefined && second !== undefined)
      candidates.push(decodeMeta(second, PAGE_HEADER_BYTES));
    if (candidates.length === 0)
      throw new BboltFormatError(
        `${this.path}: invalid database (meta page 0: ${problem0}; meta page 1: ${problem1})`,
      );
    const meta = candidates.reduce((best, m) => (m.txid > best.txid ? m : best));
    if (meta.pageBytes !== pageBytes)
      throw new BboltFormatError(`${this.path}: meta pages disagree on the page size`);
    const bytes = meta.pageCount * pageBytes;
    if (meta.pageCount < 3 || bytes > this.dataBytes)
      throw new BboltFormatError(
        `${this.path}: truncated: the meta counts ${meta.pageCount} pages (${bytes} bytes), the file has ${this.dataBytes}`,
      );
    if (meta.rootPageId < 2 || meta.rootPageId >= meta.pageCount)
      throw new BboltFormatError(`${this.path}: root page ${meta.rootPageId} is outside the file`);
    if (
      meta.freelistPageId !== NO_FREELIST &&
      (meta.freelistPageId < 2n || meta.freelistPageId >= BigInt(meta.pageCount))
    )
      throw new BboltFormatError(`${this.path}: freelist page ${meta.freelistPageId} is outside the file`);
    return meta;
  }
}

function isPageSize(bytes: number): boolean {
  return bytes >= PAGE_BYTES_MIN && bytes <= PAGE_BYTES_MAX && (bytes & (bytes - 1)) === 0;
}

function leafEntries(bytes: Buffer, header: PageHeader, where: string, path: string): BboltEntry[] {
  const entries: BboltEntry[] = [];
  checkElementArea(bytes, header, where, path);
  for (let i = 0; i < header.count; i++) {
    const at = PAGE_HEADER_BYTES + i * ELEMENT_BYTES;
    const flags = bytes.readUInt32LE(at);
    const start = at + bytes.readUInt32LE(at + 4);
    const keyBytes = bytes.readUInt32LE(at + 8);
    const valueBytes = bytes.readUInt32LE(at + 12);
    const end = start + keyBytes + valueBytes;
    if (keyBytes === 0) throw new BboltFormatError(`${path}: ${where}: element ${i} has an empty key`);
    if (end > bytes.length) throw new BboltFormatError(`${path}: ${where}: element ${i} runs past the page`);
    entries.push({
      key: bytes.subarray(start, start + keyBytes),
      value: bytes.subarray(start + keyBytes, end),
      isBucket: (flags & ELEMENT_BUCKET) !== 0,
    });
  }
  return entries;
}

function branchChildren(
  bytes: Buffer,
  header: PageHeader,
  where: string,
  path: string,
): { key: Buffer; pageId: number }[] {
  const children: { key: Buffer; pageId: number }[] = [];
  checkElementArea(bytes, header, where, path);
  if (header.count === 0) throw new BboltFormatError(`${path}: ${where}: empty branch page`);
  for (let i = 0; i < header.count; i++) {
    const at = PAGE_HEADER_BYTES + i * ELEMENT_BYTES;
    const start = at + bytes.readUInt32LE(at);
    const keyBytes = bytes.readUInt32LE(at + 4);
    const pageId = readPageId(bytes, at + 8, `${where} child`);
    if (keyBytes === 0) throw new BboltFormatError(`${path}: ${where}: element ${i} has an empty key`);
    if (start + keyBytes > bytes.length)
      throw new BboltFormatError(`${path}: ${where}: element ${i} runs past the page`);
    children.push({ key: bytes.subarray(start, start + keyBytes), pageId });
  }
  return children;
}

function checkElementArea(bytes: Buffer, header: PageHeader, where: string, path: string): void {
  if (PAGE_HEADER_BYTES + header.count * ELEMENT_BYTES > bytes.length)
    throw new BboltFormatError(`${path}: ${where}: ${header.count} elements do not fit the page`);
}

function freelistIds(page: Page): number[] {
  let count = page.header.count;
  let at = PAGE_HEADER_BYTES;
  if (count === FREELIST_COUNT_OVERFLOW) {
    count = readPageId(page.bytes, at, 'freelist count');
    at += 8;
  }
  if (at + count * 8 > page.bytes.length)
    throw new BboltFormatError(`freelist page ${page.id}: ${count} ids do not fit the page`);
  const ids: number[] = [];
  for (let i = 0; i < count; i++) ids.push(readPageId(page.bytes, at + i * 8, 'free page id'));
  return ids;
}

function bucketLabel(path: readonly Uint8Array[]): string {
  return path.length === 0 ? '(root)' : path.map(printable).join('/');
}

function printable(name: Uint8Array): string {
  const text = Buffer.from(name).toString('latin1');
  return /^[\x20-\x7e]*$/.test(text) ? text : `0x${Buffer.from(name).toString('hex')}`;
}
