// The write-stage breakdown: histogram percentiles on known inputs, fixed memory however many
// writes are in flight, and the engine naming the right request on the diskWrite and Data of
// writes that overlap or wait for room in the activity log.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WRITE_STAGES_BUCKETS, WRITE_STAGES_TRACKED_MAX } from '../../src/limits.js';
import type { Action } from '../../src/replication/types.js';
import { Driver, type IoDone } from '../../src/replication/driver.js';
import type { EngineState } from '../../src/replication/engine.js';
import {
  Log2Histogram,
  WriteStages,
  formatStageP50,
  formatUs,
  stageDelta,
  writeStagesDelta,
} from '../../src/replication/write-stages.js';
import { BLOCK, Pair, type HNode } from '../sim/harness.js';
import { pendingDiskPort } from '../support/pending-disk.js';

test('log2 buckets: [2^(b-1), 2^b) microseconds, below 1 in bucket 0, the rest in the last', () => {
  assert.equal(Log2Histogram.bucketOf(0), 0);
  assert.equal(Log2Histogram.bucketOf(0.5), 0);
  assert.equal(Log2Histogram.bucketOf(-3), 0);
  assert.equal(Log2Histogram.bucketOf(Number.NaN), 0);
  assert.equal(Log2Histogram.bucketOf(1), 1);
  assert.equal(Log2Histogram.bucketOf(1.9), 1);
  assert.equal(Log2Histogram.bucketOf(2), 2);
  assert.equal(Log2Histogram.bucketOf(3), 2);
  assert.equal(Log2Histogram.bucketOf(4), 3);
  assert.equal(Log2Histogram.bucketOf(1023), 10);
  assert.equal(Log2Histogram.bucketOf(1024), 11);
  assert.equal(Log2Histogram.bucketOf(1e15), WRITE_STAGES_BUCKETS - 1);
});

test('percentiles of known inputs', () => {
  const constant = new Log2Histogram();
  for (let i = 0; i < 100; i++) constant.add(100);
  assert.deepEqual(constant.summary(), {
    count: 100,
    meanUs: 100,
    p50Us: 100,
    p99Us: 100,
    maxUs: 100,
    sumUs: 10_000,
    buckets: [0, 0, 0, 0, 0, 0, 0, 100],
  });

  // 1..1000 us: the true p50 is 500, p99 990; a log2 histogram places each in its bucket.
  const uniform = new Log2Histogram();
  for (let v = 1; v <= 1000; v++) uniform.add(v);
  const s = uniform.summary();
  assert.equal(s.count, 1000);
  assert.equal(s.meanUs, 500.5);
  assert.ok(Math.abs(s.p50Us - 500) <= 5, `p50 ${s.p50Us}`);
  assert.ok(Math.abs(s.p99Us - 990) <= 10, `p99 ${s.p99Us}`);
  assert.equal(s.maxUs, 1000);

  // 99 fast writes and one slow one: p50 stays fast, p99 is still fast (rank 99), max is slow.
  const tail = new Log2Histogram();
  for (let i = 0; i < 99; i++) tail.add(10);
  tail.add(50_000);
  const t = tail.summary();
  assert.equal(t.p50Us, 10);
  assert.equal(t.p99Us, 10);
  assert.equal(t.maxUs, 50_000);
  assert.equal(tail.quantile(1), 50_000);

  // Two clusters: p50 in the low one, p99 in the high one, each within its bucket.
  const two = new Log2Histogram();
  for (let i = 0; i < 60; i++) two.add(40);
  for (let i = 0; i < 40; i++) two.add(3000);
  assert.equal(two.quantile(0.5), 40);
  assert.equal(two.quantile(0.99), 3000);
  // Spread inside one bucket: [64, 128) holds 64..127; the median lands within it.
  const spread = new Log2Histogram();
  for (let v = 64; v < 128; v++) spread.add(v);
  assert.ok(Math.abs(spread.quantile(0.5) - 95.5) <= 1, `${spread.quantile(0.5)}`);

  assert.deepEqual(new Log2Histogram().summary(), {
    count: 0,
    meanUs: 0,
    p50Us: 0,
    p99Us: 0,
    maxUs: 0,
    sumUs: 0,
    buckets: [],
  });
});

/** A clock the test moves by hand. */
function manualClock(): { now: () => number; at: (us: number) => void } {
  let t = 1000;
  return { now: () => t, at: (us) => (t = 1000 + us) };
}

