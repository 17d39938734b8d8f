// Resource-level fencing in the engine (DRBD's `fencing` policy and fence-peer contract): a
// Primary that loses its peer asks for the fence-peer handler, and under resource-and-stonith
// completes nothing until it answers; a Secondary with an unknown peer is promoted only once the
// handler outdated that peer; the handler's exit codes 3-7 mean what they mean for DRBD; a
// fenced peer that is UpToDate again is unfenced. Pins: a write acknowledged on one copy while
// the other might still be promoted, and a promotion over a peer that may hold newer data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pair, type HNode } from '../sim/harness.js';

const done = (n: HNode, id: number): boolean => n.completions.get(id)?.ok === true;

function answerFence(p: Pair, n: HNode, exitCode: number | null): void {
  const f = n.fences.shift();
  assert.ok(f !== undefined, `${n.name} ran the fence-peer handler`);
  p.step(n, { type: 'fencePeerDone', peer: f.peer, token: f.token, exitCode });
}

function lastFenceNote(n: HNode): { fenced: boolean; result: string } | undefined {
  const notes = n.notes.filter((x) => x.kind === 'fence-peer');
  const last = notes[notes.length - 1];
  return last?.kind === 'fence-peer' ? last : undefined;
}

test('resource-and-stonith: a Primary losing its peer completes nothing until fence-peer answers', () => {
  const p = Pair.initialized({ fencing: 'resource-and-stonith' });
  const w1 = p.write(p.a, 3, 0x11);
  p.completeMeta(p.a); // the activity-log transaction of its extent
  p.completeIo(p.a); // local copy written; the peer never acknowledges
  p.cut();
  assert.equal(p.a.fences.length, 1, 'fence-peer runs when the connection is lost');
  assert.equal(done(p.a, w1), false, 'frozen: the write waits for the handler');
  const w2 = p.write(p.a, 4, 0x22);
  assert.equal(p.a.pendingOf(['write']), 0, 'a new write is not even started while frozen');
  answerFence(p, p.a, 4);
  assert.equal(done(p.a, w1), true, 'the peer is outdated: the held write completes');
  assert.deepEqual(
    { ...lastFenceNote(p.a) },
    { kind: 'fence-peer', peer: 2, exitCode: 4, result: 'peer was outdated', fenced: true },
  );
  assert.equal(p.peerOf(p.a).disk, 'Outdated');
  // w2's write (behind the metadata writes of the disconnect, if still pending).
  while (!done(p.a, w2) && p.completeIo(p.a));
  assert.equal(done(p.a, w2), true, 'I/O resumed');

  // Back together: the peer resyncs what it missed, is UpToDate again, and is unfenced.
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.peerOf(p.a).disk, 'UpToDate');
  assert.deepEqual(p.a.unfences, [2], 'unfence-peer runs once the peer is UpToDate');
  assert.ok(p.identical());
});

test('resource-and-stonith: a failed handler keeps I/O frozen until the peer is back', () => {
  const p = Pair.initialized({ fencing: 'resource-and-stonith' });
  const w1 = p.write(p.a, 3, 0x11);
  p.completeMeta(p.a);
  p.completeIo(p.a);
  p.cut();
  answerFence(p, p.a, 1);
  assert.equal(lastFenceNote(p.a)?.fenced, false);
  assert.equal(done(p.a, w1), false, 'not fenced: still frozen');
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  assert.equal(done(p.a, w1), true, 'the peer is reachable again: I/O resumes');
  p.settle();
  assert.deepEqual(p.a.unfences, [], 'nothing was fenced, nothing to unfence');
  assert.ok(p.identical());
});

test('resource-only fences without freezing; dont-care does not fence', () => {
  const r = Pair.initialized({ fencing: 'resource-only' });
  const w = r.write(r.a, 3, 0x11);
  r.completeMeta(r.a);
  r.completeIo(r.a);
  r.cut();
  assert.equal(r.a.fences.length, 1);
  assert.equal(done(r.a, w), true, 'resource-only: I/O goes on while the handler runs');
  const d = Pair.initialized();
  const w2 = d.write(d.a, 3, 0x11);
  d.completeMeta(d.a);
  d.completeIo(d.a);
  d.cut();
  assert.equal(d.a.fences.length, 0);
  assert.equal(done(d.a, w2), true);
});

test('promoting a Secondary whose peer is unknown waits for fence-peer; exit codes decide', () => {
  const cases: { code: number | null; promoted: boolean; disk: string }[] = [
    { code: 3, promoted: true, disk: 'UpToDate' }, // peer Inconsistent
    { code: 4, promoted: true, disk: 'UpToDate' }, // peer outdated
    { code: 5, promoted: true, disk: 'UpToDate' }, // unreachable, we are UpToDate
    { code: 6, promoted: false, disk: 'Outdated' }, // peer is Primary: outdate myself
    { code: 7, promoted: true, disk: 'UpToDate' }, // STONITHed
    { code: 1, promoted: false, disk: 'UpToDate' }, // handler failed
    { code: null, promoted: false, disk: 'UpToDate' }, // handler did not run
  ];
  for (const c of cases) {
    const p = Pair.initialized({ fencing: 'resource-only' }, { fencing: 'resource-only' });
    p.adminCmd(p.a, { cmd: 'secondary' });
    p.settle();
    p.cut();
    assert.equal(p.a.fences.length, 0, 'a Secondary losing its peer does not fence');
    const before = p.b.admin.length;
    p.step(p.b, { type: 'admin', cmdId: 9000, command: { cmd: 'primary', force: false } });
    assert.equal(p.b.admin.length, before, `exit ${c.code}: the promotion waits`);
    assert.equal(p.b.fences.length, 1);
    answerFence(p, p.b, c.code);
    const r = p.b.admin[before];
    assert.equal(r?.ok, c.promoted, `exit ${c.code}: ${r?.message}`);
    assert.equal(p.b.engine.role, c.promoted ? 'Primary' : 'Secondary', `exit ${c.code}`);
    assert.equal(p.b.engine.disk, c.disk, `exit ${c.code}`);
    if (!c.promoted) assert.match(r?.message ?? '', /fence-peer|--force/);
  }
});

test('primary --force skips fence-peer; a fenced peer is not fenced again', () => {
  const p = Pair.initialized({ fencing: 'resource-only' }, { fencing: 'resource-only' });
  p.adminCmd(p.a, { cmd: 'secondary' });
  p.settle();
  p.cut();
  const r = p.adminCmd(p.b, { cmd: 'primary', force: true });
  assert.equal(r.ok, true, r.message);
  assert.equal(p.b.fences.length, 0);
  p.adminCmd(p.b, { cmd: 'secondary' });
  p.step(p.b, { type: 'admin', cmdId: 9001, command: { cmd: 'primary', force: false } });
  answerFence(p, p.b, 4);
  assert.equal(p.b.engine.role, 'Primary');
  p.adminCmd(p.b, { cmd: 'secondary' });
  const again = p.adminCmd(p.b, { cmd: 'primary', force: false });
  assert.equal(again.ok, true, 'the peer stays fenced: no second handler run');
  assert.equal(p.b.fences.length, 0);
});
