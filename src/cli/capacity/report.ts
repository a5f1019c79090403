// Capacity arithmetic: from two samples of every member (taken some seconds apart) and the write
// rate one Raft group was measured to sustain, the headroom of each resource, the time until the
// space quota fills at the current growth, and the shards a target load needs. Pure: no I/O, no
// clock; `concordctl check capacity` and the dashboard's /dashboard/api/capacity feed it.
//
// Every figure comes with the line of arithmetic that produced it (`arithmetic`), so an operator
// can check the sums instead of trusting them.

/** What one member reports at one moment (its /metrics, or the dashboard's own view). */
export interface MemberSample {
  /** Name or endpoint: how the report names the member. */
  member: string;
  atMs: number;
  isLeader: boolean;
  /** Raft entries applied (etcd_server_proposals_applied_total): one per write. */
  appliedEntries: number;
  keys: number;
  dbSizeBytes: number;
  dbSizeInUseBytes: number;
  /** --quota-backend-bytes; 0 or less: no quota known. */
  quotaBytes: number;
  watchers: number;
  rssBytes: number;
  /** The memory the member may use (cgroup limit, else host total); 0: unknown. */
  memoryLimitBytes: number;
  cpuSeconds: number;
  /** etcd_disk_wal_fsync_duration_seconds _count and _sum. */
  fsyncCount: number;
  fsyncSeconds: number;
}

/** The write rate a short put benchmark reached against this cluster's one Raft group. */
export interface MeasuredRate {
  writesPerSec: number;
  clients: number;
  valueBytes: number;
  durationSec: number;
  /** ISO time of the run. */
  measuredAt: string;
  /** Where it came from: a run just now, or a file/key recorded by an earlier run. */
  source: 'bench' | 'recorded';
  /** The rate still rose at the benchmark's last concurrency step: the group may sustain more. */
  stillRising?: boolean;
}

export interface CapacityTargets {
  writesPerSec?: number;
  keys?: number;
  bytes?: number;
}

export type ResourceName = 'disk quota' | 'memory' | 'cpu' | 'wal fsync' | 'writes' | 'keys' | 'watchers';

export interface ResourceHeadroom {
  resource: ResourceName;
  /** The member the figure is about: the one with the least headroom. */
  member: string;
  unit: 'bytes' | 'cores' | 'fsyncs/s' | 'writes/s' | 'keys' | 'watchers';
  used: number;
  /** What the resource allows; null when nothing bounds it or the bound is unknown. */
  limit: number | null;
  /** used ÷ limit (1 = full); null without a limit. */
  usedShare: number | null;
  /** limit − used; null without a limit. */
  headroom: number | null;
  /** Change per second between the two samples; null when it is not a growing quantity. */
  growthPerSec: number | null;
  /** Seconds until used reaches limit at growthPerSec; null when not growing or no limit. */
  timeToFullSec: number | null;
}

export interface CapacityPlan {
  targets: CapacityTargets;
  writeShards: number | null;
  keyShards: number | null;
  byteShards: number | null;
  shardsNeeded: number;
  replicasPerShard: number;
  memberProcesses: number;
}

export interface CapacityReport {
  intervalSec: number;
  members: number;
  measured: MeasuredRate | null;
  current: {
    writesPerSec: number;
    keys: number;
    keysPerSec: number;
    dbSizeInUseBytes: number;
    bytesInUsePerSec: number;
    bytesPerKey: number | null;
    watchers: number;
    watchersPerSec: number;
  };
  resources: ResourceHeadroom[];
  plan: CapacityPlan | null;
  /** Each computation, one line each, in the order of the report. */
  arithmetic: string[];
  notes: string[];
}

export class CapacityInputError extends Error {
  readonly code = 'CAPACITY_INPUT';
}

/** The member process runs its request, Raft and apply work on one thread: one core is its limit. */
const CPU_LIMIT_CORES = 1;

