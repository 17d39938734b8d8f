// Scenario tests of the engine through the hand-driven harness: each pins one rule of DRBD's
// semantics (completion per protocol, epochs, roles, bitmap while disconnected, handshakes,
// split brain, resync safety, verify, csums, detach, crash recovery, rate control).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK, Pair, SIZE, baseConfig, type HNode } from '../sim/harness.js';
import { createEngine, resyncBudget } from '../../src/replication/engine.js';

const done = (n: HNode, id: number): boolean => n.completions.get(id)?.ok === true;
const blockOf = (n: HNode, b: number): number => n.disk.read(b * BLOCK, BLOCK)[0] ?? -1;

test('protocol C: a write completes only after the peer wrote it', () => {
  const p = Pair.initialized({ protocol: 'C' });
  const id = p.write(p.a, 3, 0x11);
  p.completeMeta(p.a); // the AL transaction of extent 0: the write and its Data wait for it
  p.completeIo(p.a);
  assert.equal(done(p.a, id), false, 'local write alone must not complete it');
  p.deliver(1, 'data'); // Data reaches bravo
  p.deliver(2, 'control');
  assert.equal(done(p.a, id), false, 'nothing acked before bravo wrote');
  p.completeIo(p.b);
  p.deliver(2, 'control'); // WriteAck
  assert.equal(done(p.a, id), true);
  p.settle();
  assert.equal(blockOf(p.b, 3), 0x11);
});

test('protocol B: completes when the peer received it; protocol A: when sent', () => {
  const b = Pair.initialized({ protocol: 'B' });
  const id = b.write(b.a, 1, 0x22);
  b.completeMeta(b.a);
  b.completeIo(b.a);
  b.deliver(1, 'data');
  b.deliver(2, 'control'); // RecvAck, bravo's disk write still pending
  assert.equal(done(b.a, id), true);
  assert.equal(b.b.pendingIo.length, 1);
  const a = Pair.initialized({ protocol: 'A' });
  const id2 = a.write(a.a, 1, 0x33);
  a.completeMeta(a.a);
  a.completeIo(a.a);
  assert.equal(done(a.a, id2), true, 'protocol A needs no packet delivered');
});

test('FUA under protocol A still waits until every UpToDate node has it durably', () => {
  const p = Pair.initialized({ protocol: 'A' });
  const id = p.write(p.a, 2, 0x44, 1, true);
  p.completeMeta(p.a);
  p.completeIo(p.a);
  assert.equal(done(p.a, id), false);
  p.settle();
  assert.equal(done(p.a, id), true);
  assert.equal(p.b.disk.durable.get(2)?.[0], 0x44, 'FUA data is durable on the peer');
});

test('flush completes after the peer flushed the epoch (barrier ack)', () => {
  const p = Pair.initialized({ protocol: 'B' });
  p.write(p.a, 4, 0x55);
  p.settle();
  p.b.disk.cache.set(4, new Uint8Array(BLOCK).fill(0x55)); // pretend it is still cached
  const f = p.request(p.a, { op: 'flush' });
  p.completeIo(p.a);
  assert.equal(done(p.a, f), false);
  p.settle();
  assert.equal(done(p.a, f), true);
  assert.equal(p.b.disk.cache.size, 0, 'the peer flushed before acknowledging');
});

test('epochs: the peer writes epoch n+1 while epoch n is in flight; BarrierAcks stay in order, after a flush', () => {
  const p = Pair.initialized({ protocol: 'A' });
  const acks = (): number[] => p.b.sent.flatMap((x) => (x.kind === 'BarrierAck' ? [x.epoch] : []));
  const before = acks().length;
  const flushesBefore = p.b.flushIos;
  const w1 = p.write(p.a, 10, 1);
  p.completeMeta(p.a);
  p.completeIo(p.a); // w1 completes: its epoch closes
  assert.equal(done(p.a, w1), true);
  p.write(p.a, 11, 2);
  while (p.deliver(1, 'data'));
  assert.equal(p.b.pendingIo.length, 2, 'w1 and w2 are both issued on bravo (pipelined)');
  p.completeNewestIo(p.b); // w2 lands first: epoch 2 is not closed, epoch 1 still in flight
  assert.equal(acks().length, before, 'no BarrierAck while epoch 1 is in flight');
  p.completeIo(p.b); // w1 written: epoch 1 drained, no flush yet
  assert.equal(p.b.flushIos, flushesBefore);
  assert.equal(acks().length, before, 'no BarrierAck before a flush');
  assert.equal(p.b.engine.timers.size, 1, 'a timer bounds how long epoch 1 waits');
  p.tick(); // the delay expires: one flush
  assert.equal(p.b.flushIos - flushesBefore, 1);
  p.completeIo(p.b);
  assert.deepEqual(acks().slice(before), [1]);
  assert.equal(p.b.disk.durable.get(10)?.[0], 1, 'epoch 1 is durable when it is acknowledged');
  p.settle();
  assert.equal(blockOf(p.b, 11), 2);
});

