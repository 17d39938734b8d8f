// The bitmap slot against a model (a Set of block numbers): weight, runs and scans agree
// after any sequence of range sets and clears, including word boundaries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Bitmap } from '../../src/replication/bitmap.js';

test('bitmap matches a set-of-blocks model under random range operations', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 200 }),
      fc.array(fc.tuple(fc.boolean(), fc.nat(), fc.nat(80)), { maxLength: 40 }),
      (blocks, ops) => {
        const b = new Bitmap(blocks);
        const model = new Set<number>();
        for (const [on, s0, c0] of ops) {
          const start = s0 % blocks;
          const count = Math.min(c0, blocks - start);
          let changed = 0;
          for (let i = start; i < start + count; i++) {
            if (on && !model.has(i)) {
              model.add(i);
              changed++;
            }
            if (!on && model.has(i)) {
              model.delete(i);
              changed++;
            }
          }
          assert.equal(on ? b.set({ start, count }) : b.clear({ start, count }), changed);
          assert.equal(b.weight, model.size);
        }
        const fromRanges = new Set<number>();
        for (const r of b.ranges())
          for (let i = r.start; i < r.start + r.count; i++) fromRanges.add(i);
        assert.deepEqual(
          [...fromRanges].sort((x, y) => x - y),
          [...model].sort((x, y) => x - y),
        );
        for (let i = 0; i < blocks; i++) assert.equal(b.test(i), model.has(i));
      },
    ),
    { numRuns: 500 },
  );
});

test('setAll on a large slot is fast and exact', () => {
  const b = new Bitmap(256 * 1024 * 1024 + 7); // a 1 TiB device at 4 KiB per bit
  b.setAll();
  assert.equal(b.weight, 256 * 1024 * 1024 + 7);
  assert.deepEqual(b.ranges(), [{ start: 0, count: 256 * 1024 * 1024 + 7 }]);
  b.clear({ start: 5, count: 100 });
  assert.equal(b.ranges().length, 2);
});
