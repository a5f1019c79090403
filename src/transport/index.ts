export { CODEC_VERSION, decodeBatch, encodeBatch, messageBytes } from './codec.js';
export { TransportError, type TransportErrorCode } from './errors.js';
export { MemoryNetwork, MemoryTransport, type MemoryTransportOptions } from './memory-transport.js';
export {
  backoffDelayMs,
  type PeerStats,
  PeerTransport,
  type PeerTransportOptions,
  type TransportStats,
} from './peer-transport.js';
export {
  fileSnapshotSink,
  fileSnapshotSource,
  memorySnapshotSink,
  type SnapshotSink,
  type SnapshotSinkProvider,
  type SnapshotSource,
  type SnapshotSourceProvider,
} from './snapshot.js';
export type { LinkFilter, LinkVerdict, Transport } from './transport.js';
export { DEFAULT_PEER_PORT, formatPeerUrl, type PeerAddress, parsePeerUrl } from './url.js';
export { PROTOCOL_VERSION } from './wire.js';
