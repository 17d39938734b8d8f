// The NBD wire format (fixed newstyle, structured replies, base:allocation): constants,
// encoders and pure decoders. All integers are big-endian. Decoders never throw on bad bytes;
// 64-bit offsets are decoded to numbers and anything past 2^53 is reported as such.
import type { Errno } from '../util/errno.js';

export const NBD_MAGIC_INIT = 0x4e42444d41474943n; // "NBDMAGIC"
export const NBD_MAGIC_OPTS = 0x49484156454f5054n; // "IHAVEOPT"
export const NBD_MAGIC_OPTION_REPLY = 0x3e889045565a9n;
export const NBD_MAGIC_REQUEST = 0x25609513;
export const NBD_MAGIC_SIMPLE_REPLY = 0x67446698;
export const NBD_MAGIC_STRUCTURED_REPLY = 0x668e33ef;

// Handshake flags (server) and client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

// Option replies.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
const REP_ERR = 0x80000000;
export const NBD_REP_ERR_UNSUP = REP_ERR + 1;
export const NBD_REP_ERR_POLICY = REP_ERR + 2;
export const NBD_REP_ERR_INVALID = REP_ERR + 3;
export const NBD_REP_ERR_PLATFORM = REP_ERR + 4;
export const NBD_REP_ERR_TLS_REQD = REP_ERR + 5;
export const NBD_REP_ERR_UNKNOWN = REP_ERR + 6;
export const NBD_REP_ERR_SHUTDOWN = REP_ERR + 7;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8;
export const NBD_REP_ERR_TOO_BIG = REP_ERR + 9;

// NBD_REP_INFO types.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Commands.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;

// Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// Structured reply flags and chunk types.
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;

// Error values (the spec's fixed set, plus ENOTSUP for FAST_ZERO).
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/**
 * The one map from Tandem's errno values to what an NBD client is told. The spec's set is
 * small: a read-only or forbidden target is EPERM, a full device (quota, file size) ENOSPC, a
 * missing disk an I/O error. EAGAIN (the engine's queue was full) never reaches a client while
 * the export's admission gate works; should it, ENOMEM is the spec's "retry later".
 */
export const NBD_ERROR_OF: Readonly<Record<Errno, number>> = {
  EPERM: NBD_EPERM,
  EIO: NBD_EIO,
  ENOMEM: NBD_ENOMEM,
  EINVAL: NBD_EINVAL,
  ENOSPC: NBD_ENOSPC,
  EDQUOT: NBD_ENOSPC,
  EFBIG: NBD_ENOSPC,
  EROFS: NBD_EPERM,
  EACCES: NBD_EPERM,
  ENOTSUP: NBD_ENOTSUP,
  EOVERFLOW: NBD_EOVERFLOW,
  ESHUTDOWN: NBD_ESHUTDOWN,
  EAGAIN: NBD_ENOMEM,
  ENODEV: NBD_EIO,
  ENOENT: NBD_EIO,
  EISDIR: NBD_EIO,
  EBUSY: NBD_EIO,
  ENXIO: NBD_EIO,
};

// base:allocation status flags.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
export const BASE_ALLOCATION = 'base:allocation';

export const NBD_REQUEST_BYTES = 28;
export const NBD_SIMPLE_REPLY_BYTES = 16;
export const NBD_STRUCTURED_HEADER_BYTES = 20;
export const NBD_OPTION_HEADER_BYTES = 16;
export const NBD_OPTION_REPLY_HEADER_BYTES = 20;

const TWO_32 = 0x1_0000_0000;

/** Reads an unsigned 64-bit value; values past 2^53 come back as Infinity (never in range). */
export function readU64(b: Uint8Array, pos: number): number {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const hi = v.getUint32(pos);
  const lo = v.getUint32(pos + 4);
  return hi >= 0x20_0000 ? Infinity : hi * TWO_32 + lo;
}

export function writeU64(b: Buffer, value: number, pos: number): void {
  b.writeUInt32BE(Math.floor(value / TWO_32), pos);
  b.writeUInt32BE((value % TWO_32) >>> 0, pos + 4);
}