test('a write held by a metadata barrier: each stage measured from the mark it depends on', () => {
  const c = manualClock();
  const w = new WriteStages(c.now);
  c.at(0);
  w.received(7);
  c.at(5);
  w.sent(7, 41); // the Data goes first (sends before local I/O)
  w.issued(7, 3);
  c.at(85);
  w.barrierDone(7);
  c.at(125);
  w.diskDone(3);
  c.at(205);
  w.peerAck(41);
  c.at(210);
  w.complete(7, true);
  const s = w.status().stages;
  assert.equal(s.engine.p50Us, 5);
  assert.equal(s.barrier.p50Us, 80);
  assert.equal(s.disk.p50Us, 40, 'disk time counts from the barrier, not from the issue');
  assert.equal(s.peer.p50Us, 120, 'the Data waited for the barrier too');
  assert.equal(s.total.p50Us, 210);
  for (const k of ['engine', 'barrier', 'disk', 'peer', 'total'] as const)
    assert.equal(s[k].count, 1, k);
  assert.equal(
    formatStageP50(w.status()),
    'engine 5us, barrier 80us, disk 40us, peer 120us, total 210us',
  );
});

test('overlapping writes keep their own marks; a write no barrier held has no barrier sample', () => {
  const c = manualClock();
  const w = new WriteStages(c.now);
  c.at(0);
  w.received(1);
  c.at(10);
  w.received(2);
  c.at(20);
  w.sent(1, 100);
  w.issued(1, 50);
  w.barrierDone(undefined); // a peer write: not tracked
  c.at(30);
  w.sent(2, 101);
  w.issued(2, 51);
  c.at(60);
  w.diskDone(51); // the second write's disk finishes first
  w.peerAck(100);
  w.peerAck(100); // a second peer acks the same Data
  c.at(100);
  w.diskDone(50);
  w.peerAck(101);
  w.diskDone(9999); // an I/O of no client write
  w.peerAck(5555);
  c.at(110);
  w.complete(2, true);
  c.at(120);
  w.complete(1, true);
  w.complete(1, true); // twice: counted once
  w.complete(3, true); // never received (a read)
  const s = w.status().stages;
  assert.equal(s.barrier.count, 0);
  assert.equal(s.engine.count, 2);
  assert.equal(s.engine.meanUs, 20); // 20 and 20
  assert.equal(s.disk.count, 2);
  assert.equal(s.disk.meanUs, 55); // 30 and 80
  assert.equal(s.peer.count, 3);
  assert.equal(s.total.count, 2);
  assert.equal(s.total.meanUs, 110); // 100 and 120
  // Marks after completion (a late ack, a late disk done) count nothing.
  w.peerAck(101);
  w.diskDone(50);
  assert.equal(w.status().stages.peer.count, 3);
  assert.equal(w.status().stages.disk.count, 2);
});

test('failed writes count no total; memory is fixed slots: writes beyond them are dropped', () => {
  const c = manualClock();
  const w = new WriteStages(c.now);
  w.received(1);
  w.issued(1, 1);
  w.complete(1, false);
  assert.equal(w.status().stages.total.count, 0);
  assert.equal(w.status().stages.engine.count, 1);

  // Many more writes in flight than slots: the older ones are overwritten, never grown into.
  const n = 10 * WRITE_STAGES_TRACKED_MAX;
  for (let id = 10; id < 10 + n; id++) w.received(id);
  assert.equal(w.status().dropped, n - WRITE_STAGES_TRACKED_MAX);
  w.issued(10, 77); // its slot belongs to a newer write now: ignored
  w.complete(10, true);
  assert.equal(w.status().stages.total.count, 0);
  const last = 10 + n - 1;
  w.issued(last, 78);
  w.complete(last, true);
  assert.equal(w.status().stages.total.count, 1);
  const heapBefore = process.memoryUsage().heapUsed;
  for (let id = last + 1; id < last + 200_000; id++) {
    w.received(id);
    w.sent(id, id);
    w.issued(id, id);
    w.diskDone(id);
    w.peerAck(id);
    w.complete(id, true);
  }
  assert.equal(w.status().stages.total.count, 200_000);
  assert.ok(process.memoryUsage().heapUsed - heapBefore < 8 * 1024 * 1024, 'no growth per write');
});

