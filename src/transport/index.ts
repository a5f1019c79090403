export {
  CODEC_VERSION,
  decodeBatch,
  encodeBatch,
  type GroupMessage,
  groupMessageBytes,
  messageBytes,
} from './codec.js';
export { TransportError, type TransportErrorCode } from './errors.js';
export type { GroupOptions } from './group-router.js';
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
export {
  DEFAULT_GROUP_ID,
  type GroupEndpoint,
  type GroupId,
  type LinkFilter,
  type LinkVerdict,
  type Transport,
  type UnknownGroupHandler,
} from './transport.js';
export { DEFAULT_PEER_PORT, formatPeerUrl, type PeerAddress, parsePeerUrl } from './url.js';
export { PROTOCOL_VERSION } from './wire.js';
