// Seeded randomness for the simulator. The core takes an injected Rng (src/raft/api.ts) so that one
// seed replays a whole cluster; everything random in a simulated run comes from these generators.
// xoshiro128** on four 32-bit words (Blackman & Vigna), seeded through splitmix32 so that nearby
// seeds give unrelated streams.

import type { Rng } from '../raft/api.js';

const TWO_POW_32 = 4294967296;

/** splitmix32: a good scrambler for turning a seed into generator state. */
function splitmix32(state: { x: number }): number {
  state.x = (state.x + 0x9e3779b9) | 0;
  let z = state.x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class SimRng implements Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** seed: any integer (its low 32 bits matter); stream separates generators derived from one seed. */
  constructor(seed: number, stream = 0) {
    const state = { x: (seed ^ Math.imul(stream + 1, 0x632be5ab)) | 0 };
    this.s0 = splitmix32(state) | 0;
    this.s1 = splitmix32(state) | 0;
    this.s2 = splitmix32(state) | 0;
    this.s3 = splitmix32(state) | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // all-zero state is a fixed point
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform integer in [0, bound), without modulo bias (rejection sampling). */
  nextInt(bound: number): number {
    if (!Number.isInteger(bound) || bound <= 0 || bound > TWO_POW_32) {
      throw new RangeError(`nextInt bound must be an integer in [1, 2^32], got ${bound}`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % bound);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % bound;
    }
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  between(lo: number, hi: number): number {
    if (hi < lo) throw new RangeError(`between: hi ${hi} < lo ${lo}`);
    return lo + this.nextInt(hi - lo + 1);
  }

  /** Uniform float in [0, 1). */
  nextFloat(): number {
    return this.nextU32() / TWO_POW_32;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.nextFloat() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.nextInt(items.length)]!;
  }

  /** Exponentially distributed value with the given mean (for latency tails). */
  exponential(mean: number): number {
    return -mean * Math.log(1 - this.nextFloat());
  }

  /** A new independent generator derived from this one's stream (e.g. one per node). */
  fork(stream: number): SimRng {
    return new SimRng(this.nextU32(), stream);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
