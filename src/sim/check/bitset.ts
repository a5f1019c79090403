// A fixed-size bitset over operation indexes with an incrementally maintained Zobrist hash, so
// the linearizability search can look up (linearized set, state) in O(1) expected time instead
// of hashing hundreds of words on every step.

import { CheckerInvariantError } from './verdict.js';

/** Deterministic per-index random words, so two runs over one history behave identically. */
function zobristTable(size: number, seed: number): Uint32Array {
  const table = new Uint32Array(size);
  let x = seed >>> 0 || 0x2545f491;
  for (let i = 0; i < size; i++) {
    // xorshift32: plenty for hashing; collisions are resolved by comparing words.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    table[i] = x >>> 0;
  }
  return table;
}

export class Bitset {
  readonly words: Uint32Array;
  hash = 0;
  private readonly zobrist: Uint32Array;

  constructor(readonly size: number) {
    this.words = new Uint32Array(Math.ceil(size / 32));
    this.zobrist = zobristTable(size, 0x9e3779b9 ^ size);
  }

  has(index: number): boolean {
    return (this.words[index >>> 5] & (1 << (index & 31))) !== 0;
  }

  set(index: number): void {
    if (this.has(index)) throw new CheckerInvariantError(`bit ${index} already set`);
    this.words[index >>> 5] |= 1 << (index & 31);
    this.hash = (this.hash ^ this.zobrist[index]) >>> 0;
  }

  clear(index: number): void {
    if (!this.has(index)) throw new CheckerInvariantError(`bit ${index} already clear`);
    this.words[index >>> 5] &= ~(1 << (index & 31));
    this.hash = (this.hash ^ this.zobrist[index]) >>> 0;
  }

  equalsWords(other: Uint32Array): boolean {
    const words = this.words;
    for (let i = 0; i < words.length; i++) if (words[i] !== other[i]) return false;
    return true;
  }

  snapshot(): Uint32Array {
    return this.words.slice();
  }
}
