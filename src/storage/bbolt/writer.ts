// Writes a bbolt database file (see format.ts) as a stream, from buckets whose entries come in key
// order, without holding the file in memory.
//
// The meta pages come first in the file but name the root bucket's page and the page count, which
// depend on everything else. So the writer makes two passes over the entries: the first (plan())
// only measures them and decides the shape of every tree (which entries share a leaf, how many
// pages each leaf spans, the branch levels above); the second (chunks()) writes the pages in page
// id order. What the plan keeps is one small record per page (its entry count, page span and
// first key) plus the entries of buckets small enough to be stored inline, so memory grows with
// the number of pages, not with the data. A source must yield the same entries in both passes
// (a read transaction of the store being copied); the second pass checks that it did.
//
// Layout: pages 0 and 1 meta, page 2 an empty freelist, then the root bucket's tree, then each
// non-inline bucket's tree (leaves in key order, then each branch level). Leaves are filled up to
// a whole page; an entry larger than a page gets a leaf of its own that spans overflow pages. A
// bucket whose leaf fits in a quarter page is stored inline in the root bucket, as bbolt does.

import { setImmediate as nextTurn } from 'node:timers/promises';
import { BboltWriteError } from './errors.js';
import {
  BBOLT_PAGE_BYTES_DEFAULT,
  BUCKET_HEADER_BYTES,
  ELEMENT_BUCKET,
  ELEMENT_BYTES,
  encodeMeta,
  INLINE_BUCKET_FRACTION,
  KEY_BYTES_MAX,
  PAGE_BRANCH,
  PAGE_BYTES_MAX,
  PAGE_BYTES_MIN,
  PAGE_FREELIST,
  PAGE_HEADER_BYTES,
  PAGE_LEAF,
  PAGE_META,
  writePageHeader,
} from './format.js';

export interface BboltSourceEntry {
  key: Uint8Array;
  value: Uint8Array;
}

export interface BboltBucketSource {
  name: Uint8Array;
  /**
   * The bucket's entries in strictly increasing key order. Called once per pass (plan, then
   * write); both calls must yield the same entries.
   */
  entries(): Iterable<BboltSourceEntry>;
}

export interface BboltWriteOptions {
  pageBytes?: number;
  /** Entries measured between yields to the event loop (planning pass). */
  entriesPerTurnMax?: number;
  /** Pages written between yields to the event loop (writing pass). */
  pagesPerTurnMax?: number;
  /** Size of the chunks chunks() yields (the last may be shorter). */
  chunkBytesMax?: number;
  /** Transaction id of meta page 0 (meta page 1 gets one less, as bbolt's Tx.WriteTo does). */
  txid?: bigint;
}

const ENTRIES_PER_TURN_MAX_DEFAULT = 4096;
const PAGES_PER_TURN_MAX_DEFAULT = 256;
const CHUNK_BYTES_MAX_DEFAULT = 64 * 1024;
const TXID_DEFAULT = 2n;
const FIRST_TREE_PAGE_ID = 3;
const FREELIST_PAGE_ID = 2;

/**
 * One level of a tree as planned: for each page, how many entries (or children) it holds, how
 * many pages it spans and its first key. Kept in flat arrays and one key buffer: 40-100 bytes per
 * 4 KiB page with etcd's keys, 1-2.5 % of the file (bbolt/bench.ts).
 */
class Level {
  readonly counts: number[] = [];
  readonly spans: number[] = [];
  private readonly keyEnds: number[] = [];
  private keys = Buffer.allocUnsafeSlow(1024);
  private keyBytes = 0;

  get length(): number {
    return this.counts.length;
  }

