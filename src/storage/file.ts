// A BlockStore on a regular file or a block device, with positional I/O and at most
// STORE_IO_IN_FLIGHT_MAX requests in flight. Every short or failed I/O becomes a DiskIoError
// with the offset and errno: a partial write is never reported as success. Small writes may run
// inline (synchronously, into the page cache) while they stay fast; see inlineWriteMaxBytes.
// Small reads likewise while they come from the page cache; see inlineReadMaxBytes.
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { constants, readSync, writeSync, writevSync } from 'node:fs';
import {
  SECTOR_BYTES,
  STORE_INLINE_WRITE_BACKOFF_MIN_MS,
  STORE_INLINE_WRITE_BACKOFF_MS,
  STORE_INLINE_WRITE_STALL_MS,
  STORE_INLINE_READ_BACKOFF_MAX_MS,
  STORE_INLINE_READ_BACKOFF_MIN_MS,
  STORE_INLINE_READ_STALL_MS,
  STORE_IO_IN_FLIGHT_MAX,
  STORE_ZERO_CHUNK_BYTES,
} from '../limits.js';
import { DiskIoError, InvalidRequestError } from '../util/errors.js';
import { errnoFromCode } from '../util/errno.js';
import { checkOpen, checkRange, chunks, settle, totalLength } from './request.js';
import type { BlockStore, Extent, WriteOptions, ZeroOptions } from './types.js';

export interface FileStoreOptions {
  /** Open without write access; writes then fail with InvalidRequestError. @default false */
  readonly readOnly?: boolean;
  /** Bypass the page cache (O_DIRECT). Callers must then pass aligned buffers. @default false */
  readonly direct?: boolean;
  /**
   * Writes of at most this many bytes run synchronously on the calling thread: a write into
   * the page cache takes microseconds, less than the libuv threadpool's round trip (a worker
   * wake-up and a loop wake-up). One that takes longer than STORE_INLINE_WRITE_STALL_MS
   * (writeback throttling, a slow device) sends writes back to the threadpool for a while
   * (STORE_INLINE_WRITE_BACKOFF_MIN_MS, doubling per stall up to STORE_INLINE_WRITE_BACKOFF_MS),
   * so a stall costs the event loop once, not every write.
   * Needs `clock`; ignored with `direct`. @default 0 (never inline)
   */
  readonly inlineWriteMaxBytes?: number;
  /** Monotonic milliseconds, for the inline-write stall guard. */
  readonly clock?: { nowMs(): number };
  /**
   * Reads of at most this many bytes run synchronously on the calling thread: from the page
   * cache that is a memcpy, far cheaper than the threadpool round trip. One slower than
   * STORE_INLINE_READ_STALL_MS (a page-cache miss went to the device) sends reads to the
   * threadpool for STORE_INLINE_READ_BACKOFF_MIN_MS, doubling per stall up to
   * STORE_INLINE_READ_BACKOFF_MAX_MS: cold data costs the event loop one stall per backoff.
   * Needs `clock`; ignored with `direct`. @default 0 (never inline)
   */
  readonly inlineReadMaxBytes?: number;
}

/** Opens `path` (a regular file or a block device) as a BlockStore sized from the device. */
export async function openFileStore(path: string, opts: FileStoreOptions = {}): Promise<FileStore> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw ioError(`${path}: cannot stat backing device`, 0, e);
  }
  if (!info.isFile() && !info.isBlockDevice()) {
    throw new InvalidRequestError(`${path}: not a regular file or a block device`);
  }
  const flags =
    (opts.readOnly === true ? constants.O_RDONLY : constants.O_RDWR) |
    (opts.direct === true ? constants.O_DIRECT : 0);
  let handle: FileHandle;
  try {
    handle = await open(path, flags);
  } catch (e) {
    throw ioError(`${path}: cannot open backing device`, 0, e);
  }
  try {
    const rawBytes = info.isBlockDevice() ? await blockDeviceBytes(path, info.rdev) : info.size;
    // A trailing partial sector cannot be addressed by sector-aligned requests.
    const sizeBytes = rawBytes - (rawBytes % SECTOR_BYTES);
    const store = new FileStore(
      path,
      handle,
      sizeBytes,
      info.isBlockDevice(),
      opts.readOnly === true,
    );
    const clock = opts.direct === true ? undefined : opts.clock;
    if (clock !== undefined && (opts.inlineWriteMaxBytes ?? 0) > 0) {
      store.inlineWrites = new InlineGuard(opts.inlineWriteMaxBytes ?? 0, clock, {
        stallMs: STORE_INLINE_WRITE_STALL_MS,
        backoffMinMs: STORE_INLINE_WRITE_BACKOFF_MIN_MS,
        backoffMaxMs: STORE_INLINE_WRITE_BACKOFF_MS,
      });
    }
    if (clock !== undefined && (opts.inlineReadMaxBytes ?? 0) > 0) {
      store.inlineReads = new InlineGuard(opts.inlineReadMaxBytes ?? 0, clock, {
        stallMs: STORE_INLINE_READ_STALL_MS,
        backoffMinMs: STORE_INLINE_READ_BACKOFF_MIN_MS,
        backoffMaxMs: STORE_INLINE_READ_BACKOFF_MAX_MS,
      });
    }
    return store;
  } catch (e) {
    await handle.close();
    throw e;
  }
}

