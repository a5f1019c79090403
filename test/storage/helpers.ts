// Shared fixtures for the storage tests: temp dirs that are always removed, and deterministic
// entries whose payload can be re-derived from the index to check integrity after recovery.

import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Entry, EntryType } from '../../src/raft/types.js';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'concord-storage-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Names of the files in a WAL directory other than its lock file. */
export async function walFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name !== 'LOCK');
}

/** Payload derived from (index, term): any corruption or mix-up shows up as a mismatch. */
export function payloadFor(index: number, term: number): Uint8Array {
  const length = 16 + ((index * 37) % 200);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (index * 31 + term * 7 + i) & 0xff;
  return out;
}

/**
 * Payload for the crash test: every 50th entry is large (256 KiB), so a SIGKILL can land inside
 * a multi-page write() and leave a genuinely torn record behind.
 */
export function crashPayload(index: number): Uint8Array {
  if (index % 50 !== 0) return payloadFor(index, 1);
  const out = new Uint8Array(256 * 1024);
  for (let i = 0; i < out.length; i += 4096) out.set(payloadFor(index + i, 1).subarray(0, 16), i);
  return out;
}

export function entry(index: number, term = 1): Entry {
  return { index, term, type: EntryType.Normal, data: payloadFor(index, term) };
}

export function entries(from: number, to: number, term = 1): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}

/** Offsets of every record in a segment file, by walking the length fields. */
export function recordOffsets(buf: Buffer): number[] {
  const offsets: number[] = [];
  let offset = 0;
  while (offset + 9 <= buf.length) {
    const length = buf.readUInt32LE(offset);
    if (length === 0) break;
    offsets.push(offset);
    offset += 8 + length;
  }
  offsets.push(offset);
  return offsets;
}

/** A tiny seeded PRNG (mulberry32) so random tear points are reproducible from the seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
