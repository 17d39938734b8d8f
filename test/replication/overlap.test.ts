// Overlapping writes in flight: the Primary holds a write that overlaps one not yet completed
// on every copy (DRBD's complete_conflicting_writes), and the Secondary issues overlapping
// writes in the order they arrived, so a disk that reorders concurrent writes cannot make the
// replicas diverge. Each test drives a reordering disk; without the ordering they would differ.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK, Pair, type HNode } from '../sim/harness.js';

const done = (n: HNode, id: number): boolean => n.completions.get(id)?.ok === true;
const blockOf = (n: HNode, b: number): number => n.disk.read(b * BLOCK, BLOCK)[0] ?? -1;

/** Runs everything with alpha's disk completing newest-first and bravo's oldest-first. */
function settleReordering(p: Pair): void {
  for (let i = 0; i < 1000; i++) {
    let moved = false;
    while (p.completeNewestIo(p.a)) moved = true;
    for (const [from, stream] of [
      [1, 'data'],
      [2, 'control'],
      [1, 'control'],
      [2, 'data'],
    ] as const)
      while (p.deliver(from, stream)) moved = true;
    while (p.completeIo(p.b)) moved = true;
    if (!moved) break;
  }
  p.settle();
}

for (const protocol of ['A', 'B', 'C'] as const) {
  test(`protocol ${protocol}: an overlapping write waits for the one in flight; replicas agree`, () => {
    const p = Pair.initialized({ protocol });
    const w1 = p.write(p.a, 3, 0x11, 2);
    const w2 = p.write(p.a, 4, 0x22, 2);
    p.completeMeta(p.a); // the AL transaction both writes wait for
    assert.equal(p.a.pendingIo.length, 1, 'the overlapping write is held, not issued');
    settleReordering(p);
    assert.ok(done(p.a, w1) && done(p.a, w2));
    assert.equal(blockOf(p.a, 4), 0x22, 'the later write wins on the Primary');
    assert.equal(blockOf(p.b, 4), 0x22, 'and on the Secondary');
    assert.ok(p.identical(), 'replicas identical');
  });
}

test('without the ordering (planted bug) the same interleaving diverges', () => {
  const p = Pair.initialized({ protocol: 'C', plantedBug: 'overlap-unordered' });
  p.write(p.a, 3, 0x11, 2);
  p.write(p.a, 4, 0x22, 2);
  p.completeMeta(p.a);
  assert.equal(p.a.pendingIo.length, 2, 'both issued at once');
  settleReordering(p);
  assert.equal(p.identical(), false, 'the reordering disk made them differ');
});

test('writes that do not overlap are issued together', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 3, 0x11, 2);
  p.write(p.a, 5, 0x22, 2);
  p.request(p.a, { op: 'trim', offsetBytes: 7 * BLOCK, lengthBytes: BLOCK, fua: false });
  p.completeMeta(p.a);
  assert.equal(p.a.pendingIo.length, 3);
  p.settle();
  assert.ok(p.identical());
});

test('a write overlapping a held write waits behind it (arrival order)', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 3, 0x11, 1);
  p.write(p.a, 3, 0x22, 2); // held by the first
  p.write(p.a, 4, 0x33, 1); // overlaps only the held one: must not overtake it
  p.completeMeta(p.a);
  assert.equal(p.a.pendingIo.length, 1);
  settleReordering(p);
  assert.equal(blockOf(p.a, 3), 0x22);
  assert.equal(blockOf(p.a, 4), 0x33, 'issued after the held write, so it wins');
  assert.ok(p.identical());
});

test('the Secondary issues overlapping writes of one epoch one after the other', () => {
  // A Primary that does not hold overlapping writes sends both in one epoch: the Secondary
  // still writes them in arrival order.
  const p = Pair.initialized({ protocol: 'C', plantedBug: 'overlap-unordered' }, { protocol: 'C' });
  p.write(p.a, 3, 0x11, 2);
  p.write(p.a, 4, 0x22, 2);
  p.write(p.a, 9, 0x44, 1);
  p.completeMeta(p.a); // the Data wait for alpha's AL transaction
  while (p.deliver(1, 'data'));
  assert.equal(p.b.pendingIo.length, 2, 'the overlapping one waits; the other goes');
  while (p.completeNewestIo(p.b));
  assert.equal(p.b.pendingIo.length, 0);
  p.settle();
  assert.equal(blockOf(p.b, 4), 0x22, 'arrival order kept on the Secondary');
});

test('demote refuses while a write is held', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 3, 0x11, 2);
  p.write(p.a, 4, 0x22, 2);
  p.completeMeta(p.a);
  p.completeIo(p.a);
  const r = p.adminCmd(p.a, { cmd: 'secondary' });
  assert.equal(r.ok, false);
  p.settle();
  assert.equal(p.adminCmd(p.a, { cmd: 'secondary' }).ok, true);
});