// Node cannot issue BLKGETSIZE64; sysfs reports the same size in 512-byte sectors.
async function blockDeviceBytes(path: string, rdev: number): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | (Math.floor(rdev / 4096) & ~0xff);
  const sysfs = `/sys/dev/block/${major}:${minor}/size`;
  let text: string;
  try {
    text = await readFile(sysfs, 'utf8');
  } catch (e) {
    throw ioError(`${path}: cannot read the device size from ${sysfs}`, 0, e);
  }
  const sectors = Number(text.trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) {
    throw new DiskIoError(`${path}: ${sysfs} holds no size ("${text.trim()}")`, 0, 'EINVAL');
  }
  return sectors * SECTOR_BYTES;
}

function ioError(message: string, offsetBytes: number, cause: unknown): DiskIoError {
  const code = errnoFromCode((cause as { code?: unknown } | null)?.code);
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new DiskIoError(`${message}: ${detail}`, offsetBytes, code, { cause });
}

export class FileStore implements BlockStore {
  private inFlight = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly idle: (() => void)[] = [];
  private closed = false;
  private closing: Promise<void> | undefined;
  private static zeroes: Buffer | undefined;
  /** Most requests ever in flight at once (never above STORE_IO_IN_FLIGHT_MAX). */
  peakInFlight = 0;
  /** Set by openFileStore when small writes / reads may run inline (inlineWrite/ReadMaxBytes). */
  inlineWrites: InlineGuard | undefined;
  inlineReads: InlineGuard | undefined;
  /** fdatasyncs running: a write meanwhile may wait in the kernel for the journal commit. */
  private flushesRunning = 0;

  constructor(
    readonly name: string,
    private readonly handle: FileHandle,
    private size: number,
    readonly isBlockDevice: boolean,
    private readonly readOnly: boolean,
  ) {}

  get sizeBytes(): number {
    return this.size;
  }

  /** The device's size now (it may have grown since open), whole sectors; changes nothing. */
  async measure(): Promise<number> {
    checkOpen(this.name, this.closed);
    let rawBytes: number;
    try {
      const info = await this.handle.stat();
      rawBytes = this.isBlockDevice ? await blockDeviceBytes(this.name, info.rdev) : info.size;
    } catch (e) {
      if (e instanceof DiskIoError) throw e;
      throw ioError(`${this.name}: cannot stat backing device`, 0, e);
    }
    return rawBytes - (rawBytes % SECTOR_BYTES);
  }

  /**
   * Adopts the device's current size if it grew (online resize); returns the size in use.
   * A device never shrinks under a running store: that would cut off data in use.
   */
  async refreshSize(): Promise<number> {
    const now = await this.measure();
    if (now > this.size) this.size = now;
    return this.size;
  }

