// The smallest BlockStore over a Buffer, for NBD tests until storage's MemoryStore is merged.
// It tracks discarded/zeroed 4 KiB blocks as holes so base:allocation has something to report.
import { InvalidRequestError } from '../../../src/util/errors.js';
import type { BlockStore, Extent, WriteOptions, ZeroOptions } from '../../../src/storage/types.js';

const BLOCK = 4096;

export class BufferStore implements BlockStore {
  readonly name = 'buffer';
  readonly data: Buffer;
  private readonly holes: Uint8Array;
  flushes = 0;
  fuaWrites = 0;

  constructor(readonly sizeBytes: number) {
    this.data = Buffer.alloc(sizeBytes);
    this.holes = new Uint8Array(Math.ceil(sizeBytes / BLOCK)).fill(1);
  }

  private check(off: number, len: number): void {
    if (off % 512 !== 0 || len % 512 !== 0 || off + len > this.sizeBytes) {
      throw new InvalidRequestError(`bad range ${off}+${len}`);
    }
  }

  read(off: number, len: number): Promise<Buffer> {
    this.check(off, len);
    return Promise.resolve(Buffer.from(this.data.subarray(off, off + len)));
  }

  write(off: number, data: Uint8Array | readonly Uint8Array[], opts?: WriteOptions): Promise<void> {
    const parts = data instanceof Uint8Array ? [data] : data;
    const len = parts.reduce((n, p) => n + p.length, 0);
    this.check(off, len);
    let at = off;
    for (const p of parts) {
      this.data.set(p, at);
      at += p.length;
    }
    for (let b = Math.floor(off / BLOCK); b * BLOCK < off + len; b++) this.holes[b] = 0;
    if (opts?.fua === true) this.fuaWrites++;
    return Promise.resolve();
  }

  flush(): Promise<void> {
    this.flushes++;
    return Promise.resolve();
  }

  discard(off: number, len: number): Promise<void> {
    return this.writeZeroes(off, len);
  }

  writeZeroes(off: number, len: number, opts?: ZeroOptions): Promise<void> {
    this.check(off, len);
    this.data.fill(0, off, off + len);
    if (opts?.noHole !== true) {
      for (let b = Math.ceil(off / BLOCK); (b + 1) * BLOCK <= off + len; b++) this.holes[b] = 1;
    }
    return Promise.resolve();
  }

  extents(off: number, len: number): Promise<readonly Extent[]> {
    this.check(off, len);
    const out: Extent[] = [];
    let at = off;
    while (at < off + len) {
      const hole = this.holes[Math.floor(at / BLOCK)] === 1;
      let end = Math.min((Math.floor(at / BLOCK) + 1) * BLOCK, off + len);
      while (end < off + len && (this.holes[Math.floor(end / BLOCK)] === 1) === hole) {
        end = Math.min(end + BLOCK, off + len);
      }
      out.push({ offsetBytes: at, lengthBytes: end - at, zero: hole, hole });
      at = end;
    }
    return Promise.resolve(out);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
