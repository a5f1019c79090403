// Typed errors of the peer transport. `code` is stable: callers and logs match on it, not on text.

export type TransportErrorCode =
  | 'CODEC_INVALID'
  | 'CODEC_VERSION'
  | 'FRAME_TOO_LARGE'
  | 'FRAME_CRC_MISMATCH'
  | 'FRAME_UNEXPECTED'
  | 'HANDSHAKE_REJECTED'
  | 'HANDSHAKE_TIMEOUT'
  | 'CLUSTER_ID_MISMATCH'
  | 'PROTOCOL_VERSION_MISMATCH'
  | 'NODE_ID_MISMATCH'
  | 'DIAL_DIRECTION'
  | 'BAD_PEER_URL'
  | 'UNKNOWN_PEER'
  | 'UNKNOWN_GROUP'
  | 'MESSAGE_TOO_LARGE'
  | 'SNAPSHOT_CORRUPT'
  | 'SNAPSHOT_TOO_LARGE'
  | 'SNAPSHOT_BUSY'
  | 'SNAPSHOT_FAILED'
  | 'PEER_SILENT'
  | 'TLS_FAILED'
  | 'CLOSED';

export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    readonly code: TransportErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function assertNever(value: never, what: string): never {
  throw new Error(`impossible ${what}: ${String(value)}`);
}

/** Invariant check: a violated invariant is a bug, so it fails loudly instead of limping on. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`transport invariant violated: ${message}`);
}
