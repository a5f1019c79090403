import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TickDriver } from '../../src/node/tick-driver.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('TickDriver', () => {
  it('ticks every registered group from one timer, and none once all gave their registration back', async () => {
    const driver = new TickDriver();
    const ticks = [0, 0, 0];
    const stops = ticks.map((_, i) => driver.every(5, () => ticks[i]!++));
    try {
      await sleep(60);
      assert.ok(
        ticks.every((n) => n > 0),
        `every group ticked: ${ticks}`,
      );
      const { firings, ticks: delivered } = driver.stats();
      assert.equal(delivered, ticks[0]! + ticks[1]! + ticks[2]!);
      assert.ok(delivered >= 3 * firings - 3, 'one firing ticks all three');
      stops[1]!();
      const frozen = ticks[1]!;
      await sleep(30);
      assert.equal(ticks[1], frozen, 'a group that gave its registration back is not ticked');
      stops[0]!();
      stops[2]!();
      assert.equal(driver.stats().registered, 0);
      const firingsAtRest = driver.stats().firings;
      await sleep(30);
      assert.equal(driver.stats().firings, firingsAtRest, 'no timer fires when no group is awake');
      const again = driver.every(5, () => ticks[1]!++);
      await sleep(30);
      assert.ok(ticks[1]! > frozen, 'a group that woke is ticked again');
      again();
    } finally {
      driver.close();
    }
  });

  it('a tick that unregisters another group stops that group in the same firing', async () => {
    const driver = new TickDriver();
    let second = 0;
    let stopSecond: () => void = () => {};
    const stopFirst = driver.every(5, () => stopSecond());
    stopSecond = driver.every(5, () => second++);
    try {
      await sleep(30);
      assert.equal(second, 0);
    } finally {
      stopFirst();
      driver.close();
    }
  });

  it('runs everything scheduled with soon() in one turn, in order, after the current one', async () => {
    const driver = new TickDriver();
    const order: string[] = [];
    driver.soon(() => order.push('a'));
    driver.soon(() => {
      order.push('b');
      driver.soon(() => order.push('d'));
    });
    driver.soon(() => order.push('c'));
    assert.deepEqual(order, [], 'not synchronously');
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['a', 'b', 'c', 'd']);
  });
});
