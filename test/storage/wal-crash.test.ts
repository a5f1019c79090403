import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EntryType } from '../../src/raft/types.js';
import { WalFailedError } from '../../src/storage/errors.js';
import { defaultWalIo, Wal, type WalIo } from '../../src/storage/wal.js';
import { crashPayload, seededRandom, withTempDir } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/wal-crash-child.js', import.meta.url));
const CYCLES = 25;
const RUN_MS_MIN = 40;
const RUN_MS_MAX = 700;
const TOTAL_BUDGET_MS = 45_000;

interface CycleResult {
  durable: number[];
  exitedOnItsOwn: string | null;
}

function runUntilKilled(dir: string, seed: number, runMs: number): Promise<CycleResult> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [CHILD, dir, String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const durable: number[] = [];
    let stdout = '';
    let stderr = '';
    let killed = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const lines = stdout.split('\n');
      stdout = lines.pop()!; // a partial line is not a report
      for (const line of lines) if (line.startsWith('durable ')) durable.push(Number(line.slice(8)));
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, runMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const exitedOnItsOwn = killed ? null : `exit ${code} signal ${signal}: ${stderr}`;
      resolve({ durable, exitedOnItsOwn });
    });
  });
}

async function verifyRecovery(dir: string, durableMax: number): Promise<{ torn: boolean; segments: number }> {
  const { wal, recovered } = await Wal.open(dir, { segmentBytes: 64 * 1024 });
  try {
    const group = recovered.groups.get(1);
    const facts = { torn: recovered.tornTail !== null, segments: recovered.segmentCount };
    if (durableMax === 0 && !group) return facts;
    assert.ok(group, 'group 1 recovered');
    const snapshotIndex = group.snapshot?.index ?? 0;
    const last = group.entries.at(-1)?.index ?? snapshotIndex;
    assert.ok(last >= durableMax, `durable index ${durableMax} lost: log ends at ${last}`);
    assert.ok(group.hardState!.commit >= durableMax, 'hard state written with the batch is durable');
    group.entries.forEach((e, i) => {
      assert.equal(e.index, snapshotIndex + 1 + i, 'entries are consecutive after the snapshot');
      assert.deepEqual(e.data, crashPayload(e.index), `entry ${e.index} intact`);
    });
    return facts;
  } finally {
    await wal.close();
  }
}

describe('WAL crash safety', () => {
  it('every batch reported durable survives SIGKILL at random moments, and recovery always succeeds', (t) =>
    withTempDir(async (dir) => {
      const random = seededRandom(7);
      const started = Date.now();
      let durableMax = 0;
      let cycles = 0;
      let tornTails = 0;
      let maxSegments = 0;
      while (cycles < CYCLES && Date.now() - started < TOTAL_BUDGET_MS) {
        const runMs = RUN_MS_MIN + Math.floor(random() * (RUN_MS_MAX - RUN_MS_MIN));
        const result = await runUntilKilled(dir, cycles + 1, runMs);
        assert.equal(result.exitedOnItsOwn, null, `child died by itself: ${result.exitedOnItsOwn}`);
        for (let i = 1; i < result.durable.length; i++)
          assert.ok(result.durable[i]! > result.durable[i - 1]!);
        durableMax = Math.max(durableMax, ...result.durable);
        const before = Date.now();
        const facts = await verifyRecovery(dir, durableMax);
        if (facts.torn) tornTails++;
        maxSegments = Math.max(maxSegments, facts.segments);
        assert.ok(Date.now() - before < 10_000, 'recovery is bounded');
        cycles++;
      }
      assert.ok(cycles >= 10, `ran ${cycles} crash cycles`);
      assert.ok(durableMax > 0, 'the child made progress');
      t.diagnostic(
        `cycles ${cycles}, durable ${durableMax}, torn tails ${tornTails}, max segments ${maxSegments}`,
      );
    }));
});

describe('WAL torn writes', () => {
  it('a write cut short at a random byte loses only the unacknowledged batch', () =>
    withTempDir(async (dir) => {
      const random = seededRandom(99);
      let acknowledged = 0;
      let tornSeen = 0;
      for (let round = 0; round < 30; round++) {
        let crashArmed = false;
        const io: Partial<WalIo> = {
          async write(fh, data, position) {
            if (!crashArmed) return defaultWalIo.write(fh, data, position);
            // Power cut mid-write: a prefix reaches the file, the rest never does.
            const cut = Math.floor(random() * data.length);
            await defaultWalIo.write(fh, data.subarray(0, cut), position);
            throw new Error('simulated crash');
          },
        };
        const { wal, recovered } = await Wal.open(dir, { segmentBytes: 16 * 1024, io });
        if (recovered.tornTail) tornSeen++;
        const log = recovered.groups.get(1)?.entries ?? [];
        assert.ok((log.at(-1)?.index ?? 0) >= acknowledged, `round ${round}: acknowledged entries lost`);
        log.forEach((e, i) => {
          assert.equal(e.index, i + 1);
          assert.deepEqual(e.data, crashPayload(e.index));
        });
        let next = (log.at(-1)?.index ?? 0) + 1;
        for (let batch = 0; batch < 3; batch++) {
          for (let i = 0; i < 10; i++, next++) {
            wal.appendEntries(1, [
              { index: next, term: 1, type: EntryType.Normal, data: crashPayload(next) },
            ]);
          }
          await wal.sync();
          acknowledged = next - 1;
        }
        crashArmed = true;
        for (let i = 0; i < 10; i++, next++) {
          wal.appendEntries(1, [{ index: next, term: 1, type: EntryType.Normal, data: crashPayload(next) }]);
        }
        await assert.rejects(wal.sync(), WalFailedError);
        await assert.rejects(wal.close(), WalFailedError);
      }
      assert.ok(tornSeen >= 10, `torn tails recovered: ${tornSeen}`);
    }));
});
