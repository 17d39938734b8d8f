// What the chaos writer put on the device and what a read may return. Every 4 KiB block the
// writer sends carries a stamp (block number, write sequence number, a check word) repeated over
// the whole block, so a read tells which write it holds, and a torn or misplaced block shows.
// The ledger keeps, per block, the last write the client saw acknowledged and the writes issued
// after it that were never acknowledged (they may or may not have reached the disks): a read
// must return the acknowledged stamp or one of those later ones. Writes to one block are never
// in flight together, so "later" is well defined.

export const BLOCK_BYTES = 4096;
const MAGIC = 0x54434853; // "TCHS"
const STAMP_BYTES = 32;

/** A 32-bit check over the stamp's fields, so a stray copy of another block's data fails. */
function checkWord(runTag: number, block: number, seq: number): number {
  let h = 0x811c9dc5 ^ runTag;
  for (const v of [block % 0x1_0000_0000, Math.floor(block / 0x1_0000_0000), seq]) {
    for (let i = 0; i < 4; i++) {
      h ^= (v >>> (i * 8)) & 0xff;
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}

/** The 4 KiB a write of sequence number `seq` puts in `block`. */
export function stampBlock(runTag: number, block: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(BLOCK_BYTES);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(runTag >>> 0, 4);
  b.writeBigUInt64LE(BigInt(block), 8);
  b.writeBigUInt64LE(BigInt(seq), 16);
  b.writeUInt32LE(checkWord(runTag, block, seq), 24);
  b.writeUInt32LE(~MAGIC >>> 0, 28);
  for (let off = STAMP_BYTES; off < BLOCK_BYTES; off += STAMP_BYTES) b.copy(b, off, 0, STAMP_BYTES);
  return b;
}

export type Seen =
  | { readonly kind: 'zero' }
  | { readonly kind: 'stamp'; readonly seq: number }
  | { readonly kind: 'garbage'; readonly why: string };

/** What a 4 KiB read of `block` holds. */
export function readStamp(b: Buffer, runTag: number, block: number): Seen {
  if (b.length !== BLOCK_BYTES) return { kind: 'garbage', why: `short read (${b.length} bytes)` };
  let zero = true;
  for (let i = 0; i < BLOCK_BYTES; i += 8) {
    if (b.readBigUInt64LE(i) !== 0n) {
      zero = false;
      break;
    }
  }
  if (zero) return { kind: 'zero' };
  if (b.readUInt32LE(0) !== MAGIC || b.readUInt32LE(28) !== ~MAGIC >>> 0)
    return { kind: 'garbage', why: 'no stamp' };
  for (let off = STAMP_BYTES; off < BLOCK_BYTES; off += STAMP_BYTES) {
    if (b.compare(b, 0, STAMP_BYTES, off, off + STAMP_BYTES) !== 0)
      return { kind: 'garbage', why: `torn: bytes ${off}.. differ from the stamp` };
  }
  const tag = b.readUInt32LE(4);
  if (tag !== runTag >>> 0) return { kind: 'garbage', why: `stamp of another run (${tag})` };
  const owner = Number(b.readBigUInt64LE(8));
  const seq = Number(b.readBigUInt64LE(16));
  if (b.readUInt32LE(24) !== checkWord(runTag, owner, seq))
    return { kind: 'garbage', why: 'bad check word' };
  if (owner !== block) return { kind: 'garbage', why: `block ${owner}'s write ${seq}` };
  return { kind: 'stamp', seq };
}

interface BlockRecord {
  /** Sequence number of the last acknowledged write, 0 when none was acknowledged yet. */
  acked: number;
  /** Writes issued after `acked` and not acknowledged (failed, or cut off by a fault). */
  readonly unacked: number[];
  inFlight: boolean;
}

export class Ledger {
  private readonly blocks = new Map<number, BlockRecord>();
  /** Acknowledged writes in all (a multi-block write counts once). */
  ackedWrites = 0;

  constructor(readonly runTag: number) {}

  /** True when none of these blocks has a write in flight (the writer then may issue one). */
  free(blocks: readonly number[]): boolean {
    return blocks.every((b) => this.blocks.get(b)?.inFlight !== true);
  }

  issue(blocks: readonly number[], seq: number): void {
    for (const b of blocks) {
      let r = this.blocks.get(b);
      if (r === undefined) {
        r = { acked: 0, unacked: [], inFlight: false };
        this.blocks.set(b, r);
      }
      if (r.inFlight) throw new Error(`block ${b}: two writes in flight`);
      r.inFlight = true;
      r.unacked.push(seq);
    }
  }

  /** A read of these blocks is in flight: no write may be issued to them meanwhile. */
  hold(blocks: readonly number[]): void {
    for (const b of blocks) {
      let r = this.blocks.get(b);
      if (r === undefined) {
        r = { acked: 0, unacked: [], inFlight: false };
        this.blocks.set(b, r);
      }
      if (r.inFlight) throw new Error(`block ${b}: a read and a write in flight`);
      r.inFlight = true;
    }
  }

  release(blocks: readonly number[]): void {
    for (const b of blocks) this.record(b).inFlight = false;
  }

  /** The write `seq` to these blocks was acknowledged to the client. */
  ack(blocks: readonly number[], seq: number): void {
    for (const b of blocks) {
      const r = this.record(b);
      r.inFlight = false;
      r.acked = seq;
      r.unacked.length = 0;
    }
    this.ackedWrites++;
  }

  /** The write failed or its answer never came: the disks may hold it or not. */
  fail(blocks: readonly number[]): void {
    for (const b of blocks) this.record(b).inFlight = false;
  }

  /** Blocks that some write was issued to, ascending. */
  written(): number[] {
    return [...this.blocks.keys()].sort((a, b) => a - b);
  }

  /** Blocks holding an acknowledged write. */
  get ackedBlocks(): number {
    let n = 0;
    for (const r of this.blocks.values()) if (r.acked !== 0) n++;
    return n;
  }

  hasAck(block: number): boolean {
    return (this.blocks.get(block)?.acked ?? 0) !== 0;
  }

  /** Why `seen` in `block` loses an acknowledged write or is not a write at all; null if fine. */
  verdict(block: number, seen: Seen): string | null {
    const r = this.blocks.get(block);
    const acked = r?.acked ?? 0;
    switch (seen.kind) {
      case 'garbage':
        return `block ${block}: ${seen.why} (acknowledged write ${acked})`;
      case 'zero':
        return acked === 0 ? null : `block ${block}: zeroes, acknowledged write ${acked}`;
      case 'stamp':
        if (seen.seq === acked || r?.unacked.includes(seen.seq) === true) return null;
        return (
          `block ${block}: write ${seen.seq}, acknowledged write ${acked}` +
          (r !== undefined && r.unacked.length > 0 ? ` (later unacked ${r.unacked.join(',')})` : '')
        );
    }
  }

  private record(b: number): BlockRecord {
    const r = this.blocks.get(b);
    if (r === undefined) throw new Error(`block ${b}: no write was issued`);
    return r;
  }
}
