// An in-memory BlockStore for tests and the simulator, with a crash model: the durable image is
// the state at the last flush plus FUA writes; writes since then survive a crash per sector, at
// the choice of an injected Random (or an explicit selector), so any torn outcome can be replayed.
import { SECTOR_BYTES } from '../limits.js';
import { assert } from '../util/assert.js';
import { DiskIoError } from '../util/errors.js';
import type { Errno } from '../util/errno.js';
import type { Random } from '../util/prng.js';
import { checkOpen, checkRange, chunks, settle, totalLength } from './request.js';
import type { BlockStore, Extent, WriteOptions, ZeroOptions } from './types.js';

export type StoreOp = 'read' | 'write' | 'flush';

/** Decides per write whether it fails: returns an errno ("EIO") to fail it, undefined to pass. */
export type FaultInjector = (
  op: StoreOp,
  offsetBytes: number,
  lengthBytes: number,
) => Errno | undefined;

/**
 * Which sectors of the writes since the last flush survive a crash. `writeIndex` counts those
 * writes in completion order (0 = oldest), `sectorIndex` the sectors inside one write.
 */
export type CrashSelector = (
  writeIndex: number,
  sectorIndex: number,
  pendingWrites: number,
) => boolean;

interface PendingWrite {
  readonly offsetBytes: number;
  readonly data: Buffer;
  /** FUA: durable on completion, survives every crash. */
  readonly durable: boolean;
}

export interface MemoryStoreOptions {
  /** Drives which unflushed sectors survive crash(); required only if crash() is called without a selector. */
  readonly random?: Random;
  /** Initial contents (copied); its length must be whole sectors. */
  readonly image?: Uint8Array;
  readonly name?: string;
  /** Use `image` itself as the contents instead of a copy. @default false */
  readonly adopt?: boolean;
}

export class MemoryStore implements BlockStore {
  readonly sizeBytes: number;
  readonly name: string;
  private image: Buffer;
  private pending: PendingWrite[] = [];
  private closed = false;
  private fault: FaultInjector | undefined;
  private readonly random: Random | undefined;
  /** Completed writes (including zeroes/discards) since creation: a crash harness counts these. */
  writeCount = 0;
  flushCount = 0;

  constructor(sizeBytes: number, opts: MemoryStoreOptions = {}) {
    const size = opts.image ? opts.image.byteLength : sizeBytes;
    checkRange('memory', Number.MAX_SAFE_INTEGER, 0, size);
    this.sizeBytes = size;
    this.name = opts.name ?? 'memory';
    if (opts.image && opts.adopt === true)
      this.image = Buffer.from(opts.image.buffer, opts.image.byteOffset, size);
    else this.image = opts.image ? Buffer.from(opts.image) : Buffer.alloc(size);
    this.random = opts.random;
  }

  /** Makes later I/O fail where `fault` says so (a failing disk); undefined heals it. */
  setFault(fault: FaultInjector | undefined): void {
    this.fault = fault;
  }

  /** Writes completed since the last flush that a crash could still lose. */
  get pendingWrites(): number {
    return this.pending.filter((p) => !p.durable).length;
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return settle(() => {
      checkOpen(this.name, this.closed);
      checkRange(this.name, this.sizeBytes, offsetBytes, lengthBytes);
      this.injected('read', offsetBytes, lengthBytes);
      return Buffer.from(this.image.subarray(offsetBytes, offsetBytes + lengthBytes));
    });
  }

  write(
    offsetBytes: number,
    data: Uint8Array | readonly Uint8Array[],
    opts: WriteOptions = {},
  ): Promise<void> {
    return settle(() => {
      checkOpen(this.name, this.closed);
      const length = totalLength(data);
      checkRange(this.name, this.sizeBytes, offsetBytes, length);
      this.injected('write', offsetBytes, length);
      const parts = chunks(data).map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      this.apply(offsetBytes, Buffer.concat(parts, length), opts.fua === true);
    });
  }

  flush(): Promise<void> {
    return settle(() => {
      checkOpen(this.name, this.closed);
      this.injected('flush', 0, 0);
      this.pending = [];
      this.undo = [];
      this.flushCount++;
    });
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.writeZeroes(offsetBytes, lengthBytes);
  }

  writeZeroes(offsetBytes: number, lengthBytes: number, opts: ZeroOptions = {}): Promise<void> {
    return settle(() => {
      checkOpen(this.name, this.closed);
      checkRange(this.name, this.sizeBytes, offsetBytes, lengthBytes);
      this.injected('write', offsetBytes, lengthBytes);
      this.apply(offsetBytes, Buffer.alloc(lengthBytes), opts.fua === true);
    });
  }

