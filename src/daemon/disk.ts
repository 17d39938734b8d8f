// A resource's local disk as the engine sees it: the data region, the v09 metadata beside it,
// and the ordering rules between them. Data I/O runs concurrently; a metadata action (superblock,
// AL transaction, bitmap flush) is a barrier: it first flushes the data disk, then writes the
// metadata durably, and no later data I/O starts before it is done (engine Action contract).
import { AL_EXTENT_BYTES, BITMAP_BLOCK_BYTES } from '../limits.js';
import type { BlockRange, BootState, Metadata } from '../replication/types.js';
import {
  MDF,
  MetadataStore,
  openBackingDevices,
  sliceStore,
  type BackingDevices,
  type BlockStore,
  type MetaDiskSpec,
  type Superblock,
} from '../storage/index.js';
import { MetadataError } from '../util/errors.js';
import type { MetaDiskSpec as ConfigMetaDisk } from '../config/index.js';

export function storageMetaDisk(m: ConfigMetaDisk | null): MetaDiskSpec {
  if (m === null || m.kind === 'internal') return { kind: 'internal' };
  if (m.kind === 'external') return { kind: 'external', path: m.path, index: m.index };
  return { kind: 'flex-external', path: m.path };
}

export class LocalDisk {
  private gate: Promise<void> | null = null;
  private readonly alRefs = new Set<number>();

  private constructor(
    private readonly devices: BackingDevices,
    readonly meta: MetadataStore,
    /** The data region, in front of internal metadata; whole bitmap blocks. */
    readonly data: BlockStore,
    /** Bitmap slot of each peer node id. */
    private readonly slots: ReadonlyMap<number, number>,
    /** Extents the AL held after a crash, already marked out of sync in the bitmap. */
    readonly recoveredExtents: readonly number[],
  ) {}

  /**
   * Opens the backing disk and its metadata, recovers the activity log after a crash, and
   * assigns bitmap slots to peers on first attach (persisted with this node's id).
   */
  static async open(
    diskPath: string,
    metaDisk: ConfigMetaDisk | null,
    nodeId: number,
    peerIds: readonly number[],
    alExtents: number,
  ): Promise<LocalDisk> {
    const devices = await openBackingDevices(diskPath, storageMetaDisk(metaDisk));
    try {
      const meta = await MetadataStore.open(devices.meta, { ...devices.placement, alExtents });
      let recovered: readonly number[] = [];
      if (!meta.alClean) recovered = (await meta.applyActivityLog()).extents;
      const slots = await assignSlots(meta, nodeId, peerIds);
      const dataBytes = Math.floor(meta.layout.dataBytes / BITMAP_BLOCK_BYTES) * BITMAP_BLOCK_BYTES;
      if (dataBytes === 0)
        throw new MetadataError(`${diskPath}: no room for data after the metadata`);
      const data = sliceStore(devices.disk, 0, dataBytes);
      return new LocalDisk(devices, meta, data, slots, recovered);
    } catch (e) {
      await devices.close();
      throw e;
    }
  }

  get sizeBytes(): number {
    return this.data.sizeBytes;
  }

  /** What the engine boots from: UUIDs, flags, every slot's set bits as ranges. */
  bootState(): BootState {
    const sb = this.meta.superblock;
    const bitmapUuids: Record<number, bigint> = {};
    const bitmaps: Record<number, BlockRange[]> = {};
    const blocks = this.sizeBytes / BITMAP_BLOCK_BYTES;
    for (const [peer, slot] of this.slots) {
      bitmapUuids[peer] = sb.peers[peer]?.bitmapUuid ?? 0n;
      bitmaps[peer] = slotRanges(this.meta, slot, blocks);
    }
    return {
      meta: {
        currentUuid: sb.currentUuid,
        bitmapUuids,
        historyUuids: sb.historyUuids.filter((u) => u !== 0n),
        flags: {
          consistent: (sb.flags & MDF.CONSISTENT) !== 0,
          wasUpToDate: (sb.flags & MDF.WAS_UP_TO_DATE) !== 0,
          crashedPrimary: (sb.flags & (MDF.CRASHED_PRIMARY | MDF.PRIMARY_IND)) !== 0,
        },
      },
      bitmaps,
      // Already applied to the bitmap by applyActivityLog().
      alExtents: [],
    };
  }

  /** Runs a data I/O in order with the metadata barriers before it. */
  io<T>(op: () => Promise<T>): Promise<T> {
    return this.gate === null ? op() : this.gate.then(op);
  }

  /** Queues a metadata barrier: flush data, then `write`; later I/O waits for it. */
  barrier(write: () => Promise<void>): Promise<void> {
    const run = (this.gate ?? Promise.resolve()).then(async () => {
      await this.data.flush();
      await write();
    });
    const gate = run.catch(() => undefined);
    this.gate = gate;
    void gate.then(() => {
      if (this.gate === gate) this.gate = null;
    });
    return run;
  }

