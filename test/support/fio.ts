// The fio job the data-integrity tests run over an NBD export: random 4 KiB writes, each block
// carrying fio's crc32c verify header (magic, offset, checksum), so fio or a test can check it.

export interface FioJob {
  /** NBD URI of the export. */
  readonly uri: string;
  /** The region written: bytes, or fio's own notation (e.g. '32m'). */
  readonly size: number | string;
  readonly iodepth: number;
  /** @default 'load' */
  readonly name?: string;
}

/** fio's arguments for the verified random-write job; callers append their phase and logs. */
export function fioRandWriteArgs(job: FioJob): string[] {
  return [
    `--name=${job.name ?? 'load'}`,
    '--ioengine=nbd',
    `--uri=${job.uri}`,
    '--rw=randwrite',
    '--bs=4k',
    `--size=${job.size}`,
    `--iodepth=${job.iodepth}`,
    '--verify=crc32c',
  ];
}