  async read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    checkOpen(this.name, this.closed);
    checkRange(this.name, this.sizeBytes, offsetBytes, lengthBytes);
    // A fresh buffer per read is external memory V8 only reclaims with a full GC once the
    // buffer has aged (docs/PERFORMANCE.md): the caller's own buffer, when it offers one.
    const buf = into?.length === lengthBytes ? into : Buffer.allocUnsafe(lengthBytes);
    if (this.inlineReads?.allows(lengthBytes) === true) {
      this.readInline(buf, offsetBytes);
      return buf;
    }
    await this.slot(async () => {
      let done = 0;
      while (done < lengthBytes) {
        const at = offsetBytes + done;
        let n: number;
        try {
          ({ bytesRead: n } = await this.handle.read(buf, done, lengthBytes - done, at));
        } catch (e) {
          throw ioError(
            `${this.name}: read of ${lengthBytes} bytes at ${offsetBytes} failed`,
            at,
            e,
          );
        }
        // End of file inside the store's size: the device shrank under us.
        if (n === 0) {
          throw new DiskIoError(
            `${this.name}: short read at offset ${at} (device shrank?)`,
            at,
            'EIO',
          );
        }
        done += n;
      }
    });
    return buf;
  }

  async write(
    offsetBytes: number,
    data: Uint8Array | readonly Uint8Array[],
    opts: WriteOptions = {},
  ): Promise<void> {
    checkOpen(this.name, this.closed);
    const length = totalLength(data);
    checkRange(this.name, this.sizeBytes, offsetBytes, length);
    this.checkWritable();
    if (!this.writeInline(offsetBytes, chunks(data), length))
      await this.slot(() => this.writeAll(offsetBytes, chunks(data), length));
    if (opts.fua === true) await this.flush();
  }

  private readInline(buf: Buffer, offsetBytes: number): void {
    const guard = this.inlineReads;
    if (guard === undefined) return;
    const startMs = guard.clock.nowMs();
    let done = 0;
    while (done < buf.length) {
      const at = offsetBytes + done;
      let n: number;
      try {
        n = readSync(this.handle.fd, buf, done, buf.length - done, at);
      } catch (e) {
        throw ioError(`${this.name}: read of ${buf.length} bytes at ${offsetBytes} failed`, at, e);
      }
      if (n === 0)
        throw new DiskIoError(
          `${this.name}: short read at offset ${at} (device shrank?)`,
          at,
          'EIO',
        );
      done += n;
    }
    guard.done(startMs);
  }

  /** Writes synchronously when allowed (see inlineWriteMaxBytes); false: not attempted. */
  private writeInline(offsetBytes: number, parts: readonly Uint8Array[], length: number): boolean {
    const guard = this.inlineWrites;
    // A write issued while an fdatasync of this file runs can block until it ends (ext4 waits
    // for the journal commit: 1-4 ms measured here): never on the event loop.
    if (guard === undefined || this.flushesRunning > 0 || !guard.allows(length)) return false;
    const startMs = guard.clock.nowMs();
    let done = 0;
    let rest = parts.filter((p) => p.byteLength > 0);
    while (done < length) {
      const at = offsetBytes + done;
      let n: number;
      try {
        const first = rest[0];
        n =
          rest.length === 1 && first !== undefined
            ? writeSync(this.handle.fd, first, 0, first.byteLength, at)
            : writevSync(this.handle.fd, rest, at);
      } catch (e) {
        throw ioError(`${this.name}: write of ${length} bytes at ${offsetBytes} failed`, at, e);
      }
      if (n <= 0)
        throw new DiskIoError(`${this.name}: write at offset ${at} made no progress`, at, 'EIO');
      done += n;
      rest = skip(rest, n);
    }
    guard.done(startMs);
    return true;
  }

  async flush(): Promise<void> {
    checkOpen(this.name, this.closed);
    await this.slot(async () => {
      this.flushesRunning++;
      try {
        await this.handle.datasync();
      } catch (e) {
        throw ioError(`${this.name}: flush (fdatasync) failed`, 0, e);
      } finally {
        this.flushesRunning--;
      }
    });
  }

  // Node exposes neither fallocate(PUNCH_HOLE) nor BLKDISCARD, so discard writes zeroes: both
  // replicas then read the same bytes, which a discard that may keep old data would not promise.
  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.writeZeroes(offsetBytes, lengthBytes);
  }

  async writeZeroes(
    offsetBytes: number,
    lengthBytes: number,
    opts: ZeroOptions = {},
  ): Promise<void> {
    checkOpen(this.name, this.closed);
    checkRange(this.name, this.sizeBytes, offsetBytes, lengthBytes);
    this.checkWritable();
    const zero = (FileStore.zeroes ??= Buffer.alloc(STORE_ZERO_CHUNK_BYTES));
    const writes: Promise<void>[] = [];
    for (let at = offsetBytes; at < offsetBytes + lengthBytes; at += zero.byteLength) {
      const n = Math.min(zero.byteLength, offsetBytes + lengthBytes - at);
      writes.push(this.slot(() => this.writeAll(at, [zero.subarray(0, n)], n)));
    }
    const results = await Promise.allSettled(writes);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    if (opts.fua === true) await this.flush();
  }

  // SEEK_DATA/SEEK_HOLE are not reachable from Node: report one allocated data extent.
  extents(offsetBytes: number, lengthBytes: number): Promise<readonly Extent[]> {
    return settle(() => {
      checkOpen(this.name, this.closed);
      checkRange(this.name, this.sizeBytes, offsetBytes, lengthBytes);
      return lengthBytes === 0 ? [] : [{ offsetBytes, lengthBytes, zero: false, hole: false }];
    });
  }

  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.closed = true;
    // Let queued and in-flight I/O finish before the descriptor goes away.
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    try {
      if (!this.readOnly) await this.handle.datasync();
    } finally {
      await this.handle.close();
    }
  }

  private checkWritable(): void {
    if (this.readOnly) throw new InvalidRequestError(`${this.name}: opened read-only`);
  }

  private async writeAll(
    offsetBytes: number,
    parts: readonly Uint8Array[],
    length: number,
  ): Promise<void> {
    let done = 0;
    let rest = parts.filter((p) => p.byteLength > 0);
    while (done < length) {
      const at = offsetBytes + done;
      let n: number;
      try {
        ({ bytesWritten: n } = await this.handle.writev(rest, at));
      } catch (e) {
        throw ioError(`${this.name}: write of ${length} bytes at ${offsetBytes} failed`, at, e);
      }
      if (n <= 0)
        throw new DiskIoError(`${this.name}: write at offset ${at} made no progress`, at, 'EIO');
      done += n;
      rest = skip(rest, n);
    }
  }

  // Bounds the requests in flight; a finished request hands its slot to the oldest waiter.
  private async slot<T>(run: () => Promise<T>): Promise<T> {
    if (this.inFlight >= STORE_IO_IN_FLIGHT_MAX) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.inFlight++;
      this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
    }
    try {
      return await run();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else if (--this.inFlight === 0) for (const wake of this.idle.splice(0)) wake();
    }
  }
}

