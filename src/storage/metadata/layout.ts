// Where each piece of v09 metadata lives, computed exactly as drbdmeta does:
//   internal:       [data][bitmap][activity log][4 KiB superblock]   (at the device end)
//   external [N]:   [superblock][AL][bitmap] in the N-th 128 MiB slot of the meta device
//   flex-external:  [superblock][AL][bitmap] filling the whole meta device
import { err, ok, type Result } from '../../util/result.js';
import {
  BM_BYTES_PER_BIT,
  MD_AL_OFFSET_SECTORS,
  MD_BLOCK_BYTES,
  MD_EXTERNAL_SLOT_SECTORS,
} from './format.js';

export type MetaDiskKind = 'internal' | 'external' | 'flex-external';

export interface LayoutInput {
  readonly kind: MetaDiskKind;
  /** Index for indexed external metadata (`meta-disk PATH [N]`). */
  readonly index?: number;
  /** Size of the device holding the metadata (the data disk itself when internal). */
  readonly metaDeviceBytes: number;
  /** Size of the data disk; ignored when internal. */
  readonly dataDeviceBytes: number;
  readonly maxPeers: number;
  readonly alStripes: number;
  readonly alStripeSize4k: number;
}

export interface MetadataLayout {
  readonly kind: MetaDiskKind;
  readonly index: number;
  /** Absolute byte offsets on the meta device. */
  readonly mdOffsetBytes: number;
  readonly alOffsetBytes: number;
  readonly bmOffsetBytes: number;
  /** The superblock's own encoding of the same layout. */
  readonly mdSizeSectors: number;
  readonly alOffsetSectors: number;
  readonly bmOffsetSectors: number;
  readonly alStripes: number;
  readonly alStripeSize4k: number;
  readonly alBytes: number;
  /** Room reserved for the bitmap on disk (a multiple of 4 KiB). */
  readonly bmRegionBytes: number;
  readonly maxPeers: number;
  /** Usable data bytes: what the replicated device can offer (a multiple of 512). */
  readonly dataBytes: number;
  /** Bitmap bits per peer slot that cover dataBytes. */
  readonly bitsPerSlot: number;
}

const align = (x: number, a: number): number => Math.ceil(x / a) * a;

/** drbdmeta's bm_bytes(): the bitmap bytes for `sectors` of data, all slots, 4 KiB aligned. */
export function bitmapBytes(sectors: number, maxPeers: number): number {
  const sectorsPerBit = BM_BYTES_PER_BIT / 512;
  const bits = align(Math.ceil(sectors / sectorsPerBit), 64);
  return align((bits / 8) * maxPeers, MD_BLOCK_BYTES);
}

/** drbdmeta's max_usable_sectors() for external layouts: what the on-disk bitmap can cover. */
function externalCapacitySectors(bmRegionSectors: number, maxPeers: number): number {
  const wordsPerSlot = Math.floor((bmRegionSectors * 512 * 8) / 64 / maxPeers);
  return (wordsPerSlot * 64 * BM_BYTES_PER_BIT) / 512;
}

