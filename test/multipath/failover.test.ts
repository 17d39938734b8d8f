// Failover, failback and flap hysteresis of a multipath session, in virtual time (ManualClock)
// over two memory paths, "fast" (preferred) and "eth". Pins: no loss, no duplicate, no close
// while a path is left; detection of a silent cut within ping-timeout plus one heartbeat; a
// flapping path held down; the session ends only after `timeout` with no path at all.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openSession } from '../../src/transport/multipath/index.js';
import { randomBytes } from 'node:crypto';
import { Probe, Sender, World, assertExactlyOnceInOrder, mem } from './world.js';

const OPTS = { pingTimeoutMs: 200, timeoutMs: 5_000, redialMs: 100 } as const;

/** Streams on both streams both ways for `ms`, `perStepMsgs` each 2 ms. */
async function stream(w: World, senders: Sender[], ms: number, perStep = 5): Promise<void> {
  for (let t = 0; t < ms; t += 2) {
    for (const s of senders) s.send(perStep);
    await w.run(2);
  }
}

test('silent cut of the active path: failover within ping-timeout, no loss, no close', async () => {
  const w = new World();
  const { a, b } = await w.open(OPTS);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const senders = [new Sender(a, 'data'), new Sender(a, 'control'), new Sender(b, 'data')];
  await stream(w, senders, 200);
  assert.equal(a.paths().find((p) => p.active)?.spec.peer.address, 'fast');
  const cutAt = w.clock.nowMs();
  w.faults.cut('fast');
  await stream(w, senders, 600);
  const fo = pa.changes('failover');
  assert.equal(fo.length, 1, 'one failover at a');
  assert.equal(fo[0]?.path.peer.address, 'eth');
  assert.equal(fo[0]?.from?.peer.address, 'fast');
  const detectMs = (fo[0]?.atMs ?? Infinity) - cutAt;
  assert.ok(detectMs <= OPTS.pingTimeoutMs + 100, `failover after ${detectMs} ms`);
  assert.equal(pb.changes('failover').length, 1, 'one failover at b');
  await w.run(200);
  assert.equal(pa.closed, null);
  assert.equal(pb.closed, null);
  assertExactlyOnceInOrder(pb.got.data, senders[0]?.next ?? -1, 'a→b data');
  assertExactlyOnceInOrder(pb.got.control, senders[1]?.next ?? -1, 'a→b control');
  assertExactlyOnceInOrder(pa.got.data, senders[2]?.next ?? -1, 'b→a data');
  await w.close();
});

test('failback to the preferred path when it heals, without loss', async () => {
  const w = new World();
  const { a, b } = await w.open(OPTS);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const senders = [new Sender(a, 'data', 4000), new Sender(b, 'data', 4000)];
  await stream(w, senders, 100);
  w.faults.reset('fast');
  await stream(w, senders, 300);
  assert.equal(pa.changes('failover').length, 1);
  w.faults.restore('fast');
  await stream(w, senders, 1000);
  const fb = pa.changes('failback');
  assert.equal(fb.length, 1, 'a failed back');
  assert.equal(fb[0]?.path.peer.address, 'fast');
  assert.equal(pb.changes('failback').length, 1, 'b failed back');
  assert.equal(a.paths().find((p) => p.active)?.spec.peer.address, 'fast');
  assert.equal(a.paths().length, 2, 'both paths joined again');
  await w.run(100);
  assertExactlyOnceInOrder(pb.got.data, senders[0]?.next ?? -1, 'a→b');
  assertExactlyOnceInOrder(pa.got.data, senders[1]?.next ?? -1, 'b→a');
  await w.close();
});

test('an abrupt reset fails over at once (no heartbeat wait)', async () => {
  const w = new World();
  const { a, b } = await w.open(OPTS);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const s = new Sender(a, 'data');
  await stream(w, [s], 50);
  const at = w.clock.nowMs();
  w.faults.reset('fast');
  await stream(w, [s], 100);
  const fo = pa.changes('failover')[0];
  assert.ok(fo !== undefined && fo.atMs - at <= 5, 'failover within the reset latency');
  await w.run(50);
  assertExactlyOnceInOrder(pb.got.data, s.next, 'a→b');
  await w.close();
});

