// Encryption at rest on real `concord` processes (--encryption-key-file):
// - a 3-member cluster takes writes of distinctive keys and values (and a member catches up from
//   a snapshot); then every file of every data dir is searched for them: none is found, while a
//   control cluster without encryption shows the same search finds them;
// - a restart with a wrong key, or without the key the data is sealed with, fails with a message
//   naming the key id, and the member serves nothing;
// - `concordctl encryption rotate-key` under write load: every member switches, re-encrypts, and
//   once status shows only the new key, the old one is dropped from the file and every member
//   restarts; every acknowledged write is still there.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { runConcordctl } from '../support/concordctl.js';
import { b64, readPrefix, startLoad } from '../support/load.js';
import { gatewayPost, pollUntil, requestJson } from '../support/process-cluster.js';

const timing = { heartbeatIntervalMs: 50, electionTimeoutMs: 500 };
const marker = randomBytes(6).toString('hex');
const KEY_MARK = `ENCKEY${marker}`;
const VALUE_MARK = `ENCVAL${marker}`;
const keyCount = 150;

function keyLine(id: string, key: Buffer): string {
  return `${id}:${key.toString('base64')}\n`;
}

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = statSync(path, { throwIfNoEntry: false });
    // A running member deletes old snapshot files and WAL segments as it goes.
    if (stat === undefined) continue;
    if (stat.isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

/** The file's bytes; empty when a running member deleted it since it was listed. */
function readIfThere(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw error;
  }
}

/** Files under the data dirs that contain a key or value marker (or the start of one). */
function filesWithMarks(dataDirs: string[]): string[] {
  const needles = [KEY_MARK, VALUE_MARK, KEY_MARK.slice(0, 10), VALUE_MARK.slice(0, 10)].map((n) =>
    Buffer.from(n),
  );
  return dataDirs.flatMap(filesUnder).filter((file) => {
    const bytes = readIfThere(file);
    return needles.some((needle) => bytes.includes(needle));
  });
}

async function putMarked(
  cluster: ProcessCluster,
  from: number,
  to: number,
  members: number[],
): Promise<void> {
  for (let i = from; i < to; i++) {
    // The same put again is harmless: a put caught by a leader change (a member just stopped) is retried.
    await pollUntil(`put ${i}`, 30_000, () =>
      gatewayPost(
        cluster.endpoint(members[i % members.length]!),
        '/v3/kv/put',
        { key: b64(`${KEY_MARK}/${i}`), value: b64(`${VALUE_MARK}-${i}`) },
        5000,
      ).then(() => true),
    );
  }
}

async function encryptionStatus(endpoint: string): Promise<Record<string, unknown>> {
  const reply = await requestJson(`${endpoint}/concord/v1/encryption/status`, { timeoutMs: 5000 });
  return reply.body as Record<string, unknown>;
}

/** Restarts a stopped member expecting it to exit by itself; returns its exit code and log. */
async function failedRestart(
  cluster: ProcessCluster,
  index: number,
): Promise<{ code: number | null; log: string }> {
  const member = cluster.member(index);
  // The log buffer holds the earlier runs too: keep only this run's lines.
  const position = (): number => member.log.droppedBytes + member.log.text().length;
  const start = position();
  await cluster.restart(index, { waitHealthy: false });
  await pollUntil(`${member.name} to exit`, 30_000, async () =>
    member.child === undefined ? true : undefined,
  );
  const text = member.log.text();
  return { code: member.exitCode, log: text.slice(Math.max(0, text.length - (position() - start))) };
}

