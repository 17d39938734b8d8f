// The simulator at scale: every run also simulates a few hundred seeds nobody ran before, from a
// start that changes with each run (seeds 1..300 are fixed in seeds-a/seeds-b). The start is
// printed, and a failure names its seed and replay command, so whatever a CI run finds replays
// exactly. TANDEM_SIM_SEED_START pins the start (to re-run a CI run's range),
// TANDEM_SIM_FRESH_SEEDS the count; a wall-clock budget keeps the file under about a minute on a
// loaded machine (the seeds it ran are printed either way).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { runSeed } from './cluster.js';

const SEEDS_DEFAULT = 250;
const BUDGET_MS = 45_000;

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

test('simulator: a few hundred fresh seeds from a start that changes with each run', (t) => {
  // Above the ranges recorded in docs/TESTING.md's runs, below 2^31.
  const start = envInt('TANDEM_SIM_SEED_START', randomInt(100_000_000, 2_000_000_000));
  const count = envInt('TANDEM_SIM_FRESH_SEEDS', SEEDS_DEFAULT);
  const say = (m: string): void => {
    t.diagnostic(m);
    console.log(`sim fresh seeds: ${m}`);
  };
  say(`start ${start}, up to ${count} seeds (TANDEM_SIM_SEED_START=${start} re-runs this range)`);
  const began = Date.now();
  let ran = 0;
  for (let seed = start; seed < start + count; seed++) {
    if (Date.now() - began > BUDGET_MS) break;
    const r = runSeed({ seed });
    ran++;
    assert.ok(
      r.ok,
      `seed ${seed}: ${r.violation}\n  params: ${r.params}\n  replay: npm run sim -- --seed ${seed} --trace`,
    );
  }
  say(`seeds ${start}..${start + ran - 1} clean (${ran} in ${Date.now() - began} ms)`);
  assert.ok(ran >= Math.min(count, 50), `only ${ran} seeds ran within the budget`);
});
