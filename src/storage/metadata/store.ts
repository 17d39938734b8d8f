// MetadataStore: reads and writes v09 metadata (superblock, bitmap, activity log) on a BlockStore,
// in the order crash safety needs: bitmap pages before the AL forgets their extent, the AL
// transaction (FUA) before the data write it covers, the bitmap before the superblock says clean.
import { assert } from '../../util/assert.js';
import { MetadataError } from '../../util/errors.js';
import type { BlockStore } from '../types.js';
import {
  ActivityLog,
  initializedAlBlock,
  replayActivityLog,
  type AlReplay,
  type AlTransactionPlan,
} from './al.js';
import { Bitmap } from './bitmap.js';
import {
  AL_CONTEXT_PER_TRANSACTION,
  AL_EXTENT_SHIFT,
  AL_STRIPE_SIZE_4K_DEFAULT,
  AL_STRIPES_DEFAULT,
  BM_BYTES_PER_BIT,
  HISTORY_UUIDS,
  MAX_PEERS_MAX,
  MD_BLOCK_BYTES,
  MD_EXTERNAL_SLOT_SECTORS,
  MDF,
  MDF_PEER,
  NODE_ID_MAX,
  PEER_SLOTS,
  SUPERBLOCK_BYTES,
  UUID_JUST_CREATED,
} from './format.js';
import {
  computeLayout,
  resizedLayout,
  type MetaDiskKind,
  type MetadataLayout,
  type ResizedLayout,
} from './layout.js';
import {
  decodeSuperblock,
  emptyPeerSlot,
  encodeSuperblock,
  type Superblock,
} from './superblock.js';
import { AL_EXTENTS_DEFAULT, AL_EXTENTS_MAX } from '../../limits.js';
import {
  persistedMetaOf,
  setRanges,
  withPersistedMeta,
  type BitRange,
  type PersistedMeta,
} from './engine-view.js';

export interface MetaPlacement {
  readonly kind: MetaDiskKind;
  /** For indexed external metadata. @default 0 */
  readonly index?: number;
  /** Size of the data disk (external metadata only; internal uses the store's size). */
  readonly dataDeviceBytes?: number;
}

export interface CreateOptions extends MetaPlacement {
  readonly maxPeers: number;
  /** This node's id. @default -1 (set at first attach, as drbdmeta leaves it) */
  readonly nodeId?: number;
  /** "al-extents". @default AL_EXTENTS_DEFAULT (1237) */
  readonly alExtents?: number;
  /** @default 1 */
  readonly alStripes?: number;
  /** @default 8 (a 32 KiB ring) */
  readonly alStripeSize4k?: number;
}

export interface OpenOptions extends MetaPlacement {
  /** "al-extents" to run with; @default the superblock's value (or 1237 if it is unusable) */
  readonly alExtents?: number;
}

export interface AlApplyResult {
  /** Extents the AL held, now marked out of sync in every bitmap slot. */
  readonly extents: readonly number[];
  /** Bits newly set, summed over slots. */
  readonly bitsSet: number;
  /** The AL was unreadable: every bit of every slot was set instead. */
  readonly fullSync: boolean;
}

/** Where the superblock sits, before its contents (max-peers, AL size) are known. */
export function superblockOffset(
  kind: MetaDiskKind,
  index: number,
  metaDeviceBytes: number,
): number {
  switch (kind) {
    case 'internal':
      return Math.floor((metaDeviceBytes - MD_BLOCK_BYTES) / MD_BLOCK_BYTES) * MD_BLOCK_BYTES;
    case 'external':
      return index * MD_EXTERNAL_SLOT_SECTORS * 512;
    case 'flex-external':
      return 0;
  }
}

// The format works from one slot up; the configuration enforces DRBD's minimum (AL_EXTENTS_MIN).
function checkAlExtents(n: number, ring: number): void {
  const max = Math.min(AL_EXTENTS_MAX, AL_CONTEXT_PER_TRANSACTION * (ring - 1));
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new MetadataError(`al-extents ${n} out of range 1..${max} for a ${ring}-transaction AL`);
  }
}

export class MetadataStore {
  private sb: Superblock;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly busyWaiters: (() => void)[] = [];
  private recovered: readonly number[] = [];

  private constructor(
    /** The device holding the metadata. */
    readonly store: BlockStore,
    /** Replaced when the data device grows (growData; internal metadata moves to the new end). */
    public layout: MetadataLayout,
    sb: Superblock,
    public bitmap: Bitmap,
    readonly al: ActivityLog,
    /** What the AL held when opened (undefined if unreadable). */
    private replay: AlReplay | undefined,
  ) {
    this.sb = sb;
  }

