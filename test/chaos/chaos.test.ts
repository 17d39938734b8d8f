// A short seeded run of the real-process fault harness (`npm run chaos`): ten cycles, a seed that
// changes with every run (printed, so a failure can be run again with its fault sequence; its
// parity picks on-io-error detach or pass_on), and
// the harness's own checks shown to fire on a planted loss and a planted divergence. Needs root
// (network namespaces, tmpfs mounts); in CI a missing privilege is a failure, not a skip.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { requireRoot } from '../support/netns.js';

const CLI = fileURLToPath(new URL('./cli.js', import.meta.url));

function chaos(args: readonly string[]): Promise<{ code: number | null; out: string }> {
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (c: Buffer) => (out += c.toString()));
  p.stderr.on('data', (c: Buffer) => (out += c.toString()));
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, out })));
}

/** The summary's figures: cycles, lost, divergent, stuck. */
function summary(out: string): Record<string, number> {
  const line = out.split('\n').find((l) => l.startsWith('chaos summary:'));
  assert.ok(line !== undefined, `the harness printed a summary:\n${out}`);
  const n = (name: string): number => Number(new RegExp(`${name} (\\d+)`).exec(line)?.[1]);
  return { cycles: n('cycles'), lost: n('lost'), divergent: n('divergent'), stuck: n('stuck') };
}

test('chaos: 10 seeded fault cycles on two tandemd lose nothing, diverge nowhere, never stick', async (t) => {
  if (!requireRoot(t)) return;
  const seed = randomInt(1, 2 ** 31);
  // Odd seeds run on-io-error pass_on (a full disk leaves stale blocks attached), even detach.
  const onIoError = seed % 2 === 1 ? 'pass_on' : 'detach';
  const args = ['--cycles', '10', '--seed', String(seed), '--on-io-error', onIoError];
  t.diagnostic(`seed ${seed} (replay: npm run chaos -- ${args.join(' ')})`);
  const r = await chaos(args);
  for (const line of r.out.trim().split('\n')) t.diagnostic(line);
  assert.equal(r.code, 0, `seed ${seed}:\n${r.out}`);
  assert.deepEqual(summary(r.out), { cycles: 10, lost: 0, divergent: 0, stuck: 0 });
});

test('chaos: a planted loss and a planted divergence are caught', async (t) => {
  if (!requireRoot(t)) return;
  const lost = await chaos(['--cycles', '1', '--seed', '7', '--plant', 'lost']);
  assert.equal(lost.code, 1, lost.out);
  assert.equal(summary(lost.out).lost, 1, lost.out);
  assert.equal(summary(lost.out).divergent, 0, lost.out);
  const div = await chaos(['--cycles', '1', '--seed', '7', '--plant', 'divergent']);
  assert.equal(div.code, 1, div.out);
  assert.equal(summary(div.out).divergent, 1, div.out);
  assert.equal(summary(div.out).lost, 0, div.out);
});
