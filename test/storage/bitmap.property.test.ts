// Property tests: the Bitmap against a plain boolean-array model (set/clear ranges, count,
// find-next, serialize/deserialize, dirty pages), and the codecs never throw on arbitrary bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Bitmap, bitsCovered, bitsTouching } from '../../src/storage/metadata/bitmap.js';
import {
  decodeSuperblock,
  encodeSuperblock,
  type Superblock,
} from '../../src/storage/metadata/superblock.js';
import {
  decodeAlTransaction,
  encodeAlTransaction,
  replayActivityLog,
} from '../../src/storage/metadata/al.js';
import {
  AL_TR_UPDATE,
  PEER_SLOTS,
  HISTORY_UUIDS,
  MD_MAGIC_V09,
} from '../../src/storage/metadata/format.js';

type Op = { kind: 'set' | 'clear'; slot: number; a: number; b: number } | { kind: 'flush' };

function opArb(maxPeers: number, bits: number): fc.Arbitrary<Op> {
  const range = fc.tuple(fc.integer({ min: 0, max: bits }), fc.integer({ min: 0, max: bits }));
  return fc.oneof(
    fc
      .record({
        kind: fc.constantFrom('set' as const, 'clear' as const),
        slot: fc.integer({ min: 0, max: maxPeers - 1 }),
        r: range,
      })
      .map(({ kind, slot, r }) => ({ kind, slot, a: Math.min(...r), b: Math.max(...r) })),
    fc.constant({ kind: 'flush' as const }),
  );
}

test('Bitmap behaves like an array of booleans per slot', () => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 1, max: 4 })
        .chain((maxPeers) =>
          fc
            .integer({ min: 0, max: 3000 })
            .chain((bits) =>
              fc.tuple(
                fc.constant(maxPeers),
                fc.constant(bits),
                fc.array(opArb(maxPeers, bits), { maxLength: 30 }),
              ),
            ),
        ),
      ([maxPeers, bits, ops]) => {
        const bm = new Bitmap(maxPeers, bits);
        const model = Array.from({ length: maxPeers }, () => new Array<boolean>(bits).fill(false));
        let onDisk = Buffer.from(bm.encode());
        for (const op of ops) {
          if (op.kind === 'flush') {
            // Write back only the dirty pages: the result must equal a full encode.
            const img = Buffer.from(onDisk);
            for (const p of bm.takeDirtyPages()) bm.encodePage(p).copy(img, p * 4096);
            onDisk = img;
            assert.ok(onDisk.equals(bm.encode()), 'dirty pages are all that changed');
            continue;
          }
          const row = model[op.slot] ?? [];
          let changed = 0;
          for (let i = op.a; i < op.b; i++) {
            if (row[i] !== (op.kind === 'set')) changed++;
            row[i] = op.kind === 'set';
          }
          const got =
            op.kind === 'set'
              ? bm.setRange(op.slot, op.a, op.b)
              : bm.clearRange(op.slot, op.a, op.b);
          assert.equal(got, changed);
        }
        for (let s = 0; s < maxPeers; s++) {
          const row = model[s] ?? [];
          assert.equal(bm.count(s), row.filter(Boolean).length);
          for (let i = 0; i < bits; i++) assert.equal(bm.get(s, i), row[i]);
          // findNext for both values from a few starting points.
          for (const from of [0, 1, 31, 32, 33, 64, Math.floor(bits / 2), bits - 1]) {
            if (from < 0 || from >= bits) continue;
            assert.equal(bm.findNext(s, from, true), row.indexOf(true, from));
            assert.equal(bm.findNext(s, from, false), row.indexOf(false, from));
          }
          const a = Math.floor(bits / 3);
          const b = Math.floor((2 * bits) / 3);
          assert.equal(bm.countRange(s, a, b), row.slice(a, b).filter(Boolean).length);
        }
        // Serialize / deserialize round trip.
        const back = Bitmap.decode(bm.encode(), maxPeers, bits);
        assert.ok(back.ok);
        for (let s = 0; s < maxPeers; s++) {
          assert.deepEqual(back.value.slotWords(s), bm.slotWords(s));
          assert.equal(back.value.count(s), bm.count(s));
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('the interleaved layout: word w of slot s is on-disk word w*maxPeers+s, little-endian', () => {
  const bm = new Bitmap(3, 200);
  bm.setRange(1, 32, 33); // slot 1, word 1, bit 0
  bm.setRange(2, 7, 8); // slot 2, word 0, bit 7
  const img = bm.encode();
  assert.equal(img.readUInt32LE((1 * 3 + 1) * 4), 1);
  assert.equal(img.readUInt32LE((0 * 3 + 2) * 4), 0x80);
  assert.equal(bm.count(0), 0);
});

test('decode drops bits past the end of the device', () => {
  const img = Buffer.alloc(4096, 0xff);
  const d = Bitmap.decode(img, 2, 70);
  assert.ok(d.ok);
  assert.equal(d.value.count(0), 70);
  assert.equal(d.value.count(1), 70);
  assert.ok(!Bitmap.decode(Buffer.alloc(8), 2, 70).ok);
});

test('bitsTouching rounds outward, bitsCovered inward', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 1 << 30 }),
      fc.integer({ min: 1, max: 1 << 24 }),
      (off, len) => {
        const [a, b] = bitsTouching(off, len);
        const [c, d] = bitsCovered(off, len);
        assert.ok(a * 4096 <= off && b * 4096 >= off + len);
        assert.ok(c * 4096 >= off && (d <= c || d * 4096 <= off + len));
        assert.ok(a <= c && (d <= c || d <= b));
      },
    ),
  );
});

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const superblockArb: fc.Arbitrary<Superblock> = fc.record({
  effectiveSizeSectors: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  currentUuid: u64,
  members: u64,
  deviceUuid: u64,
  flags: fc.integer({ min: 0, max: 0xffffffff }),
  mdSizeSectors: fc.integer({ min: 0, max: 0xffffffff }),
  alOffsetSectors: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  alExtents: fc.integer({ min: 0, max: 0xffffffff }),
  bmOffsetSectors: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  bmBytesPerBit: fc.constantFrom(4096, 8192, 1 << 20),
  laPeerMaxBioSize: fc.integer({ min: 0, max: 0xffffffff }),
  maxPeers: fc.integer({ min: 1, max: 31 }),
  nodeId: fc.integer({ min: -1, max: 31 }),
  alStripes: fc.integer({ min: 1, max: 4 }),
  alStripeSize4k: fc.integer({ min: 1, max: 64 }),
  peers: fc.array(
    fc.record({
      bitmapUuid: u64,
      bitmapDagtag: u64,
      flags: fc.integer({ min: 0, max: 0xffffffff }),
      bitmapIndex: fc.integer({ min: -1, max: 31 }),
    }),
    { minLength: PEER_SLOTS, maxLength: PEER_SLOTS },
  ),
  historyUuids: fc.array(u64, { minLength: HISTORY_UUIDS, maxLength: HISTORY_UUIDS }),
});