test('disk-flushes no: the peer starts no write of epoch n+1 before epoch n is written', () => {
  // Completed is durable on such a disk: a later write must not become durable first.
  const p = Pair.initialized({ protocol: 'A', diskFlushes: false });
  const w1 = p.write(p.a, 10, 1);
  p.completeMeta(p.a);
  p.completeIo(p.a);
  assert.equal(done(p.a, w1), true);
  p.write(p.a, 11, 2);
  while (p.deliver(1, 'data'));
  assert.equal(p.b.pendingIo.length, 1, 'only w1 is issued on bravo');
  p.completeIo(p.b); // w1 written: epoch 1 drained, w2 starts
  assert.equal(p.b.pendingIo.length, 1, 'w2');
  p.settle();
  assert.equal(blockOf(p.b, 11), 2);
});

test('a client flush makes the peer flush at once, acknowledging every earlier epoch', () => {
  const p = Pair.initialized({ protocol: 'A' });
  const acks = (): number[] => p.b.sent.flatMap((x) => (x.kind === 'BarrierAck' ? [x.epoch] : []));
  const before = acks().length;
  const flushesBefore = p.b.flushIos;
  for (let i = 0; i < 3; i++) {
    p.write(p.a, 20 + i, i + 1);
    p.completeMeta(p.a); // the first one activates extent 1
    p.completeIo(p.a); // completes: the epoch closes (nobody waits for its ack)
  }
  const f = p.request(p.a, { op: 'flush' });
  p.completeIo(p.a); // the local flush
  while (p.deliver(1, 'data'));
  while (p.completeIo(p.b));
  assert.equal(p.b.flushIos - flushesBefore, 1, 'one flush for all four epochs');
  assert.deepEqual(acks().slice(before), [1, 2, 3, 4]);
  for (let i = 0; i < 3; i++) assert.equal(p.b.disk.durable.get(20 + i)?.[0], i + 1);
  assert.equal(done(p.a, f), false);
  while (p.deliver(2, 'control'));
  assert.equal(done(p.a, f), true);
});

test('epochs drained while a flush runs share the next flush; BarrierAcks stay in order', () => {
  const p = Pair.initialized({ protocol: 'A' });
  const acks = (): number[] => p.b.sent.flatMap((x) => (x.kind === 'BarrierAck' ? [x.epoch] : []));
  const before = acks().length;
  const flushesBefore = p.b.flushIos;
  p.request(p.a, { op: 'flush' }); // epoch 1 (empty), flush asked
  p.completeIo(p.a);
  while (p.deliver(1, 'data')); // bravo: epoch 1 drained, flush F1 running
  assert.equal(p.b.flushIos - flushesBefore, 1);
  p.write(p.a, 30, 7);
  p.completeMeta(p.a);
  p.completeIo(p.a); // epoch 2 closes
  p.request(p.a, { op: 'flush' }); // epoch 3 (empty), flush asked
  p.completeIo(p.a);
  while (p.deliver(1, 'data')); // epoch 2's write starts while F1 runs
  const f1 = p.b.pendingIo.shift(); // let the write finish before F1
  assert.ok(f1 !== undefined);
  p.b.pendingIo.push(f1);
  p.completeIo(p.b); // the write: epochs 2 and 3 drained, they wait for F1 to end
  assert.equal(p.b.flushIos - flushesBefore, 1, 'never two flushes at once');
  p.completeIo(p.b); // F1: acks epoch 1, then one flush for epochs 2 and 3
  assert.deepEqual(acks().slice(before), [1]);
  assert.equal(p.b.flushIos - flushesBefore, 2);
  p.completeIo(p.b);
  assert.deepEqual(acks().slice(before), [1, 2, 3]);
  assert.equal(p.b.disk.durable.get(30)?.[0], 7);
});

test('disk-flushes no: the BarrierAck follows the drain, with no flush', () => {
  const p = Pair.initialized({ protocol: 'C', diskFlushes: false });
  const flushesBefore = p.b.flushIos;
  const w = p.write(p.a, 5, 7);
  p.settle();
  assert.equal(done(p.a, w), true);
  const f = p.request(p.a, { op: 'flush' });
  p.settle();
  assert.equal(done(p.a, f), true);
  assert.ok(p.b.sent.some((x) => x.kind === 'BarrierAck'));
  assert.equal(p.b.flushIos, flushesBefore, 'bravo never flushed');
});

