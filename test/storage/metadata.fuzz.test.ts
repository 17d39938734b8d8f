// Bad metadata, ten thousand times per reader: the superblock, activity-log and bitmap decoders,
// and MetadataStore.open over a whole image, fed random and mutated bytes (AL transactions
// re-signed so they pass the checksum and reach the replay). Properties: nothing throws but a
// MetadataError (TandemError) naming the problem; what does decode is sane (round-trips, bits
// inside the device, AL extents inside the device); nothing allocates from a length on disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryStore } from '../../src/storage/memory.js';
import { MetadataStore, superblockOffset } from '../../src/storage/metadata/store.js';
import {
  decodeSuperblock,
  encodeSuperblock,
  SUPERBLOCK_USED_BYTES,
} from '../../src/storage/metadata/superblock.js';
import {
  decodeAlTransaction,
  encodeAlTransaction,
  replayActivityLog,
  type AlTransaction,
} from '../../src/storage/metadata/al.js';
import { Bitmap } from '../../src/storage/metadata/bitmap.js';
import { crc32c } from '../../src/storage/metadata/crc32c.js';
import {
  AL_CONTEXT_PER_TRANSACTION,
  AL_TRANSACTION_BYTES,
  AL_UPDATES_PER_TRANSACTION,
  SUPERBLOCK_BYTES,
} from '../../src/storage/metadata/format.js';
import { TandemError } from '../../src/util/errors.js';

const RUNS = 10_000;
/** A small device keeps each run's copy of the image cheap; internal metadata at its end. */
const DEVICE_BYTES = 96 * 1024;
const EXTENT_BYTES = 4 * 1024 * 1024;

/** A freshly created image with peers, bits and an AL that holds a few extents (unclean). */
async function baseImage(): Promise<{ image: Buffer; layout: MetadataStore['layout'] }> {
  const mem = new MemoryStore(DEVICE_BYTES);
  const md = await MetadataStore.create(mem, {
    kind: 'internal',
    maxPeers: 2,
    nodeId: 0,
    alExtents: 67,
    // A ring of 2 transactions (DRBD's default is 8): the same code, a quarter of the bytes.
    alStripeSize4k: 2,
  });
  await md.ensurePeerSlots([1, 2]);
  md.changeBits(1, [{ start: 3, count: 7 }], true);
  await md.flushBitmap();
  await md.commitAlChange([0], []);
  return { image: mem.snapshot(), layout: md.layout };
}

function tolerated(e: unknown): void {
  if (e instanceof TandemError) return;
  throw e;
}

const mutations = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
  minLength: 1,
  maxLength: 8,
});

test(`superblock decoder: ${RUNS} mutated superblocks decode to a re-encodable value or an error`, async () => {
  const { image } = await baseImage();
  const at = superblockOffset('internal', 0, DEVICE_BYTES);
  const good = image.subarray(at, at + SUPERBLOCK_BYTES);
  assert.ok(decodeSuperblock(good).ok);
  fc.assert(
    fc.property(mutations, fc.option(fc.nat(SUPERBLOCK_BYTES)), (flips, cut) => {
      const b = Buffer.from(good);
      for (const [pos, val] of flips) b[pos % SUPERBLOCK_USED_BYTES] = val;
      const d = decodeSuperblock(cut === null ? b : b.subarray(0, cut));
      if (!d.ok) {
        assert.ok(d.error.message.length > 0);
        return;
      }
      // What decodes re-encodes to a block that decodes to the same value.
      const again = decodeSuperblock(encodeSuperblock(d.value));
      assert.ok(again.ok);
      assert.deepEqual(again.value, d.value);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: SUPERBLOCK_BYTES }), (b) => {
      const d = decodeSuperblock(b);
      assert.equal(typeof d.ok, 'boolean');
    }),
    { numRuns: RUNS },
  );
});

/** Any transaction the format can carry, with its checksum right (so replay sees it). */
const transaction: fc.Arbitrary<AlTransaction> = fc.record({
  trNumber: fc.nat({ max: 0xffffffff }),
  type: fc.oneof(fc.constant(0), fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })),
  updates: fc.array(
    fc.record({
      slot: fc.integer({ min: 0, max: 0xffff }),
      extent: fc.oneof(fc.nat(40), fc.constant(0xffffffff), fc.nat({ max: 0xffffffff })),
    }),
    { maxLength: AL_UPDATES_PER_TRANSACTION },
  ),
  contextSize: fc.integer({ min: 0, max: 0xffff }),
  contextStartSlot: fc.integer({ min: 0, max: 0xffff }),
  context: fc.array(fc.oneof(fc.nat(40), fc.constant(0xffffffff), fc.nat({ max: 0xffffffff })), {
    maxLength: 16,
  }),
});

