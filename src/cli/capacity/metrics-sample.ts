// A MemberSample from a member's /metrics text (Prometheus exposition format). Only etcd 3.4's
// names are needed, so the same reading works against an etcd member; the one Concord addition,
// concord_memory_limit_bytes, reads as 0 (unknown) where it is missing.

import type { MemberSample } from './report.js';

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(\S+)/;

/** Every series' value, summed over its label sets (a series without labels has one). */
export function seriesTotals(text: string): Map<string, number> {
  const totals = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const match = sampleLine.exec(line);
    if (match === null) continue;
    const value = Number(match[2]);
    if (!Number.isFinite(value)) continue;
    const name = match[1] as string;
    totals.set(name, (totals.get(name) ?? 0) + value);
  }
  return totals;
}

/** The series a sample cannot do without: a text lacking them is not an etcd member's /metrics. */
const REQUIRED = ['etcd_server_proposals_applied_total', 'etcd_mvcc_db_total_size_in_bytes'] as const;

export function sampleFromMetrics(member: string, atMs: number, text: string): MemberSample {
  const totals = seriesTotals(text);
  for (const name of REQUIRED)
    if (!totals.has(name)) throw new Error(`${member}: /metrics has no ${name} (not an etcd-style member?)`);
  const read = (name: string) => totals.get(name) ?? 0;
  return {
    member,
    atMs,
    isLeader: read('etcd_server_is_leader') === 1,
    appliedEntries: read('etcd_server_proposals_applied_total'),
    keys: read('etcd_debugging_mvcc_keys_total'),
    dbSizeBytes: read('etcd_mvcc_db_total_size_in_bytes'),
    dbSizeInUseBytes: read('etcd_mvcc_db_total_size_in_use_in_bytes'),
    quotaBytes: read('etcd_server_quota_backend_bytes'),
    watchers: read('etcd_debugging_mvcc_watcher_total'),
    rssBytes: read('process_resident_memory_bytes'),
    memoryLimitBytes: read('concord_memory_limit_bytes'),
    cpuSeconds: read('process_cpu_seconds_total'),
    fsyncCount: read('etcd_disk_wal_fsync_duration_seconds_count'),
    fsyncSeconds: read('etcd_disk_wal_fsync_duration_seconds_sum'),
  };
}