test('superblock encode/decode round-trips every valid value', () => {
  fc.assert(
    fc.property(superblockArb, (sb) => {
      const b = encodeSuperblock(sb);
      assert.equal(b.byteLength, 4096);
      assert.equal(b.readUInt32BE(60), MD_MAGIC_V09);
      const d = decodeSuperblock(b);
      assert.ok(d.ok);
      assert.deepEqual(d.value, sb);
    }),
  );
});

test('decoders never throw on arbitrary bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 4200 }), fc.boolean(), (bytes, magic) => {
      const b = Buffer.from(bytes);
      if (magic && b.byteLength >= 64) b.writeUInt32BE(MD_MAGIC_V09, 60);
      decodeSuperblock(b);
      decodeAlTransaction(b);
      Bitmap.decode(b, 2, 100);
      replayActivityLog(Buffer.concat([b, Buffer.alloc(8 * 4096)]).subarray(0, 8 * 4096), 1, 8);
    }),
    { numRuns: 300 },
  );
});

test('AL transactions round-trip and any flipped byte is caught by the checksum', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.array(
        fc.record({
          slot: fc.integer({ min: 0, max: 6000 }),
          extent: fc.integer({ min: 0, max: 0xfffffffe }),
        }),
        { maxLength: 64 },
      ),
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 919 }),
      fc.integer({ min: 0, max: 4095 }),
      (trNumber, updates, context, flip) => {
        const tr = {
          trNumber,
          type: AL_TR_UPDATE,
          updates,
          contextSize: 1237,
          contextStartSlot: 0,
          context,
        };
        const b = encodeAlTransaction(tr);
        const d = decodeAlTransaction(b);
        assert.ok(d.ok);
        assert.deepEqual(d.value.updates, updates);
        assert.equal(d.value.trNumber, trNumber);
        assert.deepEqual(d.value.context.slice(0, context.length), context);
        b[flip] = (b[flip] ?? 0) ^ 0x01;
        assert.ok(!decodeAlTransaction(b).ok);
      },
    ),
    { numRuns: 100 },
  );
});
