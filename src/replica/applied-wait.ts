// Resolves promises once the applied index reaches a target: linearizable reads wait here for
// the index their ReadIndex round returned.

interface AppliedWaiter {
  index: number;
  resolve(): void;
}

export class AppliedWait {
  private applied: number;
  /** Kept sorted by index ascending; reads arrive mostly in order, so insertion is cheap. */
  private readonly waiters: AppliedWaiter[] = [];

  constructor(applied: number) {
    this.applied = applied;
  }

  get appliedIndex(): number {
    return this.applied;
  }

  wait(index: number): Promise<void> {
    if (index <= this.applied) return Promise.resolve();
    return new Promise((resolve) => {
      let at = this.waiters.length;
      while (at > 0 && this.waiters[at - 1]!.index > index) at--;
      this.waiters.splice(at, 0, { index, resolve });
    });
  }

  advance(applied: number): void {
    if (applied < this.applied) throw new Error(`applied index went back from ${this.applied} to ${applied}`);
    this.applied = applied;
    let done = 0;
    while (done < this.waiters.length && this.waiters[done]!.index <= applied) done++;
    if (done === 0) return;
    for (const waiter of this.waiters.splice(0, done)) waiter.resolve();
  }
}
