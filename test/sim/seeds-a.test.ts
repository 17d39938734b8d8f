// Simulator seeds 1..150 (with seeds-b, the >= 300 seeds every `npm test` runs). A failure
// prints the seed and the replay command.
import { test } from 'node:test';
import { runSeedsOrFail } from './run-seeds.js';

test('simulator: seeds 1..150 hold every checker', () => {
  runSeedsOrFail(1, 150);
});