  push(firstKey: Uint8Array, count: number, span: number): void {
    if (this.keyBytes + firstKey.length > this.keys.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(2 * this.keys.length, this.keyBytes + firstKey.length));
      this.keys.copy(grown, 0, 0, this.keyBytes);
      this.keys = grown;
    }
    this.keys.set(firstKey, this.keyBytes);
    this.keyBytes += firstKey.length;
    this.keyEnds.push(this.keyBytes);
    this.counts.push(count);
    this.spans.push(span);
  }

  /** The first key of page `i` (a view: use it before the next push). */
  firstKey(i: number): Buffer {
    return this.keys.subarray(i === 0 ? 0 : this.keyEnds[i - 1]!, this.keyEnds[i]!);
  }

  pageCount(): number {
    let pages = 0;
    for (const span of this.spans) pages += span;
    return pages;
  }
}

interface TreePlan {
  /** levels[0] are the leaves; the last level is the single root page. */
  levels: Level[];
  firstPageId: number;
}

interface BucketPlan {
  source: BboltBucketSource;
  name: Buffer;
  /** The bucket's value in the root bucket when it is stored inline. */
  inlineValue: Buffer | undefined;
  tree: TreePlan | undefined;
  entryCount: number;
}

/** Groups a stream of element sizes into pages. */
class PagePacker {
  readonly level = new Level();
  private firstKey: Buffer | undefined;
  private count = 0;
  private bytes = PAGE_HEADER_BYTES;

  constructor(private readonly pageBytes: number) {}

  add(key: Uint8Array, elementBytes: number): void {
    if (this.count > 0 && this.bytes + elementBytes > this.pageBytes) this.close();
    if (this.count === 0) this.firstKey = Buffer.from(key);
    this.count++;
    this.bytes += elementBytes;
  }

  finish(): Level {
    if (this.count > 0) this.close();
    return this.level;
  }

  private close(): void {
    this.level.push(this.firstKey!, this.count, Math.ceil(this.bytes / this.pageBytes));
    this.count = 0;
    this.bytes = PAGE_HEADER_BYTES;
  }
}

/** Adds the branch levels above `leaves` until one page remains. */
function planTree(leaves: Level, pageBytes: number): Level[] {
  const levels = [leaves];
  let level = leaves;
  while (level.length > 1) {
    const packer = new PagePacker(pageBytes);
    for (let i = 0; i < level.length; i++) {
      const key = level.firstKey(i);
      packer.add(key, ELEMENT_BYTES + key.length);
    }
    level = packer.finish();
    levels.push(level);
  }
  return levels;
}

function treePageCount(levels: Level[]): number {
  let pages = 0;
  for (const level of levels) pages += level.pageCount();
  return pages;
}

/** Page ids of the pages of `levels[index]` (a tree is written level by level, leaves first). */
function levelPageIds(tree: TreePlan, index: number): number[] {
  let next = tree.firstPageId;
  for (let i = 0; i < index; i++) next += tree.levels[i]!.pageCount();
  return tree.levels[index]!.spans.map((span) => {
    const id = next;
    next += span;
    return id;
  });
}

function rootPageIdOf(tree: TreePlan): number {
  return levelPageIds(tree, tree.levels.length - 1)[0]!;
}

/**
 * Lays out elements (leaf: key/value pairs with flags; branch: keys with child page ids) on a page
 * of `span` pages. Unused bytes are zero.
 */
function leafPage(id: number, span: number, pageBytes: number, entries: readonly LeafElement[]): Buffer {
  const page = Buffer.alloc(span * pageBytes);
  writeLeafElements(page, 0, entries);
  writePageHeader(page, 0, { id, flags: PAGE_LEAF, count: entries.length, overflow: span - 1 });
  return page;
}

interface LeafElement {
  key: Uint8Array;
  value: Uint8Array;
  flags: number;
}

function writeLeafElements(page: Buffer, base: number, entries: readonly LeafElement[]): void {
  let data = base + PAGE_HEADER_BYTES + entries.length * ELEMENT_BYTES;
  entries.forEach((entry, i) => {
    const at = base + PAGE_HEADER_BYTES + i * ELEMENT_BYTES;
    page.writeUInt32LE(entry.flags, at);
    page.writeUInt32LE(data - at, at + 4);
    page.writeUInt32LE(entry.key.length, at + 8);
    page.writeUInt32LE(entry.value.length, at + 12);
    page.set(entry.key, data);
    page.set(entry.value, data + entry.key.length);
    data += entry.key.length + entry.value.length;
  });
}

