// Safety invariants of Raft, checked by observation. The simulator reports what each node does
// (role changes, log appends, commits, applies, snapshot installs, client acks) and the checker
// keeps just enough global history to detect, at the moment it happens, any violation of:
//   - election safety: at most one leader per term (Raft §5.2);
//   - log matching: same index and term ⇒ same entry and same history before it (§5.3);
//   - leader completeness: a leader of term T holds every entry committed by a leader of a term
//     below T (§5.4). The checker records, for each committed index, the term of the node that
//     first saw it committed: never below the term of the leader that committed it, so the check
//     is conservative (it may skip a case, it never flags a legal history);
//   - state machine safety: no two nodes apply different entries at one index (§5.4.3);
//   - commit and apply indexes never go back within one incarnation of a node;
//   - every applied entry was proposed, and no acknowledged proposal is ever lost.
// Entries are compared by a `key` the simulator derives from (type, data).
//
// Multi-Paxos runs under the same checks with terms read as ballots (a ballot has one leader, a
// promise once given in a ballot never moves, (slot, ballot) names one value). Where Raft's
// invariants rest on terms naming entries, the Paxos analogue compares values: a new leader
// re-proposes open slots in its own ballot, so a chosen value may be accepted again under a
// higher ballot. So for Paxos: committed slots and leader completeness compare keys, not terms;
// log matching keeps "one value per (slot, ballot)" but not the preceding-term rule (an acceptor
// may hold stale slots past the leader's log); and an acceptor's ballot for a slot never goes
// down (`ballot-regressed`), which is what "an acceptor never forgets an accepted value" means.

import type { HardState, NodeId } from '../raft/types.js';
import type { Consensus } from './consensus.js';
import { InvariantViolation } from './errors.js';

export interface ObservedEntry {
  index: number;
  term: number;
  key: string;
}

interface IndexTermRecord {
  key: string;
  /** Term of the entry before it in the log where it was first seen; -1 when unknown. */
  prevTerm: number;
}

/** What the checker believes one node's log looks like (including entries not yet durable). */
class LogView {
  snapshotIndex = 0;
  snapshotTerm = 0;
  terms: number[] = [];
  keys: string[] = [];

  lastIndex(): number {
    return this.snapshotIndex + this.terms.length;
  }

  /** Term at index, 0 for index 0, -1 when unknown (compacted or beyond the log). */
  termAt(index: number): number {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return -1;
    return this.terms[index - this.snapshotIndex - 1]!;
  }

  keyAt(index: number): string | undefined {
    if (index <= this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.keys[index - this.snapshotIndex - 1];
  }

  truncateFrom(index: number): void {
    const keep = Math.max(0, index - this.snapshotIndex - 1);
    this.terms.length = Math.min(this.terms.length, keep);
    this.keys.length = Math.min(this.keys.length, keep);
  }

  reset(snapshotIndex: number, snapshotTerm: number): void {
    this.snapshotIndex = snapshotIndex;
    this.snapshotTerm = snapshotTerm;
    this.terms = [];
    this.keys = [];
  }
}

interface NodeProgress {
  incarnation: number;
  commit: number;
  applied: number;
  /** Committed entries of this node's log up to here were registered globally. */
  commitRegistered: number;
  /** Pending leader-completeness check: entries committed before the election, up to this index. */
  completenessUpTo: number;
  completenessTerm: number;
  isLeader: boolean;
  /** Latest term this node was seen in. */
  term: number;
}

export interface InvariantOptions {
  /** Default 'raft'. */
  consensus?: Consensus;
}

export class InvariantChecker {
  /** Entries are named by (index, term) in Raft; in Paxos by their value. */
  private readonly termsNameEntries: boolean;
  private readonly leaderByTerm = new Map<number, NodeId>();
  private readonly byIndexTerm = new Map<string, IndexTermRecord>();
  /** Global committed entries by index (sparse below the first registered index). */
  private readonly committedKeys: string[] = [];
  private readonly committedTerms: number[] = [];
  /** Term of the node that first reported the index committed (≥ the committing leader's term). */
  private readonly committedInTerm: number[] = [];
  private committedMax = 0;
  /** Entry applied at each index, and the state machine hash after applying it. */
  private readonly appliedKeys: string[] = [];
  private readonly hashAt = new Map<number, number>();
  private readonly logs = new Map<NodeId, LogView>();
  private readonly progress = new Map<NodeId, NodeProgress>();
  private readonly proposed = new Set<string>();
  private readonly acked = new Map<number, { key: string; index: number }>();
  private ackedMax = 0;

