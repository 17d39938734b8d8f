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

// Seeds found before pass_on existed replay with on-io-error detach (`onIoError`); a third of
// the seed streams now draws pass_on, and three of these would.

// 16490 replays clean even with the old gate planted back (OutOfSync marking covers it since):
// what pins its fix is test/replication/driver.test.ts; this keeps the seed's scenario running.
test('seed 16490 replays clean (a failed metadata barrier with data I/O held behind it)', () => {
  const r = runSeed({ seed: 16490, overlap: false, onIoError: 'detach' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 744: writes whose local part failed at detach are marked by the peer', () => {
  const r = runSeed({ seed: 744, onIoError: 'detach' });
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

test('seed 1680: the old order of a failed barrier (State behind the held Data) is caught', () => {
  // On the shared driver seed 1410 no longer reaches that order. Seed 1001 did (found by
  // running seeds 1.. with the bug planted) until a Diskless Primary refused a peer of another
  // generation (DRBD's ed_uuid rule) and that path changed; seed 1680 reaches it now: clean as
  // it is, an unmarked difference without the overtaking State.
  assert.ok(runSeed({ seed: 1680 }).ok);
  const old = runSeed({ seed: 1680, plantedBug: 'state-behind-held-data' });
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

// The first fresh-seed run past 20,000 (about 20,600 seeds from random starts) stopped at three
// seeds, all after a burst of disk errors. Two were engine bugs of a Diskless Primary, pinned by
// test/replication/diskless-primary.test.ts; one was the checker.
test('seed 31404443: a Diskless Primary fails a FLUSH no disk served', () => {
  // Its only peer crashed before acknowledging the Barrier; the FLUSH completed "ok" and
  // vouched for a write the crash took from the peer's cache. Now EIO.
  const r = runSeed({ seed: 31404443 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 31418678: a Diskless Primary refuses a peer of another generation', () => {
  // A Primary wrote alone in a partition, lost its disk, and reconnected to the peer left
  // behind: it served the older blocks. Now it refuses (DRBD's "Can only connect to data with
  // current UUID") and the heal demotes it, as an operator would.
  const r = runSeed({ seed: 31418678, onIoError: 'detach' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 84979563: a detached disk keeps its own durable floor when the other disk crashes', () => {
  // The checker, not the engine: the crash of the UpToDate disk gave the detached node (whose
  // detach was never recorded) that disk's durable floor; restarted claiming UpToDate and
  // promoted alone, it served what its own disk held, as DRBD without fencing does (the seed
  // 7321 class). Since the engine fixes above the seed takes another path, so this replays it
  // with its scenario but no longer pins the checker fix.
  const r = runSeed({ seed: 84979563 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 61001300: under pass_on a Secondary whose epoch flush fails drops the link', () => {
  // Found by the first fresh-seed run with pass_on: the epochs could never be acknowledged and
  // the Primary's FLUSH waited forever (liveness). test/replication/pass-on.test.ts pins it.
  const r = runSeed({ seed: 61001300, onIoError: 'pass_on' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 61001464: a State the detach overtook is stale when it lands', () => {
  // A "disk UpToDate" State waited behind the metadata barrier whose failure detached the
  // disk; the detach's State overtook it and the stale one arrived last (the peer then counted
  // a Diskless node as an UpToDate copy: an invariant). test/replication/disk-lost-order.test.ts.
  const r = runSeed({ seed: 61001464, onIoError: 'pass_on' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 61002091: a metadata failure detaches even a lone Primary (pass_on)', () => {
  // The driver's detach after a failed metadata write was refused for a disconnected Primary;
  // under pass_on no data error detached it either, and its failed disk, a SyncTarget whose
  // every write failed, never converged. test/replication/diskless-primary.test.ts.
  const r = runSeed({ seed: 61002091, onIoError: 'pass_on' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 62000049: under pass_on a failed online-verify read counts as a difference', () => {
  // VerifyS waited for its failed local read forever (liveness). test/replication/pass-on.test.ts.
  const r = runSeed({ seed: 62000049, onIoError: 'pass_on' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 70000448: under pass_on a failed resync write stays marked and is asked for again', () => {
  // The failed resync request never retired and the resync never finished (liveness).
  const r = runSeed({ seed: 70000448, onIoError: 'pass_on' });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 385: under pass_on a resync request whose checksum read fails asks for the data', () => {
  // With csums-alg the SyncTarget reads its block for a digest first; that read failed and the
  // request was never sent (liveness; found after merging the shared driver).
  const r = runSeed({ seed: 385 });
  assert.ok(r.ok, r.violation ?? '');
});

// The fresh runs of 3,000+ seeds per start after pass_on stopped at two pass_on seeds.
test('seed 500000946: a bit cleared during a bitmap barrier waits for the next one', () => {
  // A SyncTarget's resync write completed after the bitmap barrier's data flush was issued; the
  // cleared bit went into that barrier's write, the power loss inside it kept the bit and lost
  // the cached data (the source had cleared its bit on RsWriteAck), and no bitmap marked the
  // block: an unmarked difference. test/replication/driver.test.ts pins the rule (since main's
  // new resync controller the seed takes another path and replays clean without it too).
  const r = runSeed({ seed: 500000946 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 600005688: a write failing on a SyncTarget after its ResyncDone keeps it Inconsistent', () => {
  // Under pass_on a replicated write failed on the target between its ResyncDone and the
  // source's ResyncDoneAck; the target went UpToDate with the block marked (an invariant).
  // test/replication/pass-on.test.ts pins it.
  const r = runSeed({ seed: 600005688 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 920002561: a peer whose disk goes during the bitmap exchange gets no resync', () => {
  // Found by the fresh run after the two fixes above (it fails on the commit before them too):
  // the peer's State (Diskless) arrived before any resync had started and was not acted on;
  // its Bitmap then started a resync to a Diskless peer, and a write replicated meanwhile
  // waited for a BarrierAck forever (liveness). test/replication/disk-lost-order.test.ts pins
  // it (since main's new resync controller the seed takes another path).
  const r = runSeed({ seed: 920002561 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 2544748736: a stale UpToDate State after a NegAck does not clear what the NegAck taught', () => {
  // pass_on, verify on. The SyncTarget became UpToDate and sent its State on the DATA stream;
  // the next replicated write failed on its disk and its NegAck (CONTROL stream) overtook that
  // State. The source marked the blocks and guessed 'Failed', then took the stale State as
  // UpToDate: Established and UpToDate with 2 blocks out of sync (the invariant).
  const r = runSeed({ seed: 2544748736 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 2600003032: two Primaries whose UUIDs show no split brain are not connected', () => {
  // n2 was promoted while n1, Primary, was out of reach; n1 re-attached its disk Inconsistent.
  // At reconnect the UUIDs said "resync n2 -> n1", and the two Primaries connected and synced:
  // two Primaries without allow-two-primaries (the invariant). The handshake now refuses it
  // (two-primaries) until one is demoted, as DRBD's state check does.
  const r = runSeed({ seed: 2600003032 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 2700006952: a disk attached while its peer wrote alone comes back Outdated after a crash', () => {
  // n2's disk failed and detached (the metadata write recording it failed too); n1 wrote
  // alone; n2 re-attached Outdated in memory but persisted wasUpToDate; a power loss, n2
  // restarted alone, booted UpToDate and was promoted without --force, serving stale blocks.
  const r = runSeed({ seed: 2700006952 });
  assert.ok(r.ok, r.violation ?? '');
});

test('seed 2700059960: a replicated write failing on a SyncTarget keeps its blocks out of a retiring resync request', () => {
  // pass_on. A resync reply skipped blocks 23-24 as touched by a replicated write in flight;
  // that write then failed on the SyncTarget's disk, and the request, retiring when its other
  // block landed, cleared 23-24 as if the newer write had landed. A later FLUSH found the old
  // data there. Blocks marked locally stale now stay partial in any request in flight.
  const r = runSeed({ seed: 2700059960 });
  assert.ok(r.ok, r.violation ?? '');
});
