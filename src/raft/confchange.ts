// STUB: the raft-core helper replaces this with the real implementation.
import type { ConfChange } from './api.js';

/** Encodes a ConfChange as the data of an EntryType.ConfChange entry. */
export function encodeConfChange(_change: ConfChange): Uint8Array { throw new Error('not implemented'); }
export function decodeConfChange(_data: Uint8Array): ConfChange { throw new Error('not implemented'); }
