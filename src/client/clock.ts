// Time and randomness are injected so balancer and retry behaviour can be tested with a fake
// clock and a seeded generator.

export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A uniform float in [0, 1). */
export type Random = () => number;

export const systemRandom: Random = Math.random;

/** Mulberry32: a tiny seeded generator, good enough for load spreading and tests. */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FakeClock implements Clock {
  constructor(private current = 0) {}
  nowMs(): number {
    return this.current;
  }
  advance(ms: number): void {
    if (ms < 0) throw new Error('a clock does not go back');
    this.current += ms;
  }
}
