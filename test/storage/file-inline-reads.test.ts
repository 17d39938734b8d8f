// FileStore inline reads (inlineReadMaxBytes): small reads served synchronously return the
// same bytes as threadpool reads, a slow one sends reads to the threadpool for a doubling
// while, and the BlockStore compliance suite passes with reads (and writes) inline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blockStoreSuite } from '../compliance/blockstore.suite.js';
import { openFileStore } from '../../src/storage/file.js';
import { systemClock } from '../../src/platform/clock.js';
import { DiskIoError } from '../../src/util/errors.js';
import { STORE_INLINE_READ_BACKOFF_MIN_MS, STORE_INLINE_READ_STALL_MS } from '../../src/limits.js';
import { withTempDir } from '../support/tmp.js';

blockStoreSuite('file, inline reads and writes', async (size) => {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-inline-read-'));
  const path = join(dir, 'disk.img');
  await writeFile(path, '');
  await truncate(path, size);
  return {
    store: await openFileStore(path, {
      inlineReadMaxBytes: 64 * 1024,
      inlineWriteMaxBytes: 64 * 1024,
      clock: systemClock,
    }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

test('inline reads: small ones inline, a slow one sends reads to the threadpool for a while', () =>
  withTempDir('inline-read', async (dir) => {
    const p = join(dir, 'inline.img');
    const data = Buffer.alloc(1 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 0xff;
    await writeFile(p, data);
    let now = 0;
    let step = 0;
    // Every clock read advances `step` ms: a read "takes" that long.
    const clock = { nowMs: (): number => (now += step) };
    const s = await openFileStore(p, { inlineReadMaxBytes: 8192, clock });
    const guard = s.inlineReads;
    assert.ok(guard !== undefined);
    assert.deepEqual(await s.read(512, 4096), data.subarray(512, 4608));
    assert.deepEqual(await s.read(8192, 16384), data.subarray(8192, 24576)); // too large
    assert.equal(guard.ops, 1);
    step = STORE_INLINE_READ_STALL_MS + 1;
    assert.deepEqual(await s.read(0, 8192), data.subarray(0, 8192)); // inline, but slow
    assert.equal(guard.ops, 2);
    assert.equal(guard.stalls, 1);
    step = 0;
    assert.deepEqual(await s.read(4096, 512), data.subarray(4096, 4608)); // suspended
    assert.equal(guard.ops, 2);
    now += STORE_INLINE_READ_BACKOFF_MIN_MS;
    assert.deepEqual(await s.read(4096, 512), data.subarray(4096, 4608)); // backoff over
    assert.equal(guard.ops, 3);
    // A second stall soon after the first backs off twice as long.
    step = STORE_INLINE_READ_STALL_MS + 1;
    await s.read(0, 512);
    assert.equal(guard.stalls, 2);
    step = 0;
    now += STORE_INLINE_READ_BACKOFF_MIN_MS;
    await s.read(0, 512);
    assert.equal(guard.ops, 4, 'still suspended after one minimum backoff');
    now += STORE_INLINE_READ_BACKOFF_MIN_MS;
    await s.read(0, 512);
    assert.equal(guard.ops, 5);
    await s.close();
  }));

test('an inline read past the end of a shrunk file is a DiskIoError, not a short buffer', () =>
  withTempDir('inline-read', async (dir) => {
    const p = join(dir, 'shrink.img');
    await writeFile(p, Buffer.alloc(1 << 20, 9));
    const s = await openFileStore(p, { inlineReadMaxBytes: 8192, clock: { nowMs: () => 0 } });
    await truncate(p, 4096);
    await assert.rejects(s.read(8192, 4096), DiskIoError);
    await s.close();
  }));

test('without a clock or with direct I/O, reads never run inline', () =>
  withTempDir('inline-read', async (dir) => {
    const p = join(dir, 'plain.img');
    await writeFile(p, Buffer.alloc(1 << 16));
    const s = await openFileStore(p, { inlineReadMaxBytes: 8192 });
    assert.equal(s.inlineReads, undefined);
    await s.close();
  }));
