// Big socket reads (node-performance.md: +11..22% on replicated loads): a socket created with
// `onread` reads straight into the free tail of a large slab, so one read can take hundreds of
// KiB. Chunks handed out are slices of the slab and stay valid: a slab is never rewritten, a
// fresh one is allocated when the tail gets short. Only dialed sockets can use it (net.Server
// has no onread option).
import { TCP_READ_SLAB_BYTES, TCP_READ_SLAB_TAIL_MIN_BYTES } from '../../limits.js';

export class SlabReader {
  private slab = Buffer.allocUnsafe(TCP_READ_SLAB_BYTES);
  private used = 0;
  /** Where chunks go; swapped from the setup handler to the channel once it exists. */
  sink: (chunk: Buffer) => void = () => {};

  /** The `onread` option for net.connect(). */
  readonly onread = {
    buffer: (): Buffer => {
      if (this.slab.length - this.used < TCP_READ_SLAB_TAIL_MIN_BYTES) {
        this.slab = Buffer.allocUnsafe(TCP_READ_SLAB_BYTES);
        this.used = 0;
      }
      return this.slab.subarray(this.used);
    },
    callback: (nread: number, buf: Uint8Array): boolean => {
      const chunk = Buffer.from(buf.buffer, buf.byteOffset, nread);
      this.used += nread;
      this.sink(chunk);
      return true;
    },
  };
}
