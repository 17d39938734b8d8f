// The errno values Tandem passes between layers (disk completions, engine request results, NBD
// replies), as one union. A code the world gives us (a Node error's `code`) becomes one of these
// at the edge (`errnoOf`); what reaches an NBD client is decided in exactly one map
// (`NBD_ERROR_OF` in src/nbd/protocol.ts), which the compiler keeps exhaustive.

export const ERRNOS = [
  'EPERM',
  'EIO',
  'ENOMEM',
  'EINVAL',
  'ENOSPC',
  'EDQUOT',
  'EFBIG',
  'EROFS',
  'EACCES',
  'ENOTSUP',
  'EOVERFLOW',
  'ESHUTDOWN',
  'EAGAIN',
  'ENODEV',
  // Opening a backing device: named as such in its DiskIoError.
  'ENOENT',
  'EISDIR',
  'EBUSY',
  'ENXIO',
] as const;

export type Errno = (typeof ERRNOS)[number];

const KNOWN: ReadonlySet<string> = new Set(ERRNOS);

export function isErrno(v: unknown): v is Errno {
  return typeof v === 'string' && KNOWN.has(v);
}

/** A system error code (e.g. Node's `err.code`) as an Errno: one we do not know is EIO. */
export function errnoFromCode(code: unknown): Errno {
  if (code === 'EOPNOTSUPP') return 'ENOTSUP';
  return isErrno(code) ? code : 'EIO';
}

/** The errno a failure carries: its `errno` field when typed, else its system code, else EIO. */
export function errnoOf(e: unknown): Errno {
  if (typeof e !== 'object' || e === null) return 'EIO';
  const typed = (e as { errno?: unknown }).errno;
  if (isErrno(typed)) return typed;
  return errnoFromCode((e as { code?: unknown }).code);
}
