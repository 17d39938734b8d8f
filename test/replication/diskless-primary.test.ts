// A Diskless Primary serves only through its peer's disk. Two rules of DRBD keep it from
// vouching for data nobody holds (simulator seeds 31404443 and 31418678):
// - a request no good copy served fails: a FLUSH whose only peer went away before its
//   BarrierAck completes with EIO, not "ok" (DRBD completes a request with neither a local nor
//   a network success with an error);
// - it connects only to data of the generation it exposes (DRBD's ed_uuid, "Can only connect to
//   data with current UUID"): a peer left behind while this node still had a disk lacks writes
//   this Primary acknowledged. A Diskless node follows the peer's generation while connected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK, Pair, type HNode } from '../sim/harness.js';

const blockOf = (n: HNode, b: number): number => n.disk.read(b * BLOCK, BLOCK)[0] ?? -1;

/** alpha (Primary) loses its disk on its next I/O, a write; bravo keeps serving. */
function alphaGoesDiskless(p: Pair): void {
  p.a.failNextIo = true;
  p.write(p.a, 3, 0x33);
  p.settle();
  assert.equal(p.a.engine.disk, 'Diskless');
  assert.equal(p.a.engine.role, 'Primary');
}

test('a Diskless Primary whose peer goes away before the BarrierAck fails the FLUSH (EIO)', () => {
  const p = Pair.initialized({ protocol: 'C' });
  alphaGoesDiskless(p);
  const w = p.write(p.a, 6, 0x66);
  p.settle();
  assert.equal(p.a.completions.get(w)?.ok, true, 'the write is on bravo (protocol C)');
  const f = p.request(p.a, { op: 'flush' });
  // The Barrier is on its way; bravo loses power before it acknowledges it: the only disk
  // may have lost write 6 from its cache, and no disk flushed anything for this FLUSH.
  p.crash(p.b, 3);
  assert.deepEqual(p.a.completions.get(f), { ok: false, errno: 'EIO' });
});

test('a FLUSH of a Primary with its own disk still completes when the peer goes away', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 6, 0x66);
  p.settle();
  const f = p.request(p.a, { op: 'flush' });
  while (p.completeIo(p.a));
  p.cut();
  assert.deepEqual(p.a.completions.get(f), { ok: true });
});

test('a Diskless Primary refuses a peer left behind while it still had its disk', () => {
  // Seed 31418678: alpha writes alone during a partition, then its disk fails; bravo comes
  // back with the older generation. Serving bravo's data would take alpha's acknowledged
  // writes back: alpha refuses, and its requests fail until the operator intervenes.
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 9, 0x01);
  p.settle();
  p.cut();
  const lone = p.write(p.a, 9, 0x02);
  p.settle();
  assert.equal(p.a.completions.get(lone)?.ok, true, 'acknowledged by alpha alone');
  p.a.failNextIo = true;
  p.write(p.a, 12, 0x03);
  p.settle();
  assert.equal(p.a.engine.disk, 'Diskless');
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.ok(p.a.notes.some((n) => n.kind === 'handshake' && n.rule === 'diskless-stale-data'));
  assert.equal(p.a.engine.peers.get(2)?.conn, 'StandAlone');
  const r = p.request(p.a, { op: 'read', offsetBytes: 9 * BLOCK, lengthBytes: BLOCK });
  p.settle();
  assert.deepEqual(p.a.completions.get(r), { ok: false, errno: 'EIO' }, 'never the old block');
  assert.equal(blockOf(p.b, 9), 0x01, 'bravo still holds the older write');
});

test('a Diskless Primary follows the peer generation while connected, and reconnects to it', () => {
  // Seed 31404443's reconnect: bravo made a new generation when alpha's disk went (it told
  // alpha); after bravo restarts with it, alpha connects, and reads what bravo holds.
  const p = Pair.initialized({ protocol: 'C' });
  alphaGoesDiskless(p);
  assert.equal(p.a.engine.current & ~1n, p.b.engine.current & ~1n);
  const w = p.write(p.a, 6, 0x66, 1, true);
  p.settle();
  assert.equal(p.a.completions.get(w)?.ok, true);
  p.crash(p.b, 7);
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.a.engine.peers.get(2)?.repl, 'Established');
  const r = p.request(p.a, { op: 'read', offsetBytes: 6 * BLOCK, lengthBytes: BLOCK });
  p.settle();
  assert.equal(p.a.completions.get(r)?.data?.[0], 0x66, 'the FUA write survived on bravo');
});

test('a failed disk detaches even from a lone Primary; the operator detach keeps it', () => {
  // Simulator seed 61002091: under pass_on a metadata write failed on a disconnected Primary;
  // the driver's detach was refused ("needs an UpToDate peer"), and the disk, failing every
  // I/O from then on, stayed attached (a SyncTarget that never finished).
  const p = Pair.initialized({ protocol: 'C', onIoError: 'pass_on' });
  p.cut();
  assert.equal(p.adminCmd(p.a, { cmd: 'detach' }).ok, false, 'the operator may not');
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.equal(p.adminCmd(p.a, { cmd: 'detach', failed: true }).ok, true);
  assert.equal(p.a.engine.disk, 'Diskless');
  const r = p.request(p.a, { op: 'read', offsetBytes: 0, lengthBytes: BLOCK });
  p.settle();
  assert.deepEqual(p.a.completions.get(r), { ok: false, errno: 'EIO' });
});
