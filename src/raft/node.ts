// STUB: the raft-core helper replaces this with the real implementation.
import type { ConfChange, ProposeResult, RaftConfig, RaftNodeApi, Ready, Status } from './api.js';
import type { ConfState, Message, NodeId } from './types.js';

export class RaftNode implements RaftNodeApi {
  constructor(readonly config: RaftConfig) {}
  tick(): void { throw new Error('not implemented'); }
  step(_message: Message): void { throw new Error('not implemented'); }
  propose(_data: Uint8Array): ProposeResult { throw new Error('not implemented'); }
  proposeConfChange(_change: ConfChange): ProposeResult { throw new Error('not implemented'); }
  readIndex(_context: Uint8Array): ProposeResult { throw new Error('not implemented'); }
  transferLeadership(_target: NodeId): void { throw new Error('not implemented'); }
  applyConfChange(_change: ConfChange): ConfState { throw new Error('not implemented'); }
  reportUnreachable(_peer: NodeId): void { throw new Error('not implemented'); }
  reportSnapshot(_peer: NodeId, _ok: boolean): void { throw new Error('not implemented'); }
  hasReady(): boolean { throw new Error('not implemented'); }
  ready(): Ready { throw new Error('not implemented'); }
  advance(_ready: Ready): void { throw new Error('not implemented'); }
  status(): Status { throw new Error('not implemented'); }
}
