import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyspace, type KeyspaceOptions } from '../../src/mvcc/keyspace.js';
import type { ApplyResult, WriteOp, WriteResponse } from '../../src/mvcc/types.js';

export const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Buffers → 'b:…' strings, bigints → 'n:…', so results compare with deepStrictEqual. */
export function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return `b:${Buffer.from(v).toString('latin1')}`;
  if (typeof v === 'bigint') return `n:${v}`;
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = norm(x);
    return out;
  }
  return v;
}

export interface TempKeyspace {
  ks: Keyspace;
  /** The options reopen() uses (a test may change them, e.g. the key ring). */
  options: KeyspaceOptions;
  dir: string;
  reopen(): Promise<Keyspace>;
  cleanup(): Promise<void>;
}

export function tempDir(prefix = 'mvcc-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Unit tests count revisions from 0 (the server's stores start at etcd's 1). */
export function openTemp(userOptions: KeyspaceOptions = {}): TempKeyspace {
  const options: KeyspaceOptions = { initialRevision: 0, ...userOptions };
  const dir = tempDir();
  const t: TempKeyspace = {
    ks: Keyspace.open(join(dir, 'ks'), options),
    options,
    dir,
    async reopen() {
      await t.ks.close();
      t.ks = Keyspace.open(join(dir, 'ks'), t.options);
      return t.ks;
    },
    async cleanup() {
      await t.ks.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

/** Applies ops one entry each, continuing from appliedIndex. */
export function applyOps(ks: Keyspace, ops: WriteOp[]): ApplyResult[] {
  let index = ks.appliedIndex();
  return ks.applyBatch(ops.map((op) => ({ index: ++index, op })));
}

export function okResponse(r: ApplyResult): WriteResponse {
  if (r.status !== 'ok')
    throw new Error(`expected ok, got ${r.status}${r.status === 'error' ? ` ${r.error.code}` : ''}`);
  return r.response;
}