  get superblock(): Superblock {
    return this.sb;
  }

  /** False after a crash while writable: applyActivityLog() must run before anything else. */
  get alClean(): boolean {
    return (this.sb.flags & MDF.AL_CLEAN) !== 0;
  }

  /** Writes fresh metadata: AL ring initialized, bitmap zeroed, then the superblock last. */
  static async create(store: BlockStore, opts: CreateOptions): Promise<MetadataStore> {
    const maxPeers = opts.maxPeers;
    if (!Number.isInteger(maxPeers) || maxPeers < 1 || maxPeers > MAX_PEERS_MAX) {
      throw new MetadataError(`max-peers ${maxPeers} out of range 1..${MAX_PEERS_MAX}`);
    }
    const nodeId = opts.nodeId ?? -1;
    if (!Number.isInteger(nodeId) || nodeId < -1 || nodeId > NODE_ID_MAX) {
      throw new MetadataError(`node-id ${nodeId} out of range 0..${NODE_ID_MAX}`);
    }
    const alStripes = opts.alStripes ?? AL_STRIPES_DEFAULT;
    const alStripeSize4k = opts.alStripeSize4k ?? AL_STRIPE_SIZE_4K_DEFAULT;
    const alExtents = opts.alExtents ?? AL_EXTENTS_DEFAULT;
    checkAlExtents(alExtents, alStripes * alStripeSize4k);
    const layout = MetadataStore.layoutFor(store, opts, maxPeers, alStripes, alStripeSize4k);
    const sb: Superblock = {
      effectiveSizeSectors: 0,
      currentUuid: UUID_JUST_CREATED,
      members: 0n,
      deviceUuid: 0n,
      flags: MDF.AL_CLEAN,
      mdSizeSectors: layout.mdSizeSectors,
      alOffsetSectors: layout.alOffsetSectors,
      alExtents,
      bmOffsetSectors: layout.bmOffsetSectors,
      bmBytesPerBit: BM_BYTES_PER_BIT,
      laPeerMaxBioSize: 0,
      maxPeers,
      nodeId,
      alStripes,
      alStripeSize4k,
      peers: Array.from({ length: PEER_SLOTS }, () => emptyPeerSlot),
      historyUuids: new Array<bigint>(HISTORY_UUIDS).fill(0n),
    };
    const init = initializedAlBlock();
    const ring = alStripes * alStripeSize4k;
    await store.write(layout.alOffsetBytes, new Array<Buffer>(ring).fill(init));
    await store.writeZeroes(layout.bmOffsetBytes, layout.bmRegionBytes, { noHole: true });
    await store.flush();
    await store.write(layout.mdOffsetBytes, encodeSuperblock(sb), { fua: true });
    const al = new ActivityLog({
      extents: alExtents,
      stripes: alStripes,
      stripeSize4k: alStripeSize4k,
    });
    return new MetadataStore(
      store,
      layout,
      sb,
      new Bitmap(maxPeers, layout.bitsPerSlot),
      al,
      undefined,
    );
  }

  /** Reads the superblock without validating the rest, or undefined if there is no v09 magic. */
  static async probe(store: BlockStore, placement: MetaPlacement): Promise<Superblock | undefined> {
    const at = superblockOffset(placement.kind, placement.index ?? 0, store.sizeBytes);
    if (at < 0 || at + SUPERBLOCK_BYTES > store.sizeBytes) return undefined;
    const d = decodeSuperblock(await store.read(at, SUPERBLOCK_BYTES));
    return d.ok ? d.value : undefined;
  }

