// A queue of received socket chunks that is read without concatenating them: headers are
// parsed in place when they lie in one chunk, payloads leave as zero-copy slices.
// Invariant: `length` is the sum of the unread bytes of every queued chunk.

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // unread offset into chunks[0]
  private total = 0;

  get length(): number {
    return this.total;
  }

  /** The next 4 bytes as a big-endian u32 without consuming them (caller checks length). */
  peekU32(): number {
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= 4) return first.readUInt32BE(this.head);
    let v = 0;
    let i = 0;
    for (const c of this.chunks) {
      for (let j = c === first ? this.head : 0; j < c.length && i < 4; j++, i++)
        v = v * 256 + (c[j] ?? 0);
      if (i === 4) break;
    }
    return v;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /**
   * The next `n` bytes as one buffer, consumed. Zero-copy when they lie in one chunk;
   * otherwise copied into `scratch` (when big enough) or a new buffer. Caller checks length.
   */
  takeContiguous(n: number, scratch?: Buffer): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = scratch !== undefined && scratch.length >= n ? scratch : Buffer.allocUnsafe(n);
    this.copyOut(out, n);
    return out.length === n ? out : out.subarray(0, n);
  }

  /** The next `n` bytes as slices of the received chunks (no copy), consumed. */
  takeSlices(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0];
      if (c === undefined) break;
      const avail = c.length - this.head;
      const take = Math.min(avail, left);
      out.push(c.subarray(this.head, this.head + take));
      this.advance(take);
      left -= take;
    }
    return out;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let left = Math.min(n, this.total);
    const dropped = left;
    while (left > 0) {
      const c = this.chunks[0];
      if (c === undefined) break;
      const take = Math.min(c.length - this.head, left);
      this.advance(take);
      left -= take;
    }
    return dropped;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.total = 0;
  }

  private copyOut(out: Buffer, n: number): void {
    let done = 0;
    while (done < n) {
      const c = this.chunks[0];
      if (c === undefined) break;
      const take = Math.min(c.length - this.head, n - done);
      c.copy(out, done, this.head, this.head + take);
      this.advance(take);
      done += take;
    }
  }

  private advance(n: number): void {
    this.head += n;
    this.total -= n;
    const c = this.chunks[0];
    if (c !== undefined && this.head >= c.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