function skip(parts: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = n;
  for (const p of parts) {
    if (left >= p.byteLength) {
      left -= p.byteLength;
      continue;
    }
    out.push(left > 0 ? p.subarray(left) : p);
    left = 0;
  }
  return out;
}

/**
 * When small I/O may run synchronously on the event loop: counts what ran inline, and after
 * one slower than `stallMs` sends I/O back to the threadpool for a backoff that doubles per
 * stall (from backoffMinMs, reset after a quiet backoffMaxMs) up to backoffMaxMs.
 */
export class InlineGuard {
  /** Operations done inline, and how often a slow one sent them back to the threadpool. */
  ops = 0;
  stalls = 0;
  private resumeAtMs = 0;
  private backoffMs: number;
  private lastStallMs = -Infinity;

  constructor(
    readonly maxBytes: number,
    readonly clock: { nowMs(): number },
    private readonly bounds: {
      readonly stallMs: number;
      readonly backoffMinMs: number;
      readonly backoffMaxMs: number;
    },
  ) {
    this.backoffMs = bounds.backoffMinMs;
  }

  allows(lengthBytes: number): boolean {
    return lengthBytes <= this.maxBytes && this.clock.nowMs() >= this.resumeAtMs;
  }

  done(startMs: number): void {
    this.ops++;
    const endMs = this.clock.nowMs();
    const { stallMs, backoffMinMs, backoffMaxMs } = this.bounds;
    if (endMs - startMs <= stallMs) return;
    this.stalls++;
    if (endMs - this.lastStallMs > backoffMaxMs) this.backoffMs = backoffMinMs;
    this.resumeAtMs = endMs + this.backoffMs;
    this.backoffMs = Math.min(2 * this.backoffMs, backoffMaxMs);
    this.lastStallMs = endMs;
  }
}
