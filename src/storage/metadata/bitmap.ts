// The out-of-sync bitmap: one bit per 4 KiB of data per peer slot, held in memory in DRBD's
// on-disk order (32-bit little-endian words, interleaved: word w of slot s is word w*maxPeers+s)
// so a 4 KiB page serializes without reshuffling. Changed pages are tracked for lazy write-back.
import { assert } from '../../util/assert.js';
import { err, ok, type Result } from '../../util/result.js';
import { AL_EXTENT_SHIFT, BM_BYTES_PER_BIT, MD_BLOCK_BYTES } from './format.js';

const WORDS_PER_PAGE = MD_BLOCK_BYTES / 4;
const BITS_PER_EXTENT = (1 << AL_EXTENT_SHIFT) / BM_BYTES_PER_BIT;

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** The bits [first, end) that a byte range touches: what a write must mark out of sync. */
export function bitsTouching(offsetBytes: number, lengthBytes: number): readonly [number, number] {
  if (lengthBytes <= 0) return [0, 0];
  return [
    Math.floor(offsetBytes / BM_BYTES_PER_BIT),
    Math.ceil((offsetBytes + lengthBytes) / BM_BYTES_PER_BIT),
  ];
}

/** The bits [first, end) a byte range covers completely: all a resync may mark in sync. */
export function bitsCovered(offsetBytes: number, lengthBytes: number): readonly [number, number] {
  const first = Math.ceil(offsetBytes / BM_BYTES_PER_BIT);
  const end = Math.floor((offsetBytes + lengthBytes) / BM_BYTES_PER_BIT);
  return end > first ? [first, end] : [first, first];
}

export class Bitmap {
  /** Words per slot: bits rounded up to 64 (DRBD keeps 64-bit words for interoperability). */
  readonly wordsPerSlot: number;
  private readonly words: Uint32Array;
  private readonly counts: number[];
  private readonly dirty = new Set<number>();

  constructor(
    readonly maxPeers: number,
    /** Bits per slot: ceil(data bytes / 4 KiB). */
    readonly bitsPerSlot: number,
  ) {
    assert(Number.isSafeInteger(maxPeers) && maxPeers >= 1 && maxPeers <= 32, 'bitmap max-peers');
    assert(Number.isSafeInteger(bitsPerSlot) && bitsPerSlot >= 0, 'bitmap size');
    this.wordsPerSlot = Math.ceil(bitsPerSlot / 64) * 2;
    this.words = new Uint32Array(this.wordsPerSlot * maxPeers);
    this.counts = new Array<number>(maxPeers).fill(0);
  }

  /**
   * A copy covering `bitsPerSlot` bits per slot (no fewer than now): the device grew. Word w
   * of slot s stays at w * maxPeers + s, so existing words keep their place on disk; the pages
   * from the old end on are marked dirty so the new area's words get written.
   */
  grown(bitsPerSlot: number): Bitmap {
    assert(bitsPerSlot >= this.bitsPerSlot, 'a bitmap only grows');
    const b = new Bitmap(this.maxPeers, bitsPerSlot);
    b.words.set(this.words);
    for (let i = 0; i < this.maxPeers; i++) b.counts[i] = this.counts[i] ?? 0;
    for (const p of this.dirty) b.dirty.add(p);
    const firstNew = Math.max(0, this.pageCount - 1);
    for (let p = firstNew; p < b.pageCount; p++) b.dirty.add(p);
    return b;
  }

  /** Serialized size in bytes (not padded to pages). */
  get byteLength(): number {
    return this.words.length * 4;
  }

  get pageCount(): number {
    return Math.ceil(this.byteLength / MD_BLOCK_BYTES);
  }

  get(slot: number, bit: number): boolean {
    this.checkSlot(slot);
    assert(bit >= 0 && bit < this.bitsPerSlot, `bit ${bit} out of range`);
    return ((this.words[(bit >>> 5) * this.maxPeers + slot] ?? 0) & (1 << (bit & 31))) !== 0;
  }

  /** Sets bits [first, end) of a slot; returns how many were newly set. */
  setRange(slot: number, first: number, end: number): number {
    return this.change(slot, first, end, true);
  }

  /** Clears bits [first, end) of a slot; returns how many were newly cleared. */
  clearRange(slot: number, first: number, end: number): number {
    return this.change(slot, first, end, false);
  }

  /** Marks a whole AL extent out of sync in every slot (crash recovery). */
  setExtentAllSlots(extent: number): number {
    const first = extent * BITS_PER_EXTENT;
    if (first >= this.bitsPerSlot) return 0;
    const end = Math.min(first + BITS_PER_EXTENT, this.bitsPerSlot);
    let n = 0;
    for (let s = 0; s < this.maxPeers; s++) n += this.setRange(s, first, end);
    return n;
  }

  count(slot: number): number {
    this.checkSlot(slot);
    return this.counts[slot] ?? 0;
  }

  countRange(slot: number, first: number, end: number): number {
    this.checkRange(slot, first, end);
    let n = 0;
    for (let bit = first; bit < end;) {
      const w = bit >>> 5;
      const lo = bit & 31;
      const hi = Math.min(32, end - (w << 5));
      n += popcount((this.words[w * this.maxPeers + slot] ?? 0) & rangeMask(lo, hi));
      bit = (w + 1) << 5;
    }
    return n;
  }

