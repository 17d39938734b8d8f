// The profile summary attributes each sample's interval to its function and file, busiest first,
// and refuses documents that are not V8 CPU profiles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderProfileSummary, summarizeCpuProfile } from '../../bench/profile.js';

const frame = (functionName: string, url: string, lineNumber: number) => ({
  functionName,
  url,
  lineNumber,
  scriptId: '1',
  columnNumber: 0,
});

test('self time per function and per file from samples and time deltas', () => {
  const doc = {
    nodes: [
      { id: 1, callFrame: frame('(root)', '', -1), children: [2, 3, 4] },
      { id: 2, callFrame: frame('(idle)', '', -1) },
      { id: 3, callFrame: frame('onData', 'file:///work/x/dist/src/nbd/connection.js', 41) },
      { id: 4, callFrame: frame('', 'file:///work/x/dist/src/nbd/connection.js', 99) },
    ],
    samples: [2, 3, 3, 4, 2],
    timeDeltas: [100, 300, 300, 200, 100],
  };
  const r = summarizeCpuProfile(doc, 10);
  if (!r.ok) assert.fail(r.error);
  assert.equal(r.value.totalMs, 1);
  assert.deepEqual(r.value.functions[0], {
    name: 'onData src/nbd/connection.js:42',
    selfMs: 0.6,
    percent: 60,
  });
  assert.deepEqual(r.value.files, [
    { name: 'src/nbd/connection.js', selfMs: 0.8, percent: 80 },
    { name: '(native)', selfMs: 0.2, percent: 20 },
  ]);
  assert.ok(r.value.functions.some((f) => f.name === '(anonymous) src/nbd/connection.js:100'));
  assert.match(
    renderProfileSummary('p', r.value),
    /\| `onData src\/nbd\/connection.js:42` \| 0\.6 \| 60\.0 \|/,
  );
  const top1 = summarizeCpuProfile(doc, 1);
  assert.equal(top1.ok && top1.value.functions.length, 1);
});

test('not a profile: an error, not a summary', () => {
  assert.equal(summarizeCpuProfile({}, 5).ok, false);
  assert.equal(summarizeCpuProfile({ nodes: [], samples: [1], timeDeltas: [] }, 5).ok, false);
  assert.equal(summarizeCpuProfile(null, 5).ok, false);
});