  constructor(options: InvariantOptions = {}) {
    this.termsNameEntries = (options.consensus ?? 'raft') === 'raft';
  }

  /** Declares that a client proposed this entry key (so applying it is legitimate). */
  registerProposal(key: string): void {
    this.proposed.add(key);
  }

  get committedIndex(): number {
    return this.committedMax;
  }

  /** Highest log index of any acknowledged proposal so far. */
  get ackedIndexMax(): number {
    return this.ackedMax;
  }

  get ackedCount(): number {
    return this.acked.size;
  }

  /** A node (re)starts from durable state: its volatile history begins again. */
  startNode(
    node: NodeId,
    incarnation: number,
    durable: {
      snapshotIndex: number;
      snapshotTerm: number;
      commit: number;
      entries: ObservedEntry[];
      /** Durable current term (0 when unknown). */
      term?: number;
    },
  ): void {
    const log = this.logOf(node);
    log.reset(durable.snapshotIndex, durable.snapshotTerm);
    for (const e of durable.entries) {
      if (e.index !== log.lastIndex() + 1) {
        throw new InvariantViolation('core-contract', `node ${node} durable log has a gap at ${e.index}`);
      }
      log.terms.push(e.term);
      log.keys.push(e.key);
    }
    const previous = this.progress.get(node);
    if (previous && previous.incarnation >= incarnation) {
      throw new InvariantViolation('core-contract', `node ${node} restarted with a stale incarnation`);
    }
    this.progress.set(node, {
      incarnation,
      commit: durable.commit,
      applied: durable.snapshotIndex,
      commitRegistered: durable.snapshotIndex,
      completenessUpTo: 0,
      completenessTerm: 0,
      isLeader: false,
      term: durable.term ?? 0,
    });
    this.registerCommitted(node, durable.commit);
  }

  /** Role as seen right after an event; lastIndex is the node's whole log (stable + unstable). */
  observeRole(node: NodeId, term: number, isLeader: boolean, lastIndex: number): void {
    const p = this.progressOf(node);
    p.term = Math.max(p.term, term);
    if (!isLeader) {
      p.isLeader = false;
      p.completenessUpTo = 0;
      return;
    }
    const known = this.leaderByTerm.get(term);
    if (known !== undefined && known !== node) {
      throw new InvariantViolation(
        'leader-per-term',
        `nodes ${known} and ${node} are both leader of term ${term}`,
      );
    }
    if (p.isLeader && p.completenessTerm === term) return;
    this.leaderByTerm.set(term, node);
    p.isLeader = true;
    p.completenessTerm = term;
    p.completenessUpTo = this.committedBeforeTerm(term);
    if (lastIndex < p.completenessUpTo) {
      throw new InvariantViolation(
        'leader-completeness',
        `node ${node} became leader of term ${term} with last index ${lastIndex} but ${p.completenessUpTo} is committed`,
      );
    }
    // A Paxos leader rewrites its open slots when it takes over, all in its own ballot: until
    // those entries are seen (they may sit behind a pending fsync), the view is of its old log.
    const log = this.logOf(node);
    if (!this.termsNameEntries && log.termAt(log.lastIndex()) !== term) return;
    this.checkLeaderCompleteness(node);
  }

