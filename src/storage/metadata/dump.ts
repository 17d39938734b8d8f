// Human and machine views of v09 metadata. The text form follows drbdmeta's dump-md grammar, so
// `drbdmeta restore-md` accepts it; the JSON form names units in its keys and prints UUIDs as hex.
import { MDF, MDF_PEER } from './format.js';
import { uuidHex, type Superblock } from './superblock.js';
import type { Bitmap } from './bitmap.js';
import type { MetadataLayout } from './layout.js';

const hex32 = (n: number): string => `0x${(n >>> 0).toString(16).toUpperCase().padStart(8, '0')}`;

export function flagNames(flags: number): string[] {
  return Object.entries(MDF)
    .filter(([, bit]) => (flags & bit) !== 0)
    .map(([name]) => name.toLowerCase().replaceAll('_', '-'));
}

export function peerFlagNames(flags: number): string[] {
  return Object.entries(MDF_PEER)
    .filter(([, bit]) => (flags & bit) !== 0)
    .map(([name]) => name.toLowerCase().replaceAll('_', '-'));
}

export interface DumpInput {
  readonly superblock: Superblock;
  readonly layout: MetadataLayout;
  readonly bitmap: Bitmap;
  readonly alClean: boolean;
}

/** drbdmeta's dump-md text. */
export function formatDumpText(d: DumpInput, header: string): string {
  const sb = d.superblock;
  const out: string[] = [];
  out.push(`# Tandem meta data dump (drbdmeta dump-md grammar)`, `# ${header}`, `#`, ``);
  out.push(`version "v09";`, ``);
  if (!d.alClean) {
    out.push(
      `This_is_an_unclean_meta_data_dump._Don't_trust_the_bitmap.`,
      `# You should "apply-al" first, if you plan to restore this.`,
      ``,
    );
  }
  out.push(`max-peers ${sb.maxPeers};`);
  out.push(`# md_size_sect ${sb.mdSizeSectors}`);
  out.push(`# md_offset ${d.layout.mdOffsetBytes}`);
  out.push(`# al_offset ${d.layout.alOffsetBytes}`);
  out.push(`# bm_offset ${d.layout.bmOffsetBytes}`, ``);
  out.push(`node-id ${sb.nodeId};`);
  out.push(`current-uuid ${uuidHex(sb.currentUuid)};`);
  out.push(`flags ${hex32(sb.flags)};`);
  sb.peers.forEach((p, i) => {
    const names = peerFlagNames(p.flags);
    out.push(
      `peer[${i}] {`,
      `    bitmap-index ${p.bitmapIndex};`,
      `    bitmap-uuid ${uuidHex(p.bitmapUuid)};`,
      `    bitmap-dagtag ${uuidHex(p.bitmapDagtag)};`,
      `    flags ${hex32(p.flags)};${names.length > 0 ? ` # ${names.join(' | ')}` : ''}`,
      `}`,
    );
  });
  const hist: string[] = [];
  sb.historyUuids.forEach((u, i) => hist.push(`${i % 4 ? ' ' : '\n        '}${uuidHex(u)};`));
  out.push(`history-uuids {${hist.join('')}`, `}`);
  out.push(`# al-extents ${sb.alExtents};`);
  out.push(`la-size-sect ${sb.effectiveSizeSectors};`);
  out.push(`bm-byte-per-bit ${sb.bmBytesPerBit};`);
  out.push(`device-uuid ${uuidHex(sb.deviceUuid)};`);
  out.push(`la-peer-max-bio-size ${sb.laPeerMaxBioSize};`);
  out.push(`al-stripes ${sb.alStripes};`);
  out.push(`al-stripe-size-4k ${sb.alStripeSize4k};`);
  out.push(`# bm-bytes ${d.bitmap.byteLength};`);
  for (let s = 0; s < d.bitmap.maxPeers; s++)
    out.push(`bitmap[${s}] {`, ...bitmapLines(d.bitmap.slotWords(s)), `}`);
  out.push(`# bits-set ${d.bitmap.count(d.bitmap.maxPeers - 1)};`);
  return `${out.join('\n')}\n`;
}

// 64-bit tokens (high word first, as drbdmeta prints them), runs of 8+ equal ones compressed.
function bitmapLines(words: Uint32Array): string[] {
  const tokens: string[] = [];
  const n = Math.floor(words.length / 2);
  const value = (i: number): string =>
    `0x${(words[2 * i + 1] ?? 0).toString(16).toUpperCase().padStart(8, '0')}${(words[2 * i] ?? 0).toString(16).toUpperCase().padStart(8, '0')}`;
  for (let i = 0; i < n;) {
    let j = i + 1;
    while (j < n && words[2 * j] === words[2 * i] && words[2 * j + 1] === words[2 * i + 1]) j++;
    if (j - i >= 8) {
      tokens.push(`${j - i} times ${value(i)};`);
      i = j;
    } else {
      tokens.push(`${value(i)};`);
      i++;
    }
  }
  const lines: string[] = [];
  for (let i = 0; i < tokens.length; i += 4) lines.push(`   ${tokens.slice(i, i + 4).join(' ')}`);
  return lines;
}

