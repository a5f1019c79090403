// Cluster membership as the server sees it: who the members are (IDs, names, URLs, learner or
// voter) and which IDs were removed (a removed member may never come back under the same ID).
// Changed only by applying committed entries, so every node holds the same picture.

import { BinaryReader, BinaryWriter } from '../util/binary.js';

/** The keyspace meta record holding the cluster membership (travels with snapshots). */
export const MEMBERS_META_NAME = 'cluster/members';

export interface MemberInfo {
  id: number;
  /** Empty until the member has started and published its attributes. */
  name: string;
  peerUrls: string[];
  clientUrls: string[];
  isLearner: boolean;
}

/**
 * What a ConfChange entry carries in its context: the member being added or changed, the
 * cluster ID (so a member joining from an empty log learns it) and who waits for the result.
 */
export interface MemberChangeContext {
  id: number;
  /** Known for founding members (from --initial-cluster); empty for added ones until they publish. */
  name: string;
  peerUrls: string[];
  isLearner: boolean;
  clusterId: number;
  proposer: number;
  requestId: number;
}

export class MemberNotFoundError extends Error {
  readonly code = 'member-not-found';
  constructor() {
    super('etcdserver: member not found');
  }
}

/** etcd stores an alarm of any type, NONE included (it then only shows in the lists). */
export type AlarmKind = 'NOSPACE' | 'CORRUPT' | 'NONE';
const alarmKinds: readonly string[] = ['NOSPACE', 'CORRUPT', 'NONE'];

export interface Alarm {
  memberId: number;
  alarm: AlarmKind;
}

export class Members {
  private readonly byId = new Map<number, MemberInfo>();
  private readonly removedIds = new Set<number>();
  private readonly alarmSet = new Map<string, Alarm>();

  /** 0 until learned (a member joining an existing cluster learns it from the log). */
  constructor(public clusterId: number) {}

  list(): MemberInfo[] {
    return [...this.byId.values()].sort((a, b) => a.id - b.id).map((m) => structuredClone(m));
  }

  get(id: number): MemberInfo | undefined {
    return this.byId.get(id);
  }

  has(id: number): boolean {
    return this.byId.has(id);
  }

  isRemoved(id: number): boolean {
    return this.removedIds.has(id);
  }

  removed(): number[] {
    return [...this.removedIds].sort((a, b) => a - b);
  }

  /** Adds a member or, for a learner being promoted, flips it to voter. Idempotent (replay-safe). */
  add(change: MemberChangeContext): void {
    const existing = this.byId.get(change.id);
    if (existing !== undefined) {
      existing.isLearner = change.isLearner;
      if (change.peerUrls.length > 0) existing.peerUrls = [...change.peerUrls];
      return;
    }
    this.byId.set(change.id, {
      id: change.id,
      name: change.name,
      peerUrls: [...change.peerUrls],
      clientUrls: [],
      isLearner: change.isLearner,
    });
  }

  remove(id: number): void {
    this.byId.delete(id);
    this.removedIds.add(id);
  }

  publish(id: number, name: string, clientUrls: string[]): void {
    const member = this.byId.get(id);
    if (member === undefined) return; // published after its removal: ignore, as etcd does
    member.name = name;
    member.clientUrls = [...clientUrls];
  }

  updatePeerUrls(id: number, peerUrls: string[]): void {
    const member = this.byId.get(id);
    if (member === undefined) return;
    member.peerUrls = [...peerUrls];
  }

  /** The peer URL set is unique per member (etcd refuses "Peer URLs already exists"). */
  peerUrlsInUse(peerUrls: string[], exceptId = 0): boolean {
    for (const member of this.byId.values()) {
      if (member.id === exceptId) continue;
      if (member.peerUrls.some((url) => peerUrls.includes(url))) return true;
    }
    return false;
  }

  /** Raises an alarm (for any member ID, as etcd's alarm store does); returns the stored alarm. */
  activateAlarm(alarm: Alarm): Alarm {
    const key = `${alarm.memberId}:${alarm.alarm}`;
    if (!this.alarmSet.has(key)) this.alarmSet.set(key, { ...alarm });
    return { ...this.alarmSet.get(key)! };
  }

  /** Lowers exactly this member's alarm of this kind; returns it, or undefined when it was not raised. */
  deactivateAlarm(alarm: Alarm): Alarm | undefined {
    const key = `${alarm.memberId}:${alarm.alarm}`;
    const raised = this.alarmSet.get(key);
    this.alarmSet.delete(key);
    return raised === undefined ? undefined : { ...raised };
  }

  /** The raised alarms of one kind; NONE (or no kind) lists them all, as etcd's Get does. */
  alarms(kind: AlarmKind = 'NONE'): Alarm[] {
    return [...this.alarmSet.values()]
      .filter((a) => kind === 'NONE' || a.alarm === kind)
      .map((a) => ({ ...a }));
  }

  hasAlarm(kind: AlarmKind): boolean {
    for (const alarm of this.alarmSet.values()) if (alarm.alarm === kind) return true;
    return false;
  }

  encode(): Uint8Array {
    const w = new BinaryWriter(256);
    w.u8(1).uvarint(this.clusterId).uvarint(this.byId.size);
    for (const m of this.byId.values()) {
      w.uvarint(m.id).string(m.name).bool(m.isLearner);
      w.strings(m.peerUrls);
      w.strings(m.clientUrls);
    }
    w.uvarint(this.removedIds.size);
    for (const id of this.removedIds) w.uvarint(id);
    w.uvarint(this.alarmSet.size);
    for (const alarm of this.alarmSet.values()) w.uvarint(alarm.memberId).string(alarm.alarm);
    return w.finish();
  }

  static decode(data: Uint8Array): Members {
    const r = new BinaryReader(data);
    const version = r.u8();
    if (version !== 1) throw new Error(`unknown members encoding version ${version}`);
    const members = new Members(r.uvarint());
    const count = r.uvarint();
    for (let i = 0; i < count; i++) {
      const id = r.uvarint();
      const name = r.string();
      const isLearner = r.bool();
      const peerUrls = r.strings();
      const clientUrls = r.strings();
      members.byId.set(id, { id, name, isLearner, peerUrls, clientUrls });
    }
    const removed = r.uvarint();
    for (let i = 0; i < removed; i++) members.removedIds.add(r.uvarint());
    const alarms = r.uvarint();
    for (let i = 0; i < alarms; i++) {
      const memberId = r.uvarint();
      const alarm = r.string();
      if (!alarmKinds.includes(alarm)) throw new Error(`unknown alarm ${alarm}`);
      members.activateAlarm({ memberId, alarm: alarm as AlarmKind });
    }
    r.expectDone();
    return members;
  }
}

export function encodeMemberChange(change: MemberChangeContext): Uint8Array {
  const w = new BinaryWriter(64);
  w.uvarint(change.id).string(change.name).bool(change.isLearner).strings(change.peerUrls);
  w.uvarint(change.clusterId).uvarint(change.proposer).uvarint(change.requestId);
  return w.finish();
}

export function decodeMemberChange(data: Uint8Array): MemberChangeContext {
  const r = new BinaryReader(data);
  const change: MemberChangeContext = {
    id: r.uvarint(),
    name: r.string(),
    isLearner: r.bool(),
    peerUrls: r.strings(),
    clusterId: r.uvarint(),
    proposer: r.uvarint(),
    requestId: r.uvarint(),
  };
  r.expectDone();
  return change;
}
