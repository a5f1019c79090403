// The virtual clock: a priority queue of events ordered by (time, insertion sequence). The sequence
// breaks ties deterministically, so two events scheduled for the same instant always run in the
// order they were scheduled — one seed, one history.

export interface Scheduled<E> {
  readonly timeUs: number;
  readonly seq: number;
  readonly event: E;
}

export class EventQueue<E> {
  private heap: Scheduled<E>[] = [];
  private seq = 0;
  private nowUs = 0;

  /** Current virtual time in microseconds: the time of the event being processed. */
  get now(): number {
    return this.nowUs;
  }

  get size(): number {
    return this.heap.length;
  }

  /** Schedules event at now + delayUs (delay ≥ 0). */
  after(delayUs: number, event: E): void {
    if (!(delayUs >= 0) || !Number.isFinite(delayUs)) throw new RangeError(`bad delay ${delayUs}`);
    this.push({ timeUs: this.nowUs + Math.round(delayUs), seq: this.seq++, event });
  }

  /** Removes and returns the earliest event, advancing the clock to its time. */
  pop(): Scheduled<E> | undefined {
    const heap = this.heap;
    if (heap.length === 0) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      this.siftDown(0);
    }
    if (top.timeUs < this.nowUs) throw new Error(`virtual time went back: ${top.timeUs} < ${this.nowUs}`);
    this.nowUs = top.timeUs;
    return top;
  }

  peekTime(): number | undefined {
    return this.heap[0]?.timeUs;
  }

  private push(item: Scheduled<E>): void {
    const heap = this.heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(item, heap[parent]!)) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const item = heap[i]!;
    const n = heap.length;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && before(heap[right]!, heap[left]!) ? right : left;
      if (!before(heap[child]!, item)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = item;
  }
}

function before<E>(a: Scheduled<E>, b: Scheduled<E>): boolean {
  return a.timeUs < b.timeUs || (a.timeUs === b.timeUs && a.seq < b.seq);
}
