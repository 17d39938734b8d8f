// Seeds that once found a defect, replayed with the workload they were found with
// (`overlap: false`: recorded before overlapping writes existed). Since the simulator runs the
// daemon's own driver (src/replication/driver.ts) the event order of every seed changed, so a
// seed now replays a different history than the one that found its bug; what pins each fix is
// the scenario or unit test that fails without it: test/replication/driver.test.ts (16490,
// the failed barrier's order of 1410),
// test/replication/outdated-source.test.ts (13351, 744), test/replication/disk-lost-order.test.ts
// (1410).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed } from './cluster.js';

// 16490 replays clean even with the old gate planted back (OutOfSync marking covers it since):
// what pins its fix is test/replication/driver.test.ts; this keeps the seed's scenario running.
test('seed 16490 replays clean (a failed metadata barrier with data I/O held behind it)', () => {
  const r = runSeed({ seed: 16490, overlap: false });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 744: writes whose local part failed at detach are marked by the peer', () => {
  const r = runSeed({ seed: 744 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 13351: an Outdated disk with the newer generation serves the resync it sources', () => {
  // Found before seed 16490's fix changed the model: the old driver (planted back) replays it.
  const r = runSeed({ seed: 13351, overlap: false, plantedBug: 'failed-meta-releases-io' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 1410: the State of a lost disk overtakes the Data a failed AL transaction held', () => {
  // Found with the old order (the State waited behind the held Data: the peer wrote the block
  // unmarked and crashed before the OutOfSync mark was durable). The order is pinned by
  // test/replication/driver.test.ts and test/replication/disk-lost-order.test.ts.
  const r = runSeed({ seed: 1410 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 1001: the old order of a failed barrier (State behind the held Data) is caught', () => {
  // On the shared driver seed 1410 no longer reaches that order; seed 1001 does (found by
  // running seeds 1.. with the bug planted): clean as it is, an unmarked difference without
  // the overtaking State.
  assert.ok(runSeed({ seed: 1001 }).ok);
  const old = runSeed({ seed: 1001, plantedBug: 'state-behind-held-data' });
  assert.match(old.violation ?? '', /unmarked difference/);
});

test('seed 7321: a Diskless Primary gains no durable floor on the disk it no longer has', () => {
  // The checker, not the engine: the detached disk (its detach unrecorded, the metadata write
  // failed) comes back UpToDate after a power loss of both and is promoted alone; it serves
  // what it held, as DRBD without fencing does. Writes acknowledged while it was Diskless were
  // on the peer's disk only.
  const r = runSeed({ seed: 7321 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 9715: a Primary promoted on a stale disk is demoted at heal and resyncs', () => {
  // The simulator, not the engine: the failover fault promoted a restarted node whose disk had
  // missed the peer's writes; the engine refuses to make a Primary SyncTarget (as DRBD does), so
  // the heal never converged until it demoted that Primary, as an operator would.
  const r = runSeed({ seed: 9715 });
  assert.ok(r.ok, r.violation ?? '');
});
