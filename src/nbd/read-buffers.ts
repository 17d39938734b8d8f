// A connection's reply buffers for reads. A fresh Buffer per read is external memory that V8
// reclaims only with a full GC once the buffer has aged, and at a few hundred MB/s that was a
// mark-compact every ~100 ms in tandemd (docs/PERFORMANCE.md). A read up to
// NBD_READ_BUFFER_BYTES borrows one of these instead; it comes back only when the socket's write
// callback says the kernel has the bytes, and only if the backend answered in it (which means
// the read into it finished). Anything else is simply left to the GC: a buffer is never handed
// out while something may still write into it or read from it.
import { NBD_READ_BUFFER_BYTES, NBD_READ_BUFFERS_MAX } from '../limits.js';

export class ReadBuffers {
  private readonly free: Buffer[] = [];
  /** Buffers of this pool by their memory: give() takes back only these. */
  private readonly own = new WeakSet<ArrayBufferLike>();
  private made = 0;

  constructor(
    private readonly bytes = NBD_READ_BUFFER_BYTES,
    private readonly max = NBD_READ_BUFFERS_MAX,
  ) {}

  /** A buffer of exactly `len` bytes, or undefined (too large, or all lent out). */
  take(len: number): Buffer | undefined {
    if (len <= 0 || len > this.bytes) return undefined;
    let b = this.free.pop();
    if (b === undefined) {
      if (this.made >= this.max) return undefined;
      // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool.
      b = Buffer.allocUnsafeSlow(this.bytes);
      this.own.add(b.buffer);
      this.made++;
    }
    return b.subarray(0, len);
  }

  /**
   * `b`, from take(), is free again. The caller vouches that nothing still writes into it or
   * reads from it; a buffer not from this pool is ignored.
   */
  give(b: Buffer): void {
    if (!this.own.has(b.buffer) || b.byteOffset !== 0) return;
    this.free.push(Buffer.from(b.buffer, 0, this.bytes));
  }

  /** Buffers waiting to be lent (for tests). */
  get idle(): number {
    return this.free.length;
  }

  /** Buffers this pool has made (for tests). */
  get count(): number {
    return this.made;
  }
}
