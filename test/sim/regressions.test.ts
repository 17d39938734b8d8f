// Seeds that once found a defect, replayed with the workload they were found with
// (`overlap: false`: recorded before overlapping writes existed). Each also runs with the
// defect planted again, to show the seed still reaches the situation it pins.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed } from './cluster.js';

test('seed 16490: a failed metadata barrier fails the data I/O it held back', () => {
  const fixed = runSeed({ seed: 16490, overlap: false });
  assert.ok(fixed.ok, fixed.violation ?? '');
  const planted = runSeed({ seed: 16490, overlap: false, plantedBug: 'failed-meta-releases-io' });
  assert.equal(planted.ok, false);
  assert.match(planted.violation ?? '', /unmarked difference/);
});

test('seed 13351: an Outdated disk with the newer generation serves the resync it sources', () => {
  // Found before seed 16490's fix changed the model: the old driver (planted back) replays it.
  const r = runSeed({ seed: 13351, overlap: false, plantedBug: 'failed-meta-releases-io' });
  assert.ok(r.ok, r.violation ?? '');
});
