// Conformance with DRBD's own drbdmeta (drbd-utils): metadata we write is read by drbdmeta with
// the same values, metadata drbdmeta writes (create-md, restore-md, apply-al) is read by us, and
// both tools produce byte-identical images for the same operation.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePeers } from '../support/peers.js';
import { drbdmeta, parseDump, type Dump } from '../support/drbdmeta.js';
import { openFileStore } from '../../src/storage/file.js';
import { MetadataStore, type MetaPlacement } from '../../src/storage/metadata/store.js';
import { MDF, MDF_PEER } from '../../src/storage/metadata/format.js';
import type { Superblock } from '../../src/storage/metadata/superblock.js';
import { replayActivityLog, ringBlock } from '../../src/storage/metadata/al.js';
import { MIB, GIB } from '../../src/limits.js';

interface Case {
  readonly name: string;
  readonly kind: 'internal' | 'external' | 'flex-external';
  readonly index?: number;
  /** Data disk size (the only disk when internal). */
  readonly dataBytes: number;
  /** Meta disk size when external. */
  readonly metaBytes?: number;
  readonly maxPeers: number;
}

const cases: Case[] = [
  { name: 'internal, 64 MiB, max-peers 1', kind: 'internal', dataBytes: 64 * MIB, maxPeers: 1 },
  {
    name: 'internal, 64 MiB + 2.5 KiB + 100 B, max-peers 2',
    kind: 'internal',
    dataBytes: 64 * MIB + 2660,
    maxPeers: 2,
  },
  {
    name: 'internal, 10 GiB sparse, max-peers 2',
    kind: 'internal',
    dataBytes: 10 * GIB,
    maxPeers: 2,
  },
  {
    name: 'external index 1, max-peers 2',
    kind: 'external',
    index: 1,
    dataBytes: 96 * MIB + 1536,
    metaBytes: 260 * MIB,
    maxPeers: 2,
  },
  {
    name: 'flex-external, max-peers 1',
    kind: 'flex-external',
    dataBytes: 200 * MIB,
    metaBytes: 4 * MIB,
    maxPeers: 1,
  },
];

interface Files {
  readonly dir: string;
  readonly data: string;
  /** The file drbdmeta is pointed at. */
  readonly meta: string;
  /** drbdmeta's WHERE argument. */
  readonly where: string;
}

async function makeFiles(c: Case): Promise<Files> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-drbdmeta-'));
  const data = join(dir, 'data.img');
  await writeFile(data, '');
  await truncate(data, c.dataBytes);
  if (c.kind === 'internal') return { dir, data, meta: data, where: 'internal' };
  const meta = join(dir, 'meta.img');
  await writeFile(meta, '');
  await truncate(meta, c.metaBytes ?? 0);
  return { dir, data, meta, where: c.kind === 'external' ? String(c.index ?? 0) : 'flex-external' };
}

function placement(c: Case): MetaPlacement {
  return c.kind === 'internal'
    ? { kind: 'internal' }
    : { kind: c.kind, index: c.index ?? 0, dataDeviceBytes: Math.floor(c.dataBytes / 512) * 512 };
}

async function withMd<T>(c: Case, f: Files, fn: (md: MetadataStore) => Promise<T>): Promise<T> {
  const store = await openFileStore(f.meta);
  try {
    return await fn(await MetadataStore.open(store, placement(c)));
  } finally {
    await store.close();
  }
}

function assertSameSuperblock(d: Dump, sb: Superblock, md: MetadataStore): void {
  assert.equal(d.maxPeers, sb.maxPeers);
  assert.equal(d.mdSizeSect, sb.mdSizeSectors);
  assert.equal(d.mdOffset, md.layout.mdOffsetBytes);
  assert.equal(d.alOffset, md.layout.alOffsetBytes);
  assert.equal(d.bmOffset, md.layout.bmOffsetBytes);
  assert.equal(d.nodeId, sb.nodeId);
  assert.equal(d.currentUuid, sb.currentUuid);
  assert.equal(d.flags, sb.flags);
  assert.equal(d.alExtents, sb.alExtents);
  assert.equal(d.laSizeSect, sb.effectiveSizeSectors);
  assert.equal(d.bmBytePerBit, sb.bmBytesPerBit);
  assert.equal(d.deviceUuid, sb.deviceUuid);
  assert.equal(d.laPeerMaxBioSize, sb.laPeerMaxBioSize);
  assert.equal(d.alStripes, sb.alStripes);
  assert.equal(d.alStripeSize4k, sb.alStripeSize4k);
  assert.equal(d.peers.length, 32);
  d.peers.forEach((p, i) => assert.deepEqual(p, sb.peers[i], `peer[${i}]`));
  assert.deepEqual(d.history, sb.historyUuids);
}

