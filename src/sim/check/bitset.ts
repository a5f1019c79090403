// The set of linearized ops for the linearizability search, with an incrementally maintained
// Zobrist hash and a compact canonical snapshot for Lowe's cache.
//
// Ops are numbered with known-outcome ops first, in invocation order, then unknown ones. The
// search linearizes known-outcome ops roughly in that order (an op must be placed before its
// return), so their set is almost a prefix: all ones up to a low-water word, then a window no
// wider than the concurrency, then zeros. A snapshot keeps only that window (plus the small
// unknown part) instead of the whole bitset, which is what lets long single-key histories
// fit in memory.

import { CheckerInvariantError } from './verdict.js';

const ALL_ONES = 0xffffffff;

/** Deterministic per-index random words, so two runs over one history behave identically. */
function zobristTable(size: number, seed: number): Uint32Array {
  const table = new Uint32Array(size);
  let x = seed >>> 0 || 0x2545f491;
  for (let i = 0; i < size; i++) {
    // xorshift32: plenty for hashing; collisions are resolved by comparing snapshots.
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    table[i] = x >>> 0;
  }
  return table;
}

export class LinearizedSet {
  hash = 0;
  private readonly finite: Uint32Array;
  private readonly unknown: Uint32Array;
  private readonly zobrist: Uint32Array;
  /** Every finite word below this one is all ones. */
  private lowWord = 0;
  /** No finite word above this one has a bit set (an upper bound, tightened by snapshots). */
  private highWord = -1;

  /** Ops [0, finiteCount) have a known outcome; [finiteCount, size) are unknown. */
  constructor(
    readonly finiteCount: number,
    readonly size: number,
  ) {
    if (!(finiteCount >= 0 && finiteCount <= size))
      throw new CheckerInvariantError('bad LinearizedSet sizes');
    this.finite = new Uint32Array(Math.ceil(finiteCount / 32));
    this.unknown = new Uint32Array(Math.ceil((size - finiteCount) / 32));
    this.zobrist = zobristTable(size, 0x9e3779b9 ^ size);
  }

  has(index: number): boolean {
    const [words, i] = this.locate(index);
    return (words[i >>> 5] & (1 << (i & 31))) !== 0;
  }

  set(index: number): void {
    if (this.has(index)) throw new CheckerInvariantError(`op ${index} already linearized`);
    const [words, i] = this.locate(index);
    words[i >>> 5] |= 1 << (i & 31);
    this.hash = (this.hash ^ this.zobrist[index]) >>> 0;
    if (words !== this.finite) return;
    this.highWord = Math.max(this.highWord, i >>> 5);
    while (this.lowWord < this.finite.length && this.finite[this.lowWord] === ALL_ONES) this.lowWord++;
  }

  clear(index: number): void {
    if (!this.has(index)) throw new CheckerInvariantError(`op ${index} not linearized`);
    const [words, i] = this.locate(index);
    words[i >>> 5] &= ~(1 << (i & 31));
    this.hash = (this.hash ^ this.zobrist[index]) >>> 0;
    if (words === this.finite) this.lowWord = Math.min(this.lowWord, i >>> 5);
  }

  /** Canonical encoding: [lowWord, windowLength, ...finite window, ...unknown words]. */
  snapshot(): Uint32Array {
    const windowLength = this.windowLength();
    const snap = new Uint32Array(2 + windowLength + this.unknown.length);
    snap[0] = this.lowWord;
    snap[1] = windowLength;
    snap.set(this.finite.subarray(this.lowWord, this.lowWord + windowLength), 2);
    snap.set(this.unknown, 2 + windowLength);
    return snap;
  }

  /** Equal to snapshot() compared element-wise, without allocating. */
  matches(snap: Uint32Array): boolean {
    const windowLength = this.windowLength();
    if (snap[0] !== this.lowWord || snap[1] !== windowLength) return false;
    for (let i = 0; i < windowLength; i++) if (snap[2 + i] !== this.finite[this.lowWord + i]) return false;
    const base = 2 + windowLength;
    for (let i = 0; i < this.unknown.length; i++) if (snap[base + i] !== this.unknown[i]) return false;
    return true;
  }

  private windowLength(): number {
    let high = this.highWord;
    while (high >= this.lowWord && this.finite[high] === 0) high--;
    this.highWord = Math.max(high, this.lowWord - 1);
    return Math.max(0, high - this.lowWord + 1);
  }

  private locate(index: number): [Uint32Array, number] {
    if (!(index >= 0 && index < this.size)) throw new CheckerInvariantError(`op index ${index} out of range`);
    return index < this.finiteCount ? [this.finite, index] : [this.unknown, index - this.finiteCount];
  }
}
