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
import { formatId } from '../replica/ids.js';
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

  list(): ShardList {
    const meta = this.node.meta;
    const state = meta.metaState;
    let sizeBytes = 0;
    try {
      sizeBytes = this.node.dbSizeBytes();
    } catch {
      // A member that is stopping reports 0.
    }
    const shards = (state?.shardMap.shards ?? []).map(
      (shard): ShardListRow => ({
        id: shard.id,
        start: Buffer.from(shard.start).toString('base64'),
        end: Buffer.from(shard.end).toString('base64'),
        epoch: shard.epoch,
        confEpoch: shard.confEpoch,
        // Shard 1 is group 1, hosted here: its leader is the one this member follows.
        leader:
          shard.id === 1
            ? this.node.replica.leaderId === 0
              ? ''
              : formatId(this.node.replica.leaderId)
            : shard.leaderHint === undefined
              ? ''
              : formatId(shard.leaderHint),
        replicas: shard.replicas.map((r) => ({ id: formatId(r.node), role: r.role })),
        sizeBytes: shard.id === 1 ? sizeBytes : 0,
        qps: shard.id === 1 ? Math.round(this.qps * 10) / 10 : 0,
      }),
    );
    return {
      header: {
        memberId: formatId(this.node.memberId),
        metaLeader: meta.leaderId === 0 ? '' : formatId(meta.leaderId),
        metaApplied: meta.appliedIndex,
        linearizable: false,
      },
      shards,
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