  persistMeta(m: Metadata): Promise<void> {
    return this.barrier(() => this.meta.updateSuperblock((sb) => applyMetadata(sb, m)));
  }

  /** The engine's AL transaction: extents `add` become hot before any write into them. */
  alCommit(add: readonly number[], remove: readonly number[]): Promise<void> {
    return this.barrier(async () => {
      for (const e of remove) {
        if (this.alRefs.delete(e)) this.meta.endWrite(e * AL_EXTENT_BYTES, 1);
      }
      for (const e of add) {
        if (this.alRefs.has(e)) continue;
        this.alRefs.add(e);
        await this.meta.beginWrite(e * AL_EXTENT_BYTES, 1);
      }
    });
  }

  bitmapSet(peer: number, ranges: readonly BlockRange[]): void {
    const slot = this.slot(peer);
    for (const r of ranges) this.meta.bitmap.setRange(slot, r.start, r.start + r.count);
  }

  bitmapClear(peer: number, ranges: readonly BlockRange[]): void {
    const slot = this.slot(peer);
    for (const r of ranges) this.meta.bitmap.clearRange(slot, r.start, r.start + r.count);
  }

  bitmapFlush(): Promise<void> {
    return this.barrier(() => this.meta.flushBitmap());
  }

  /** Clean detach: every I/O done, bitmap written, AL marked clean, devices closed. */
  async close(): Promise<void> {
    await (this.gate ?? Promise.resolve());
    try {
      await this.data.flush();
      for (const e of this.alRefs) this.meta.endWrite(e * AL_EXTENT_BYTES, 1);
      this.alRefs.clear();
      await this.meta.markClean();
    } finally {
      await this.devices.close();
    }
  }

  /** Crash-like close for a failed disk: release the files, write nothing. */
  async abandon(): Promise<void> {
    await this.devices.close().catch(() => undefined);
  }

  private slot(peer: number): number {
    const s = this.slots.get(peer);
    if (s === undefined) throw new MetadataError(`no bitmap slot for peer node ${peer}`);
    return s;
  }
}

function applyMetadata(sb: Superblock, m: Metadata): Superblock {
  let flags =
    sb.flags & ~(MDF.CONSISTENT | MDF.WAS_UP_TO_DATE | MDF.CRASHED_PRIMARY | MDF.PRIMARY_IND);
  if (m.flags.consistent) flags |= MDF.CONSISTENT;
  if (m.flags.wasUpToDate) flags |= MDF.WAS_UP_TO_DATE;
  if (m.flags.crashedPrimary) flags |= MDF.PRIMARY_IND;
  const history = [...m.historyUuids.slice(0, sb.historyUuids.length)];
  while (history.length < sb.historyUuids.length) history.push(0n);
  return {
    ...sb,
    currentUuid: m.currentUuid,
    flags,
    historyUuids: history,
    peers: sb.peers.map((p, id) => {
      const u = m.bitmapUuids[id];
      return u === undefined ? p : { ...p, bitmapUuid: u };
    }),
  };
}

async function assignSlots(
  meta: MetadataStore,
  nodeId: number,
  peerIds: readonly number[],
): Promise<Map<number, number>> {
  const sb = meta.superblock;
  if (sb.nodeId !== -1 && sb.nodeId !== nodeId) {
    throw new MetadataError(
      `the metadata belongs to node-id ${sb.nodeId}, but this node is node-id ${nodeId}; ` +
        'check --node and node-id, or run create-md again',
    );
  }
  const used = new Set(sb.peers.filter((p) => p.bitmapIndex >= 0).map((p) => p.bitmapIndex));
  const peers = sb.peers.map((p) => ({ ...p }));
  let changed = sb.nodeId !== nodeId;
  const slots = new Map<number, number>();
  for (const id of peerIds) {
    const cur = peers[id];
    if (cur === undefined) throw new MetadataError(`peer node-id ${id} out of range`);
    if (cur.bitmapIndex >= 0) {
      slots.set(id, cur.bitmapIndex);
      continue;
    }
    let free = 0;
    while (used.has(free)) free++;
    if (free >= sb.maxPeers) {
      throw new MetadataError(
        `no free bitmap slot for peer node-id ${id}: max-peers is ${sb.maxPeers}; run create-md with more`,
      );
    }
    used.add(free);
    peers[id] = { ...cur, bitmapIndex: free };
    slots.set(id, free);
    changed = true;
  }
  if (changed) await meta.writeSuperblock({ ...sb, nodeId, peers });
  return slots;
}

function slotRanges(meta: MetadataStore, slot: number, blocks: number): BlockRange[] {
  const out: BlockRange[] = [];
  let b = meta.bitmap.findNext(slot, 0, true);
  while (b >= 0 && b < blocks) {
    const end = meta.bitmap.findNext(slot, b, false);
    const stop = end < 0 || end > blocks ? blocks : end;
    out.push({ start: b, count: stop - b });
    b = stop >= blocks ? -1 : meta.bitmap.findNext(slot, stop, true);
  }
  return out;
}