  /** Loads existing metadata; throws MetadataError naming what does not match. */
  static async open(store: BlockStore, opts: OpenOptions): Promise<MetadataStore> {
    const at = superblockOffset(opts.kind, opts.index ?? 0, store.sizeBytes);
    if (at < 0 || at + SUPERBLOCK_BYTES > store.sizeBytes) {
      throw new MetadataError(`${store.name}: too small to hold ${opts.kind} metadata`);
    }
    const d = decodeSuperblock(await store.read(at, SUPERBLOCK_BYTES));
    if (!d.ok) throw new MetadataError(`${store.name}: ${d.error.message} at offset ${at}`);
    const sb = d.value;
    if (sb.bmBytesPerBit !== BM_BYTES_PER_BIT) {
      throw new MetadataError(
        `${store.name}: bitmap granularity ${sb.bmBytesPerBit} bytes; Tandem supports ${BM_BYTES_PER_BIT}`,
      );
    }
    const layout = MetadataStore.layoutFor(
      store,
      opts,
      sb.maxPeers,
      sb.alStripes,
      sb.alStripeSize4k,
    );
    const mismatch = (what: string, found: number, want: number): MetadataError =>
      new MetadataError(
        `${store.name}: ${what} is ${found}, expected ${want} for ${opts.kind} metadata on this device`,
      );
    if (sb.alOffsetSectors !== layout.alOffsetSectors)
      throw mismatch('al_offset', sb.alOffsetSectors, layout.alOffsetSectors);
    if (sb.bmOffsetSectors !== layout.bmOffsetSectors)
      throw mismatch('bm_offset', sb.bmOffsetSectors, layout.bmOffsetSectors);
    if (opts.kind === 'internal' && sb.mdSizeSectors !== layout.mdSizeSectors) {
      throw mismatch('md_size_sect', sb.mdSizeSectors, layout.mdSizeSectors);
    }
    const bmRead = Math.ceil(layout.bitsPerSlot / 64) * 8 * layout.maxPeers;
    const bmBytes = await store.read(
      layout.bmOffsetBytes,
      Math.ceil(bmRead / MD_BLOCK_BYTES) * MD_BLOCK_BYTES,
    );
    const bm = Bitmap.decode(bmBytes, sb.maxPeers, layout.bitsPerSlot);
    if (!bm.ok) throw new MetadataError(`${store.name}: ${bm.error}`);
    const ring = sb.alStripes * sb.alStripeSize4k;
    const replayed = replayActivityLog(
      await store.read(layout.alOffsetBytes, layout.alBytes),
      sb.alStripes,
      sb.alStripeSize4k,
    );
    // An extent past the data (a stray or corrupt transaction) covers nothing: drop it here, so
    // the engine is never told of blocks the device does not have.
    const extentsInData = Math.ceil(layout.dataBytes / 2 ** AL_EXTENT_SHIFT);
    const replay = replayed.ok
      ? {
          ...replayed.value,
          hotExtents: replayed.value.hotExtents.filter((e) => e < extentsInData),
        }
      : undefined;
    let alExtents = opts.alExtents ?? sb.alExtents;
    if (
      opts.alExtents === undefined &&
      (alExtents < 1 || alExtents > AL_CONTEXT_PER_TRANSACTION * (ring - 1))
    ) {
      alExtents = AL_EXTENTS_DEFAULT;
    }
    checkAlExtents(alExtents, ring);
    const al = new ActivityLog({
      extents: alExtents,
      stripes: sb.alStripes,
      stripeSize4k: sb.alStripeSize4k,
      after: replay?.newest,
    });
    return new MetadataStore(store, layout, sb, bm.value, al, replay);
  }

  private static layoutFor(
    store: BlockStore,
    p: MetaPlacement,
    maxPeers: number,
    alStripes: number,
    alStripeSize4k: number,
  ): MetadataLayout {
    if (p.kind !== 'internal' && p.dataDeviceBytes === undefined) {
      throw new MetadataError(`${store.name}: external metadata needs the data disk's size`);
    }
    const l = computeLayout({
      kind: p.kind,
      index: p.index ?? 0,
      metaDeviceBytes: store.sizeBytes,
      dataDeviceBytes: p.dataDeviceBytes ?? store.sizeBytes,
      maxPeers,
      alStripes,
      alStripeSize4k,
    });
    if (!l.ok) throw new MetadataError(`${store.name}: ${l.error}`);
    return l.value;
  }

  /**
   * The layout with the data device at `dataDeviceBytes` (see resizedLayout). Internal metadata
   * lives on the data device: `dataDeviceBytes` is that device's size, perhaps measured before
   * the store's own size was refreshed.
   */
  resized(dataDeviceBytes: number): ResizedLayout {
    const l = resizedLayout(this.layout, dataDeviceBytes, this.store.sizeBytes);
    if (!l.ok) throw new MetadataError(`${this.store.name}: ${l.error}`);
    return l.value;
  }

  /**
   * The data bytes the metadata serves with the data device at `dataDeviceBytes`: what growData
   * would give, or less when the device shrank.
   */
  capacityFor(dataDeviceBytes: number): number {
    const r = this.resized(dataDeviceBytes);
    return r.adoptable ? r.layout.dataBytes : Math.min(r.layout.dataBytes, this.layout.dataBytes);
  }