  /** Entries a node handed out to persist; they replace any suffix from entries[0].index on. */
  observeEntries(node: NodeId, entries: readonly ObservedEntry[]): void {
    if (entries.length === 0) return;
    const log = this.logOf(node);
    const p = this.progressOf(node);
    const first = entries[0]!.index;
    if (first > log.lastIndex() + 1) {
      throw new InvariantViolation(
        'core-contract',
        `node ${node} appends at ${first} past its last ${log.lastIndex()}`,
      );
    }
    if (first <= log.snapshotIndex) {
      throw new InvariantViolation('core-contract', `node ${node} appends at ${first} inside its snapshot`);
    }
    for (let i = first; i <= Math.min(p.commit, log.lastIndex()); i++) {
      const replaced = entries[i - first];
      const changed = this.termsNameEntries
        ? replaced?.term !== log.termAt(i)
        : replaced?.key !== log.keyAt(i);
      if (replaced && changed) {
        throw new InvariantViolation(
          'log-matching',
          `node ${node} overwrites committed entry ${i} (term ${log.termAt(i)} → ${replaced.term}; commit ${p.commit})`,
        );
      }
    }
    if (!this.termsNameEntries) this.checkBallotsKept(node, log, entries);
    log.truncateFrom(first);
    for (const e of entries) {
      if (e.index !== log.lastIndex() + 1) {
        throw new InvariantViolation('core-contract', `node ${node} appends non-contiguous entry ${e.index}`);
      }
      this.checkIndexTerm(node, e, log.termAt(e.index - 1));
      log.terms.push(e.term);
      log.keys.push(e.key);
    }
    if (p.isLeader) this.checkLeaderCompleteness(node);
  }

  /** Paxos: every slot the write replaces is rewritten at the same or a higher ballot. */
  private checkBallotsKept(node: NodeId, log: LogView, entries: readonly ObservedEntry[]): void {
    const first = entries[0]!.index;
    for (let i = Math.max(first, log.snapshotIndex + 1); i <= log.lastIndex(); i++) {
      const replaced = entries[i - first];
      if (!replaced) {
        throw new InvariantViolation(
          'ballot-regressed',
          `node ${node} drops accepted slot ${i} (log cut at ${first})`,
        );
      }
      if (replaced.term < log.termAt(i)) {
        throw new InvariantViolation(
          'ballot-regressed',
          `node ${node} rewrites slot ${i} at ballot ${replaced.term} over ballot ${log.termAt(i)}`,
        );
      }
    }
  }

  /** The node's log was replaced by a snapshot (installed from the leader). */
  observeLogSnapshot(node: NodeId, index: number, term: number): void {
    const log = this.logOf(node);
    const p = this.progressOf(node);
    this.checkCommittedAt(node, index, term, undefined);
    log.reset(index, term);
    p.commitRegistered = Math.max(p.commitRegistered, index);
  }

  /**
   * A hard state is about to become durable over `previous`. Term and durable commit never go back,
   * and a vote once cast in a term is never changed (or a node could vote twice: two leaders).
   */
  observeDurableHardState(node: NodeId, previous: HardState, next: HardState): void {
    if (next.term < previous.term) {
      throw new InvariantViolation(
        'term-regressed',
        `node ${node} persists term ${next.term} over ${previous.term}`,
      );
    }
    if (next.term === previous.term && previous.vote !== 0 && next.vote !== previous.vote) {
      throw new InvariantViolation(
        'vote-changed',
        `node ${node} changes its vote in term ${next.term} from ${previous.vote} to ${next.vote}`,
      );
    }
    if (next.commit < previous.commit) {
      throw new InvariantViolation(
        'commit-regressed',
        `node ${node} persists commit ${next.commit} over durable commit ${previous.commit}`,
      );
    }
  }

  /** The node's current term (from a Ready's hard state), before anything else in that Ready. */
  observeTerm(node: NodeId, term: number): void {
    const p = this.progressOf(node);
    p.term = Math.max(p.term, term);
  }

  /** Commit index (and current term, when known) from a Ready's hard state. */
  observeCommit(node: NodeId, commit: number, term?: number): void {
    const p = this.progressOf(node);
    if (term !== undefined) p.term = Math.max(p.term, term);
    if (commit < p.commit) {
      throw new InvariantViolation(
        'commit-regressed',
        `node ${node} commit went back from ${p.commit} to ${commit}`,
      );
    }
    p.commit = commit;
    this.registerCommitted(node, commit);
  }

