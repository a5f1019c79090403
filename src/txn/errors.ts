// Typed errors of the transaction layer, each with a stable `code`.

/** The protocol reached a state it forbids (a commit after an abort): a bug, never input. */
export class TxnInvariantError extends Error {
  readonly code = 'txn-invariant';
  constructor(message: string) {
    super(`transaction invariant broken: ${message}`);
    this.name = 'TxnInvariantError';
  }
}

/**
 * The txn was aborted before its commit point (wounded by an older txn, its locks expired, or a
 * lock stayed held past the wait budget). Nothing of it was applied; the client may retry it,
 * keeping its priority.
 */
export class TxnAbortedError extends Error {
  readonly code = 'txn-aborted';
  constructor(readonly reason: string) {
    super(`transaction aborted (${reason}); nothing was applied, retry it`);
    this.name = 'TxnAbortedError';
  }
}

/** An op of the chosen branch fails etcd's checks (a put with ignore_value on a missing key): etcd's error, nothing applied. */
export class TxnOpFailedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'TxnOpFailedError';
  }
}

/**
 * The coordinator lost track of the outcome (proposals kept failing around the commit point). The
 * txn may or may not have committed; the record decides and the resolvers finish it either way.
 * etcd answers such requests with "request timed out" too.
 */
export class TxnOutcomeUnknownError extends Error {
  readonly code = 'txn-outcome-unknown';
  constructor(readonly txnId: string) {
    super(`etcdserver: request timed out (transaction ${txnId}: outcome unknown)`);
    this.name = 'TxnOutcomeUnknownError';
  }
}
