import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { EntryType, type Message, MessageType, message, type NodeId } from '../../src/raft/types.js';
import { MemoryNetwork } from '../../src/transport/memory-transport.js';
import { PeerTransport } from '../../src/transport/peer-transport.js';
import type { SnapshotSourceProvider } from '../../src/transport/snapshot.js';
import type { GroupId, Transport, UnknownGroupHandler } from '../../src/transport/transport.js';
import { snapshotMessage, waitFor } from './helpers.js';

// One contract, two implementations: what the Raft driver may rely on whichever it is given.

/** What one group's endpoint on a node received. */
interface GroupRecord {
  received: Message[];
  snapshotStatus: Array<[NodeId, boolean]>;
}

interface Node extends GroupRecord {
  transport: Transport;
  url: string;
  unreachable: NodeId[];
  /** Messages for groups without an endpoint, as onUnknownGroup saw them. */
  unknown: Array<[GroupId, MessageType]>;
  /** onUnknownGroup creates the group's endpoint (as a node creating a replica would). */
  adoptUnknown: boolean;
  groups: Map<GroupId, GroupRecord>;
  droppedUnknownGroup(): number;
}

interface Factory {
  name: string;
  make(ids: NodeId[], snapshotSource?: SnapshotSourceProvider): Promise<Node[]>;
}

/** Registers an endpoint for `group` on the node that records what reaches it. */
function host(node: Node, group: GroupId): GroupRecord {
  const record: GroupRecord = { received: [], snapshotStatus: [] };
  node.transport.addGroup(group, {
    onMessage: (m) => record.received.push(m),
    onSnapshotStatus: (p, ok) => record.snapshotStatus.push([p, ok]),
  });
  node.groups.set(group, record);
  return record;
}

/** Node fields and the transport options that fill them (group 1 through options.onMessage). */
function recorder() {
  const node = {
    received: [],
    unreachable: [],
    snapshotStatus: [],
    unknown: [],
    adoptUnknown: false,
    groups: new Map(),
  } as unknown as Node;
  const onUnknownGroup: UnknownGroupHandler = (group, m) => {
    node.unknown.push([group, m.type]);
    if (node.adoptUnknown) host(node, group);
  };
  const options = {
    onMessage: (m: Message) => node.received.push(m),
    onUnreachable: (p: NodeId) => node.unreachable.push(p),
    onSnapshotStatus: (p: NodeId, ok: boolean) => node.snapshotStatus.push([p, ok]),
    onUnknownGroup,
  };
  return { node, options };
}

const factories: Factory[] = [
  {
    name: 'MemoryTransport',
    async make(ids, snapshotSource) {
      const network = new MemoryNetwork();
      return ids.map((id) => {
        const { node, options } = recorder();
        const transport = network.join(id, { ...options, ...(snapshotSource ? { snapshotSource } : {}) });
        return Object.assign(node, {
          transport,
          url: `memory://${id}`,
          droppedUnknownGroup: () => transport.stats().messagesDroppedUnknownGroup,
        });
      });
    },
  },
  {
    name: 'PeerTransport',
    async make(ids, snapshotSource) {
      const nodes: Node[] = [];
      for (const id of ids) {
        const { node, options } = recorder();
        const transport = new PeerTransport({
          nodeId: id,
          clusterId: 'contract',
          listenUrl: 'http://127.0.0.1:0',
          ...options,
          ...(snapshotSource ? { snapshotSource } : {}),
        });
        const url = await transport.listen();
        nodes.push(
          Object.assign(node, {
            transport,
            url,
            droppedUnknownGroup: () => transport.stats().messagesDroppedUnknownGroup,
          }),
        );
      }
      return nodes;
    },
  },
];

const open: Transport[] = [];
afterEach(async () => {
  for (const t of open.splice(0)) await t.close();
});

async function cluster(factory: Factory, ids: NodeId[], source?: SnapshotSourceProvider): Promise<Node[]> {
  const nodes = await factory.make(ids, source);
  open.push(...nodes.map((n) => n.transport));
  for (const a of nodes) for (const b of nodes) if (a !== b) a.transport.addPeer(b.transport.nodeId, b.url);
  return nodes;
}

function append(from: number, to: number, index: number): Message {
  return message({
    type: MessageType.Append,
    from,
    to,
    term: 1,
    index,
    entries: [{ term: 1, index: index + 1, type: EntryType.Normal, data: Uint8Array.of(index & 0xff, 1, 2) }],
  });
}

