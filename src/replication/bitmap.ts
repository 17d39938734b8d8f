// One peer slot of the out-of-sync bitmap: bit b set = block b (BITMAP_BLOCK_BYTES) may differ
// between this node and that peer. Keeps its weight (set bits) exact after every change.
import type { BlockRange } from './types.js';
import { assert } from '../util/assert.js';

export class Bitmap {
  private readonly words: Uint32Array;
  private setBits = 0;

  constructor(readonly blocks: number) {
    this.words = new Uint32Array(Math.ceil(blocks / 32));
  }

  get weight(): number {
    return this.setBits;
  }

  test(b: number): boolean {
    return ((this.words[b >>> 5] ?? 0) & (1 << (b & 31))) !== 0;
  }

  /** Sets the bits of a range; returns how many were newly set. */
  set(r: BlockRange): number {
    let n = 0;
    this.check(r);
    for (let b = r.start; b < r.start + r.count; b++) {
      const w = b >>> 5;
      const m = 1 << (b & 31);
      const old = this.words[w] ?? 0;
      if ((old & m) === 0) {
        this.words[w] = old | m;
        n++;
      }
    }
    this.setBits += n;
    return n;
  }

  /** Clears the bits of a range; returns how many were set before. */
  clear(r: BlockRange): number {
    let n = 0;
    this.check(r);
    for (let b = r.start; b < r.start + r.count; b++) {
      const w = b >>> 5;
      const m = 1 << (b & 31);
      const old = this.words[w] ?? 0;
      if ((old & m) !== 0) {
        this.words[w] = old & ~m;
        n++;
      }
    }
    this.setBits -= n;
    return n;
  }

  setAll(): void {
    this.set({ start: 0, count: this.blocks });
  }

  clearAll(): void {
    this.words.fill(0);
    this.setBits = 0;
  }

  /** The first set bit at or after `from`, or -1. */
  nextSet(from: number): number {
    for (let b = from; b < this.blocks; b++) {
      const w = this.words[b >>> 5] ?? 0;
      if (w === 0) {
        b = b | 31;
        continue;
      }
      if ((w & (1 << (b & 31))) !== 0) return b;
    }
    return -1;
  }

  /** All set bits as maximal runs. */
  ranges(): BlockRange[] {
    const out: BlockRange[] = [];
    let b = this.nextSet(0);
    while (b >= 0) {
      let e = b;
      while (e + 1 < this.blocks && this.test(e + 1)) e++;
      out.push({ start: b, count: e - b + 1 });
      b = this.nextSet(e + 1);
    }
    return out;
  }

  private check(r: BlockRange): void {
    assert(
      r.start >= 0 && r.count >= 0 && r.start + r.count <= this.blocks,
      `bitmap range ${r.start}+${r.count} out of ${this.blocks}`,
    );
  }
}

/** Merges touching or overlapping ranges (input in any order). */
export function mergeRanges(rs: readonly BlockRange[]): BlockRange[] {
  const s = [...rs].filter((r) => r.count > 0).sort((a, b) => a.start - b.start);
  const out: { start: number; count: number }[] = [];
  for (const r of s) {
    const last = out[out.length - 1];
    if (last !== undefined && r.start <= last.start + last.count) {
      last.count = Math.max(last.count, r.start + r.count - last.start);
    } else out.push({ start: r.start, count: r.count });
  }
  return out;
}
