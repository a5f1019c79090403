import type { ConfState, Entry } from './types.js';

/** Fixed per-entry overhead counted in byte limits (index, term, type, framing). */
export const ENTRY_OVERHEAD_BYTES = 24;

export function entryBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

export function entriesBytes(entries: readonly Entry[]): number {
  let size = 0;
  for (let i = 0; i < entries.length; i++) size += entries[i]!.data.byteLength + ENTRY_OVERHEAD_BYTES;
  return size;
}

/** Bytes of payload only, as counted against uncommittedBytesMax. */
export function payloadBytes(entries: readonly Entry[]): number {
  let size = 0;
  for (let i = 0; i < entries.length; i++) size += entries[i]!.data.byteLength;
  return size;
}

export function cloneConfState(cs: ConfState): ConfState {
  return {
    voters: [...cs.voters],
    learners: [...cs.learners],
    votersOutgoing: [...cs.votersOutgoing],
    learnersNext: [...cs.learnersNext],
    autoLeave: cs.autoLeave,
  };
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