for (const factory of factories) {
  describe(`Transport contract: ${factory.name}`, () => {
    it('delivers in order per pair, never from inside send()', async () => {
      const [a, b] = await cluster(factory, [1, 2]);
      for (let i = 1; i <= 50; i++) a!.transport.send([append(1, 2, i)]);
      assert.equal(b!.received.length, 0, 'nothing is delivered synchronously');
      await waitFor('delivered', () => b!.received.length === 50);
      assert.deepEqual(
        b!.received.map((m) => m.index),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      assert.deepEqual(Array.from(b!.received[4]!.entries[0]!.data), [5, 1, 2]);
    });

    it('reports an unknown peer unreachable on a later turn', async () => {
      const [a] = await cluster(factory, [1]);
      a!.transport.send([append(1, 9, 1)]);
      assert.deepEqual(a!.unreachable, []);
      await waitFor('unreachable', () => a!.unreachable.includes(9));
    });

    it('delivers a snapshot from a source provider and reports success', async () => {
      const source: SnapshotSourceProvider = () => [Uint8Array.of(1, 2), Uint8Array.of(3)];
      const [a, b] = await cluster(factory, [1, 2], source);
      a!.transport.send([snapshotMessage(1, 2, 10)]);
      await waitFor('status', () => a!.snapshotStatus.length === 1);
      assert.deepEqual(a!.snapshotStatus, [[2, true]]);
      assert.deepEqual(Array.from(b!.received[0]!.snapshot!.data), [1, 2, 3]);
    });

    it('drops what the link filter drops', async () => {
      const [a, b] = await cluster(factory, [1, 2]);
      a!.transport.setLinkFilter(() => 'drop');
      a!.transport.send([append(1, 2, 1)]);
      a!.transport.setLinkFilter(undefined);
      a!.transport.send([append(1, 2, 2)]);
      await waitFor('second delivered', () => b!.received.length === 1);
      assert.equal(b!.received[0]!.index, 2);
    });

    it('carries several groups between one pair, each to its own endpoint, in order per group', async () => {
      const [a, b] = await cluster(factory, [1, 2]);
      const b7 = host(b!, 7);
      const b0 = host(b!, 0);
      for (let i = 1; i <= 30; i++) {
        a!.transport.send([append(1, 2, i)], 7);
        a!.transport.send([append(1, 2, 100 + i)], 0);
        if (i % 3 === 0) a!.transport.send([append(1, 2, 200 + i)]);
      }
      await waitFor(
        'all delivered',
        () => b7.received.length + b0.received.length + b!.received.length === 70,
      );
      const indexes = (ms: Message[]): number[] => ms.map((m) => m.index);
      assert.deepEqual(
        indexes(b7.received),
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      assert.deepEqual(
        indexes(b0.received),
        Array.from({ length: 30 }, (_, i) => 101 + i),
      );
      assert.deepEqual(
        indexes(b!.received),
        Array.from({ length: 10 }, (_, i) => 203 + 3 * i),
        'send() without a group id is group 1, the options.onMessage endpoint',
      );
      assert.equal(b!.droppedUnknownGroup(), 0);
    });

    it('refuses a group id that is not a non-negative safe integer, at send and at addGroup', async () => {
      const [a] = await cluster(factory, [1, 2]);
      for (const bad of [-1, 1.5, 2 ** 53, Number.NaN]) {
        assert.throws(() => a!.transport.send([append(1, 2, 1)], bad), TypeError);
        assert.throws(() => a!.transport.addGroup(bad, { onMessage: () => {} }), TypeError);
      }
    });

    it('drops and counts a message for a group the receiver does not host', async () => {
      const [a, b] = await cluster(factory, [1, 2]);
      a!.transport.send([append(1, 2, 1)], 9);
      a!.transport.send([append(1, 2, 2)]);
      await waitFor('group 1 delivered', () => b!.received.length === 1);
      await waitFor('counted', () => b!.droppedUnknownGroup() === 1);
      assert.deepEqual(b!.unknown, [[9, MessageType.Append]]);
      assert.equal(b!.received[0]!.index, 2);
      b!.transport.removeGroup(1);
      a!.transport.send([append(1, 2, 3)]);
      await waitFor('removed group counted', () => b!.droppedUnknownGroup() === 2);
      assert.equal(b!.received.length, 1, 'nothing reaches a removed endpoint');
    });

    it('delivers to the endpoint onUnknownGroup creates for the message that asked for it', async () => {
      const [a, b] = await cluster(factory, [1, 2]);
      b!.adoptUnknown = true;
      a!.transport.send([append(1, 2, 1), append(1, 2, 2)], 5);
      await waitFor('delivered', () => (b!.groups.get(5)?.received.length ?? 0) === 2);
      assert.deepEqual(b!.unknown, [[5, MessageType.Append]], 'asked once, for the first message');
      assert.equal(b!.droppedUnknownGroup(), 0);
    });

    it('streams a snapshot of a group to that group, and reports its outcome to that group only', async () => {
      const source: SnapshotSourceProvider = (_m, group) => [Uint8Array.of(group, 1), Uint8Array.of(2)];
      const [a, b] = await cluster(factory, [1, 2], source);
      const a4 = host(a!, 4);
      const b4 = host(b!, 4);
      a!.transport.send([snapshotMessage(1, 2, 10)], 4);
      await waitFor('status', () => a4.snapshotStatus.length === 1);
      assert.deepEqual(a4.snapshotStatus, [[2, true]]);
      assert.deepEqual(Array.from(b4.received[0]!.snapshot!.data), [4, 1, 2]);
      assert.equal(b4.received[0]!.snapshot!.metadata.index, 10);
      assert.deepEqual(a!.snapshotStatus, [], 'group 1 hears nothing of group 4');
      assert.deepEqual(b!.received, []);
    });

    it('fails a snapshot for a group the receiver does not host', async () => {
      const [a, b] = await cluster(factory, [1, 2], () => [Uint8Array.of(1)]);
      const a6 = host(a!, 6);
      a!.transport.send([snapshotMessage(1, 2, 10)], 6);
      await waitFor('status', () => a6.snapshotStatus.length === 1);
      assert.deepEqual(a6.snapshotStatus, [[2, false]]);
      assert.deepEqual(b!.unknown, [[6, MessageType.Snapshot]]);
      assert.equal(b!.droppedUnknownGroup(), 1);
    });

    it('goes quiet after close()', async () => {
      const [a, b] = await cluster(factory, [1, 2]);
      a!.transport.send([append(1, 2, 1)]);
      await b!.transport.close();
      await new Promise((resolve) => setTimeout(resolve, 30));
      assert.equal(b!.received.length, 0);
      assert.throws(() => b!.transport.send([append(2, 1, 1)]));
    });
  });
}