  /**
   * The data device grew to `dataDeviceBytes` (with internal metadata, the store's size is
   * already that). External metadata: the bitmap grows to cover the new data bytes; nothing is
   * written (see setEffectiveSize). Internal metadata sits at the end of the device: it moves
   * there (moveInternal). Returns the data bytes now available.
   */
  growData(dataDeviceBytes: number): Promise<number> {
    assert(
      this.layout.kind !== 'internal' || dataDeviceBytes === this.store.sizeBytes,
      'internal metadata grows with the device that holds it',
    );
    return this.serial(async () => {
      const r = this.resized(dataDeviceBytes);
      if (!r.adoptable) return this.layout.dataBytes;
      if (r.layout.kind === 'internal') {
        await this.moveInternal(r.layout);
      } else {
        if (r.layout.bitsPerSlot > this.layout.bitsPerSlot)
          this.bitmap = this.bitmap.grown(r.layout.bitsPerSlot);
        this.layout = r.layout;
      }
      return this.layout.dataBytes;
    });
  }

  /**
   * Internal metadata follows the end of a device that grew, to `next` (adoptable: clear of the
   * old metadata): the bitmap (grown) and the AL ring (copied as is: its transactions do not
   * depend on where the ring sits) are written at their new places and flushed, then the
   * superblock at the new end (one FUA write) makes them the metadata. The old metadata becomes
   * part of the new data area, which the engine marks out of sync; it is zeroed here so that it
   * holds the same bytes on every node even with --assume-clean. Before the new superblock
   * lands, the device's end holds none: a crash then needs the device shrunk back to its former
   * size (the old metadata is intact there). Runs inside serial().
   */
  private async moveInternal(next: MetadataLayout): Promise<void> {
    const old = this.layout;
    const ring = await this.store.read(old.alOffsetBytes, old.alBytes);
    const bitmap = this.bitmap.grown(next.bitsPerSlot);
    await this.store.writeZeroes(next.bmOffsetBytes, next.bmRegionBytes, { noHole: true });
    for (let p = 0; p < bitmap.pageCount; p++)
      await this.store.write(next.bmOffsetBytes + p * MD_BLOCK_BYTES, bitmap.encodePage(p));
    bitmap.takeDirtyPages();
    await this.store.write(next.alOffsetBytes, ring);
    await this.store.flush();
    const sb: Superblock = {
      ...this.sb,
      mdSizeSectors: next.mdSizeSectors,
      alOffsetSectors: next.alOffsetSectors,
      bmOffsetSectors: next.bmOffsetSectors,
    };
    await this.store.write(next.mdOffsetBytes, encodeSuperblock(sb), { fua: true });
    this.sb = sb;
    this.layout = next;
    this.bitmap = bitmap;
    // The old metadata [bitmap .. superblock] now lies in the new data area.
    const oldStart = old.bmOffsetBytes;
    await this.store.writeZeroes(oldStart, old.mdOffsetBytes + MD_BLOCK_BYTES - oldStart, {
      noHole: true,
    });
    await this.store.flush();
  }

  /** Records the agreed device size (DRBD's la-size-sect) in the superblock. */
  setEffectiveSize(sizeBytes: number): Promise<void> {
    return this.updateSuperblock((sb) => ({
      ...sb,
      effectiveSizeSectors: Math.floor(sizeBytes / 512),
    }));
  }

  /** Writes the superblock atomically: one aligned 4 KiB FUA write. */
  writeSuperblock(next: Superblock): Promise<void> {
    return this.serial(() => this.putSuperblock(next));
  }

  /** Applies `change` to the current superblock and writes the result. */
  updateSuperblock(change: (sb: Superblock) => Superblock): Promise<void> {
    return this.serial(() => this.putSuperblock(change(this.sb)));
  }

  /** Writes every changed bitmap page, then flushes: afterwards the on-disk bitmap is current. */
  flushBitmap(): Promise<void> {
    return this.serial(() => this.writeBitmapPages(this.bitmap.takeDirtyPages()));
  }

