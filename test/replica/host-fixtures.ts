// What RaftHost tests drive it with: a scripted core, Readies, events that stay quiet (and
// rethrow a fatal error), a sender that sends nothing.

import type { RaftNodeApi, Ready } from '../../src/raft/api.js';

/** A core that hands out the given Readies one at a time; nothing else is called. */
export function scriptedNode(readies: Ready[]): RaftNodeApi & { advanced: number } {
  const node = {
    advanced: 0,
    hasReady: () => readies.length > 0,
    ready: () => readies.shift()!,
    advance: () => {
      node.advanced++;
    },
  };
  return node as unknown as RaftNodeApi & { advanced: number };
}

export function ready(fields: Partial<Ready>): Ready {
  return {
    entries: [],
    committedEntries: [],
    messages: [],
    messagesAfterPersist: [],
    readStates: [],
    mustSync: true,
    ...fields,
  };
}

export const quietEvents = {
  onSoftState: () => {},
  onHardState: () => {},
  onReadStates: () => {},
  onApplied: () => {},
  onFatal: (error: Error) => {
    throw error;
  },
};
export const noSender = { send: () => {}, flush: () => {} };
