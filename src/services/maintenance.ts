// etcd's Maintenance service on a member (Status, Alarm, Defragment, Hash, HashKV, Snapshot,
// MoveLeader), the /health check, and the member's own upkeep through the log: the NOSPACE alarm
// when the database passes the quota, and auto-compaction.

import { join } from 'node:path';
import { KeyspaceFailedError } from '../mvcc/errors.js';
import { createEtcdSnapshot } from '../mvcc/etcd-snapshot.js';
import type { ConcordNode } from '../node/node.js';
import type { GroupReplica } from '../replica/group-replica.js';
import { memberIdNamed, publicId } from '../replica/ids.js';
import type { Alarm, AlarmKind } from '../replica/members.js';
import { sleep } from '../util/sleep.js';
import { EtcdError } from '../wire/etcd-errors.js';
import {
  type AlarmAction,
  type AlarmMember,
  type AlarmType,
  ETCD_API_VERSION,
  type HeaderInfo,
  type SnapshotChunk,
  type StatusResult,
  type WithHeader,
} from './backend.js';

/** Applies only mark the quota as due; the database file's size is looked at this often (a stat per
 * apply batch cost ~50 µs on every member). The NOSPACE alarm is raised at most this much later. */
export const QUOTA_CHECK_INTERVAL_MS = 100;

export class MaintenanceService {
  private readonly replica: GroupReplica;
  private compactionSamples: Array<{ atMs: number; revision: number }> = [];

  constructor(private readonly node: ConcordNode) {
    this.replica = node.replica;
  }

  /** How often auto-compaction runs (--auto-compaction-*); undefined: it is off. */
  autoCompactionIntervalMs(): number | undefined {
    const config = this.node.config;
    if (config.autoCompactionRetention <= 0) return undefined;
    return config.autoCompactionMode === 'periodic'
      ? Math.max(1000, Math.min(config.autoCompactionRetention / 10, 3_600_000))
      : 5 * 60_000;
  }

  /** Looks at the database size if something was applied since the last look. */
  quotaTick(): void {
    if (this.node.isStopped || !this.replica.quotaCheckDue) return;
    this.replica.quotaCheckDue = false;
    this.node.storageStep('quota-check', () => this.checkQuota());
  }

  /** How an alarm names its member: a member's public ID, or the ID the request gave. */
  private alarmMemberPublicId(id: number): bigint {
    return this.replica.members.has(id) || this.replica.members.isRemoved(id) ? publicId(id) : BigInt(id);
  }

  /**
   * The member an alarm request names. An ID no member has is kept as given when it fits a JS
   * number (etcd keeps alarms for any ID); a larger one is stored by its 48 high bits.
   */
  private alarmMemberId(id: bigint): number {
    const known = memberIdNamed(id, [
      ...this.replica.members.list().map((m) => m.id),
      ...this.replica.members.removed(),
    ]);
    if (known !== undefined) return known;
    return id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : Number(id >> 16n);
  }

  async status(): Promise<WithHeader<StatusResult>> {
    const status = this.replica.status();
    const self = this.replica.members.get(this.replica.memberId);
    let dbSizeBytes = 0;
    this.node.storageStep('quota-check', () => {
      dbSizeBytes = this.node.dbSizeBytes();
    });
    this.replica.assertServing();
    return {
      version: ETCD_API_VERSION,
      dbSizeBytes,
      dbSizeInUseBytes: dbSizeBytes,
      leader: publicId(status.softState.leader),
      raftIndex: BigInt(status.hardState.commit),
      raftTerm: BigInt(status.hardState.term),
      raftAppliedIndex: BigInt(this.replica.appliedIndex),
      errors: this.replica.members.alarms().map((a) => alarmText(a, this.alarmMemberPublicId(a.memberId))),
      isLearner: self?.isLearner ?? false,
      header: this.replica.header(),
    };
  }

