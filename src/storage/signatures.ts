// Recognizes what already lives on a device before create-md overwrites it: filesystems, swap,
// LVM, LUKS. Pure: looks at the first 128 KiB of the region and names what it found.

export interface Signature {
  /** e.g. "ext4 filesystem", "XFS filesystem", "LVM physical volume". */
  readonly what: string;
  /** The size it claims, when the format says (so a caller can tell whether it would be cut). */
  readonly sizeBytes?: number;
}

/** Bytes detectSignature() wants to see from the start of the region. */
export const SIGNATURE_PROBE_BYTES = 128 * 1024;

export function detectSignature(b: Buffer): Signature | undefined {
  const at = (off: number, text: string): boolean =>
    b.byteLength >= off + text.length && b.toString('latin1', off, off + text.length) === text;
  if (b.byteLength >= 1024 + 1024 && b.readUInt16LE(1024 + 56) === 0xef53) {
    const blocks = b.readUInt32LE(1024 + 4);
    const blockBytes = 1024 * 2 ** b.readUInt32LE(1024 + 24);
    const incompat = b.readUInt32LE(1024 + 96);
    const compat = b.readUInt32LE(1024 + 92);
    const kind = incompat & 0x40 ? 'ext4' : compat & 0x4 ? 'ext3' : 'ext2';
    return { what: `${kind} filesystem`, sizeBytes: blocks * blockBytes };
  }
  if (at(0, 'XFSB')) {
    const blockBytes = b.readUInt32BE(4);
    const blocks = Number(b.readBigUInt64BE(8));
    return { what: 'XFS filesystem', sizeBytes: blocks * blockBytes };
  }
  if (at(65536 + 64, '_BHRfS_M')) return { what: 'btrfs filesystem' };
  if (at(4086, 'SWAPSPACE2') || at(4086, 'SWAP-SPACE')) return { what: 'swap area' };
  if (at(512, 'LABELONE') || at(0, 'LABELONE')) return { what: 'LVM physical volume' };
  if (at(0, 'LUKS\u00ba\u00be')) return { what: 'LUKS encrypted volume' };
  if (at(32768 + 1, 'CD001')) return { what: 'ISO 9660 filesystem' };
  if (
    b.byteLength >= 512 &&
    b.readUInt16LE(510) === 0xaa55 &&
    (at(3, 'MSDOS') || at(54, 'FAT') || at(82, 'FAT32'))
  ) {
    return { what: 'FAT filesystem' };
  }
  return undefined;
}
