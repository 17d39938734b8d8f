// The activity log: which 4 MiB extents may hold writes that the bitmap does not know about.
// On disk a ring of crc32c-checksummed 4 KiB transactions (struct al_transaction_on_disk);
// in memory a fixed set of `al-extents` slots. Pure: the MetadataStore does the I/O.
import { assert } from '../../util/assert.js';
import { err, ok, type Result } from '../../util/result.js';
import { crc32c } from './crc32c.js';
import {
  AL_CONTEXT_PER_TRANSACTION,
  AL_FREE,
  AL_MAGIC,
  AL_TR_INITIALIZED,
  AL_TR_UPDATE,
  AL_TRANSACTION_BYTES,
  AL_UPDATES_PER_TRANSACTION,
} from './format.js';

export interface AlUpdate {
  readonly slot: number;
  /** The extent now in the slot, or AL_FREE. */
  readonly extent: number;
}

export interface AlTransaction {
  readonly trNumber: number;
  /** AL_TR_UPDATE or AL_TR_INITIALIZED. */
  readonly type: number;
  readonly updates: readonly AlUpdate[];
  /** The al-extents in force ("context_size"). */
  readonly contextSize: number;
  readonly contextStartSlot: number;
  /** Up to 919 slot contents starting at contextStartSlot (AL_FREE for empty). */
  readonly context: readonly number[];
}

// Byte offsets inside one transaction block.
const T = {
  magic: 0,
  trNumber: 4,
  crc: 8,
  type: 12,
  nUpdates: 14,
  ctxSize: 16,
  ctxStart: 18,
  slots: 36,
  extents: 164,
  context: 420,
};

export function encodeAlTransaction(tr: AlTransaction): Buffer {
  assert(tr.updates.length <= AL_UPDATES_PER_TRANSACTION, 'too many AL updates');
  assert(tr.context.length <= AL_CONTEXT_PER_TRANSACTION, 'too much AL context');
  const b = Buffer.alloc(AL_TRANSACTION_BYTES);
  b.writeUInt32BE(AL_MAGIC, T.magic);
  b.writeUInt32BE(tr.trNumber >>> 0, T.trNumber);
  b.writeUInt16BE(tr.type, T.type);
  b.writeUInt16BE(tr.updates.length, T.nUpdates);
  b.writeUInt16BE(tr.contextSize, T.ctxSize);
  b.writeUInt16BE(tr.contextStartSlot, T.ctxStart);
  if (tr.type !== AL_TR_INITIALIZED) {
    for (let i = 0; i < AL_UPDATES_PER_TRANSACTION; i++) {
      const u = tr.updates[i];
      b.writeUInt16BE(u ? u.slot : 0xffff, T.slots + 2 * i);
      b.writeUInt32BE(u ? u.extent >>> 0 : AL_FREE, T.extents + 4 * i);
    }
    for (let i = 0; i < AL_CONTEXT_PER_TRANSACTION; i++) {
      b.writeUInt32BE((tr.context[i] ?? AL_FREE) >>> 0, T.context + 4 * i);
    }
  }
  b.writeUInt32BE(crc32c(0, b), T.crc);
  return b;
}

/** The block drbdmeta writes into every ring slot at create-md and after apply-al. */
export function initializedAlBlock(): Buffer {
  return encodeAlTransaction({
    trNumber: 0,
    type: AL_TR_INITIALIZED,
    updates: [],
    contextSize: 0,
    contextStartSlot: 0,
    context: [],
  });
}

export type AlDecodeError = 'bad-magic' | 'bad-crc' | 'short';

export function decodeAlTransaction(b: Uint8Array): Result<AlTransaction, AlDecodeError> {
  if (b.byteLength < AL_TRANSACTION_BYTES) return err('short');
  const buf = Buffer.from(b.buffer, b.byteOffset, AL_TRANSACTION_BYTES);
  if (buf.readUInt32BE(T.magic) !== AL_MAGIC) return err('bad-magic');
  const stored = buf.readUInt32BE(T.crc);
  const copy = Buffer.from(buf);
  copy.writeUInt32BE(0, T.crc);
  if (crc32c(0, copy) !== stored) return err('bad-crc');
  const nUpdates = buf.readUInt16BE(T.nUpdates);
  const updates: AlUpdate[] = [];
  for (let i = 0; i < AL_UPDATES_PER_TRANSACTION; i++) {
    const slot = buf.readUInt16BE(T.slots + 2 * i);
    // Like drbdmeta: unused trailing entries carry slot 0xffff.
    if (i >= nUpdates && slot === 0xffff) continue;
    updates.push({ slot, extent: buf.readUInt32BE(T.extents + 4 * i) });
  }
  const context: number[] = [];
  for (let i = 0; i < AL_CONTEXT_PER_TRANSACTION; i++)
    context.push(buf.readUInt32BE(T.context + 4 * i));
  return ok({
    trNumber: buf.readUInt32BE(T.trNumber),
    type: buf.readUInt16BE(T.type),
    updates,
    contextSize: buf.readUInt16BE(T.ctxSize),
    contextStartSlot: buf.readUInt16BE(T.ctxStart),
    context,
  });
}

