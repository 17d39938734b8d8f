// CRC-32C (Castagnoli), as DRBD checksums activity-log transactions: the raw register with the
// caller's seed and no final inversion (the kernel's crc32c(0, buf, len)).
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

export function crc32c(seed: number, bytes: Uint8Array): number {
  let crc = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    crc = (TABLE[(crc ^ (bytes[i] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  return crc >>> 0;
}
