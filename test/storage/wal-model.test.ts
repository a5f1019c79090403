// Model-based test: random sequences of appends (with truncation), hard states, snapshot markers,
// releases and reopens, checked against a plain in-memory model of what Raft storage must hold.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Entry, emptyConfState, type HardState, type SnapshotMetadata } from '../../src/raft/types.js';
import { WalRecordTooLargeError } from '../../src/storage/errors.js';
import { Wal } from '../../src/storage/wal.js';
import { entries, withTempDir } from './helpers.js';

const SEGMENT_BYTES = 2048;
const GROUPS = [1, 2] as const;

type Op =
  | { kind: 'append'; group: number; back: number; count: number }
  | { kind: 'hardState'; group: number; commit: number }
  | { kind: 'marker'; group: number; back: number }
  | { kind: 'release'; group: number }
  | { kind: 'sync' }
  | { kind: 'reopen' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('append' as const),
      group: fc.constantFrom(...GROUPS),
      back: fc.nat(4),
      count: fc.integer({ min: 1, max: 12 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('hardState' as const),
      group: fc.constantFrom(...GROUPS),
      commit: fc.nat(50),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('marker' as const),
      group: fc.constantFrom(...GROUPS),
      back: fc.nat(8),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('release' as const), group: fc.constantFrom(...GROUPS) }),
  },
  { weight: 2, arbitrary: fc.constant({ kind: 'sync' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

class ModelGroup {
  entries: Entry[] = [];
  snapshot: SnapshotMetadata | null = null;
  hardState: HardState | null = null;
  term = 1;

  get lastIndex(): number {
    return this.entries.at(-1)?.index ?? this.snapshot?.index ?? 0;
  }

  append(back: number, count: number): Entry[] {
    const snapshotIndex = this.snapshot?.index ?? 0;
    const first = Math.max(snapshotIndex + 1, this.lastIndex + 1 - back);
    if (first <= this.lastIndex) this.term++; // a conflict: the new leader's term is higher
    const added = entries(first, first + count - 1, this.term);
    this.entries = [...this.entries.filter((e) => e.index < first), ...added];
    return added;
  }

  marker(back: number): SnapshotMetadata | null {
    if (this.lastIndex === 0) return null;
    const index = Math.max(this.snapshot?.index ?? 0, this.lastIndex - back);
    const term = this.entries.find((e) => e.index === index)?.term ?? this.snapshot?.term ?? 1;
    this.snapshot = { index, term, confState: { ...emptyConfState(), voters: [1, 2, 3] } };
    this.entries = this.entries.filter((e) => e.index > index);
    return this.snapshot;
  }
}

async function checkRecovered(dir: string, model: Map<number, ModelGroup>): Promise<Wal> {
  const { wal, recovered } = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES });
  for (const [groupId, expected] of model) {
    const got = recovered.groups.get(groupId);
    assert.deepEqual(got?.hardState ?? null, expected.hardState, `group ${groupId} hard state`);
    assert.deepEqual(got?.snapshot ?? null, expected.snapshot, `group ${groupId} snapshot`);
    assert.deepEqual(got?.entries ?? [], expected.entries, `group ${groupId} entries`);
  }
  return wal;
}

let segmentsDeleted = 0;

async function runOps(dir: string, ops: Op[]): Promise<void> {
  const model = new Map<number, ModelGroup>(GROUPS.map((g) => [g, new ModelGroup()]));
  let { wal } = await Wal.open(dir, { segmentBytes: SEGMENT_BYTES });
  for (const op of ops) {
    const group = op.kind === 'sync' || op.kind === 'reopen' ? null : model.get(op.group)!;
    switch (op.kind) {
      case 'append':
        wal.appendEntries(op.group, group!.append(op.back, op.count));
        break;
      case 'hardState': {
        const hs = { term: group!.term, vote: op.group, commit: op.commit };
        group!.hardState = hs;
        wal.saveHardState(op.group, hs);
        break;
      }
      case 'marker': {
        const meta = group!.marker(op.back);
        if (meta) wal.saveSnapshotMarker(op.group, meta);
        break;
      }
      case 'release':
        await wal.releaseTo(op.group, group!.snapshot?.index ?? 0);
        break;
      case 'sync':
        await wal.sync();
        break;
      case 'reopen':
        await wal.close();
        segmentsDeleted += wal.stats().segmentsDeleted;
        wal = await checkRecovered(dir, model);
        break;
    }
  }
  await wal.close();
  segmentsDeleted += wal.stats().segmentsDeleted;
  await (await checkRecovered(dir, model)).close();
}

describe('WAL against a model of Raft storage', () => {
  it('recovers exactly the model state after any sequence of appends, truncations, markers and releases', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 20, maxLength: 60, size: 'max' }), (ops) =>
        withTempDir((dir) => runOps(dir, ops)),
      ),
      { numRuns: 25, seed: 424242 },
    );
    assert.ok(segmentsDeleted > 10, `releases deleted segments (${segmentsDeleted})`);
  });

  it('refuses a record above recordBytesMax without buffering any of it', () =>
    withTempDir(async (dir) => {
      const { wal } = await Wal.open(dir, { recordBytesMax: 4096 });
      const big = [{ ...entries(1, 1)[0]!, data: new Uint8Array(5000) }];
      assert.throws(() => wal.appendEntries(1, big), WalRecordTooLargeError);
      wal.appendEntries(1, entries(1, 2)); // index 1 is still next: nothing was recorded
      await wal.close();
      const again = await Wal.open(dir);
      assert.deepEqual(again.recovered.groups.get(1)!.entries, entries(1, 2));
      await again.wal.close();
    }));
});
