// The vocabulary of the keyspace: etcd v3's KV, Txn, Watch and Lease messages as plain data.
// The API layer converts protobuf messages into these types and back; the server wraps the
// write requests in raft entries and hands committed ones to Keyspace.applyBatch.
//
// Conventions (etcd's):
// - Revisions are JS numbers (safe integers; 2^53 revisions is plenty). Lease IDs are bigint
//   because etcd lease IDs are int64 and clients pick them freely.
// - An empty `rangeEnd` means the single key `key`; rangeEnd = [0x00] means every key >= key;
//   key = [0x00] with rangeEnd = [0x00] means every key.
// - Optional fields default to etcd's proto zero values (0, false, empty bytes, 'none', 'key').

import type { MvccError } from './errors.js';

export type Revision = number;
export type LeaseId = bigint;

/** No lease attached (etcd's NoLease). */
export const NO_LEASE: LeaseId = 0n;

export interface KeyValue {
  key: Uint8Array;
  /** Revision of the last creation of this key (reset when the key is deleted and put again). */
  createRevision: Revision;
  /** Revision of the last modification. */
  modRevision: Revision;
  /** Number of puts since the key was (re)created; 1 for a new key; 0 in delete events. */
  version: number;
  value: Uint8Array;
  /** Attached lease or NO_LEASE. */
  lease: LeaseId;
}

export type SortOrder = 'none' | 'ascend' | 'descend';
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';

export interface RangeRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array;
  /** Max number of kvs returned; 0 = no limit. */
  limit?: number;
  /** Read at this revision; 0 (or absent) = current revision. */
  revision?: Revision;
  sortOrder?: SortOrder;
  sortTarget?: SortTarget;
  /** Informational for the keyspace: the server decides whether the read goes through ReadIndex. */
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  /** Filters; 0 = no bound. Applied before limit; count is after filters (etcd's behaviour). */
  minModRevision?: Revision;
  maxModRevision?: Revision;
  minCreateRevision?: Revision;
  maxCreateRevision?: Revision;
}

export interface RangeResponse {
  /** Store revision at which the read was served (the current one, even for historical reads). */
  revision: Revision;
  kvs: KeyValue[];
  /** True when limit cut the result short. */
  more: boolean;
  /** Number of keys in the range (after the revision filters, before limit). */
  count: number;
}

export interface PutRequest {
  key: Uint8Array;
  value?: Uint8Array;
  lease?: LeaseId;
  prevKv?: boolean;
  /** Keep the current value; error if the key does not exist or a value is also given. */
  ignoreValue?: boolean;
  /** Keep the current lease; error if the key does not exist or a lease is also given. */
  ignoreLease?: boolean;
}

export interface PutResponse {
  revision: Revision;
  /** Present only when prevKv was requested and the key existed. */
  prevKv?: KeyValue;
}

export interface DeleteRangeRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array;
  prevKv?: boolean;
}

export interface DeleteRangeResponse {
  revision: Revision;
  deleted: number;
  /** Deleted kvs when prevKv was requested, in key order; otherwise empty. */
  prevKvs: KeyValue[];
}

export type CompareResult = 'equal' | 'greater' | 'less' | 'not-equal';

interface CompareBase {
  result: CompareResult;
  key: Uint8Array;
  /** When present and non-empty the compare applies to every key in [key, rangeEnd). */
  rangeEnd?: Uint8Array;
}

/** A txn guard. A missing key compares as version 0, create 0, mod 0, lease 0 and fails value compares. */
export type Compare =
  | (CompareBase & { target: 'version'; version: number })
  | (CompareBase & { target: 'create'; createRevision: Revision })
  | (CompareBase & { target: 'mod'; modRevision: Revision })
  | (CompareBase & { target: 'value'; value: Uint8Array })
  | (CompareBase & { target: 'lease'; lease: LeaseId });

export type CompareTarget = Compare['target'];

export type RequestOp =
  | { type: 'range'; request: RangeRequest }
  | { type: 'put'; request: PutRequest }
  | { type: 'deleteRange'; request: DeleteRangeRequest }
  | { type: 'txn'; request: TxnRequest };

