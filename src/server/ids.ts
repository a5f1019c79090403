// Member and cluster IDs. As in etcd, a member's ID is derived from its peer URLs and the
// cluster token (plus a timestamp for members added later), and the cluster ID from the member
// IDs, so every node of a new cluster computes the same IDs from the same flags. Ours keep 48
// bits so they are exact as JS numbers (the Raft core's NodeId) and as uint64 on the wire.

import { createHash } from 'node:crypto';

function hash48(text: string): number {
  const digest = createHash('sha1').update(text).digest();
  // Six bytes: below 2^48, so exact as a JS number (no bitwise ops: they truncate to 32 bits).
  const id = digest.readUIntBE(0, 6);
  return id === 0 ? 1 : id;
}

export function memberIdFor(peerUrls: string[], clusterToken: string, addedAtMs?: number): number {
  const sorted = [...peerUrls].sort().join(',');
  return hash48(`${sorted}|${clusterToken}${addedAtMs === undefined ? '' : `|${addedAtMs}`}`);
}

export function clusterIdFor(memberIds: number[]): number {
  return hash48([...memberIds].sort((a, b) => a - b).join(','));
}

/** etcd prints IDs as lowercase hex without padding. */
export function formatId(id: number | bigint): string {
  return id.toString(16);
}