  /** The node's state machine applied an entry; hash is the state machine hash after it. */
  observeApply(node: NodeId, entry: ObservedEntry, hash: number, needsProposal: boolean): void {
    const p = this.progressOf(node);
    if (entry.index !== p.applied + 1) {
      throw new InvariantViolation(
        'apply-regressed',
        `node ${node} applied index ${entry.index} after ${p.applied} (must be the next index)`,
      );
    }
    if (entry.index > p.commit) {
      throw new InvariantViolation(
        'core-contract',
        `node ${node} applied ${entry.index} beyond commit ${p.commit}`,
      );
    }
    const seen = this.appliedKeys[entry.index];
    if (seen !== undefined && seen !== entry.key) {
      throw new InvariantViolation(
        'state-machine-safety',
        `node ${node} applied ${entry.key} at index ${entry.index} where ${seen} was applied`,
      );
    }
    this.appliedKeys[entry.index] = entry.key;
    this.checkCommittedAt(node, entry.index, entry.term, entry.key);
    this.checkHash(node, entry.index, hash);
    if (needsProposal && !this.proposed.has(entry.key)) {
      throw new InvariantViolation(
        'unproposed-entry',
        `node ${node} applied ${entry.key} that nobody proposed`,
      );
    }
    p.applied = entry.index;
  }

  /** The node's state machine was replaced by a snapshot at index (hash = its state hash). */
  observeRestore(node: NodeId, index: number, hash: number): void {
    const p = this.progressOf(node);
    if (index < p.applied) {
      throw new InvariantViolation(
        'apply-regressed',
        `node ${node} restored snapshot ${index} below applied ${p.applied}`,
      );
    }
    this.checkHash(node, index, hash);
    p.applied = index;
  }

  /** A client was told its proposal succeeded: it was applied at `index` on the accepting node. */
  observeAck(proposalId: number, key: string, index: number): void {
    if (this.appliedKeys[index] !== key) {
      throw new InvariantViolation(
        'acked-proposal-lost',
        `proposal ${proposalId} acked at ${index} but not applied there`,
      );
    }
    const previous = this.acked.get(proposalId);
    if (previous && previous.index !== index) {
      throw new InvariantViolation(
        'acked-proposal-lost',
        `proposal ${proposalId} acked twice at different indexes`,
      );
    }
    this.acked.set(proposalId, { key, index });
    if (index > this.ackedMax) this.ackedMax = index;
  }

  /**
   * End of run: every acknowledged proposal is in every given state machine that has applied at
   * least up to the proposal's index.
   */
  checkNoAckLost(
    machines: ReadonlyArray<{ node: NodeId; applied: number; has(proposalId: number): boolean }>,
  ): void {
    for (const [proposalId, ack] of this.acked) {
      for (const m of machines) {
        if (m.applied >= ack.index && !m.has(proposalId)) {
          throw new InvariantViolation(
            'acked-proposal-lost',
            `node ${m.node} applied up to ${m.applied} but lacks acked proposal ${proposalId} (index ${ack.index})`,
          );
        }
      }
      if (this.appliedKeys[ack.index] !== ack.key) {
        throw new InvariantViolation(
          'acked-proposal-lost',
          `acked proposal ${proposalId} no longer at ${ack.index}`,
        );
      }
    }
  }

  /** Highest index committed by a leader of a term below `term`. */
  private committedBeforeTerm(term: number): number {
    for (let i = this.committedMax; i > 0; i--) {
      const t = this.committedInTerm[i];
      if (t !== undefined && t < term) return i;
    }
    return 0;
  }

