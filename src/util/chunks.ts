// Scatter-gather payloads: a write travels as the list of slices its socket delivered, from the
// NBD connection to the disk and the wire; these helpers measure and cut such lists without
// copying a byte.

export type Chunks = readonly Uint8Array[];

/** Shared empty payload (trim, zeroes): nothing to allocate per request. */
export const NO_CHUNKS: Chunks = Object.freeze([]);

export function chunksLength(c: Chunks): number {
  let n = 0;
  for (const x of c) n += x.length;
  return n;
}

/** Bytes [offset, offset+length) of the concatenation, as views of the same memory. */
export function sliceChunks(c: Chunks, offset: number, length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = offset;
  let left = length;
  for (const x of c) {
    if (left <= 0) break;
    if (skip >= x.length) {
      skip -= x.length;
      continue;
    }
    const take = Math.min(x.length - skip, left);
    out.push(skip === 0 && take === x.length ? x : x.subarray(skip, skip + take));
    left -= take;
    skip = 0;
  }
  return out;
}
