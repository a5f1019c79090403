// Consistent hashing with virtual nodes: each endpoint owns `virtualNodesPerEndpoint` points on a
// 32-bit ring; a key goes to the first point clockwise from its hash. Removing an endpoint moves
// only the keys it owned (to their next point), which is what key affinity needs when an
// endpoint is ejected.

import { fmix32 } from '../util/fmix32.js';

/** FNV-1a, 32 bit, then a murmur3 finalizer so nearby inputs spread over the ring. */
export function hash32(data: Uint8Array | string): number {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let h = 0x811c9dc5;
  for (const byte of bytes) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

export class HashRing {
  private points: { hash: number; member: string }[] = [];

  constructor(
    members: readonly string[],
    private readonly virtualNodesPerEndpoint = 160,
  ) {
    if (virtualNodesPerEndpoint < 1) throw new RangeError('virtualNodesPerEndpoint must be >= 1');
    for (const member of members) this.add(member);
  }

  add(member: string): void {
    for (let v = 0; v < this.virtualNodesPerEndpoint; v++) {
      this.points.push({ hash: hash32(`${member}#${v}`), member });
    }
    this.points.sort((a, b) => a.hash - b.hash || (a.member < b.member ? -1 : 1));
  }

  /** The owner of `key` among members accepted by `allowed` (walks clockwise past refused ones). */
  lookup(key: Uint8Array | string, allowed: (member: string) => boolean = () => true): string | undefined {
    const points = this.points;
    if (points.length === 0) return undefined;
    const target = hash32(key);
    let low = 0;
    let high = points.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((points[mid] as { hash: number }).hash < target) low = mid + 1;
      else high = mid;
    }
    for (let step = 0; step < points.length; step++) {
      const point = points[(low + step) % points.length] as { member: string };
      if (allowed(point.member)) return point.member;
    }
    return undefined;
  }
}
