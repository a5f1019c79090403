// STUB: the raft-core helper replaces this with the real implementation.
import type { RaftStorage } from './api.js';
import type { ConfState, Entry, HardState, Snapshot } from './types.js';

/** In-memory RaftStorage used by tests, the simulator, and the server as its log cache. */
export class MemoryStorage implements RaftStorage {
  initialState(): { hardState: HardState; confState: ConfState } { throw new Error('not implemented'); }
  entries(_lo: number, _hi: number, _maxBytes: number): Entry[] { throw new Error('not implemented'); }
  term(_index: number): number { throw new Error('not implemented'); }
  firstIndex(): number { throw new Error('not implemented'); }
  lastIndex(): number { throw new Error('not implemented'); }
  snapshot(): Snapshot { throw new Error('not implemented'); }
  /** Appends entries that are already durable, truncating any conflicting suffix. */
  append(_entries: Entry[]): void { throw new Error('not implemented'); }
  setHardState(_hardState: HardState): void { throw new Error('not implemented'); }
  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(_snapshot: Snapshot): void { throw new Error('not implemented'); }
  /** Records a snapshot the application took at `index` (≤ applied). */
  createSnapshot(_index: number, _confState: ConfState, _data: Uint8Array): Snapshot { throw new Error('not implemented'); }
  /** Discards entries before `index` (they are covered by a snapshot). */
  compact(_index: number): void { throw new Error('not implemented'); }
}
