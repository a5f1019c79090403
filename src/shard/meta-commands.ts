// The commands of the metadata group (group 0) and their encoding as log entry payloads. An
// entry is `u8 encoding version | u8 command tag | fields`, written with util/binary's varints
// like the server's proposals. Tags and field order are stable: a new field or command gets a new
// encoding version or tag, and old entries keep decoding. The node record and id-list codecs here
// are shared with the snapshot encoding (meta-snapshot.ts).

import { BinaryReader, BinaryWriter, DecodeError } from '../util/binary.js';
import { MetaCommandInvalidError } from './errors.js';
import type { NodeId, ShardId } from './types.js';

export type NodeState = 'up' | 'draining' | 'removed';

/** What a node tells the cluster about itself. */
export interface NodeAttributes {
  readonly id: NodeId;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  /** Failure domain of one machine (`--host-label`); undefined = the node is its own host. */
  readonly host: string | undefined;
  /** Wider failure domain (`--zone-label`); undefined = the zone every unlabelled node shares. */
  readonly zone: string | undefined;
}

/**
 * A node of the cluster. `up` nodes receive replicas; a `draining` node receives none and the
 * scheduler moves its replicas away; a `removed` node's record stays so its id is never reused.
 */
export interface MetaNode extends NodeAttributes {
  readonly state: NodeState;
}

/** The membership steps of a replica move (rebalance.ts) that change the placement table. */
export type ReplicaStep = 'add-learner' | 'promote' | 'remove';

export type MetaCommand =
  /** A new node, `up`. Its id must never have been used. */
  | { readonly type: 'addNode'; readonly node: NodeAttributes }
  /** New URLs and labels, and `up` ↔ `draining`. A removed node cannot be updated. */
  | { readonly type: 'updateNode'; readonly node: NodeAttributes; readonly state: 'up' | 'draining' }
  /** Refused while the node holds a replica or a pin. */
  | { readonly type: 'removeNode'; readonly nodeId: NodeId }
  /** Compare-and-set on the shard's epoch: a split planned against an older range is refused. */
  | {
      readonly type: 'splitShard';
      readonly shardId: ShardId;
      readonly expectedEpoch: number;
      readonly splitKey: Uint8Array;
    }
  /** Compare-and-set on both shards' epochs. */
  | {
      readonly type: 'mergeShards';
      readonly leftId: ShardId;
      readonly leftEpoch: number;
      readonly rightId: ShardId;
      readonly rightEpoch: number;
    }
  /** One membership step, compare-and-set on the shard's conf epoch. */
  | {
      readonly type: 'changeReplicas';
      readonly shardId: ShardId;
      readonly expectedConfEpoch: number;
      readonly step: ReplicaStep;
      readonly nodeId: NodeId;
    }
  | { readonly type: 'setLeaderHint'; readonly shardId: ShardId; readonly leader: NodeId | undefined }
  /** The scheduler's override: placement puts these nodes first for the shard. */
  | { readonly type: 'pinShard'; readonly shardId: ShardId; readonly nodes: readonly NodeId[] }
  | { readonly type: 'unpinShard'; readonly shardId: ShardId }
  /** The oracle's persisted high-water mark; applied as a maximum (`applyHighWaterRaise`). */
  | { readonly type: 'raiseOracleMark'; readonly mark: number }
  | { readonly type: 'setCompactionRevision'; readonly revision: number }
  | { readonly type: 'setReplicationFactor'; readonly replicationFactor: number };

export type MetaCommandType = MetaCommand['type'];
type CommandOf<K extends MetaCommandType> = Extract<MetaCommand, { type: K }>;

/** The encoding version this code writes (and the only one it reads). */
export const META_COMMAND_ENCODING_VERSION = 1;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const NODE_STATES: readonly NodeState[] = ['up', 'draining', 'removed'];
const REPLICA_STEPS: readonly ReplicaStep[] = ['add-learner', 'promote', 'remove'];

interface CommandCodec<K extends MetaCommandType> {
  readonly tag: number;
  write(w: BinaryWriter, command: CommandOf<K>): void;
  read(r: BinaryReader): CommandOf<K>;
}

