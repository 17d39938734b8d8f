// Framing shared by byte-stream transports: an 8-byte big-endian header (magic u16, type u16,
// payload length u32) then the payload. The decoder never throws on bad bytes and hands out
// payloads as slices of the received chunks; it copies only a payload that spans chunks which
// are not adjacent in one buffer (reads into one slab, see tcp/slab.ts, are adjacent).
import { TRANSPORT_FRAME_HEADER_BYTES, TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX } from '../limits.js';

/** First two bytes of every frame ("Tn"); catches a peer that is not Tandem or lost sync. */
export const FRAME_MAGIC = 0x546e;

/** Reserved message types (above MESSAGE_TYPE_USER_MAX). */
export const MSG_PING = 0xfff0;
export const MSG_PING_ACK = 0xfff1;
/** First frame on each socket of a TCP connection: which stream it is, and the connection cookie. */
export const MSG_STREAM_SETUP = 0xfff8;
/** The acceptor paired both sockets; sent on CONTROL. */
export const MSG_STREAM_SETUP_ACK = 0xfff9;
/**
 * TLS (drbd.conf `net { tls yes; }`): the dialer's first frame on each socket, in clear, before
 * its TLS ClientHello; the acceptor answers STARTTLS_ACK (then both speak TLS) or STREAM_REFUSE.
 */
export const MSG_STREAM_STARTTLS = 0xfffa;
export const MSG_STREAM_STARTTLS_ACK = 0xfffb;
/**
 * Either side refuses a socket before it becomes a channel, saying why (u8 code, UTF-8 reason):
 * in clear for a TLS mismatch, inside TLS for a certificate the sender did not accept.
 */
export const MSG_STREAM_REFUSE = 0xfffc;

export function encodeFrameHeader(type: number, payloadBytes: number): Buffer {
  const h = Buffer.allocUnsafe(TRANSPORT_FRAME_HEADER_BYTES);
  h.writeUInt16BE(FRAME_MAGIC, 0);
  h.writeUInt16BE(type, 2);
  h.writeUInt32BE(payloadBytes, 4);
  return h;
}

export interface Frame {
  readonly type: number;
  readonly payload: Buffer;
}

export type FrameError =
  { kind: 'bad-magic'; magic: number } | { kind: 'too-large'; payloadBytes: number };

export function describeFrameError(e: FrameError): string {
  switch (e.kind) {
    case 'bad-magic':
      return `bad frame magic 0x${e.magic.toString(16)} (expected 0x${FRAME_MAGIC.toString(16)})`;
    case 'too-large':
      return `frame payload of ${e.payloadBytes} bytes exceeds ${TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX}`;
  }
}

/**
 * Incremental decoder. push() a received chunk, then call next() until it returns null.
 * After an error the decoder stays failed (the stream has lost sync; close it).
 */
export class FrameDecoder {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private header: { type: number; payloadBytes: number } | null = null;
  private failed: FrameError | null = null;
  private maxPayloadBytes: number;

  constructor(maxPayloadBytes = TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX) {
    this.maxPayloadBytes = maxPayloadBytes;
  }

  /** Changes the largest payload accepted from now on (e.g. after a small setup frame). */
  setMaxPayloadBytes(n: number): void {
    this.maxPayloadBytes = n;
  }

  get bufferedBytes(): number {
    return this.buffered;
  }

  /** True when a frame has started but not finished (bytes of it are buffered). */
  get midFrame(): boolean {
    return this.buffered > 0 || this.header !== null;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0 || this.failed) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  next(): { ok: true; frame: Frame | null } | { ok: false; error: FrameError } {
    if (this.failed) return { ok: false, error: this.failed };
    if (this.header === null) {
      if (this.buffered < TRANSPORT_FRAME_HEADER_BYTES) return { ok: true, frame: null };
      const h = this.take(TRANSPORT_FRAME_HEADER_BYTES);
      const magic = h.readUInt16BE(0);
      if (magic !== FRAME_MAGIC) return this.fail({ kind: 'bad-magic', magic });
      const payloadBytes = h.readUInt32BE(4);
      if (payloadBytes > this.maxPayloadBytes)
        return this.fail({ kind: 'too-large', payloadBytes });
      this.header = { type: h.readUInt16BE(2), payloadBytes };
    }
    if (this.buffered < this.header.payloadBytes) return { ok: true, frame: null };
    const frame = { type: this.header.type, payload: this.take(this.header.payloadBytes) };
    this.header = null;
    return { ok: true, frame };
  }

  private fail(error: FrameError): { ok: false; error: FrameError } {
    this.failed = error;
    this.chunks.length = 0;
    this.buffered = 0;
    return { ok: false, error };
  }

  /**
   * Removes n buffered bytes: a slice when they lie in the first chunk or in chunks that follow
   * each other in one buffer, else one copy.
   */
  private take(n: number): Buffer {
    this.buffered -= n;
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return out;
    }
    const joined = this.takeAdjacent(first, n);
    if (joined !== null) return joined;
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      if (c === undefined) break;
      const want = n - filled;
      if (c.length <= want) {
        c.copy(out, filled);
        filled += c.length;
        this.chunks.shift();
      } else {
        c.copy(out, filled, 0, want);
        filled += want;
        this.chunks[0] = c.subarray(want);
      }
    }
    return out;
  }

  /**
   * The first n bytes as one view when the chunks holding them are back to back in one
   * ArrayBuffer (successive reads into a slab): the same bytes a copy would hold, since a chunk
   * handed to push() is never rewritten. Null (nothing consumed) otherwise.
   */
  private takeAdjacent(first: Buffer, n: number): Buffer | null {
    let end = first.byteOffset + first.length;
    let have = first.length;
    let i = 1;
    for (; have < n; i++) {
      const c = this.chunks[i];
      if (c === undefined || c.buffer !== first.buffer || c.byteOffset !== end) return null;
      end += c.length;
      have += c.length;
    }
    const out = Buffer.from(first.buffer, first.byteOffset, n);
    // chunks[0..i-1] cover the n bytes; the last of them may hold bytes after them.
    const last = this.chunks[i - 1] as Buffer;
    const rest = have - n;
    if (rest > 0) {
      this.chunks[i - 1] = last.subarray(last.length - rest);
      this.chunks.splice(0, i - 1);
    } else this.chunks.splice(0, i);
    return out;
  }
}
