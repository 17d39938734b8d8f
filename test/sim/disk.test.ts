// The simulator's storage model is only as good as its crash semantics: these pin what a power
// loss may keep (any cached version of a block, in any order), what a flush covers (the writes
// completed before it was issued) and what FUA and a non-volatile cache promise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BITMAP_BLOCK_BYTES } from '../../src/limits.js';
import { SeededRandom } from '../../src/util/prng.js';
import { SimDisk } from './disk.js';

const BLOCK = BITMAP_BLOCK_BYTES;
const fill = (v: number): Uint8Array => new Uint8Array(BLOCK).fill(v);

/** What block 0 holds after a power loss, over many seeds. */
function outcomes(prepare: (d: SimDisk) => void, volatile = true): Set<number> {
  const seen = new Set<number>();
  for (let seed = 1; seed <= 200; seed++) {
    const d = new SimDisk(16 * BLOCK, volatile);
    prepare(d);
    d.crash(new SeededRandom(seed));
    seen.add(d.read(0, 1)[0]!);
  }
  return seen;
}

test('a completed write without a flush may or may not survive a power loss', () => {
  assert.deepEqual(
    outcomes((d) => d.write(0, fill(1), false)),
    new Set([0, 1]),
  );
});

test('a power loss may keep any version cached since the last flush, older ones included', () => {
  const seen = outcomes((d) => {
    d.write(0, fill(1), false);
    d.write(0, fill(2), false);
    d.write(0, fill(3), false);
  });
  assert.deepEqual(seen, new Set([0, 1, 2, 3]));
});

test('a flush covers the writes completed before it was issued, not later ones', () => {
  assert.deepEqual(
    outcomes((d) => {
      d.write(0, fill(1), false);
      const snap = d.snapshot();
      d.write(0, fill(2), false); // completes while the flush runs
      d.flushSnapshot(snap);
    }),
    new Set([1, 2]),
  );
  assert.deepEqual(
    outcomes((d) => {
      const snap = d.snapshot();
      d.write(0, fill(1), false);
      d.flushSnapshot(snap);
    }),
    new Set([0, 1]),
  );
});

test('FUA and a non-volatile cache make a write stable at completion', () => {
  assert.deepEqual(
    outcomes((d) => d.write(0, fill(5), true)),
    new Set([5]),
  );
  assert.deepEqual(
    outcomes((d) => d.write(0, fill(6), false), false),
    new Set([6]),
  );
  const d = new SimDisk(16 * BLOCK);
  d.write(0, fill(7), false);
  assert.equal(d.readDurable(0, 1)[0], 0, 'not stable before a flush');
  assert.equal(d.read(0, 1)[0], 7, 'but readable');
});

test('a write in flight at the power loss is dropped, applied or torn by sector', () => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= 100; seed++) {
    const d = new SimDisk(16 * BLOCK);
    d.inFlight.set(1, { offsetBytes: 0, data: fill(9) });
    d.crash(new SeededRandom(seed));
    const b = d.read(0, BLOCK);
    seen.add(b.every((x) => x === 9) ? 'all' : b.every((x) => x === 0) ? 'none' : 'torn');
  }
  assert.deepEqual(seen, new Set(['all', 'none', 'torn']));
});