export function computeLayout(input: LayoutInput): Result<MetadataLayout, string> {
  const { kind, maxPeers, alStripes, alStripeSize4k } = input;
  const alSizeSectors = alStripes * alStripeSize4k * 8;
  const metaSectors = Math.floor(input.metaDeviceBytes / 512);
  let mdOffsetBytes: number;
  let mdSizeSectors: number;
  let alOffsetSectors: number;
  let bmOffsetSectors: number;
  let bmRegionBytes: number;
  let dataBytes: number;
  const index = input.index ?? 0;
  switch (kind) {
    case 'internal': {
      if (input.metaDeviceBytes < 2 * MD_BLOCK_BYTES)
        return err(`device of ${input.metaDeviceBytes} bytes is too small`);
      mdOffsetBytes =
        Math.floor((input.metaDeviceBytes - MD_BLOCK_BYTES) / MD_BLOCK_BYTES) * MD_BLOCK_BYTES;
      bmRegionBytes = bitmapBytes(metaSectors, maxPeers);
      mdSizeSectors = align(bmRegionBytes / 512, 8) + MD_AL_OFFSET_SECTORS + alSizeSectors;
      alOffsetSectors = -alSizeSectors;
      bmOffsetSectors = -mdSizeSectors + MD_AL_OFFSET_SECTORS;
      dataBytes = mdOffsetBytes + bmOffsetSectors * 512;
      if (dataBytes <= 0) {
        return err(
          `device of ${input.metaDeviceBytes} bytes is too small for ${mdSizeSectors * 512} bytes of internal metadata`,
        );
      }
      break;
    }
    case 'external':
    case 'flex-external': {
      if (kind === 'external') {
        if (!Number.isSafeInteger(index) || index < 0)
          return err(`meta-disk index ${index} must be >= 0`);
        mdOffsetBytes = index * MD_EXTERNAL_SLOT_SECTORS * 512;
        mdSizeSectors = MD_EXTERNAL_SLOT_SECTORS;
        if (input.metaDeviceBytes < mdOffsetBytes + mdSizeSectors * 512) {
          return err(
            `meta device of ${input.metaDeviceBytes} bytes has no room for index ${index} (needs ${mdOffsetBytes + mdSizeSectors * 512} bytes)`,
          );
        }
      } else {
        mdOffsetBytes = 0;
        mdSizeSectors = metaSectors;
      }
      alOffsetSectors = MD_AL_OFFSET_SECTORS;
      bmOffsetSectors = MD_AL_OFFSET_SECTORS + alSizeSectors;
      const bmRegionSectors = mdSizeSectors - bmOffsetSectors;
      if (bmRegionSectors < 8)
        return err(`meta device of ${input.metaDeviceBytes} bytes has no room for a bitmap`);
      bmRegionBytes = Math.floor(bmRegionSectors / 8) * MD_BLOCK_BYTES;
      const capacityBytes = externalCapacitySectors(bmRegionSectors, maxPeers) * 512;
      dataBytes = Math.min(Math.floor(input.dataDeviceBytes / 512) * 512, capacityBytes);
      if (dataBytes <= 0) return err(`data device of ${input.dataDeviceBytes} bytes is empty`);
      break;
    }
  }
  return ok({
    kind,
    index,
    mdOffsetBytes,
    alOffsetBytes: mdOffsetBytes + alOffsetSectors * 512,
    bmOffsetBytes: mdOffsetBytes + bmOffsetSectors * 512,
    mdSizeSectors,
    alOffsetSectors,
    bmOffsetSectors,
    alStripes,
    alStripeSize4k,
    alBytes: alSizeSectors * 512,
    bmRegionBytes,
    maxPeers,
    dataBytes,
    bitsPerSlot: Math.ceil(dataBytes / BM_BYTES_PER_BIT),
  });
}

export interface ResizedLayout {
  readonly layout: MetadataLayout;
  /** It gives more data bytes and the metadata can take it on now (MetadataStore.growData). */
  readonly adoptable: boolean;
}

/**
 * The layout of the same metadata (kind, index, peers, AL) with the data device at
 * `dataDeviceBytes`: internal metadata at the new end of that device, which holds it; external
 * metadata in place on its own device of `metaDeviceBytes`. Internal metadata can move only to a
 * place clear of the old one, which stays the metadata until the new superblock is written: a
 * smaller growth is not adoptable (yet).
 */
export function resizedLayout(
  current: MetadataLayout,
  dataDeviceBytes: number,
  metaDeviceBytes: number,
): Result<ResizedLayout, string> {
  const internal = current.kind === 'internal';
  const l = computeLayout({
    kind: current.kind,
    index: current.index,
    metaDeviceBytes: internal ? dataDeviceBytes : metaDeviceBytes,
    dataDeviceBytes,
    maxPeers: current.maxPeers,
    alStripes: current.alStripes,
    alStripeSize4k: current.alStripeSize4k,
  });
  if (!l.ok) return l;
  const next = l.value;
  const clear = !internal || next.bmOffsetBytes >= current.mdOffsetBytes + MD_BLOCK_BYTES;
  return ok({ layout: next, adoptable: clear && next.dataBytes > current.dataBytes });
}