function branchPage(
  id: number,
  span: number,
  pageBytes: number,
  children: readonly { key: Buffer; pageId: number }[],
): Buffer {
  const page = Buffer.alloc(span * pageBytes);
  writePageHeader(page, 0, { id, flags: PAGE_BRANCH, count: children.length, overflow: span - 1 });
  let data = PAGE_HEADER_BYTES + children.length * ELEMENT_BYTES;
  children.forEach((child, i) => {
    const at = PAGE_HEADER_BYTES + i * ELEMENT_BYTES;
    page.writeUInt32LE(data - at, at);
    page.writeUInt32LE(child.key.length, at + 4);
    page.writeBigUInt64LE(BigInt(child.pageId), at + 8);
    page.set(child.key, data);
    data += child.key.length;
  });
  return page;
}

/** Collects pages into chunks of exactly chunkBytes (the last one may be shorter). */
class Chunker {
  private chunk: Buffer;
  private used = 0;

  constructor(private readonly chunkBytes: number) {
    this.chunk = Buffer.allocUnsafe(chunkBytes);
  }

  *push(bytes: Buffer): Generator<Buffer> {
    let offset = 0;
    while (offset < bytes.length) {
      const n = Math.min(bytes.length - offset, this.chunkBytes - this.used);
      bytes.copy(this.chunk, this.used, offset, offset + n);
      this.used += n;
      offset += n;
      if (this.used === this.chunkBytes) {
        yield this.chunk;
        this.chunk = Buffer.allocUnsafe(this.chunkBytes);
        this.used = 0;
      }
    }
  }

  *flush(): Generator<Buffer> {
    if (this.used > 0) yield this.chunk.subarray(0, this.used);
    this.used = 0;
  }
}

/**
 * Measures the buckets (first pass) and returns the plan, which knows the file's size and writes
 * it with chunks() (second pass). Bucket names must be distinct; they are sorted here.
 */
export async function planBboltFile(
  buckets: readonly BboltBucketSource[],
  options: BboltWriteOptions = {},
): Promise<BboltFilePlan> {
  const pageBytes = options.pageBytes ?? BBOLT_PAGE_BYTES_DEFAULT;
  if (pageBytes < PAGE_BYTES_MIN || pageBytes > PAGE_BYTES_MAX || (pageBytes & (pageBytes - 1)) !== 0)
    throw new BboltWriteError(
      `page size ${pageBytes} is not a power of two in ${PAGE_BYTES_MIN}..${PAGE_BYTES_MAX}`,
    );
  const entriesPerTurnMax = options.entriesPerTurnMax ?? ENTRIES_PER_TURN_MAX_DEFAULT;
  const sorted = [...buckets].sort((a, b) => Buffer.compare(a.name, b.name));
  const plans: BucketPlan[] = [];
  for (const source of sorted) {
    const name = Buffer.from(source.name);
    checkKey(name, 'bucket name');
    if (plans.length > 0 && plans[plans.length - 1]!.name.equals(name))
      throw new BboltWriteError(`bucket ${name.toString('latin1')} is given twice`);
    plans.push(await planBucket(source, name, pageBytes, entriesPerTurnMax));
  }
  return new BboltFilePlan(plans, pageBytes, options);
}