/** Ring position (in 4 KiB blocks from the AL start) of the b-th transaction, with striping. */
export function ringBlock(b: number, stripes: number, stripeSize4k: number): number {
  const t = b % (stripes * stripeSize4k);
  return (t % stripes) * stripeSize4k + Math.floor(t / stripes);
}

export interface AlReplay {
  /** Extents the AL held at its newest transaction, sorted, without duplicates. */
  readonly hotExtents: readonly number[];
  /** Valid UPDATE transactions found. */
  readonly updates: number;
  /** Blocks with a bad magic or checksum (a torn last write leaves one). */
  readonly corrupt: number;
  /** The newest UPDATE transaction: its number and ring index, if any. */
  readonly newest: { readonly trNumber: number; readonly index: number } | undefined;
}

/**
 * Rebuilds the AL's slot table from the ring, as drbdmeta apply-al and DRBD's attach do:
 * order the valid UPDATE transactions by number, apply each one's context, then its updates.
 */
export function replayActivityLog(
  ring: Uint8Array,
  stripes: number,
  stripeSize4k: number,
): Result<AlReplay, string> {
  const mx = stripes * stripeSize4k;
  if (ring.byteLength < mx * AL_TRANSACTION_BYTES)
    return err(`AL ring needs ${mx * AL_TRANSACTION_BYTES} bytes`);
  const found: { index: number; tr: AlTransaction }[] = [];
  let valid = 0;
  for (let b = 0; b < mx; b++) {
    const at = ringBlock(b, stripes, stripeSize4k) * AL_TRANSACTION_BYTES;
    const d = decodeAlTransaction(ring.subarray(at, at + AL_TRANSACTION_BYTES));
    if (!d.ok) continue;
    valid++;
    if (d.value.type === AL_TR_UPDATE) found.push({ index: b, tr: d.value });
  }
  if (valid === 0) return err('no valid activity-log transaction found (was create-md run?)');
  // Transaction numbers wrap at 2^32: order by signed distance from the first one found.
  const base = found[0]?.tr.trNumber ?? 0;
  found.sort((a, b) => ((a.tr.trNumber - base) | 0) - ((b.tr.trNumber - base) | 0));
  const table = new Map<number, number>();
  for (const { tr } of found) {
    tr.context.forEach((extent, i) => {
      const slot = tr.contextStartSlot + i;
      if (extent === AL_FREE && slot >= tr.contextSize) return;
      table.set(slot, extent);
    });
    for (const u of tr.updates) table.set(u.slot, u.extent);
  }
  const hot = [...new Set([...table.values()].filter((e) => e !== AL_FREE))].sort((a, b) => a - b);
  const last = found[found.length - 1];
  return ok({
    hotExtents: hot,
    updates: found.length,
    corrupt: mx - valid,
    newest: last ? { trNumber: last.tr.trNumber, index: last.index } : undefined,
  });
}

/** What beginWrite() says about an extent. */
export type AlAdmission =
  /** Already covered by a committed transaction: write at once. */
  | 'hot'
  /** Covered only once a pending or in-flight transaction commits: commit one, then write. */
  | 'needs-transaction'
  /** No slot can be freed now (all busy): wait for writes to end, then ask again. */
  | 'busy';

export interface AlTransactionPlan {
  readonly transaction: AlTransaction;
  /** The encoded 4 KiB block. */
  readonly bytes: Buffer;
  /** Byte offset of the block from the start of the AL. */
  readonly offsetBytes: number;
  /** Extents this transaction drops from the AL: their bitmap bits must be on disk first. */
  readonly evicted: readonly number[];
}

export interface ActivityLogOptions {
  /** Number of slots ("al-extents"). */
  readonly extents: number;
  readonly stripes: number;
  readonly stripeSize4k: number;
  /** Continue numbering after this transaction (from replay), else start at 0 at ring block 0. */
  readonly after?: { readonly trNumber: number; readonly index: number } | undefined;
}

