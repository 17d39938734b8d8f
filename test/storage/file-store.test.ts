// FileStore specifics: size from the file (trailing partial sector ignored), errors for what
// cannot be opened, a short read (file shrank under us) as a DiskIoError with the offset, and a
// real block device (a loop device) sized from sysfs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { truncate, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { openFileStore } from '../../src/storage/file.js';
import { DiskIoError, InvalidRequestError } from '../../src/util/errors.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { inCi, peerEnv, requirePeers } from '../support/peers.js';
import { drbdmeta, parseDump } from '../support/drbdmeta.js';
import { MetadataStore } from '../../src/storage/metadata/store.js';
import {
  STORE_INLINE_WRITE_BACKOFF_MIN_MS,
  STORE_INLINE_WRITE_STALL_MS,
  STORE_IO_IN_FLIGHT_MAX,
} from '../../src/limits.js';
import { withTempDir } from '../support/tmp.js';

const run = promisify(execFile);

test('size comes from the file, rounded down to whole sectors', () =>
  withTempDir('fs', async (dir) => {
    const p = join(dir, 'odd.img');
    await writeFile(p, Buffer.alloc(10 * 512 + 100, 1));
    const s = await openFileStore(p);
    assert.equal(s.sizeBytes, 5120);
    await s.close();
  }));

test('a missing path and a directory are refused with clear errors', () =>
  withTempDir('fs', async (dir) => {
    await assert.rejects(openFileStore(join(dir, 'nope')), (e: unknown) => {
      assert.ok(e instanceof DiskIoError);
      assert.equal(e.errno, 'ENOENT');
      return true;
    });
    await mkdir(join(dir, 'sub'));
    await assert.rejects(openFileStore(join(dir, 'sub')), InvalidRequestError);
  }));

test('a read past a file that shrank is a DiskIoError at that offset', () =>
  withTempDir('fs', async (dir) => {
    const p = join(dir, 'shrink.img');
    await writeFile(p, Buffer.alloc(8192));
    const s = await openFileStore(p);
    await truncate(p, 4096);
    await assert.rejects(s.read(4096, 512), (e: unknown) => {
      assert.ok(e instanceof DiskIoError);
      assert.equal(e.offsetBytes, 4096);
      return true;
    });
    await s.close();
  }));

test('requests beyond STORE_IO_IN_FLIGHT_MAX wait their turn, and all complete', () =>
  withTempDir('fs', async (dir) => {
    const p = join(dir, 'many.img');
    await writeFile(p, Buffer.alloc(4 * 1024 * 1024));
    const s = await openFileStore(p);
    const n = STORE_IO_IN_FLIGHT_MAX * 4;
    await Promise.all(
      Array.from({ length: n }, (_, i) => s.write(i * 4096, Buffer.alloc(4096, i & 0xff))),
    );
    assert.ok(s.peakInFlight <= STORE_IO_IN_FLIGHT_MAX, `peak ${s.peakInFlight}`);
    assert.ok(s.peakInFlight > 1, 'requests did overlap');
    const back = await Promise.all(Array.from({ length: n }, (_, i) => s.read(i * 4096, 4096)));
    back.forEach((b, i) => assert.equal(b[100], i & 0xff));
    await s.close();
  }));

test('a read-only store refuses writes', () =>
  withTempDir('fs', async (dir) => {
    const p = join(dir, 'ro.img');
    await writeFile(p, Buffer.alloc(4096));
    const s = await openFileStore(p, { readOnly: true });
    await assert.rejects(s.write(0, Buffer.alloc(512)), InvalidRequestError);
    assert.equal((await s.read(0, 512)).byteLength, 512);
    await s.close();
  }));

test('a block device: size from the device, positional I/O, v09 metadata drbdmeta reads', async (t) => {
  if (!requirePeers(t, 'util-linux', 'losetup') || !requirePeers(t, 'drbd-utils', 'drbdmeta'))
    return;
  if (process.getuid?.() !== 0) {
    t.skip('loop devices need root');
    return;
  }
  await withTempDir('fs', async (dir) => {
    const img = join(dir, 'loop.img');
    await writeFile(img, '');
    await truncate(img, 24 * 1024 * 1024 + 8192);
    let dev: string;
    try {
      ({ stdout: dev } = await run('losetup', ['-f', '--show', img], { env: peerEnv() }));
      dev = dev.trim();
    } catch (e) {
      t.skip(`no loop device here: ${(e as Error).message}`);
      return;
    }
    try {
      const s = await openFileStore(dev);
      assert.equal(s.isBlockDevice, true);
      assert.equal(s.sizeBytes, 24 * 1024 * 1024 + 8192);
      await s.write(8192, [Buffer.alloc(512, 1), Buffer.alloc(3584, 2)], { fua: true });
      const b = await s.read(8192, 4096);
      assert.equal(b[0], 1);
      assert.equal(b[4095], 2);
      const md = await MetadataStore.create(s, { kind: 'internal', maxPeers: 2, nodeId: 1 });
      await s.close();
      const d = parseDump(await drbdmeta(dev, 'internal', 'dump-md'));
      assert.equal(d.mdOffset, md.layout.mdOffsetBytes);
      assert.equal(d.nodeId, 1);
      assert.equal(d.maxPeers, 2);
    } finally {
      await run('losetup', ['-d', dev], { env: peerEnv() });
    }
  });
});

