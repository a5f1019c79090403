import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { EntryType, type Message, MessageType, message, type NodeId } from '../../src/raft/types.js';
import { MemoryNetwork } from '../../src/transport/memory-transport.js';
import { PeerTransport } from '../../src/transport/peer-transport.js';
import type { SnapshotSourceProvider } from '../../src/transport/snapshot.js';
import type { Transport } from '../../src/transport/transport.js';
import { waitFor } from './helpers.js';

// One contract, two implementations: what the Raft driver may rely on whichever it is given.

interface Node {
  transport: Transport;
  url: string;
  received: Message[];
  unreachable: NodeId[];
  snapshotStatus: Array<[NodeId, boolean]>;
}

interface Factory {
  name: string;
  make(ids: NodeId[], snapshotSource?: SnapshotSourceProvider): Promise<Node[]>;
}

function recorder(): Omit<Node, 'transport' | 'url'> {
  return { received: [], unreachable: [], snapshotStatus: [] };
}

const factories: Factory[] = [
  {
    name: 'MemoryTransport',
    async make(ids, snapshotSource) {
      const network = new MemoryNetwork();
      return ids.map((id) => {
        const r = recorder();
        const transport = network.join(id, {
          onMessage: (m) => r.received.push(m),
          onUnreachable: (p) => r.unreachable.push(p),
          onSnapshotStatus: (p, ok) => r.snapshotStatus.push([p, ok]),
          ...(snapshotSource ? { snapshotSource } : {}),
        });
        return { ...r, transport, url: `memory://${id}` };
      });
    },
  },
  {
    name: 'PeerTransport',
    async make(ids, snapshotSource) {
      const nodes: Node[] = [];
      for (const id of ids) {
        const r = recorder();
        const transport = new PeerTransport({
          nodeId: id,
          clusterId: 'contract',
          listenUrl: 'http://127.0.0.1:0',
          onMessage: (m) => r.received.push(m),
          onUnreachable: (p) => r.unreachable.push(p),
          onSnapshotStatus: (p, ok) => r.snapshotStatus.push([p, ok]),
          ...(snapshotSource ? { snapshotSource } : {}),
        });
        nodes.push({ ...r, transport, url: await transport.listen() });
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
      a!.transport.send([
        message({
          type: MessageType.Snapshot,
          from: 1,
          to: 2,
          term: 2,
          snapshot: {
            metadata: {
              index: 10,
              term: 2,
              confState: {
                voters: [1, 2],
                learners: [],
                votersOutgoing: [],
                learnersNext: [],
                autoLeave: false,
              },
            },
            data: new Uint8Array(0),
          },
        }),
      ]);
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
