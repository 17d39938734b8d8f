// A simulated disk with a volatile write cache: completed writes sit in the cache until a
// flush (or FUA) makes them durable; a crash keeps, per block, any version written since the
// last flush (the cache may have written back an older one, in any order) and tears the writes
// still in flight at sector granularity. A non-volatile disk (`volatile: false`, the cache of
// `disk-flushes no`) makes every completed write durable. Sparse: unwritten blocks read as 0.
import { BITMAP_BLOCK_BYTES, SECTOR_BYTES } from '../../src/limits.js';
import type { SeededRandom } from '../../src/util/prng.js';

const BLOCK = BITMAP_BLOCK_BYTES;
/** Older cached versions kept per block (the oldest ones are forgotten beyond this). */
const VERSIONS_KEPT = 8;

/** What a flush covers: the newest cached version of each block when the flush was issued. */
export type FlushSnapshot = ReadonlyMap<number, Uint8Array>;

export class SimDisk {
  readonly durable = new Map<number, Uint8Array>();
  /** The newest cached (not yet durable) version of each block: what a read returns. */
  readonly cache = new Map<number, Uint8Array>();
  /** Older cached versions, oldest first: a crash may leave any of them on the media. */
  private readonly older = new Map<number, Uint8Array[]>();
  /** Writes issued but not completed: a crash may apply any subset of their sectors. */
  readonly inFlight = new Map<number, { offsetBytes: number; data: Uint8Array }>();

  constructor(
    readonly sizeBytes: number,
    readonly volatile = true,
  ) {}

  private block(b: number): Uint8Array {
    return this.cache.get(b) ?? this.durable.get(b) ?? new Uint8Array(BLOCK);
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    return this.readFrom(offsetBytes, lengthBytes, (b) => this.block(b));
  }

  /** What a power loss right now is sure to keep. */
  readDurable(offsetBytes: number, lengthBytes: number): Uint8Array {
    return this.readFrom(
      offsetBytes,
      lengthBytes,
      (b) => this.durable.get(b) ?? new Uint8Array(BLOCK),
    );
  }

  private readFrom(
    offsetBytes: number,
    lengthBytes: number,
    blockOf: (b: number) => Uint8Array,
  ): Uint8Array {
    const out = new Uint8Array(lengthBytes);
    for (let o = 0; o < lengthBytes;) {
      const abs = offsetBytes + o;
      const b = Math.floor(abs / BLOCK);
      const inner = abs - b * BLOCK;
      const n = Math.min(BLOCK - inner, lengthBytes - o);
      out.set(blockOf(b).subarray(inner, inner + n), o);
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
      if (fua || !this.volatile) {
        this.durable.set(b, blk);
        this.cache.delete(b);
        this.older.delete(b);
      } else {
        const prev = this.cache.get(b);
        if (prev !== undefined) {
          const list = this.older.get(b) ?? [];
          list.push(prev);
          if (list.length > VERSIONS_KEPT) list.shift();
          this.older.set(b, list);
        }
        this.cache.set(b, blk);
      }
      o += n;
    }
  }

  zero(offsetBytes: number, lengthBytes: number, fua: boolean): void {
    this.write(offsetBytes, new Uint8Array(lengthBytes), fua);
  }

  /** Makes the given cached blocks (or all) durable, newest version. */
  flush(blocks?: Iterable<number>): void {
    const list = blocks === undefined ? [...this.cache.keys()] : [...blocks];
    for (const b of list) {
      const d = this.cache.get(b);
      if (d === undefined) continue;
      this.durable.set(b, d);
      this.cache.delete(b);
      this.older.delete(b);
    }
  }

  /** A flush issued now covers the versions cached now, not writes completing after. */
  snapshot(): FlushSnapshot {
    return new Map(this.cache);
  }

  /** Completes a flush issued at `snap`: those versions (or newer ones a FUA wrote) are durable. */
  flushSnapshot(snap: FlushSnapshot): void {
    for (const [b, d] of snap) {
      if (this.cache.get(b) === d) {
        this.durable.set(b, d);
        this.cache.delete(b);
        this.older.delete(b);
        continue;
      }
      const list = this.older.get(b);
      const i = list?.indexOf(d) ?? -1;
      if (list === undefined || i < 0) continue; // already durable, or overwritten by a FUA
      this.durable.set(b, d);
      list.splice(0, i + 1);
      if (list.length === 0) this.older.delete(b);
    }
  }

  /**
   * Power loss: each block keeps its durable version or any version cached since; in-flight
   * writes are dropped, applied or torn.
   */
  crash(rng: SeededRandom): { lostBlocks: number; tornWrites: number } {
    let lost = 0;
    for (const [b, d] of this.cache) {
      const versions = [...(this.older.get(b) ?? []), d];
      const pick = rng.int(versions.length + 1) - 1;
      if (pick >= 0) this.durable.set(b, versions[pick]!);
      if (pick !== versions.length - 1) lost++;
    }
    this.cache.clear();
    this.older.clear();
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
