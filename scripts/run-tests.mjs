#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node:test, a few files at a time.
// Usage: node scripts/run-tests.mjs [substring-filter ...]
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { availableParallelism } from 'node:os';

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk('dist/test')
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
const concurrency = Number(
  process.env.TANDEM_TEST_CONCURRENCY ?? Math.max(2, availableParallelism()),
);
let failed = false;
const stream = run({ files, concurrency, timeout: 20 * 60 * 1000 });
stream.on('test:fail', (e) => {
  // Only a failing test counts, not a suite that merely contains one.
  if (e.details?.type !== 'suite') failed = true;
});
stream.compose(spec).pipe(process.stdout);
stream.on('end', () => {
  process.exitCode = failed ? 1 : 0;
});
