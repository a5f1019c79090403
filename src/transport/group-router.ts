// The receiving side's dispatch by group id, shared by PeerTransport and MemoryTransport: one
// endpoint per group hosted on this node; a message for any other group goes to onUnknownGroup,
// which may create the group's endpoint on the spot, and is otherwise dropped and counted.

import type { Message, NodeId } from '../raft/types.js';
import { DEFAULT_GROUP_ID, type GroupEndpoint, type GroupId, type UnknownGroupHandler } from './transport.js';

/** The group options both transports take. */
export interface GroupOptions {
  /** Messages of DEFAULT_GROUP_ID: the same as addGroup(DEFAULT_GROUP_ID, { onMessage, … }). */
  onMessage?: (message: Message) => void;
  /** Snapshot outcomes of DEFAULT_GROUP_ID (with onMessage). */
  onSnapshotStatus?: (peer: NodeId, ok: boolean) => void;
  /** See UnknownGroupHandler; without it such messages are dropped and counted. */
  onUnknownGroup?: UnknownGroupHandler;
}

export function checkGroupId(group: GroupId): void {
  if (!Number.isSafeInteger(group) || group < 0)
    throw new TypeError(`group id must be a non-negative safe integer, got ${group}`);
}

export class GroupRouter {
  private readonly endpoints = new Map<GroupId, GroupEndpoint>();
  /** Messages (snapshots included) for a group with no endpoint, not created by onUnknownGroup. */
  messagesDroppedUnknownGroup = 0;

  constructor(private readonly options: GroupOptions) {
    const { onMessage, onSnapshotStatus } = options;
    if (onMessage !== undefined) this.add(DEFAULT_GROUP_ID, { onMessage, onSnapshotStatus });
  }

  add(group: GroupId, endpoint: GroupEndpoint): void {
    checkGroupId(group);
    this.endpoints.set(group, endpoint);
  }

  remove(group: GroupId): void {
    this.endpoints.delete(group);
  }

  /**
   * The endpoint for a message of `group`, after onUnknownGroup had its chance to create it;
   * undefined (and counted) when there is none.
   */
  resolve(group: GroupId, message: Message): GroupEndpoint | undefined {
    let endpoint = this.endpoints.get(group);
    if (endpoint === undefined) {
      this.options.onUnknownGroup?.(group, message);
      endpoint = this.endpoints.get(group);
    }
    if (endpoint === undefined) this.messagesDroppedUnknownGroup++;
    return endpoint;
  }

  /** Hands the message to its group; false when the group is unknown (the message is dropped). */
  deliver(group: GroupId, message: Message): boolean {
    const endpoint = this.resolve(group, message);
    endpoint?.onMessage(message);
    return endpoint !== undefined;
  }

  /** A snapshot outcome for a group that is gone is dropped: nobody waits for it any more. */
  snapshotStatus(group: GroupId, peer: NodeId, ok: boolean): void {
    this.endpoints.get(group)?.onSnapshotStatus?.(peer, ok);
  }
}
