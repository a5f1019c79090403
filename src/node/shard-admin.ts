// The shard map for operators: GET /concord/v1/shard/list on a member's client URL (what
// `concordctl shard list` reads). Any member answers from its applied copy of the metadata group
// (group 0); the answer says which member answered, the metadata leader it knows and the index
// it applied, and that the read is not linearizable (a member that lags shows an older map).
//
// Per shard: id, key range (base64 bytes; an empty end is +inf), epoch and conf epoch, the
// replicas with their roles, the leader, the size and the load. The leader of a shard this member
// hosts is the one its group replica follows (else the map's hint); the size (the keyspace's
// database file) and qps (the requests this member served per second over the last sampling
// second) are shard 1's, which serves every request today.
//
// `split(key)` (concordpb.Shard/Split, `concordctl shard split KEY`) runs on the metadata group's
// leader, one at a time (another member passes the call on): it proposes a splitShard admin entry
// to the shard's own group (replica/shard-record.ts: the shard keeps [start, key), every replica
// founds the right half's group on the same members) and then waits for the metadata group's map
// to take the split. That second step is `reconcileSplits`, which the metadata leader runs every
// heartbeat: any shard this member hosts that the map does not list yet (a split the shard's log
// applied) is proposed to the map as splitShard at its parent's epoch, so a split whose proposer
// died between the two steps is finished by whoever leads the metadata group next.

import type { IncomingMessage, ServerResponse } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { formatId, publicId } from '../replica/ids.js';
import type { ShardDescriptor } from '../shard/shard-map.js';
import { sleep } from '../util/sleep.js';
import type { ConcordNode } from './node.js';

const QPS_SAMPLE_MS = 1000;

/** A refused or failed admin call, with the gRPC status it is answered with (api/errors.ts). */
export class ShardAdminError extends Error {
  constructor(
    readonly grpcCode: grpc.status,
    message: string,
  ) {
    super(message);
    this.name = 'ShardAdminError';
  }
}

export interface ShardListRow {
  id: number;
  /** base64 of the first key. */
  start: string;
  /** base64 of the end key (exclusive); "" is +inf. */
  end: string;
  epoch: number;
  confEpoch: number;
  /** Hex member id of the leader ("" when unknown). */
  leader: string;
  replicas: Array<{ id: string; role: 'voter' | 'learner' }>;
  sizeBytes: number;
  qps: number;
}

export interface ShardList {
  header: {
    /** Hex id of the member that answered. */
    memberId: string;
    /** Hex id of the metadata group's leader as this member knows it ("" when none). */
    metaLeader: string;
    /** The metadata group's index this member applied: the map's age. */
    metaApplied: number;
    /** Always false: the map is this member's applied copy, not a read through the leader. */
    linearizable: false;
  };
  /** Empty until the metadata group's first leader applied the initial state. */
  shards: ShardListRow[];
}

/** One shard as the admin API shows it: member IDs in etcd's public 64-bit form (0: none). */
export interface ShardView {
  id: number;
  start: Buffer;
  /** Exclusive; empty: every key from start. */
  end: Buffer;
  epoch: number;
  confEpoch: number;
  leader: bigint;
  replicas: Array<{ id: bigint; isLearner: boolean }>;
  sizeBytes: number;
  qps: number;
}

export interface ShardSplitView {
  /** The shard that was split, now [start, key). */
  left: ShardView;
  /** The new shard [key, end). */
  right: ShardView;
}

export interface ShardMapView {
  shards: ShardView[];
  metaLeader: bigint;
  metaApplied: number;
  /** Always false: the answering member's applied copy, not a read through the leader. */
  linearizable: false;
}

export class ShardAdmin {
  private lastCount = 0;
  private lastAt = Date.now();
  private qps = 0;
  /** The split this member runs as the metadata leader (one at a time). */
  private splitting: Promise<unknown> = Promise.resolve();
  /** No new splitShard proposal to the metadata group before this (Date.now() ms). */
  private metaProposalWaitUntil = 0;

  constructor(private readonly node: ConcordNode) {
    node.every(QPS_SAMPLE_MS, () => this.sample());
    node.every(node.config.heartbeatIntervalMs, () => this.reconcileSplits());
  }

  private served(): number {
    const { puts, deletes, txns, ranges } = this.node.stats;
    return puts + deletes + txns + ranges;
  }

  private sample(): void {
    const now = Date.now();
    const count = this.served();
    const seconds = (now - this.lastAt) / 1000;
    if (seconds > 0) this.qps = Math.max(0, (count - this.lastCount) / seconds);
    this.lastCount = count;
    this.lastAt = now;
  }