  /**
   * Commits the AL's queued updates as one transaction, if any: first the bitmap pages of the
   * extents it evicts, then the transaction itself (FUA). Clears AL_CLEAN before the first one.
   */
  commitAlTransaction(): Promise<AlTransactionPlan | undefined> {
    return this.serial(async () => {
      const plan = this.al.prepareTransaction();
      if (!plan) return undefined;
      try {
        // The AL is about to hold extents: the superblock must say so (and with how many slots).
        if (this.alClean || this.sb.alExtents !== this.al.extents) {
          await this.putSuperblock({
            ...this.sb,
            flags: this.sb.flags & ~MDF.AL_CLEAN,
            alExtents: this.al.extents,
          });
        }
        const pages = plan.evicted.flatMap((e) => this.bitmap.takeDirtyPagesOfExtent(e));
        await this.writeBitmapPages(pages);
        await this.store.write(this.layout.alOffsetBytes + plan.offsetBytes, plan.bytes, {
          fua: true,
        });
      } catch (e) {
        this.al.abortTransaction();
        throw e;
      }
      this.al.commitTransaction(plan);
      return plan;
    });
  }

  /**
   * Executes the engine's alCommit: `remove` extents leave the AL, `add` extents enter it, in as
   * many transactions as needed (bitmap pages of removed extents go to disk first).
   */
  async commitAlChange(add: readonly number[], remove: readonly number[]): Promise<void> {
    if (!this.al.stageChange(add, remove)) {
      throw new MetadataError(
        `activity log: ${add.length} extents to add do not fit in al-extents ${this.al.extents}`,
      );
    }
    while (this.al.pendingUpdates > 0 || this.al.transactionInFlight)
      await this.commitAlTransaction();
  }

  /** The bitmap slot tracking peer `nodeId`, or undefined if it has none. */
  bitmapSlotOf(nodeId: number): number | undefined {
    const i = this.sb.peers[nodeId]?.bitmapIndex ?? -1;
    return i >= 0 && i < this.sb.maxPeers ? i : undefined;
  }

  /**
   * Gives every listed peer a bitmap slot (written to the superblock if anything changed), as
   * DRBD does when it first meets a peer. Throws when there are more peers than max-peers.
   */
  ensurePeerSlots(nodeIds: readonly number[]): Promise<void> {
    return this.serial(async () => {
      const peers = [...this.sb.peers];
      const used = new Set(peers.map((p) => p.bitmapIndex).filter((i) => i >= 0));
      let changed = false;
      for (const id of nodeIds) {
        const p = peers[id];
        if (!p || id === this.sb.nodeId)
          throw new MetadataError(`peer node-id ${id} is not a peer slot`);
        if (p.bitmapIndex >= 0) continue;
        let slot = 0;
        while (used.has(slot)) slot++;
        if (slot >= this.sb.maxPeers) {
          throw new MetadataError(
            `metadata has bitmap slots for ${this.sb.maxPeers} peers (max-peers); node ${id} needs one more: recreate it with a larger --max-peers`,
          );
        }
        used.add(slot);
        peers[id] = { ...p, bitmapIndex: slot, flags: p.flags | MDF_PEER.NODE_EXISTS };
        changed = true;
      }
      if (changed) await this.putSuperblock({ ...this.sb, peers });
    });
  }

  /** Sets or clears bits of peer `nodeId`'s slot in memory (the engine's bitmapSet/Clear). */
  changeBits(nodeId: number, ranges: readonly BitRange[], set: boolean): number {
    const slot = this.bitmapSlotOf(nodeId);
    if (slot === undefined) throw new MetadataError(`peer node-id ${nodeId} has no bitmap slot`);
    let n = 0;
    for (const r of ranges) {
      n += set
        ? this.bitmap.setRange(slot, r.start, r.start + r.count)
        : this.bitmap.clearRange(slot, r.start, r.start + r.count);
    }
    return n;
  }

  /** Writes the engine's metadata into the superblock (persistMeta). */
  persistMeta(meta: PersistedMeta): Promise<void> {
    return this.updateSuperblock((sb) => withPersistedMeta(sb, meta));
  }

  /** What the engine needs at attach: its metadata, each peer's set bits, the AL's extents. */
  bootView(): { meta: PersistedMeta; bitmaps: Record<number, BitRange[]>; alExtents: number[] } {
    const bitmaps: Record<number, BitRange[]> = {};
    this.sb.peers.forEach((_, nodeId) => {
      const slot = this.bitmapSlotOf(nodeId);
      if (slot !== undefined && nodeId !== this.sb.nodeId)
        bitmaps[nodeId] = setRanges(this.bitmap, slot);
    });
    return {
      meta: persistedMetaOf(this.sb),
      bitmaps,
      // Unclean: what the ring holds; clean after our own recovery: what that recovery marked.
      alExtents: [...(this.alClean ? this.recovered : (this.replay?.hotExtents ?? []))],
    };
  }

