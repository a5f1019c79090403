import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EntryType, type Message, MessageType, message } from '../../src/raft/types.js';
import { memorySnapshotSink } from '../../src/transport/snapshot.js';
import type { GroupId } from '../../src/transport/transport.js';
import { ConnectionKind, PROTOCOL_VERSION } from '../../src/transport/wire.js';
import {
  type Harness,
  rawHello,
  snapshotMessage,
  type startTransport,
  transportsClosedAfterEach,
  waitFor,
} from './helpers.js';

// PeerTransport with many groups: one connection per node pair for all of them, one write per
// turn for all of them, and snapshots that say which group they belong to.

const node = transportsClosedAfterEach();

async function connectedPair(
  overrides: Parameters<typeof startTransport>[1] = {},
): Promise<{ a: Harness; b: Harness }> {
  const a = await node(1, overrides);
  const b = await node(2, overrides);
  a.transport.addPeer(2, b.transport.url);
  b.transport.addPeer(1, a.transport.url);
  await waitFor('connected', () => a.transport.stats().peers['2']?.connected === 1);
  return { a, b };
}

/** Endpoints for `groups` on the harness; returns what each received and its snapshot outcomes. */
function hostGroups(h: Harness, groups: GroupId[]) {
  const received = new Map<GroupId, Message[]>();
  const statuses = new Map<GroupId, boolean[]>();
  for (const group of groups) {
    received.set(group, []);
    statuses.set(group, []);
    h.transport.addGroup(group, {
      onMessage: (m) => received.get(group)!.push(m),
      onSnapshotStatus: (_peer, ok) => statuses.get(group)!.push(ok),
    });
  }
  return { received, statuses };
}

function heartbeat(from: number, to: number, term: number): Message {
  return message({ type: MessageType.Heartbeat, from, to, term });
}

describe('PeerTransport with many groups', () => {
  it('sends every group queued in one turn in ONE socket write over the one connection', async () => {
    const { a, b } = await connectedPair();
    const groups = Array.from({ length: 50 }, (_, i) => i + 2);
    const { received } = hostGroups(b, groups);
    const writesBefore = a.transport.stats().peers['2']!.writes;
    for (const group of groups) {
      a.transport.send([heartbeat(1, 2, group)], group);
      a.transport.send(
        [
          message({
            type: MessageType.Append,
            from: 1,
            to: 2,
            term: group,
            entries: [{ term: group, index: 1, type: EntryType.Normal, data: Uint8Array.of(group) }],
          }),
        ],
        group,
      );
    }
    await waitFor('delivered', () => groups.every((g) => received.get(g)!.length === 2));
    for (const group of groups) {
      assert.deepEqual(
        received.get(group)!.map((m) => [m.type, m.term]),
        [
          [MessageType.Heartbeat, group],
          [MessageType.Append, group],
        ],
      );
    }
    const stats = a.transport.stats().peers['2']!;
    assert.equal(stats.writes - writesBefore, 1, '100 messages of 50 groups: one write');
    assert.equal(stats.connects, 1);
    assert.equal(b.transport.stats().peers['1']!.connects, 1);
  });

  it('refuses a peer speaking protocol 1 (messages without group ids) at Hello', async () => {
    const b = await node(2);
    const ack = await rawHello(b.transport.url, {
      protocolVersion: 1,
      kind: ConnectionKind.Messages,
      from: 1,
      to: 2,
      clusterId: 'cluster-a',
    });
    assert.equal(PROTOCOL_VERSION, 2);
    assert.equal(ack.accepted, false);
    assert.equal(ack.errorCode, 'PROTOCOL_VERSION_MISMATCH');
    assert.ok(b.errors.some((e) => e.error.code === 'PROTOCOL_VERSION_MISMATCH' && e.peer === 1));
  });

  it('hands the group id to the snapshot source and sink, and refuses an unknown group before any data', async () => {
    const sources: GroupId[] = [];
    const sinks: GroupId[] = [];
    const { a, b } = await connectedPair({
      snapshotSource: (_m, group) => {
        sources.push(group);
        return [new Uint8Array(3000).fill(group)];
      },
      snapshotSink: (_m, group) => {
        sinks.push(group);
        return memorySnapshotSink();
      },
      chunkBytes: 1024,
    });
    const sent = hostGroups(a, [3, 8]);
    const got = hostGroups(b, [3]);
    a.transport.send([snapshotMessage(1, 2, 10)], 3);
    a.transport.send([snapshotMessage(1, 2, 20)], 8);
    await waitFor('outcomes', () => sent.statuses.get(3)!.length === 1 && sent.statuses.get(8)!.length === 1);
    assert.deepEqual(sent.statuses.get(3), [true]);
    assert.deepEqual(sent.statuses.get(8), [false], 'node 2 does not host group 8');
    assert.deepEqual(a.unreachable, [], 'a refused snapshot fails its group, not the peer for every group');
    assert.deepEqual(sinks, [3], 'no sink was opened for the unknown group');
    assert.deepEqual(sources.sort(), [3, 8]);
    const delivered = got.received.get(3)![0]!;
    assert.equal(delivered.snapshot!.metadata.index, 10);
    assert.ok(Buffer.from(delivered.snapshot!.data).equals(Buffer.alloc(3000, 3)));
    assert.equal(b.transport.stats().messagesDroppedUnknownGroup, 1);
    assert.equal(b.transport.stats().peers['1']!.snapshotsReceived, 1);
  });

  it('sends snapshots of two groups to one peer at once; a second one of the same group is busy', async () => {
    let release = (): void => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { a, b } = await connectedPair({
      snapshotSource: () =>
        (async function* () {
          await gate;
          yield Uint8Array.of(1, 2, 3);
        })(),
    });
    const sent = hostGroups(a, [3, 4]);
    const got = hostGroups(b, [3, 4]);
    a.transport.send([snapshotMessage(1, 2, 10)], 3);
    a.transport.send([snapshotMessage(1, 2, 10)], 4);
    a.transport.send([snapshotMessage(1, 2, 11)], 3);
    await waitFor('busy reported', () => sent.statuses.get(3)!.length === 1);
    assert.deepEqual(sent.statuses.get(3), [false]);
    assert.ok(a.errors.some((e) => e.error.code === 'SNAPSHOT_BUSY'));
    release();
    await waitFor(
      'both done',
      () => sent.statuses.get(3)!.length === 2 && sent.statuses.get(4)!.length === 1,
    );
    assert.deepEqual(sent.statuses.get(3), [false, true]);
    assert.deepEqual(sent.statuses.get(4), [true]);
    assert.equal(got.received.get(3)!.length, 1);
    assert.equal(got.received.get(4)!.length, 1);
  });
});
