// Runs the BlockStore compliance suite against every store: memory, file, and a slice of each.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blockStoreSuite } from '../compliance/blockstore.suite.js';
import { MemoryStore } from '../../src/storage/memory.js';
import { openFileStore } from '../../src/storage/file.js';
import { sliceStore } from '../../src/storage/slice.js';
import { SeededRandom } from '../../src/util/prng.js';
import { systemClock } from '../../src/platform/clock.js';

blockStoreSuite('memory', (size) =>
  Promise.resolve({
    store: new MemoryStore(size, { random: new SeededRandom(1) }),
    cleanup: () => Promise.resolve(),
  }),
);

async function tempFile(size: number): Promise<{ path: string; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-store-'));
  const path = join(dir, 'disk.img');
  await writeFile(path, '');
  await truncate(path, size);
  return { path, dir };
}

blockStoreSuite('file', async (size) => {
  const { path, dir } = await tempFile(size);
  return {
    store: await openFileStore(path),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

// Small writes done synchronously into the page cache (as tandemd opens its disks).
blockStoreSuite('file, inline writes', async (size) => {
  const { path, dir } = await tempFile(size);
  return {
    store: await openFileStore(path, { inlineWriteMaxBytes: 64 * 1024, clock: systemClock }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

blockStoreSuite('slice of memory', (size) => {
  const base = new MemoryStore(size + 8192);
  return Promise.resolve({ store: sliceStore(base, 4096, size), cleanup: () => base.close() });
});

blockStoreSuite('slice of file', async (size) => {
  const { path, dir } = await tempFile(size + 12288);
  const base = await openFileStore(path);
  return {
    store: sliceStore(base, 8192, size),
    cleanup: async () => {
      await base.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
