// The node driver's durability model: only what a completed fsync wrote survives a crash, and
// messages that depend on persistence wait for it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RaftConfig, Ready } from '../../src/raft/api.js';
import { RaftNode } from '../../src/raft/node.js';
import { EntryType, type Message, MessageType, Role } from '../../src/raft/types.js';
import { RaftHost } from '../../src/replica/raft-host.js';
import { encodeProposal, entryKey } from '../../src/sim/app.js';
import { SimDisk } from '../../src/sim/disk.js';
import { InvariantChecker } from '../../src/sim/invariants.js';
import { SimRng } from '../../src/sim/rng.js';
import { type CoreFactory, SimNode, type SimNodeConfig, type SimNodeHost } from '../../src/sim/sim-node.js';

class RecordingHost implements SimNodeHost {
  readonly checker = new InvariantChecker();
  readonly tracing = false;
  readonly sent: Message[] = [];
  /** Messages not yet looked at by the test. */
  inbox: Message[] = [];
  readonly applied: number[] = [];
  private soonQueue: Array<() => void> = [];
  private fatal: Error | undefined;
  send(_from: SimNode, message: Message): void {
    this.sent.push(message);
    this.inbox.push(message);
  }
  scheduleFsync(): void {}
  soon(run: () => void): void {
    this.soonQueue.push(run);
  }
  onFatal(_node: SimNode, error: Error): void {
    this.fatal ??= error;
  }
  onProposalApplied(_node: SimNode, proposalId: number): void {
    this.applied.push(proposalId);
  }
  onConfChangeApplied(): void {}
  onReadServed(): void {}

  /** Ends the current "event" as the simulation does: the host runs until idle or waiting for its disk. */
  async settle(node: SimNode): Promise<void> {
    for (let rounds = 0; rounds < 10_000; rounds++) {
      if (node.hostRunning) {
        await null;
        continue;
      }
      const runs = this.soonQueue.splice(0);
      if (runs.length === 0) break;
      for (const run of runs) run();
    }
    if (this.fatal) throw this.fatal;
    node.afterEvent();
  }
}

/** Remembers the messages that must wait for an fsync (of Readies that need one). */
class RecordingCore extends RaftNode {
  static afterPersist: Message[] = [];
  override ready(): Ready {
    const rd = super.ready();
    if (rd.mustSync) RecordingCore.afterPersist.push(...rd.messagesAfterPersist);
    return rd;
  }
}

async function makeNode(
  host: RecordingHost,
  voters: number[],
  createCore: CoreFactory,
  hostOptions?: SimNodeConfig['hostOptions'],
): Promise<SimNode> {
  const confState = { voters, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
  const config = {
    createCore,
    electionTicks: 10,
    heartbeatTicks: 1,
    snapshotEveryEntries: 1000,
    compactionKeepEntries: 0,
    maxMessageBytes: 1 << 20,
    inflightMessagesMax: 16,
    checkQuorum: true,
    preVote: true,
    hostOptions,
  };
  const node = new SimNode(
    1,
    SimDisk.bootstrap(confState, new Uint8Array(0)),
    host,
    new SimRng(3),
    config,
    1000,
  );
  node.start();
  await host.settle(node);
  return node;
}

/** Completes fsyncs until the host has nothing left waiting for one. */
async function syncAll(host: RecordingHost, node: SimNode): Promise<void> {
  while (node.awaitingFsync) {
    node.completeFsync();
    await host.settle(node);
  }
}

async function electAlone(host: RecordingHost, node: SimNode): Promise<void> {
  for (let i = 0; i < 100 && node.role !== Role.Leader; i++) {
    node.tick();
    await host.settle(node);
    await syncAll(host, node);
  }
  assert.equal(node.role, Role.Leader);
}

const plainCore: CoreFactory = (config: RaftConfig) => new RaftNode(config);

/** Runs a 3-voter node to its real campaign: the vote it casts for itself must be persisted. */
async function campaign(host: RecordingHost, node: SimNode): Promise<void> {
  // Pre-vote needs no fsync; the real vote (new term, vote for self) does. Deliver the peers'
  // pre-vote grants by hand so the node reaches the real campaign.
  for (let i = 0; i < 100 && RecordingCore.afterPersist.length === 0; i++) {
    node.tick();
    await host.settle(node);
    for (const m of host.inbox.splice(0)) {
      if (m.type === MessageType.PreVote) {
        node.step({ ...m, type: MessageType.PreVoteResponse, from: m.to, to: m.from, entries: [] });
        await host.settle(node);
      }
    }
  }
  assert.ok(RecordingCore.afterPersist.length > 0, 'the campaign produced messages that wait for the vote');
}

const hostOf = (node: SimNode): RaftHost | undefined => node.host;

describe('SimNode', () => {
  it('is driven by the production host loop (RaftHost), a new one per incarnation', async () => {
    const host = new RecordingHost();
    const node = await makeNode(host, [1], plainCore);
    const first = node.host;
    assert.ok(first instanceof RaftHost);
    node.crash();
    assert.equal(node.host, undefined);
    node.start();
    const second = hostOf(node);
    assert.ok(second instanceof RaftHost);
    assert.notEqual(second, first);
  });

  it('entries whose fsync has not completed are lost in a crash', async () => {
    const host = new RecordingHost();
    const node = await makeNode(host, [1], plainCore);
    await electAlone(host, node);
    const durableBefore = node.disk.lastIndex();
    node.propose(encodeProposal(1, 0));
    await host.settle(node);
    assert.equal(node.awaitingFsync, true, 'the append waits for its fsync');
    node.crash();
    node.start();
    await host.settle(node);
    assert.equal(node.disk.lastIndex(), durableBefore);
    assert.equal(node.storage.lastIndex(), durableBefore);
    assert.deepEqual(host.applied, []);
  });

  it('entries survive a crash once their fsync completed, and are applied only after it', async () => {
    const host = new RecordingHost();
    const node = await makeNode(host, [1], plainCore);
    await electAlone(host, node);
    const data = encodeProposal(7, 3);
    host.checker.registerProposal(entryKey(EntryType.Normal, data));
    node.propose(data);
    await host.settle(node);
    assert.deepEqual(host.applied, []);
    await syncAll(host, node);
    assert.deepEqual(host.applied, [7]);
    const durable = node.disk.lastIndex();
    node.crash();
    node.start();
    await host.settle(node);
    assert.equal(node.storage.lastIndex(), durable);
    assert.ok(node.disk.syncs > 0);
  });

  it('messagesAfterPersist leave only after the fsync completes', async () => {
    RecordingCore.afterPersist = [];
    const host = new RecordingHost();
    const node = await makeNode(host, [1, 2, 3], (config) => new RecordingCore(config));
    await campaign(host, node);
    assert.equal(node.awaitingFsync, true);
    for (const m of RecordingCore.afterPersist) assert.ok(!host.sent.includes(m), 'sent before the fsync');
    node.completeFsync();
    await host.settle(node);
    for (const m of RecordingCore.afterPersist) assert.ok(host.sent.includes(m), 'not sent after the fsync');
  });

  it('a host built with unsafeSendBeforeFsync sends them while the fsync is still pending', async () => {
    RecordingCore.afterPersist = [];
    const host = new RecordingHost();
    const node = await makeNode(host, [1, 2, 3], (config) => new RecordingCore(config), {
      unsafeSendBeforeFsync: true,
    });
    await campaign(host, node);
    assert.equal(node.awaitingFsync, true);
    for (const m of RecordingCore.afterPersist) assert.ok(host.sent.includes(m), 'held back by the mutant');
  });
});
