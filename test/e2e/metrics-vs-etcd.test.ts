// /metrics against a real etcd 3.4: every metric operators' dashboards and alerts use (issue 18's
// list) exists on Concord under the same name, with the same type, label names and histogram
// buckets as etcd exports it; and Concord's counters move when the cluster serves writes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { type ProcessCluster, startConcordCluster } from '../support/cluster.js';
import { etcdAvailable, startEtcdCluster } from '../support/etcd-cluster.js';
import { etcdctlOk } from '../support/etcdctl.js';
import { gatewayPost, pollUntil } from '../support/process-cluster.js';
import { type MetricFamily, sampleValue, scrapeMetrics } from '../support/prometheus-text.js';

/** The names issue 18 lists; process_* are those etcd (Go) exports, compared as well. */
const ETCD_METRICS = [
  'etcd_server_has_leader',
  'etcd_server_is_leader',
  'etcd_server_leader_changes_seen_total',
  'etcd_server_proposals_committed_total',
  'etcd_server_proposals_applied_total',
  'etcd_server_proposals_pending',
  'etcd_server_proposals_failed_total',
  'etcd_server_slow_apply_total',
  'etcd_server_quota_backend_bytes',
  'etcd_disk_wal_fsync_duration_seconds',
  'etcd_disk_backend_commit_duration_seconds',
  'etcd_mvcc_db_total_size_in_bytes',
  'etcd_mvcc_db_total_size_in_use_in_bytes',
  'etcd_mvcc_put_total',
  'etcd_mvcc_delete_total',
  'etcd_mvcc_range_total',
  'etcd_mvcc_txn_total',
  'etcd_debugging_mvcc_keys_total',
  'etcd_debugging_mvcc_watcher_total',
  'etcd_network_peer_round_trip_time_seconds',
  'etcd_network_peer_sent_bytes_total',
  'etcd_network_peer_received_bytes_total',
  'grpc_server_started_total',
  'grpc_server_handled_total',
];

/** Node's own process and runtime metrics (no etcd counterpart to compare with). */
const NODE_METRICS = [
  'nodejs_eventloop_lag_seconds',
  'nodejs_heap_size_used_bytes',
  'nodejs_gc_duration_seconds',
];
const CONCORD_METRICS = [
  'concord_shard_leader',
  'concord_shard_size_bytes',
  'concord_shard_requests_total',
  'concord_shard_apply_lag_entries',
  'concord_event_loop_lag_seconds',
  'concord_gc_pause_seconds',
  'concord_memory_limit_bytes',
];

function shape(family: MetricFamily | undefined) {
  if (family === undefined) return undefined;
  return { type: family.type, labelNames: family.labelNames, buckets: family.buckets };
}

