import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ANOMALIES_PER_CODE_MAX,
  ANOMALY_CODES,
  AnomalyCollector,
  combineValidity,
  combineVerdicts,
} from '../../src/sim/check/verdict.js';

describe('verdicts', () => {
  it('ranks a certain failure above undecided above ok', () => {
    assert.equal(combineValidity(true, true), true);
    assert.equal(combineValidity(true, 'unknown'), 'unknown');
    assert.equal(combineValidity('unknown', false), false);
    const merged = combineVerdicts([
      { valid: true, anomalies: [], explanation: 'a ok' },
      {
        valid: 'unknown',
        anomalies: [{ code: 'SEARCH_BUDGET_EXHAUSTED', opIds: [], message: 'm' }],
        explanation: 'b ?',
      },
    ]);
    assert.equal(merged.valid, 'unknown');
    assert.equal(merged.anomalies.length, 1);
    assert.equal(merged.explanation, 'a ok\nb ?');
  });

  it('keeps anomaly codes unique so tests can match on them', () => {
    assert.equal(new Set(ANOMALY_CODES).size, ANOMALY_CODES.length);
  });

  it('lists at most ANOMALIES_PER_CODE_MAX anomalies per code but counts them all', () => {
    const collector = new AnomalyCollector();
    for (let i = 0; i < ANOMALIES_PER_CODE_MAX + 7; i++) {
      collector.add({ code: 'SET_LOST_ELEMENT', opIds: [i], message: `lost ${i}` });
    }
    collector.add({ code: 'SET_PHANTOM_ELEMENT', opIds: [], message: 'phantom' });
    const verdict = collector.toVerdict('set', 'unused');
    assert.equal(verdict.valid, false);
    assert.equal(verdict.anomalies.length, ANOMALIES_PER_CODE_MAX + 1);
    assert.match(
      verdict.explanation,
      new RegExp(
        `SET_LOST_ELEMENT ×${ANOMALIES_PER_CODE_MAX + 7} \\(first ${ANOMALIES_PER_CODE_MAX} listed\\): lost 0`,
      ),
    );
    assert.match(verdict.explanation, /SET_PHANTOM_ELEMENT ×1: phantom/);
  });
});
