// LocalDisk's barrier rule when a metadata write fails: the data I/O it held back (and any
// after it) is answered EIO and never runs, so no write lands whose activity-log transaction
// did not (simulator seed 16490); the failed disk closes without writing its metadata.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalDisk } from '../../src/daemon/disk.js';
import { MetadataStore, openBackingDevices } from '../../src/storage/index.js';
import { DiskIoError } from '../../src/util/errors.js';

async function freshDisk(t: { after: (f: () => Promise<void>) => void }): Promise<LocalDisk> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-localdisk-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'disk.img');
  await writeFile(path, '');
  await truncate(path, 16 * 1024 * 1024);
  const dev = await openBackingDevices(path, { kind: 'internal' });
  try {
    await MetadataStore.create(dev.meta, { ...dev.placement, maxPeers: 1, nodeId: 0 });
  } finally {
    await dev.close();
  }
  return LocalDisk.open(path, null, 0, [1], 61);
}

test('a failed metadata barrier fails the I/O it held back; it never runs', async (t) => {
  const disk = await freshDisk(t);
  let ran = 0;
  const failing = disk.barrier(() => Promise.reject(new Error('metadata write: EIO')));
  const held = disk.io(async () => {
    ran++;
    await disk.data.write(0, new Uint8Array(4096).fill(7));
  });
  await assert.rejects(failing, /metadata write: EIO/);
  await assert.rejects(held, (e: unknown) => e instanceof DiskIoError && e.errno === 'EIO');
  assert.equal(ran, 0, 'the held write did not run');
  assert.equal(disk.failed, true);
  // Later I/O and barriers fail too: the disk is failed until it is detached and re-attached.
  await assert.rejects(
    disk.io(async () => {
      ran++;
      return Promise.resolve();
    }),
    DiskIoError,
  );
  await assert.rejects(disk.bitmapFlush(), DiskIoError);
  assert.equal(ran, 0);
  const first = await disk.data.read(0, 4096);
  assert.equal(first[0], 0, 'nothing reached the data disk');
  await disk.close();
});

test('a barrier that succeeds releases the I/O it held back', async (t) => {
  const disk = await freshDisk(t);
  let order = '';
  const b = disk.barrier(async () => {
    await Promise.resolve();
    order += 'meta,';
  });
  const w = disk.io(async () => {
    order += 'data';
    return Promise.resolve();
  });
  await Promise.all([b, w]);
  assert.equal(order, 'meta,data');
  assert.equal(disk.failed, false);
  await disk.close();
});

test('close() and abandon() wait for the data I/O still running (detach under writes)', async (t) => {
  for (const how of ['close', 'abandon'] as const) {
    const disk = await freshDisk(t);
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let wrote = false;
    const io = disk.io(async () => {
      await gate;
      await disk.data.write(0, new Uint8Array(4096).fill(9));
      wrote = true;
    });
    let closed = false;
    const closing = disk[how]().then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(closed, false, `${how} waits while a write runs`);
    release();
    await io;
    await closing;
    assert.ok(wrote && closed, `${how} after the write landed`);
  }
});

test('a failed barrier is answered before anything it held moves (the State overtakes)', async (t) => {
  // Resource.metaIo feeds the detach from the barrier's rejection; the engine's overtaking
  // State then goes out before the DATA sends and data I/O that waited for the barrier
  // (Resource.sendData waits on metadataSettled()): seed 1410's order, pinned here.
  const disk = await freshDisk(t);
  const order: string[] = [];
  const failing = disk.barrier(() => Promise.reject(new Error('metadata write: EIO')));
  const settled = disk.metadataSettled();
  assert.ok(settled !== null);
  const sent = Promise.all([Promise.resolve(), settled]).then(() => order.push('held send'));
  const held = disk.io(() => Promise.resolve()).catch(() => order.push('held io failed'));
  const answered = failing.catch(() => order.push('detach'));
  await Promise.all([sent, held, answered]);
  assert.equal(order[0], 'detach', order.join(', '));
  assert.equal(order.length, 3);
  await disk.close();
});