test('the delta of two snapshots describes only the samples between them', () => {
  const h = new Log2Histogram();
  for (let i = 0; i < 50; i++) h.add(3000); // an earlier workload
  const before = h.summary();
  for (let i = 0; i < 100; i++) h.add(100);
  const d = stageDelta(h.summary(), before);
  assert.equal(d.count, 100);
  assert.equal(d.meanUs, 100);
  assert.ok(d.p50Us >= 64 && d.p50Us < 128, `p50 ${d.p50Us}`);
  assert.ok(d.p99Us >= 64 && d.p99Us <= 128, `p99 ${d.p99Us}`);
  assert.equal(d.buckets.length, 8, 'the earlier samples are gone');
  assert.deepEqual(stageDelta(h.summary(), null).count, 150);
  assert.equal(stageDelta(before, h.summary()).count, 0, 'snapshots the wrong way round');

  const c = manualClock();
  const w = new WriteStages(c.now);
  const s0 = w.status();
  w.received(1);
  c.at(40);
  w.issued(1, 1);
  w.complete(1, true);
  const d2 = writeStagesDelta(w.status(), s0);
  assert.equal(d2.stages.total.count, 1);
  assert.equal(d2.stages.engine.count, 1);
  assert.equal(d2.stages.disk.count, 0);
  assert.ok(d2.stages.total.p50Us >= 32 && d2.stages.total.p50Us <= 40);
});

test("forgetInFlight: a stopped engine's writes take no later marks", () => {
  const c = manualClock();
  const w = new WriteStages(c.now);
  w.received(1);
  w.sent(1, 5);
  w.issued(1, 9);
  w.forgetInFlight();
  // A new engine numbers its I/Os and Data from the start again.
  w.diskDone(9);
  w.peerAck(5);
  w.complete(1, true);
  const s = w.status();
  assert.equal(s.stages.engine.count, 1, 'what was measured stays');
  assert.equal(s.stages.disk.count + s.stages.peer.count + s.stages.total.count, 0);
  w.received(2);
  assert.equal(w.status().dropped, 0);
});

test('formatUs: microseconds below 1 ms, then milliseconds', () => {
  assert.equal(formatUs(12.4), '12us');
  assert.equal(formatUs(1500), '1.5ms');
  assert.equal(formatUs(25_000), '25ms');
});

/**
 * Runs alpha's engine with the marks the daemon makes (see Resource): received on the request,
 * sent/issued on the step's Data and diskWrite, disk done and peer acks on their events,
 * complete on the completion. It also checks that each diskWrite and Data names the request
 * whose payload it carries.
 */
function observe(p: Pair, n: HNode, w: WriteStages, fills: Map<number, number>): void {
  p.observer = (node, ev, actions) => {
    if (node !== n) return;
    if (ev.type === 'request' && ev.req.op === 'write') {
      fills.set(ev.req.id, ev.req.data[0]![0]!);
      w.received(ev.req.id);
    }
    if (ev.type === 'diskDone') w.diskDone(ev.ioId);
    if (ev.type === 'packet' && (ev.packet.kind === 'WriteAck' || ev.packet.kind === 'RecvAck'))
      w.peerAck(ev.packet.seq);
    for (const a of actions) {
      if (a.type === 'send' && a.packet.kind === 'Data') {
        assert.notEqual(a.reqId, undefined, 'a client Data names its request');
        assert.equal(a.packet.data[0]?.[0], fills.get(a.reqId!), `Data of request ${a.reqId}`);
        w.sent(a.reqId, a.packet.seq);
      }
      if (a.type === 'diskWrite') {
        assert.equal(a.data[0]?.[0], fills.get(a.reqId!), `diskWrite of request ${a.reqId}`);
        w.issued(a.reqId, a.ioId);
      }
      if (a.type === 'complete') w.complete(a.reqId, a.ok);
    }
  };
}

