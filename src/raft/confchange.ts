// Membership changes: the binary form of a ConfChange carried in a log entry, and the rules that
// turn one configuration into the next (single-step changes or joint consensus, Raft thesis §4.3).

import type { ConfChange, ConfChangeSingle, ConfChangeType } from './api.js';
import { assertNever, ConfChangeError } from './errors.js';
import { cloneTrackerConfig, type TrackerConfig } from './tracker.js';
import type { ConfState, NodeId } from './types.js';

// Format: version byte, transition byte, varint count, then per change a type byte and a varint
// node id, then varint context length and the context bytes. Varints are LEB128 over safe integers.
const FORMAT_VERSION = 1;
const TRANSITIONS: ConfChange['transition'][] = ['auto', 'joint-implicit', 'joint-explicit'];
const CHANGE_TYPES: ConfChangeType[] = ['add-node', 'remove-node', 'add-learner'];
const CHANGES_MAX = 1024;

function varintLength(n: number): number {
  let len = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new ConfChangeError(`cannot encode ${n} as a varint`);
  while (n >= 128) {
    buf[pos++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

function readVarint(buf: Uint8Array, state: { pos: number }): number {
  let n = 0;
  let mul = 1;
  for (let i = 0; i < 8; i++) {
    if (state.pos >= buf.byteLength) throw new ConfChangeError('truncated conf change');
    const b = buf[state.pos++]!;
    n += (b & 127) * mul;
    if (b < 128) return n;
    mul *= 128;
  }
  throw new ConfChangeError('conf change varint too long');
}

/** Encodes a ConfChange as the data of an EntryType.ConfChange entry. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const transition = TRANSITIONS.indexOf(change.transition);
  if (transition < 0) throw new ConfChangeError(`unknown transition ${change.transition}`);
  let size = 2 + varintLength(change.changes.length) + varintLength(change.context.byteLength);
  size += change.context.byteLength;
  for (const c of change.changes) size += 1 + varintLength(c.nodeId);
  const buf = new Uint8Array(size);
  buf[0] = FORMAT_VERSION;
  buf[1] = transition;
  let pos = writeVarint(buf, 2, change.changes.length);
  for (const c of change.changes) {
    const type = CHANGE_TYPES.indexOf(c.type);
    if (type < 0) throw new ConfChangeError(`unknown conf change type ${c.type}`);
    buf[pos++] = type;
    pos = writeVarint(buf, pos, c.nodeId);
  }
  pos = writeVarint(buf, pos, change.context.byteLength);
  buf.set(change.context, pos);
  return buf;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.byteLength < 2 || data[0] !== FORMAT_VERSION) {
    throw new ConfChangeError(`unknown conf change format version ${data[0]}`);
  }
  const transition = TRANSITIONS[data[1]!];
  if (transition === undefined) throw new ConfChangeError(`unknown conf change transition ${data[1]}`);
  const state = { pos: 2 };
  const count = readVarint(data, state);
  if (count > CHANGES_MAX) throw new ConfChangeError(`conf change has ${count} changes (max ${CHANGES_MAX})`);
  const changes: ConfChangeSingle[] = [];
  for (let i = 0; i < count; i++) {
    if (state.pos >= data.byteLength) throw new ConfChangeError('truncated conf change');
    const type = CHANGE_TYPES[data[state.pos++]!];
    if (type === undefined) throw new ConfChangeError(`unknown conf change type ${data[state.pos - 1]}`);
    changes.push({ type, nodeId: readVarint(data, state) });
  }
  const len = readVarint(data, state);
  if (state.pos + len !== data.byteLength) throw new ConfChangeError('conf change context length mismatch');
  return { transition, changes, context: data.slice(state.pos, state.pos + len) };
}

/** Whether applying this change enters joint consensus (vs. a single step or leaving joint). */
export function entersJoint(change: ConfChange): boolean {
  return change.changes.length > 0 && (change.transition !== 'auto' || change.changes.length > 1);
}

export function leavesJoint(change: ConfChange): boolean {
  return change.changes.length === 0;
}

/**
 * Computes the configuration after `change`, validating it; the input is not modified. Returns the
 * new config and the ids that are members in it (so the caller can add/drop progress).
 */
export function nextConfig(current: TrackerConfig, change: ConfChange): TrackerConfig {
  const joint = current.outgoing.size > 0;
  if (leavesJoint(change)) {
    if (!joint) throw new ConfChangeError('cannot leave a joint configuration that was never entered');
    const next = cloneTrackerConfig(current);
    for (const id of next.learnersNext) next.learners.add(id);
    next.learnersNext.clear();
    next.outgoing.clear();
    next.autoLeave = false;
    check(next);
    return next;
  }
  if (joint) throw new ConfChangeError('configuration is joint: leave it before changing membership again');
  const next = cloneTrackerConfig(current);
  if (entersJoint(change)) {
    if (current.incoming.size === 0)
      throw new ConfChangeError('cannot enter joint consensus from an empty config');
    next.outgoing = new Set(current.incoming);
    next.autoLeave = change.transition !== 'joint-explicit';
    applyChanges(next, change.changes);
  } else {
    applyChanges(next, change.changes);
    let diff = 0;
    for (const id of next.incoming) if (!current.incoming.has(id)) diff++;
    for (const id of current.incoming) if (!next.incoming.has(id)) diff++;
    if (diff > 1) throw new ConfChangeError('more than one voter changed without joint consensus');
  }
  check(next);
  return next;
}

function applyChanges(c: TrackerConfig, changes: readonly ConfChangeSingle[]): void {
  for (const change of changes) {
    const id = change.nodeId;
    if (!Number.isSafeInteger(id) || id <= 0) throw new ConfChangeError(`invalid node id ${id}`);
    switch (change.type) {
      case 'add-node':
        c.learners.delete(id);
        c.learnersNext.delete(id);
        c.incoming.add(id);
        break;
      case 'add-learner':
        c.incoming.delete(id);
        // A node still voting in the outgoing half cannot be a learner yet: it becomes one on leave.
        if (c.outgoing.has(id)) c.learnersNext.add(id);
        else c.learners.add(id);
        break;
      case 'remove-node':
        c.incoming.delete(id);
        c.learners.delete(id);
        c.learnersNext.delete(id);
        break;
      default:
        assertNever(change.type);
    }
  }
  if (c.incoming.size === 0) throw new ConfChangeError('removed all voters');
}

function check(c: TrackerConfig): void {
  for (const id of c.learners) {
    if (c.incoming.has(id) || c.outgoing.has(id))
      throw new ConfChangeError(`node ${id} is both voter and learner`);
  }
  for (const id of c.learnersNext) {
    if (!c.outgoing.has(id)) throw new ConfChangeError(`node ${id} in learnersNext is not an outgoing voter`);
  }
  if (c.outgoing.size === 0 && c.autoLeave) throw new ConfChangeError('autoLeave set outside a joint config');
}

export function trackerConfigFromConfState(cs: ConfState): TrackerConfig {
  const c: TrackerConfig = {
    incoming: new Set(cs.voters),
    outgoing: new Set(cs.votersOutgoing),
    learners: new Set(cs.learners),
    learnersNext: new Set(cs.learnersNext),
    autoLeave: cs.autoLeave,
  };
  check(c);
  return c;
}

/** Every id that has a role in the configuration (and so a Progress). */
export function members(c: TrackerConfig): NodeId[] {
  const ids = new Set<NodeId>([...c.incoming, ...c.outgoing, ...c.learners, ...c.learnersNext]);
  return [...ids].sort((a, b) => a - b);
}