describe('/metrics compared with etcd 3.4', {
  skip: !etcdAvailable() && 'etcd not installed',
  timeout: 240_000,
}, () => {
  let etcd: ProcessCluster;
  let concord: ProcessCluster;
  before(async () => {
    [etcd, concord] = await Promise.all([
      startEtcdCluster({ size: 3, startTimeoutMs: 60_000 }),
      startConcordCluster({ size: 3, startTimeoutMs: 60_000 }),
    ]);
  });
  after(async () => {
    await Promise.all([etcd?.dispose(), concord?.dispose()]);
  });

  it('exports every etcd metric with the same type, labels and buckets', async () => {
    await concord.withLogsOnFailure(async () => {
      const writes = async (cluster: ProcessCluster) => {
        const endpoints = [cluster.endpoint(await cluster.leaderIndex())];
        await etcdctlOk(['put', 'metrics/a', '1'], { endpoints });
        await etcdctlOk(['get', 'metrics/a'], { endpoints });
        await etcdctlOk(['del', 'metrics/a'], { endpoints });
        return endpoints[0]!;
      };
      const [etcdLeader, concordLeader] = await Promise.all([writes(etcd), writes(concord)]);
      // etcd observes peer round trips from a prober every few seconds: wait for the first one.
      const etcdMetrics = await pollUntil('etcd peer round-trip samples', 60_000, async () => {
        const metrics = await scrapeMetrics(etcdLeader);
        return metrics.get('etcd_network_peer_round_trip_time_seconds')?.samples.size ? metrics : undefined;
      });
      const concordMetrics = await pollUntil('Concord peer round-trip samples', 30_000, async () => {
        const metrics = await scrapeMetrics(concordLeader);
        return metrics.get('etcd_network_peer_round_trip_time_seconds')?.samples.size ? metrics : undefined;
      });
      const processNames = [...etcdMetrics.keys()].filter((name) => name.startsWith('process_'));
      assert.ok(processNames.length >= 5, `etcd exports process_* metrics: ${processNames.join(', ')}`);
      for (const name of [...ETCD_METRICS, ...processNames]) {
        const expected = shape(etcdMetrics.get(name));
        assert.notEqual(expected, undefined, `the etcd oracle exports ${name}`);
        assert.deepEqual(shape(concordMetrics.get(name)), expected, `${name} on Concord as on etcd`);
      }
      for (const name of [...NODE_METRICS, ...CONCORD_METRICS]) {
        assert.ok(concordMetrics.has(name), `Concord exports ${name}`);
      }
      // grpc_code values are etcd's names (go-grpc-prometheus), every code pre-filled per method.
      const codes = (m: Map<string, MetricFamily>) =>
        new Set(
          (m.get('grpc_server_handled_total')?.samples.get('grpc_server_handled_total') ?? [])
            .filter((s) => s.labels.grpc_method === 'Put')
            .map((s) => s.labels.grpc_code),
        );
      assert.deepEqual(codes(concordMetrics), codes(etcdMetrics));
      // The Grafana dashboard in the repository uses only metrics Concord exports.
      const grafana = readFileSync(new URL('../../../docs/grafana/concord.json', import.meta.url), 'utf8');
      // A metric name is followed by its label matchers (every query filters on the job).
      const used = new Set(
        [...grafana.matchAll(/\b((?:etcd|concord|grpc|process|nodejs)_[a-z0-9_]+)\{/g)].map((m) => m[1]!),
      );
      assert.ok(used.size >= 10, 'the Grafana dashboard was read');
      for (const name of used) {
        const family = name.replace(/_(bucket|sum|count)$/, '');
        assert.ok(
          concordMetrics.has(family),
          `docs/grafana/concord.json uses ${name}, which Concord exports`,
        );
      }
      assert.equal(sampleValue(concordMetrics, 'etcd_server_has_leader'), 1);
      assert.equal(sampleValue(concordMetrics, 'etcd_server_is_leader'), 1);
      assert.ok(sampleValue(concordMetrics, 'etcd_mvcc_db_total_size_in_bytes') > 0);
    });
  });

  it('counts puts, ranges, txns, proposals and gRPC calls as they happen', async () => {
    await concord.withLogsOnFailure(async () => {
      const leader = concord.endpoint(await concord.leaderIndex());
      const beforeWrites = await scrapeMetrics(leader);
      const endpoints = [leader];
      for (let i = 0; i < 5; i++) await etcdctlOk(['put', `count/${i}`, 'v'], { endpoints });
      await etcdctlOk(['get', 'count/', '--prefix'], { endpoints });
      await gatewayPost(leader, '/v3/kv/txn', {
        compare: [],
        success: [
          { request_put: { key: Buffer.from('count/t').toString('base64'), value: 'AA==' } },
          { request_put: { key: Buffer.from('count/u').toString('base64'), value: 'AA==' } },
        ],
      });
      const afterWrites = await scrapeMetrics(leader);
      const rise = (family: string, series = family, labels: Record<string, string> = {}) =>
        sampleValue(afterWrites, family, series, labels) - sampleValue(beforeWrites, family, series, labels);
      assert.ok(rise('etcd_mvcc_put_total') >= 5, 'put_total rose by the puts');
      assert.ok(rise('etcd_mvcc_range_total') >= 1, 'range_total rose');
      assert.ok(rise('etcd_mvcc_txn_total') >= 1, 'txn_total rose');
      assert.ok(rise('etcd_server_proposals_committed_total') >= 6, 'proposals_committed rose');
      assert.ok(rise('etcd_server_proposals_applied_total') >= 6, 'proposals_applied rose');
      assert.ok(rise('etcd_debugging_mvcc_keys_total') >= 7, 'keys_total counts the new keys');
      const put = { grpc_method: 'Put', grpc_service: 'etcdserverpb.KV' };
      assert.ok(rise('grpc_server_started_total', 'grpc_server_started_total', put) >= 5);
      assert.ok(
        rise('grpc_server_handled_total', 'grpc_server_handled_total', { ...put, grpc_code: 'OK' }) >= 5,
      );
      const fsyncs = 'etcd_disk_wal_fsync_duration_seconds';
      assert.ok(rise(fsyncs, `${fsyncs}_count`) >= 1, 'WAL fsyncs were timed');
      const commits = 'etcd_disk_backend_commit_duration_seconds';
      assert.ok(rise(commits, `${commits}_count`) >= 1, 'backend commits were timed');
      const sent = sampleValue(afterWrites, 'etcd_network_peer_sent_bytes_total');
      assert.ok(sent > 0, 'the leader sent bytes to its peers');
    });
  });
});