  /** The shard map as this member holds it (the one source of both encodings below). */
  shardMap(): ShardMapView {
    const meta = this.node.meta;
    let sizeBytes = 0;
    try {
      sizeBytes = this.node.dbSizeBytes();
    } catch {
      // A member that is stopping reports 0.
    }
    const shards = (meta.metaState?.shardMap.shards ?? []).map((shard) => this.viewOf(shard, sizeBytes));
    return {
      shards,
      metaLeader: publicId(meta.leaderId),
      metaApplied: meta.appliedIndex,
      linearizable: false,
    };
  }

  private viewOf(shard: ShardDescriptor, sizeBytes: number): ShardView {
    // A shard hosted here: its leader is the one this member's replica follows.
    const hosted = this.node.shardGroup(shard.id);
    return {
      id: shard.id,
      start: Buffer.from(shard.start),
      end: Buffer.from(shard.end),
      epoch: shard.epoch,
      confEpoch: shard.confEpoch,
      leader: publicId(hosted !== undefined ? hosted.leaderId : (shard.leaderHint ?? 0)),
      replicas: shard.replicas.map((r) => ({ id: publicId(r.node), isLearner: r.role === 'learner' })),
      sizeBytes: shard.id === 1 ? sizeBytes : 0,
      qps: shard.id === 1 ? Math.round(this.qps * 10) / 10 : 0,
    };
  }

  // ---- split ---------------------------------------------------------------------------------

  /**
   * Splits the shard holding `key` at `key` (see the top of this file). Any member takes the
   * call; one that does not lead the metadata group passes it to the one that does.
   */
  async split(key: Uint8Array): Promise<ShardSplitView> {
    const deadline = Date.now() + this.node.replica.requestTimeoutMs;
    for (;;) {
      this.node.replica.assertServing();
      const meta = this.node.meta;
      if (meta.isLeader) {
        const run = this.splitting.then(() => this.splitAsLeader(key, deadline));
        this.splitting = run.catch(() => undefined);
        return run;
      }
      const url = this.node.replica.members.get(meta.leaderId)?.clientUrls[0];
      if (url !== undefined) {
        try {
          return splitFromWire(await this.node.leaderClient.shardSplit(url, key));
        } catch (error) {
          const status = error as { code?: number; details?: string };
          if (status.code !== grpc.status.UNAVAILABLE || Date.now() >= deadline)
            throw new ShardAdminError(status.code ?? grpc.status.UNKNOWN, status.details ?? String(error));
        }
      }
      if (Date.now() >= deadline)
        throw new ShardAdminError(grpc.status.UNAVAILABLE, 'concord: the metadata group has no leader');
      await sleep(this.node.config.heartbeatIntervalMs);
    }
  }

  private async splitAsLeader(key: Uint8Array, deadline: number): Promise<ShardSplitView> {
    const meta = this.node.meta;
    // A split still on its way to the map comes first: the new shard's id is the map's next one.
    await this.waitFor('the previous split to reach the shard map', deadline, () =>
      this.pendingSplit() === undefined ? true : undefined,
    );
    const state = meta.metaState;
    if (state === undefined || !meta.isLeader)
      throw new ShardAdminError(grpc.status.UNAVAILABLE, 'concord: the metadata leader changed; try again');
    const shard = state.shardMap.shardFor(key);
    try {
      state.shardMap.split(shard.id, key, shard.epoch); // the map's own checks, before the shard's log
    } catch (error) {
      throw new ShardAdminError(grpc.status.INVALID_ARGUMENT, `concord: ${(error as Error).message}`);
    }
    const group = this.node.shardGroup(shard.id);
    if (group === undefined)
      throw new ShardAdminError(
        grpc.status.FAILED_PRECONDITION,
        `concord: shard ${shard.id} has no replica on the metadata leader ${formatId(this.node.memberId)}`,
      );
    const rightId = state.shardMap.nextShardId;
    const outcome = await group.propose({
      type: 'splitShard',
      shardId: shard.id,
      expectedEpoch: shard.epoch,
      splitKey: new Uint8Array(key),
      rightId,
    });
    if (outcome.status === 'error')
      throw new ShardAdminError(grpc.status.FAILED_PRECONDITION, outcome.error.message);
    this.reconcileSplits();
    const right = await this.waitFor(`shard ${rightId} in the shard map`, deadline, () =>
      meta.metaState?.shardMap.get(rightId),
    );
    const left = meta.metaState?.shardMap.get(shard.id);
    if (left === undefined) throw new Error(`shard ${shard.id} left the map during its split`);
    const sizeBytes = this.dbSizeOrZero();
    return { left: this.viewOf(left, sizeBytes), right: this.viewOf(right, sizeBytes) };
  }

  /** A shard this member hosts that the metadata group's map does not list yet (lowest id first). */
  private pendingSplit():
    | { id: number; parent: { id: number; epoch: number }; start: Uint8Array; revisionAtSplit: number }
    | undefined {
    const map = this.node.meta.metaState?.shardMap;
    if (map === undefined) return undefined;
    for (const group of this.node.hostedShardGroups()) {
      const record = group.shardRecord;
      if (record.parent !== undefined && map.get(record.id) === undefined)
        return {
          id: record.id,
          parent: record.parent,
          start: record.start,
          revisionAtSplit: record.revisionAtSplit ?? 0,
        };
    }
    return undefined;
  }

