// MemoryStore's crash model: flushed and FUA data always survive; unflushed writes survive per
// sector as the selector (or seeded Random) says; faults reach the caller as DiskIoError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../src/storage/memory.js';
import { SeededRandom } from '../../src/util/prng.js';
import { DiskIoError } from '../../src/util/errors.js';

const fill = (n: number, v: number): Buffer => Buffer.alloc(n, v);

test('flushed writes survive a crash, unflushed ones follow the selector per sector', async () => {
  const s = new MemoryStore(16384);
  await s.write(0, fill(1024, 1));
  await s.flush();
  await s.write(0, fill(1024, 2)); // write 0: sectors 0,1
  await s.write(2048, fill(1024, 3)); // write 1: sectors 4,5
  assert.equal(s.pendingWrites, 2);
  const img = s.crash((w, sector) => w === 0 && sector === 1);
  assert.ok(img.subarray(0, 512).equals(fill(512, 1)), 'torn: first sector kept its old data');
  assert.ok(img.subarray(512, 1024).equals(fill(512, 2)), 'torn: second sector is new');
  assert.ok(img.subarray(2048, 3072).equals(fill(1024, 0)), 'lost write');
  assert.ok(
    (await s.read(0, 4096)).equals(img.subarray(0, 4096)),
    'the store continues from the image',
  );
  assert.equal(s.pendingWrites, 0);
});

test('FUA writes survive every crash, even with later unflushed writes lost', async () => {
  const s = new MemoryStore(4096);
  await s.write(0, fill(512, 9));
  await s.write(512, fill(512, 7), { fua: true });
  const img = s.crash(() => false);
  assert.ok(img.subarray(0, 512).equals(fill(512, 0)));
  assert.ok(img.subarray(512, 1024).equals(fill(512, 7)));
});

test('overlapping unflushed writes replay in order', async () => {
  const s = new MemoryStore(4096);
  await s.write(0, fill(512, 1));
  await s.write(0, fill(512, 2));
  assert.ok(
    s
      .crash((w) => w === 0)
      .subarray(0, 512)
      .equals(fill(512, 1)),
  );
});

test('a seeded crash replays identically', async () => {
  const run = async (seed: number): Promise<Buffer> => {
    const s = new MemoryStore(65536, { random: new SeededRandom(seed) });
    for (let i = 0; i < 32; i++) await s.write(i * 2048, fill(2048, i + 1));
    return s.crash();
  };
  const a = await run(42);
  assert.ok(a.equals(await run(42)));
  assert.ok(!a.equals(Buffer.alloc(65536)) && !a.equals(await run(7)));
});

test('injected faults fail with DiskIoError naming the offset and errno', async () => {
  const s = new MemoryStore(8192);
  s.setFault((op, off) => (op === 'write' && off >= 4096 ? 'EIO' : undefined));
  await s.write(0, fill(512, 1));
  await assert.rejects(s.write(4096, fill(512, 1)), (e: unknown) => {
    assert.ok(e instanceof DiskIoError);
    assert.equal(e.offsetBytes, 4096);
    assert.equal(e.errno, 'EIO');
    return true;
  });
  assert.ok((await s.read(4096, 512)).equals(fill(512, 0)));
  s.setFault(undefined);
  await s.write(4096, fill(512, 1));
});
