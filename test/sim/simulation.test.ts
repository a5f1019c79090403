import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { RaftConfig, Ready } from '../../src/raft/api.js';
import { RaftNode } from '../../src/raft/node.js';
import { nodesForSeed, runSeedRange } from '../../src/sim/cli.js';
import { InvariantViolation } from '../../src/sim/errors.js';
import { replayCommand, runSimulation, SimFailure } from '../../src/sim/simulation.js';

describe('Simulation', () => {
  it('one seed reproduces the same run exactly (results and trace)', async () => {
    const traceA: string[] = [];
    const traceB: string[] = [];
    const a = await runSimulation({
      seed: 4242,
      nodes: 3,
      faultPhaseUs: 500_000,
      trace: (l) => traceA.push(l),
    });
    const b = await runSimulation({
      seed: 4242,
      nodes: 3,
      faultPhaseUs: 500_000,
      trace: (l) => traceB.push(l),
    });
    assert.deepEqual(a, b);
    assert.deepEqual(traceA, traceB);
    assert.ok(traceA.length > 100);
  });

  it('different seeds take different paths', async () => {
    const a = await runSimulation({
      seed: 1,
      nodes: 3,
      faultPhaseUs: 300_000,
      faults: false,
      membership: false,
    });
    const b = await runSimulation({
      seed: 2,
      nodes: 3,
      faultPhaseUs: 300_000,
      faults: false,
      membership: false,
    });
    assert.notEqual(a.events, b.events);
  });

  it('without faults every proposal is acknowledged and the cluster converges fast', async () => {
    for (const nodes of [1, 3, 5]) {
      const r = await runSimulation({
        seed: 7,
        nodes,
        faultPhaseUs: 1_000_000,
        faults: false,
        membership: false,
      });
      assert.ok(r.proposals > 20, `only ${r.proposals} proposals`);
      assert.ok(r.acked >= r.proposals - 3, `acked ${r.acked} of ${r.proposals}`);
      assert.ok(r.livenessUs >= 0 && r.livenessUs < 1_000_000, `liveness ${r.livenessUs}us`);
      assert.ok(r.committedIndex >= r.acked);
    }
  });

  it('a broken core that corrupts what one node applies is caught with seed and replay command', async () => {
    const corrupting = (config: RaftConfig) => new CorruptApplyCore(config);
    await assert.rejects(
      runSimulation({ seed: 99, nodes: 3, faultPhaseUs: 300_000, faults: false, createCore: corrupting }),
      (err: unknown) => {
        assert.ok(err instanceof SimFailure);
        assert.equal(err.seed, 99);
        assert.equal(err.replay, replayCommand(99, 3));
        assert.match(err.message, /seed 99 .*npm run sim -- --seeds 1 --from 99 --nodes 3/s);
        assert.ok(err.cause instanceof InvariantViolation);
        assert.ok(
          ['state-machine-safety', 'committed-entry-changed'].includes(err.cause.code),
          err.cause.code,
        );
        return true;
      },
    );
  });

  it('a core that answers ReadIndex with a stale index is caught as a stale read', async () => {
    await assert.rejects(
      runSimulation({
        seed: 21,
        nodes: 3,
        faultPhaseUs: 1_000_000,
        faults: false,
        membership: false,
        createCore: (config) => new StaleReadCore(config),
      }),
      (err: unknown) =>
        err instanceof SimFailure &&
        err.cause instanceof InvariantViolation &&
        err.cause.code === 'stale-read',
    );
  });

  it('a core that never sends messages after persisting fails liveness', async () => {
    const mute = (config: RaftConfig) => new MuteAfterPersistCore(config);
    await assert.rejects(
      runSimulation({
        seed: 5,
        nodes: 3,
        faultPhaseUs: 200_000,
        livenessBoundUs: 1_000_000,
        faults: false,
        membership: false,
        createCore: mute,
      }),
      (err: unknown) =>
        err instanceof SimFailure && err.cause instanceof InvariantViolation && err.cause.code === 'liveness',
    );
  });

  it('runSeedRange reports failures per seed and mixes 3- and 5-node clusters', async () => {
    assert.equal(nodesForSeed(10), 3);
    assert.equal(nodesForSeed(11), 5);
    const report = await runSeedRange({ seeds: 2, from: 10, faultPhaseUs: 200_000 });
    assert.equal(report.seeds, 2);
    assert.equal(report.results.length + report.failures.length, 2);
    assert.deepEqual(
      report.results
        .map((r) => r.nodes)
        .concat(report.failures.map((f) => f.nodes))
        .sort(),
      [3, 5],
    );
  });

  it('the CLI prints one summary line and exits non-zero exactly when a seed fails', () => {
    const cli = fileURLToPath(new URL('../../src/sim/cli.js', import.meta.url));
    const run = spawnSync(process.execPath, [cli, '--seeds', '2', '--from', '3', '--fault-ms', '200'], {
      encoding: 'utf8',
    });
    const lines = run.stdout.trim().split('\n');
    const summary = /^seeds=2 failures=(\d+)$/.exec(lines[0] ?? '');
    assert.ok(summary, `unexpected output: ${run.stdout}${run.stderr}`);
    const failures = Number(summary[1]);
    assert.equal(run.status, failures > 0 ? 1 : 0);
    const bad = spawnSync(process.execPath, [cli, '--seeds', 'x'], { encoding: 'utf8' });
    assert.equal(bad.status, 2);
  });
});

/** Node 1 applies a bit-flipped copy of every non-empty committed entry. */
class CorruptApplyCore extends RaftNode {
  override ready(): Ready {
    const rd = super.ready();
    if (this.config.id !== 1) return rd;
    const committedEntries = rd.committedEntries.map((e) =>
      e.data.length > 5 ? { ...e, data: e.data.map((b, i) => (i === e.data.length - 1 ? b ^ 1 : b)) } : e,
    );
    return { ...rd, committedEntries };
  }

  override advance(rd: Ready): void {
    super.advance(rd);
  }
}

/** Serves every read at index 1, as if nothing had been written since the cluster was born. */
class StaleReadCore extends RaftNode {
  override ready(): Ready {
    const rd = super.ready();
    return { ...rd, readStates: rd.readStates.map((rs) => ({ ...rs, index: 1 })) };
  }
}

/** Drops every message that must wait for persistence (votes, append responses). */
class MuteAfterPersistCore extends RaftNode {
  override ready(): Ready {
    return { ...super.ready(), messagesAfterPersist: [] };
  }
}
