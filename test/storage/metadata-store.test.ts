// MetadataStore on a MemoryStore: the engine-facing operations (persistMeta, peer slots, bit
// changes, alCommit, bootView) survive a reopen and a crash, and bad metadata is refused clearly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../src/storage/memory.js';
import { MetadataStore } from '../../src/storage/metadata/store.js';
import { MDF } from '../../src/storage/metadata/format.js';
import { MetadataError } from '../../src/util/errors.js';
import { MIB } from '../../src/limits.js';

const meta = {
  currentUuid: 0x1111222233334445n,
  bitmapUuids: { 0: 0xaaaan, 2: 0xbbbbn },
  historyUuids: [0x99n, 0x98n],
  flags: { consistent: true, wasUpToDate: true, crashedPrimary: true },
};

test('engine metadata, peer slots and bits round-trip through the disk', async () => {
  const mem = new MemoryStore(40 * MIB);
  const md = await MetadataStore.create(mem, { kind: 'internal', maxPeers: 2, nodeId: 1 });
  await md.ensurePeerSlots([0, 2]);
  assert.equal(md.bitmapSlotOf(0), 0);
  assert.equal(md.bitmapSlotOf(2), 1);
  await assert.rejects(md.ensurePeerSlots([3]), MetadataError);
  await md.persistMeta(meta);
  md.changeBits(
    0,
    [
      { start: 10, count: 5 },
      { start: 100, count: 1 },
    ],
    true,
  );
  md.changeBits(2, [{ start: 0, count: 3000 }], true);
  md.changeBits(2, [{ start: 1000, count: 10 }], false);
  await md.flushBitmap();
  const again = await MetadataStore.open(mem, { kind: 'internal' });
  const view = again.bootView();
  assert.deepEqual(view.meta, meta);
  assert.deepEqual(view.bitmaps[0], [
    { start: 10, count: 5 },
    { start: 100, count: 1 },
  ]);
  assert.deepEqual(view.bitmaps[2], [
    { start: 0, count: 1000 },
    { start: 1010, count: 1990 },
  ]);
  assert.ok((again.superblock.flags & MDF.PRIMARY_IND) !== 0);
  assert.throws(() => again.changeBits(5, [{ start: 0, count: 1 }], true), MetadataError);
});

test('alCommit: the AL holds exactly the added extents, and removed ones have their bits on disk first', async () => {
  const mem = new MemoryStore(64 * MIB);
  const md = await MetadataStore.create(mem, {
    kind: 'internal',
    maxPeers: 1,
    nodeId: 0,
    alExtents: 7,
  });
  await md.ensurePeerSlots([1]);
  await md.commitAlChange([1, 2, 3], []);
  md.changeBits(1, [{ start: 2 * 1024 + 7, count: 1 }], true); // a write in extent 2, peer away
  await md.commitAlChange([4, 5], [2]);
  await assert.rejects(md.commitAlChange([6, 7, 8, 9, 10, 11], []), MetadataError);
  // Crash: nothing unflushed survives; the bit must be on disk (extent 2 left the AL).
  const image = mem.crashImage(() => false);
  const after = await MetadataStore.open(MemoryStore.adopt(image), { kind: 'internal' });
  assert.ok(!after.alClean);
  assert.deepEqual(after.bootView().alExtents, [1, 3, 4, 5]);
  assert.ok(after.bitmap.get(0, 2 * 1024 + 7), 'bit of the removed extent survived');
  const r = await after.applyActivityLog();
  assert.deepEqual(r.extents, [1, 3, 4, 5]);
  assert.equal(after.bitmap.count(0), 4 * 1024 + 1);
  assert.ok(after.alClean);
});

test('open refuses metadata that does not match the device or placement, naming what is wrong', async () => {
  const mem = new MemoryStore(16 * MIB);
  await assert.rejects(MetadataStore.open(mem, { kind: 'internal' }), /no v09 metadata magic/);
  const md = await MetadataStore.create(mem, { kind: 'internal', maxPeers: 1 });
  await md.writeSuperblock({
    ...md.superblock,
    bmOffsetSectors: md.superblock.bmOffsetSectors - 8,
  });
  await assert.rejects(
    MetadataStore.open(mem, { kind: 'internal' }),
    /bm_offset is -\d+, expected -\d+/,
  );
  await assert.rejects(
    MetadataStore.open(mem, { kind: 'flex-external', dataDeviceBytes: 8 * MIB }),
    MetadataError,
  );
});

test('an unreadable activity log after a crash means a full resync, never less', async () => {
  const mem = new MemoryStore(16 * MIB);
  const md = await MetadataStore.create(mem, { kind: 'internal', maxPeers: 2 });
  await md.writeSuperblock({ ...md.superblock, flags: MDF.PRIMARY_IND });
  await mem.writeZeroes(md.layout.alOffsetBytes, md.layout.alBytes);
  const again = await MetadataStore.open(mem, { kind: 'internal' });
  const r = await again.applyActivityLog();
  assert.ok(r.fullSync);
  assert.equal(again.bitmap.count(0), again.bitmap.bitsPerSlot);
  assert.equal(again.bitmap.count(1), again.bitmap.bitsPerSlot);
});
