// Shapes of the protobuf messages as @grpc/proto-loader hands them to us with our load options
// (keepCase, longs: String, enums: String, bytes: Buffer, defaults, oneofs): snake_case field
// names as on the wire, int64/uint64 as decimal strings, enums as their names.
// Outgoing messages may carry int64 as string or number (protobufjs accepts both).

export type WireLong = string | number;

export interface WireHeader {
  cluster_id: WireLong;
  member_id: WireLong;
  revision: WireLong;
  raft_term: WireLong;
}

export interface WireKeyValue {
  key: Buffer;
  create_revision: WireLong;
  mod_revision: WireLong;
  version: WireLong;
  value: Buffer;
  lease: WireLong;
}

export interface WireEvent {
  type: 'PUT' | 'DELETE';
  kv: WireKeyValue;
  prev_kv?: WireKeyValue | null;
}

export interface WireRangeRequest {
  key: Buffer;
  range_end: Buffer;
  limit: string;
  revision: string;
  sort_order: 'NONE' | 'ASCEND' | 'DESCEND';
  sort_target: 'KEY' | 'VERSION' | 'CREATE' | 'MOD' | 'VALUE';
  serializable: boolean;
  keys_only: boolean;
  count_only: boolean;
  min_mod_revision: string;
  max_mod_revision: string;
  min_create_revision: string;
  max_create_revision: string;
}

export interface WireRangeResponse {
  header: WireHeader;
  kvs: WireKeyValue[];
  more: boolean;
  count: WireLong;
}

export interface WirePutRequest {
  key: Buffer;
  value: Buffer;
  lease: string;
  prev_kv: boolean;
  ignore_value: boolean;
  ignore_lease: boolean;
}

export interface WirePutResponse {
  header: WireHeader;
  prev_kv?: WireKeyValue | null;
}

export interface WireDeleteRangeRequest {
  key: Buffer;
  range_end: Buffer;
  prev_kv: boolean;
}

export interface WireDeleteRangeResponse {
  header: WireHeader;
  deleted: WireLong;
  prev_kvs: WireKeyValue[];
}

export interface WireRequestOp {
  request?: 'request_range' | 'request_put' | 'request_delete_range' | 'request_txn';
  request_range?: WireRangeRequest | null;
  request_put?: WirePutRequest | null;
  request_delete_range?: WireDeleteRangeRequest | null;
  request_txn?: WireTxnRequest | null;
}

export interface WireResponseOp {
  response_range?: WireRangeResponse;
  response_put?: WirePutResponse;
  response_delete_range?: WireDeleteRangeResponse;
  response_txn?: WireTxnResponse;
}

export interface WireCompare {
  result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL';
  target: 'VERSION' | 'CREATE' | 'MOD' | 'VALUE' | 'LEASE';
  key: Buffer;
  target_union?: 'version' | 'create_revision' | 'mod_revision' | 'value' | 'lease';
  version?: string;
  create_revision?: string;
  mod_revision?: string;
  value?: Buffer;
  lease?: string;
  range_end: Buffer;
}

export interface WireTxnRequest {
  compare: WireCompare[];
  success: WireRequestOp[];
  failure: WireRequestOp[];
}

export interface WireTxnResponse {
  header: WireHeader;
  succeeded: boolean;
  responses: WireResponseOp[];
}

export interface WireCompactionRequest {
  revision: string;
  physical: boolean;
}

export interface WireWatchCreateRequest {
  key: Buffer;
  range_end: Buffer;
  start_revision: string;
  progress_notify: boolean;
  filters: Array<'NOPUT' | 'NODELETE'>;
  prev_kv: boolean;
  watch_id: string;
  fragment: boolean;
}

export interface WireWatchRequest {
  request_union?: 'create_request' | 'cancel_request' | 'progress_request';
  create_request?: WireWatchCreateRequest | null;
  cancel_request?: { watch_id: string } | null;
  progress_request?: Record<string, never> | null;
}

export interface WireWatchResponse {
  header: WireHeader;
  watch_id: WireLong;
  created: boolean;
  canceled: boolean;
  compact_revision: WireLong;
  cancel_reason: string;
  fragment: boolean;
  events: WireEvent[];
}

export interface WireMember {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner: boolean;
}

export interface WireLeaderKey {
  name: Buffer;
  key: Buffer;
  rev: string;
  lease: string;
}
