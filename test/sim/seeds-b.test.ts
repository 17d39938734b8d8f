// Simulator seeds 151..300 (split from seeds-a so the two halves run in parallel).
import { test } from 'node:test';
import { runSeedsOrFail } from './run-seeds.js';

test('simulator: seeds 151..300 hold every checker', () => {
  runSeedsOrFail(151, 150);
});