interface Pending {
  readonly slot: number;
  readonly extent: number;
  readonly evicted: number;
}

export class ActivityLog {
  readonly extents: number;
  private readonly stripes: number;
  private readonly stripeSize4k: number;
  /** Committed slot table. */
  private readonly slots: Uint32Array;
  /** Extent -> slot, for committed and pending entries. */
  private readonly where = new Map<number, number>();
  /** Extents in least-recently-used order (first = coldest). */
  private readonly lru = new Map<number, true>();
  private readonly refs = new Map<number, number>();
  private pending: Pending[] = [];
  private inFlight: Pending[] | undefined;
  private trNumber: number;
  private ringIndex: number;
  private contextCycle = 0;

  constructor(opts: ActivityLogOptions) {
    const ring = opts.stripes * opts.stripeSize4k;
    assert(ring >= 2, 'AL ring needs at least 2 transactions');
    assert(
      opts.extents >= 1 && opts.extents <= AL_CONTEXT_PER_TRANSACTION * (ring - 1),
      `al-extents ${opts.extents} cannot be recovered from a ring of ${ring}`,
    );
    this.extents = opts.extents;
    this.stripes = opts.stripes;
    this.stripeSize4k = opts.stripeSize4k;
    this.slots = new Uint32Array(opts.extents).fill(AL_FREE);
    this.trNumber = opts.after ? (opts.after.trNumber + 1) >>> 0 : 0;
    this.ringIndex = opts.after ? (opts.after.index + 1) % ring : 0;
  }

  /** Extents covered by committed transactions. */
  activeExtents(): number[] {
    return [...this.slots].filter((e) => e !== AL_FREE).sort((a, b) => a - b);
  }

  isHot(extent: number): boolean {
    const slot = this.where.get(extent);
    return slot !== undefined && this.slots[slot] === extent;
  }

  /** Writes in flight on an extent. */
  inUse(extent: number): number {
    return this.refs.get(extent) ?? 0;
  }

  /**
   * Admits a write to `extent`. Unless 'busy', the extent is referenced until endWrite(); a
   * cold extent is queued for the next transaction, evicting the coldest idle extent if full.
   */
  beginWrite(extent: number): AlAdmission {
    assert(Number.isSafeInteger(extent) && extent >= 0 && extent < AL_FREE, `AL extent ${extent}`);
    if (this.where.has(extent)) {
      this.ref(extent);
      return this.isHot(extent) ? 'hot' : 'needs-transaction';
    }
    if (this.pending.length >= AL_UPDATES_PER_TRANSACTION) return 'busy';
    const slot = this.freeSlot();
    if (slot === undefined) return 'busy';
    const evicted = this.slots[slot] ?? AL_FREE;
    if (evicted !== AL_FREE) {
      this.where.delete(evicted);
      this.lru.delete(evicted);
    }
    this.pending.push({ slot, extent, evicted });
    this.where.set(extent, slot);
    this.ref(extent);
    return 'needs-transaction';
  }

  endWrite(extent: number): void {
    const n = this.refs.get(extent);
    assert(n !== undefined && n > 0, `endWrite on AL extent ${extent} without beginWrite`);
    if (n === 1) this.refs.delete(extent);
    else this.refs.set(extent, n - 1);
  }

  /** Slot changes queued for the next transaction(s). */
  get pendingUpdates(): number {
    return this.pending.length;
  }

  /**
   * Queues explicit changes when the caller decides the AL's content (the replication engine's
   * alCommit): `remove` extents leave, `add` extents get a slot (a freed one, a free one, or the
   * coldest idle one). Returns false, changing nothing, if `add` cannot fit.
   */
  stageChange(add: readonly number[], remove: readonly number[]): boolean {
    const adding = [...new Set(add)].filter((e) => !this.where.has(e));
    const removing = [...new Set(remove)].filter((e) => this.where.has(e) && !adding.includes(e));
    const free = this.extents - this.where.size + removing.length;
    if (adding.length > free) return false;
    for (const e of removing) {
      const slot = this.where.get(e);
      assert(slot !== undefined && !this.refs.has(e), `AL extent ${e} removed while in use`);
      this.where.delete(e);
      this.lru.delete(e);
      // If e only waits in the queue, the slot's committed extent (if any) is what goes.
      const queued = this.pending.findIndex((p) => p.slot === slot);
      const evicted = queued >= 0 ? (this.pending[queued]?.evicted ?? AL_FREE) : e;
      if (queued >= 0) this.pending.splice(queued, 1);
      this.pending.push({ slot, extent: AL_FREE, evicted });
    }
    for (const e of adding) {
      const reuse = this.pending.findIndex((p) => p.extent === AL_FREE);
      const freed = reuse >= 0 ? this.pending[reuse] : undefined;
      if (freed) {
        this.pending[reuse] = { slot: freed.slot, extent: e, evicted: freed.evicted };
        this.where.set(e, freed.slot);
        continue;
      }
      const slot = this.freeSlot();
      assert(slot !== undefined, 'AL capacity was checked');
      const evicted = this.slots[slot] ?? AL_FREE;
      if (evicted !== AL_FREE) {
        this.where.delete(evicted);
        this.lru.delete(evicted);
      }
      this.pending.push({ slot, extent: e, evicted });
      this.where.set(e, slot);
    }
    return true;
  }

