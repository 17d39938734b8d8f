#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node:test, a few files at a time.
// TANDEM_SOCKETS_PHASE=1 reruns, after a full run, the fabric suites over libfabric's `sockets`
// provider one file at a time (=only: just that). Not by default: libfabric 1.17's sockets
// provider can hold a transfer for seconds (docs/TRANSPORTS.md, "The sockets provider").
// Usage: node scripts/run-tests.mjs [substring-filter ...]
import { spawnSync } from 'node:child_process';
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
if (process.env.TANDEM_SOCKETS_PHASE === 'only') process.exit(socketsPhase() ? 0 : 1);
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
  if (!failed && filters.length === 0 && process.env.TANDEM_SOCKETS_PHASE === '1')
    failed = !socketsPhase();
  process.exitCode = failed ? 1 : 0;
});

/** The fabric compliance, close, misbehaviour and two-node suites over `sockets`, serially. */
function socketsPhase() {
  const suites = [
    'dist/test/transport/fabric/compliance.test.js',
    'dist/test/transport/fabric/close.test.js',
    'dist/test/transport/fabric/misbehave.test.js',
    'dist/test/e2e/fabric.test.js',
  ];
  console.log('\n# fabric suites over the sockets provider, one file at a time');
  const env = { ...process.env, FABRIC_TEST_PROVIDERS: 'sockets', FABRIC_E2E_PROVIDERS: 'sockets' };
  for (const file of suites) {
    const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', file], {
      env,
      stdio: 'inherit',
      timeout: 10 * 60 * 1000,
    });
    if (r.status !== 0) {
      console.error(
        `run-tests: ${file} over sockets failed (${r.error?.message ?? `exit ${r.status}`})`,
      );
      return false;
    }
  }
  return true;
}
