// Property: 10,000 random mutations of valid configurations each end in a parse or a located
// ConfigError — never another exception, never a hang (the worker is terminated on a timeout).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';

const RUNS = 10_000;
const HANG_TIMEOUT_MS = 90_000;

test(`${RUNS} mutated configurations parse or fail with located errors`, async () => {
  const seed = Number(process.env['TANDEM_FUZZ_SEED'] ?? 0x7a4de);
  const worker = new Worker(new URL('./fuzz-worker.js', import.meta.url), {
    workerData: { corpusDir: resolve('test/fixtures/drbd-conf/good'), runs: RUNS, seed },
  });
  const report = await new Promise<{ ok: boolean; runs?: number; error?: string }>((done, fail) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      fail(
        new Error(
          `the parser did not finish ${RUNS} runs in ${HANG_TIMEOUT_MS} ms (seed ${seed}): a hang?`,
        ),
      );
    }, HANG_TIMEOUT_MS);
    worker.once('message', (m: { ok: boolean; runs?: number; error?: string }) => {
      clearTimeout(timer);
      done(m);
    });
    worker.once('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
  });
  await worker.terminate();
  assert.ok(report.ok, report.error);
  assert.equal(report.runs, RUNS);
});
