import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bucketIndex, LatencyHistogram } from '../../src/cli/bench/histogram.js';

describe('latency histogram', () => {
  it('bucket indexes never decrease as values grow, and small values are exact', () => {
    let previous = -1;
    for (let value = 0; value < 5_000_000; value = value < 1000 ? value + 1 : Math.ceil(value * 1.01)) {
      const index = bucketIndex(value);
      assert.ok(index >= previous, `value ${value}: index ${index} < ${previous}`);
      previous = index;
    }
    for (let value = 0; value < 128; value++) assert.equal(bucketIndex(value), value);
  });

  it('every percentile is within 1.6 % above the exact value and never below it', () => {
    const histogram = new LatencyHistogram();
    const values: number[] = [];
    for (let i = 1; i <= 10_000; i++) {
      const value = Math.round(50 + ((i * 7919) % 200_000));
      values.push(value);
      histogram.record(value);
    }
    values.sort((a, b) => a - b);
    for (const fraction of [0.5, 0.9, 0.99, 0.999]) {
      const exact = values[Math.ceil(fraction * values.length) - 1]!;
      const reported = histogram.percentile(fraction);
      assert.ok(
        reported >= exact && reported <= exact * 1.016,
        `p${fraction * 100}: ${reported} vs ${exact}`,
      );
    }
    assert.equal(histogram.percentile(1), values.at(-1));
    assert.equal(histogram.summary().minUs, values[0]);
  });

  it('merge adds counts, keeps min and max; negative values are refused', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    a.record(10);
    b.record(1_000_000);
    a.merge(b);
    assert.equal(a.count, 2);
    assert.equal(a.summary().minUs, 10);
    assert.equal(a.summary().maxUs, 1_000_000);
    assert.equal(
      a.powerOfTwoRanges().reduce((sum, r) => sum + r.count, 0),
      2,
    );
    assert.throws(() => a.record(-1), /non-negative/);
  });

  it('values beyond the tracked range are clamped into the last bucket, max stays exact', () => {
    const histogram = new LatencyHistogram();
    histogram.record(2 ** 40);
    assert.equal(histogram.summary().maxUs, 2 ** 40);
    assert.equal(histogram.percentile(0.5), 2 ** 40);
  });
});
