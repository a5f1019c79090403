// A member's proposals to one group: every write becomes a Proposal entry carrying this member's
// id and a request id of its own, and waits (with a deadline, see waiters.ts) for the result its
// entry applied with. A write checked at an auth revision that moved on is proposed again, as
// etcd's raftRequest does.

import type { WriteOp, WriteResponse } from '../mvcc/types.js';
import type { ConfChange, ConsensusEngine, ProposeResult } from '../raft/api.js';
import { sleep } from '../util/sleep.js';
import { EtcdError } from '../wire/etcd-errors.js';
import type { AuthGate } from './auth-gate.js';
import type { AuthEffect, AuthInfo, AuthOp } from './auth-store.js';
import type { Alarm } from './members.js';
import { encodeProposal, type ServerOp } from './proposal.js';
import type { ServerStats } from './stats.js';
import type { Waiters } from './waiters.js';

/** Writes refused for an auth revision that moved on are proposed again this often at most. */
const AUTH_OLD_REVISION_RETRIES_MAX = 3;

export type ApplyOutcome =
  | { status: 'ok'; response: WriteResponse }
  | { status: 'error'; error: Error }
  | { status: 'done'; alarms?: Alarm[]; auth?: AuthEffect };

export type ResponseOf<T extends WriteResponse['type']> =
  Extract<WriteResponse, { type: T }> extends { response: infer R } ? R : never;

/** What the proposer works with: the replica's. */
export interface ProposerContext {
  readonly memberId: number;
  readonly engine: Pick<ConsensusEngine, 'propose' | 'proposeConfChange'>;
  readonly authGate: AuthGate;
  readonly stats: ServerStats;
  readonly electionTimeoutMs: number;
  /** Runs the host loop at the end of this turn. */
  schedule(): void;
  /** Throws etcd's "stopped" once the replica stopped. */
  assertServing(): void;
  /** Throws etcd's learner refusal on a learner. */
  refuseOnLearner(): void;
}

export class Proposer {
  private nextRequestId = 1;

  constructor(
    private readonly waiters: Waiters<ApplyOutcome>,
    private readonly context: ProposerContext,
  ) {}

  /** A request ID of this member's, for a membership change's context. */
  newRequestId(): number {
    return this.nextRequestId++;
  }

  async propose(op: ServerOp): Promise<ApplyOutcome> {
    this.context.assertServing();
    const requestId = this.nextRequestId++;
    const outcome = this.waiters.register(requestId);
    const result = this.context.engine.propose(
      encodeProposal({ proposer: this.context.memberId, requestId, op }),
    );
    const error = dropError(result);
    if (error !== undefined) {
      this.context.stats.proposalsFailed++;
      this.waiters.reject(requestId, error);
    }
    this.context.schedule();
    return outcome;
  }

  async write<T extends WriteResponse['type']>(
    op: WriteOp & { type: T },
    auth?: AuthInfo,
  ): Promise<ResponseOf<T>> {
    let info = auth;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.propose(this.withAuth(op, info));
      if (outcome.status === 'error') {
        // etcd's raftRequest: a write checked at an auth revision that moved on before it applied
        // is proposed again at the current one (a simple token names a user, not a revision).
        if (this.retriesAtNewAuthRevision(outcome.error, info, attempt)) {
          info = { username: info!.username, revision: this.context.authGate.store.revision };
          continue;
        }
        throw outcome.error;
      }
      if (outcome.status !== 'ok' || outcome.response.type !== op.type) {
        throw new Error(`unexpected apply outcome for ${op.type}`);
      }
      return outcome.response.response as ResponseOf<T>;
    }
  }

  private retriesAtNewAuthRevision(error: Error, info: AuthInfo | undefined, attempt: number): boolean {
    return (
      error instanceof EtcdError &&
      error.code === 'authOldRevision' &&
      info !== undefined &&
      this.context.authGate.tokenType === 'simple' &&
      attempt < AUTH_OLD_REVISION_RETRIES_MAX
    );
  }

  /** While auth is enabled a request is proposed with the user it runs as (none: user name is empty). */
  private withAuth<T extends WriteOp | { type: 'auth'; request: AuthOp }>(
    op: T,
    info: AuthInfo | undefined,
  ): ServerOp {
    if (!this.context.authGate.store.enabled && info === undefined) return op;
    if (!this.context.authGate.store.enabled && op.type !== 'auth') return op;
    return { type: 'authed', username: info?.username ?? '', authRevision: info?.revision ?? 0, op };
  }

  async proposeAuth(request: AuthOp, info: AuthInfo | undefined): Promise<AuthEffect> {
    this.context.refuseOnLearner();
    let current = info;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.propose(this.withAuth({ type: 'auth', request }, current));
      if (outcome.status === 'error') {
        if (this.retriesAtNewAuthRevision(outcome.error, current, attempt)) {
          current = { username: current!.username, revision: this.context.authGate.store.revision };
          continue;
        }
        throw outcome.error;
      }
      if (outcome.status !== 'done' || outcome.auth === undefined)
        throw new Error(`unexpected apply outcome for ${request.type}`);
      return outcome.auth;
    }
  }

  async proposeConfChange(change: ConfChange, requestId: number): Promise<void> {
    this.context.assertServing();
    const deadline = Date.now() + 2 * this.context.electionTimeoutMs + 5000;
    for (;;) {
      const outcome = this.waiters.register(requestId);
      const result = this.context.engine.proposeConfChange(change);
      this.context.schedule();
      if (result.ok) {
        await outcome;
        return;
      }
      this.waiters.reject(requestId, dropError(result) ?? new EtcdError('unhealthy'));
      await outcome.catch(() => undefined);
      // One change at a time: wait for the previous one (or the joint config) to finish.
      if (result.reason !== 'conf-change-pending' || Date.now() > deadline) throw dropError(result);
      await sleep(50);
    }
  }
}

export function dropError(result: ProposeResult): EtcdError | undefined {
  if (result.ok) return undefined;
  switch (result.reason) {
    case 'no-leader':
    case 'not-a-member':
      return new EtcdError('noLeader');
    case 'leader-transfer-in-progress':
      return new EtcdError('leaderChanged');
    case 'not-leader-forwarding-disabled':
      return new EtcdError('notLeader');
    case 'uncommitted-bytes-max':
      return new EtcdError('tooManyRequests');
    case 'conf-change-pending':
      return new EtcdError('unhealthy');
    case 'invalid-conf-change':
      // Multi-Paxos with --paxos-phase2-quorum K refuses a membership below K voters.
      return new EtcdError('memberNotEnoughStarted');
    default:
      return new EtcdError('noLeader');
  }
}