  extents(offsetBytes: number, lengthBytes: number): Promise<readonly Extent[]> {
    return settle(() => {
      checkOpen(this.name, this.closed);
      checkRange(this.name, this.sizeBytes, offsetBytes, lengthBytes);
      if (lengthBytes === 0) return [];
      return [{ offsetBytes, lengthBytes, zero: false, hole: false }];
    });
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  /** The current contents, as a reader sees them (not what would survive a crash). */
  snapshot(): Buffer {
    return Buffer.from(this.image);
  }

  /**
   * Simulates power loss: computes which unflushed sectors survive (by `select`, or the injected
   * Random with even odds), makes that the store's contents with nothing pending, and returns a copy.
   */
  crash(select?: CrashSelector): Buffer {
    const image = this.crashImage(select ?? this.randomSelector());
    this.image = image;
    this.pending = [];
    this.undo = [];
    return Buffer.from(image);
  }

  /**
   * What a crash now would leave, without changing the store. With `lastInFlight`, the newest
   * write counts as still in flight (even a FUA one) and may be torn too: it is the last index.
   * With a window, only bytes [fromBytes, toBytes) are computed (and returned).
   */
  crashImage(
    select: CrashSelector,
    opts: {
      readonly lastInFlight?: boolean;
      readonly fromBytes?: number;
      readonly toBytes?: number;
    } = {},
  ): Buffer {
    const from = opts.fromBytes ?? 0;
    const to = opts.toBytes ?? this.sizeBytes;
    const last = this.pending.length - 1;
    const selectable = (i: number): boolean =>
      !(this.pending[i]?.durable ?? true) || (opts.lastInFlight === true && i === last);
    let count = 0;
    for (let i = 0; i <= last; i++) if (selectable(i)) count++;
    // Rebuild the window as of the last flush, then replay what survives, oldest first.
    const base = Buffer.from(this.image.subarray(from, to));
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = this.pending[i];
      const old = this.undo[i];
      if (p && old) copyClipped(old, p.offsetBytes, base, from);
    }
    let writeIndex = 0;
    this.pending.forEach((p, i) => {
      const sectors = p.data.byteLength / SECTOR_BYTES;
      const index = selectable(i) ? writeIndex++ : -1;
      for (let s = 0; s < sectors; s++) {
        const at = p.offsetBytes + s * SECTOR_BYTES;
        if (at + SECTOR_BYTES <= from || at >= to) continue;
        if (index < 0 || select(index, s, count)) {
          copyClipped(p.data.subarray(s * SECTOR_BYTES, (s + 1) * SECTOR_BYTES), at, base, from);
        }
      }
    });
    return base;
  }

  /** A store whose contents are `image` itself (not copied): for crash images in tests. */
  static adopt(image: Buffer, opts: Omit<MemoryStoreOptions, 'image' | 'adopt'> = {}): MemoryStore {
    return new MemoryStore(image.byteLength, { ...opts, image, adopt: true });
  }

  // Old contents under each pending write, newest last, so crash() can recover the flushed image.
  private undo: Buffer[] = [];

  private apply(offsetBytes: number, data: Buffer, durable: boolean): void {
    this.undo.push(Buffer.from(this.image.subarray(offsetBytes, offsetBytes + data.byteLength)));
    this.pending.push({ offsetBytes, data, durable });
    data.copy(this.image, offsetBytes);
    this.writeCount++;
  }

  private randomSelector(): CrashSelector {
    const random = this.random;
    assert(random !== undefined, 'MemoryStore.crash() needs a selector or an injected Random');
    return () => random.int(2) === 1;
  }

  private injected(op: StoreOp, offsetBytes: number, lengthBytes: number): void {
    const errno = this.fault?.(op, offsetBytes, lengthBytes);
    if (errno !== undefined) {
      throw new DiskIoError(
        `${this.name}: injected ${op} failure at offset ${offsetBytes} (${errno})`,
        offsetBytes,
        errno,
      );
    }
  }
}

/** Copies `src` (which belongs at `srcAt`) into `dst` (which holds bytes from `dstAt`), clipped. */
function copyClipped(src: Buffer, srcAt: number, dst: Buffer, dstAt: number): void {
  const start = Math.max(srcAt, dstAt);
  const end = Math.min(srcAt + src.byteLength, dstAt + dst.byteLength);
  if (end > start) src.copy(dst, start - dstAt, start - srcAt, end - srcAt);
}
