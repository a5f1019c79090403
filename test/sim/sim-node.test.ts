// The node driver's durability model: only what a completed fsync wrote survives a crash, and
// messages that depend on persistence wait for it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RaftConfig, Ready } from '../../src/raft/api.js';
import { RaftNode } from '../../src/raft/node.js';
import { EntryType, type Message, MessageType, Role } from '../../src/raft/types.js';
import { encodeProposal, entryKey } from '../../src/sim/app.js';
import { SimDisk } from '../../src/sim/disk.js';
import { InvariantChecker } from '../../src/sim/invariants.js';
import { SimRng } from '../../src/sim/rng.js';
import { type CoreFactory, SimNode, type SimNodeHost } from '../../src/sim/sim-node.js';

class RecordingHost implements SimNodeHost {
  readonly checker = new InvariantChecker();
  readonly sent: Message[] = [];
  /** Messages not yet looked at by the test. */
  inbox: Message[] = [];
  readonly applied: number[] = [];
  send(_from: SimNode, message: Message): void {
    this.sent.push(message);
    this.inbox.push(message);
  }
  scheduleFsync(): void {}
  onProposalApplied(_node: SimNode, proposalId: number): void {
    this.applied.push(proposalId);
  }
  onConfChangeApplied(): void {}
  onReadServed(): void {}
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

function makeNode(host: RecordingHost, voters: number[], createCore: CoreFactory): SimNode {
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
  return node;
}

function electAlone(node: SimNode): void {
  for (let i = 0; i < 100 && node.role !== Role.Leader; i++) {
    node.tick();
    while (node.hasPendingReady) node.completeFsync();
  }
  assert.equal(node.role, Role.Leader);
}

const plainCore: CoreFactory = (config: RaftConfig) => new RaftNode(config);

describe('SimNode', () => {
  it('entries whose fsync has not completed are lost in a crash', () => {
    const host = new RecordingHost();
    const node = makeNode(host, [1], plainCore);
    electAlone(node);
    const durableBefore = node.disk.lastIndex();
    node.propose(encodeProposal(1, 0));
    assert.equal(node.hasPendingReady, true, 'the append waits for its fsync');
    node.crash();
    node.start();
    assert.equal(node.disk.lastIndex(), durableBefore);
    assert.equal(node.storage.lastIndex(), durableBefore);
    assert.deepEqual(host.applied, []);
  });

  it('entries survive a crash once their fsync completed, and are applied only after it', () => {
    const host = new RecordingHost();
    const node = makeNode(host, [1], plainCore);
    electAlone(node);
    const data = encodeProposal(7, 3);
    host.checker.registerProposal(entryKey(EntryType.Normal, data));
    node.propose(data);
    assert.deepEqual(host.applied, []);
    while (node.hasPendingReady) node.completeFsync();
    assert.deepEqual(host.applied, [7]);
    const durable = node.disk.lastIndex();
    node.crash();
    node.start();
    assert.equal(node.storage.lastIndex(), durable);
    assert.ok(node.disk.syncs > 0);
  });

  it('messagesAfterPersist leave only after the fsync completes', () => {
    RecordingCore.afterPersist = [];
    const host = new RecordingHost();
    const node = makeNode(host, [1, 2, 3], (config) => new RecordingCore(config));
    // Pre-vote needs no fsync; the real vote (new term, vote for self) does. Deliver the peers'
    // pre-vote grants by hand so the node reaches the real campaign.
    for (let i = 0; i < 100 && RecordingCore.afterPersist.length === 0; i++) {
      node.tick();
      for (const m of host.inbox.splice(0)) {
        if (m.type === MessageType.PreVote) {
          node.step({ ...m, type: MessageType.PreVoteResponse, from: m.to, to: m.from, entries: [] });
        }
      }
    }
    assert.ok(RecordingCore.afterPersist.length > 0, 'the campaign produced messages that wait for the vote');
    assert.equal(node.hasPendingReady, true);
    for (const m of RecordingCore.afterPersist) assert.ok(!host.sent.includes(m), 'sent before the fsync');
    node.completeFsync();
    for (const m of RecordingCore.afterPersist) assert.ok(host.sent.includes(m), 'not sent after the fsync');
  });
});
