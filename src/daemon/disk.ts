// A resource's local disk as the engine sees it: the data region, the v09 metadata beside it,
// and the ordering rules between them. Data I/O runs concurrently; a metadata action (superblock,
// AL transaction, bitmap flush) is a barrier: it first flushes the data disk (not needed for an
// AL transaction that only adds extents), then writes the metadata durably, and no later data
// I/O starts before it is done (engine Action contract). A barrier that fails fails the disk:
// the I/O it held back, and any after, is answered EIO without running.
// The metadata itself is storage's MetadataStore, through its engine-facing methods.
import { BITMAP_BLOCK_BYTES } from '../limits.js';
import type {
  Action,
  BlockRange,
  BootState,
  Metadata,
  ResizeRefusal,
} from '../replication/types.js';
import {
  MetadataStore,
  openBackingDevices,
  sliceStore,
  type BackingDevices,
  type BlockStore,
  type FileStoreOptions,
  type MetaDiskSpec,
} from '../storage/index.js';
import { DiskIoError, MetadataError } from '../util/errors.js';
import type { MetaDiskSpec as ConfigMetaDisk } from '../config/index.js';

/** How the backing files are opened (FileStoreOptions without readOnly/direct). */
export type StoreOptions = Pick<
  FileStoreOptions,
  'inlineWriteMaxBytes' | 'inlineReadMaxBytes' | 'clock'
>;

export function storageMetaDisk(m: ConfigMetaDisk | null): MetaDiskSpec {
  if (m === null || m.kind === 'internal') return { kind: 'internal' };
  if (m.kind === 'external') return { kind: 'external', path: m.path, index: m.index };
  return { kind: 'flex-external', path: m.path };
}

/** The engine's metadata actions: each is a barrier (LocalDisk.barrier). */
export type MetaAction = Extract<Action, { type: 'persistMeta' | 'alCommit' | 'bitmapFlush' }>;

/**
 * Whether a metadata barrier flushes the data disk before its own write. Only an extent leaving
 * the activity log needs the data flush first (its writes lose their cover); adding one changes
 * nothing for writes already done, which stay covered by their own hot extents. The simulator
 * runs this same rule (test/sim/cluster.ts).
 */
export function barrierFlushesData(a: MetaAction): boolean {
  return a.type !== 'alCommit' || a.remove.length > 0;
}

export class LocalDisk {
  private gate: Promise<void> | null = null;
  /**
   * The metadata write that failed, or null. From then on the metadata may not say what the
   * data holds (an AL transaction may be missing): a write that waited for it must not land
   * (after a crash nothing would mark its block), so no data I/O runs any more; the resource
   * detaches the disk (on-io-error) and the engine settles the I/O as failed.
   */
  private failure: Error | null = null;

  private constructor(
    private readonly devices: BackingDevices,
    readonly meta: MetadataStore,
    /** The data region, in front of internal metadata; whole bitmap blocks. Grows on resize. */
    public data: BlockStore,
    /** Extents the AL held after a crash, already marked out of sync in the bitmap. */
    readonly recoveredExtents: readonly number[],
  ) {}

