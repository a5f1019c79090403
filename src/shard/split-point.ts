// Where to split a shard that grew too big or too busy: the boundary that divides its weight
// (bytes for a size split, requests for a load split) most evenly, without cutting a `{…}`
// hash-tag group, so keys that share a tag prefix stay in one shard.

import { SplitKeyInvalidError } from './errors.js';
import { compareKeys, keyInRange, keysEqual, tagGroup } from './keys.js';
import type { ShardDescriptor } from './shard-map.js';

/** One sampled key of a shard and its weight (its size in bytes, or its request count). */
export interface WeightedKey {
  readonly key: Uint8Array;
  readonly weight: number;
}

/**
 * The split key that puts the weight of `samples` as close to half on each side as any allowed
 * boundary can, or undefined when no boundary is allowed (fewer than two keys, or every key in
 * one tag group). Allowed boundaries are between neighbouring sampled keys that are not in the
 * same tag group, placed at the start of the right-hand key's group (or at the key itself when it
 * has no tag): such a boundary cuts no group, whatever keys exist besides the samples, and lies
 * strictly inside the shard. Ties go to the smaller key, so the choice is deterministic.
 * Samples must lie in the shard; duplicates are summed.
 */
export function chooseSplitKey(
  shard: ShardDescriptor,
  samples: readonly WeightedKey[],
): Uint8Array | undefined {
  const keys = sortedDistinct(shard, samples);
  const total = keys.reduce((sum, k) => sum + k.weight, 0);
  let best: { key: Uint8Array; imbalance: number } | undefined;
  let leftWeight = 0;
  let previousUnit: Uint8Array | undefined;
  for (const { key, weight } of keys) {
    const unit = tagGroup(key) ?? key;
    if (previousUnit !== undefined && !keysEqual(unit, previousUnit)) {
      // Left of `unit`: every earlier key (earlier keys are outside `unit`'s group, so below it).
      const imbalance = Math.abs(total - 2 * leftWeight);
      if (best === undefined || imbalance < best.imbalance) best = { key: unit, imbalance };
    }
    previousUnit = unit;
    leftWeight += weight;
  }
  return best === undefined ? undefined : best.key.slice();
}

function sortedDistinct(shard: ShardDescriptor, samples: readonly WeightedKey[]): WeightedKey[] {
  const sorted = [...samples].sort((a, b) => compareKeys(a.key, b.key));
  const distinct: WeightedKey[] = [];
  for (const sample of sorted) {
    if (!Number.isFinite(sample.weight) || sample.weight < 0) {
      throw new SplitKeyInvalidError(`sample weight ${sample.weight} must be a finite number ≥ 0`);
    }
    if (!keyInRange(sample.key, shard.start, shard.end)) {
      throw new SplitKeyInvalidError(`a sampled key is outside shard ${shard.id}`);
    }
    const last = distinct[distinct.length - 1];
    if (last !== undefined && keysEqual(last.key, sample.key)) {
      distinct[distinct.length - 1] = { key: last.key, weight: last.weight + sample.weight };
    } else {
      distinct.push(sample);
    }
  }
  return distinct;
}
