// The chaos harness's ledger: what a read of a stamped block may hold after which writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK_BYTES, Ledger, readStamp, stampBlock } from './ledger.js';

const TAG = 77;

test('a stamp reads back as its write; torn, misplaced and foreign blocks do not', () => {
  assert.deepEqual(readStamp(stampBlock(TAG, 5, 9), TAG, 5), { kind: 'stamp', seq: 9 });
  assert.deepEqual(readStamp(Buffer.alloc(BLOCK_BYTES), TAG, 5), { kind: 'zero' });
  const torn = stampBlock(TAG, 5, 9);
  stampBlock(TAG, 5, 10).copy(torn, 2048, 2048);
  assert.equal(readStamp(torn, TAG, 5).kind, 'garbage');
  assert.match(JSON.stringify(readStamp(stampBlock(TAG, 6, 9), TAG, 5)), /block 6/);
  assert.equal(readStamp(stampBlock(TAG + 1, 5, 9), TAG, 5).kind, 'garbage');
  const flipped = stampBlock(TAG, 5, 9);
  flipped.writeUInt32LE((flipped.readUInt32LE(24) ^ 1) >>> 0, 24);
  for (let off = 32; off < BLOCK_BYTES; off += 32) flipped.copy(flipped, off, 0, 32);
  assert.equal(readStamp(flipped, TAG, 5).kind, 'garbage');
});

test('after an acknowledged write only it or a later unacknowledged one may be read', () => {
  const l = new Ledger(TAG);
  const read = (b: number, seq: number): string | null =>
    l.verdict(b, seq === 0 ? { kind: 'zero' } : { kind: 'stamp', seq });
  l.issue([1, 2], 1);
  assert.equal(l.free([2, 3]), false);
  assert.throws(() => l.issue([2], 2), /two writes in flight/);
  // Unacknowledged: zeroes or the write.
  assert.equal(read(1, 0), null);
  assert.equal(read(1, 1), null);
  l.ack([1, 2], 1);
  assert.match(read(1, 0) ?? '', /zeroes, acknowledged write 1/);
  l.issue([1], 3);
  l.fail([1]);
  assert.equal(read(1, 1), null);
  assert.equal(read(1, 3), null, 'a later write that failed may have landed');
  l.issue([1], 4);
  l.ack([1], 4);
  assert.match(read(1, 3) ?? '', /write 3, acknowledged write 4/);
  assert.match(read(1, 1) ?? '', /write 1, acknowledged write 4/);
  assert.equal(read(1, 4), null);
  assert.deepEqual(l.written(), [1, 2]);
  assert.equal(l.ackedWrites, 2);
  assert.equal(l.ackedBlocks, 2);
});
