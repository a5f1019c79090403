// Member and cluster IDs. As in etcd, a member's ID is derived from its peer URLs and the
// cluster token (plus a timestamp for members added later), and the cluster ID from the member
// IDs, so every node of a new cluster computes the same IDs from the same flags.
//
// Each ID has two forms. Inside (Raft's NodeId, the WAL, the peer transport, the data dir) it is
// 48 bits, exact as a JS number. What etcd's API shows (headers, member lists, Status, alarms,
// logs, snapshots) is 64 bits like etcd's: the 48-bit ID in the high bits and 16 bits of its hash
// in the low ones, so tools that keep or print member IDs see etcd's shapes (`%16x` unpadded).
// A request may name a member by either form; the 48-bit one is what Concord showed before.

import { createHash } from 'node:crypto';

function sha1(text: string): Buffer {
  return createHash('sha1').update(text).digest();
}

function hash48(text: string): number {
  // Six bytes: below 2^48, so exact as a JS number (no bitwise ops: they truncate to 32 bits).
  const id = sha1(text).readUIntBE(0, 6);
  return id === 0 ? 1 : id;
}

export function memberIdFor(peerUrls: string[], clusterToken: string, addedAtMs?: number): number {
  const sorted = [...peerUrls].sort().join(',');
  return hash48(`${sorted}|${clusterToken}${addedAtMs === undefined ? '' : `|${addedAtMs}`}`);
}

export function clusterIdFor(memberIds: number[]): number {
  return hash48([...memberIds].sort((a, b) => a - b).join(','));
}

const publicIds = new Map<number, bigint>();
const publicIdsMax = 4096;

/** The 64-bit form etcd's API shows for a 48-bit member or cluster ID (0, "none", stays 0). */
export function publicId(id: number): bigint {
  if (id === 0) return 0n;
  let out = publicIds.get(id);
  if (out === undefined) {
    out = (BigInt(id) << 16n) | BigInt(sha1(`concord-id|${id}`).readUInt16BE(0));
    if (publicIds.size >= publicIdsMax) publicIds.clear();
    publicIds.set(id, out);
  }
  return out;
}

/**
 * The member among `ids` that `value` names, in either form; undefined when none does (the
 * caller answers "member not found", as etcd does for an unknown ID).
 */
export function memberIdNamed(value: bigint, ids: Iterable<number>): number | undefined {
  for (const id of ids) if (publicId(id) === value || BigInt(id) === value) return id;
  return undefined;
}

/** etcd prints IDs as lowercase hex without padding; this is the public form's. */
export function formatId(id: number): string {
  return publicId(id).toString(16);
}
