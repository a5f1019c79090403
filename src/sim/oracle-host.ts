// The timestamp oracle on a node hosting a replica of the metadata group (group 0), wired to that
// replica as the metadata leader's host wires it: `persistHighWater(mark)` is a proposal to group
// 0, resolved when this replica applies it; `confirmLeadership()` is a ReadIndex round on group 0,
// resolved when the read is served; `becomeLeader` / `stepDown` follow the replica's role, and a
// new leader starts once it has applied an entry of its own term (so every mark committed before
// its term is in its state). Requests that get no answer (a dropped proposal, a read round that
// never completes) fail after a timeout, which the oracle treats as a failed raise or round.

import { Role } from '../raft/types.js';
import { OracleNotLeaderError } from '../shard/errors.js';
import { type RevisionRange, TimestampOracle, type TimestampOracleOptions } from '../shard/oracle.js';
import { encodeMetaProposal, type MetaGroupStateMachine } from './meta-app.js';
import type { SimNode } from './sim-node.js';
import { encodeReadContext } from './simulation.js';

/** Test-only mutations of the oracle's wiring; the invariants must catch each. */
export type OracleMutation =
  /** Releases ranges without a leadership confirmation. */
  | 'skip-confirm'
  /** A new leader's first revision is the persisted mark itself, not the one above it. */
  | 'start-at-mark';

export interface OracleHostEnv {
  /** A fresh proposal id (ids are unique across the whole run). */
  nextProposalId(): number;
  /** A fresh ReadIndex request id. */
  nextReadId(): number;
  /** The metadata group's checker must know the proposal before it is applied. */
  registerMetaProposal(data: Uint8Array): void;
  /** Calls `run` after `delayUs` of virtual time if this node incarnation is still up. */
  after(delayUs: number, run: () => void): void;
  /** Promise work is starting or settling: the simulation drains microtasks before going on. */
  touch(): void;
  trace(line: string): void;
}

interface Pending {
  resolve(): void;
  reject(error: unknown): void;
}

/** Raises and rounds that get no answer within this fail (a dropped proposal, a lost round). */
export const ORACLE_REQUEST_TIMEOUT_US = 200_000;

export class OracleHost {
  readonly oracle: TimestampOracle;
  /** The group-0 term this oracle leads in (0: not leading). */
  private leadingTerm = 0;
  private readonly raises = new Map<number, Pending>();
  private readonly rounds = new Map<number, Pending>();

  constructor(
    private readonly replica: SimNode,
    private readonly env: OracleHostEnv,
    options: Pick<
      TimestampOracleOptions,
      'windowRevisions' | 'refillBelowRevisions' | 'allocateRevisionsMax'
    >,
    private readonly mutation?: OracleMutation,
  ) {
    this.oracle = new TimestampOracle({
      ...options,
      persistHighWater: (mark) => this.persistHighWater(mark),
      confirmLeadership: () =>
        this.mutation === 'skip-confirm' ? Promise.resolve() : this.confirmLeadership(),
    });
  }

  get leading(): boolean {
    return this.leadingTerm > 0 && this.oracle.isLeader;
  }

  /** Hands out a range, or fails (not the leader, leadership lost on the way, a timeout). */
  allocate(count: number): Promise<RevisionRange> {
    if (!this.leading) return Promise.reject(new OracleNotLeaderError());
    this.env.touch();
    return this.oracle.allocate(count);
  }

  /** After every event: the oracle follows the replica's role. */
  followRole(): void {
    const raft = this.replica.raft;
    if (raft === undefined) return;
    const status = raft.status();
    const term = status.hardState.term;
    if (status.softState.role !== Role.Leader || (this.leadingTerm !== 0 && this.leadingTerm !== term)) {
      if (this.leadingTerm !== 0) this.stepDown();
      if (status.softState.role !== Role.Leader) return;
    }
    if (this.leadingTerm !== 0 || !this.caughtUp(term, status.hardState.commit)) return;
    const mark = this.state().highWaterMark;
    this.leadingTerm = term;
    this.env.trace(`n${this.replica.id} oracle leads in term ${term} from mark ${mark}`);
    this.env.touch();
    this.oracle.becomeLeader(this.mutation === 'start-at-mark' ? Math.max(0, mark - 1) : mark);
  }

  /** The replica applied a proposal: a raise of this oracle resolves. */
  onApplied(proposalId: number): void {
    settle(this.raises, proposalId, this.env);
  }

  /** A ReadIndex round of this oracle was served. */
  onReadServed(readId: number): void {
    settle(this.rounds, readId, this.env);
  }

  /** The node crashed: everything pending fails. */
  stop(): void {
    if (this.leadingTerm !== 0) this.stepDown();
  }

  private stepDown(): void {
    this.env.trace(`n${this.replica.id} oracle steps down (term ${this.leadingTerm})`);
    this.leadingTerm = 0;
    this.env.touch();
    this.oracle.stepDown();
    failAll(this.raises);
    failAll(this.rounds);
  }

  /** Leads once an entry of its own term is committed and everything up to it applied. */
  private caughtUp(term: number, commit: number): boolean {
    const storage = this.replica.storage;
    if (commit > storage.lastIndex() || commit < storage.firstIndex() - 1) return false;
    return storage.term(commit) === term && this.state().appliedIndex >= commit;
  }

  private state(): MetaGroupStateMachine {
    return this.replica.app as MetaGroupStateMachine;
  }

  private persistHighWater(mark: number): Promise<void> {
    const id = this.env.nextProposalId();
    const data = encodeMetaProposal(id, { type: 'raiseOracleMark', mark });
    this.env.registerMetaProposal(data);
    return this.request(this.raises, id, () => this.replica.propose(data).ok);
  }

  private confirmLeadership(): Promise<void> {
    const id = this.env.nextReadId();
    return this.request(
      this.rounds,
      id,
      () => this.replica.withCore((raft) => raft.readIndex(encodeReadContext(id))).ok,
    );
  }

  private request(pending: Map<number, Pending>, id: number, start: () => boolean): Promise<void> {
    if (!this.leading || this.replica.raft === undefined) return Promise.reject(new OracleNotLeaderError());
    return new Promise<void>((resolve, reject) => {
      // Registered before the call: a core may answer within it.
      pending.set(id, { resolve, reject });
      if (!start()) {
        pending.delete(id);
        reject(new OracleNotLeaderError());
        return;
      }
      this.env.after(ORACLE_REQUEST_TIMEOUT_US, () => {
        const waiter = pending.get(id);
        if (waiter === undefined) return;
        pending.delete(id);
        this.env.touch();
        waiter.reject(new OracleNotLeaderError());
      });
    });
  }
}

function settle(pending: Map<number, Pending>, id: number, env: OracleHostEnv): void {
  const waiter = pending.get(id);
  if (waiter === undefined) return;
  pending.delete(id);
  env.touch();
  waiter.resolve();
}

function failAll(pending: Map<number, Pending>): void {
  const waiters = [...pending.values()];
  pending.clear();
  for (const waiter of waiters) waiter.reject(new OracleNotLeaderError());
}
