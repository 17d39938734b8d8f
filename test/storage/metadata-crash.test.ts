// Crash safety of the metadata: a scenario of data writes, AL transactions (with evictions),
// bitmap write-back, superblock updates and a resync point runs on a MemoryStore; after EVERY
// completed store write we crash it (everything survives, nothing survives, the last write torn
// at each sector, random subsets) and check that the metadata loads and that, after recovery,
// the out-of-sync set covers every block written since the last point both copies were equal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore, type CrashSelector } from '../../src/storage/memory.js';
import { sliceStore } from '../../src/storage/slice.js';
import { MetadataStore } from '../../src/storage/metadata/store.js';
import { MDF } from '../../src/storage/metadata/format.js';
import { SeededRandom } from '../../src/util/prng.js';
import { MIB } from '../../src/limits.js';
import type { BlockStore, WriteOptions, ZeroOptions } from '../../src/storage/types.js';

/** Calls `after` once each write (of any kind) or flush has completed. */
class HookedStore implements BlockStore {
  constructor(
    private readonly inner: MemoryStore,
    private readonly after: () => Promise<void>,
  ) {}
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get name(): string {
    return this.inner.name;
  }
  read(o: number, n: number): Promise<Buffer> {
    return this.inner.read(o, n);
  }
  async write(
    o: number,
    d: Uint8Array | readonly Uint8Array[],
    opts?: WriteOptions,
  ): Promise<void> {
    await this.inner.write(o, d, opts);
    await this.after();
  }
  async flush(): Promise<void> {
    await this.inner.flush();
    await this.after();
  }
  async discard(o: number, n: number): Promise<void> {
    await this.inner.discard(o, n);
    await this.after();
  }
  async writeZeroes(o: number, n: number, opts?: ZeroOptions): Promise<void> {
    await this.inner.writeZeroes(o, n, opts);
    await this.after();
  }
  extents(o: number, n: number): ReturnType<BlockStore['extents']> {
    return this.inner.extents(o, n);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const DISK_BYTES = 20 * MIB + 64 * 1024; // 5 AL extents of data: more than the 3 AL slots
const BLOCK = 4096;

test('metadata survives a crash at every write boundary and the out-of-sync set covers every write', async () => {
  const mem = new MemoryStore(DISK_BYTES);
  const random = new SeededRandom(20261121);
  /** Blocks whose data write was issued since the last in-sync point. */
  let expected = new Set<number>();
  let armed = false;
  let crashes = 0;
  const failures: string[] = [];
  let step = 'create';

  const check = async (): Promise<void> => {
    if (!armed) return;
    const pending = mem.pendingWrites + 1;
    const selectors: [string, CrashSelector][] = [
      ['all survive', () => true],
      ['none survive', () => false],
      ['random', () => random.int(2) === 1],
      ['random', () => random.int(2) === 1],
    ];
    for (let k = 0; k < 8; k++) {
      selectors.push([`last write torn after sector ${k}`, (w, s, n) => w < n - 1 || s < k]);
      selectors.push([
        `only last write, torn after sector ${k}`,
        (w, s, n) => w === n - 1 && s < k,
      ]);
    }
    const want = [...expected];
    for (const [name, select] of selectors) {
      crashes++;
      // Only the metadata region matters to recovery: compute just that part of the image.
      const image = Buffer.alloc(DISK_BYTES);
      mem
        .crashImage(select, { lastInFlight: true, fromBytes: metaStart, toBytes: DISK_BYTES })
        .copy(image, metaStart);
      await verify(image, want, `${step}: ${name} (${pending} pending)`);
    }
  };
  let metaStart = 0;

  async function verify(image: Buffer, want: number[], where: string): Promise<void> {
    try {
      const md = await MetadataStore.open(MemoryStore.adopt(image), { kind: 'internal' });
      if (!md.alClean) await md.applyActivityLog();
      const missing = want.filter((b) => !md.bitmap.get(0, b));
      if (missing.length > 0)
        failures.push(`${where}: blocks ${missing.slice(0, 5).join(',')} not out of sync`);
    } catch (e) {
      failures.push(`${where}: metadata does not load: ${(e as Error).message}`);
    }
  }

  const disk = new HookedStore(mem, check);
  const md = await MetadataStore.create(disk, { kind: 'internal', maxPeers: 2, alExtents: 3 });
  const data = sliceStore(disk, 0, md.layout.dataBytes);
  metaStart = md.layout.bmOffsetBytes;
  await md.writeSuperblock({
    ...md.superblock,
    effectiveSizeSectors: md.layout.dataBytes / 512,
    nodeId: 0,
  });
  armed = true;

  const blocks = md.layout.bitsPerSlot;
  const extents = Math.ceil(md.layout.dataBytes / (4 * MIB));
  // A connected write is in sync again once both copies have it (here: when it completes);
  // a disconnected one stays out of sync until a resync: its bit is set before it is issued.
  const inSync = new Set<number>();
  const writeBlock = async (b: number, disconnected: boolean): Promise<void> => {
    step = `${disconnected ? 'disconnected' : 'connected'} write block ${b}`;
    await md.beginWrite(b * BLOCK, BLOCK);
    const already = expected.has(b);
    expected.add(b);
    if (disconnected) md.bitmap.setRange(0, b, b + 1);
    await data.write(b * BLOCK, Buffer.alloc(BLOCK, (b % 251) + 1));
    md.endWrite(b * BLOCK, BLOCK);
    if (!disconnected && !already) {
      expected.delete(b);
      inSync.add(b);
    }
  };

  step = 'promote';
  await md.updateSuperblock((sb) => ({
    ...sb,
    flags: (sb.flags | MDF.PRIMARY_IND | MDF.CONSISTENT) & ~MDF.AL_CLEAN,
  }));
  // Phase 1: disconnected primary, writes all over the disk (evicting AL extents).
  for (let i = 0; i < 24; i++) {
    const e = (i * 5) % extents;
    await writeBlock(Math.min(blocks - 1, e * 1024 + ((i * 37) % 1024)), true);
    if (i % 7 === 6) {
      step = `flush bitmap after write ${i}`;
      await md.flushBitmap();
    }
  }
  step = 'new current UUID';
  await md.updateSuperblock((sb) => ({
    ...sb,
    currentUuid: 0x1234567890abcdefn,
    historyUuids: [sb.currentUuid, ...sb.historyUuids.slice(0, 31)],
  }));
  // Phase 2: the peer catches up (resync done): bits cleared and written, a new in-sync point.
  step = 'resync done';
  // Both copies are equal from here: the bits may go, and writes after this must be covered.
  expected = new Set();
  md.bitmap.clearRange(0, 0, blocks);
  await md.flushBitmap();
  step = 'clean';
  await md.markClean();
  // Phase 3: connected writes (replicated, not in the bitmap: only the AL covers them on a crash).
  for (let i = 0; i < 20; i++) {
    const e = (i * 3 + 1) % extents;
    await writeBlock(Math.min(blocks - 1, e * 1024 + ((i * 101) % 1024)), false);
  }
  // Phase 4: the connection drops mid-way; more writes go to the bitmap.
  for (let i = 0; i < 12; i++)
    await writeBlock(Math.min(blocks - 1, ((i * 7) % extents) * 1024 + i), true);
  step = 'final flush';
  await md.flushBitmap();
  armed = false;
  assert.ok(inSync.size > 0);
  assert.ok(crashes > 1000, `only ${crashes} crash images checked`);
  assert.deepEqual(failures.slice(0, 10), []);
});

test('a torn superblock write leaves loadable metadata whose first sector decides', async () => {
  const mem = new MemoryStore(16 * MIB);
  const md = await MetadataStore.create(mem, { kind: 'internal', maxPeers: 1 });
  await mem.flush();
  await md.updateSuperblock((sb) => ({
    ...sb,
    flags: sb.flags & ~MDF.AL_CLEAN,
    currentUuid: 0xabcn,
  }));
  for (let k = 0; k <= 8; k++) {
    const image = mem.crashImage((_w, s) => s < k, { lastInFlight: true });
    const m = await MetadataStore.open(MemoryStore.adopt(image), { kind: 'internal' });
    // Flags and the current UUID live in the first sector: old or new together, never mixed.
    assert.equal(m.alClean, k === 0, `torn after ${k} sectors`);
    assert.equal(m.superblock.currentUuid, k === 0 ? 4n : 0xabcn);
  }
});
