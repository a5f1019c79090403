// Durable storage: the write-ahead log shared by a node's Raft groups, and snapshot files.
export * from './encryption.js';
export * from './errors.js';
export * from './snapshot-store.js';
export {
  DEFAULT_SEGMENT_BYTES,
  defaultWalIo,
  type RecoveredGroup,
  type RecoveredState,
  type TornTail,
  Wal,
  type WalIo,
  type WalOptions,
  type WalStats,
} from './wal.js';
