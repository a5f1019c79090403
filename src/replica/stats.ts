// What a member counts about itself for /metrics and the dashboard. The hot path only bumps
// plain number fields and, once per batch, calls an observer; the exporter (src/cli/metrics.ts)
// reads the fields when scraped and installs the observers (histograms). Nothing here allocates
// per request.

import { defaultWalIo, type WalOptions } from '../storage/wal.js';

/** Receives one duration in seconds (a histogram's observe, or nothing). */
export type SecondsObserver = (seconds: number) => void;

/** Receives one peer round trip: the peer's member id and the time in seconds. */
export type PeerSecondsObserver = (peerId: number, seconds: number) => void;

const ignoreSeconds: SecondsObserver = () => undefined;
const ignorePeerSeconds: PeerSecondsObserver = () => undefined;

export class ServerStats {
  /** Times the known leader changed to another member (the first leader counts, as in etcd). */
  leaderChanges = 0;
  /** Proposals the core refused (no leader, too large, ...) or that timed out unanswered. */
  proposalsFailed = 0;
  /** Applied put operations (every member counts what it applies, as etcd's mvcc does). */
  puts = 0;
  /** Applied delete-range operations. */
  deletes = 0;
  /** Applied write txns plus read-only txns served. */
  txns = 0;
  /** Range requests served by this member. */
  ranges = 0;
  /** Applies slower than --warning-apply-duration. */
  slowApplies = 0;

  /** One WAL fdatasync. */
  walFsync: SecondsObserver = ignoreSeconds;
  /** One LMDB write transaction of a committed batch (apply + commit). */
  backendCommit: SecondsObserver = ignoreSeconds;
  /** A heartbeat round trip measured by the leader. */
  peerRoundTrip: PeerSecondsObserver = ignorePeerSeconds;
}

/** etcd's --warning-apply-duration default. */
export const DEFAULT_WARNING_APPLY_DURATION_MS = 100;

/** The WAL options with every fdatasync timed into `stats.walFsync` (read at each call). */
export function timedWalOptions(options: WalOptions | undefined, stats: ServerStats): WalOptions {
  const datasync = options?.io?.datasync ?? defaultWalIo.datasync;
  return {
    ...options,
    io: {
      ...options?.io,
      datasync: async (fh) => {
        const startMs = performance.now();
        await datasync(fh);
        stats.walFsync((performance.now() - startMs) / 1000);
      },
    },
  };
}
