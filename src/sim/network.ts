// The simulated network: per-message latency from a distribution, loss, duplication, reordering
// (a consequence of independent latencies), symmetric and one-way partitions, and snapshot
// streams whose duration grows with their size and which fail if the link is cut mid-transfer.

import type { NodeId } from '../raft/types.js';
import type { SimRng } from './rng.js';

export interface NetworkConfig {
  /** Every message takes at least this long. */
  latencyMinUs: number;
  /** Mean of the exponential tail added to latencyMinUs. */
  latencyTailMeanUs: number;
  /** Probability a message is silently lost. */
  lossRate: number;
  /** Probability a delivered message arrives twice (the copy with its own latency). */
  duplicateRate: number;
  /** Snapshots are streamed in chunks of this many bytes... */
  snapshotChunkBytes: number;
  /** ...each taking this long on the wire. */
  snapshotChunkUs: number;
  /** Probability any one chunk fails (the stream breaks, the sender is told). */
  snapshotChunkFailRate: number;
}

export const DEFAULT_NETWORK: NetworkConfig = {
  latencyMinUs: 200,
  latencyTailMeanUs: 1500,
  lossRate: 0.01,
  duplicateRate: 0.01,
  snapshotChunkBytes: 1024,
  snapshotChunkUs: 500,
  snapshotChunkFailRate: 0.005,
};

export interface SnapshotTransferPlan {
  durationUs: number;
  /** True when a chunk fails on its own (independent of partitions). */
  chunkFails: boolean;
  chunks: number;
}

export class Network {
  /** Directed links that are cut, as "from>to". */
  private readonly cut = new Set<string>();
  /** Incremented each time a directed link is cut, so a transfer can tell it was interrupted. */
  private readonly epochs = new Map<string, number>();

  constructor(
    private readonly rng: SimRng,
    readonly config: NetworkConfig,
  ) {}

  isLinkUp(from: NodeId, to: NodeId): boolean {
    return from === to || !this.cut.has(linkKey(from, to));
  }

  linkEpoch(from: NodeId, to: NodeId): number {
    return this.epochs.get(linkKey(from, to)) ?? 0;
  }

  /** Cuts from→to only: from's messages to `to` are lost, the other direction still works. */
  cutOneWay(from: NodeId, to: NodeId): void {
    if (from === to) return;
    const key = linkKey(from, to);
    if (!this.cut.has(key)) {
      this.cut.add(key);
      this.epochs.set(key, (this.epochs.get(key) ?? 0) + 1);
    }
  }

  /** Cuts every link between the two groups, both directions. */
  partition(groupA: readonly NodeId[], groupB: readonly NodeId[]): void {
    for (const a of groupA) {
      for (const b of groupB) {
        this.cutOneWay(a, b);
        this.cutOneWay(b, a);
      }
    }
  }

  /** Cuts `node` off from everyone in `others`, both directions. */
  isolate(node: NodeId, others: readonly NodeId[]): void {
    this.partition([node], others);
  }

  healAll(): void {
    this.cut.clear();
  }

  get cutLinks(): number {
    return this.cut.size;
  }

  /**
   * Decides the fate of one message: the delays (µs) of each copy that will arrive; empty when the
   * message is lost. The link is checked again at delivery time by the caller.
   */
  planDelivery(from: NodeId, to: NodeId): number[] {
    if (!this.isLinkUp(from, to)) return [];
    if (this.rng.chance(this.config.lossRate)) return [];
    const first = this.latency();
    if (!this.rng.chance(this.config.duplicateRate)) return [first];
    return [first, this.latency()];
  }

  latency(): number {
    return this.config.latencyMinUs + Math.round(this.rng.exponential(this.config.latencyTailMeanUs));
  }

  planSnapshotTransfer(bytes: number): SnapshotTransferPlan {
    const chunks = Math.max(1, Math.ceil(bytes / this.config.snapshotChunkBytes));
    let chunkFails = false;
    for (let i = 0; i < chunks && !chunkFails; i++)
      chunkFails = this.rng.chance(this.config.snapshotChunkFailRate);
    return { durationUs: this.latency() + chunks * this.config.snapshotChunkUs, chunkFails, chunks };
  }
}

function linkKey(from: NodeId, to: NodeId): string {
  return `${from}>${to}`;
}
