// The runner turns each system's rounds into samples: a failed start becomes one error sample per
// workload (and the run goes on), a sync becomes MB/s and CPU per GiB from what was measured,
// rounds interleave systems, and an end-to-end run drives real fio against nbdkit and Tandem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Children } from '../../bench/children.js';
import { WORKLOADS } from '../../bench/fio.js';
import { runBenchmark, type RunOptions } from '../../bench/runner.js';
import { nbdkitSystem } from '../../bench/systems/nbdkit.js';
import { tandemStandaloneSystem } from '../../bench/systems/tandem.js';
import { tandemPairSystems } from '../../bench/systems/tandem-pair.js';
import type { System } from '../../bench/types.js';
import { requirePeers } from '../support/peers.js';

function options(t: { after: (fn: () => void) => void }, patch: Partial<RunOptions>): RunOptions {
  const root = mkdtempSync(join(tmpdir(), 'bench-runner-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const children = new Children();
  t.after(() => children.killAll());
  return {
    rounds: 2,
    runtimeSec: 1,
    warmupSec: 0,
    fileSizeBytes: 16 * 2 ** 20,
    syncSizeBytes: 2 ** 30,
    workloads: [],
    sync: false,
    storageRoot: root,
    runRoot: root,
    children,
    log: () => undefined,
    nodeArgs: [],
    aborted: () => false,
    ...patch,
  };
}

test('a system that fails to start yields one error sample per workload and round', async (t) => {
  const broken: System = {
    id: 'broken',
    label: 'broken',
    kind: 'tandem',
    probe: () => Promise.resolve({ available: true }),
    start: () => Promise.reject(new Error('no disk')),
  };
  const out = await runBenchmark([broken], options(t, { workloads: WORKLOADS.slice(0, 2) }));
  assert.deepEqual(
    out.samples.map((s) => [s.round, s.workload, s.ok, s.error]),
    [
      [1, 'seqw', false, 'start failed: no disk'],
      [1, 'rw1', false, 'start failed: no disk'],
      [2, 'seqw', false, 'start failed: no disk'],
      [2, 'rw1', false, 'start failed: no disk'],
    ],
  );
});

test('initial sync: MB/s and CPU per GiB come from the measurement; rounds interleave', async (t) => {
  const order: string[] = [];
  const syncer = (id: string, seconds: number): System => ({
    id,
    label: id,
    kind: 'baseline',
    probe: () => Promise.resolve({ available: true }),
    start: () => Promise.reject(new Error('unused')),
    initialSync: (ctx) => {
      order.push(id);
      assert.equal(ctx.fileSizeBytes, 2 ** 30);
      return Promise.resolve({
        bytes: ctx.fileSizeBytes,
        seconds,
        cpuSeconds: 3,
        peakRssBytes: 42,
        method: 'fake',
      });
    },
  });
  const failing: System = {
    ...syncer('f', 1),
    initialSync: () => Promise.reject(new Error('copy differs')),
  };
  const out = await runBenchmark(
    [syncer('a', 2), syncer('b', 4), failing],
    options(t, { sync: true }),
  );
  assert.deepEqual(order, ['a', 'b', 'a', 'b']);
  const a = out.samples.find((s) => s.systemId === 'a');
  assert.ok(a?.ok === true);
  assert.equal(a.mbPerSec, 2 ** 30 / 2 / 1e6);
  assert.equal(a.cpuSecondsPerGiB, 3);
  assert.equal(a.peakRssBytes, 42);
  const f = out.samples.filter((s) => s.systemId === 'f');
  assert.deepEqual(
    f.map((s) => s.error),
    ['copy differs', 'copy differs'],
  );
  assert.deepEqual(out.notes.get('a'), ['initial sync: fake']);
});

test('end to end: fio against nbdkit and Tandem standalone, CPU and RSS from /proc', async (t) => {
  if (!requirePeers(t, 'fio', 'fio')) return;
  if (!requirePeers(t, 'nbdkit', 'nbdkit')) return;
  if (!requirePeers(t, 'libnbd-bin', 'nbdcopy')) return;
  if (!requirePeers(t, 'time', '/usr/bin/time')) return;
  const rw1 = WORKLOADS.filter((w) => w.id === 'rw1');
  const o = options(t, { rounds: 1, workloads: rw1, sync: true, syncSizeBytes: 16 * 2 ** 20 });
  const out = await runBenchmark([nbdkitSystem, tandemStandaloneSystem], o);
  const by = (sys: string, w: string) =>
    out.samples.find((s) => s.systemId === sys && s.workload === w);
  for (const sys of ['nbdkit', 'tandem-standalone']) {
    const s = by(sys, 'rw1');
    assert.ok(s?.ok === true, `${sys}: ${s?.error}`);
    assert.ok((s.iops ?? 0) > 0 && (s.writtenBytes ?? 0) > 0);
    assert.ok((s.latency?.p50Us ?? 0) > 0);
    assert.ok((s.cpuSeconds ?? 0) > 0, `${sys} used no CPU?`);
    assert.ok((s.peakRssBytes ?? 0) > 1024 * 1024, `${sys} peak RSS ${s.peakRssBytes}`);
  }
  const sync = by('nbdkit', 'sync');
  assert.ok(sync?.ok === true, sync?.error);
  assert.equal(sync.writtenBytes, 16 * 2 ** 20);
  assert.equal(by('tandem-standalone', 'sync'), undefined, 'standalone has no initial sync');
  assert.deepEqual(o.children.pids(), [], 'every child stopped');
});

test('end to end: two tandemd nodes, protocol C: fio and a verified initial sync', async (t) => {
  if (!requirePeers(t, 'fio', 'fio')) return;
  const pair = tandemPairSystems.find((s) => s.id === 'tandem-C');
  assert.ok(pair !== undefined);
  const probe = await pair.probe();
  assert.deepEqual(probe, { available: true });
  const rw1 = WORKLOADS.filter((w) => w.id === 'rw1');
  const o = options(t, { rounds: 1, workloads: rw1, sync: true, syncSizeBytes: 16 * 2 ** 20 });
  const out = await runBenchmark([pair], o);
  for (const s of out.samples) assert.ok(s.ok, `${s.workload}: ${s.error}`);
  const w = out.samples.find((s) => s.workload === 'rw1');
  assert.ok((w?.writtenBytes ?? 0) > 0 && (w?.cpuSeconds ?? 0) > 0);
  // Both daemons are the system: their peaks add up to more than one Node process.
  assert.ok((w?.peakRssBytes ?? 0) > 2 * 20 * 2 ** 20, `peak RSS ${w?.peakRssBytes}`);
  const sync = out.samples.find((s) => s.workload === 'sync');
  assert.equal(sync?.writtenBytes, 16 * 2 ** 20);
  assert.deepEqual(o.children.pids(), [], 'every child stopped');
});

test('a sync-only system runs no fio workload; its sync sample carries the ramp time', async (t) => {
  const syncOnly: System = {
    id: 's',
    label: 's',
    kind: 'tandem',
    syncOnly: true,
    probe: () => Promise.resolve({ available: true }),
    start: () => Promise.reject(new Error('a sync-only system is never started for fio')),
    initialSync: (ctx) =>
      Promise.resolve({
        bytes: ctx.fileSizeBytes,
        seconds: 2,
        cpuSeconds: 1,
        peakRssBytes: 1,
        rampSeconds: 1.25,
        method: 'fake',
      }),
  };
  const rw1 = WORKLOADS.filter((w) => w.id === 'rw1');
  const out = await runBenchmark([syncOnly], options(t, { rounds: 1, workloads: rw1, sync: true }));
  assert.deepEqual(
    out.samples.map((s) => [s.workload, s.ok, s.rampSeconds]),
    [['sync', true, 1.25]],
  );
});

test('end to end: default resync options, a verified 256 MiB initial sync; its ramp time, if reached, lies within the sync', async (t) => {
  const sys = tandemPairSystems.find((s) => s.id === 'tandem-C-sync-defaults');
  assert.ok(sys?.syncOnly === true);
  const o = options(t, { rounds: 1, sync: true, syncSizeBytes: 256 * 2 ** 20 });
  const out = await runBenchmark([sys], o);
  const sync = out.samples.find((s) => s.workload === 'sync');
  assert.ok(sync?.ok === true, sync?.error);
  assert.equal(sync.writtenBytes, 256 * 2 ** 20);
  // Timing on a shared CI machine is not asserted (the bench reports it); that a ramp was
  // measured at all says the status sampling saw the out-of-sync count fall.
  assert.ok(sync.rampSeconds !== undefined, 'the sample carries the ramp measurement');
  // Whether 100 MiB/s is reached on a shared machine is the bench's to report; a ramp time
  // that is reached must fall inside the sync it was measured on.
  if (sync.rampSeconds !== null)
    assert.ok(
      sync.rampSeconds > 0 && sync.rampSeconds <= (sync.seconds ?? 0) + 1,
      `ramp ${sync.rampSeconds} s in a ${sync.seconds} s sync`,
    );
  assert.deepEqual(o.children.pids(), [], 'every child stopped');
});