/** One entry per command type (the mapped type makes a missing one a compile error). */
const CODECS: { readonly [K in MetaCommandType]: CommandCodec<K> } = {
  addNode: {
    tag: 1,
    write: (w, c) => writeNodeAttributes(w, c.node),
    read: (r) => ({ type: 'addNode', node: readNodeAttributes(r) }),
  },
  updateNode: {
    tag: 2,
    write: (w, c) => writeNodeAttributes(w.u8(NODE_STATES.indexOf(c.state)), c.node),
    read: (r) => {
      const state = readEnum(r, NODE_STATES, 'node state');
      if (state === 'removed') throw new DecodeError('an update cannot set a node removed');
      return { type: 'updateNode', state, node: readNodeAttributes(r) };
    },
  },
  removeNode: {
    tag: 3,
    write: (w, c) => w.uvarint(c.nodeId),
    read: (r) => ({ type: 'removeNode', nodeId: readInteger(r) }),
  },
  splitShard: {
    tag: 4,
    write: (w, c) => w.uvarint(c.shardId).uvarint(c.expectedEpoch).bytes(c.splitKey),
    read: (r) => ({
      type: 'splitShard',
      shardId: readInteger(r),
      expectedEpoch: readInteger(r),
      splitKey: r.bytes().slice(),
    }),
  },
  mergeShards: {
    tag: 5,
    write: (w, c) => w.uvarint(c.leftId).uvarint(c.leftEpoch).uvarint(c.rightId).uvarint(c.rightEpoch),
    read: (r) => ({
      type: 'mergeShards',
      leftId: readInteger(r),
      leftEpoch: readInteger(r),
      rightId: readInteger(r),
      rightEpoch: readInteger(r),
    }),
  },
  changeReplicas: {
    tag: 6,
    write: (w, c) =>
      w.uvarint(c.shardId).uvarint(c.expectedConfEpoch).u8(REPLICA_STEPS.indexOf(c.step)).uvarint(c.nodeId),
    read: (r) => ({
      type: 'changeReplicas',
      shardId: readInteger(r),
      expectedConfEpoch: readInteger(r),
      step: readEnum(r, REPLICA_STEPS, 'replica step'),
      nodeId: readInteger(r),
    }),
  },
  setLeaderHint: {
    tag: 7,
    write: (w, c) => writeOptionalInteger(w.uvarint(c.shardId), c.leader),
    read: (r) => ({ type: 'setLeaderHint', shardId: readInteger(r), leader: readOptionalInteger(r) }),
  },
  pinShard: {
    tag: 8,
    write: (w, c) => writeIntegers(w.uvarint(c.shardId), c.nodes),
    read: (r) => ({ type: 'pinShard', shardId: readInteger(r), nodes: readIntegers(r) }),
  },
  unpinShard: {
    tag: 9,
    write: (w, c) => w.uvarint(c.shardId),
    read: (r) => ({ type: 'unpinShard', shardId: readInteger(r) }),
  },
  raiseOracleMark: {
    tag: 10,
    write: (w, c) => w.uvarint(c.mark),
    read: (r) => ({ type: 'raiseOracleMark', mark: readInteger(r) }),
  },
  setCompactionRevision: {
    tag: 11,
    write: (w, c) => w.uvarint(c.revision),
    read: (r) => ({ type: 'setCompactionRevision', revision: readInteger(r) }),
  },
  setReplicationFactor: {
    tag: 12,
    write: (w, c) => w.uvarint(c.replicationFactor),
    read: (r) => ({ type: 'setReplicationFactor', replicationFactor: readInteger(r) }),
  },
};

const TYPE_BY_TAG = new Map<number, MetaCommandType>(
  (Object.keys(CODECS) as MetaCommandType[]).map((type) => [CODECS[type].tag, type]),
);

/** The entry payload for a command. Throws RangeError on a negative or unsafe integer field. */
export function encodeMetaCommand(command: MetaCommand): Uint8Array {
  const codec = CODECS[command.type] as CommandCodec<MetaCommandType>;
  const w = new BinaryWriter(64).u8(META_COMMAND_ENCODING_VERSION).u8(codec.tag);
  codec.write(w, command);
  return w.finish();
}