  /**
   * As etcd: every action goes through the log; GET lists the alarms of a type (NONE: all),
   * ACTIVATE answers the raised alarm, DEACTIVATE the lowered one (none if it was not raised).
   */
  async alarm(
    action: AlarmAction,
    memberId: bigint,
    alarm: AlarmType,
  ): Promise<WithHeader<{ alarms: AlarmMember[] }>> {
    const kind = alarmKindOf[alarm];
    let alarms: Alarm[];
    if (action === 'get') {
      await this.replica.linearizableBarrier();
      alarms = this.replica.members.alarms(kind);
    } else {
      const outcome = await this.replica.propose({
        type: 'alarm',
        action,
        memberId: this.alarmMemberId(memberId),
        alarm: kind,
      });
      if (outcome.status === 'error') throw outcome.error;
      alarms = outcome.status === 'done' ? (outcome.alarms ?? []) : [];
    }
    const members = alarms.map((a) => ({
      memberId: this.alarmMemberPublicId(a.memberId),
      alarm: alarmTypeOf[a.alarm],
    }));
    return { alarms: members, header: this.replica.header() };
  }

  private checkQuota(): void {
    if (
      this.replica.members.hasAlarm('NOSPACE') ||
      this.node.dbSizeBytes() <= this.node.config.quotaBackendBytes
    )
      return;
    this.node.log.warn('database space exceeded; raising the NOSPACE alarm', {
      quota: this.node.config.quotaBackendBytes,
    });
    this.replica
      .propose({ type: 'alarm', action: 'activate', memberId: this.replica.memberId, alarm: 'NOSPACE' })
      .catch(() => undefined);
  }

  /**
   * A copy that fails (no room for it) is the caller's error and changes nothing, as in etcd; a
   * swap that fails after the live database was closed leaves no keyspace to serve from, so the
   * member stops (etcd exits there too).
   */
  async defragment(): Promise<{ header: HeaderInfo }> {
    this.replica.assertServing();
    const scratch = join(this.node.snapshotScratchDir, `defrag-${Date.now()}.mdb`);
    let bytes: { bytesBefore: number; bytesAfter: number };
    try {
      bytes = await this.replica.exclusive(() => this.replica.keyspace.defragment(scratch));
    } catch (error) {
      if (!(error instanceof KeyspaceFailedError)) throw error;
      this.node.failStop('defragment', error);
      throw new EtcdError('stopped');
    }
    this.node.log.info('defragmented the keyspace', bytes);
    return { header: this.replica.header() };
  }

  async hash(): Promise<WithHeader<{ hash: number }>> {
    this.replica.assertServing();
    return { hash: this.replica.keyspace.hashKV(0).hash, header: this.replica.header() };
  }

  async hashKV(revision: number): Promise<WithHeader<{ hash: number; compactRevision: number }>> {
    this.replica.assertServing();
    const result = this.replica.keyspace.hashKV(revision);
    return { hash: result.hash, compactRevision: result.compactRevision, header: this.replica.header() };
  }

  /**
   * A snapshot in etcd's format (a bbolt file; see mvcc/etcd-snapshot.ts), streamed from one LMDB
   * read transaction as it is written: nothing is staged on disk or held in memory beyond a page
   * plan, and writes go on meanwhile. The stream releases the transaction when it ends or is
   * abandoned.
   */
  async snapshot(): Promise<{ header: HeaderInfo; chunks: AsyncIterable<SnapshotChunk> }> {
    this.replica.assertServing();
    const header = this.replica.header();
    const members = this.replica.members;
    const snapshot = await createEtcdSnapshot(this.replica.keyspace, {
      members: members.list().map((m) => ({ ...m, id: publicId(m.id) })),
      removedMemberIds: members.removed().map(publicId),
      alarms: members
        .alarms()
        .flatMap((a) => (a.alarm === 'NONE' ? [] : [{ memberId: publicId(a.memberId), alarm: a.alarm }])),
      clusterVersion: `${ETCD_API_VERSION.split('.').slice(0, 2).join('.')}.0`,
      auth: this.replica.authGate.store.toEtcd(),
    });
    return {
      header,
      chunks: (async function* () {
        let sent = 0;
        try {
          for await (const chunk of snapshot.chunks()) {
            sent += chunk.length;
            yield { blob: chunk, remainingBytes: snapshot.totalBytes - sent };
          }
        } finally {
          snapshot.close();
        }
      })(),
    };
  }