  /** True when queued updates wait for a transaction and none is in flight. */
  get transactionDue(): boolean {
    return this.pending.length > 0 && this.inFlight === undefined;
  }

  get transactionInFlight(): boolean {
    return this.inFlight !== undefined;
  }

  /** The next transaction for the queued updates; one at a time until committed or aborted. */
  prepareTransaction(): AlTransactionPlan | undefined {
    if (!this.transactionDue) return undefined;
    const batch = this.pending.slice(0, AL_UPDATES_PER_TRANSACTION);
    this.pending = this.pending.slice(batch.length);
    this.inFlight = batch;
    const after = Array.from(this.slots);
    for (const p of batch) after[p.slot] = p.extent;
    const n = Math.min(AL_CONTEXT_PER_TRANSACTION, this.extents - this.contextCycle);
    const transaction: AlTransaction = {
      trNumber: this.trNumber,
      type: AL_TR_UPDATE,
      updates: batch.map((p) => ({ slot: p.slot, extent: p.extent })),
      contextSize: this.extents,
      contextStartSlot: this.contextCycle,
      context: after.slice(this.contextCycle, this.contextCycle + n),
    };
    return {
      transaction,
      bytes: encodeAlTransaction(transaction),
      offsetBytes:
        ringBlock(this.ringIndex, this.stripes, this.stripeSize4k) * AL_TRANSACTION_BYTES,
      evicted: batch.map((p) => p.evicted).filter((e) => e !== AL_FREE),
    };
  }

  /** The planned transaction is durable: its extents are hot now. */
  commitTransaction(plan: AlTransactionPlan): void {
    assert(
      this.inFlight !== undefined && plan.transaction.trNumber === this.trNumber,
      'commit of an unknown AL transaction',
    );
    for (const p of this.inFlight) {
      this.slots[p.slot] = p.extent;
      this.lru.set(p.extent, true);
    }
    this.inFlight = undefined;
    this.trNumber = (this.trNumber + 1) >>> 0;
    this.ringIndex = (this.ringIndex + 1) % (this.stripes * this.stripeSize4k);
    this.contextCycle += AL_CONTEXT_PER_TRANSACTION;
    if (this.contextCycle >= this.extents) this.contextCycle = 0;
  }

  /** The transaction's write failed: its updates go back to the queue. */
  abortTransaction(): void {
    assert(this.inFlight !== undefined, 'abort without an AL transaction in flight');
    this.pending = [...this.inFlight, ...this.pending];
    this.inFlight = undefined;
  }

  /** Forgets every extent (after a clean shutdown, or after recovery marked them out of sync). */
  reset(opts: { restartRing: boolean }): void {
    assert(
      this.refs.size === 0 && this.inFlight === undefined && this.pending.length === 0,
      'AL reset while in use',
    );
    this.slots.fill(AL_FREE);
    this.where.clear();
    this.lru.clear();
    this.contextCycle = 0;
    if (opts.restartRing) {
      this.trNumber = 0;
      this.ringIndex = 0;
    }
  }

  private ref(extent: number): void {
    this.refs.set(extent, (this.refs.get(extent) ?? 0) + 1);
    if (this.lru.has(extent)) {
      this.lru.delete(extent);
      this.lru.set(extent, true);
    }
  }

  // A never-used slot first, else the least recently used committed extent with no writes.
  private freeSlot(): number | undefined {
    const reserved = new Set([...this.pending, ...(this.inFlight ?? [])].map((p) => p.slot));
    for (let s = 0; s < this.extents; s++) {
      if (this.slots[s] === AL_FREE && !reserved.has(s)) return s;
    }
    for (const extent of this.lru.keys()) {
      const slot = this.where.get(extent);
      if (slot !== undefined && !this.refs.has(extent) && !reserved.has(slot)) return slot;
    }
    return undefined;
  }
}
