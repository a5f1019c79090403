// The shard map for operators: GET /concord/v1/shard/list on a member's client URL (what
// `concordctl shard list` reads). Any member answers from its applied copy of the metadata group
// (group 0); the answer says which member answered, the metadata leader it knows and the index
// it applied, and that the read is not linearizable (a member that lags shows an older map).
//
// Per shard: id, key range (base64 bytes; an empty end is +inf), epoch and conf epoch, the
// replicas with their roles, the leader, the size and the load. With one shard (today) the
// leader is group 1's, the size is the keyspace's database file, and qps is the requests this
// member served per second over the last sampling second.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { formatId, publicId } from '../replica/ids.js';
import type { ConcordNode } from './node.js';

const QPS_SAMPLE_MS = 1000;

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

  constructor(private readonly node: ConcordNode) {
    node.every(QPS_SAMPLE_MS, () => this.sample());
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
    const shards = (meta.metaState?.shardMap.shards ?? []).map(
      (shard): ShardView => ({
        id: shard.id,
        start: Buffer.from(shard.start),
        end: Buffer.from(shard.end),
        epoch: shard.epoch,
        confEpoch: shard.confEpoch,
        // Shard 1 is group 1, hosted here: its leader is the one this member follows.
        leader: publicId(shard.id === 1 ? this.node.replica.leaderId : (shard.leaderHint ?? 0)),
        replicas: shard.replicas.map((r) => ({ id: publicId(r.node), isLearner: r.role === 'learner' })),
        sizeBytes: shard.id === 1 ? sizeBytes : 0,
        qps: shard.id === 1 ? Math.round(this.qps * 10) / 10 : 0,
      }),
    );
    return {
      shards,
      metaLeader: publicId(meta.leaderId),
      metaApplied: meta.appliedIndex,
      linearizable: false,
    };
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
