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
    this.check(r);
    const n = this.apply(r, true);
    this.setBits += n;
    return n;
  }

  /** Clears the bits of a range; returns how many were set before. */
  clear(r: BlockRange): number {
    this.check(r);
    const n = this.apply(r, false);
    this.setBits -= n;
    return n;
  }

  /** Sets or clears a range a 32-bit word at a time; returns how many bits changed. */
  private apply(r: BlockRange, on: boolean): number {
    let n = 0;
    let b = r.start;
    const end = r.start + r.count;
    while (b < end) {
      const w = b >>> 5;
      const lo = b & 31;
      const hi = Math.min(32, lo + (end - b));
      const mask = hi - lo === 32 ? 0xffff_ffff : (((1 << (hi - lo)) - 1) << lo) >>> 0;
      const old = this.words[w] ?? 0;
      const changed = (on ? ~old & mask : old & mask) >>> 0;
      n += popcount(changed);
      this.words[w] = on ? (old | mask) >>> 0 : (old & ~mask) >>> 0;
      b += hi - lo;
    }
    return n;
  }

  setAll(): void {
    this.set({ start: 0, count: this.blocks });
  }

  /** A copy covering `blocks` (at least as many as now): the new blocks start clear. */
  grown(blocks: number): Bitmap {
    assert(blocks >= this.blocks, 'a bitmap only grows');
    const b = new Bitmap(blocks);
    b.words.set(this.words);
    b.setBits = this.setBits;
    return b;
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

  /** The first clear bit at or after `from` (or `blocks` if none). */
  nextClear(from: number): number {
    for (let b = from; b < this.blocks; b++) {
      const w = this.words[b >>> 5] ?? 0;
      if (w === 0xffff_ffff) {
        b = b | 31;
        continue;
      }
      if ((w & (1 << (b & 31))) === 0) return b;
    }
    return this.blocks;
  }

  /** All set bits as maximal runs. */
  ranges(): BlockRange[] {
    const out: BlockRange[] = [];
    let b = this.nextSet(0);
    while (b >= 0) {
      const e = this.nextClear(b);
      out.push({ start: b, count: e - b });
      b = e < this.blocks ? this.nextSet(e) : -1;
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

function popcount(x: number): number {
  let v = x >>> 0;
  v = v - ((v >>> 1) & 0x5555_5555);
  v = (v & 0x3333_3333) + ((v >>> 2) & 0x3333_3333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f_0f0f, 0x0101_0101) >>> 24) & 0xff;
}