  /**
   * The metadata leader's half of every split: proposes to the map the oldest split the shards'
   * logs applied and the map lacks (one proposal per election timeout at most; the map's
   * compare-and-set on the parent's epoch refuses a duplicate).
   */
  reconcileSplits(): void {
    const meta = this.node.meta;
    const map = meta.metaState?.shardMap;
    if (this.node.isStopped || !meta.isLeader || map === undefined) return;
    const pending = this.pendingSplit();
    if (pending === undefined || Date.now() < this.metaProposalWaitUntil) return;
    const mark = meta.metaState?.oracleMark ?? 0;
    if (pending.revisionAtSplit > mark) {
      // The oracle's persisted mark covers the dense revisions before the map lists two shards.
      this.metaProposalWaitUntil = Date.now() + this.node.config.electionTimeoutMs;
      meta.raiseOracleMark(pending.revisionAtSplit).then(
        () => {
          this.metaProposalWaitUntil = 0;
        },
        () => undefined,
      );
      return;
    }
    if (pending.id !== map.nextShardId) {
      this.node.log.error('a split in a shard log does not match the shard map', {
        shard: pending.id,
        next: map.nextShardId,
      });
      this.metaProposalWaitUntil = Date.now() + this.node.config.electionTimeoutMs;
      return;
    }
    if (
      meta.proposeCommand({
        type: 'splitShard',
        shardId: pending.parent.id,
        expectedEpoch: pending.parent.epoch,
        splitKey: pending.start,
      })
    )
      this.metaProposalWaitUntil = Date.now() + this.node.config.electionTimeoutMs;
  }

  private async waitFor<T>(what: string, deadline: number, probe: () => T | undefined): Promise<T> {
    for (;;) {
      const value = probe();
      if (value !== undefined) return value;
      if (Date.now() >= deadline)
        throw new ShardAdminError(grpc.status.DEADLINE_EXCEEDED, `concord: timed out waiting for ${what}`);
      await sleep(this.node.config.heartbeatIntervalMs);
    }
  }

  private dbSizeOrZero(): number {
    try {
      return this.node.dbSizeBytes();
    } catch {
      return 0;
    }
  }

  /** The JSON of GET /concord/v1/shard/list (what `concordctl shard list` reads). */
  list(): ShardList {
    const map = this.shardMap();
    const hex = (id: bigint) => (id === 0n ? '' : id.toString(16));
    return {
      header: {
        memberId: formatId(this.node.memberId),
        metaLeader: hex(map.metaLeader),
        metaApplied: map.metaApplied,
        linearizable: false,
      },
      shards: map.shards.map((shard) => ({
        id: shard.id,
        start: shard.start.toString('base64'),
        end: shard.end.toString('base64'),
        epoch: shard.epoch,
        confEpoch: shard.confEpoch,
        leader: hex(shard.leader),
        replicas: shard.replicas.map((r) => ({ id: hex(r.id), role: r.isLearner ? 'learner' : 'voter' })),
        sizeBytes: shard.sizeBytes,
        qps: shard.qps,
      })),
    };
  }

  /** GET /concord/v1/shard/list; false: not this route. */
  async routes(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    if (path !== '/concord/v1/shard/list' || (request.method !== 'GET' && request.method !== 'POST'))
      return false;
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(this.list()));
    return true;
  }
}

/** A forwarded split's gRPC answer (concordpb.ShardSplitResponse) as the view. */
function splitFromWire(response: Record<string, unknown>): ShardSplitView {
  return { left: shardFromWire(response.left), right: shardFromWire(response.right) };
}

function shardFromWire(value: unknown): ShardView {
  const shard = (value ?? {}) as {
    ID?: string | number;
    start?: Uint8Array;
    end?: Uint8Array;
    epoch?: string | number;
    confEpoch?: string | number;
    leader?: string | number;
    replicas?: Array<{ ID?: string | number; isLearner?: boolean }>;
    sizeBytes?: string | number;
    qps?: number;
  };
  return {
    id: Number(shard.ID ?? 0),
    start: Buffer.from(shard.start ?? []),
    end: Buffer.from(shard.end ?? []),
    epoch: Number(shard.epoch ?? 0),
    confEpoch: Number(shard.confEpoch ?? 0),
    leader: BigInt(shard.leader ?? 0),
    replicas: (shard.replicas ?? []).map((r) => ({ id: BigInt(r.ID ?? 0), isLearner: r.isLearner === true })),
    sizeBytes: Number(shard.sizeBytes ?? 0),
    qps: shard.qps ?? 0,
  };
}
