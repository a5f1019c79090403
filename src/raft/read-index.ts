// Batched ReadIndex (Raft thesis §6.4): every read request that arrives between two flushes joins
// one round; the round's heartbeats carry its id as context, and once a quorum has answered that
// round (or a later one) all its requests are safe at the commit index recorded when it began.

import type { NodeId } from './types.js';

export interface ReadRequest {
  /** NONE (0) or the leader's own id for local requests; a follower's id for forwarded ones. */
  from: NodeId;
  context: Uint8Array;
}

interface ReadRound {
  id: number;
  index: number;
  requests: ReadRequest[];
  acks: Map<NodeId, boolean>;
}

/** Rounds awaiting a quorum beyond this are dropped oldest first (their clients time out and retry). */
export const READ_ROUNDS_PENDING_MAX = 1024;
/** Requests queued for the next round; beyond this, new requests are refused. */
export const READ_REQUESTS_BATCH_MAX = 65536;

export function encodeRoundContext(id: number): Uint8Array {
  const buf = new Uint8Array(8);
  new DataView(buf.buffer).setFloat64(0, id);
  return buf;
}

export function decodeRoundContext(ctx: Uint8Array): number {
  if (ctx.byteLength !== 8) return -1;
  return new DataView(ctx.buffer, ctx.byteOffset, 8).getFloat64(0);
}

export class ReadIndexBatcher {
  private batch: ReadRequest[] = [];
  private rounds: ReadRound[] = [];
  private nextRoundId = 1;

  add(request: ReadRequest): boolean {
    if (this.batch.length >= READ_REQUESTS_BATCH_MAX) return false;
    this.batch.push(request);
    return true;
  }

  hasBatch(): boolean {
    return this.batch.length > 0;
  }

  /** Starts a round for the queued requests at `index`; returns its heartbeat context. */
  startRound(index: number, self: NodeId): Uint8Array {
    const round: ReadRound = {
      id: this.nextRoundId++,
      index,
      requests: this.batch,
      acks: new Map([[self, true]]),
    };
    this.batch = [];
    this.rounds.push(round);
    if (this.rounds.length > READ_ROUNDS_PENDING_MAX) this.rounds.shift();
    return encodeRoundContext(round.id);
  }

  /** The context of the newest round still waiting, for regular heartbeats to carry. */
  lastPendingContext(): Uint8Array | undefined {
    const last = this.rounds[this.rounds.length - 1];
    return last ? encodeRoundContext(last.id) : undefined;
  }

  /**
   * Records that `from` answered round `ctx`; `quorumReached` decides with the acks. Returns the
   * rounds now safe (this one and every earlier one), oldest first.
   */
  ack(
    ctx: Uint8Array,
    from: NodeId,
    quorumReached: (acks: ReadonlyMap<NodeId, boolean>) => boolean,
  ): { index: number; requests: ReadRequest[] }[] {
    const id = decodeRoundContext(ctx);
    const pos = this.rounds.findIndex((r) => r.id === id);
    if (pos < 0) return [];
    const round = this.rounds[pos]!;
    round.acks.set(from, true);
    if (!quorumReached(round.acks)) return [];
    // A quorum that acknowledged this round was still following us after every earlier round began.
    return this.rounds.splice(0, pos + 1);
  }

  reset(): void {
    this.batch = [];
    this.rounds = [];
  }
}
