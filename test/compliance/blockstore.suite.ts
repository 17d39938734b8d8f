// The BlockStore compliance suite: every store (file, memory, slice) runs these same tests.
// A store is done when this passes, not when it "seems to work".
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidRequestError } from '../../src/util/errors.js';
import type { BlockStore } from '../../src/storage/types.js';

export interface StoreFixture {
  readonly store: BlockStore;
  /** Releases whatever the fixture made (temp files); the store is already closed. */
  cleanup(): Promise<void>;
}

/** `make(sizeBytes)` returns a fresh, zero-filled store of exactly that size. */
export function blockStoreSuite(
  name: string,
  make: (sizeBytes: number) => Promise<StoreFixture>,
): void {
  const size = 1024 * 1024;

  async function withStore(fn: (s: BlockStore) => Promise<void>, sizeBytes = size): Promise<void> {
    const f = await make(sizeBytes);
    try {
      await fn(f.store);
    } finally {
      await f.store.close();
      await f.cleanup();
    }
  }

  function pattern(length: number, seed: number): Buffer {
    const b = Buffer.alloc(length);
    for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
    return b;
  }

  describe(`BlockStore compliance: ${name}`, () => {
    test('reports its size and reads zeroes when fresh', () =>
      withStore(async (s) => {
        assert.equal(s.sizeBytes, size);
        const b = await s.read(0, 8192);
        assert.ok(b.equals(Buffer.alloc(8192)));
      }));

    test('reads back what was written, at the start, middle and end', () =>
      withStore(async (s) => {
        const a = pattern(4096, 1);
        const b = pattern(512, 2);
        const c = pattern(8192, 3);
        await s.write(0, a);
        await s.write(size / 2 + 512, b);
        await s.write(size - 8192, c);
        assert.ok((await s.read(0, 4096)).equals(a));
        assert.ok((await s.read(size / 2 + 512, 512)).equals(b));
        assert.ok((await s.read(size - 8192, 8192)).equals(c));
        // Neighbours untouched.
        assert.ok((await s.read(size / 2, 512)).equals(Buffer.alloc(512)));
      }));

    test('a vectored write lands as the concatenation of its parts', () =>
      withStore(async (s) => {
        const parts = [pattern(512, 4), pattern(1024, 5), pattern(2560, 6)];
        await s.write(4096, parts);
        assert.ok((await s.read(4096, 4096)).equals(Buffer.concat(parts)));
      }));

    test('many writes in flight all land', () =>
      withStore(async (s) => {
        const n = 200;
        await Promise.all(Array.from({ length: n }, (_, i) => s.write(i * 4096, pattern(4096, i))));
        const reads = await Promise.all(
          Array.from({ length: n }, (_, i) => s.read(i * 4096, 4096)),
        );
        reads.forEach((r, i) => assert.ok(r.equals(pattern(4096, i)), `block ${i}`));
      }));

    test('flush and FUA writes resolve', () =>
      withStore(async (s) => {
        await s.write(0, pattern(512, 7), { fua: true });
        await s.flush();
        assert.ok((await s.read(0, 512)).equals(pattern(512, 7)));
      }));

    test('writeZeroes and discard make a range read as zeroes or old data; zeroes read as zeroes', () =>
      withStore(async (s) => {
        await s.write(0, pattern(65536, 8));
        await s.writeZeroes(4096, 8192);
        const b = await s.read(0, 65536);
        assert.ok(b.subarray(4096, 12288).equals(Buffer.alloc(8192)));
        assert.ok(b.subarray(0, 4096).equals(pattern(65536, 8).subarray(0, 4096)));
        assert.ok(b.subarray(12288).equals(pattern(65536, 8).subarray(12288)));
        await s.writeZeroes(16384, 4096, { noHole: true, fua: true });
        assert.ok((await s.read(16384, 4096)).equals(Buffer.alloc(4096)));
        await s.discard(32768, 4096);
        const d = await s.read(32768, 4096);
        assert.ok(
          d.equals(Buffer.alloc(4096)) || d.equals(pattern(65536, 8).subarray(32768, 36864)),
        );
      }));

    test('extents cover the asked range exactly, in order', () =>
      withStore(async (s) => {
        await s.write(0, pattern(4096, 9));
        const ex = await s.extents(0, size);
        assert.ok(ex.length >= 1);
        let at = 0;
        for (const e of ex) {
          assert.equal(e.offsetBytes, at);
          assert.ok(e.lengthBytes > 0);
          at += e.lengthBytes;
        }
        assert.equal(at, size);
      }));

    test('rejects misaligned and out-of-range requests with InvalidRequestError', () =>
      withStore(async (s) => {
        const bad = (p: Promise<unknown>): Promise<void> => assert.rejects(p, InvalidRequestError);
        await bad(s.read(1, 512));
        await bad(s.read(0, 100));
        await bad(s.read(size, 512));
        await bad(s.read(size - 512, 1024));
        await bad(s.read(-512, 512));
        await bad(s.write(3, Buffer.alloc(512)));
        await bad(s.write(0, Buffer.alloc(513)));
        await bad(s.write(size - 512, Buffer.alloc(1024)));
        await bad(s.writeZeroes(size, 512));
        await bad(s.discard(7, 512));
        await bad(s.extents(0, size + 512));
        // Nothing was written by the rejected requests.
        assert.ok((await s.read(size - 1024, 1024)).equals(Buffer.alloc(1024)));
      }));

    test('a zero-length request succeeds and does nothing', () =>
      withStore(async (s) => {
        assert.equal((await s.read(512, 0)).byteLength, 0);
        await s.write(512, Buffer.alloc(0));
        await s.write(size, []);
      }));

    test('close is idempotent and later I/O is refused', () =>
      withStore(async (s) => {
        await s.close();
        await s.close();
        await assert.rejects(s.read(0, 512), InvalidRequestError);
      }));
  });
}