describe('encryption at rest', { timeout: 300_000 }, () => {
  let keyDir: string;
  let keyFile: string;
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  let cluster: ProcessCluster | undefined;

  before(() => {
    keyDir = mkdtempSync(join(tmpdir(), 'concord-keys-'));
    keyFile = join(keyDir, 'keys');
    writeFileSync(keyFile, `# test keys\n${keyLine('k1', k1)}`, { mode: 0o600 });
  });

  after(async () => {
    await cluster?.dispose();
    rmSync(keyDir, { recursive: true, force: true });
  });

  it('control: without encryption the search finds the keys and values in the data dir', async () => {
    const plain = await startConcordCluster({ size: 1, ...timing, snapshotCount: 50 });
    try {
      await gatewayPost(
        plain.endpoint(0),
        '/v3/kv/put',
        { key: b64(`${KEY_MARK}/c`), value: b64(`${VALUE_MARK}-c`) },
        5000,
      );
      const found = filesWithMarks([plain.member(0).dataDir]);
      assert.ok(
        found.some((f) => f.includes('/wal/')),
        `WAL holds the marks: ${found.join(', ')}`,
      );
      assert.ok(
        found.some((f) => f.includes('/db/')),
        `keyspace holds the marks: ${found.join(', ')}`,
      );
    } finally {
      await plain.dispose();
    }
  });

  it('no key or value in plaintext in any file of any member, snapshots and a catch-up included', async () => {
    cluster = await startConcordCluster({
      size: 3,
      ...timing,
      snapshotCount: 50,
      extraFlags: ['--encryption-key-file', keyFile, '--experimental-snapshot-catchup-entries', '10'],
    });
    await cluster.withLogsOnFailure(() => catchUpAndGrep(cluster!));
  });

  async function catchUpAndGrep(cluster: ProcessCluster): Promise<void> {
    await putMarked(cluster, 0, keyCount / 2, [0, 1, 2]);
    // Member 2 misses writes past a snapshot and compacted log: it catches up from a snapshot.
    await cluster.stop(2);
    await putMarked(cluster, keyCount / 2, keyCount, [0, 1]);
    await pollUntil('the last put', 30_000, () =>
      gatewayPost(
        cluster.endpoint(0),
        '/v3/kv/put',
        { key: b64(`${KEY_MARK}/lease`), value: b64(`${VALUE_MARK}-l`) },
        5000,
      ).then(() => true),
    );
    await cluster.restart(2);
    await pollUntil('member 2 to catch up', 60_000, async () =>
      (await readPrefix(cluster.endpoint(2), `${KEY_MARK}/`, true)).kvs.size === keyCount + 1
        ? true
        : undefined,
    );
    const all = await readPrefix(cluster.endpoint(1), `${KEY_MARK}/`);
    assert.equal(all.kvs.get(`${KEY_MARK}/7`), `${VALUE_MARK}-7`);
    const dirs = [0, 1, 2].map((i) => cluster.member(i).dataDir);
    const snapFiles = dirs.flatMap(filesUnder).filter((f) => f.endsWith('.snap'));
    assert.ok(snapFiles.length >= 3, `snapshot files were written: ${snapFiles.length}`);
    assert.match(cluster.member(2).log.text(), /installed a snapshot from the leader/);
    assert.deepEqual(filesWithMarks(dirs), []);
  }

  it('a restart with a wrong key or without the key in use fails naming the key id, and serves nothing', async () => {
    assert.ok(cluster !== undefined);
    await cluster.stop(0);
    writeFileSync(keyFile, keyLine('k1', randomBytes(32)));
    const wrong = await failedRestart(cluster, 0);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.log, /AES-GCM authentication failed with encryption key \\?"k1\\?"/);
    assert.doesNotMatch(wrong.log, /ready to serve client requests/);
    writeFileSync(keyFile, keyLine('k9', randomBytes(32)));
    const missing = await failedRestart(cluster, 0);
    assert.notEqual(missing.code, 0);
    assert.match(missing.log, /encryption key \\?"k1\\?" is not in the key file/);
    writeFileSync(keyFile, keyLine('k1', k1));
    await cluster.restart(0);
  });

  it('rotate-key under write load: every member switches and re-encrypts; with the old key dropped nothing is lost', async () => {
    assert.ok(cluster !== undefined);
    const c = cluster;
    writeFileSync(keyFile, keyLine('k1', k1) + keyLine('k2', k2));
    const load = startLoad({ endpoints: () => c.endpoints(), writers: 4, prefix: 'rot/' });
    let acked: Map<string, string>;
    try {
      await pollUntil('writes before the rotation', 60_000, async () =>
        load.ackedCount() > 30 ? true : undefined,
      );
      const rotated = await runConcordctl([
        '--endpoints',
        c.endpoints().join(','),
        'encryption',
        'rotate-key',
        'k2',
      ]);
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.match(rotated.stdout, /new writes use "k2"/);
      const before = load.ackedCount();
      await pollUntil('writes after the rotation', 60_000, async () =>
        load.ackedCount() > before + 60 ? true : undefined,
      );
    } finally {
      acked = (await load.stop()).acked;
    }
    await pollUntil('every member to hold only k2', 60_000, async () => {
      for (const endpoint of c.endpoints()) {
        const s = await encryptionStatus(endpoint);
        if (s.activeKeyId !== 'k2' || s.reencryption !== 'idle') return undefined;
        if (JSON.stringify(s.keyIdsInUse) !== '["k2"]') return undefined;
      }
      return true;
    });
    const status = await runConcordctl(['--endpoints', c.endpoints().join(','), 'encryption', 'status']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /active key k2, in use k2,/);
    // Drop the old key from the file and restart every member.
    writeFileSync(keyFile, keyLine('k2', k2));
    for (const i of [0, 1, 2]) await c.stop(i);
    for (const i of [0, 1, 2]) await c.restart(i, { waitHealthy: false });
    await c.waitHealthy(60_000);
    const rot = await readPrefix(c.endpoint(0), 'rot/');
    const lost = [...acked].filter(([key, value]) => rot.kvs.get(key) !== value);
    assert.equal(lost.length, 0, `lost acknowledged writes: ${lost.slice(0, 5).join(' ')}`);
    assert.ok(acked.size > 90, `acknowledged ${acked.size}`);
    const marked = await readPrefix(c.endpoint(1), `${KEY_MARK}/`);
    assert.equal(marked.kvs.size, keyCount + 1);
    assert.equal(marked.kvs.get(`${KEY_MARK}/123`), `${VALUE_MARK}-123`);
    assert.deepEqual(filesWithMarks([0, 1, 2].map((i) => c.member(i).dataDir)), []);
  });
});