test('roles: promotion needs UpToDate (or --force); a second Primary is refused', () => {
  const p = new Pair();
  assert.match(p.adminCmd(p.a, { cmd: 'primary', force: false }).message, /UpToDate needed/);
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.adminCmd(p.a, { cmd: 'primary', force: true }).ok, true);
  p.settle(); // initial full sync
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.ok(p.identical());
  assert.equal(p.b.notes.filter((n) => n.kind === 'resync-started')[0]?.kind, 'resync-started');
  const r = p.adminCmd(p.b, { cmd: 'primary', force: false });
  assert.equal(r.ok, false);
  assert.match(r.message, /allow-two-primaries/);
  assert.equal(p.adminCmd(p.b, { cmd: 'secondary' }).ok, true);
});

test('allow-two-primaries: both nodes may be Primary and replicate to each other', () => {
  const p = Pair.initialized({ allowTwoPrimaries: true });
  assert.equal(p.adminCmd(p.b, { cmd: 'primary', force: false }).ok, true);
  p.settle();
  p.write(p.b, 7, 0x77);
  p.settle();
  assert.equal(blockOf(p.a, 7), 0x77);
});

test('a write from a Secondary is refused with EROFS', () => {
  const p = Pair.initialized();
  const id = p.write(p.b, 0, 1);
  assert.equal(p.b.completions.get(id)?.errno, 'EROFS');
});

test('disconnected Primary keeps serving, marks bits, and a reconnect resyncs exactly those', () => {
  const p = Pair.initialized();
  p.cut();
  const ids = [p.write(p.a, 5, 9), p.write(p.a, 40, 9, 2)];
  p.settle();
  assert.ok(ids.every((i) => done(p.a, i)));
  assert.equal(p.oos(p.a), 3);
  p.connect();
  p.settle();
  assert.ok(
    p.a.notes.some((n) => n.kind === 'handshake' && n.rule === 'peer-current-is-my-bitmap'),
  );
  const moved = p.a.sent
    .filter((x) => x.kind === 'RsReply')
    .reduce((s, x) => s + (x.kind === 'RsReply' ? x.count : 0), 0);
  assert.equal(moved, 3, 'only the marked blocks moved');
  assert.equal(p.oos(p.a), 0);
  assert.equal(p.oos(p.b), 0);
  assert.ok(p.identical());
  assert.equal(p.peerOf(p.a).repl, 'Established');
});

test('new-current-uuid --clear-bitmap skips the initial sync', () => {
  const p = Pair.initialized();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(p.a.sent.filter((x) => x.kind === 'RsRequest' || x.kind === 'RsReply').length, 0);
  assert.equal(p.a.engine.current & ~1n, p.b.engine.current & ~1n);
});

test('split brain is detected on both sides; connect --discard-my-data recovers', () => {
  const p = Pair.initialized();
  p.cut();
  p.write(p.a, 1, 0xaa);
  p.settle();
  p.adminCmd(p.a, { cmd: 'secondary' });
  assert.equal(p.adminCmd(p.b, { cmd: 'primary', force: false }).ok, true);
  p.write(p.b, 2, 0xbb);
  p.settle();
  p.adminCmd(p.b, { cmd: 'secondary' });
  p.connect();
  p.settle();
  for (const n of [p.a, p.b]) {
    assert.ok(
      n.notes.some((x) => x.kind === 'split-brain'),
      `${n.name} detects split brain`,
    );
    assert.equal(p.peerOf(n).conn, 'StandAlone');
  }
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: true });
  p.connect();
  p.settle();
  assert.ok(p.identical());
  assert.equal(blockOf(p.b, 1), 0xaa, "alpha's change survived");
  assert.equal(blockOf(p.b, 2), 0, "bravo's change was discarded");
  assert.equal(p.oos(p.a) + p.oos(p.b), 0);
});

test('after-sb-0pri discard-zero-changes resolves a split brain automatically', () => {
  const p = Pair.initialized({ afterSb0Pri: 'discard-zero-changes' });
  p.cut();
  p.write(p.a, 1, 0xaa);
  p.settle();
  p.adminCmd(p.a, { cmd: 'secondary' });
  p.adminCmd(p.b, { cmd: 'primary', force: false });
  p.adminCmd(p.b, { cmd: 'secondary' }); // promoted, wrote nothing
  p.connect();
  p.settle();
  assert.ok(
    p.b.notes.some((x) => x.kind === 'split-brain' && x.resolved.includes('discard-zero-changes')),
  );
  assert.ok(p.identical());
  assert.equal(blockOf(p.b, 1), 0xaa);
});