export function capacityReport(
  before: readonly MemberSample[],
  after: readonly MemberSample[],
  measured: MeasuredRate | null,
  targets: CapacityTargets = {},
): CapacityReport {
  const pairs = pairSamples(before, after);
  if (pairs.length === 0) throw new CapacityInputError('no member was sampled twice');
  const arithmetic: string[] = [];
  const notes: string[] = [];
  const intervalSec = Math.max(...pairs.map((p) => p.seconds));

  // Cluster-wide figures: every member applies every write; the leader (else the most advanced
  // member) speaks for the keyspace.
  const lead = pairs.find((p) => p.after.isLeader) ?? maxBy(pairs, (p) => p.after.appliedEntries);
  const writesPerSec = rate(lead, (s) => s.appliedEntries);
  const keys = lead.after.keys;
  const keysPerSec = rate(lead, (s) => s.keys);
  const bytesInUsePerSec = rate(lead, (s) => s.dbSizeInUseBytes);
  const bytesPerKey = keys > 0 ? lead.after.dbSizeInUseBytes / keys : null;
  const watchers = pairs.reduce((sum, p) => sum + p.after.watchers, 0);
  const watchersPerSec = pairs.reduce((sum, p) => sum + rate(p, (s) => s.watchers), 0);
  arithmetic.push(
    `writes now: Δapplied ${fmt(lead.after.appliedEntries - lead.before.appliedEntries)} ÷ ${fmt(lead.seconds)} s = ${fmt(writesPerSec)}/s`,
  );
  if (bytesPerKey !== null)
    arithmetic.push(
      `bytes per key: ${bytes(lead.after.dbSizeInUseBytes)} in use ÷ ${fmt(keys)} keys = ${bytes(bytesPerKey)}`,
    );

  const resources: ResourceHeadroom[] = [
    diskQuota(pairs, arithmetic),
    memory(pairs, arithmetic),
    cpu(pairs, arithmetic),
    walFsync(pairs, arithmetic),
    writes(lead.after.member, writesPerSec, measured, arithmetic),
    {
      ...unbounded('keys', lead.after.member, 'keys', keys),
      growthPerSec: keysPerSec,
    },
    {
      ...unbounded('watchers', 'all members', 'watchers', watchers),
      growthPerSec: watchersPerSec,
    },
  ];
  if (measured === null)
    notes.push('no measured write rate: run the benchmark (without --no-bench) or give --recorded FILE');
  else if (measured.stillRising === true)
    notes.push(
      `the benchmark's rate still rose at its last step (${measured.clients} clients): ${fmt(measured.writesPerSec)}/s is a lower bound, and shard counts from it an upper bound`,
    );
  const plan = hasTargets(targets)
    ? planShards(
        targets,
        measured,
        writesPerSec,
        bytesPerKey,
        lead.after.quotaBytes,
        pairs.length,
        arithmetic,
        notes,
      )
    : null;
  return {
    intervalSec,
    members: pairs.length,
    measured,
    current: {
      writesPerSec,
      keys,
      keysPerSec,
      dbSizeInUseBytes: lead.after.dbSizeInUseBytes,
      bytesInUsePerSec,
      bytesPerKey,
      watchers,
      watchersPerSec,
    },
    resources,
    plan,
    arithmetic,
    notes,
  };
}

interface SamplePair {
  before: MemberSample;
  after: MemberSample;
  seconds: number;
}

function pairSamples(before: readonly MemberSample[], after: readonly MemberSample[]): SamplePair[] {
  const earlier = new Map(before.map((s) => [s.member, s]));
  const pairs: SamplePair[] = [];
  for (const later of after) {
    const first = earlier.get(later.member);
    if (first === undefined) continue;
    const seconds = (later.atMs - first.atMs) / 1000;
    if (!(seconds > 0))
      throw new CapacityInputError(`the two samples of ${later.member} are not in time order`);
    pairs.push({ before: first, after: later, seconds });
  }
  return pairs;
}

function rate(pair: SamplePair, read: (s: MemberSample) => number): number {
  return (read(pair.after) - read(pair.before)) / pair.seconds;
}

function maxBy<T>(items: readonly T[], score: (item: T) => number): T {
  let best = items[0] as T;
  for (const item of items) if (score(item) > score(best)) best = item;
  return best;
}

/** The member whose share of the limit is highest (the first to run out). */
function tightest(rows: ResourceHeadroom[]): ResourceHeadroom {
  return maxBy(rows, (r) => r.usedShare ?? -1);
}

function bounded(
  resource: ResourceName,
  member: string,
  unit: ResourceHeadroom['unit'],
  used: number,
  limit: number | null,
): ResourceHeadroom {
  const known = limit !== null && limit > 0;
  return {
    resource,
    member,
    unit,
    used,
    limit: known ? limit : null,
    usedShare: known ? used / limit : null,
    headroom: known ? limit - used : null,
    growthPerSec: null,
    timeToFullSec: null,
  };
}

function unbounded(
  resource: ResourceName,
  member: string,
  unit: ResourceHeadroom['unit'],
  used: number,
): ResourceHeadroom {
  return bounded(resource, member, unit, used, null);
}

