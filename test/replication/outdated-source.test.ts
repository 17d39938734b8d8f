// A consistent disk whose generation the handshake finds newer than the peer's becomes
// SyncSource even when it is Outdated (re-attached after a failure), and is UpToDate while it
// serves: DRBD only refuses an Inconsistent SyncSource. Pins simulator seed 13351, where such
// a source answered every resync request RsNegAck and the resync never ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK, Pair } from '../sim/harness.js';

const blockOf = (p: Pair, n: Pair['a'], b: number): number =>
  n.disk.read(b * BLOCK, BLOCK)[0] ?? -1;

test('an Outdated disk with the newer generation is the SyncSource and the resync ends', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.cut(); // alpha, Primary, starts a new generation and writes alone
  const w = p.write(p.a, 3, 0x77);
  p.settle();
  assert.equal(p.a.completions.get(w)?.ok, true);
  // Its disk fails: it detaches (the detach records the disk as no longer following the data).
  p.a.failNextIo = true;
  const failed = p.write(p.a, 5, 0x99);
  p.settle();
  assert.equal(p.a.completions.get(failed)?.ok, false);
  assert.equal(p.a.engine.disk, 'Diskless');
  assert.equal(p.adminCmd(p.a, { cmd: 'secondary' }).ok, true);
  // Re-attached, the disk is Outdated, yet it holds the newest data (block 3).
  assert.equal(p.adminCmd(p.a, { cmd: 'attach', boot: p.boot(p.a) }).ok, true);
  assert.equal(p.a.engine.disk, 'Outdated');
  p.connect();
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate', 'the source is UpToDate');
  assert.equal(p.b.engine.disk, 'UpToDate', 'the resync finished');
  assert.equal(p.oos(p.a) + p.oos(p.b), 0);
  assert.equal(p.peerOf(p.a).repl, 'Established');
  assert.equal(blockOf(p, p.b, 3), 0x77, 'the write alpha made alone reached bravo');
  assert.ok(p.identical());
});

test('a write whose local part failed is marked by the peer that wrote it (OutOfSync)', () => {
  // The write waited for an activity-log transaction that failed with the disk (simulator seed
  // 744 once the daemon stopped running such writes): nothing on this disk covers its block,
  // so the peer that wrote it must mark it, or the re-attached disk differs unmarked.
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 1, 0x11);
  p.settle();
  p.a.failNextIo = true;
  const w = p.write(p.a, 3, 0x77);
  p.settle();
  assert.equal(p.a.completions.get(w)?.ok, true, 'bravo holds the write: it completes');
  assert.equal(p.a.engine.disk, 'Diskless');
  assert.equal(blockOf(p, p.b, 3), 0x77);
  assert.ok(p.oos(p.b) >= 1, 'bravo marked the block for alpha');
  p.a.pal.clear(); // the AL transaction covering block 3 never reached the disk
  assert.equal(p.adminCmd(p.a, { cmd: 'attach', boot: p.boot(p.a) }).ok, true);
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.equal(blockOf(p, p.a, 3), 0x77, 'the resync brought the block back');
  assert.ok(p.identical());
});