test('after-sb-1pri discard-secondary: the Primary keeps its data', () => {
  const p = Pair.initialized({ afterSb1Pri: 'discard-secondary' });
  p.cut();
  p.write(p.a, 1, 0xaa);
  p.settle();
  p.adminCmd(p.b, { cmd: 'primary', force: false });
  p.write(p.b, 2, 0xbb);
  p.settle();
  p.adminCmd(p.b, { cmd: 'secondary' });
  p.connect();
  p.settle();
  assert.ok(p.identical());
  assert.equal(blockOf(p.b, 2), 0);
  assert.equal(p.a.engine.role, 'Primary');
});

/** alpha marks block 5 while disconnected, then the resync request for it is served while
 *  an application write to block 5 races with the resync read. */
function racingResync(bug: boolean): Pair {
  const p = Pair.initialized(
    bug ? { plantedBug: 'resync-overwrites-newer' } : {},
    bug ? { plantedBug: 'resync-overwrites-newer' } : {},
  );
  p.cut();
  p.write(p.a, 5, 1);
  p.settle();
  p.connect();
  // Handshake, SyncUuid and bitmaps, but hold the resync request at bravo's side.
  for (let i = 0; i < 20; i++) {
    p.deliver(1, 'data');
    p.deliver(2, 'control');
    p.deliver(1, 'control');
    const q = p.links.get('2:data') ?? [];
    // Let bravo's packets through until its first RsRequest would go out.
    if (q.length > 0 && p.b.sent.at(-1)?.kind !== 'RsRequest') p.deliver(2, 'data');
    while (p.completeIo(p.b));
    while (p.completeIo(p.a));
  }
  assert.equal(p.peerOf(p.b).repl, 'SyncTarget');
  assert.ok(p.b.sent.some((x) => x.kind === 'RsRequest'));
  p.deliver(2, 'data'); // RsRequest reaches alpha: it reads block 5 (old value 1)
  p.write(p.a, 5, 2); // the newer write is replicated first (Data goes out now)
  p.completeIo(p.a); // the read completes first with the old data -> RsReply after Data
  p.settle();
  return p;
}

test('resync: a reply read before a newer write never overwrites it on the target', () => {
  const p = racingResync(false);
  assert.equal(blockOf(p.a, 5), 2);
  assert.equal(blockOf(p.b, 5), 2);
  assert.ok(p.identical());
});

test('planted bug resync-overwrites-newer really diverges (the harness can see it)', () => {
  const p = racingResync(true);
  assert.equal(blockOf(p.b, 5), 1);
  assert.equal(p.identical(), false);
});

test('online verify marks differing blocks; a reconnect resyncs them', () => {
  const p = Pair.initialized();
  p.write(p.a, 9, 3);
  p.settle();
  p.b.disk.write(9 * BLOCK, new Uint8Array(BLOCK).fill(0xee), true); // silent corruption
  assert.equal(p.adminCmd(p.a, { cmd: 'verify', peer: 2 }).ok, true);
  p.settle();
  const v = p.a.notes.find((n) => n.kind === 'verify-finished');
  assert.ok(v !== undefined && v.kind === 'verify-finished' && v.outOfSyncBlocks === 1);
  assert.equal(p.oos(p.a), 1);
  assert.equal(p.oos(p.b), 1);
  p.adminCmd(p.a, { cmd: 'disconnect', peer: 2 });
  p.cut();
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.connect();
  p.settle();
  assert.ok(p.identical());
});

test('csums-alg: blocks with equal digests are not transferred', () => {
  const p = Pair.initialized({ csums: true });
  p.cut();
  p.write(p.a, 12, 4);
  p.settle();
  p.b.disk.write(12 * BLOCK, new Uint8Array(BLOCK).fill(4), true); // bravo happens to match
  p.connect();
  p.settle();
  assert.equal(p.a.sent.filter((x) => x.kind === 'RsReply').length, 0);
  assert.ok(p.a.sent.some((x) => x.kind === 'RsInSync'));
  assert.equal(p.oos(p.a) + p.oos(p.b), 0);
});