function diskQuota(pairs: SamplePair[], arithmetic: string[]): ResourceHeadroom {
  const rows = pairs.map((p) => {
    const row = bounded('disk quota', p.after.member, 'bytes', p.after.dbSizeBytes, p.after.quotaBytes);
    // The database file grows in steps; the bytes in use grow with the writes, so they set the pace.
    row.growthPerSec = rate(p, (s) => s.dbSizeInUseBytes);
    if (row.headroom !== null && row.growthPerSec > 0)
      row.timeToFullSec = Math.max(0, row.headroom) / row.growthPerSec;
    return row;
  });
  const row = tightest(rows);
  if (row.limit === null) {
    arithmetic.push(`disk quota: no quota reported by ${row.member}; db ${bytes(row.used)}`);
    return row;
  }
  arithmetic.push(
    `disk quota (${row.member}): db ${bytes(row.used)} ÷ quota ${bytes(row.limit)} = ${pct(row.usedShare)} used, ${bytes(row.headroom ?? 0)} free`,
  );
  const growth = row.growthPerSec ?? 0;
  if (row.timeToFullSec !== null)
    arithmetic.push(
      `disk quota full in: ${bytes(Math.max(0, row.headroom ?? 0))} free ÷ ${bytes(growth)}/s growth in use = ${fmt(row.timeToFullSec)} s ≈ ${duration(row.timeToFullSec)}`,
    );
  else
    arithmetic.push(
      `disk quota full in: never at the current rate (bytes in use ${growth < 0 ? 'shrank' : 'did not grow'}: ${bytes(growth)}/s)`,
    );
  return row;
}

function memory(pairs: SamplePair[], arithmetic: string[]): ResourceHeadroom {
  const rows = pairs.map((p) => {
    const row = bounded('memory', p.after.member, 'bytes', p.after.rssBytes, p.after.memoryLimitBytes);
    row.growthPerSec = rate(p, (s) => s.rssBytes);
    return row;
  });
  const row = tightest(rows);
  arithmetic.push(
    row.limit === null
      ? `memory (${row.member}): RSS ${bytes(row.used)}, limit unknown`
      : `memory (${row.member}): RSS ${bytes(row.used)} ÷ limit ${bytes(row.limit)} = ${pct(row.usedShare)} used, ${bytes(row.headroom ?? 0)} free`,
  );
  return row;
}

function cpu(pairs: SamplePair[], arithmetic: string[]): ResourceHeadroom {
  const rows = pairs.map((p) =>
    bounded(
      'cpu',
      p.after.member,
      'cores',
      Math.max(
        0,
        rate(p, (s) => s.cpuSeconds),
      ),
      CPU_LIMIT_CORES,
    ),
  );
  const row = tightest(rows);
  const pair = pairs.find((p) => p.after.member === row.member) as SamplePair;
  arithmetic.push(
    `cpu (${row.member}): Δcpu ${fmt(pair.after.cpuSeconds - pair.before.cpuSeconds)} s ÷ ${fmt(pair.seconds)} s = ${fmt(row.used)} of ${CPU_LIMIT_CORES} core (the member's one thread) = ${pct(row.usedShare)} busy`,
  );
  return row;
}

/**
 * The WAL fsyncs one batch at a time, so one disk sustains about 1 ÷ (mean fsync latency) fsyncs
 * per second; rate × mean latency is the share of time the disk spends in fsync.
 */
function walFsync(pairs: SamplePair[], arithmetic: string[]): ResourceHeadroom {
  const rows = pairs.map((p) => {
    const count = p.after.fsyncCount - p.before.fsyncCount;
    const seconds = p.after.fsyncSeconds - p.before.fsyncSeconds;
    // No fsync in the interval: the member's lifetime mean still tells what its disk takes.
    const meanSec =
      count > 0 ? seconds / count : p.after.fsyncCount > 0 ? p.after.fsyncSeconds / p.after.fsyncCount : 0;
    const limit = meanSec > 0 ? 1 / meanSec : null;
    return { row: bounded('wal fsync', p.after.member, 'fsyncs/s', count / p.seconds, limit), meanSec };
  });
  const { row, meanSec } = maxBy(rows, (r) => r.row.usedShare ?? -1);
  arithmetic.push(
    row.limit === null
      ? `wal fsync (${row.member}): ${fmt(row.used)}/s, no fsync timed yet`
      : `wal fsync (${row.member}): 1 ÷ mean ${fmt(meanSec * 1000)} ms per fsync = ${fmt(row.limit)} fsyncs/s at most; ${fmt(row.used)}/s now × ${fmt(meanSec * 1000)} ms = ${pct(row.usedShare)} busy`,
  );
  return row;
}

function writes(
  member: string,
  writesPerSec: number,
  measured: MeasuredRate | null,
  arithmetic: string[],
): ResourceHeadroom {
  const row = bounded('writes', member, 'writes/s', writesPerSec, measured?.writesPerSec ?? null);
  if (row.limit !== null)
    arithmetic.push(
      `writes: ${fmt(writesPerSec)}/s now ÷ measured ${fmt(row.limit)}/s per group = ${pct(row.usedShare)} used, ${fmt(row.headroom ?? 0)}/s free`,
    );
  return row;
}