for (const protocol of ['A', 'B', 'C'] as const) {
  test(`protocol ${protocol}: the engine names the request of overlapping and AL-queued writes`, () => {
    // 4 activity-log extents of 4 blocks: a fifth extent waits until one goes idle.
    const p = Pair.initialized({ protocol, alExtents: 4, alExtentBytes: 4 * BLOCK });
    const w = new WriteStages(() => 0);
    const fills = new Map<number, number>();
    observe(p, p.a, w, fills);
    const ids = [
      p.write(p.a, 1, 0x11, 2),
      p.write(p.a, 2, 0x22, 2), // overlaps the first: held
      p.write(p.a, 5, 0x33, 1),
      p.write(p.a, 9, 0x44, 1),
      p.write(p.a, 13, 0x55, 1),
      p.write(p.a, 17, 0x66, 1), // a fifth extent: queued for room in the AL
      p.write(p.a, 1, 0x77, 1), // overlaps the held one
    ];
    assert.ok(p.a.pendingIo.length < ids.length, 'some writes wait');
    p.settle();
    for (const id of ids) assert.equal(p.a.completions.get(id)?.ok, true, `write ${id}`);
    assert.ok(p.identical());
    const s = w.status();
    assert.equal(s.dropped, 0);
    assert.equal(s.stages.engine.count, ids.length);
    assert.equal(s.stages.disk.count, ids.length);
    assert.equal(s.stages.total.count, ids.length);
    assert.equal(s.stages.peer.count, protocol === 'A' ? 0 : ids.length);
  });
}

/**
 * The driver's marks on a scripted engine: two writes held behind one activity-log transaction
 * (the second issued while it was pending), one after it, with a manual clock.
 */
test('driver: writes held behind a metadata barrier are timed from its end; others have none', () => {
  const c = manualClock();
  const w = new WriteStages(c.now);
  const pending: { what: string; done: IoDone }[] = [];
  const disk = pendingDiskPort(pending, () => undefined);

  const sent: number[] = [];
  let script: Action[] = [];
  const driver = new Driver(
    {} as EngineState,
    {
      disk,
      net: {
        connection: () => 'c',
        send: (_p, _s, packet) => {
          if (packet.kind === 'Data') sent.push(packet.seq);
        },
        connect: () => undefined,
        disconnect: () => undefined,
      },
      clock: {
        nowMs: () => 0,
        setTimeout: () => ({ cancel: () => undefined }),
        defer: (fn) => fn(),
      },
      host: {
        complete: () => undefined,
        adminResult: () => undefined,
        stateChange: () => undefined,
        fencePeer: () => undefined,
        unfencePeer: () => undefined,
        note: () => undefined,
        diskFailed: () => undefined,
      },
    },
    { stages: w, step: (s) => ({ state: s, actions: script }) },
  );
  const write = (reqId: number, seq: number, ioId: number): Action[] => [
    {
      type: 'send',
      peer: 2,
      stream: 'data',
      reqId,
      packet: {
        kind: 'Data',
        seq,
        epoch: 1,
        op: 'write',
        offsetBytes: reqId * 4096,
        lengthBytes: 4096,
        data: [new Uint8Array(4096)],
        fua: false,
        ack: 'write',
        peerSeq: 0,
      },
    },
    {
      type: 'diskWrite',
      ioId,
      offsetBytes: reqId * 4096,
      data: [new Uint8Array(4096)],
      fua: false,
      reqId,
    },
  ];
  const step = (actions: Action[]): void => {
    script = actions;
    driver.feed({ type: 'timer', timerId: 1, nowMs: 0 });
  };
  const done = (what: string): void => {
    const i = pending.findIndex((p) => p.what === what);
    assert.ok(i >= 0, `${what} pending (${pending.map((p) => p.what).join(', ')})`);
    pending.splice(i, 1)[0]!.done(null);
  };
  c.at(0);
  for (const id of [1, 2, 3]) w.received(id);
  c.at(5);
  step([{ type: 'alCommit', add: [0], remove: [] }, ...write(1, 1, 10)]);
  c.at(10);
  step(write(2, 2, 11)); // the barrier still runs: held too
  assert.deepEqual(sent, [], 'the Data waits for the AL transaction');
  c.at(50);
  done('meta:alCommit');
  assert.deepEqual(sent, [1, 2]);
  c.at(70);
  done('write@4096');
  c.at(90);
  done('write@8192');
  c.at(100);
  step(write(3, 3, 12));
  c.at(110);
  done('write@12288');
  c.at(120);
  w.peerAck(1);
  const s = w.status().stages;
  assert.equal(s.engine.count, 3);
  assert.equal(s.barrier.count, 2, 'only the two held writes');
  assert.equal(s.barrier.meanUs, 42.5); // 45 and 40
  assert.equal(s.disk.count, 3);
  assert.equal(s.disk.meanUs, 23.3); // 20 and 40 from the barrier's end, 10 from its issue
  assert.equal(s.peer.p50Us, 70, 'the Data left when the barrier let it go');
});