export interface NbdRequest {
  readonly flags: number;
  readonly type: number;
  /** The client's opaque cookie, as two 32-bit halves echoed back verbatim. */
  readonly handleHi: number;
  readonly handleLo: number;
  /** Infinity when the wire value does not fit in 2^53. */
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export type RequestDecode =
  { ok: true; request: NbdRequest } | { ok: false; error: 'bad-magic'; magic: number };

/** Decodes the 28-byte request header at `pos` (the caller guarantees 28 bytes). */
export function decodeRequest(b: Buffer, pos = 0): RequestDecode {
  const magic = b.readUInt32BE(pos);
  if (magic !== NBD_MAGIC_REQUEST) return { ok: false, error: 'bad-magic', magic };
  return {
    ok: true,
    request: {
      flags: b.readUInt16BE(pos + 4),
      type: b.readUInt16BE(pos + 6),
      handleHi: b.readUInt32BE(pos + 8),
      handleLo: b.readUInt32BE(pos + 12),
      offsetBytes: readU64(b, pos + 16),
      lengthBytes: b.readUInt32BE(pos + 24),
    },
  };
}

export function encodeRequest(r: NbdRequest): Buffer {
  const b = Buffer.allocUnsafe(NBD_REQUEST_BYTES);
  b.writeUInt32BE(NBD_MAGIC_REQUEST, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  b.writeUInt32BE(r.handleHi, 8);
  b.writeUInt32BE(r.handleLo, 12);
  writeU64(b, r.offsetBytes, 16);
  b.writeUInt32BE(r.lengthBytes, 24);
  return b;
}

export function encodeSimpleReply(
  errno: number,
  handleHi: number,
  handleLo: number,
  extra = 0,
): Buffer {
  const b = Buffer.allocUnsafe(NBD_SIMPLE_REPLY_BYTES + extra);
  b.writeUInt32BE(NBD_MAGIC_SIMPLE_REPLY, 0);
  b.writeUInt32BE(errno, 4);
  b.writeUInt32BE(handleHi, 8);
  b.writeUInt32BE(handleLo, 12);
  return b;
}

/** A structured chunk header with room for `extra` payload bytes after it. */
export function encodeChunkHeader(
  flags: number,
  type: number,
  handleHi: number,
  handleLo: number,
  payloadBytes: number,
  extra = 0,
): Buffer {
  const b = Buffer.allocUnsafe(NBD_STRUCTURED_HEADER_BYTES + extra);
  b.writeUInt32BE(NBD_MAGIC_STRUCTURED_REPLY, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(handleHi, 8);
  b.writeUInt32BE(handleLo, 12);
  b.writeUInt32BE(payloadBytes, 16);
  return b;
}

export function encodeErrorChunk(
  errno: number,
  message: string,
  handleHi: number,
  handleLo: number,
): Buffer {
  const msg = Buffer.from(message.slice(0, 256), 'utf8');
  const b = encodeChunkHeader(
    NBD_REPLY_FLAG_DONE,
    NBD_REPLY_TYPE_ERROR,
    handleHi,
    handleLo,
    6 + msg.length,
    6 + msg.length,
  );
  b.writeUInt32BE(errno, 20);
  b.writeUInt16BE(msg.length, 24);
  msg.copy(b, 26);
  return b;
}

export function encodeOptionReply(option: number, reply: number, data?: Uint8Array): Buffer {
  const len = data?.length ?? 0;
  const b = Buffer.allocUnsafe(NBD_OPTION_REPLY_HEADER_BYTES + len);
  b.writeBigUInt64BE(NBD_MAGIC_OPTION_REPLY, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(reply >>> 0, 12);
  b.writeUInt32BE(len, 16);
  if (data !== undefined) b.set(data, 20);
  return b;
}

export function encodeOption(option: number, data?: Uint8Array): Buffer {
  const len = data?.length ?? 0;
  const b = Buffer.allocUnsafe(NBD_OPTION_HEADER_BYTES + len);
  b.writeBigUInt64BE(NBD_MAGIC_OPTS, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(len, 12);
  if (data !== undefined) b.set(data, 16);
  return b;
}

/** A length-prefixed (32-bit) string as used in option data. */
export function encodeString32(s: string): Buffer {
  const body = Buffer.from(s, 'utf8');
  const b = Buffer.allocUnsafe(4 + body.length);
  b.writeUInt32BE(body.length, 0);
  body.copy(b, 4);
  return b;
}

export function commandName(type: number): string {
  switch (type) {
    case NBD_CMD_READ:
      return 'READ';
    case NBD_CMD_WRITE:
      return 'WRITE';
    case NBD_CMD_DISC:
      return 'DISC';
    case NBD_CMD_FLUSH:
      return 'FLUSH';
    case NBD_CMD_TRIM:
      return 'TRIM';
    case NBD_CMD_CACHE:
      return 'CACHE';
    case NBD_CMD_WRITE_ZEROES:
      return 'WRITE_ZEROES';
    case NBD_CMD_BLOCK_STATUS:
      return 'BLOCK_STATUS';
    default:
      return `command ${type}`;
  }
}

/**
 * A cursor over option data: every read checks the bounds and reports failure instead of
 * throwing, so a malformed option becomes NBD_REP_ERR_INVALID.
 */
export class OptionReader {
  private pos = 0;
  constructor(private readonly b: Buffer) {}

  get remaining(): number {
    return this.b.length - this.pos;
  }

  u16(): number | undefined {
    if (this.remaining < 2) return undefined;
    const v = this.b.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number | undefined {
    if (this.remaining < 4) return undefined;
    const v = this.b.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** A UTF-8 string of `len` bytes; undefined when short, too long or containing NUL. */
  string(len: number, maxBytes: number): string | undefined {
    if (len > maxBytes || this.remaining < len) return undefined;
    const bytes = this.b.subarray(this.pos, this.pos + len);
    this.pos += len;
    if (bytes.includes(0)) return undefined;
    const s = bytes.toString('utf8');
    // Invalid UTF-8 does not survive a round trip: reject it rather than guess.
    if (Buffer.byteLength(s, 'utf8') !== len) return undefined;
    return s;
  }
}
