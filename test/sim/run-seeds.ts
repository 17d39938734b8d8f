// Shared by the seed tests: run a range of seeds and fail with the seed and its replay command.
import assert from 'node:assert/strict';
import { runSeed } from './cluster.js';

export function runSeedsOrFail(from: number, count: number): void {
  for (let seed = from; seed < from + count; seed++) {
    const r = runSeed({ seed });
    assert.ok(
      r.ok,
      `seed ${seed}: ${r.violation}\n  params: ${r.params}\n  replay: npm run sim -- --seed ${seed} --trace`,
    );
  }
}