test('a flapping path is held down, then dialed again after the hold-down', async () => {
  const w = new World();
  const opts = { ...OPTS, flapsPerMinuteMax: 3, holdDownMs: 20_000 };
  const { a, b } = await w.open(opts);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const s = new Sender(a, 'data');
  for (let i = 0; i < 4; i++) {
    w.faults.reset('fast');
    await stream(w, [s], 100);
    w.faults.restore('fast');
    await stream(w, [s], 500);
  }
  // The 4th failure within a minute exceeds 3: held down, no failback after it.
  assert.equal(pa.changes('held-down').length, 1);
  assert.equal(pa.changes('failover').length, 4);
  assert.equal(pa.changes('failback').length, 3);
  assert.equal(a.paths().find((p) => p.active)?.spec.peer.address, 'eth');
  await stream(w, [s], 5_000);
  assert.equal(pa.changes('failback').length, 3, 'still held down');
  await w.run(16_000, 10);
  assert.equal(pa.changes('failback').length, 4, 'dialed and failed back after the hold-down');
  await w.run(50);
  assertExactlyOnceInOrder(pb.got.data, s.next, 'a→b');
  await w.close();
});

test('both paths cut: the session pauses, then ends with timeout after `timeout`', async () => {
  const w = new World();
  const { a, b } = await w.open(OPTS);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const s = new Sender(a, 'data');
  await stream(w, [s], 50);
  w.faults.cut('fast');
  w.faults.cut('eth');
  await w.run(OPTS.pingTimeoutMs + OPTS.timeoutMs - 200, 10);
  assert.equal(pa.closed, null, 'still paused before the timeout');
  assert.ok(a.pausedForMs() > 0);
  await w.run(500, 10);
  const ia = pa.closedInfo();
  assert.equal(ia?.reason, 'timeout');
  assert.equal(pb.closedInfo()?.reason, 'timeout');
  assert.match(ia?.error?.message ?? '', /no path for 5000 ms/);
  await w.close();
});

test('both paths cut, one comes back before the timeout: the session resumes without loss', async () => {
  const w = new World();
  const { a, b } = await w.open(OPTS);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const s = new Sender(a, 'data');
  const r = new Sender(b, 'control');
  await stream(w, [s, r], 50);
  w.faults.cut('fast');
  w.faults.cut('eth');
  await stream(w, [s, r], 2_000);
  w.faults.restore('eth');
  await stream(w, [s, r], 1_500);
  assert.equal(pa.closed, null);
  assert.equal(a.paths()[0]?.spec.peer.address, 'eth');
  await w.run(100);
  assertExactlyOnceInOrder(pb.got.data, s.next, 'a→b');
  assertExactlyOnceInOrder(pa.got.control, r.next, 'b→a');
  await w.close();
});

test('load-balanced DATA uses both paths and survives the loss of one', async () => {
  const w = new World();
  const { a, b } = await w.open({ ...OPTS, loadBalancePaths: true, highWaterBytes: 64 * 1024 });
  assert.equal(b.loadBalance, true, 'the acceptor follows the initiator');
  const pb = new Probe(b, w.clock);
  new Probe(a, w.clock);
  const s = new Sender(a, 'data', 8000);
  await stream(w, [s], 100, 20);
  w.faults.reset('eth');
  await stream(w, [s], 300, 20);
  w.faults.restore('eth');
  await stream(w, [s], 800, 20);
  await w.run(100);
  assertExactlyOnceInOrder(pb.got.data, s.next, 'a→b');
  assert.ok(a.sessionCounters().replayedMessages > 0, 'messages of the lost path were replayed');
  await w.close();
});

test('a session with the wrong shared secret is refused; an unknown session cannot resume', async () => {
  const w = new World();
  await w.open({ ...OPTS, auth: { alg: 'sha256', secret: 'right' } });
  const deps = { clock: w.clock, randomBytes, transports: { memory: w.memA } };
  const bad = openSession(
    deps,
    { ...OPTS, auth: { alg: 'sha256', secret: 'wrong' } },
    [{ peer: mem('fast') }],
    { signal: new AbortController().signal },
  );
  let err: unknown = null;
  bad.catch((e: unknown) => (err = e));
  await w.until(() => err !== null, 2_000, 'refusal');
  assert.match(String(err), /peer|proof|refused/i);
  await w.close();
});

