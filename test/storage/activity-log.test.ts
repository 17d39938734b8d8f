// The activity log's state machine and its ring: admission (hot / needs-transaction / busy),
// eviction of idle extents only, and replay rebuilding exactly the active set from the ring,
// across ring wrap-around, striping, and a torn newest transaction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ActivityLog,
  replayActivityLog,
  ringBlock,
  type AlTransactionPlan,
} from '../../src/storage/metadata/al.js';
import { AL_TRANSACTION_BYTES } from '../../src/storage/metadata/format.js';
import { SeededRandom } from '../../src/util/prng.js';

function ringOf(stripes: number, size: number): Buffer {
  return Buffer.alloc(stripes * size * AL_TRANSACTION_BYTES);
}

function commit(al: ActivityLog, ring: Buffer): AlTransactionPlan | undefined {
  const plan = al.prepareTransaction();
  if (!plan) return undefined;
  plan.bytes.copy(ring, plan.offsetBytes);
  al.commitTransaction(plan);
  return plan;
}

test('admission: cold extents need a transaction, hot ones do not, a full AL of busy extents says busy', () => {
  const al = new ActivityLog({ extents: 2, stripes: 1, stripeSize4k: 8 });
  const ring = ringOf(1, 8);
  assert.equal(al.beginWrite(10), 'needs-transaction');
  assert.equal(al.beginWrite(10), 'needs-transaction', 'pending, not yet committed');
  assert.equal(al.beginWrite(11), 'needs-transaction');
  assert.equal(al.beginWrite(12), 'busy', 'both slots hold extents with writes in flight');
  const plan = commit(al, ring);
  assert.deepEqual(plan?.evicted, []);
  assert.equal(al.beginWrite(10), 'hot');
  al.endWrite(10);
  al.endWrite(10);
  al.endWrite(10);
  assert.equal(al.beginWrite(12), 'needs-transaction', 'extent 10 is idle and can go');
  const p2 = commit(al, ring);
  assert.deepEqual(p2?.evicted, [10]);
  assert.deepEqual(al.activeExtents(), [11, 12]);
  assert.throws(() => al.endWrite(10));
});

test('an aborted transaction is retried with the same updates', () => {
  const al = new ActivityLog({ extents: 4, stripes: 1, stripeSize4k: 8 });
  al.beginWrite(1);
  const p = al.prepareTransaction();
  assert.ok(p);
  assert.equal(al.prepareTransaction(), undefined, 'one transaction in flight at a time');
  al.abortTransaction();
  const again = al.prepareTransaction();
  assert.deepEqual(again?.transaction.updates, p.transaction.updates);
  assert.equal(again?.transaction.trNumber, p.transaction.trNumber);
});

test('ring blocks follow striping like drbdmeta', () => {
  assert.deepEqual(
    Array.from({ length: 8 }, (_, b) => ringBlock(b, 2, 4)),
    [0, 4, 1, 5, 2, 6, 3, 7],
  );
  assert.deepEqual(
    Array.from({ length: 9 }, (_, b) => ringBlock(b, 1, 8)),
    [0, 1, 2, 3, 4, 5, 6, 7, 0],
  );
});

for (const [stripes, size, extents] of [
  [1, 8, 1237],
  [2, 4, 61],
  [1, 8, 6433],
] as const) {
  test(`replay rebuilds the active set after many transactions (${stripes}x${size} ring, ${extents} extents), even with the newest torn`, () => {
    const al = new ActivityLog({ extents, stripes, stripeSize4k: size });
    const ring = ringOf(stripes, size);
    const random = new SeededRandom(extents);
    let prevActive: number[] = [];
    for (let t = 0; t < 40; t++) {
      const n = 1 + random.int(64);
      for (let i = 0; i < n; i++) {
        const e = random.int(extents * 3);
        if (al.beginWrite(e) !== 'busy') al.endWrite(e);
      }
      prevActive = al.activeExtents();
      const plan = commit(al, ring);
      if (!plan) continue;
      const r = replayActivityLog(ring, stripes, size);
      assert.ok(r.ok);
      assert.deepEqual(r.value.hotExtents, al.activeExtents(), `after transaction ${t}`);
      assert.equal(r.value.newest?.trNumber, plan.transaction.trNumber);
    }
    // Tear the newest transaction: replay falls back to the state before it (a superset is fine
    // too, but it must include everything the previous transaction had).
    const last = al.prepareTransaction();
    assert.equal(last, undefined);
    const torn = Buffer.from(ring);
    const r0 = replayActivityLog(torn, stripes, size);
    assert.ok(r0.ok);
    const newestBlock = ringBlock(r0.value.newest?.index ?? 0, stripes, size);
    const at = newestBlock * AL_TRANSACTION_BYTES + 100;
    torn[at] = (torn[at] ?? 0) ^ 0xff;
    const r = replayActivityLog(torn, stripes, size);
    assert.ok(r.ok);
    assert.equal(r.value.corrupt, 1);
    for (const e of prevActive)
      assert.ok(r.value.hotExtents.includes(e), `extent ${e} still covered`);
  });
}

test('a continued AL numbers on after the newest transaction it found', () => {
  const ring = ringOf(1, 8);
  const a = new ActivityLog({ extents: 10, stripes: 1, stripeSize4k: 8 });
  for (let i = 0; i < 11; i++) {
    a.beginWrite(i);
    a.endWrite(i);
    commit(a, ring);
  }
  const r = replayActivityLog(ring, 1, 8);
  assert.ok(r.ok);
  const b = new ActivityLog({ extents: 10, stripes: 1, stripeSize4k: 8, after: r.value.newest });
  b.beginWrite(99);
  const p = b.prepareTransaction();
  assert.equal(p?.transaction.trNumber, 11);
  assert.equal(p?.offsetBytes, ringBlock(11, 1, 8) * AL_TRANSACTION_BYTES);
});

test('a ring with no valid block is an error', () => {
  assert.ok(!replayActivityLog(ringOf(1, 8), 1, 8).ok);
});
