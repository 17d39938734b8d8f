// on-io-error pass_on: a write whose local part fails completes through the peer. The block is
// then stale here: it is marked out of sync with every peer, the disk goes Inconsistent (both
// persisted, as DRBD does), reads of it go to an UpToDate peer (EIO without one), and a resync
// as SyncTarget repairs it. Before, nothing marked it and later reads returned the old block.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EngineConfig } from '../../src/replication/types.js';
import { BLOCK, Pair, type HNode } from '../sim/harness.js';

const blockOf = (n: HNode, b: number): number => n.disk.read(b * BLOCK, BLOCK)[0] ?? -1;

function read(p: Pair, n: HNode, block: number): { ok: boolean; errno?: string; first?: number } {
  const id = p.request(n, { op: 'read', offsetBytes: block * BLOCK, lengthBytes: BLOCK });
  p.settle();
  const c = n.completions.get(id);
  assert.ok(c !== undefined, 'the read completed');
  return c.ok ? { ok: true, first: c.data?.[0] ?? -1 } : { ok: false, errno: c.errno ?? '' };
}

/** alpha (Primary) writes 0x11 then 0x22 to block 5; the second write fails on its disk. */
function staleBlock(over: Partial<EngineConfig> = {}): Pair {
  const p = Pair.initialized(
    { protocol: 'C', onIoError: 'pass_on', ...over },
    {
      onIoError: 'pass_on',
    },
  );
  p.write(p.a, 5, 0x11);
  p.write(p.a, 7, 0x77);
  p.settle();
  p.a.failNextIo = true;
  const w = p.write(p.a, 5, 0x22);
  p.settle();
  assert.equal(p.a.completions.get(w)?.ok, true, 'acknowledged: the peer has it');
  assert.equal(blockOf(p.a, 5), 0x11, "alpha's disk still holds the older write");
  assert.equal(blockOf(p.b, 5), 0x22);
  return p;
}

test('pass_on: a block whose local write failed is read from the UpToDate peer', () => {
  const p = staleBlock();
  assert.equal(p.a.engine.disk, 'Inconsistent');
  assert.equal(p.a.engine.role, 'Primary');
  assert.ok(p.a.engine.localStale.test(5));
  assert.ok(p.a.pbitmap.test(5), 'the mark is on disk');
  assert.equal(p.a.meta.flags.consistent, false, 'the disk is Inconsistent on disk too');
  assert.deepEqual(read(p, p.a, 5), { ok: true, first: 0x22 });
  const before = p.a.sent.filter((pk) => pk.kind === 'DataRequest').length;
  assert.deepEqual(read(p, p.a, 7), { ok: true, first: 0x77 });
  assert.equal(
    p.a.sent.filter((pk) => pk.kind === 'DataRequest').length,
    before,
    'a block no bitmap marks is still read from the local disk',
  );
});

test('pass_on: without an UpToDate peer the stale block is EIO, never the old data', () => {
  const p = staleBlock();
  p.cut();
  assert.deepEqual(read(p, p.a, 5), { ok: false, errno: 'EIO' });
});

test('pass_on: a reconnect resyncs the stale block to this disk, which is UpToDate again', () => {
  const p = staleBlock();
  p.cut();
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.equal(p.a.engine.localStale.weight, 0);
  assert.equal(blockOf(p.a, 5), 0x22);
  assert.equal(p.oos(p.a) + p.oos(p.b), 0);
  assert.ok(p.identical());
});

test('pass_on: the mark survives a power loss; the restarted disk syncs from the peer', () => {
  const p = staleBlock();
  p.crash(p.a, 9);
  assert.equal(p.a.engine.disk, 'Inconsistent', 'restarted from its metadata');
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.equal(blockOf(p.a, 5), 0x22);
  assert.ok(p.identical());
});

test('pass_on with the mark planted away: the old block is served (what the fix prevents)', () => {
  const p = staleBlock({ plantedBug: 'pass-on-unmarked' });
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.deepEqual(read(p, p.a, 5), { ok: true, first: 0x11 });
});

test('pass_on: a Secondary whose epoch flush fails drops the link; the FLUSH completes, the resync repairs', () => {
  // Simulator seed 61001300: the epochs could never be acknowledged, and the Primary's FLUSH
  // waited for their BarrierAck forever.
  const p = Pair.initialized({ protocol: 'C', onIoError: 'pass_on' }, { onIoError: 'pass_on' });
  p.write(p.a, 4, 0x44);
  p.settle();
  const f = p.request(p.a, { op: 'flush' });
  while (p.completeIo(p.a));
  while (p.deliver(1)); // the Barrier asking bravo to flush
  assert.ok(p.b.pendingIo.length > 0, "bravo's epoch flush is pending");
  p.b.failNextIo = true;
  p.settle();
  assert.notEqual(p.b.engine.peers.get(1)?.conn, 'Connected', 'bravo dropped the connection');
  p.cut(); // alpha sees the link go
  assert.deepEqual(p.a.completions.get(f), { ok: true }, "alpha's own disk flushed");
  p.connect();
  p.settle();
  assert.equal(p.a.engine.peers.get(2)?.repl, 'Established');
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(p.oos(p.a) + p.oos(p.b), 0);
  assert.ok(p.identical());
});

