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

/** A run's network: latencies, and with faults on, loss, duplication and failing snapshot chunks. */
export function simNetworkConfig(rng: SimRng, faults: boolean): NetworkConfig {
  return {
    ...DEFAULT_NETWORK,
    latencyTailMeanUs: rng.between(200, 3000),
    lossRate: faults ? rng.pick([0, 0.01, 0.05]) : 0,
    duplicateRate: faults ? rng.pick([0, 0.01, 0.05]) : 0,
    snapshotChunkBytes: 256,
    snapshotChunkFailRate: faults ? rng.pick([0, 0.01]) : 0,
  };
}

/**
 * A transport notices a dead connection after a while and says so at most once per interval and
 * link, as a real one would; reporting instantly on every send could spin a core without virtual
 * time passing.
 */
export class UnreachableReports {
  private readonly lastUs = new Map<string, number>();

  constructor(private readonly intervalUs: number) {}

  /** Whether to report `link` unreachable now (and remember that it was). */
  due(link: string, nowUs: number): boolean {
    const last = this.lastUs.get(link);
    if (last !== undefined && nowUs - last < this.intervalUs) return false;
    this.lastUs.set(link, nowUs);
    return true;
  }
}

/** A snapshot stream that started: when it ends, and what decides whether it arrives. */
export interface SnapshotStream {
  durationUs: number;
  chunks: number;
  /** The link's cut count when the stream started: a cut meanwhile breaks it. */
  epoch: number;
  /** A chunk fails on its own, or the link was down at the start. */
  chunkFails: boolean;
}

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

  /** Starts streaming `bytes` of snapshot from→to now. */
  startSnapshotStream(from: NodeId, to: NodeId, bytes: number): SnapshotStream {
    const plan = this.planSnapshotTransfer(bytes);
    return {
      durationUs: plan.durationUs,
      chunks: plan.chunks,
      epoch: this.linkEpoch(from, to),
      chunkFails: plan.chunkFails || !this.isLinkUp(from, to),
    };
  }

  /** Whether a stream that ends now arrived: no chunk failed and the link stayed up throughout. */
  snapshotStreamArrived(
    from: NodeId,
    to: NodeId,
    stream: Pick<SnapshotStream, 'epoch' | 'chunkFails'>,
  ): boolean {
    return !stream.chunkFails && this.isLinkUp(from, to) && this.linkEpoch(from, to) === stream.epoch;
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
