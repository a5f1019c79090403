// Prometheus metrics on /metrics, under etcd 3.4's names, types, labels and histogram buckets, so
// dashboards and alerts written for etcd work unchanged (test/e2e/metrics-vs-etcd.test.ts checks
// them against a real etcd), plus Concord's own under concord_*.
//
// Cost on the request path: none here. The server and the gRPC layer bump plain numbers
// (ServerStats, GrpcCallStats); this module copies them into prom-client when scraped. The only
// observe() calls made while serving are the histograms, once per WAL fsync, per applied batch
// and per heartbeat round trip.

import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { ApiServer } from '../api/api-server.js';
import { GRPC_CODE_NAMES } from '../api/call-stats.js';
import type { MetricsReport } from '../api/http-gateway.js';
import type { ConcordServer, MemberObservation } from '../server/server.js';
import { memoryLimitBytes } from './capacity/memory-limit.js';

/** etcd's disk histograms: prometheus.ExponentialBuckets(0.001, 2, 14), 1 ms to 8.192 s. */
export const DISK_SECONDS_BUCKETS = exponentialBuckets(0.001, 2, 14);
/** etcd's peer round-trip histogram: ExponentialBuckets(0.0001, 2, 16), 0.1 ms to 3.2768 s. */
export const PEER_RTT_SECONDS_BUCKETS = exponentialBuckets(0.0001, 2, 16);
/** The one Raft group a member runs today; labels shard="1" until sharding adds more. */
const SHARD_ID = '1';
const EVENT_LOOP_RESOLUTION_MS = 20;

export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const buckets: number[] = [];
  for (let i = 0, value = start; i < count; i++, value *= factor) buckets.push(Number(value.toPrecision(12)));
  return buckets;
}

export interface SumCount {
  sum: number;
  count: number;
}

export interface MemberMetrics {
  report(): Promise<MetricsReport>;
  /** Sums and counts of the latency histograms (the dashboard turns them into averages). */
  timings(): Promise<{ walFsync: SumCount; backendCommit: SumCount; peerRtt: Record<string, SumCount> }>;
  /** Stops the samplers (event-loop delay, GC observer). */
  close(): void;
}

/**
 * One registry for one member: the server's counters, the gRPC call counts of its client
 * listeners (`apis` may grow after this is created), and the process.
 */
