// Bounded Jepsen runs on real concord processes: every workload and every fault kind at least
// once across a few seeds. Each run must end with a valid history (no anomaly, no undecided
// check). `npm run jepsen` runs longer or other combinations by hand.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FAULT_KINDS, type FaultKind, type NemesisName, nemesisSchedule } from './nemesis.js';
import {
  failureReport,
  type RunOptions,
  runJepsen,
  runPassed,
  WORKLOAD_NAMES,
  type WorkloadName,
} from './runner.js';

interface PlannedRun {
  workload: WorkloadName;
  nemesis: NemesisName;
  seed: number;
  nodes: 3 | 5;
  timeMs: number;
}

/** Seeds chosen so that, together, the schedules contain every fault kind (asserted below). */
const plannedRuns: PlannedRun[] = [
  { workload: 'register', nemesis: 'partition', seed: 11, nodes: 3, timeMs: 15_000 },
  { workload: 'set', nemesis: 'kill', seed: 12, nodes: 3, timeMs: 14_000 },
  { workload: 'counter', nemesis: 'pause', seed: 13, nodes: 3, timeMs: 14_000 },
  { workload: 'watch', nemesis: 'all', seed: 14, nodes: 3, timeMs: 15_000 },
  { workload: 'lock', nemesis: 'partition', seed: 15, nodes: 3, timeMs: 14_000 },
  { workload: 'register', nemesis: 'member', seed: 16, nodes: 3, timeMs: 12_000 },
  { workload: 'set', nemesis: 'slow', seed: 17, nodes: 5, timeMs: 12_000 },
  { workload: 'list-append', nemesis: 'kill', seed: 18, nodes: 3, timeMs: 12_000 },
  { workload: 'bank', nemesis: 'partition', seed: 19, nodes: 3, timeMs: 12_000 },
];

const runTimeoutMs = 120_000;

function faultKindsOf(runs: readonly PlannedRun[]): Set<FaultKind> {
  return new Set(runs.flatMap((r) => nemesisSchedule(r.nemesis, r.seed, r.timeMs).map((s) => s.kind)));
}

describe('jepsen schedule', () => {
  test('the same nemesis, seed and duration give the same schedule', () => {
    assert.deepEqual(nemesisSchedule('all', 42, 20_000), nemesisSchedule('all', 42, 20_000));
    assert.notDeepEqual(nemesisSchedule('all', 42, 20_000), nemesisSchedule('all', 43, 20_000));
  });

  test('faults never overlap and end before the workload stops', () => {
    const steps = nemesisSchedule('all', 7, 30_000);
    assert.ok(steps.length >= 3, `only ${steps.length} steps`);
    for (let i = 1; i < steps.length; i++) {
      const previous = steps[i - 1]!;
      assert.ok(steps[i]!.startMs > previous.startMs + previous.holdMs, 'faults overlap');
    }
    const last = steps[steps.length - 1]!;
    assert.ok(last.startMs + last.holdMs < 30_000);
  });

  test('the bounded suite covers every workload and every fault kind', () => {
    assert.deepEqual(new Set(plannedRuns.map((r) => r.workload)), new Set(WORKLOAD_NAMES));
    const covered = faultKindsOf(plannedRuns);
    const missing = FAULT_KINDS.filter((k) => !covered.has(k));
    assert.deepEqual(missing, [], `fault kinds not scheduled by any run: ${missing.join(', ')}`);
  });
});

describe('jepsen on concord processes', () => {
  for (const run of plannedRuns) {
    const name = `${run.workload} under ${run.nemesis} (seed ${run.seed}, ${run.nodes} nodes) keeps a valid history`;
    test(name, { timeout: runTimeoutMs }, async (t) => {
      const options: RunOptions = { ...run };
      const result = await runJepsen(options);
      t.diagnostic(result.summary);
      if (!runPassed(result)) {
        process.stderr.write(result.memberLogs ?? '');
        assert.fail(`${result.summary}\n${failureReport(result)}`);
      }
      assert.ok(result.ok > 0, 'no operation succeeded');
      // The nemesis really acted: as many actions logged as scheduled (a fault that could not be
      // applied is logged as failed and fails the run, since the test would prove nothing).
      const failedActions = result.nemesisLog.filter((line) => line.includes(' failed: '));
      assert.deepEqual(failedActions, []);
    });
  }
});

describe('jepsen catches a planted client bug', () => {
  const name = 'list-append with clients that skip their mod_revision compares is INVALID';
  test(name, { timeout: runTimeoutMs }, async (t) => {
    const result = await runJepsen({
      workload: 'list-append',
      nemesis: 'none',
      seed: 20,
      nodes: 3,
      timeMs: 10_000,
      skipCompare: true,
    });
    t.diagnostic(result.summary);
    assert.equal(result.verdict.valid, false, `lost updates went unnoticed: ${result.summary}`);
    const codes = new Set(result.verdict.anomalies.map((a) => a.code));
    assert.ok(
      [...codes].some((code) => code.startsWith('LIST_APPEND_')),
      `no list-append anomaly: ${[...codes].join(', ')}`,
    );
  });
});