test('on-io-error detach: the Primary goes Diskless and keeps serving through the peer', () => {
  const p = Pair.initialized();
  p.write(p.a, 6, 0x66);
  p.settle();
  p.a.failNextIo = true;
  const w = p.write(p.a, 7, 0x67);
  p.settle();
  assert.equal(p.a.engine.disk, 'Diskless');
  assert.equal(done(p.a, w), true, 'completed through the peer');
  const r = p.request(p.a, { op: 'read', offsetBytes: 6 * BLOCK, lengthBytes: 2 * BLOCK });
  p.settle();
  const data = p.a.completions.get(r)?.data;
  assert.equal(data?.[0], 0x66);
  assert.equal(data?.[BLOCK], 0x67);
  // Re-attach: the disk syncs back what it missed (bravo marked it for us).
  assert.equal(p.adminCmd(p.a, { cmd: 'attach', boot: p.boot(p.a) }).ok, true);
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.ok(p.identical());
});

test('a write waiting for an activity-log slot asks the peer for its acks (no timer needed)', () => {
  const p = Pair.initialized({ alExtents: 2 });
  p.write(p.a, 1, 1); // extent 0
  p.settle(0);
  p.write(p.a, 20, 2); // extent 1
  p.settle(0);
  // Both extents stay hot until bravo acknowledges their epochs, which it does lazily.
  const w = p.write(p.a, 40, 3); // extent 2 needs a slot
  p.settle(0); // no timer fires: only the flush alpha asks for can free a slot
  assert.equal(done(p.a, w), true);
  assert.ok(p.a.sent.some((x) => x.kind === 'Barrier' && x.flush));
  p.settle();
  assert.ok(p.identical());
});

test('after a Primary crash the activity log bounds the resync', () => {
  const p = Pair.initialized({ alExtents: 2 });
  p.write(p.a, 1, 1); // extent 0
  p.write(p.a, 20, 2); // extent 1
  p.write(p.a, 40, 3); // extent 2 (extent 0 leaves the log)
  p.settle();
  // Crash alpha: its disk keeps what was flushed; it restarts from its metadata.
  p.crash(p.a);
  assert.equal(p.a.engine.crashedPrimary, true);
  const hot = p.a.pal.size;
  assert.equal(hot, 2);
  assert.equal(p.oos(p.a), hot * 16, 'exactly the hot extents are marked');
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.connect();
  p.settle();
  assert.ok(p.a.notes.some((n) => n.kind === 'handshake' && n.rule === 'i-am-crashed-primary'));
  const moved = p.a.sent
    .filter((x) => x.kind === 'RsReply')
    .reduce((s, x) => s + (x.kind === 'RsReply' ? x.count : 0), 0);
  assert.ok(moved <= hot * 16 && moved > 0);
  assert.ok(p.identical());
});

test('invalidate and invalidate-remote run a full sync in the asked direction', () => {
  const p = Pair.initialized();
  p.write(p.a, 3, 5);
  p.settle();
  p.b.disk.write(30 * BLOCK, new Uint8Array(BLOCK).fill(9), true);
  assert.equal(p.adminCmd(p.a, { cmd: 'invalidate-remote', peer: 2 }).ok, true);
  p.settle();
  assert.ok(p.identical());
  assert.equal(
    p.adminCmd(p.a, { cmd: 'invalidate', peer: 2 }).ok,
    false,
    'a Primary keeps its data',
  );
  assert.equal(p.adminCmd(p.b, { cmd: 'invalidate', peer: 1 }).ok, true);
  p.settle();
  assert.ok(p.identical());
  assert.equal(p.b.engine.disk, 'UpToDate');
});

test('reads on a SyncTarget Primary come from the source for out-of-sync blocks', () => {
  const p = Pair.initialized();
  p.write(p.a, 8, 0x88);
  p.settle();
  p.a.failNextIo = true;
  p.write(p.a, 9, 0x89);
  p.settle();
  p.adminCmd(p.a, { cmd: 'attach', boot: p.boot(p.a) });
  // Mid-resync (no ticks yet): block 9 is out of sync locally and must come from bravo.
  for (let i = 0; i < 6; i++) {
    p.deliver(1, 'data');
    p.deliver(2, 'data');
    // The handshake's metadata writes (the DATA packets after them wait for them).
    p.completeMeta(p.a);
    p.completeMeta(p.b);
  }
  assert.equal(p.peerOf(p.b).repl, 'SyncSource', 'the resync has started');
  assert.equal(p.a.engine.bitmaps.get(2)?.test(9), true, 'block 9 is out of sync on alpha');
  const sent = p.a.sent.length;
  const r = p.request(p.a, { op: 'read', offsetBytes: 9 * BLOCK, lengthBytes: BLOCK });
  assert.ok(
    p.a.sent.slice(sent).some((x) => x.kind === 'DataRequest'),
    'the read goes to bravo',
  );
  p.settle();
  assert.equal(p.a.completions.get(r)?.data?.[0], 0x89);
});