async function planBucket(
  source: BboltBucketSource,
  name: Buffer,
  pageBytes: number,
  entriesPerTurnMax: number,
): Promise<BucketPlan> {
  const inlineBytesMax = pageBytes / INLINE_BUCKET_FRACTION;
  const packer = new PagePacker(pageBytes);
  let inlineEntries: LeafElement[] | undefined = [];
  let inlineBytes = PAGE_HEADER_BYTES;
  let previous: Buffer | undefined;
  let count = 0;
  for (const { key, value } of source.entries()) {
    checkKey(key, `key in bucket ${name.toString('latin1')}`);
    if (previous !== undefined && Buffer.compare(previous, key) >= 0)
      throw new BboltWriteError(
        `bucket ${name.toString('latin1')}: keys are not in strictly increasing order`,
      );
    previous = Buffer.from(key);
    const elementBytes = ELEMENT_BYTES + key.length + value.length;
    packer.add(key, elementBytes);
    if (inlineEntries !== undefined) {
      inlineBytes += elementBytes;
      if (inlineBytes > inlineBytesMax) inlineEntries = undefined;
      else inlineEntries.push({ key: previous, value: Buffer.from(value), flags: 0 });
    }
    if (++count % entriesPerTurnMax === 0) await nextTurn();
  }
  if (inlineEntries !== undefined) {
    const value = Buffer.alloc(BUCKET_HEADER_BYTES + inlineBytes);
    writeLeafElements(value, BUCKET_HEADER_BYTES, inlineEntries);
    writePageHeader(value, BUCKET_HEADER_BYTES, {
      id: 0,
      flags: PAGE_LEAF,
      count: inlineEntries.length,
      overflow: 0,
    });
    return { source, name, inlineValue: value, tree: undefined, entryCount: count };
  }
  const tree = { levels: planTree(packer.finish(), pageBytes), firstPageId: 0 };
  return { source, name, inlineValue: undefined, tree, entryCount: count };
}

function checkKey(key: Uint8Array, what: string): void {
  if (key.length === 0) throw new BboltWriteError(`${what} is empty`);
  if (key.length > KEY_BYTES_MAX) throw new BboltWriteError(`${what} is longer than ${KEY_BYTES_MAX} bytes`);
}

export class BboltFilePlan {
  readonly pageCount: number;
  readonly totalBytes: number;
  private readonly rootTree: TreePlan;
  private readonly pagesPerTurnMax: number;
  private readonly chunkBytesMax: number;
  private readonly txid: bigint;

  constructor(
    private readonly buckets: readonly BucketPlan[],
    readonly pageBytes: number,
    options: BboltWriteOptions,
  ) {
    this.pagesPerTurnMax = options.pagesPerTurnMax ?? PAGES_PER_TURN_MAX_DEFAULT;
    this.chunkBytesMax = options.chunkBytesMax ?? CHUNK_BYTES_MAX_DEFAULT;
    this.txid = options.txid ?? TXID_DEFAULT;
    // The root bucket's values have known sizes already (a page id or the inline bucket).
    const packer = new PagePacker(pageBytes);
    for (const bucket of buckets)
      packer.add(bucket.name, ELEMENT_BYTES + bucket.name.length + this.bucketValueBytes(bucket));
    const rootLeaves = packer.finish();
    // An empty root bucket still has its (empty) leaf page.
    if (rootLeaves.length === 0) rootLeaves.push(Buffer.alloc(0), 0, 1);
    this.rootTree = { levels: planTree(rootLeaves, pageBytes), firstPageId: FIRST_TREE_PAGE_ID };
    let next = FIRST_TREE_PAGE_ID + treePageCount(this.rootTree.levels);
    for (const bucket of buckets) {
      if (bucket.tree === undefined) continue;
      bucket.tree.firstPageId = next;
      next += treePageCount(bucket.tree.levels);
    }
    this.pageCount = next;
    this.totalBytes = next * pageBytes;
  }

  /** Entries planned per bucket (name → count). */
  entryCounts(): Map<string, number> {
    return new Map(this.buckets.map((b) => [b.name.toString('latin1'), b.entryCount]));
  }

  private bucketValueBytes(bucket: BucketPlan): number {
    return bucket.inlineValue?.length ?? BUCKET_HEADER_BYTES;
  }

  private bucketValue(bucket: BucketPlan): Buffer {
    if (bucket.inlineValue !== undefined) return bucket.inlineValue;
    const value = Buffer.alloc(BUCKET_HEADER_BYTES);
    value.writeBigUInt64LE(BigInt(rootPageIdOf(bucket.tree!)), 0);
    return value;
  }