function hasTargets(targets: CapacityTargets): boolean {
  return targets.writesPerSec !== undefined || targets.keys !== undefined || targets.bytes !== undefined;
}

function planShards(
  targets: CapacityTargets,
  measured: MeasuredRate | null,
  writesPerSec: number,
  bytesPerKey: number | null,
  quotaBytes: number,
  members: number,
  arithmetic: string[],
  notes: string[],
): CapacityPlan {
  for (const [name, value] of Object.entries(targets))
    if (value !== undefined && !(Number.isFinite(value) && value >= 0))
      throw new CapacityInputError(`target ${name} must be a non-negative number, got ${value}`);
  let writeShards: number | null = null;
  if (targets.writesPerSec !== undefined) {
    if (measured === null || !(measured.writesPerSec > 0)) {
      arithmetic.push('writes: no measured rate per group, so no shard count for the write target');
    } else {
      const ratio = targets.writesPerSec / measured.writesPerSec;
      writeShards = Math.max(1, Math.ceil(ratio));
      arithmetic.push(
        `writes: target ${fmt(targets.writesPerSec)}/s ÷ measured ${fmt(measured.writesPerSec)}/s per group = ${fmt(ratio)} → ${writeShards} ${plural(writeShards, 'shard')}`,
      );
    }
    if (targets.writesPerSec < writesPerSec)
      notes.push(
        `the write target (${fmt(targets.writesPerSec)}/s) is below the current load (${fmt(writesPerSec)}/s)`,
      );
  }
  const quota = quotaBytes > 0 ? quotaBytes : null;
  let keyShards: number | null = null;
  if (targets.keys !== undefined) {
    if (bytesPerKey === null) arithmetic.push('keys: no keys yet to size one by; give --target-bytes');
    else if (quota === null) arithmetic.push('keys: no quota, so the key target needs no more shards');
    else {
      const need = targets.keys * bytesPerKey;
      keyShards = Math.max(1, Math.ceil(need / quota));
      arithmetic.push(
        `keys: target ${fmt(targets.keys)} × ${bytes(bytesPerKey)}/key = ${bytes(need)} ÷ quota ${bytes(quota)} per group = ${fmt(need / quota)} → ${keyShards} ${plural(keyShards, 'shard')}`,
      );
    }
  }
  let byteShards: number | null = null;
  if (targets.bytes !== undefined) {
    if (quota === null) arithmetic.push('bytes: no quota, so the byte target needs no more shards');
    else {
      byteShards = Math.max(1, Math.ceil(targets.bytes / quota));
      arithmetic.push(
        `bytes: target ${bytes(targets.bytes)} ÷ quota ${bytes(quota)} per group = ${fmt(targets.bytes / quota)} → ${byteShards} ${plural(byteShards, 'shard')}`,
      );
    }
  }
  const counts = [writeShards, keyShards, byteShards].filter((n): n is number => n !== null);
  const shardsNeeded = Math.max(1, ...counts);
  arithmetic.push(
    `shards: max(${counts.length === 0 ? '1' : counts.join(', ')}) = ${shardsNeeded}; member processes: ${shardsNeeded} × ${members} replicas = ${shardsNeeded * members}`,
  );
  if (shardsNeeded > 1)
    notes.push(
      `the target needs ${shardsNeeded} Raft groups; Concord runs one group today, and adding members to it does not raise its write rate`,
    );
  return {
    targets,
    writeShards,
    keyShards,
    byteShards,
    shardsNeeded,
    replicasPerShard: members,
    memberProcesses: shardsNeeded * members,
  };
}

// ---- formatting for the arithmetic lines ----------------------------------------------------

function plural(count: number, word: string): string {
  return count === 1 ? word : `${word}s`;
}

/** A number as a person reads it: thousands separated, at most 3 significant decimals. */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  const digits = abs >= 100 || Number.isInteger(value) ? 0 : abs >= 1 ? 2 : 3;
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function pct(share: number | null): string {
  return share === null ? '-' : `${(share * 100).toFixed(1)}%`;
}

/** Bytes in binary units (the quota is set in bytes; 2 GiB is etcd's default). */
export function bytes(value: number): string {
  const sign = value < 0 ? '-' : '';
  let n = Math.abs(value);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit++;
  }
  return `${sign}${unit === 0 ? n.toFixed(0) : n.toFixed(2)} ${units[unit]}`;
}

export function duration(seconds: number): string {
  if (seconds < 120) return `${seconds.toFixed(0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(1)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} days`;
}