  /**
   * Opens the backing disk and its metadata, recovers the activity log after a crash, and
   * gives peers bitmap slots on first attach (persisted with this node's id).
   */
  static async open(
    diskPath: string,
    metaDisk: ConfigMetaDisk | null,
    nodeId: number,
    peerIds: readonly number[],
    alExtents: number,
    storeOptions: StoreOptions = {},
  ): Promise<LocalDisk> {
    const devices = await openBackingDevices(diskPath, storageMetaDisk(metaDisk), storeOptions);
    try {
      const meta = await MetadataStore.open(devices.meta, {
        ...devices.placement,
        alExtents,
      }).catch((e: unknown) => {
        // Internal metadata is looked for at the device's end: a device grown without
        // `tandem resize` has moved its end away from it.
        if (devices.placement.kind === 'internal' && String(e).includes('no v09 metadata magic'))
          throw new MetadataError(
            `${(e as Error).message}; if ${diskPath} grew since Tandem last ran, shrink it back to its former size, attach, then grow it again and run \`tandem resize\``,
            { cause: e },
          );
        throw e;
      });
      let recovered: readonly number[] = [];
      if (!meta.alClean) recovered = (await meta.applyActivityLog()).extents;
      await claimNodeId(meta, nodeId);
      await meta.ensurePeerSlots(peerIds);
      const room = Math.floor(meta.layout.dataBytes / BITMAP_BLOCK_BYTES) * BITMAP_BLOCK_BYTES;
      if (room === 0) throw new MetadataError(`${diskPath}: no room for data after the metadata`);
      // The device keeps its agreed size (la-size) when the backing grew while we were away:
      // only `resize` grows it, so both nodes agree and the new area gets resynced.
      const agreed = meta.superblock.effectiveSizeSectors * 512;
      if (agreed > room) {
        throw new MetadataError(
          `${diskPath}: the device was ${agreed} bytes but the backing device now has room for only ${room}: ` +
            'it shrank; grow it back to its former size',
        );
      }
      const dataBytes =
        agreed > 0 ? Math.floor(agreed / BITMAP_BLOCK_BYTES) * BITMAP_BLOCK_BYTES : room;
      if (agreed === 0) await meta.setEffectiveSize(dataBytes);
      const data = sliceStore(devices.disk, 0, dataBytes);
      return new LocalDisk(devices, meta, data, recovered);
    } catch (e) {
      await devices.close();
      throw e;
    }
  }

  get sizeBytes(): number {
    return this.data.sizeBytes;
  }

  /**
   * How many data bytes the backing could hold now (measured again: it may have grown): what
   * `grow` can reach (MetadataStore.capacityFor), less when the backing shrank.
   */
  async capacity(): Promise<{
    capacityBytes: number;
    refusal: ResizeRefusal;
  }> {
    const now = await this.devices.disk.measure();
    const room = Math.floor(this.meta.capacityFor(now) / BITMAP_BLOCK_BYTES) * BITMAP_BLOCK_BYTES;
    return { capacityBytes: room, refusal: 'none' };
  }

  /**
   * Grows the data region to `sizeBytes` (the engine's growDisk): the backing's new size is
   * adopted, the bitmap covers the new blocks, and the superblock records the new size, after
   * the data and bitmap are durable (a metadata barrier like the others).
   */
  async grow(sizeBytes: number): Promise<void> {
    if (sizeBytes <= this.data.sizeBytes) return;
    const backing = await this.devices.disk.refreshSize();
    const room = await this.meta.growData(backing);
    if (sizeBytes > room || sizeBytes % BITMAP_BLOCK_BYTES !== 0) {
      throw new MetadataError(
        `${this.devices.disk.name}: cannot grow to ${sizeBytes} bytes: room for ${room}`,
      );
    }
    this.data = sliceStore(this.devices.disk, 0, sizeBytes);
    await this.barrier(async () => {
      await this.meta.flushBitmap();
      await this.meta.setEffectiveSize(sizeBytes);
    });
  }

  /** What the engine boots from: UUIDs, flags, every slot's set bits as ranges. */
  bootState(): BootState {
    const view = this.meta.bootView();
    // applyActivityLog() already marked the recovered extents in every slot and emptied the
    // AL. Handing them to the engine as hot extents would make it skip the AL transaction
    // before its next write there: a crash then would leave that write unrecorded.
    return { meta: view.meta, bitmaps: view.bitmaps, alExtents: [] };
  }

  /** Settles when every metadata barrier queued so far is done; null when none is pending. */
  metadataSettled(): Promise<void> | null {
    return this.gate;
  }

  /** A metadata barrier failed: the disk takes no more I/O (see `failure`). */
  get failed(): boolean {
    return this.failure !== null;
  }

  /**
   * Runs a data I/O in order with the metadata barriers before it; after a failed barrier it
   * rejects with EIO instead (DiskIoError) and `op` never runs.
   */
  io<T>(op: () => Promise<T>): Promise<T> {
    const run = (): Promise<T> => (this.failure === null ? op() : Promise.reject(this.failedIo()));
    const p = this.gate === null ? run() : this.gate.then(run);
    this.ioRunning++;
    p.then(this.ioDone, this.ioDone);
    return p;
  }

