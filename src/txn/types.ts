// The vocabulary of cross-shard transactions: etcd's KV requests and responses as plain data, and
// the protocol's own messages (locks, transaction records, shard commands and their results).
//
// The etcd shapes are written out here rather than imported from mvcc/ so that this layer stays
// pure and below the simulator (which may not import mvcc/). They are field for field the same
// as mvcc/types.ts, so a value of one is a value of the other (test/txn/types.test.ts checks both
// directions at compile time).

export type Revision = number;
export type LeaseId = bigint;
export type ShardId = number;
/** A transaction's id: unique per attempt (a retried txn gets a new id and keeps its priority). */
export type TxnId = string;

export interface KeyValue {
  key: Uint8Array;
  createRevision: Revision;
  modRevision: Revision;
  version: number;
  value: Uint8Array;
  lease: LeaseId;
}

export type SortOrder = 'none' | 'ascend' | 'descend';
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';

export interface RangeRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array;
  limit?: number;
  revision?: Revision;
  sortOrder?: SortOrder;
  sortTarget?: SortTarget;
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  minModRevision?: Revision;
  maxModRevision?: Revision;
  minCreateRevision?: Revision;
  maxCreateRevision?: Revision;
}

export interface RangeResponse {
  revision: Revision;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

export interface PutRequest {
  key: Uint8Array;
  value?: Uint8Array;
  lease?: LeaseId;
  prevKv?: boolean;
  ignoreValue?: boolean;
  ignoreLease?: boolean;
}

export interface PutResponse {
  revision: Revision;
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
  prevKvs: KeyValue[];
}

export type CompareResult = 'equal' | 'greater' | 'less' | 'not-equal';

interface CompareBase {
  result: CompareResult;
  key: Uint8Array;
  rangeEnd?: Uint8Array;
}

export type Compare =
  | (CompareBase & { target: 'version'; version: number })
  | (CompareBase & { target: 'create'; createRevision: Revision })
  | (CompareBase & { target: 'mod'; modRevision: Revision })
  | (CompareBase & { target: 'value'; value: Uint8Array })
  | (CompareBase & { target: 'lease'; lease: LeaseId });

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

/** A request op that touches keys (a txn's nested txns are flattened into these). */
export type LeafOp = Exclude<RequestOp, { type: 'txn' }>;
export type LeafResponse = Exclude<ResponseOp, { type: 'txn' }>;

// ---------------------------------------------------------------------------------------------
// Protocol

/**
 * Who a transaction is and where its record lives. `priority` is the wound-wait age: lower is
 * older and wins. A client that retries an aborted txn keeps its priority, so it ages until it
 * is the oldest and can no longer be wounded (no starvation).
 */
export interface TxnMeta {
  readonly id: TxnId;
  readonly primary: ShardId;
  readonly priority: number;
  /**
   * A revision from the oracle taken before any lock: the commit revision is taken after every
   * lock is held, so it is above this. A shard's resolved revision stays below it while the lock
   * is held, and a read at R ≤ startRevision may ignore the lock.
   */
  readonly startRevision: Revision;
  /** The coordinator's clock when the txn began (ms); prepares and records older than the retention are refused. */
  readonly startedAtMs: number;
}

/** One compare cut to one shard's part of its key range, with its index in the whole txn. */
export interface PartCompare {
  readonly id: number;
  readonly compare: Compare;
}

/** One leaf op cut to one shard's part of its key range, with its index in the whole txn. */
export interface PartOp {
  readonly id: number;
  readonly op: LeafOp;
}

/** A half-open key interval [start, end); an empty end is +∞. */
export interface KeyInterval {
  readonly start: Uint8Array;
  readonly end: Uint8Array;
}

/**
 * A locked interval. Read locks (compares, Ranges) exclude writers; write locks (Puts,
 * DeleteRanges) exclude everyone. Readers share: two txns that only read a key both keep it.
 */
export interface LockInterval extends KeyInterval {
  readonly write: boolean;
}

/** What one shard does for a txn: its compares, its ops of every branch, the intervals to lock. */
export interface TxnPart {
  readonly compares: readonly PartCompare[];
  readonly ops: readonly PartOp[];
  readonly locks: readonly LockInterval[];
}

/** A compare's outcome on one shard: how many keys of its range the shard has, and whether they all hold. */
export interface CompareOutcome {
  readonly id: number;
  readonly keys: number;
  readonly holds: boolean;
}

/** An op that would fail as etcd's checkTxn fails it (a put with ignore_value on a missing key, a missing lease). */
export interface OpCheckFailure {
  readonly id: number;
  readonly code: string;
  readonly message: string;
}

export type TxnRecordState =
  | { readonly status: 'pending'; readonly heartbeatAtMs: number }
  | { readonly status: 'committed'; readonly revision: Revision; readonly executed: readonly number[] }
  | { readonly status: 'aborted' };

export interface TxnRecord {
  readonly meta: TxnMeta;
  readonly state: TxnRecordState;
  /** The record shard's clock when the record was written, decided or forgotten (for retention). */
  readonly touchedAtMs: number;
  /** Every participant applied the commit: the record may be dropped after the retention. */
  readonly forgotten?: boolean;
}

/** Why someone asks a record to abort. */
export type AbortReason =
  /** The coordinator gives up (a refused prepare, a failed check, its own wound). */
  | { readonly kind: 'coordinator' }
  /** Someone met an expired lock: aborts only a record whose heartbeat is older than the TTL. */
  | { readonly kind: 'expired' }
  /** An older txn wants a lock this one holds (wound-wait): aborts a pending record younger than it. */
  | { readonly kind: 'wound'; readonly byPriority: number };

/** A command proposed to one shard's log; `nowMs` is the proposer's clock, folded into the shard's replicated clock. */
export type ShardTxnCommand =
  | { readonly type: 'prepare'; readonly meta: TxnMeta; readonly part: TxnPart; readonly nowMs: number }
  | {
      readonly type: 'commit';
      readonly meta: TxnMeta;
      readonly revision: Revision;
      readonly executed: readonly number[];
      readonly nowMs: number;
    }
  | { readonly type: 'abort'; readonly meta: TxnMeta; readonly nowMs: number }
  | { readonly type: 'record-begin'; readonly meta: TxnMeta; readonly nowMs: number }
  | { readonly type: 'record-heartbeat'; readonly txnId: TxnId; readonly nowMs: number }
  /** Every participant applied the commit: a COMMITTED record may now be dropped after the retention. */
  | { readonly type: 'record-forget'; readonly txnId: TxnId; readonly nowMs: number }
  | {
      readonly type: 'record-commit';
      readonly txnId: TxnId;
      readonly revision: Revision;
      readonly executed: readonly number[];
      readonly nowMs: number;
    }
  | {
      readonly type: 'record-abort';
      readonly meta: TxnMeta;
      readonly reason: AbortReason;
      readonly nowMs: number;
    }
  | {
      readonly type: 'single';
      readonly request: TxnRequest;
      readonly revision: Revision;
      readonly nowMs: number;
    };

/** A lock another txn holds on an interval a command needs. */
export interface LockConflict {
  readonly holder: TxnMeta;
  /** The lock's TTL has passed by the shard's clock: the holder's record may be pushed. */
  readonly expired: boolean;
}

export type PrepareResult =
  | {
      readonly status: 'prepared';
      readonly compares: readonly CompareOutcome[];
      readonly failures: readonly OpCheckFailure[];
    }
  | { readonly status: 'conflict'; readonly conflict: LockConflict }
  /** The txn was already decided here (a late or repeated prepare) or began too long ago. */
  | { readonly status: 'refused'; readonly reason: 'aborted' | 'committed' | 'too-old' };

export type CommitResult = { readonly status: 'committed'; readonly responses: readonly PartResponse[] };

export interface PartResponse {
  readonly id: number;
  readonly response: LeafResponse;
}

export type RecordResult =
  | { readonly status: 'pending'; readonly expiresAtMs: number }
  | { readonly status: 'committed'; readonly revision: Revision; readonly executed: readonly number[] }
  | { readonly status: 'aborted' }
  /** record-begin after the retention, or record-commit with no record. */
  | { readonly status: 'refused'; readonly reason: 'too-old' | 'no-record' };

export type SingleResult =
  | { readonly status: 'applied'; readonly response: TxnResponse }
  | { readonly status: 'conflict'; readonly conflict: LockConflict }
  /** The revision is not above a revision this shard already applied: take a new one. */
  | { readonly status: 'stale-revision'; readonly lastRevision: Revision }
  | { readonly status: 'failed'; readonly failure: OpCheckFailure };

export type ShardTxnResult =
  | ({ readonly type: 'prepare' } & PrepareResult)
  | ({ readonly type: 'commit' } & CommitResult)
  | { readonly type: 'abort'; readonly status: 'aborted' }
  | ({ readonly type: 'record' } & RecordResult)
  | ({ readonly type: 'single' } & SingleResult);
