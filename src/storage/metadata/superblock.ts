// The v09 superblock: a 4 KiB big-endian block (struct meta_data_on_disk_9). Pure encode/decode;
// decode validates what drbdmeta validates and never throws on bad bytes.
import { err, ok, type Result } from '../../util/result.js';
import {
  HISTORY_UUIDS,
  MAX_PEERS_MAX,
  MD_MAGIC_V09,
  NODE_ID_MAX,
  PEER_SLOTS,
  SUPERBLOCK_BYTES,
} from './format.js';

export interface PeerSlot {
  readonly bitmapUuid: bigint;
  readonly bitmapDagtag: bigint;
  /** MDF_PEER_* bits. */
  readonly flags: number;
  /** Which bitmap slot tracks this node, or -1 for none. */
  readonly bitmapIndex: number;
}

export interface Superblock {
  /** Last agreed size of the replicated device ("la-size-sect"). */
  readonly effectiveSizeSectors: number;
  readonly currentUuid: bigint;
  /** Member node mask (newer DRBD; only meaningful with its flag). */
  readonly members: bigint;
  readonly deviceUuid: bigint;
  /** MDF_* bits. */
  readonly flags: number;
  readonly mdSizeSectors: number;
  /** AL start relative to the superblock, in sectors (negative for internal metadata). */
  readonly alOffsetSectors: number;
  /** The al-extents the AL was last written with. */
  readonly alExtents: number;
  /** Bitmap start relative to the superblock, in sectors. */
  readonly bmOffsetSectors: number;
  readonly bmBytesPerBit: number;
  readonly laPeerMaxBioSize: number;
  readonly maxPeers: number;
  /** This node's id, -1 before the first attach. */
  readonly nodeId: number;
  readonly alStripes: number;
  readonly alStripeSize4k: number;
  /** Always PEER_SLOTS entries, indexed by node id. */
  readonly peers: readonly PeerSlot[];
  /** Always HISTORY_UUIDS entries, newest first. */
  readonly historyUuids: readonly bigint[];
}

// Byte offsets inside the block.
const O = {
  effectiveSize: 0,
  currentUuid: 8,
  members: 16,
  deviceUuid: 48,
  flags: 56,
  magic: 60,
  mdSizeSect: 64,
  alOffset: 68,
  alNrExtents: 72,
  bmOffset: 76,
  bmBytesPerBit: 80,
  laPeerMaxBioSize: 84,
  bmMaxPeers: 88,
  nodeId: 92,
  alStripes: 96,
  alStripeSize4k: 100,
  peers: 112,
  peerBytes: 32,
  history: 112 + 32 * PEER_SLOTS,
} as const;

export const SUPERBLOCK_USED_BYTES = O.history + 8 * HISTORY_UUIDS;

export const emptyPeerSlot: PeerSlot = {
  bitmapUuid: 0n,
  bitmapDagtag: 0n,
  flags: 0,
  bitmapIndex: -1,
};

export function encodeSuperblock(sb: Superblock): Buffer {
  const b = Buffer.alloc(SUPERBLOCK_BYTES);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  v.setBigUint64(O.effectiveSize, BigInt(sb.effectiveSizeSectors));
  v.setBigUint64(O.currentUuid, sb.currentUuid);
  v.setBigUint64(O.members, sb.members);
  v.setBigUint64(O.deviceUuid, sb.deviceUuid);
  v.setUint32(O.flags, sb.flags >>> 0);
  v.setUint32(O.magic, MD_MAGIC_V09);
  v.setUint32(O.mdSizeSect, sb.mdSizeSectors);
  v.setInt32(O.alOffset, sb.alOffsetSectors);
  v.setUint32(O.alNrExtents, sb.alExtents);
  v.setInt32(O.bmOffset, sb.bmOffsetSectors);
  v.setUint32(O.bmBytesPerBit, sb.bmBytesPerBit);
  v.setUint32(O.laPeerMaxBioSize, sb.laPeerMaxBioSize);
  v.setUint32(O.bmMaxPeers, sb.maxPeers);
  v.setInt32(O.nodeId, sb.nodeId);
  v.setUint32(O.alStripes, sb.alStripes);
  v.setUint32(O.alStripeSize4k, sb.alStripeSize4k);
  for (let p = 0; p < PEER_SLOTS; p++) {
    const peer = sb.peers[p] ?? emptyPeerSlot;
    const at = O.peers + p * O.peerBytes;
    v.setBigUint64(at, peer.bitmapUuid);
    v.setBigUint64(at + 8, peer.bitmapDagtag);
    v.setUint32(at + 16, peer.flags >>> 0);
    v.setInt32(at + 20, peer.bitmapIndex);
  }
  for (let i = 0; i < HISTORY_UUIDS; i++)
    v.setBigUint64(O.history + 8 * i, sb.historyUuids[i] ?? 0n);
  return b;
}

