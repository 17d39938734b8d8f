// MetadataStore.growData: the metadata follows a backing device that grew (tandem resize).
// Internal metadata moves to the new end with the bitmap's bits and the activity log's hot
// extents intact, and the old place is zeroed; external metadata grows its bitmap in place.
// Pins: a move that loses a set bit or an AL extent (a crash after it would skip a resync).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { openFileStore } from '../../src/storage/file.js';
import { MetadataStore } from '../../src/storage/metadata/store.js';
import { withTempDir, sparseFile } from '../support/tmp.js';

const MIB = 1024 * 1024;

test('internal metadata moves to the new end with its bits and hot extents', () =>
  withTempDir('grow', async (dir) => {
    const p = join(dir, 'disk.img');
    await sparseFile(p, 8 * MIB);
    let store = await openFileStore(p);
    const created = await MetadataStore.create(store, { kind: 'internal', maxPeers: 1, nodeId: 0 });
    await created.ensurePeerSlots([1]);
    created.changeBits(1, [{ start: 10, count: 5 }], true);
    await created.flushBitmap();
    await created.commitAlChange([0, 1], []);
    const oldMd = created.layout.mdOffsetBytes;
    const oldData = created.layout.dataBytes;

    await truncate(p, 16 * MIB);
    await store.refreshSize();
    const room = await created.growData(store.sizeBytes);
    assert.ok(room > oldData && room < 16 * MIB, `room ${room}`);
    assert.ok(created.layout.mdOffsetBytes > oldMd);
    created.changeBits(1, [{ start: room / 4096 - 1, count: 1 }], true);
    await created.flushBitmap();
    assert.deepEqual(
      [...(await store.read(oldMd, 4096))].every((b) => b === 0),
      true,
      'the old superblock is zeroed',
    );
    await store.close();

    // Reopened as after a crash: the metadata is at the new end, not clean, with its AL.
    store = await openFileStore(p);
    const again = await MetadataStore.open(store, { kind: 'internal' });
    assert.equal(again.layout.mdOffsetBytes, created.layout.mdOffsetBytes);
    assert.equal(again.layout.dataBytes, room);
    assert.equal(again.alClean, false);
    const view = again.bootView();
    assert.deepEqual(view.bitmaps[1], [
      { start: 10, count: 5 },
      { start: room / 4096 - 1, count: 1 },
    ]);
    assert.deepEqual([...view.alExtents].sort(), [0, 1], 'the hot extents survived the move');
    await store.close();
  }));

test('a growth smaller than the metadata is not used', () =>
  withTempDir('grow', async (dir) => {
    const p = join(dir, 'disk.img');
    await sparseFile(p, 8 * MIB);
    const store = await openFileStore(p);
    const md = await MetadataStore.create(store, { kind: 'internal', maxPeers: 1, nodeId: 0 });
    const before = md.layout;
    await truncate(p, 8 * MIB + 4096);
    await store.refreshSize();
    assert.equal(md.capacityFor(store.sizeBytes), before.dataBytes, 'capacity says the same');
    assert.equal(await md.growData(store.sizeBytes), before.dataBytes);
    assert.equal(md.layout.mdOffsetBytes, before.mdOffsetBytes);
    await store.close();
  }));

test('external metadata grows its bitmap in place', () =>
  withTempDir('grow', async (dir) => {
    const data = join(dir, 'data.img');
    const meta = join(dir, 'md.img');
    await sparseFile(data, 8 * MIB);
    await sparseFile(meta, MIB);
    const ms = await openFileStore(meta);
    const md = await MetadataStore.create(ms, {
      kind: 'flex-external',
      dataDeviceBytes: 8 * MIB,
      maxPeers: 2,
      nodeId: 0,
    });
    await md.ensurePeerSlots([1, 2]);
    md.changeBits(2, [{ start: 100, count: 3 }], true);
    await md.flushBitmap();
    const room = await md.growData(24 * MIB);
    assert.equal(room, 24 * MIB);
    md.changeBits(2, [{ start: room / 4096 - 2, count: 2 }], true);
    md.changeBits(1, [{ start: 3000, count: 1 }], true);
    await md.flushBitmap();
    await md.setEffectiveSize(room);
    await ms.close();

    const ms2 = await openFileStore(meta);
    const again = await MetadataStore.open(ms2, {
      kind: 'flex-external',
      dataDeviceBytes: 24 * MIB,
    });
    assert.equal(again.superblock.effectiveSizeSectors * 512, 24 * MIB);
    const view = again.bootView();
    assert.deepEqual(view.bitmaps[2], [
      { start: 100, count: 3 },
      { start: room / 4096 - 2, count: 2 },
    ]);
    assert.deepEqual(view.bitmaps[1], [{ start: 3000, count: 1 }]);
    await ms2.close();
  }));

test('capacityFor is what growData gives, also for a growth within a bitmap bit', () =>
  withTempDir('grow', async (dir) => {
    const meta = join(dir, 'md.img');
    await sparseFile(meta, MIB);
    const ms = await openFileStore(meta);
    // 8 MiB - 512 and 8 MiB need the same number of bits: the grown layout must still be taken.
    const md = await MetadataStore.create(ms, {
      kind: 'flex-external',
      dataDeviceBytes: 8 * MIB - 512,
      maxPeers: 1,
      nodeId: 0,
    });
    assert.equal(md.layout.dataBytes, 8 * MIB - 512);
    assert.equal(md.capacityFor(8 * MIB), 8 * MIB);
    assert.equal(await md.growData(8 * MIB), 8 * MIB);
    assert.equal(md.capacityFor(4 * MIB), 4 * MIB, 'a shrunk data device says so');
    await ms.close();
  }));
