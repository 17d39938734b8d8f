// The BlockStore contract: what every backing device (file, block device, memory) offers.
// This file imports nothing at runtime. Offsets and lengths are in bytes and must be whole
// sectors (SECTOR_BYTES); a store rejects anything else with InvalidRequestError.
//
// Durability: a write is durable once flush() resolves after it completed, or at completion
// when it was written with fua. Until then a crash may lose it or tear it at sector granularity.

export interface WriteOptions {
  /** Force unit access: durable on completion. @default false */
  readonly fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** The range must stay allocated (NBD NO_HOLE): zero it, do not punch a hole. @default false */
  readonly noHole?: boolean;
}

/** One run of the store's allocation map (for NBD base:allocation). */
export interface Extent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** True where the range reads as zeroes. */
  readonly zero: boolean;
  /** True where no storage backs the range (a hole). */
  readonly hole: boolean;
}

export interface BlockStore {
  /** Usable size in bytes (a multiple of SECTOR_BYTES). */
  readonly sizeBytes: number;
  /** A human name for errors and logs (the path, or "memory"). */
  readonly name: string;

  /**
   * The bytes at `offsetBytes`. With `into` (exactly `lengthBytes` long) a store may read into
   * it and return it, so a caller that reuses its buffers does not allocate one per read; it
   * may also return another buffer. Never reads into `into` after the promise settles.
   */
  read(offsetBytes: number, lengthBytes: number, into?: Buffer): Promise<Buffer>;
  /** Writes the concatenation of `data` at `offsetBytes` without concatenating it in memory. */
  write(
    offsetBytes: number,
    data: Uint8Array | readonly Uint8Array[],
    opts?: WriteOptions,
  ): Promise<void>;
  /** Makes every write that completed before this call durable. */
  flush(): Promise<void>;
  /** Discards a range (NBD TRIM): afterwards it reads as zeroes or as the old data. */
  discard(offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Writes zeroes over a range, punching a hole where allowed. */
  writeZeroes(offsetBytes: number, lengthBytes: number, opts?: ZeroOptions): Promise<void>;
  /** Allocation map of a range; stores without one report a single allocated data extent. */
  extents(offsetBytes: number, lengthBytes: number): Promise<readonly Extent[]>;
  /** Flushes and releases the store; idempotent. */
  close(): Promise<void>;
}