  /** The first bit >= from whose value is `value`, or -1. */
  findNext(slot: number, from: number, value = true): number {
    this.checkSlot(slot);
    if (from < 0) from = 0;
    for (let w = from >>> 5; w << 5 < this.bitsPerSlot; w++) {
      let x = this.words[w * this.maxPeers + slot] ?? 0;
      if (!value) x = ~x;
      if (w === from >>> 5) x &= rangeMask(from & 31, 32);
      if (x !== 0) {
        const bit = (w << 5) + (31 - Math.clz32(x & -x));
        return bit < this.bitsPerSlot ? bit : -1;
      }
    }
    return -1;
  }

  /** A copy of one slot's words, in order (word w holds bits 32w..32w+31, LSB first). */
  slotWords(slot: number): Uint32Array {
    this.checkSlot(slot);
    const out = new Uint32Array(this.wordsPerSlot);
    for (let w = 0; w < this.wordsPerSlot; w++) out[w] = this.words[w * this.maxPeers + slot] ?? 0;
    return out;
  }

  /** Pages changed since they were last taken for write-back. */
  get dirtyPages(): number {
    return this.dirty.size;
  }

  /** Hands out the changed pages (sorted) and forgets them; re-mark them if the write fails. */
  takeDirtyPages(): number[] {
    const pages = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    return pages;
  }

  /** Dirty pages that hold bits of the given AL extent, taken like takeDirtyPages(). */
  takeDirtyPagesOfExtent(extent: number): number[] {
    const first = extent * BITS_PER_EXTENT;
    if (first >= this.bitsPerSlot) return [];
    const firstByte = (first >>> 5) * this.maxPeers * 4;
    const endByte = ((first + BITS_PER_EXTENT + 31) >>> 5) * this.maxPeers * 4;
    const out: number[] = [];
    for (let p = Math.floor(firstByte / MD_BLOCK_BYTES); p * MD_BLOCK_BYTES < endByte; p++) {
      if (this.dirty.delete(p)) out.push(p);
    }
    return out;
  }

  markDirty(pages: readonly number[]): void {
    for (const p of pages) this.dirty.add(p);
  }

  /** Marks every page dirty (after create, or to rewrite the whole bitmap). */
  markAllDirty(): void {
    for (let p = 0; p < this.pageCount; p++) this.dirty.add(p);
  }

  /** One 4 KiB page of the on-disk image (zero padded past the end). */
  encodePage(page: number): Buffer {
    assert(page >= 0 && page < this.pageCount, `bitmap page ${page} out of range`);
    const out = Buffer.alloc(MD_BLOCK_BYTES);
    const first = page * WORDS_PER_PAGE;
    const end = Math.min(first + WORDS_PER_PAGE, this.words.length);
    for (let w = first; w < end; w++) out.writeUInt32LE(this.words[w] ?? 0, (w - first) * 4);
    return out;
  }

  /** The whole on-disk image, padded to whole pages. */
  encode(): Buffer {
    return Buffer.concat(Array.from({ length: this.pageCount }, (_, p) => this.encodePage(p)));
  }

  /**
   * Reads an on-disk image of at least byteLength bytes. Bits past bitsPerSlot are dropped
   * (DRBD clears that surplus too), so counts only ever cover real data.
   */
  static decode(bytes: Uint8Array, maxPeers: number, bitsPerSlot: number): Result<Bitmap, string> {
    const bm = new Bitmap(maxPeers, bitsPerSlot);
    if (bytes.byteLength < bm.byteLength) {
      return err(`bitmap needs ${bm.byteLength} bytes, got ${bytes.byteLength}`);
    }
    const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let w = 0; w < bm.words.length; w++) {
      const bitBase = Math.floor(w / maxPeers) << 5;
      let x = v.getUint32(w * 4, true);
      if (bitBase + 32 > bitsPerSlot) x &= rangeMask(0, Math.max(0, bitsPerSlot - bitBase));
      bm.words[w] = x;
      const slot = w % maxPeers;
      bm.counts[slot] = (bm.counts[slot] ?? 0) + popcount(x);
    }
    return ok(bm);
  }

  private change(slot: number, first: number, end: number, set: boolean): number {
    this.checkRange(slot, first, end);
    let changed = 0;
    for (let bit = first; bit < end;) {
      const w = bit >>> 5;
      const mask = rangeMask(bit & 31, Math.min(32, end - (w << 5)));
      const i = w * this.maxPeers + slot;
      const old = this.words[i] ?? 0;
      const now = (set ? old | mask : old & ~mask) >>> 0;
      if (now !== old) {
        this.words[i] = now;
        changed += popcount(old ^ now);
        this.dirty.add(Math.floor((i * 4) / MD_BLOCK_BYTES));
      }
      bit = (w + 1) << 5;
    }
    this.counts[slot] = (this.counts[slot] ?? 0) + (set ? changed : -changed);
    return changed;
  }

  private checkSlot(slot: number): void {
    assert(
      Number.isInteger(slot) && slot >= 0 && slot < this.maxPeers,
      `bitmap slot ${slot} out of range`,
    );
  }

  private checkRange(slot: number, first: number, end: number): void {
    this.checkSlot(slot);
    assert(
      Number.isInteger(first) &&
        Number.isInteger(end) &&
        first >= 0 &&
        first <= end &&
        end <= this.bitsPerSlot,
      `bit range [${first}, ${end}) outside 0..${this.bitsPerSlot}`,
    );
  }
}

/** Bits [lo, hi) of a 32-bit word set. */
function rangeMask(lo: number, hi: number): number {
  if (hi <= lo) return 0;
  const upper = hi >= 32 ? 0xffffffff : ((1 << hi) >>> 0) - 1;
  return (upper & ~(((1 << lo) >>> 0) - 1)) >>> 0;
}
