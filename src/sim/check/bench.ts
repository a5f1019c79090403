// Measures the linearizability checker on generated histories (linearizable by construction).
// Run: npx tsc -p tsconfig.json --outDir .build/check && node .build/check/src/sim/check/bench.js
// Not imported by anything; the checkers themselves do no I/O.

import { historyFromPlan, type RandomPlanOptions, randomPlan, seededRandom } from './generate.js';
import { checkLinearizability } from './linearizability.js';
import { registerModel } from './register.js';

interface BenchCase {
  name: string;
  plan: RandomPlanOptions;
}

const BASE: RandomPlanOptions = {
  ops: 10_000,
  clients: 10,
  keys: 5,
  valueDomain: 5,
  unknownRate: 0.01,
  failRate: 0.01,
  latencyMax: 20,
};

const CASES: BenchCase[] = [
  { name: '5 keys x 2000 ops, 10 clients, 1% unknown', plan: BASE },
  { name: '5 keys x 2000 ops, 10 clients, 5% unknown', plan: { ...BASE, unknownRate: 0.05 } },
  {
    name: '5 keys x 2000 ops, unique values, 10% unknown',
    plan: { ...BASE, valueDomain: 1000, unknownRate: 0.1 },
  },
  {
    name: '1 key x 2000 ops, 10 clients, 2% unknown',
    plan: { ...BASE, ops: 2000, keys: 1, unknownRate: 0.02 },
  },
  { name: '1 key x 10000 ops, 10 clients, 1% unknown', plan: { ...BASE, keys: 1 } },
  {
    name: '20 keys x 5000 ops, 20 clients, 1% unknown',
    plan: { ...BASE, ops: 100_000, keys: 20, clients: 20 },
  },
];

const SEEDS = [1, 2, 3];

for (const { name, plan } of CASES) {
  const timings: number[] = [];
  let steps = 0;
  let verdicts = '';
  for (const seed of SEEDS) {
    const history = historyFromPlan(randomPlan(seededRandom(seed), plan));
    const started = performance.now();
    const verdict = checkLinearizability(history, registerModel, { timeBudgetMs: 30_000 });
    timings.push(performance.now() - started);
    steps += verdict.steps;
    verdicts += verdict.valid === true ? '.' : verdict.valid === false ? 'F' : '?';
  }
  timings.sort((a, b) => a - b);
  const median = timings[Math.floor(timings.length / 2)]!;
  console.log(
    `${name.padEnd(48)} median ${median.toFixed(0).padStart(6)} ms  max ${timings[timings.length - 1]!.toFixed(0).padStart(6)} ms  ` +
      `steps/run ${Math.round(steps / SEEDS.length)
        .toString()
        .padStart(9)}  verdicts ${verdicts}`,
  );
}
