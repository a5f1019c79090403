// Crash safety of applyBatch: a child applies batches and reports each committed applied index;
// we SIGKILL it at random moments, reopen, and check that nothing reported was lost and that the
// data is exactly the result of the entries up to the recovered applied index (no entry applied
// twice, none skipped).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Keyspace } from '../../src/mvcc/keyspace.js';
import { opForIndex } from './crash-ops.js';
import { b, norm, tempDir } from './helpers.js';
import { Model } from './model.js';

const CYCLES = 15;
const childPath = fileURLToPath(new URL('./crash-child.js', import.meta.url));

function runAndKill(dir: string, seed: number, killAfterMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childPath, dir, String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let lastReported = 0;
    let buffered = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        const m = /^applied (\d+)$/.exec(line);
        if (m) lastReported = Number(m[1]);
      }
      timer ??= setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (c) => {
      stderr += String(c);
    });
    child.on('exit', (_code, signal) => {
      if (timer) clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited on its own (${signal}): ${stderr}`));
      else resolve(lastReported);
    });
  });
}

test('applyBatch survives SIGKILL at random moments: applied index and data stay in step', async (t) => {
  const root = tempDir('mvcc-crash-');
  const dir = join(root, 'ks');
  const model = new Model();
  let modelIndex = 0;
  try {
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const killAfterMs = 20 + ((cycle * 7919) % 180);
      const reported = await runAndKill(dir, cycle, killAfterMs);
      const ks = Keyspace.open(dir, { initialRevision: 0 });
      try {
        const applied = ks.appliedIndex();
        assert.ok(applied >= reported, `cycle ${cycle}: applied ${applied} < reported ${reported}`);
        for (; modelIndex < applied; modelIndex++) model.apply(opForIndex(modelIndex + 1));
        assert.equal(ks.currentRevision(), model.revision, `cycle ${cycle}: revision`);
        assert.equal(ks.compactRevision(), model.compactRevision, `cycle ${cycle}: compact revision`);
        const all = { key: b('\u0000'), rangeEnd: b('\u0000') };
        const expected = model.range(all);
        assert.ok(expected.ok);
        assert.deepEqual(norm(ks.range(all)), norm(expected.value), `cycle ${cycle}: data`);
      } finally {
        await ks.close();
      }
    }
    assert.ok(modelIndex > CYCLES, 'the child applied something every cycle');
    t.diagnostic(`entries applied across ${CYCLES} kills: ${modelIndex}, revision ${model.revision}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