test('resync rate: fixed rate per turn, controller fills toward c-fill-target, c-min-rate throttles when busy', () => {
  const turn = { inFlightBytes: 0, cameInBytes: 0, durationMs: 100, appBusy: false };
  const fixed = {
    resyncRateBytesPerSec: 1024 * 1024,
    cPlanAheadTenths: 0,
    cFillTargetBytes: 0,
    cDelayTargetTenths: 10,
    cMaxRateBytesPerSec: 0,
    cMinRateBytesPerSec: 0,
  };
  assert.equal(resyncBudget(fixed, { plan: [0], planTotal: 0 }, turn), 104857.6);
  assert.equal(
    resyncBudget(fixed, { plan: [0], planTotal: 0 }, { ...turn, durationMs: 10 }),
    10485.76,
    'a short turn gets its share of the rate',
  );
  const dyn = {
    resyncRateBytesPerSec: 0,
    cPlanAheadTenths: 10,
    cFillTargetBytes: 100_000,
    cDelayTargetTenths: 10,
    cMaxRateBytesPerSec: 100 * 1024 * 1024,
    cMinRateBytesPerSec: 10_000,
  };
  const st = { plan: new Array<number>(10).fill(0), planTotal: 0 };
  let inFlight = 1; // not the start of a resync
  let total = 0;
  for (let t = 0; t < 30; t++) {
    const b = resyncBudget(dyn, st, { ...turn, inFlightBytes: inFlight });
    total += b;
    inFlight += b; // nothing completes: in-flight must settle at the fill target
  }
  assert.ok(Math.abs(inFlight - 100_000) < 1_000, `in flight ${inFlight}`);
  assert.ok(total > 0);
  assert.equal(
    resyncBudget(
      dyn,
      { plan: new Array<number>(10).fill(0), planTotal: 0 },
      { ...turn, cameInBytes: 1e9, appBusy: true },
    ),
    1000,
    'busy: c-min-rate per turn',
  );
  assert.equal(
    resyncBudget(
      dyn,
      { plan: new Array<number>(10).fill(0), planTotal: 0 },
      { ...turn, cameInBytes: 1e9, durationMs: 2 },
    ),
    (100 * 1024 * 1024 * 2) / 1000,
    'c-max-rate bounds a turn by its real duration',
  );
});

test('resync controller: turns clocked by the round trip reach c-max-rate with the default 50 KiB fill target', () => {
  // DRBD's defaults: c-plan-ahead 2 s, c-fill-target 100 sectors, c-max-rate 100 MiB/s. Each
  // turn's requests come back after a 2 ms round trip plus 1 ms per MiB, and the next turn runs
  // then (everything came in). Within 5 s of simulated time the rate must reach c-max-rate.
  const o = {
    resyncRateBytesPerSec: 250 * 1024,
    cPlanAheadTenths: 20,
    cFillTargetBytes: 100 * 512,
    cDelayTargetTenths: 10,
    cMaxRateBytesPerSec: 100 * 1024 * 1024,
    cMinRateBytesPerSec: 250 * 1024,
  };
  const st = { plan: new Array<number>(20).fill(0), planTotal: 0 };
  let now = 0;
  let cameIn = 0;
  let duration = 100;
  let second = 0;
  let rate = 0;
  while (now < 5000) {
    const req = resyncBudget(o, st, {
      inFlightBytes: 0,
      cameInBytes: cameIn,
      durationMs: duration,
      appBusy: false,
    });
    // Requests are whole 4 KiB blocks; an empty turn waits for the 100 ms tick.
    const bytes = Math.floor(req / 4096) * 4096;
    duration = bytes === 0 ? 100 : 2 + bytes / (1024 * 1024);
    now += duration;
    cameIn = bytes;
    if (now >= 4000) {
      second += duration;
      rate += bytes;
    }
  }
  const mibPerSec = rate / (1024 * 1024) / (second / 1000);
  assert.ok(mibPerSec > 90, `rate in the 5th second: ${mibPerSec.toFixed(1)} MiB/s`);
});

test('device size is whole bitmap blocks and requests outside it fail with EINVAL', () => {
  const p = Pair.initialized();
  const id = p.request(p.a, { op: 'read', offsetBytes: SIZE, lengthBytes: BLOCK });
  assert.equal(p.a.completions.get(id)?.errno, 'EINVAL');
});

