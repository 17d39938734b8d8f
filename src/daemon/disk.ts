// A resource's local disk as the engine sees it: the data region and the v09 metadata beside
// it, opened, recovered after a crash, grown and closed here. The ordering rules between data
// I/O and metadata writes (barriers, what a failed one holds back) are the shared driver's
// (src/replication/driver.ts); `port()` hands the driver this disk's operations.
import { BITMAP_BLOCK_BYTES } from '../limits.js';
import type { BlockRange, BootState, ResizeRefusal } from '../replication/types.js';
import type { DiskPort, IoDone, MetaAction } from '../replication/driver.js';
import type { Logger } from '../platform/log.js';
import {
  MetadataStore,
  openBackingDevices,
  sliceStore,
  type BackingDevices,
  type BlockStore,
  type FileStoreOptions,
  type MetaDiskSpec,
} from '../storage/index.js';
import { totalLength } from '../storage/request.js';
import type { WriteOptions, ZeroOptions } from '../storage/types.js';
import { MetadataError } from '../util/errors.js';
import { errnoOf } from '../util/errno.js';
import type { MetaDiskSpec as ConfigMetaDisk } from '../config/index.js';

/** How the backing files are opened (FileStoreOptions without readOnly/direct). */
export type StoreOptions = Pick<
  FileStoreOptions,
  'inlineWriteMaxBytes' | 'inlineReadMaxBytes' | 'clock'
>;

/**
 * Bytes submitted to the data region, for `status` and the metrics (drbd's `read`/`written`).
 * The owner keeps the object, so the counts survive a detach and a new attach.
 */
export interface DiskIoCounters {
  readBytes: number;
  writtenBytes: number;
}

/**
 * The data region with reads and writes counted at submission, as DRBD counts them. One
 * property add per request and no extra promise: it sits under every data I/O.
 */
function countedStore(s: BlockStore, c: DiskIoCounters | undefined): BlockStore {
  if (c === undefined) return s;
  return {
    get sizeBytes() {
      return s.sizeBytes;
    },
    name: s.name,
    read(offsetBytes: number, lengthBytes: number, into?: Buffer) {
      c.readBytes += lengthBytes;
      return s.read(offsetBytes, lengthBytes, into);
    },
    write(offsetBytes: number, data: Uint8Array | readonly Uint8Array[], opts?: WriteOptions) {
      c.writtenBytes += totalLength(data);
      return s.write(offsetBytes, data, opts);
    },
    flush: () => s.flush(),
    discard: (offsetBytes: number, lengthBytes: number) => s.discard(offsetBytes, lengthBytes),
    writeZeroes: (offsetBytes: number, lengthBytes: number, opts?: ZeroOptions) =>
      s.writeZeroes(offsetBytes, lengthBytes, opts),
    extents: (offsetBytes: number, lengthBytes: number) => s.extents(offsetBytes, lengthBytes),
    close: () => s.close(),
  };
}

export function storageMetaDisk(m: ConfigMetaDisk | null): MetaDiskSpec {
  if (m === null || m.kind === 'internal') return { kind: 'internal' };
  if (m.kind === 'external') return { kind: 'external', path: m.path, index: m.index };
  return { kind: 'flex-external', path: m.path };
}

export class LocalDisk {
  private constructor(
    private readonly devices: BackingDevices,
    readonly meta: MetadataStore,
    /** The data region, in front of internal metadata; whole bitmap blocks. Grows on resize. */
    public data: BlockStore,
    /** Extents the AL held after a crash, already marked out of sync in the bitmap. */
    readonly recoveredExtents: readonly number[],
    private readonly counters: DiskIoCounters | undefined,
    private readonly wrapData: (s: BlockStore) => BlockStore,
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
    counters?: DiskIoCounters,
    /** Test-only: wraps the data region (the daemon's injected faults, src/storage/faults.ts). */
    wrapData: (s: BlockStore) => BlockStore = (s) => s,
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
      const data = countedStore(wrapData(sliceStore(devices.disk, 0, dataBytes)), counters);
      return new LocalDisk(devices, meta, data, recovered, counters, wrapData);
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
   * the data and bitmap are durable (the driver runs it as a metadata barrier: the data is
   * flushed before, and no data I/O runs meanwhile).
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
    this.data = countedStore(
      this.wrapData(sliceStore(this.devices.disk, 0, sizeBytes)),
      this.counters,
    );
    await this.meta.flushBitmap();
    await this.meta.setEffectiveSize(sizeBytes);
  }