export function createMemberMetrics(server: ConcordServer, apis: readonly ApiServer[]): MemberMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let observed: MemberObservation | undefined;
  // Every collect() of one scrape reads the same observation (one stat() of the db file).
  const now = (): MemberObservation => {
    observed ??= server.observation();
    return observed;
  };
  const registers = [registry];

  const gauge = (name: string, help: string, read: (o: MemberObservation) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read(now()));
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });

  new Gauge({
    name: 'process_virtual_memory_max_bytes',
    help: 'Maximum amount of virtual memory available in bytes.',
    registers,
    collect() {
      this.set(addressSpaceLimitBytes());
    },
  });

  new Gauge({
    name: 'concord_memory_limit_bytes',
    help: 'Memory the member may use: its cgroup limit, else the host total (capacity planning).',
    registers,
    collect() {
      this.set(memoryLimitBytes());
    },
  });

  // ---- etcd_server_* --------------------------------------------------------------------------
  gauge('etcd_server_has_leader', 'Whether or not a leader exists. 1 is existence, 0 is not.', (o) =>
    o.leaderId !== 0 ? 1 : 0,
  );
  gauge('etcd_server_is_leader', 'Whether or not this member is a leader. 1 if is, 0 otherwise.', (o) =>
    o.isLeader ? 1 : 0,
  );
  counter(
    'etcd_server_leader_changes_seen_total',
    'The number of leader changes seen.',
    () => server.stats.leaderChanges,
  );
  gauge(
    'etcd_server_proposals_committed_total',
    'The total number of consensus proposals committed.',
    (o) => o.commitIndex,
  );
  gauge(
    'etcd_server_proposals_applied_total',
    'The total number of consensus proposals applied.',
    (o) => o.appliedIndex,
  );
  gauge(
    'etcd_server_proposals_pending',
    'The current number of pending proposals to commit.',
    (o) => o.pendingProposals,
  );
  counter(
    'etcd_server_proposals_failed_total',
    'The total number of failed proposals seen.',
    () => now().proposalsFailed,
  );
  counter(
    'etcd_server_slow_apply_total',
    'The total number of slow apply requests (likely overloaded from slow disk).',
    () => server.stats.slowApplies,
  );
  gauge(
    'etcd_server_quota_backend_bytes',
    'Current backend storage quota size in bytes.',
    (o) => o.quotaBytes,
  );

  // ---- etcd_disk_* / etcd_mvcc_* --------------------------------------------------------------
  const walFsync = new Histogram({
    name: 'etcd_disk_wal_fsync_duration_seconds',
    help: 'The latency distributions of fsync called by WAL.',
    buckets: DISK_SECONDS_BUCKETS,
    registers,
  });
  const backendCommit = new Histogram({
    name: 'etcd_disk_backend_commit_duration_seconds',
    help: 'The latency distributions of commit called by backend.',
    buckets: DISK_SECONDS_BUCKETS,
    registers,
  });
  gauge(
    'etcd_mvcc_db_total_size_in_bytes',
    'Total size of the underlying database physically allocated in bytes.',
    (o) => o.dbSizeBytes,
  );
  gauge(
    'etcd_mvcc_db_total_size_in_use_in_bytes',
    'Total size of the underlying database logically in use in bytes.',
    (o) => o.dbSizeInUseBytes,
  );
  counter('etcd_mvcc_put_total', 'Total number of puts seen by this member.', () => server.stats.puts);
  counter(
    'etcd_mvcc_delete_total',
    'Total number of deletes seen by this member.',
    () => server.stats.deletes,
  );
  counter('etcd_mvcc_range_total', 'Total number of ranges seen by this member.', () => server.stats.ranges);
  counter('etcd_mvcc_txn_total', 'Total number of txns seen by this member.', () => server.stats.txns);
  gauge('etcd_debugging_mvcc_keys_total', 'Total number of keys.', (o) => o.keys);
  gauge('etcd_debugging_mvcc_watcher_total', 'Total number of watchers.', (o) => o.watchers);
  gauge(
    'concord_mvcc_compact_revision',
    'The revision up to which history was compacted.',
    (o) => o.compactRevision,
  );

  // ---- etcd_network_* -------------------------------------------------------------------------
  const peerRtt = new Histogram({
    name: 'etcd_network_peer_round_trip_time_seconds',
    help: 'Round-Trip-Time histogram between peers',
    labelNames: ['To'],
    buckets: PEER_RTT_SECONDS_BUCKETS,
    registers,
  });
  new Counter({
    name: 'etcd_network_peer_sent_bytes_total',
    help: 'The total number of bytes sent to peers.',
    labelNames: ['To'],
    registers,
    collect() {
      this.reset();
      for (const [id, peer] of Object.entries(now().peers)) this.inc({ To: hexId(id) }, peer.bytesSent);
    },
  });
  new Counter({
    name: 'etcd_network_peer_received_bytes_total',
    help: 'The total number of bytes received from peers.',
    labelNames: ['From'],
    registers,
    collect() {
      this.reset();
      for (const [id, peer] of Object.entries(now().peers)) this.inc({ From: hexId(id) }, peer.bytesReceived);
    },
  });

  // ---- grpc_server_* (go-grpc-prometheus) -----------------------------------------------------
  new Counter({
    name: 'grpc_server_started_total',
    help: 'Total number of RPCs started on the server.',
    labelNames: ['grpc_method', 'grpc_service', 'grpc_type'],
    registers,
    collect() {
      this.reset();
      for (const m of methodsOf(apis)) {
        this.inc({ grpc_method: m.method, grpc_service: m.service, grpc_type: m.type }, m.started);
      }
    },
  });
  new Counter({
    name: 'grpc_server_handled_total',
    help: 'Total number of RPCs completed on the server, regardless of success or failure.',
    labelNames: ['grpc_code', 'grpc_method', 'grpc_service', 'grpc_type'],
    registers,
    collect() {
      this.reset();
      for (const m of methodsOf(apis)) {
        for (let code = 0; code < GRPC_CODE_NAMES.length; code++) {
          this.inc(
            {
              grpc_code: GRPC_CODE_NAMES[code]!,
              grpc_method: m.method,
              grpc_service: m.service,
              grpc_type: m.type,
            },
            m.handled[code]!,
          );
        }
      }
    },
  });

  // ---- concord_* ------------------------------------------------------------------------------
  const shardGauge = (name: string, help: string, read: (o: MemberObservation) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['shard'],
      registers,
      collect() {
        this.set({ shard: SHARD_ID }, read(now()));
      },
    });
  shardGauge(
    'concord_shard_leader',
    'Member id of the shard leader as a number (0: none known).',
    (o) => o.leaderId,
  );
  shardGauge('concord_shard_is_leader', 'Whether this member leads the shard (1) or not (0).', (o) =>
    o.isLeader ? 1 : 0,
  );
  shardGauge('concord_shard_size_bytes', 'Bytes of the shard keyspace in use.', (o) => o.dbSizeInUseBytes);
  shardGauge('concord_shard_keys', 'Live keys in the shard.', (o) => o.keys);
  shardGauge('concord_shard_revision', 'The shard current revision.', (o) => o.revision);
  shardGauge(
    'concord_shard_apply_lag_entries',
    'Committed entries not yet applied on this member (how far reads at the newest revision wait).',
    (o) => Math.max(0, o.commitIndex - o.appliedIndex),
  );
  new Counter({
    name: 'concord_shard_requests_total',
    help: 'Requests served for the shard by kind (rate() gives the QPS).',
    labelNames: ['shard', 'kind'],
    registers,
    collect() {
      this.reset();
      const s = server.stats;
      this.inc({ shard: SHARD_ID, kind: 'put' }, s.puts);
      this.inc({ shard: SHARD_ID, kind: 'delete' }, s.deletes);
      this.inc({ shard: SHARD_ID, kind: 'txn' }, s.txns);
      this.inc({ shard: SHARD_ID, kind: 'range' }, s.ranges);
    },
  });

  const loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  loopDelay.enable();
  new Gauge({
    name: 'concord_event_loop_lag_seconds',
    help: 'Event-loop delay since the previous scrape (quantile 0.5, 0.99 and 1 = max).',
    labelNames: ['quantile'],
    registers,
    collect() {
      // The sampler adds its own resolution to every reading; report the delay beyond it.
      const lag = (ns: number) => Math.max(0, ns / 1e9 - EVENT_LOOP_RESOLUTION_MS / 1000);
      this.set({ quantile: '0.5' }, lag(loopDelay.percentile(50)));
      this.set({ quantile: '0.99' }, lag(loopDelay.percentile(99)));
      this.set({ quantile: '1' }, lag(loopDelay.max));
      loopDelay.reset();
    },
  });
  const gcPause = new Histogram({
    name: 'concord_gc_pause_seconds',
    help: 'Garbage-collection pauses of the member process.',
    labelNames: ['kind'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers,
  });
  const gcKinds = new Map<number, ReturnType<typeof gcPause.labels>>();
  const gcObserver = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = (entry as { detail?: { kind?: number } }).detail?.kind ?? 0;
      let child = gcKinds.get(kind);
      if (child === undefined) {
        child = gcPause.labels({ kind: gcKindName(kind) });
        gcKinds.set(kind, child);
      }
      child.observe(entry.duration / 1000);
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });

  // The hot path's observers: pre-bound children, no label objects per call.
  server.stats.walFsync = (seconds) => walFsync.observe(seconds);
  server.stats.backendCommit = (seconds) => backendCommit.observe(seconds);
  const rttByPeer = new Map<number, ReturnType<typeof peerRtt.labels>>();
  server.stats.peerRoundTrip = (peerId, seconds) => {
    let child = rttByPeer.get(peerId);
    if (child === undefined) {
      child = peerRtt.labels({ To: peerId.toString(16) });
      rttByPeer.set(peerId, child);
    }
    child.observe(seconds);
  };

  return {
    async timings() {
      return {
        walFsync: (await sumsCounts(walFsync, 'To'))[''] ?? { sum: 0, count: 0 },
        backendCommit: (await sumsCounts(backendCommit, 'To'))[''] ?? { sum: 0, count: 0 },
        peerRtt: await sumsCounts(peerRtt, 'To'),
      };
    },
    async report() {
      observed = undefined;
      try {
        return { contentType: registry.contentType, body: await registry.metrics() };
      } finally {
        observed = undefined;
      }
    },
    close() {
      loopDelay.disable();
      gcObserver.disconnect();
      registry.clear();
    },
  };
}

