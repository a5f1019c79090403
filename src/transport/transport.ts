// The seam between the Raft driver and the network. PeerTransport (TCP) and MemoryTransport (in
// process, for tests of the layers above) implement it with the same contract: send() only
// queues; delivery happens on a later turn, in order per node pair unless a link filter delays;
// onUnreachable / onSnapshotStatus are never called from inside send(); close() silences
// every callback and releases every resource.

import type { Message, NodeId } from '../raft/types.js';

export type LinkVerdict = 'pass' | 'drop' | { delayMs: number };

/** Fault hook: decides the fate of each message from → to, on send and again on receive. */
export type LinkFilter = (from: NodeId, to: NodeId) => LinkVerdict;

export interface Transport {
  readonly nodeId: NodeId;
  addPeer(id: NodeId, url: string): void;
  updatePeer(id: NodeId, url: string): void;
  removePeer(id: NodeId): void;
  send(messages: readonly Message[]): void;
  setLinkFilter(filter: LinkFilter | undefined): void;
  close(): Promise<void>;
}
