// MurmurHash3 (x86, 32-bit; Austin Appleby's public-domain algorithm), written from its
// description: a fast, well-mixed, non-cryptographic hash, the same on every platform. Placement
// uses it for rendezvous scores, so its output is part of where replicas go and must not change.

import { fmix32 } from '../util/fmix32.js';

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function mixBlock(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/** MurmurHash3_x86_32 of `data` with `seed`, as an unsigned 32-bit integer. */
export function murmur3_32(data: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const tail = data.length & ~3;
  for (let i = 0; i < tail; i += 4) {
    h ^= mixBlock(data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = data.length & 3;
  if (rest > 0) {
    let k = data[tail]!;
    if (rest > 1) k |= data[tail + 1]! << 8;
    if (rest > 2) k |= data[tail + 2]! << 16;
    h ^= mixBlock(k);
  }
  return fmix32(h ^ data.length);
}