test('a write the device cannot hold (ENOSPC) fails with DiskIoError naming offset and errno', async (t) => {
  if (process.getuid?.() !== 0) {
    if (inCi) throw new Error('mounting a small tmpfs needs root (CI=true: this test must run)');
    t.skip('mounting a small tmpfs needs root');
    return;
  }
  await withTempDir('fs', async (dir) => {
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tandem-test', mnt], {
        env: peerEnv(),
      });
    } catch (e) {
      if (inCi) throw e;
      t.skip(`cannot mount a tmpfs here: ${(e as Error).message}`);
      return;
    }
    try {
      const p = join(mnt, 'sparse.img');
      await writeFile(p, '');
      await truncate(p, 4 * 1024 * 1024);
      const s = await openFileStore(p);
      const at = 2 * 1024 * 1024;
      await assert.rejects(s.write(at, Buffer.alloc(1024 * 1024, 1)), (e: unknown) => {
        assert.ok(e instanceof DiskIoError, String(e));
        assert.equal(e.errno, 'ENOSPC');
        assert.ok(e.offsetBytes >= at && e.offsetBytes < at + 1024 * 1024);
        assert.match(e.message, /write of 1048576 bytes at 2097152 failed/);
        return true;
      });
      await s.close().catch(() => undefined);
    } finally {
      await run('umount', [mnt], { env: peerEnv() });
    }
  });
});

test('inline writes: small ones inline, a slow one sends writes to the threadpool for a while', () =>
  withTempDir('fs', async (dir) => {
    const p = join(dir, 'inline.img');
    await writeFile(p, Buffer.alloc(1 << 20));
    let now = 0;
    let step = 0;
    // Every clock read advances `step` ms: a write "takes" that long.
    const clock = { nowMs: (): number => (now += step) };
    const s = await openFileStore(p, { inlineWriteMaxBytes: 8192, clock });
    await s.write(0, Buffer.alloc(4096, 1));
    await s.write(8192, Buffer.alloc(16384, 2)); // too large: threadpool
    assert.equal(s.inlineWrites?.ops ?? 0, 1);
    step = STORE_INLINE_WRITE_STALL_MS + 1;
    await s.write(4096, Buffer.alloc(4096, 3)); // inline, but slow
    assert.equal(s.inlineWrites?.ops ?? 0, 2);
    assert.equal(s.inlineWrites?.stalls, 1);
    step = 0;
    await s.write(0, Buffer.alloc(512, 4)); // suspended: threadpool
    assert.equal(s.inlineWrites?.ops ?? 0, 2);
    now += STORE_INLINE_WRITE_BACKOFF_MIN_MS;
    await s.write(0, Buffer.alloc(512, 5)); // the first backoff is over
    assert.equal(s.inlineWrites?.ops ?? 0, 3);
    step = STORE_INLINE_WRITE_STALL_MS + 1;
    await s.write(0, Buffer.alloc(512, 6)); // slow again soon after: twice the backoff
    step = 0;
    now += STORE_INLINE_WRITE_BACKOFF_MIN_MS;
    await s.write(0, Buffer.alloc(512, 7));
    assert.equal(s.inlineWrites?.ops ?? 0, 4, 'still suspended');
    now += STORE_INLINE_WRITE_BACKOFF_MIN_MS;
    await s.write(0, Buffer.alloc(512, 5));
    assert.equal(s.inlineWrites?.ops ?? 0, 5);
    const back = await s.read(0, 8192 + 16384);
    assert.equal(back[0], 5);
    assert.equal(back[512], 1);
    assert.equal(back[4096], 3);
    assert.equal(back[8192], 2);
    await s.close();
  }));

test('no inline write while a flush of the file runs', () =>
  withTempDir('fs', async (dir) => {
    const p = join(dir, 'inline-flush.img');
    await writeFile(p, Buffer.alloc(1 << 20));
    const s = await openFileStore(p, { inlineWriteMaxBytes: 8192, clock: { nowMs: () => 0 } });
    const flushing = s.flush();
    await s.write(0, Buffer.alloc(4096, 1)); // issued while the fdatasync runs
    assert.equal(s.inlineWrites?.ops ?? 0, 0);
    await flushing;
    await s.write(0, Buffer.alloc(4096, 2));
    assert.equal(s.inlineWrites?.ops ?? 0, 1);
    await s.close();
  }));
