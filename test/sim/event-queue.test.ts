import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventQueue } from '../../src/sim/event-queue.js';

describe('EventQueue', () => {
  it('pops events in time order and advances the virtual clock', () => {
    const q = new EventQueue<string>();
    q.after(30, 'c');
    q.after(10, 'a');
    q.after(20, 'b');
    const out: [number, string][] = [];
    for (let item = q.pop(); item; item = q.pop()) out.push([q.now, item.event]);
    assert.deepEqual(out, [
      [10, 'a'],
      [20, 'b'],
      [30, 'c'],
    ]);
  });

  it('events at the same instant run in scheduling order', () => {
    const q = new EventQueue<number>();
    for (let i = 0; i < 50; i++) q.after(5, i);
    const out: number[] = [];
    for (let item = q.pop(); item; item = q.pop()) out.push(item.event);
    assert.deepEqual(
      out,
      Array.from({ length: 50 }, (_, i) => i),
    );
  });

  it('delays are relative to the time of the event being processed', () => {
    const q = new EventQueue<string>();
    q.after(100, 'first');
    q.pop();
    q.after(5, 'second');
    assert.equal(q.peekTime(), 105);
  });

  it('orders a large random schedule like a stable sort', () => {
    const q = new EventQueue<number>();
    const times: number[] = [];
    let x = 12345;
    for (let i = 0; i < 2000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const t = x % 500;
      times.push(t);
      q.after(t, i);
    }
    const expected = times.map((t, i) => [t, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const got: number[] = [];
    for (let item = q.pop(); item; item = q.pop()) got.push(item.event);
    assert.deepEqual(
      got,
      expected.map(([, i]) => i),
    );
  });

  it('rejects negative or non-finite delays', () => {
    const q = new EventQueue<string>();
    assert.throws(() => q.after(-1, 'x'), RangeError);
    assert.throws(() => q.after(Number.NaN, 'x'), RangeError);
    assert.throws(() => q.after(Number.POSITIVE_INFINITY, 'x'), RangeError);
  });
});