function resign(b: Buffer): Buffer {
  b.writeUInt32BE(0, 8);
  b.writeUInt32BE(crc32c(0, b), 8);
  return b;
}

test(`activity log: ${RUNS} transactions and rings decode, replay or fail with a reason`, () => {
  fc.assert(
    fc.property(transaction, mutations, fc.boolean(), (tr, flips, signed) => {
      const b = encodeAlTransaction(tr);
      for (const [pos, val] of flips) b[pos % AL_TRANSACTION_BYTES] = val;
      if (signed) resign(b);
      const d = decodeAlTransaction(b);
      if (!d.ok) return;
      assert.ok(d.value.updates.length <= AL_UPDATES_PER_TRANSACTION);
      assert.equal(d.value.context.length, AL_CONTEXT_PER_TRANSACTION);
    }),
    { numRuns: RUNS },
  );
  const stripes = 1;
  const size4k = 4;
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(size4k - 1), transaction), { maxLength: size4k }),
      (placed) => {
        const ring = Buffer.alloc(stripes * size4k * AL_TRANSACTION_BYTES);
        for (const [i, tr] of placed) encodeAlTransaction(tr).copy(ring, i * AL_TRANSACTION_BYTES);
        const r = replayActivityLog(ring, stripes, size4k);
        if (!r.ok) {
          assert.ok(r.error.length > 0);
          return;
        }
        const hot = r.value.hotExtents;
        assert.deepEqual(
          [...hot].sort((a, b) => a - b),
          hot,
        );
        assert.equal(new Set(hot).size, hot.length);
      },
    ),
    { numRuns: RUNS },
  );
});

test(`bitmap: ${RUNS} random images decode with no bit past the device`, () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 31 }),
      fc.nat(700),
      fc.uint8Array({ maxLength: 1024 }),
      (maxPeers, bits, bytes) => {
        const d = Bitmap.decode(bytes, maxPeers, bits);
        if (!d.ok) {
          assert.match(d.error, /bitmap needs/);
          return;
        }
        for (let s = 0; s < maxPeers; s++) {
          assert.ok(d.value.count(s) <= bits);
          assert.equal(d.value.countRange(s, 0, bits), d.value.count(s));
        }
      },
    ),
    { numRuns: RUNS },
  );
});

test(`MetadataStore.open: ${RUNS} mutated images open or fail with a MetadataError`, async () => {
  const { image, layout } = await baseImage();
  const sbAt = superblockOffset('internal', 0, DEVICE_BYTES);
  const dataExtents = Math.ceil(layout.dataBytes / EXTENT_BYTES);
  const regions = [
    { at: sbAt, len: SUPERBLOCK_USED_BYTES },
    { at: layout.alOffsetBytes, len: layout.alBytes },
    { at: layout.bmOffsetBytes, len: Math.max(1, sbAt - layout.bmOffsetBytes) },
  ];
  let opened = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.nat(regions.length - 1),
      mutations,
      fc.option(fc.tuple(fc.nat(1), transaction)),
      async (region, flips, tr) => {
        const img = Buffer.from(image);
        const r = regions[region]!;
        for (const [pos, val] of flips) img[r.at + (pos % r.len)] = val;
        if (tr !== null) encodeAlTransaction(tr[1]).copy(img, layout.alOffsetBytes + tr[0] * 4096);
        const mem = new MemoryStore(0, { image: img, adopt: true });
        let md: MetadataStore;
        try {
          md = await MetadataStore.open(mem, { kind: 'internal' });
        } catch (e) {
          return tolerated(e);
        }
        opened++;
        const view = md.bootView();
        for (const e of view.alExtents)
          assert.ok(e < dataExtents, `AL extent ${e} past the device`);
        try {
          await md.applyActivityLog();
        } catch (e) {
          tolerated(e);
        }
      },
    ),
    { numRuns: RUNS },
  );
  assert.ok(opened > RUNS / 10, `only ${opened} mutated images opened: the fuzzer is too blunt`);
});

// Found by the fuzzer above: a valid transaction naming an extent past the device reached the
// engine as a hot extent (blocks the device does not have).
test('an activity-log extent past the device is dropped at open', async () => {
  const { image, layout } = await baseImage();
  const img = Buffer.from(image);
  const tr: AlTransaction = {
    trNumber: 0,
    type: 0,
    updates: [],
    contextSize: 0,
    contextStartSlot: 0,
    context: [1],
  };
  encodeAlTransaction(tr).copy(img, layout.alOffsetBytes);
  const md = await MetadataStore.open(new MemoryStore(0, { image: img, adopt: true }), {
    kind: 'internal',
  });
  assert.ok(layout.dataBytes <= EXTENT_BYTES);
  assert.deepEqual(
    md.bootView().alExtents.filter((e) => e > 0),
    [],
  );
});