  /** Admits a write to the extents a byte range touches; resolves once the AL covers them all. */
  async beginWrite(offsetBytes: number, lengthBytes: number): Promise<void> {
    const [first, last] = extentsOf(offsetBytes, lengthBytes);
    for (let e = first; e <= last; e++) {
      for (;;) {
        const a = this.al.beginWrite(e);
        if (a !== 'busy') break;
        await new Promise<void>((resolve) => this.busyWaiters.push(resolve));
      }
    }
    for (let e = first; e <= last; e++) {
      while (!this.al.isHot(e)) await this.commitAlTransaction();
    }
  }

  /** Ends what beginWrite() admitted. */
  endWrite(offsetBytes: number, lengthBytes: number): void {
    const [first, last] = extentsOf(offsetBytes, lengthBytes);
    for (let e = first; e <= last; e++) this.al.endWrite(e);
    for (const wake of this.busyWaiters.splice(0)) wake();
  }

  /**
   * Crash recovery: marks every extent the AL holds out of sync in every bitmap slot, writes the
   * bitmap, re-initializes the AL ring and only then sets AL_CLEAN. Idempotent if interrupted.
   */
  applyActivityLog(): Promise<AlApplyResult> {
    return this.serial(async () => {
      let bitsSet = 0;
      let fullSync = false;
      const wasClean = this.alClean;
      const extents = this.replay?.hotExtents ?? [];
      if (!this.replay && !this.alClean) {
        // Nothing tells which extents were written: the only safe answer is all of them.
        fullSync = true;
        for (let s = 0; s < this.bitmap.maxPeers; s++)
          bitsSet += this.bitmap.setRange(s, 0, this.bitmap.bitsPerSlot);
      } else if (!this.alClean) {
        for (const e of extents) bitsSet += this.bitmap.setExtentAllSlots(e);
      }
      await this.writeBitmapPages(this.bitmap.takeDirtyPages());
      const ring = this.sb.alStripes * this.sb.alStripeSize4k;
      await this.store.write(
        this.layout.alOffsetBytes,
        new Array<Buffer>(ring).fill(initializedAlBlock()),
      );
      await this.store.flush();
      this.al.reset({ restartRing: true });
      this.replay = undefined;
      if (!wasClean) this.recovered = extents;
      await this.putSuperblock({ ...this.sb, flags: this.sb.flags | MDF.AL_CLEAN });
      return { extents: wasClean ? [] : extents, bitsSet, fullSync };
    });
  }

  /** Clean shutdown (no writes in flight): bitmap to disk, then AL_CLEAN in the superblock. */
  markClean(): Promise<void> {
    return this.serial(async () => {
      assert(!this.al.transactionInFlight, 'markClean with an AL transaction in flight');
      await this.writeBitmapPages(this.bitmap.takeDirtyPages());
      if (!this.alClean)
        await this.putSuperblock({ ...this.sb, flags: this.sb.flags | MDF.AL_CLEAN });
      this.al.reset({ restartRing: false });
    });
  }

  /** Destroys the metadata: zeroes the superblock so no tool finds a magic. */
  wipe(): Promise<void> {
    return this.serial(() =>
      this.store.write(this.layout.mdOffsetBytes, Buffer.alloc(SUPERBLOCK_BYTES), { fua: true }),
    );
  }

  private async putSuperblock(next: Superblock): Promise<void> {
    await this.store.write(this.layout.mdOffsetBytes, encodeSuperblock(next), { fua: true });
    this.sb = next;
  }

  private async writeBitmapPages(pages: readonly number[]): Promise<void> {
    if (pages.length === 0) return;
    try {
      for (const p of pages) {
        await this.store.write(
          this.layout.bmOffsetBytes + p * MD_BLOCK_BYTES,
          this.bitmap.encodePage(p),
        );
      }
      await this.store.flush();
    } catch (e) {
      this.bitmap.markDirty(pages);
      throw e;
    }
  }

  // Metadata writes never interleave: each waits for the one before (even if it failed).
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.chain.then(op, op);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/** The first and last AL extent a byte range touches. */
export function extentsOf(offsetBytes: number, lengthBytes: number): readonly [number, number] {
  const first = Math.floor(offsetBytes / 2 ** AL_EXTENT_SHIFT);
  const last = Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / 2 ** AL_EXTENT_SHIFT);
  return [first, last];
}