  private checkLeaderCompleteness(node: NodeId): void {
    const p = this.progressOf(node);
    const upTo = p.completenessUpTo;
    if (upTo === 0) return;
    const log = this.logOf(node);
    if (log.lastIndex() < upTo) return; // the rest of its log is not handed out yet
    for (let i = log.snapshotIndex + 1; i <= upTo; i++) {
      const key = this.committedKeys[i];
      const inTerm = this.committedInTerm[i];
      if (inTerm === undefined || inTerm >= p.completenessTerm) continue;
      const termDiffers = this.termsNameEntries && log.termAt(i) !== this.committedTerms[i];
      if (key !== undefined && (log.keyAt(i) !== key || termDiffers)) {
        throw new InvariantViolation(
          'leader-completeness',
          `leader ${node} of term ${p.completenessTerm} lacks committed entry ${i} (${key}), has ${log.keyAt(i)}`,
        );
      }
    }
    p.completenessUpTo = 0;
  }

  private registerCommitted(node: NodeId, commit: number): void {
    const p = this.progressOf(node);
    const log = this.logOf(node);
    if (commit > log.lastIndex()) {
      throw new InvariantViolation(
        'core-contract',
        `node ${node} commit ${commit} beyond its log end ${log.lastIndex()}`,
      );
    }
    for (let i = Math.max(p.commitRegistered, log.snapshotIndex) + 1; i <= commit; i++) {
      this.checkCommittedAt(node, i, log.termAt(i), log.keyAt(i));
    }
    p.commitRegistered = Math.max(p.commitRegistered, commit);
  }

  /** Registers (or compares with) the globally committed entry at index. */
  private checkCommittedAt(node: NodeId, index: number, term: number, key: string | undefined): void {
    if (index === 0) return;
    const knownTerm = this.committedTerms[index];
    if (knownTerm !== undefined) {
      const knownKey = this.committedKeys[index];
      const termDiffers = this.termsNameEntries && knownTerm !== term;
      if (termDiffers || (key !== undefined && knownKey !== undefined && knownKey !== key)) {
        throw new InvariantViolation(
          'committed-entry-changed',
          `node ${node} has ${key ?? '?'}@term ${term} at committed index ${index}, committed was ${knownKey}@term ${knownTerm}`,
        );
      }
      if (knownKey === undefined && key !== undefined) this.committedKeys[index] = key;
      // Every observer's term is ≥ the committing leader's: the lowest one is the tightest bound.
      this.committedInTerm[index] = Math.min(this.committedInTerm[index]!, this.progressOf(node).term);
      return;
    }
    this.committedTerms[index] = term;
    this.committedInTerm[index] = this.progressOf(node).term;
    if (key !== undefined) this.committedKeys[index] = key;
    if (index > this.committedMax) this.committedMax = index;
  }

  private checkIndexTerm(node: NodeId, e: ObservedEntry, prevTerm: number): void {
    const id = `${e.index}:${e.term}`;
    const known = this.byIndexTerm.get(id);
    if (!known) {
      this.byIndexTerm.set(id, { key: e.key, prevTerm });
      return;
    }
    if (known.key !== e.key) {
      throw new InvariantViolation(
        'log-matching',
        `node ${node} has ${e.key} at index ${e.index} term ${e.term}, another log has ${known.key} there`,
      );
    }
    if (this.termsNameEntries && known.prevTerm >= 0 && prevTerm >= 0 && known.prevTerm !== prevTerm) {
      throw new InvariantViolation(
        'log-matching',
        `node ${node}: entry ${e.index}@${e.term} follows term ${prevTerm}, elsewhere term ${known.prevTerm}`,
      );
    }
    if (known.prevTerm < 0) known.prevTerm = prevTerm;
  }

  private checkHash(node: NodeId, index: number, hash: number): void {
    const known = this.hashAt.get(index);
    if (known === undefined) this.hashAt.set(index, hash);
    else if (known !== hash) {
      throw new InvariantViolation(
        'state-machine-safety',
        `node ${node} state at index ${index} has hash ${hash}, another node had ${known}`,
      );
    }
  }

  private logOf(node: NodeId): LogView {
    let log = this.logs.get(node);
    if (!log) {
      log = new LogView();
      this.logs.set(node, log);
    }
    return log;
  }

  private progressOf(node: NodeId): NodeProgress {
    const p = this.progress.get(node);
    if (!p) throw new InvariantViolation('core-contract', `node ${node} observed before it started`);
    return p;
  }
}