function assertSameBitmap(d: Dump, md: MetadataStore): void {
  assert.equal(d.bitmaps.length, md.bitmap.maxPeers);
  for (let s = 0; s < md.bitmap.maxPeers; s++) {
    const ours = md.bitmap.slotWords(s);
    const theirs = d.bitmaps[s] ?? [];
    assert.ok(
      theirs.length >= Math.ceil(md.superblock.effectiveSizeSectors / 8 / 32),
      `slot ${s} dump is long enough`,
    );
    theirs.forEach((w, i) => assert.equal(w >>> 0, ours[i] ?? 0, `slot ${s} word ${i}`));
  }
  // drbdmeta's "# bits-set" is left over from the last slot it printed.
  assert.equal(d.bitsSet, md.bitmap.count(md.bitmap.maxPeers - 1));
}

/** A superblock with every field away from its default, as a long-running node would have. */
function lived(sb: Superblock, dataBytes: number): Superblock {
  return {
    ...sb,
    effectiveSizeSectors: Math.floor(dataBytes / 512),
    currentUuid: 0xa1b2c3d4e5f60789n,
    deviceUuid: 0x0123456789abcdefn,
    flags: MDF.CONSISTENT | MDF.WAS_UP_TO_DATE | MDF.AL_CLEAN,
    laPeerMaxBioSize: 1048576,
    nodeId: 1,
    peers: sb.peers.map((p, i) =>
      i === 0 || i === 2
        ? {
            bitmapUuid: 0xfeedface00000000n + BigInt(i),
            bitmapDagtag: 77n + BigInt(i),
            flags: MDF_PEER.CONNECTED | MDF_PEER.DEVICE_SEEN | MDF_PEER.NODE_EXISTS,
            bitmapIndex: i === 0 ? 0 : sb.maxPeers - 1,
          }
        : p,
    ),
    historyUuids: sb.historyUuids.map((_, i) => (i < 3 ? 0x1111000000000000n + BigInt(i) : 0n)),
  };
}

function setSomeBits(md: MetadataStore): void {
  const bm = md.bitmap;
  const n = bm.bitsPerSlot;
  bm.setRange(0, 0, 1);
  bm.setRange(0, 5, 70);
  bm.setRange(0, n - 3, n);
  bm.setRange(bm.maxPeers - 1, Math.floor(n / 2), Math.floor(n / 2) + 1000);
  bm.setRange(bm.maxPeers - 1, 31, 33);
}

