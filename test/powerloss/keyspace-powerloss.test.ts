// The keyspace alone under power cuts: a child process applies batches to a keyspace on plfs and
// reports each committed applied index; the power is cut at a random moment, and the reopened
// store must open, hold exactly the result of the entries up to its applied index (nothing torn,
// nothing skipped), and have lost at most the last commit reported before the cut (a commit's
// meta page is flushed by the next commit's fdatasync). The same with noSync must be caught.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Keyspace } from '../../src/mvcc/keyspace.js';
import { opForIndex } from '../mvcc/crash-ops.js';
import { b, norm } from '../mvcc/helpers.js';
import { Model } from '../mvcc/model.js';
import { seededRandom } from './campaign.js';
import { PlfsMount } from './plfs-mount.js';

const childPath = fileURLToPath(new URL('../mvcc/crash-child.js', import.meta.url));
const CYCLES = 6;
const REPORT_WAIT_MS = 20_000;

interface CutOutcome {
  /** Applied indexes the child reported before the cut, in order. */
  reported: number[];
}

/** Runs the child on the mount until it reported something and `runMs` passed, then cuts the power. */
async function runAndCut(
  mount: PlfsMount,
  dir: string,
  seed: number,
  runMs: number,
  noSync: boolean,
): Promise<CutOutcome> {
  const child: ChildProcess = spawn(
    process.execPath,
    [childPath, dir, String(seed), ...(noSync ? ['nosync'] : [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const reported: number[] = [];
  let buffered = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      const m = /^applied (\d+)$/.exec(line);
      if (m) reported.push(Number(m[1]));
    }
  });
  child.stderr?.on('data', (c) => {
    stderr += String(c);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const deadline = Date.now() + REPORT_WAIT_MS;
    while (reported.length === 0 && child.exitCode === null && Date.now() < deadline) await sleep(20);
    assert.ok(reported.length > 0, `the child reported no commit: ${stderr}`);
    await sleep(runMs);
    const before = reported.length;
    await mount.powerOff();
    return { reported: reported.slice(0, before) };
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Cuts the power CYCLES times; returns the first inconsistency found, or undefined. */
async function campaign(seed: number, noSync: boolean): Promise<string | undefined> {
  const random = seededRandom(seed);
  const root = await mkdtemp(join(tmpdir(), 'concord-ks-powerloss-'));
  const mount = new PlfsMount(join(root, 'disk'), join(root, 'mnt'));
  const model = new Model();
  let modelIndex = 0;
  try {
    await mount.mount(Math.floor(random() * 2 ** 31));
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const dir = join(mount.mountPoint, 'ks');
      const { reported } = await runAndCut(mount, dir, cycle, 100 + random() * 600, noSync);
      await mount.unmount();
      await mount.mount(Math.floor(random() * 2 ** 31));
      let ks: Keyspace;
      try {
        ks = Keyspace.open(dir, { initialRevision: 0 });
      } catch (error) {
        return `cycle ${cycle}: the store does not open: ${(error as Error).message}`;
      }
      try {
        const applied = ks.appliedIndex();
        const surelyDurable = reported.length >= 2 ? reported[reported.length - 2]! : 0;
        if (applied < surelyDurable)
          return `cycle ${cycle}: applied ${applied} < ${surelyDurable}, reported before the cut`;
        for (; modelIndex < applied; modelIndex++) model.apply(opForIndex(modelIndex + 1));
        if (modelIndex > applied)
          return `cycle ${cycle}: applied index went back to ${applied} from ${modelIndex}`;
        const all = { key: b('\u0000'), rangeEnd: b('\u0000') };
        const expected = model.range(all);
        assert.ok(expected.ok);
        let actual: unknown;
        try {
          actual = norm(ks.range(all));
        } catch (error) {
          return `cycle ${cycle}: reading the store failed: ${(error as Error).message}`;
        }
        try {
          assert.deepEqual(actual, norm(expected.value));
        } catch {
          return `cycle ${cycle}: the data is not the result of entries 1..${applied}`;
        }
        if (ks.currentRevision() !== model.revision)
          return `cycle ${cycle}: revision ${ks.currentRevision()} != ${model.revision}`;
      } finally {
        await ks.close();
      }
    }
    return undefined;
  } finally {
    await mount.unmount();
    await rm(root, { recursive: true, force: true });
  }
}

describe('keyspace under power cuts (plfs)', () => {
  test('a synced keyspace opens after every cut, consistent, losing at most the last commit', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    assert.equal(await campaign(seed, false), undefined, `seed ${seed}`);
  });

  test('self-test: the same with noSync is caught', async () => {
    const seed = Math.floor(Math.random() * 2 ** 31);
    assert.notEqual(
      await campaign(seed, true),
      undefined,
      `seed ${seed}: an unsynced keyspace survived every cut`,
    );
  });
});