/** The command in an entry payload; any malformed payload is a MetaCommandInvalidError, never another throw. */
export function decodeMetaCommand(payload: Uint8Array): MetaCommand {
  return decoding('metadata command', MetaCommandInvalidError, (r) => {
    const version = r.u8();
    if (version !== META_COMMAND_ENCODING_VERSION) {
      throw new DecodeError(`unknown metadata command encoding version ${version}`);
    }
    const tag = r.u8();
    const type = TYPE_BY_TAG.get(tag);
    if (type === undefined) throw new DecodeError(`unknown metadata command tag ${tag}`);
    return CODECS[type].read(r);
  })(payload);
}

/**
 * Wraps a decoder: reads the whole payload (trailing bytes are an error) and turns every decoding
 * failure (truncation, bad UTF-8, an integer past 2^53) into `Failure` naming `what`.
 */
export function decoding<T>(
  what: string,
  Failure: new (message: string) => Error,
  read: (r: BinaryReader) => T,
): (payload: Uint8Array) => T {
  return (payload) => {
    try {
      const r = new BinaryReader(payload);
      const value = read(r);
      r.expectDone();
      return value;
    } catch (error) {
      if (error instanceof DecodeError) throw new Failure(`${what}: ${error.message}`);
      throw error;
    }
  };
}

/** A uvarint that must be a safe integer (util/binary reads up to 56 bits). */
export function readInteger(r: BinaryReader): number {
  const value = r.uvarint();
  if (!Number.isSafeInteger(value)) throw new DecodeError(`integer ${value} is above 2^53 - 1`);
  return value;
}

export function readEnum<T>(r: BinaryReader, values: readonly T[], what: string): T {
  const index = r.u8();
  const value = values[index];
  if (value === undefined) throw new DecodeError(`unknown ${what} ${index}`);
  return value;
}

export function writeIntegers(w: BinaryWriter, values: readonly number[]): BinaryWriter {
  w.uvarint(values.length);
  for (const value of values) w.uvarint(value);
  return w;
}

export function readIntegers(r: BinaryReader): number[] {
  return readList(r, readInteger);
}

/** A uvarint count, then that many items. */
export function readList<T>(r: BinaryReader, read: (r: BinaryReader) => T): T[] {
  const count = readInteger(r);
  const items: T[] = [];
  for (let i = 0; i < count; i++) items.push(read(r));
  return items;
}

export function writeOptionalInteger(w: BinaryWriter, value: number | undefined): BinaryWriter {
  return value === undefined ? w.u8(0) : w.u8(1).uvarint(value);
}

export function readOptionalInteger(r: BinaryReader): number | undefined {
  return readPresence(r) ? readInteger(r) : undefined;
}

function writeOptionalString(w: BinaryWriter, value: string | undefined): BinaryWriter {
  return value === undefined ? w.u8(0) : w.u8(1).string(value);
}

function readOptionalString(r: BinaryReader): string | undefined {
  return readPresence(r) ? readString(r) : undefined;
}

function readPresence(r: BinaryReader): boolean {
  const flag = r.u8();
  if (flag > 1) throw new DecodeError(`presence flag ${flag} is not 0 or 1`);
  return flag === 1;
}

/** util/binary decodes UTF-8 fatally (a TypeError); here that is a DecodeError like any other. */
function readString(r: BinaryReader): string {
  const bytes = r.bytes();
  try {
    return utf8.decode(bytes);
  } catch {
    throw new DecodeError('a string is not valid UTF-8');
  }
}

function writeNodeAttributes(w: BinaryWriter, node: NodeAttributes): BinaryWriter {
  w.uvarint(node.id).strings(node.peerUrls).strings(node.clientUrls);
  return writeOptionalString(writeOptionalString(w, node.host), node.zone);
}

function readNodeAttributes(r: BinaryReader): NodeAttributes {
  return {
    id: readInteger(r),
    peerUrls: readList(r, readString),
    clientUrls: readList(r, readString),
    host: readOptionalString(r),
    zone: readOptionalString(r),
  };
}

export function writeNode(w: BinaryWriter, node: MetaNode): BinaryWriter {
  return writeNodeAttributes(w.u8(NODE_STATES.indexOf(node.state)), node);
}

export function readNode(r: BinaryReader): MetaNode {
  const state = readEnum(r, NODE_STATES, 'node state');
  return { state, ...readNodeAttributes(r) };
}