/** A histogram's _sum and _count by the value of one label ('' when it has no such label). */
async function sumsCounts(histogram: Histogram, label: string): Promise<Record<string, SumCount>> {
  const result: Record<string, SumCount> = {};
  for (const value of (await histogram.get()).values) {
    const key = String(value.labels[label] ?? '');
    const entry = result[key] ?? { sum: 0, count: 0 };
    if (value.metricName?.endsWith('_sum')) entry.sum = value.value;
    else if (value.metricName?.endsWith('_count')) entry.count = value.value;
    result[key] = entry;
  }
  return result;
}

function* methodsOf(apis: readonly ApiServer[]) {
  // Several client URLs share one set of names: sum them per method.
  if (apis.length <= 1) {
    if (apis[0] !== undefined) yield* apis[0].callStats.methods;
    return;
  }
  const merged = new Map<
    string,
    { service: string; method: string; type: string; started: number; handled: number[] }
  >();
  for (const api of apis) {
    for (const m of api.callStats.methods) {
      const key = `${m.service}/${m.method}`;
      let sum = merged.get(key);
      if (sum === undefined) {
        sum = {
          service: m.service,
          method: m.method,
          type: m.type,
          started: 0,
          handled: new Array(m.handled.length).fill(0),
        };
        merged.set(key, sum);
      }
      sum.started += m.started;
      for (let i = 0; i < m.handled.length; i++) sum.handled[i]! += m.handled[i]!;
    }
  }
  yield* merged.values();
}

/** RLIMIT_AS as Go's procfs reports it: "unlimited" is 2^64 - 1. */
function addressSpaceLimitBytes(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max address space'));
    const soft = line?.slice('Max address space'.length).trim().split(/\s+/)[0];
    if (soft === undefined) return 0;
    return soft === 'unlimited' ? 2 ** 64 : Number(soft);
  } catch {
    return 0;
  }
}

/** Member ids appear in etcd's labels in hex; the transport keys peers by decimal id. */
function hexId(decimal: string): string {
  return Number(decimal).toString(16);
}

function gcKindName(kind: number): string {
  switch (kind) {
    case 1:
      return 'minor';
    case 2:
      return 'major';
    case 4:
      return 'incremental';
    case 8:
      return 'weakcb';
    default:
      return 'other';
  }
}