  /** Data I/O issued through io() and not yet settled; close()/abandon() wait for none. */
  private ioRunning = 0;
  private ioIdle: (() => void)[] = [];
  private readonly ioDone = (): void => {
    if (--this.ioRunning === 0) for (const wake of this.ioIdle.splice(0)) wake();
  };

  /**
   * Settles once every data I/O issued so far has: a write still running when the files close
   * could land after the AL was marked clean (or after a crash-like abandon), covered by nothing.
   */
  private settled(): Promise<void> {
    if (this.ioRunning === 0) return Promise.resolve();
    return new Promise((resolve) => this.ioIdle.push(resolve));
  }

  private failedIo(): DiskIoError {
    return new DiskIoError(
      `${this.devices.disk.name}: a metadata write failed, the disk takes no more I/O`,
      -1,
      'EIO',
      { cause: this.failure },
    );
  }

  /**
   * Queues a metadata barrier: flush data (unless `flushData` is false), then `write`; later
   * I/O waits for it.
   */
  barrier(write: () => Promise<void>, flushData = true): Promise<void> {
    const run = (this.gate ?? Promise.resolve())
      .then(async () => {
        if (this.failure !== null) throw this.failedIo();
        if (flushData) await this.data.flush();
        await write();
      })
      .catch((e: unknown) => {
        // Set before the gate opens, so everything it held back sees the failure.
        this.failure ??= e instanceof Error ? e : new Error(String(e));
        throw e;
      });
    const gate = run.catch(() => undefined);
    this.gate = gate;
    void gate.then(() => {
      if (this.gate === gate) this.gate = null;
    });
    return run;
  }

  persistMeta(m: Metadata): Promise<void> {
    return this.barrier(() => this.meta.persistMeta(m));
  }

  /**
   * The engine's AL transaction: extents `add` become hot before any write into them. The data
   * flush runs only when extents leave (barrierFlushesData): a whole-file fdatasync would
   * otherwise stall every write while a sequential writer crosses into each new 4 MiB extent.
   */
  alCommit(add: readonly number[], remove: readonly number[]): Promise<void> {
    return this.barrier(
      () => this.meta.commitAlChange(add, remove),
      barrierFlushesData({ type: 'alCommit', add, remove }),
    );
  }

  bitmapSet(peer: number, ranges: readonly BlockRange[]): void {
    this.meta.changeBits(peer, ranges, true);
  }

  bitmapClear(peer: number, ranges: readonly BlockRange[]): void {
    this.meta.changeBits(peer, ranges, false);
  }

  bitmapFlush(): Promise<void> {
    return this.barrier(() => this.meta.flushBitmap());
  }

  /**
   * Clean detach: every I/O done, bitmap written, AL marked clean, devices closed. A failed
   * disk writes nothing (marking the AL clean would drop the cover of what it may lack).
   */
  async close(): Promise<void> {
    await this.settled();
    await (this.gate ?? Promise.resolve());
    if (this.failure !== null) return this.abandon();
    try {
      await this.data.flush();
      await this.meta.markClean();
    } finally {
      await this.devices.close();
    }
  }

  /** Crash-like close for a failed disk: release the files, write nothing. */
  async abandon(): Promise<void> {
    await this.settled();
    await this.devices.close().catch(() => undefined);
  }
}

/** First attach writes this node's id into the metadata; a different id is refused. */
async function claimNodeId(meta: MetadataStore, nodeId: number): Promise<void> {
  const sb = meta.superblock;
  if (sb.nodeId === nodeId) return;
  if (sb.nodeId !== -1) {
    throw new MetadataError(
      `the metadata belongs to node-id ${sb.nodeId}, but this node is node-id ${nodeId}; ` +
        'check --node and node-id, or run create-md again',
    );
  }
  await meta.updateSuperblock((cur) => ({ ...cur, nodeId }));
}
