// A window onto part of another BlockStore: the data region of a disk whose internal metadata
// sits behind it. Requests are validated against the window, so nothing can reach the metadata.
import { checkOpen, checkRange, totalLength } from './request.js';
import type { BlockStore, Extent, WriteOptions, ZeroOptions } from './types.js';

/**
 * Exposes bytes [offsetBytes, offsetBytes + sizeBytes) of `base` as a store of its own.
 * close() closes only the view; the owner of `base` closes it.
 */
export function sliceStore(
  base: BlockStore,
  offsetBytes: number,
  sizeBytes: number,
  name?: string,
): BlockStore {
  checkRange(base.name, base.sizeBytes, offsetBytes, sizeBytes);
  return new SliceStore(
    base,
    offsetBytes,
    sizeBytes,
    name ?? `${base.name}[${offsetBytes}+${sizeBytes}]`,
  );
}

class SliceStore implements BlockStore {
  private closed = false;

  constructor(
    private readonly base: BlockStore,
    private readonly startBytes: number,
    readonly sizeBytes: number,
    readonly name: string,
  ) {}

  async read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer> {
    this.check(offsetBytes, lengthBytes);
    return this.base.read(this.startBytes + offsetBytes, lengthBytes, into);
  }

  async write(
    offsetBytes: number,
    data: Uint8Array | readonly Uint8Array[],
    opts?: WriteOptions,
  ): Promise<void> {
    this.check(offsetBytes, totalLength(data));
    return this.base.write(this.startBytes + offsetBytes, data, opts);
  }

  async flush(): Promise<void> {
    checkOpen(this.name, this.closed);
    return this.base.flush();
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.check(offsetBytes, lengthBytes);
    return this.base.discard(this.startBytes + offsetBytes, lengthBytes);
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, opts?: ZeroOptions): Promise<void> {
    this.check(offsetBytes, lengthBytes);
    return this.base.writeZeroes(this.startBytes + offsetBytes, lengthBytes, opts);
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<readonly Extent[]> {
    this.check(offsetBytes, lengthBytes);
    const inner = await this.base.extents(this.startBytes + offsetBytes, lengthBytes);
    return inner.map((e) => ({ ...e, offsetBytes: e.offsetBytes - this.startBytes }));
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private check(offsetBytes: number, lengthBytes: number): void {
    checkOpen(this.name, this.closed);
    checkRange(this.name, this.sizeBytes, offsetBytes, lengthBytes);
  }
}