describe('drbdmeta conformance', () => {
  for (const c of cases) {
    describe(c.name, () => {
      test('our create-md is read by drbdmeta dump-md with the same values, bitmap included', async (t: TestContext) => {
        if (!requirePeers(t, 'drbd-utils', 'drbdmeta')) return;
        const f = await makeFiles(c);
        try {
          const store = await openFileStore(f.meta);
          const md = await MetadataStore.create(store, { ...placement(c), maxPeers: c.maxPeers });
          assertSameSuperblock(
            parseDump(await drbdmeta(f.meta, f.where, 'dump-md')),
            md.superblock,
            md,
          );
          await md.writeSuperblock(lived(md.superblock, md.layout.dataBytes));
          setSomeBits(md);
          await md.flushBitmap();
          await store.close();
          const d = parseDump(await drbdmeta(f.meta, f.where, 'dump-md'));
          assertSameSuperblock(d, md.superblock, md);
          assertSameBitmap(d, md);
        } finally {
          await rm(f.dir, { recursive: true, force: true });
        }
      });

      test("drbdmeta's create-md is attached by us, and ours writes the same bytes", async (t: TestContext) => {
        if (!requirePeers(t, 'drbd-utils', 'drbdmeta')) return;
        const f = await makeFiles(c);
        try {
          await drbdmeta(f.meta, f.where, 'create-md', String(c.maxPeers));
          const theirs = await withMd(c, f, async (md) => {
            assertSameSuperblock(
              parseDump(await drbdmeta(f.meta, f.where, 'dump-md')),
              md.superblock,
              md,
            );
            assert.ok(md.alClean);
            for (let s = 0; s < c.maxPeers; s++) assert.equal(md.bitmap.count(s), 0);
            return metadataBytes(f.meta, md);
          });
          const store = await openFileStore(f.meta);
          const md = await MetadataStore.create(store, {
            ...placement(c),
            maxPeers: c.maxPeers,
            alExtents: 257,
          });
          const ours = await metadataBytes(f.meta, md);
          await store.close();
          assert.ok(ours.equals(theirs), 'superblock, AL and bitmap bytes identical');
        } finally {
          await rm(f.dir, { recursive: true, force: true });
        }
      });

      test('a dump edited and loaded with drbdmeta restore-md is read back by us', async (t: TestContext) => {
        if (!requirePeers(t, 'drbd-utils', 'drbdmeta')) return;
        const f = await makeFiles(c);
        try {
          await drbdmeta(f.meta, f.where, 'create-md', String(c.maxPeers));
          const dump = await drbdmeta(f.meta, f.where, 'dump-md');
          const sizeSect = await withMd(c, f, (md) => Promise.resolve(md.layout.dataBytes / 512));
          const edited = dump
            .replace(/^node-id -1;/m, 'node-id 0;')
            .replace(/^current-uuid 0x[0-9A-F]+;/m, 'current-uuid 0xDEADBEEFCAFEF00D;')
            .replace(/^flags 0x[0-9A-F]+;/m, 'flags 0x00000091;')
            .replace(/^la-size-sect \d+;/m, `la-size-sect ${sizeSect};`)
            .replace(/^device-uuid 0x[0-9A-F]+;/m, 'device-uuid 0x00000000000000AA;')
            .replace(
              /(^peer\[1\] \{\s*bitmap-index )-1;\s*bitmap-uuid 0x[0-9A-F]+;/m,
              '$10;\n    bitmap-uuid 0x0123456789ABCDEF;',
            )
            .replace(
              /^history-uuids \{\s*0x[0-9A-F]+;/m,
              'history-uuids {\n        0x5555555555555555;',
            )
            .replace(
              /^bitmap\[0\] \{[^}]*\}/m,
              'bitmap[0] {\n   0x00000000000000F0; 0x8000000000000001;\n}',
            )
            // drbdmeta writes as many interleaved words as the LAST slot lists: list as many there.
            .replace(
              /^bitmap\[1\] \{[^}]*\}/m,
              'bitmap[1] {\n   0x0000000000000000; 0x0000000300000000;\n}',
            );
          const file = join(f.dir, 'edited.dump');
          await writeFile(file, edited);
          await drbdmeta(f.meta, f.where, 'restore-md', file);
          await withMd(c, f, (md) => {
            const sb = md.superblock;
            assert.equal(sb.nodeId, 0);
            assert.equal(sb.currentUuid, 0xdeadbeefcafef00dn);
            assert.equal(sb.flags, 0x91);
            assert.equal(sb.effectiveSizeSectors, sizeSect);
            assert.equal(sb.deviceUuid, 0xaan);
            assert.deepEqual(sb.peers[1], {
              bitmapIndex: 0,
              bitmapUuid: 0x0123456789abcdefn,
              bitmapDagtag: 0n,
              flags: 0,
            });
            assert.equal(sb.historyUuids[0], 0x5555555555555555n);
            const set: number[] = [];
            for (let b = md.bitmap.findNext(0, 0); b >= 0; b = md.bitmap.findNext(0, b + 1))
              set.push(b);
            assert.deepEqual(set, [4, 5, 6, 7, 64, 127]);
            if (c.maxPeers > 1) {
              assert.equal(md.bitmap.count(1), 2);
              assert.ok(md.bitmap.get(1, 96) && md.bitmap.get(1, 97));
            }
            return Promise.resolve();
          });
        } finally {
          await rm(f.dir, { recursive: true, force: true });
        }
      });
    });
  }

  const alCases = [
    {
      name: 'default ring, 7 extents (evictions)',
      alExtents: 7,
      alStripes: 1,
      alStripeSize4k: 8,
      torn: false,
    },
    {
      name: '2 stripes of 64 KiB, 61 extents',
      alExtents: 61,
      alStripes: 2,
      alStripeSize4k: 16,
      torn: false,
    },
    {
      name: 'default ring, newest transaction torn',
      alExtents: 7,
      alStripes: 1,
      alStripeSize4k: 8,
      torn: true,
    },
  ];
  for (const ac of alCases) {
    test(`our AL after a simulated primary crash (${ac.name}): drbdmeta apply-al and ours agree`, async (t: TestContext) => {
      if (!requirePeers(t, 'drbd-utils', 'drbdmeta')) return;
      const c: Case = { name: 'al', kind: 'internal', dataBytes: 512 * MIB, maxPeers: 2 };
      const f = await makeFiles(c);
      try {
        const store = await openFileStore(f.meta);
        const md = await MetadataStore.create(store, {
          kind: 'internal',
          maxPeers: 2,
          alExtents: ac.alExtents,
          alStripes: ac.alStripes,
          alStripeSize4k: ac.alStripeSize4k,
        });
        await md.writeSuperblock({
          ...lived(md.superblock, md.layout.dataBytes),
          flags: MDF.CONSISTENT | MDF.PRIMARY_IND,
        });
        const writes = [0, 3, 4, 9, 100, 101, 7, 120, 121, 122, 123, 124, 125, 126, 3, 127].map(
          (e) => e * 4 * MIB + 8192,
        );
        let lastPlanAt = 0;
        for (const [i, at] of writes.entries()) {
          const before = md.al.activeExtents().join();
          await md.beginWrite(at, 4096);
          if (md.al.activeExtents().join() !== before) {
            const r = replayActivityLog(
              await store.read(md.layout.alOffsetBytes, md.layout.alBytes),
              ac.alStripes,
              ac.alStripeSize4k,
            );
            assert.ok(r.ok);
            lastPlanAt =
              md.layout.alOffsetBytes +
              ringBlock(r.value.newest?.index ?? 0, ac.alStripes, ac.alStripeSize4k) * 4096;
          }
          if (i % 3 === 0) md.bitmap.setRange(1, at / 4096, at / 4096 + 1);
          md.endWrite(at, 4096);
        }
        assert.ok(md.al.activeExtents().length > 0);
        if (ac.torn) {
          // The crash hit the newest transaction: its second half never reached the disk.
          await store.write(lastPlanAt + 2048, Buffer.alloc(2048));
        }
        await store.close(); // the crash: no markClean, the last bits are only in memory
        const copy = join(f.dir, 'ours.img');
        await copyFile(f.meta, copy);
        await drbdmeta(f.meta, 'internal', 'apply-al');
        const s2 = await openFileStore(copy);
        const md2 = await MetadataStore.open(s2, { kind: 'internal' });
        assert.ok(!md2.alClean);
        const r = await md2.applyActivityLog();
        if (!ac.torn) assert.deepEqual(r.extents, md.al.activeExtents());
        else assert.ok(r.extents.length > 0);
        const ours = await metadataBytes(copy, md2);
        await s2.close();
        // Superblock and AL byte for byte. drbdmeta also sets the bits of a last, partial extent
        // that lie past the end of the device, which our bitmap does not hold: compare decoded.
        const theirs = await metadataBytes(f.meta, md2);
        const head = 4096 + md2.layout.alBytes;
        assert.ok(
          ours.subarray(0, head).equals(theirs.subarray(0, head)),
          'superblock and AL identical',
        );
        await withMd(c, f, (mdTheirs) => {
          for (let s = 0; s < 2; s++) {
            assert.deepEqual(mdTheirs.bitmap.slotWords(s), md2.bitmap.slotWords(s), `slot ${s}`);
          }
          return Promise.resolve();
        });
        const d = parseDump(await drbdmeta(f.meta, 'internal', 'dump-md'));
        assert.ok((d.flags & MDF.AL_CLEAN) !== 0);
        assert.equal(d.alStripes, ac.alStripes);
      } finally {
        await rm(f.dir, { recursive: true, force: true });
      }
    });
  }
});

/** The superblock, the AL ring and the part of the bitmap our layout uses. */
async function metadataBytes(path: string, md: MetadataStore): Promise<Buffer> {
  const h = await open(path, 'r');
  try {
    const l = md.layout;
    const read = async (at: number, n: number): Promise<Buffer> => {
      const b = Buffer.alloc(n);
      await h.read(b, 0, n, at);
      return b;
    };
    return Buffer.concat([
      await read(l.mdOffsetBytes, 4096),
      await read(l.alOffsetBytes, l.alBytes),
      await read(l.bmOffsetBytes, Math.min(l.bmRegionBytes, md.bitmap.pageCount * 4096 + 4096)),
    ]);
  } finally {
    await h.close();
  }
}
