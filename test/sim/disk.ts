// A simulated disk with a volatile write cache: completed writes sit in the cache until a
// flush (or FUA) makes them durable; a crash keeps a random part of the cache and tears the
// writes still in flight at sector granularity. Sparse: unwritten blocks read as zeroes.
import { BITMAP_BLOCK_BYTES, SECTOR_BYTES } from '../../src/limits.js';
import type { SeededRandom } from '../../src/util/prng.js';

const BLOCK = BITMAP_BLOCK_BYTES;

export class SimDisk {
  readonly durable = new Map<number, Uint8Array>();
  readonly cache = new Map<number, Uint8Array>();
  /** Writes issued but not completed: a crash may apply any subset of their sectors. */
  readonly inFlight = new Map<number, { offsetBytes: number; data: Uint8Array }>();

  constructor(readonly sizeBytes: number) {}

  private block(b: number): Uint8Array {
    return this.cache.get(b) ?? this.durable.get(b) ?? new Uint8Array(BLOCK);
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const out = new Uint8Array(lengthBytes);
    for (let o = 0; o < lengthBytes;) {
      const abs = offsetBytes + o;
      const b = Math.floor(abs / BLOCK);
      const inner = abs - b * BLOCK;
      const n = Math.min(BLOCK - inner, lengthBytes - o);
      out.set(this.block(b).subarray(inner, inner + n), o);
      o += n;
    }
    return out;
  }

  /** Applies a completed write to the cache (or straight to durable media with FUA). */
  write(offsetBytes: number, data: Uint8Array, fua: boolean): void {
    for (let o = 0; o < data.length;) {
      const abs = offsetBytes + o;
      const b = Math.floor(abs / BLOCK);
      const inner = abs - b * BLOCK;
      const n = Math.min(BLOCK - inner, data.length - o);
      const blk = new Uint8Array(this.block(b));
      blk.set(data.subarray(o, o + n), inner);
      if (fua) {
        this.durable.set(b, blk);
        this.cache.delete(b);
      } else this.cache.set(b, blk);
      o += n;
    }
  }

  zero(offsetBytes: number, lengthBytes: number, fua: boolean): void {
    this.write(offsetBytes, new Uint8Array(lengthBytes), fua);
  }

  /** Makes the given cached blocks (or all) durable. */
  flush(blocks?: Iterable<number>): void {
    const list = blocks === undefined ? [...this.cache.keys()] : [...blocks];
    for (const b of list) {
      const d = this.cache.get(b);
      if (d === undefined) continue;
      this.durable.set(b, d);
      this.cache.delete(b);
    }
  }

  /** Power loss: keep a random part of the cache, tear in-flight writes, drop the rest. */
  crash(rng: SeededRandom): { lostBlocks: number; tornWrites: number } {
    let lost = 0;
    for (const [b, d] of this.cache) {
      if (rng.int(2) === 0) this.durable.set(b, d);
      else lost++;
    }
    this.cache.clear();
    let torn = 0;
    for (const w of this.inFlight.values()) {
      const mode = rng.int(3);
      if (mode === 0) continue;
      if (mode === 1) {
        this.write(w.offsetBytes, w.data, true);
        continue;
      }
      torn++;
      for (let o = 0; o < w.data.length; o += SECTOR_BYTES) {
        if (rng.int(2) === 0)
          this.write(w.offsetBytes + o, w.data.subarray(o, o + SECTOR_BYTES), true);
      }
    }
    this.inFlight.clear();
    return { lostBlocks: lost, tornWrites: torn };
  }
}