test('pass_on: an online-verify read that fails counts as a difference; the verify finishes', () => {
  // Simulator seed 62000049: VerifyS waited for its failed local read forever.
  const p = Pair.initialized({ protocol: 'C', onIoError: 'pass_on' }, { onIoError: 'pass_on' });
  p.write(p.a, 2, 0x22);
  p.settle();
  assert.equal(p.adminCmd(p.a, { cmd: 'verify', peer: 2 }).ok, true);
  p.a.failNextIo = true; // the first verify read on alpha
  p.settle();
  const done = p.a.notes.find((n) => n.kind === 'verify-finished');
  assert.ok(done !== undefined && done.kind === 'verify-finished', 'the verify finished');
  assert.ok(done.outOfSyncBlocks >= 1, 'the unreadable range is marked');
  assert.equal(p.peerOf(p.a).repl, 'Established');
  assert.ok(p.oos(p.a) >= 1);
});

test('pass_on: a resync write that fails stays marked and is asked for again', () => {
  // Simulator seed 70000448: the failed request never retired and the resync never finished.
  const p = Pair.initialized({ protocol: 'C', onIoError: 'pass_on' }, { onIoError: 'pass_on' });
  p.cut();
  p.write(p.a, 10, 0x10);
  p.write(p.a, 30, 0x30);
  p.settle();
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.b.failNextIo = true; // bravo's first I/O: a resync write
  p.settle();
  assert.ok(
    p.b.notes.some((n) => n.kind === 'io-error'),
    'a resync write failed',
  );
  assert.equal(p.b.engine.disk, 'UpToDate', 'the resync finished');
  assert.equal(blockOf(p.b, 10), 0x10);
  assert.equal(blockOf(p.b, 30), 0x30);
  assert.ok(p.identical());
});

test('pass_on: a write failing on a SyncTarget after its ResyncDone leaves it Inconsistent, then resynced', () => {
  // Simulator seed 600005688: the target went UpToDate at ResyncDoneAck with the failed block
  // still marked (an invariant: UpToDate and Established with out-of-sync blocks).
  const p = Pair.initialized({ protocol: 'C', onIoError: 'pass_on' }, { onIoError: 'pass_on' });
  p.cut();
  p.write(p.a, 3, 0x33);
  p.settle();
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  // Run the resync until bravo (the target) sent ResyncDone; hold alpha's ResyncDoneAck.
  const sentDone = (): boolean => p.b.sent.some((pk) => pk.kind === 'ResyncDone');
  for (let i = 0; i < 10_000 && !sentDone(); i++) {
    let moved = false;
    for (const from of [1, 2])
      for (const st of ['control', 'data'] as const) moved = p.deliver(from, st) || moved;
    for (const n of [p.a, p.b]) moved = p.completeIo(n) || moved;
    if (!moved) p.tick();
  }
  assert.ok(sentDone(), 'bravo finished its resync requests');
  assert.equal(p.b.engine.disk, 'Inconsistent');
  // A replicated write fails on bravo's disk before the ResyncDoneAck arrives.
  p.b.failNextIo = true;
  const w = p.write(p.a, 8, 0x88);
  for (let i = 0; i < 50; i++) {
    p.deliver(1, 'data'); // the Data, not alpha's ResyncDoneAck (control)
    p.completeIo(p.b);
  }
  assert.ok(p.b.engine.bitmaps.get(1)?.test(8), 'bravo marked the block it failed');
  p.settle();
  assert.equal(p.a.completions.get(w)?.ok, true, 'acknowledged through alpha');
  assert.equal(p.peerOf(p.b).repl, 'Established', 'the resync ended');
  assert.equal(p.b.engine.disk, 'Inconsistent', 'with a failed block: not UpToDate');
  assert.equal(p.b.meta.flags.consistent, false);
  assert.equal(p.peerOf(p.a).disk, 'Inconsistent', 'alpha knows');
  // (alpha's NegAck mark may be gone: the ResyncDone that crossed it clears the source's
  // slot. The next handshake ORs both bitmaps, so bravo's mark is what counts.)
  assert.ok(p.oos(p.b) >= 1, 'bravo keeps it marked');
  assert.equal(blockOf(p.b, 3), 0x33, 'the resync brought the rest');
  // As after any pass_on mark, a reconnect resyncs it.
  p.cut();
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(blockOf(p.b, 8), 0x88);
  assert.equal(p.oos(p.a) + p.oos(p.b), 0);
  assert.ok(p.identical());
});
