// The leader's bookkeeping over the whole membership: the configuration (voters, possibly joint;
// learners) and one Progress per member, plus the votes of an election in progress.

import { Progress } from './progress.js';
import { jointCommittedIndex, jointVoteResult, type QuorumConfig, VoteResult } from './quorum.js';
import type { ConfState, NodeId } from './types.js';

export interface TrackerConfig {
  incoming: Set<NodeId>;
  outgoing: Set<NodeId>;
  learners: Set<NodeId>;
  /** Outgoing voters that become learners when the joint configuration is left. */
  learnersNext: Set<NodeId>;
  autoLeave: boolean;
}

export function emptyTrackerConfig(): TrackerConfig {
  return {
    incoming: new Set(),
    outgoing: new Set(),
    learners: new Set(),
    learnersNext: new Set(),
    autoLeave: false,
  };
}

export function cloneTrackerConfig(c: TrackerConfig): TrackerConfig {
  return {
    incoming: new Set(c.incoming),
    outgoing: new Set(c.outgoing),
    learners: new Set(c.learners),
    learnersNext: new Set(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

const ascending = (a: number, b: number): number => a - b;

export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig();
  progress = new Map<NodeId, Progress>();
  readonly votes = new Map<NodeId, boolean>();
  private readonly quorum: QuorumConfig;
  private readonly matchOf = (id: NodeId): number => this.progress.get(id)?.match ?? 0;

  constructor(
    readonly inflightMessagesMax: number,
    readonly inflightBytesMax: number,
  ) {
    const self = this;
    this.quorum = {
      get incoming() {
        return self.config.incoming;
      },
      get outgoing() {
        return self.config.outgoing;
      },
    };
  }

  newProgress(next: number, isLearner: boolean): Progress {
    // recentActive starts true so a fresh member is not counted against check-quorum at once.
    return new Progress(next, isLearner, this.inflightMessagesMax, this.inflightBytesMax, true);
  }

  isJoint(): boolean {
    return this.config.outgoing.size > 0;
  }

  isVoter(id: NodeId): boolean {
    return this.config.incoming.has(id) || this.config.outgoing.has(id);
  }

  isSingleVoter(id: NodeId): boolean {
    const c = this.config;
    return c.outgoing.size === 0 && c.incoming.size === 1 && c.incoming.has(id);
  }

  /** The largest index acknowledged by a quorum (of both halves when joint). */
  committed(): number {
    return jointCommittedIndex(this.quorum, this.matchOf);
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  voteResult(votes: ReadonlyMap<NodeId, boolean>): VoteResult {
    return jointVoteResult(this.quorum, votes);
  }

  /** Whether a quorum has been heard from recently (check-quorum). */
  quorumActive(self: NodeId): boolean {
    const active = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      if (pr.isLearner) continue;
      active.set(id, id === self || pr.recentActive);
    }
    return this.voteResult(active) === VoteResult.Won;
  }

  confState(): ConfState {
    const c = this.config;
    return {
      voters: [...c.incoming].sort(ascending),
      learners: [...c.learners].sort(ascending),
      votersOutgoing: [...c.outgoing].sort(ascending),
      learnersNext: [...c.learnersNext].sort(ascending),
      autoLeave: c.autoLeave,
    };
  }
}