test('two Primaries: concurrent writes to one block are detected and resolved identically', () => {
  const p = Pair.initialized({ allowTwoPrimaries: true });
  assert.equal(p.adminCmd(p.b, { cmd: 'primary', force: false }).ok, true);
  p.settle();
  // Both write blocks 20..21 and 21..22 at once: block 21 is written concurrently.
  const wa = p.write(p.a, 20, 0xa1, 2);
  const wb = p.write(p.b, 21, 0xb2, 2);
  p.settle();
  assert.ok(done(p.a, wa) && done(p.b, wb));
  assert.ok(p.a.notes.some((n) => n.kind === 'conflict' && n.block === 21));
  assert.ok(p.b.notes.some((n) => n.kind === 'conflict' && n.block === 21));
  assert.ok(p.identical(), 'both nodes hold the same data');
  assert.equal(blockOf(p.a, 21), 0xa1, 'the lower node id wins the overlapping block');
  assert.equal(blockOf(p.a, 20), 0xa1);
  assert.equal(blockOf(p.a, 22), 0xb2, "the rest of bravo's write is kept");
  // A write issued after seeing the peer's is not a conflict: it simply wins.
  const later = p.write(p.b, 21, 0xb3);
  p.settle();
  assert.ok(done(p.b, later));
  assert.equal(blockOf(p.a, 21), 0xb3);
  assert.ok(p.identical());
});

test('trim and write-zeroes replicate like writes', () => {
  const p = Pair.initialized();
  p.write(p.a, 30, 0x30, 2);
  p.settle();
  const z = p.request(p.a, {
    op: 'zeroes',
    offsetBytes: 30 * BLOCK,
    lengthBytes: BLOCK,
    fua: false,
  });
  const t = p.request(p.a, { op: 'trim', offsetBytes: 31 * BLOCK, lengthBytes: BLOCK, fua: false });
  p.settle();
  assert.ok(done(p.a, z) && done(p.a, t));
  assert.equal(blockOf(p.b, 30), 0);
  assert.equal(blockOf(p.b, 31), 0);
  assert.ok(p.identical());
});

test('a Diskless node can be promoted and serves through its UpToDate peer', () => {
  const p = Pair.initialized();
  p.write(p.a, 3, 0x0d);
  p.settle();
  p.adminCmd(p.a, { cmd: 'secondary' });
  p.adminCmd(p.b, { cmd: 'detach' });
  p.settle();
  assert.equal(p.b.engine.disk, 'Diskless');
  assert.equal(p.adminCmd(p.b, { cmd: 'primary', force: false }).ok, true);
  p.settle();
  const r = p.request(p.b, { op: 'read', offsetBytes: 3 * BLOCK, lengthBytes: BLOCK });
  const w = p.write(p.b, 4, 0x0e);
  p.settle();
  assert.equal(p.b.completions.get(r)?.data?.[0], 0x0d);
  assert.ok(done(p.b, w));
  assert.equal(blockOf(p.a, 4), 0x0e);
});

test('I/O fails with EIO when no UpToDate copy is reachable', () => {
  const p = Pair.initialized();
  p.a.failNextIo = true;
  p.write(p.a, 1, 1);
  p.settle(); // alpha detached, bravo holds the data
  p.cut();
  const r = p.request(p.a, { op: 'read', offsetBytes: 0, lengthBytes: BLOCK });
  const w = p.write(p.a, 2, 2);
  assert.equal(p.a.completions.get(r)?.errno, 'EIO');
  assert.equal(p.a.completions.get(w)?.errno, 'EIO');
});

test('admin commands that change roles or UUIDs are refused during a handshake', () => {
  const p = Pair.initialized();
  p.cut();
  p.connect(); // handshake packets queued, not delivered
  const r = p.adminCmd(p.a, { cmd: 'secondary' });
  assert.equal(r.ok, false);
  assert.match(r.message, /handshake/);
  p.settle();
  assert.equal(p.adminCmd(p.a, { cmd: 'secondary' }).ok, true);
});

test('createEngine without a disk starts Secondary/Diskless and asks for nothing on disk', () => {
  const r = createEngine(baseConfig(1), null);
  assert.equal(r.state.disk, 'Diskless');
  assert.equal(r.state.role, 'Secondary');
  assert.equal(
    r.actions.filter((a) => a.type.startsWith('disk') || a.type === 'persistMeta').length,
    0,
  );
});