test('ko-count: a peer that stops taking DATA ends the session although heartbeats flow', async () => {
  const w = new World();
  const opts = { ...OPTS, timeoutMs: 1_000, koCount: 3, highWaterBytes: 64 * 1024 };
  const { a, b } = await w.open(opts);
  const pa = new Probe(a, w.clock);
  new Probe(b, w.clock);
  b.pauseData();
  const s = new Sender(a, 'data', 8000);
  await stream(w, [s], 100);
  const stalledAt = w.clock.nowMs();
  await w.until(() => pa.closed !== null, 10_000, 'close by ko-count');
  const after = w.clock.nowMs() - stalledAt;
  assert.equal(pa.closed?.reason, 'timeout');
  assert.match(pa.closed?.error?.message ?? '', /stopped accepting/);
  // Three stalled intervals of timeoutMs, the first of which may have begun before the stall.
  assert.ok(after >= 2 * 1_000 && after <= 3 * 1_000 + 100, `closed ${after} ms after the stall`);
  assert.equal(pa.changes('failover').length, 0, 'no path was blamed');
  await w.close();
});

test('ko-count: a stall while no path is left is judged by the no-path timeout', async () => {
  const w = new World();
  // koCount 1: a single stalled interval would end the session if the pause counted as a ko.
  // The cut comes just before the ko check at about 1 s; detection (the active path after half
  // a ping-timeout, then the standby, now active, at once) and the pause to the redial after the
  // restore span the whole interval up to the check at about 2 s, which finds no path.
  const opts = { ...OPTS, pingTimeoutMs: 1_500, timeoutMs: 1_000, koCount: 1 };
  const t0 = w.clock.nowMs();
  const { a, b } = await w.open(opts);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const s = new Sender(a, 'data');
  while (w.clock.nowMs() < t0 + 950) await stream(w, [s], 2);
  w.faults.cut('fast');
  w.faults.cut('eth');
  await stream(w, [s], 1_300);
  assert.ok(a.paths().length === 0, 'no path left before the restore');
  w.faults.restore('eth');
  await stream(w, [s], 1_500);
  assert.equal(pa.closed, null, `session closed: ${pa.closed?.error?.message ?? ''}`);
  assert.equal(a.paths().find((p) => p.active)?.spec.peer.address, 'eth', 'resumed on eth');
  await w.run(100);
  assertExactlyOnceInOrder(pb.got.data, s.next, 'a→b');
  await w.close();
});

test('configure(): heartbeats and path failure follow a new ping-timeout', async () => {
  const w = new World();
  const { a, b } = await w.open({ ...OPTS, pingTimeoutMs: 4_000 });
  const pa = new Probe(a, w.clock);
  new Probe(b, w.clock);
  a.configure({ pingTimeoutMs: 200 });
  b.configure({ pingTimeoutMs: 200 });
  const s = new Sender(a, 'data');
  await stream(w, [s], 1_100);
  const cutAt = w.clock.nowMs();
  w.faults.cut('fast');
  await w.until(() => pa.changes('failover').length > 0, 2_000, 'failover');
  const detectMs = w.clock.nowMs() - cutAt;
  assert.ok(detectMs <= 200 + 100, `failover ${detectMs} ms after the cut`);
  await w.close();
});

test('failback does not wait for the old path: what it still carries goes again on the new one', async () => {
  // 20 ms one-way latency, so messages are in flight on eth when the failback happens; eth then
  // goes silent, and only a failback that resends them on the healed path delivers them in time.
  const w = new World(20);
  const { a, b } = await w.open(OPTS);
  const pa = new Probe(a, w.clock);
  const pb = new Probe(b, w.clock);
  const s = new Sender(a, 'data');
  w.faults.reset('fast');
  await stream(w, [s], 300);
  assert.equal(pa.changes('failover').length, 1);
  w.faults.restore('fast');
  // The moment fast has joined again, eth goes silent with messages in flight.
  while (!a.paths().some((p) => p.spec.peer.address === 'fast')) {
    assert.ok(w.clock.nowMs() < 10_000, 'fast never joined again');
    await stream(w, [s], 1);
  }
  w.faults.cut('eth');
  assert.equal(pa.changes('failback').length, 1, 'failed back as fast joined');
  const sentBefore = s.next;
  assert.ok(pb.got.data.length < sentBefore, 'messages in flight on eth');
  const at = w.clock.nowMs();
  await w.until(() => pb.got.data.length >= sentBefore, 1_000, 'delivery of what eth carried');
  const ms = w.clock.nowMs() - at;
  assert.ok(ms < OPTS.pingTimeoutMs / 2, `delivered ${ms} ms after the failback`);
  await stream(w, [s], 400);
  await w.run(100);
  assertExactlyOnceInOrder(pb.got.data, s.next, 'a→b');
  await w.close();
});