export type SuperblockError =
  | { readonly kind: 'short'; readonly message: string }
  | { readonly kind: 'no-magic'; readonly message: string }
  | { readonly kind: 'invalid'; readonly message: string };

/** Decodes and sanity-checks a superblock; the layout checks (offsets vs device) are the caller's. */
export function decodeSuperblock(b: Uint8Array): Result<Superblock, SuperblockError> {
  if (b.byteLength < SUPERBLOCK_USED_BYTES) {
    return err({
      kind: 'short',
      message: `superblock needs ${SUPERBLOCK_USED_BYTES} bytes, got ${b.byteLength}`,
    });
  }
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const magic = v.getUint32(O.magic);
  if (magic !== MD_MAGIC_V09) {
    return err({
      kind: 'no-magic',
      message: `no v09 metadata magic (found 0x${magic.toString(16).padStart(8, '0')}, want 0x${MD_MAGIC_V09.toString(16)})`,
    });
  }
  const effective = v.getBigUint64(O.effectiveSize);
  if (effective > BigInt(Number.MAX_SAFE_INTEGER)) {
    return err({ kind: 'invalid', message: `effective size ${effective} sectors is out of range` });
  }
  const maxPeers = v.getUint32(O.bmMaxPeers);
  if (maxPeers < 1 || maxPeers > MAX_PEERS_MAX) {
    return err({
      kind: 'invalid',
      message: `max-peers ${maxPeers} out of range 1..${MAX_PEERS_MAX}`,
    });
  }
  const nodeId = v.getInt32(O.nodeId);
  if (nodeId < -1 || nodeId > NODE_ID_MAX) {
    return err({ kind: 'invalid', message: `node-id ${nodeId} out of range -1..${NODE_ID_MAX}` });
  }
  const peers: PeerSlot[] = [];
  for (let p = 0; p < PEER_SLOTS; p++) {
    const at = O.peers + p * O.peerBytes;
    const bitmapIndex = v.getInt32(at + 20);
    if (p < maxPeers && (bitmapIndex < -1 || bitmapIndex > NODE_ID_MAX)) {
      return err({
        kind: 'invalid',
        message: `peer[${p}] bitmap-index ${bitmapIndex} out of range`,
      });
    }
    peers.push({
      bitmapUuid: v.getBigUint64(at),
      bitmapDagtag: v.getBigUint64(at + 8),
      flags: v.getUint32(at + 16),
      bitmapIndex,
    });
  }
  const historyUuids: bigint[] = [];
  for (let i = 0; i < HISTORY_UUIDS; i++) historyUuids.push(v.getBigUint64(O.history + 8 * i));
  const bmBytesPerBit = v.getUint32(O.bmBytesPerBit);
  if (
    bmBytesPerBit < 4096 ||
    bmBytesPerBit > 1 << 20 ||
    (bmBytesPerBit & (bmBytesPerBit - 1)) !== 0
  ) {
    return err({
      kind: 'invalid',
      message: `bm-bytes-per-bit ${bmBytesPerBit} is not a power of two in 4K..1M`,
    });
  }
  const alStripes = v.getUint32(O.alStripes);
  const alStripeSize4k = v.getUint32(O.alStripeSize4k);
  if (alStripes < 1 || alStripeSize4k < 1 || alStripes * alStripeSize4k > 8192) {
    return err({
      kind: 'invalid',
      message: `AL geometry ${alStripes} x ${alStripeSize4k} x 4KiB is out of range`,
    });
  }
  return ok({
    effectiveSizeSectors: Number(effective),
    currentUuid: v.getBigUint64(O.currentUuid),
    members: v.getBigUint64(O.members),
    deviceUuid: v.getBigUint64(O.deviceUuid),
    flags: v.getUint32(O.flags),
    mdSizeSectors: v.getUint32(O.mdSizeSect),
    alOffsetSectors: v.getInt32(O.alOffset),
    alExtents: v.getUint32(O.alNrExtents),
    bmOffsetSectors: v.getInt32(O.bmOffset),
    bmBytesPerBit,
    laPeerMaxBioSize: v.getUint32(O.laPeerMaxBioSize),
    maxPeers,
    nodeId,
    alStripes,
    alStripeSize4k,
    peers,
    historyUuids,
  });
}

/** "0x" and 16 upper-case hex digits, as drbdmeta prints a UUID. */
export function uuidHex(u: bigint): string {
  return `0x${u.toString(16).toUpperCase().padStart(16, '0')}`;
}
