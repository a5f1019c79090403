// A latency histogram with HDR-style log buckets: values (microseconds) below 2^subBucketBits are
// exact; above that each power-of-two range is split into 2^subBucketBits linear sub-buckets, so
// every recorded value is kept within 2/2^subBucketBits (~1.6 % with 7 bits) of its true value in
// constant memory, whatever the run length. Percentiles report the bucket's upper bound, as
// HdrHistogram does, so they never under-state a latency.

const subBucketBits = 7;
const subBucketCount = 1 << subBucketBits;
/** Values at or above 2^valueBitsMax µs (~18 min) are clamped into the last bucket. */
const valueBitsMax = 30;
const bucketCount = subBucketCount + (valueBitsMax - subBucketBits) * (subBucketCount / 2);

export interface LatencySummary {
  count: number;
  minUs: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export class LatencyHistogram {
  private readonly counts = new Float64Array(bucketCount);
  private total = 0;
  private sumUs = 0;
  private minUs = Number.POSITIVE_INFINITY;
  private maxUs = 0;

  /** Records one latency in microseconds (fractions are rounded; negatives are a caller bug). */
  record(valueUs: number): void {
    if (!(valueUs >= 0)) throw new Error(`latency must be a non-negative number, got ${valueUs}`);
    const rounded = Math.round(valueUs);
    this.counts[bucketIndex(rounded)]! += 1;
    this.total += 1;
    this.sumUs += rounded;
    if (rounded < this.minUs) this.minUs = rounded;
    if (rounded > this.maxUs) this.maxUs = rounded;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < bucketCount; i++) this.counts[i]! += other.counts[i]!;
    this.total += other.total;
    this.sumUs += other.sumUs;
    this.minUs = Math.min(this.minUs, other.minUs);
    this.maxUs = Math.max(this.maxUs, other.maxUs);
  }

  get count(): number {
    return this.total;
  }

  /** The smallest bucket upper bound at or below which `fraction` of the values lie. */
  percentile(fraction: number): number {
    if (fraction < 0 || fraction > 1) throw new Error(`percentile fraction out of range: ${fraction}`);
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil(fraction * this.total));
    let seen = 0;
    for (let i = 0; i < bucketCount; i++) {
      seen += this.counts[i]!;
      // The last bucket also holds clamped values, so its bound says nothing: use the max.
      if (seen >= rank) return i === bucketCount - 1 ? this.maxUs : Math.min(bucketUpperBound(i), this.maxUs);
    }
    return this.maxUs;
  }

  summary(): LatencySummary {
    const empty = this.total === 0;
    return {
      count: this.total,
      minUs: empty ? 0 : this.minUs,
      meanUs: empty ? 0 : this.sumUs / this.total,
      p50Us: this.percentile(0.5),
      p90Us: this.percentile(0.9),
      p99Us: this.percentile(0.99),
      p999Us: this.percentile(0.999),
      maxUs: this.maxUs,
    };
  }

  /** Counts per power-of-two range [2^k, 2^(k+1)) µs, for a compact printed histogram. */
  powerOfTwoRanges(): Array<{ fromUs: number; toUs: number; count: number }> {
    const ranges = new Map<number, number>();
    for (let i = 0; i < bucketCount; i++) {
      const count = this.counts[i]!;
      if (count === 0) continue;
      const lower = bucketLowerBound(i);
      const exponent = lower === 0 ? 0 : Math.floor(Math.log2(lower));
      ranges.set(exponent, (ranges.get(exponent) ?? 0) + count);
    }
    return [...ranges.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([exponent, count]) => ({
        fromUs: exponent === 0 ? 0 : 2 ** exponent,
        toUs: 2 ** (exponent + 1),
        count,
      }));
  }
}

export function bucketIndex(valueUs: number): number {
  const clamped = Math.min(valueUs, 2 ** valueBitsMax - 1);
  if (clamped < subBucketCount) return clamped;
  const magnitude = 31 - Math.clz32(clamped); // position of the highest set bit
  const shift = magnitude - subBucketBits + 1;
  const subBucket = (clamped >>> shift) - subBucketCount / 2; // 0 … subBucketCount/2 - 1
  return subBucketCount + (shift - 1) * (subBucketCount / 2) + subBucket;
}

function bucketLowerBound(index: number): number {
  if (index < subBucketCount) return index;
  const offset = index - subBucketCount;
  const shift = Math.floor(offset / (subBucketCount / 2)) + 1;
  const subBucket = (offset % (subBucketCount / 2)) + subBucketCount / 2;
  return subBucket * 2 ** shift;
}

function bucketUpperBound(index: number): number {
  if (index < subBucketCount) return index;
  const offset = index - subBucketCount;
  const shift = Math.floor(offset / (subBucketCount / 2)) + 1;
  return bucketLowerBound(index) + 2 ** shift - 1;
}
