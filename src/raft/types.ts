// The vocabulary of the consensus core. Everything here is plain data: the core never performs
// I/O, so what it wants done (persist, send, apply) is described by these types and handed out
// in a Ready (see ready.ts / node.ts).

/** A member of a Raft group. Positive safe integer; 0 means "none". */
export type NodeId = number;
export const NONE: NodeId = 0;

export enum EntryType {
  Normal = 0,
  /** data is an encoded ConfChange (see confchange.ts). */
  ConfChange = 1,
}

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque to the core. An empty Normal entry is the no-op a new leader appends. */
  data: Uint8Array;
}

/** The state that must be on disk before any message that depends on it is sent. */
export interface HardState {
  term: number;
  vote: NodeId;
  commit: number;
}

/** Membership. In a joint configuration votersOutgoing is non-empty (Raft thesis §4.3). */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
  /** The old voter set while in joint consensus; empty otherwise. */
  votersOutgoing: NodeId[];
  /** Voters of the outgoing config that become learners when the joint config is left. */
  learnersNext: NodeId[];
  /** Leave the joint config automatically once it is committed. */
  autoLeave: boolean;
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /** The application's state at metadata.index; opaque to the core. */
  data: Uint8Array;
}

export enum MessageType {
  // Local messages: never sent over the network.
  Hup = 0,
  Beat = 1,
  Propose = 2,
  // Network messages.
  Append = 3,
  AppendResponse = 4,
  Vote = 5,
  VoteResponse = 6,
  PreVote = 7,
  PreVoteResponse = 8,
  Snapshot = 9,
  Heartbeat = 10,
  HeartbeatResponse = 11,
  TimeoutNow = 12,
  ReadIndex = 13,
  ReadIndexResponse = 14,
  TransferLeader = 15,
  // Local reports from the application about a peer.
  Unreachable = 16,
  SnapshotStatus = 17,
  CheckQuorum = 18,
}

export interface Message {
  type: MessageType;
  to: NodeId;
  from: NodeId;
  term: number;
  /** Term of the entry at `index` (Append), or of the candidate's last entry (votes). */
  logTerm: number;
  /**
   * Append: index of the entry preceding `entries`; AppendResponse: last matching index;
   * votes: the candidate's last index; ReadIndexResponse: the read index; TransferLeader: the
   * target; Heartbeat/HeartbeatResponse: the leader's tick when it sent the heartbeat (leases).
   */
  index: number;
  entries: Entry[];
  commit: number;
  snapshot?: Snapshot;
  reject: boolean;
  /** On a rejected append: the follower's hint of where the logs may match. */
  rejectHint: number;
  /** Opaque bytes carried through heartbeats and ReadIndex (the read request context). */
  context: Uint8Array;
}

export enum Role {
  Follower = 'follower',
  PreCandidate = 'pre-candidate',
  Candidate = 'candidate',
  Leader = 'leader',
}

/** Volatile state, reported in a Ready only when it changed. */
export interface SoftState {
  leader: NodeId;
  role: Role;
}

/** A ReadIndex request that is now safe to serve once the state machine has applied `index`. */
export interface ReadState {
  index: number;
  context: Uint8Array;
}

export const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

export function emptyConfState(): ConfState {
  return { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
}

export function emptyHardState(): HardState {
  return { term: 0, vote: NONE, commit: 0 };
}

export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === NONE && hs.commit === 0;
}

/** A message with every field defaulted, so call sites name only what they set. */
export function message(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    to: NONE,
    from: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    context: EMPTY_BYTES,
    ...fields,
  };
}