test('a SyncTarget that lost its last metadata write resyncs from the consistent side (disk states decide)', () => {
  // Found by the simulator (seed 763, crash inside that write): the source had moved its
  // bitmap UUID into its history, the target still held it as current, so each side's current
  // UUID was in the other's history and both chose to be SyncTarget.
  const p = Pair.initialized();
  p.write(p.a, 3, 5);
  p.settle();
  assert.equal(p.adminCmd(p.a, { cmd: 'invalidate-remote', peer: 2 }).ok, true);
  let lost = p.b.meta;
  for (let i = 0; i < 100_000; i++) {
    if (!p.b.meta.flags.consistent) lost = p.b.meta;
    const moved =
      p.deliver(1, 'control') ||
      p.deliver(1, 'data') ||
      p.deliver(2, 'control') ||
      p.deliver(2, 'data') ||
      p.completeIo(p.a) ||
      p.completeIo(p.b);
    if (moved) continue;
    if (p.a.engine.timers.size === 0 && p.b.engine.timers.size === 0) break;
    p.tick();
  }
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(lost.flags.consistent, false);
  // A Secondary keeps its generation when the link drops (a Primary would start a new one).
  assert.equal(p.adminCmd(p.a, { cmd: 'secondary' }).ok, true);
  p.settle();
  p.b.meta = lost; // the superblock write that made it consistent never reached the disk
  p.crash(p.b);
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate', 'the consistent side stays UpToDate');
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(p.peerOf(p.a).repl, 'Established');
  assert.ok(p.identical());
});

test('a Diskless Primary and a Primary that appeared while it was away refuse to connect', () => {
  // Found by the simulator (seed 1269 with a driver bug planted elsewhere): without UUIDs to
  // compare, the handshake settled with two Primaries.
  const p = Pair.initialized();
  assert.equal(p.adminCmd(p.a, { cmd: 'detach' }).ok, true);
  p.settle();
  assert.equal(p.a.engine.disk, 'Diskless');
  p.cut();
  assert.equal(p.adminCmd(p.b, { cmd: 'primary', force: false }).ok, true);
  p.connect();
  p.settle();
  assert.equal(p.a.engine.role, 'Primary');
  assert.equal(p.b.engine.role, 'Primary');
  assert.equal(p.peerOf(p.a).conn, 'StandAlone');
  assert.equal(p.peerOf(p.b).conn, 'StandAlone');
  assert.ok(p.a.notes.some((n) => n.kind === 'handshake' && n.rule === 'two-primaries'));
});

test('equal generations: an Outdated disk (detached, still flagged crashed-primary) resyncs from the UpToDate peer', () => {
  // Found by the simulator (seed 13163): the Primary's disk failed, the peer's new generation
  // for that was lost in a crash, and the detached disk became SyncSource of its stale AL.
  const p = Pair.initialized();
  p.write(p.a, 5, 1);
  p.settle();
  const before = { meta: p.b.meta, bits: p.b.pbitmap.ranges() };
  p.a.failNextIo = true;
  p.write(p.a, 5, 2); // fails on alpha's disk (detach), lands on bravo
  p.settle();
  assert.equal(p.a.engine.disk, 'Diskless');
  assert.equal(blockOf(p.b, 5), 2);
  // Bravo's new generation and its marks for alpha never reached its disk.
  p.b.meta = before.meta;
  p.b.pbitmap.clearAll();
  for (const r of before.bits) p.b.pbitmap.set(r);
  p.b.disk.flush();
  p.crash(p.b);
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  // Diskless alpha exposed bravo's new generation, which bravo lost: as DRBD ("Can only connect
  // to data with current UUID"), a Diskless Primary refuses data of another generation; the
  // operator demotes it, and it connects and attaches as a Secondary.
  assert.ok(p.a.notes.some((n) => n.kind === 'handshake' && n.rule === 'diskless-stale-data'));
  assert.equal(p.a.engine.peers.get(2)?.conn, 'StandAlone');
  p.cut(); // the refusing side closed the connection
  assert.equal(p.adminCmd(p.a, { cmd: 'secondary' }).ok, true);
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.adminCmd(p.a, { cmd: 'attach', boot: p.boot(p.a) }).ok, true);
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(blockOf(p.a, 5), 2, 'the write that failed on alpha came back from bravo');
  assert.ok(p.identical());
});

test('a Primary re-attaches a disk whose detach was never recorded (that metadata write failed too)', () => {
  // Found by the simulator once metadata writes could fail (seed 564): the attach passed
  // through UpToDate, which cleared "attached as Primary", and the Outdated Primary tripped
  // an invariant (an assertion: the daemon would have stopped).
  const p = Pair.initialized();
  const before = p.a.meta;
  assert.equal(p.adminCmd(p.a, { cmd: 'detach' }).ok, true);
  p.settle();
  p.a.meta = before; // wasUpToDate=false never reached the failing disk
  assert.equal(p.adminCmd(p.a, { cmd: 'attach', boot: p.boot(p.a) }).ok, true);
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.ok(p.identical());
});