/** The JSON view: UUIDs as "0x..." strings, sizes as numbers with the unit in the key. */
export function dumpJson(d: DumpInput): Record<string, unknown> {
  const sb = d.superblock;
  const l = d.layout;
  return {
    version: 'v09',
    metaDisk: l.kind,
    ...(l.kind === 'external' ? { metaDiskIndex: l.index } : {}),
    maxPeers: sb.maxPeers,
    nodeId: sb.nodeId,
    currentUuid: uuidHex(sb.currentUuid),
    deviceUuid: uuidHex(sb.deviceUuid),
    flags: sb.flags,
    flagNames: flagNames(sb.flags),
    alClean: d.alClean,
    effectiveSizeSectors: sb.effectiveSizeSectors,
    dataSizeBytes: l.dataBytes,
    mdSizeSectors: sb.mdSizeSectors,
    mdOffsetBytes: l.mdOffsetBytes,
    alOffsetBytes: l.alOffsetBytes,
    bmOffsetBytes: l.bmOffsetBytes,
    bitmapBytes: d.bitmap.byteLength,
    bitmapBlockBytes: sb.bmBytesPerBit,
    alExtents: sb.alExtents,
    alStripes: sb.alStripes,
    alStripeSizeKib: sb.alStripeSize4k * 4,
    laPeerMaxBioSizeBytes: sb.laPeerMaxBioSize,
    peers: sb.peers.map((p, nodeId) => ({
      nodeId,
      bitmapIndex: p.bitmapIndex,
      bitmapUuid: uuidHex(p.bitmapUuid),
      bitmapDagtag: uuidHex(p.bitmapDagtag),
      flags: p.flags,
      flagNames: peerFlagNames(p.flags),
    })),
    historyUuids: sb.historyUuids.map(uuidHex),
    bitmaps: Array.from({ length: d.bitmap.maxPeers }, (_, slot) => ({
      slot,
      outOfSyncBits: d.bitmap.count(slot),
      outOfSyncBytes: d.bitmap.count(slot) * sb.bmBytesPerBit,
    })),
  };
}

/** drbdmeta's get-gi line: current:bitmap:history:history:flags for one peer slot. */
export function formatGi(sb: Superblock, peerNodeId: number): string {
  const p = sb.peers[peerNodeId];
  const bits = [
    sb.flags & MDF.CONSISTENT,
    sb.flags & MDF.WAS_UP_TO_DATE,
    sb.flags & MDF.PRIMARY_IND,
    sb.flags & MDF.CRASHED_PRIMARY,
    sb.flags & MDF.AL_CLEAN,
    sb.flags & MDF.AL_DISABLED,
    sb.flags & MDF.PRIMARY_LOST_QUORUM,
    (p?.flags ?? 0) & MDF_PEER.CONNECTED,
    (p?.flags ?? 0) & MDF_PEER.OUTDATED,
    (p?.flags ?? 0) & MDF_PEER.FENCING,
    (p?.flags ?? 0) & MDF_PEER.FULL_SYNC,
    (p?.flags ?? 0) & MDF_PEER.DEVICE_SEEN,
  ].map((b) => (b ? '1' : '0'));
  const u = (x: bigint): string => x.toString(16).toUpperCase().padStart(16, '0');
  return [
    u(sb.currentUuid),
    u(p?.bitmapUuid ?? 0n),
    u(sb.historyUuids[0] ?? 0n),
    u(sb.historyUuids[1] ?? 0n),
    ...bits,
  ].join(':');
}

/** show-gi: the get-gi line with drbdmeta's legend. */
export function formatShowGi(sb: Superblock, peerNodeId: number): string {
  const legend = [
    'Data consistency flag',
    'Data was/is currently up-to-date',
    'Node was/is currently primary',
    'This node was a crashed primary, and has not seen its peer since',
    'The activity-log was applied, the disk can be attached',
    'The activity-log was disabled, peer is completely out of sync',
    'This node was primary when it lost quorum',
    'Node was/is currently connected',
    "The peer's disk was out-dated or inconsistent",
    'A fence policy other the dont-care was used',
    'Node was in the progress of marking all blocks as out of sync',
    'At least once we saw this node with a backing device attached',
  ];
  const gi = formatGi(sb, peerNodeId);
  const col = 68; // where the first flag sits in the gi line
  const lines = [
    '',
    '       +--<  Current data generation UUID  >-',
    "       |               +--<  Bitmap's base data generation UUID  >-",
    '       |               |                 +--<  younger history UUID  >-',
    '       |               |                 |         +-<  older history  >-',
    '       V               V                 V         V',
    gi,
    `${' '.repeat(col)}${'^ '.repeat(legend.length).trimEnd()}`,
  ];
  legend.forEach((text, i) => {
    const at = col + 2 * i;
    const rest = Array.from({ length: legend.length - i - 1 }, () => '|').join(' ');
    const label = `-<  ${text}  >--+`;
    lines.push(`${label.padStart(at + 1)}${rest ? ` ${rest}` : ''}`);
  });
  lines.push('');
  if (sb.effectiveSizeSectors > 0) {
    lines.push(
      `last agreed size: ${sb.effectiveSizeSectors * 512} bytes (${sb.effectiveSizeSectors} sectors)`,
    );
    lines.push(`last agreed max bio size: ${sb.laPeerMaxBioSize} Byte`);
  } else {
    lines.push('zero size device -- never seen peer yet?');
  }
  return `${lines.join('\n')}\n`;
}
