// The metadata as the replication engine sees it (UUIDs, bitmap UUIDs by peer node id, three
// flags, bitmap ranges by peer), converted to and from the v09 superblock. Pure. The shapes
// match src/replication/types.ts structurally, so the daemon passes the engine's values as is.
import { MDF } from './format.js';
import { HISTORY_UUIDS } from './format.js';
import type { Bitmap } from './bitmap.js';
import type { Superblock } from './superblock.js';

export interface PersistedFlags {
  readonly consistent: boolean;
  readonly wasUpToDate: boolean;
  /** Primary when last written (DRBD's PRIMARY_IND; CRASHED_PRIMARY also counts on load). */
  readonly crashedPrimary: boolean;
}

export interface PersistedMeta {
  readonly currentUuid: bigint;
  /** Per peer node id: the bitmap UUID of that peer's slot. */
  readonly bitmapUuids: Readonly<Record<number, bigint>>;
  /** Newest first; at most 32 are kept. */
  readonly historyUuids: readonly bigint[];
  readonly flags: PersistedFlags;
}

export interface BitRange {
  readonly start: number;
  readonly count: number;
}

/** The superblock with the engine's fields replaced; every other field is kept. */
export function withPersistedMeta(sb: Superblock, m: PersistedMeta): Superblock {
  let flags = sb.flags & ~(MDF.CONSISTENT | MDF.WAS_UP_TO_DATE | MDF.PRIMARY_IND);
  if (m.flags.consistent) flags |= MDF.CONSISTENT;
  if (m.flags.wasUpToDate) flags |= MDF.WAS_UP_TO_DATE;
  if (m.flags.crashedPrimary) flags |= MDF.PRIMARY_IND;
  else flags &= ~MDF.CRASHED_PRIMARY;
  const history = m.historyUuids.slice(0, HISTORY_UUIDS);
  return {
    ...sb,
    currentUuid: m.currentUuid,
    flags,
    peers: sb.peers.map((p, nodeId) => {
      const u = m.bitmapUuids[nodeId];
      return u === undefined ? p : { ...p, bitmapUuid: u };
    }),
    historyUuids: [...history, ...new Array<bigint>(HISTORY_UUIDS - history.length).fill(0n)],
  };
}

/** The engine's view of a superblock: bitmap UUIDs of the peers that have a bitmap slot. */
export function persistedMetaOf(sb: Superblock): PersistedMeta {
  const bitmapUuids: Record<number, bigint> = {};
  sb.peers.forEach((p, nodeId) => {
    if (p.bitmapIndex >= 0 && nodeId !== sb.nodeId) bitmapUuids[nodeId] = p.bitmapUuid;
  });
  const history = [...sb.historyUuids];
  while (history.length > 0 && history[history.length - 1] === 0n) history.pop();
  return {
    currentUuid: sb.currentUuid,
    bitmapUuids,
    historyUuids: history,
    flags: {
      consistent: (sb.flags & MDF.CONSISTENT) !== 0,
      wasUpToDate: (sb.flags & MDF.WAS_UP_TO_DATE) !== 0,
      crashedPrimary: (sb.flags & (MDF.PRIMARY_IND | MDF.CRASHED_PRIMARY)) !== 0,
    },
  };
}

/** The set bits of one slot as runs. */
export function setRanges(bm: Bitmap, slot: number): BitRange[] {
  const out: BitRange[] = [];
  for (let b = bm.findNext(slot, 0, true); b >= 0;) {
    const end = bm.findNext(slot, b, false);
    const stop = end < 0 ? bm.bitsPerSlot : end;
    out.push({ start: b, count: stop - b });
    b = stop >= bm.bitsPerSlot ? -1 : bm.findNext(slot, stop, true);
  }
  return out;
}