export type ResponseOp =
  | { type: 'range'; response: RangeResponse }
  | { type: 'put'; response: PutResponse }
  | { type: 'deleteRange'; response: DeleteRangeResponse }
  | { type: 'txn'; response: TxnResponse };

export interface TxnRequest {
  compare: Compare[];
  success: RequestOp[];
  failure: RequestOp[];
}

export interface TxnResponse {
  revision: Revision;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface CompactionRequest {
  revision: Revision;
  /** etcd waits for the physical compaction when set; ours is always physical and synchronous. */
  physical?: boolean;
}

export interface CompactionResponse {
  revision: Revision;
}

export type EventType = 'put' | 'delete';

export interface Event {
  type: EventType;
  /** For deletes: key and modRevision (the deletion revision); other fields zero/empty. */
  kv: KeyValue;
  /** The kv before this event, when the watcher asked for prevKv and it existed. */
  prevKv?: KeyValue;
}

// ---- Leases -------------------------------------------------------------------------------

/** A lease as persisted in the keyspace (the lease/ layer owns timers and expiry decisions). */
export interface LeaseRecord {
  id: LeaseId;
  /** TTL granted, in seconds. */
  ttlSeconds: number;
  /** Remaining TTL at the last checkpoint, in seconds; 0 = never checkpointed (use ttlSeconds). */
  remainingTtlSeconds: number;
}

export interface LeaseGrantRequest {
  /** Chosen before proposal (etcd picks a random non-zero ID when the client sends 0). */
  id: LeaseId;
  ttlSeconds: number;
}

export interface LeaseGrantResponse {
  revision: Revision;
  id: LeaseId;
  ttlSeconds: number;
}

export interface LeaseRevokeRequest {
  id: LeaseId;
}

export interface LeaseRevokeResponse {
  revision: Revision;
}

export interface LeaseCheckpointRequest {
  id: LeaseId;
  remainingTtlSeconds: number;
}

export interface LeaseCheckpointResponse {
  revision: Revision;
}

// ---- Applying committed raft entries -------------------------------------------------------

/** A write that went through consensus. 'noop' only advances the applied index (conf changes, empty entries). */
export type WriteOp =
  | { type: 'put'; request: PutRequest }
  | { type: 'deleteRange'; request: DeleteRangeRequest }
  | { type: 'txn'; request: TxnRequest }
  | { type: 'compact'; request: CompactionRequest }
  | { type: 'leaseGrant'; request: LeaseGrantRequest }
  | { type: 'leaseRevoke'; request: LeaseRevokeRequest }
  | { type: 'leaseCheckpoint'; request: LeaseCheckpointRequest }
  | { type: 'noop' };

export type WriteResponse =
  | { type: 'put'; response: PutResponse }
  | { type: 'deleteRange'; response: DeleteRangeResponse }
  | { type: 'txn'; response: TxnResponse }
  | { type: 'compact'; response: CompactionResponse }
  | { type: 'leaseGrant'; response: LeaseGrantResponse }
  | { type: 'leaseRevoke'; response: LeaseRevokeResponse }
  | { type: 'leaseCheckpoint'; response: LeaseCheckpointResponse }
  | { type: 'noop'; response: { revision: Revision } };

/** One committed raft entry's operation, tagged with its raft index. */
export interface AppliedEntry {
  index: number;
  op: WriteOp;
}

/**
 * The outcome of one entry of a batch. `skipped` = index ≤ appliedIndex (already applied before a
 * restart: replay is idempotent, the original response is gone).
 */
export type ApplyResult =
  | { index: number; status: 'ok'; response: WriteResponse }
  | { index: number; status: 'error'; error: MvccError }
  | { index: number; status: 'skipped' };

export interface HashKVResult {
  /** CRC32 over every kv version with revision ≤ `revision` that survives compaction. */
  hash: number;
  compactRevision: Revision;
  /** The revision hashed (the current revision when 0 was asked). */
  revision: Revision;
}

// ---- Watch ---------------------------------------------------------------------------------

export type WatchFilter = 'noput' | 'nodelete';

export interface WatchOptions {
  prevKv?: boolean;
  filters?: WatchFilter[];
}
