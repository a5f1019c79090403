// The seam between the Raft driver and the network. PeerTransport (TCP) and MemoryTransport (in
// process, for tests of the layers above) implement it with the same contract: send() only
// queues; delivery happens on a later turn, in order per node pair (and so per group) unless a
// link filter delays; onUnreachable / onSnapshotStatus are never called from inside send();
// close() silences every callback and releases every resource.
//
// Groups. A node hosts many Raft groups; every message travels with its group id over the one
// connection per node pair, and the receiver hands it to the endpoint registered for that group
// (addGroup). A single-group caller passes onMessage/onSnapshotStatus in the options, which
// registers DEFAULT_GROUP_ID, and sends without a group id.

import type { Message, NodeId } from '../raft/types.js';

export type LinkVerdict = 'pass' | 'drop' | { delayMs: number };

/** Fault hook: decides the fate of each message from → to, on send and again on receive. */
export type LinkFilter = (from: NodeId, to: NodeId) => LinkVerdict;

/** A Raft group's id: 0 is the metadata group, shards are 1 and up. */
export type GroupId = number;

/** The group of a single-group node: what send() without a group id and options.onMessage use. */
export const DEFAULT_GROUP_ID: GroupId = 1;

/** What one group hosted on this node receives from the transport. */
export interface GroupEndpoint {
  /** Each message for this group, in order per sending peer. */
  onMessage(message: Message): void;
  /** Outcome of a MsgSnap this group sent: raft reportSnapshot(peer, ok ? finish : failure). */
  onSnapshotStatus?(peer: NodeId, ok: boolean): void;
}

/**
 * A message arrived for a group with no endpoint on this node (a replica not created yet, or one
 * already removed). The handler may call addGroup(group, …) before it returns: the message then
 * goes to the new endpoint. Otherwise the message is dropped and counted; for a MsgSnap the
 * sender is told the snapshot failed.
 */
export type UnknownGroupHandler = (group: GroupId, message: Message) => void;

export interface Transport {
  readonly nodeId: NodeId;
  addPeer(id: NodeId, url: string): void;
  updatePeer(id: NodeId, url: string): void;
  removePeer(id: NodeId): void;
  /** Registers (or replaces) the endpoint of a group hosted on this node. */
  addGroup(group: GroupId, endpoint: GroupEndpoint): void;
  /** Later messages for the group count as unknown; its pending snapshot outcomes are dropped. */
  removeGroup(group: GroupId): void;
  /** Queues messages of one group (DEFAULT_GROUP_ID when not given). */
  send(messages: readonly Message[], group?: GroupId): void;
  setLinkFilter(filter: LinkFilter | undefined): void;
  close(): Promise<void>;
}
