// One timer per process for every group it hosts. Each RaftHost asks its scheduler for a tick
// every tickMs (HostScheduler.every); with NODE_SCHEDULER that is a setInterval per group, so a
// node hosting 1,000 groups would wake 1,000 times per tick interval. TickDriver keeps one
// setInterval per distinct interval and calls every registered group from it; a group that
// hibernates (RaftHost gives its timer back while its core is quiesced) is simply not in the set,
// and with no group awake the interval is cleared, so an idle node wakes for nothing but its
// transport's per-peer keep-alives.
//
// soon() is coalesced the same way: the Readies of every group scheduled in one turn run from one
// setImmediate, in the order they were scheduled.

import type { HostScheduler } from '../replica/raft-host.js';

interface Ticker {
  intervalMs: number;
  timer: ReturnType<typeof setInterval>;
  ticks: Set<() => void>;
}

export interface TickDriverStats {
  /** Groups currently ticked (awake). */
  registered: number;
  /** Interval timer firings since start. */
  firings: number;
  /** Group ticks delivered since start. */
  ticks: number;
}

export class TickDriver implements HostScheduler {
  private readonly tickers = new Map<number, Ticker>();
  private pendingSoon: (() => void)[] = [];
  private firings = 0;
  private ticksDelivered = 0;

  every(intervalMs: number, tick: () => void): () => void {
    let ticker = this.tickers.get(intervalMs);
    if (ticker === undefined) {
      const ticks = new Set<() => void>();
      const timer = setInterval(() => this.fire(ticks), intervalMs);
      ticker = { intervalMs, timer, ticks };
      this.tickers.set(intervalMs, ticker);
    }
    // A wrapper per registration, so one function registered twice is ticked twice, and removed once.
    const entry = (): void => tick();
    ticker.ticks.add(entry);
    const registered = ticker;
    return () => {
      registered.ticks.delete(entry);
      if (registered.ticks.size === 0 && this.tickers.get(intervalMs) === registered) {
        clearInterval(registered.timer);
        this.tickers.delete(intervalMs);
      }
    };
  }

  soon(run: () => void): void {
    this.pendingSoon.push(run);
    if (this.pendingSoon.length === 1) setImmediate(this.runSoon);
  }

  stats(): TickDriverStats {
    let registered = 0;
    for (const t of this.tickers.values()) registered += t.ticks.size;
    return { registered, firings: this.firings, ticks: this.ticksDelivered };
  }

  /** Stops every timer (the node is stopping); registrations are dropped. */
  close(): void {
    for (const t of this.tickers.values()) clearInterval(t.timer);
    this.tickers.clear();
  }

  private fire(ticks: Set<() => void>): void {
    this.firings++;
    // A snapshot: a tick may unregister its own group (it hibernated) or, through it, another.
    for (const tick of [...ticks]) {
      if (!ticks.has(tick)) continue;
      this.ticksDelivered++;
      tick();
    }
  }

  private readonly runSoon = (): void => {
    const batch = this.pendingSoon;
    this.pendingSoon = [];
    for (const run of batch) run();
  };
}