  /** The file, in chunks of chunkBytesMax, written in page order (second pass over the sources). */
  async *chunks(): AsyncGenerator<Buffer> {
    const chunker = new Chunker(this.chunkBytesMax);
    yield* chunker.push(this.metaPage(0, this.txid));
    yield* chunker.push(this.metaPage(1, this.txid - 1n));
    const freelist = Buffer.alloc(this.pageBytes);
    writePageHeader(freelist, 0, { id: FREELIST_PAGE_ID, flags: PAGE_FREELIST, count: 0, overflow: 0 });
    yield* chunker.push(freelist);
    const rootEntries = this.buckets.map((b) => ({
      key: b.name,
      value: this.bucketValue(b),
      flags: ELEMENT_BUCKET,
    }));
    for (const page of this.treePages(this.rootTree, rootEntries)) yield* chunker.push(page);
    for (const bucket of this.buckets) {
      if (bucket.tree === undefined) continue;
      let pages = 0;
      for (const page of this.treePages(bucket.tree, bucket.source.entries(), bucket.name)) {
        yield* chunker.push(page);
        if (++pages % this.pagesPerTurnMax === 0) await nextTurn();
      }
    }
    yield* chunker.flush();
  }

  private metaPage(id: number, txid: bigint): Buffer {
    const page = Buffer.alloc(this.pageBytes);
    writePageHeader(page, 0, { id, flags: PAGE_META, count: 0, overflow: 0 });
    encodeMeta(page, PAGE_HEADER_BYTES, {
      pageBytes: this.pageBytes,
      flags: 0,
      rootPageId: rootPageIdOf(this.rootTree),
      rootSequence: 0n,
      freelistPageId: BigInt(FREELIST_PAGE_ID),
      pageCount: this.pageCount,
      txid,
    });
    return page;
  }

  /** The pages of one tree: its leaves filled from `entries` as planned, then its branch levels. */
  private *treePages(
    tree: TreePlan,
    entries: Iterable<LeafElement | BboltSourceEntry>,
    name?: Buffer,
  ): Generator<Buffer> {
    const leaves = tree.levels[0]!;
    const leafIds = levelPageIds(tree, 0);
    const iterator = entries[Symbol.iterator]();
    const changed = (): BboltWriteError =>
      new BboltWriteError(
        `bucket ${name?.toString('latin1') ?? '(root)'}: the source changed between the planning and the writing pass`,
      );
    try {
      for (let i = 0; i < leaves.length; i++) {
        const count = leaves.counts[i]!;
        const span = leaves.spans[i]!;
        const elements: LeafElement[] = [];
        let bytes = PAGE_HEADER_BYTES;
        for (let n = 0; n < count; n++) {
          const next = iterator.next();
          if (next.done) throw changed();
          const element = next.value;
          elements.push({
            key: element.key,
            value: element.value,
            flags: 'flags' in element ? element.flags : 0,
          });
          bytes += ELEMENT_BYTES + element.key.length + element.value.length;
        }
        if (count > 0 && !leaves.firstKey(i).equals(elements[0]!.key)) throw changed();
        if (count > 0 && Math.ceil(bytes / this.pageBytes) !== span) throw changed();
        yield leafPage(leafIds[i]!, span, this.pageBytes, elements);
      }
      if (!iterator.next().done) throw changed();
    } finally {
      iterator.return?.();
    }
    for (let level = 1; level < tree.levels.length; level++) {
      const below = tree.levels[level - 1]!;
      const belowIds = levelPageIds(tree, level - 1);
      const planned = tree.levels[level]!;
      const ids = levelPageIds(tree, level);
      let child = 0;
      for (let i = 0; i < planned.length; i++) {
        const children: { key: Buffer; pageId: number }[] = [];
        for (let j = 0; j < planned.counts[i]!; j++, child++)
          children.push({ key: below.firstKey(child), pageId: belowIds[child]! });
        yield branchPage(ids[i]!, planned.spans[i]!, this.pageBytes, children);
      }
    }
  }
}
