// Scatter-gather payload helpers: a cut of a slice list holds exactly the bytes of the same cut
// of the concatenation, as views of the original memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { chunksLength, sliceChunks } from '../../src/util/chunks.js';

test('sliceChunks cuts the concatenation without copying', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 50 }), { maxLength: 6 }),
      fc.nat(),
      fc.nat(),
      (chunks, a, b) => {
        const all = Buffer.concat(chunks);
        assert.equal(chunksLength(chunks), all.length);
        const off = a % (all.length + 1);
        const len = b % (all.length - off + 1);
        const cut = sliceChunks(chunks, off, len);
        assert.deepEqual(Buffer.concat(cut), all.subarray(off, off + len));
        for (const c of cut) {
          assert.ok(c.length > 0, 'no empty slices');
          assert.ok(
            chunks.some((x) => x.buffer === c.buffer),
            'a view of an original chunk',
          );
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test('a whole chunk is passed on as it is', () => {
  const x = new Uint8Array(8);
  const y = new Uint8Array(8);
  const cut = sliceChunks([x, y], 0, 16);
  assert.equal(cut[0], x);
  assert.equal(cut[1], y);
});