  /** What the engine boots from: UUIDs, flags, every slot's set bits as ranges. */
  bootState(): BootState {
    const view = this.meta.bootView();
    // applyActivityLog() already marked the recovered extents in every slot and emptied the
    // AL. Handing them to the engine as hot extents would make it skip the AL transaction
    // before its next write there: a crash then would leave that write unrecorded.
    return { meta: view.meta, bitmaps: view.bitmaps, alExtents: [] };
  }

  /**
   * The driver's view of this disk. Every answer comes through a promise's reaction, so never
   * synchronously (DiskPort's rule). A failed data I/O is logged here, with its errno.
   */
  port(log: Logger): DiskPort {
    const answer =
      (what: string, done: IoDone) =>
      (e: unknown): void => {
        const errno = errnoOf(e);
        log.error({ err: String(e), errno }, `${what} failed`);
        done(errno);
      };
    const ok = (done: IoDone) => (): void => done(null);
    return {
      read: (offsetBytes, lengthBytes, done, into) => {
        this.data
          .read(offsetBytes, lengthBytes, into === undefined ? undefined : asBuffer(into))
          .then((b) => done(null, b), answer('disk read', done));
      },
      write: (offsetBytes, data, fua, done) => {
        this.data.write(offsetBytes, data, { fua }).then(ok(done), answer('disk write', done));
      },
      trim: (offsetBytes, lengthBytes, done) => {
        this.data.discard(offsetBytes, lengthBytes).then(ok(done), answer('disk trim', done));
      },
      zeroes: (offsetBytes, lengthBytes, fua, done) => {
        this.data
          .writeZeroes(offsetBytes, lengthBytes, { fua })
          .then(ok(done), answer('disk write-zeroes', done));
      },
      flush: (done) => {
        this.data.flush().then(ok(done), answer('disk flush', done));
      },
      writeMeta: (a, done) => {
        this.writeMeta(a).then(ok(done), answer(`metadata write (${a.type})`, done));
      },
      bitmapSet: (peer, ranges) => this.bitmapSet(peer, ranges),
      bitmapClear: (peer, ranges) => this.bitmapClear(peer, ranges),
      capacity: (done) => {
        this.capacity().then(
          (c) => done(c.capacityBytes, c.refusal),
          (e: unknown) => {
            log.error({ err: String(e) }, 'cannot measure the backing device');
            done(0, 'failed');
          },
        );
      },
      grow: (sizeBytes, done) => {
        this.grow(sizeBytes).then(
          () => {
            log.info({ sizeBytes }, 'backing device grown');
            done(null);
          },
          answer('growing the backing device', done),
        );
      },
    };
  }

  private writeMeta(a: MetaAction): Promise<void> {
    switch (a.type) {
      case 'persistMeta':
        return this.meta.persistMeta(a.meta);
      case 'alCommit':
        return this.meta.commitAlChange(a.add, a.remove);
      case 'bitmapFlush':
        return this.meta.flushBitmap();
    }
  }

  bitmapSet(peer: number, ranges: readonly BlockRange[]): void {
    this.meta.changeBits(peer, ranges, true);
  }

  bitmapClear(peer: number, ranges: readonly BlockRange[]): void {
    this.meta.changeBits(peer, ranges, false);
  }

  /**
   * Clean detach, once the driver saw every I/O and barrier answered (Driver.detachDisk):
   * bitmap written, AL marked clean, devices closed. A disk whose metadata write failed must
   * be abandoned instead (marking the AL clean would drop the cover of what it may lack).
   */
  async close(): Promise<void> {
    try {
      await this.data.flush();
      await this.meta.markClean();
    } finally {
      await this.devices.close();
    }
  }

  /** Crash-like close for a failed disk: release the files, write nothing. */
  async abandon(): Promise<void> {
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

/** A Uint8Array as a Buffer over the same memory (no copy). */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
