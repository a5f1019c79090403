// Requests waiting for their proposal to be applied, by request ID. Each waiter has a deadline
// so a proposal lost to a leader change fails with "request timed out" instead of hanging.

export class RequestTimeoutError extends Error {
  readonly code = 'request-timeout';
  constructor() {
    super('etcdserver: request timed out');
  }
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class Waiters<T> {
  private readonly pending = new Map<number, Waiter<T>>();
  /** Waiters that reached their deadline unanswered, since the start. */
  timeouts = 0;

  constructor(private readonly timeoutMs: number) {}

  get size(): number {
    return this.pending.size;
  }

  register(id: number): Promise<T> {
    if (this.pending.has(id)) throw new Error(`duplicate request id ${id}`);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.timeouts++;
        reject(new RequestTimeoutError());
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  resolve(id: number, value: T): boolean {
    const waiter = this.take(id);
    waiter?.resolve(value);
    return waiter !== undefined;
  }

  reject(id: number, error: Error): boolean {
    const waiter = this.take(id);
    waiter?.reject(error);
    return waiter !== undefined;
  }

  rejectAll(error: Error): void {
    for (const id of [...this.pending.keys()]) this.reject(id, error);
  }

  private take(id: number): Waiter<T> | undefined {
    const waiter = this.pending.get(id);
    if (waiter === undefined) return undefined;
    clearTimeout(waiter.timer);
    this.pending.delete(id);
    return waiter;
  }
}
