// MurmurHash3's 32-bit finalizer: spreads every input bit over the whole word, so hashes of nearby
// inputs land far apart. Shared by the hashes that must spread keys (placement, the client's ring).

/** The finalizer `fmix32` of MurmurHash3, as an unsigned 32-bit integer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
