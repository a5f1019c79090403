// Snapshots streamed from a peer land in a file as they arrive and reach the snapshot directory
// only when Raft takes them; a failed, refused or ignored transfer leaves no file behind.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReceivedSnapshots } from '../../src/node/received-snapshots.js';
import { type Message, MessageType, message, type SnapshotMetadata } from '../../src/raft/types.js';
import { SnapshotStore, snapshotFileName } from '../../src/storage/snapshot-store.js';
import { InProcessCluster } from '../server/in-process-cluster.js';
import { withTempDir } from '../storage/helpers.js';

const CHUNK = 64 * 1024;

function meta(index: number, term: number): SnapshotMetadata {
  return {
    index,
    term,
    confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false },
  };
}

function msgSnap(metadata: SnapshotMetadata, data = new Uint8Array(0)): Message {
  return message({ type: MessageType.Snapshot, from: 2, to: 1, term: 7, snapshot: { metadata, data } });
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source) parts.push(Buffer.from(part));
  return Buffer.concat(parts);
}

async function setup(dir: string, onStorageError: (error: unknown) => void = () => undefined) {
  const scratch = join(dir, 'tmp');
  await mkdir(scratch);
  const store = await SnapshotStore.open(join(dir, 'snap'), { chunkBytes: CHUNK });
  return { scratch, store, received: new ReceivedSnapshots(scratch, store, onStorageError) };
}

describe('received snapshots', () => {
  it('streams chunks to a file and delivers a token naming it; adopt moves it into the store', () =>
    withTempDir(async (dir) => {
      const { scratch, store, received } = await setup(dir);
      const metadata = meta(500, 7);
      const sink = received.sink(msgSnap(metadata));
      const data = randomBytes(3 * CHUNK + 11);
      for (let at = 0; at < data.length; at += 50_000) await sink.write(data.subarray(at, at + 50_000));
      const token = await sink.finish();
      assert.ok(
        token.length > 0 && token.length < 100,
        'the delivered data is a small token, not the snapshot',
      );
      const snapshot = { metadata, data: token };
      const path = received.fileOf(snapshot);
      assert.ok(path?.startsWith(scratch));
      assert.deepEqual(await readdir(join(dir, 'snap')), [], 'not in the store before Raft takes it');
      await received.adopt(snapshot);
      assert.deepEqual(await readdir(scratch), []);
      const [file] = await store.list();
      assert.equal(file?.path, join(dir, 'snap', snapshotFileName(7, 500)));
      assert.deepEqual(await collect(store.readData(file.path)), data);
    }));

  it('a snapshot without data (the bootstrap one, index 1) is delivered empty and leaves no file', () =>
    withTempDir(async (dir) => {
      const { scratch, received } = await setup(dir);
      const sink = received.sink(msgSnap(meta(1, 1)));
      const data = await sink.finish();
      assert.equal(data.length, 0, 'empty data: the member starts from an empty keyspace');
      assert.deepEqual(await readdir(scratch), []);
    }));

  it('an aborted transfer leaves no file, also when it is aborted after it finished', () =>
    withTempDir(async (dir) => {
      const { scratch, received } = await setup(dir);
      const partial = received.sink(msgSnap(meta(10, 2)));
      await partial.write(randomBytes(CHUNK * 2));
      partial.abort(new Error('connection dropped'));
      const finished = received.sink(msgSnap(meta(11, 2)));
      await finished.write(randomBytes(CHUNK));
      await finished.finish();
      finished.abort(new Error('closed before delivery'));
      await sleep(50);
      assert.deepEqual(await readdir(scratch), []);
    }));

  it('a snapshot Raft did not take is discarded; adopting one drops older received files', () =>
    withTempDir(async (dir) => {
      const { scratch, received } = await setup(dir);
      const receive = async (metadata: SnapshotMetadata) => {
        const sink = received.sink(msgSnap(metadata));
        await sink.write(randomBytes(1000));
        return { metadata, data: await sink.finish() };
      };
      const ignored = await receive(meta(20, 3));
      received.discard(ignored);
      await sleep(50);
      assert.deepEqual(await readdir(scratch), []);
      await receive(meta(30, 3)); // taken, then replaced in Raft by a newer one before it was persisted
      const taken = await receive(meta(40, 4));
      await received.adopt(taken);
      assert.deepEqual(await readdir(scratch), []);
    }));

  it('refuses tokens that do not name a received file of that very snapshot', () =>
    withTempDir(async (dir) => {
      const { received } = await setup(dir);
      const sink = received.sink(msgSnap(meta(50, 5)));
      await sink.write(randomBytes(10));
      const token = await sink.finish();
      assert.ok(received.fileOf({ metadata: meta(50, 5), data: token }) !== undefined);
      assert.equal(received.fileOf({ metadata: meta(51, 5), data: token }), undefined, 'other index');
      assert.equal(received.fileOf({ metadata: meta(50, 6), data: token }), undefined, 'other term');
      const outside = Buffer.from('concord-received-snapshot:../../etc/passwd');
      assert.equal(received.fileOf({ metadata: meta(50, 5), data: outside }), undefined);
      assert.equal(received.fileOf({ metadata: meta(50, 5), data: randomBytes(4096) }), undefined);
    }));

  it('a failing write is reported as a storage error; the unfinished file goes', () =>
    withTempDir(async (dir) => {
      const errors: unknown[] = [];
      const { scratch, received } = await setup(dir, (error) => errors.push(error));
      const sink = received.sink(msgSnap(meta(60, 5)));
      await sink.write(randomBytes(100));
      // The scratch dir vanishes under the transfer: committing the file fails.
      const { rm } = await import('node:fs/promises');
      await rm(scratch, { recursive: true, force: true });
      await assert.rejects(async () => sink.finish());
      assert.equal(errors.length, 1);
      sink.abort(new Error('refused'));
      await sleep(50);
      assert.equal(errors.length, 1, 'what fails after the abort is not another storage error');
    }));
});

describe('received snapshots: start-up', { timeout: 60_000 }, () => {
  it('a member removes the files a crashed transfer left in its scratch and snapshot dirs', async () => {
    const cluster = await InProcessCluster.start({ size: 1 });
    try {
      await cluster.stopMember(0);
      const member = join(cluster.members[0]!.dataDir, 'member');
      mkdirSync(join(member, 'tmp'), { recursive: true });
      writeFileSync(join(member, 'tmp', 'received-0000000000000002-0000000000000100-1.snap.tmp'), 'partial');
      writeFileSync(join(member, 'tmp', 'received-0000000000000002-0000000000000090-3.snap'), 'finished');
      writeFileSync(join(member, 'snap', `${snapshotFileName(2, 0x100)}.tmp`), 'partial');
      await cluster.startMember(0);
      assert.deepEqual(await readdir(join(member, 'tmp')), []);
      assert.deepEqual(await readdir(join(member, 'snap')), []);
    } finally {
      await cluster.dispose();
    }
  });
});