  async moveLeader(targetId: bigint): Promise<{ header: HeaderInfo }> {
    this.replica.assertServing();
    const target = memberIdNamed(targetId, this.replica.voters) ?? 0;
    if (!this.replica.isLeader) throw new EtcdError('notLeader');
    if (!this.replica.voters.includes(target)) throw new EtcdError('badLeaderTransferee');
    this.replica.transferLeadership(target);
    const deadline = Date.now() + 2 * this.node.config.electionTimeoutMs + 2000;
    while (Date.now() < deadline) {
      if (this.replica.leaderId === target) return { header: this.replica.header() };
      await sleep(this.node.config.heartbeatIntervalMs);
    }
    throw new EtcdError('timeoutDueToLeaderFail');
  }

  async autoCompact(): Promise<void> {
    if (!this.replica.isLeader || this.node.isStopped) return;
    const nowMs = Date.now();
    const revision = this.replica.keyspace.currentRevision();
    let target = 0;
    if (this.node.config.autoCompactionMode === 'revision') {
      target = revision - this.node.config.autoCompactionRetention;
    } else {
      this.compactionSamples.push({ atMs: nowMs, revision });
      const cutoff = nowMs - this.node.config.autoCompactionRetention;
      const old = this.compactionSamples.filter((s) => s.atMs <= cutoff);
      this.compactionSamples = this.compactionSamples.filter((s) => s.atMs > cutoff - 1);
      target = old.length > 0 ? old[old.length - 1]!.revision : 0;
    }
    if (target <= this.replica.keyspace.compactRevision()) return;
    try {
      await this.replica.write({ type: 'compact', request: { revision: target, physical: false } });
      this.node.log.info('auto-compacted', { revision: target });
    } catch (error) {
      this.node.log.warn('auto-compaction failed', { revision: target, error: (error as Error).message });
    }
  }

  /** etcd's /health: healthy when a leader is known, no alarm is raised, and a read commits. */
  async health(): Promise<{ healthy: boolean; reason: string }> {
    if (this.node.failureCause !== undefined)
      return { healthy: false, reason: this.node.failureCause.message };
    if (this.replica.leaderId === 0) return { healthy: false, reason: 'RAFT NO LEADER' };
    if (this.replica.members.alarms().length > 0) return { healthy: false, reason: 'ALARM ACTIVE' };
    try {
      await Promise.race([
        this.replica.linearizableBarrier(),
        sleep(this.node.config.electionTimeoutMs + 1000).then(() => {
          throw new Error('timed out');
        }),
      ]);
      return { healthy: true, reason: '' };
    } catch (error) {
      return { healthy: false, reason: (error as Error).message };
    }
  }
}

const alarmKindOf: Record<AlarmType, AlarmKind> = { none: 'NONE', nospace: 'NOSPACE', corrupt: 'CORRUPT' };
const alarmTypeOf: Record<AlarmKind, AlarmType> = { NONE: 'none', NOSPACE: 'nospace', CORRUPT: 'corrupt' };

/** An alarm as etcd's Status lists it: the proto text form, which leaves out zero fields. */
function alarmText(alarm: Alarm, memberId: bigint): string {
  const member = memberId === 0n ? '' : `memberID:${memberId} `;
  return `${member}${alarm.alarm === 'NONE' ? '' : `alarm:${alarm.alarm} `}`;
}
