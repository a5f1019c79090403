// How a node is configured: etcd's flags, parsed (src/cli/flags.ts maps the command line here).

import type { AuthTokenConfig } from '../replica/auth-tokens.js';
import type { ConsensusKind } from '../replica/consensus.js';
import type { TlsSettings } from '../transport/tls-config.js';

export interface ServerConfig {
  name: string;
  dataDir: string;
  listenClientUrls: string[];
  advertiseClientUrls: string[];
  listenPeerUrls: string[];
  initialAdvertisePeerUrls: string[];
  /** name → peer URLs */
  initialCluster: Map<string, string[]>;
  initialClusterState: 'new' | 'existing';
  initialClusterToken: string;
  heartbeatIntervalMs: number;
  electionTimeoutMs: number;
  snapshotCount: number;
  /** Entries kept in the log behind each snapshot, so a briefly lagging follower catches up
   * without one (etcd's --experimental-snapshot-catchup-entries). */
  snapshotCatchUpEntries: number;
  quotaBackendBytes: number;
  maxRequestBytes: number;
  maxTxnOps: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS of the client port (etcd's --max-concurrent-streams). */
  maxConcurrentStreams?: number;
  /** Open client connections beyond which new ones are closed at accept; 0: none (Concord). */
  maxClientConnections?: number;
  /** Watchers one Watch stream may hold (Concord's --max-watchers-per-stream). */
  maxWatchersPerStream?: number;
  autoCompactionMode: 'periodic' | 'revision';
  /** For 'periodic': a duration in ms; for 'revision': a number of revisions; 0 = off. */
  autoCompactionRetention: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Where logs go: 'stderr', 'stdout', or file paths (etcd's --log-outputs). Default stderr. */
  logOutputs?: string[];
  /** An apply slower than this is logged as a warning (etcd's --warning-apply-duration); 100 ms. */
  warningApplyDurationMs?: number;
  /** Client-port TLS (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth, --auto-tls). */
  clientTls?: TlsSettings;
  /** Peer TLS (the --peer-* forms of the same flags). */
  peerTls?: TlsSettings;
  /** --auth-token: simple (the default) or jwt with its keys, sign method and ttl. */
  authToken?: AuthTokenConfig;
  /** --auth-token-ttl: seconds a simple token lives unused (default 300). */
  authTokenTtlSeconds?: number;
  /** --bcrypt-cost: the cost of password hashes (default 10). */
  bcryptCost?: number;
  /** Test-only: /debug/faults on the client URL drops or delays peer messages (Jepsen nemesis). */
  experimentalFaultInjection: boolean;
  /** Test-only bug switch: linearizable reads skip ReadIndex (the fault tests must catch it). */
  experimentalStaleReads: boolean;
  /** The cluster's consensus engine (--consensus); absent: 'raft'. See consensus.ts. */
  consensus?: ConsensusKind;
  /** Multi-Paxos only: acceptances that choose a slot (--paxos-phase2-quorum); absent: majority. */
  paxosPhase2Quorum?: number;
  /** Encryption at rest (--encryption-key-file): the key file; absent = data stored in plaintext. */
  encryptionKeyFile?: string;
}
