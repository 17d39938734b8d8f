// Frames a multipath session exchanges on its paths (types 0xFF20..0xFF2F, PROTOCOL.md): the
// join handshake, sequence markers, cumulative acks, heartbeats and the close notice.
// Encoders are total; decoders are pure, return results and never throw on bad bytes.
import { MULTIPATH_NONCE_BYTES, MULTIPATH_SESSION_ID_BYTES } from '../../limits.js';
import { err, ok, type Result } from '../../util/result.js';

/** First and last message type reserved for the session layer on a path. */
export const MP_TYPE_FIRST = 0xff20;
export const MP_TYPE_LAST = 0xff2f;

/** Initiator opens a session or joins a path to one (first frame on a new path, CONTROL). */
export const MP_HELLO = 0xff20;
/** Acceptor's answer: its nonce, its proof, what it has received. */
export const MP_WELCOME = 0xff21;
/** Initiator's proof of the key. */
export const MP_PROOF = 0xff22;
/** Acceptor took the path. */
export const MP_READY = 0xff23;
export const MP_REFUSE = 0xff24;
/** The next message on this path stream has this sequence number (the ones after count up). */
export const MP_SEQ = 0xff25;
/** Cumulative acknowledgement: the next sequence number expected on DATA and on CONTROL. */
export const MP_ACK = 0xff26;
export const MP_HEARTBEAT = 0xff27;
/** Sent on a path that becomes active after a failure: an ack that also says "replay from here". */
export const MP_RESUME = 0xff28;
/** The session ends (close or destroy by the sender). */
export const MP_CLOSE = 0xff29;

export const MP_WIRE_VERSION = 1;

export type HelloKind = 'open' | 'join';

export interface MpHello {
  readonly version: number;
  readonly kind: HelloKind;
  readonly loadBalance: boolean;
  /** The path's preference rank at the initiator (lower is preferred). */
  readonly rank: number;
  readonly sessionId: Buffer;
  readonly nonce: Buffer;
  readonly next: NextSeqs;
}

/** Next sequence number expected per stream (= messages delivered so far). */
export interface NextSeqs {
  readonly data: number;
  readonly control: number;
}

export interface MpWelcome {
  readonly next: NextSeqs;
  readonly nonce: Buffer;
  readonly proof: Buffer;
}

export type MpRefuseCode = 'unknown-session' | 'auth-failed' | 'protocol' | 'busy';
const REFUSE_CODES: readonly MpRefuseCode[] = [
  'unknown-session',
  'auth-failed',
  'protocol',
  'busy',
];

export interface MpRefuse {
  readonly code: MpRefuseCode;
  readonly reason: string;
}

export interface MpHeartbeat {
  readonly reply: boolean;
  readonly token: number;
}

type Decoded<T> = Result<T, string>;

const HELLO_BYTES = 4 + MULTIPATH_SESSION_ID_BYTES + MULTIPATH_NONCE_BYTES + 16;
const WELCOME_FIXED_BYTES = 16 + MULTIPATH_NONCE_BYTES;
/** Longest HMAC we accept as a proof (sha512). */
const PROOF_BYTES_MAX = 64;
const REASON_BYTES_MAX = 256;
const U32 = 0x1_0000_0000;

function writeU64(b: Buffer, n: number, off: number): void {
  b.writeUInt32BE(Math.floor(n / U32), off);
  b.writeUInt32BE(n >>> 0, off + 4);
}

function readU64(b: Buffer, off: number): number | null {
  const hi = b.readUInt32BE(off);
  if (hi > 0x1f_ffff) return null; // beyond Number.MAX_SAFE_INTEGER
  return hi * U32 + b.readUInt32BE(off + 4);
}

export function encodeHello(h: MpHello): Buffer {
  const b = Buffer.alloc(HELLO_BYTES);
  b.writeUInt8(h.version, 0);
  b.writeUInt8(h.kind === 'open' ? 0 : 1, 1);
  b.writeUInt8(h.loadBalance ? 1 : 0, 2);
  b.writeUInt8(h.rank, 3);
  h.sessionId.copy(b, 4, 0, MULTIPATH_SESSION_ID_BYTES);
  h.nonce.copy(b, 4 + MULTIPATH_SESSION_ID_BYTES, 0, MULTIPATH_NONCE_BYTES);
  const off = 4 + MULTIPATH_SESSION_ID_BYTES + MULTIPATH_NONCE_BYTES;
  writeU64(b, h.next.data, off);
  writeU64(b, h.next.control, off + 8);
  return b;
}

export function decodeHello(b: Buffer): Decoded<MpHello> {
  if (b.length !== HELLO_BYTES)
    return err(`session hello of ${b.length} bytes (want ${HELLO_BYTES})`);
  const version = b.readUInt8(0);
  if (version !== MP_WIRE_VERSION)
    return err(`session wire version ${version} is not ${MP_WIRE_VERSION}`);
  const kind = b.readUInt8(1);
  if (kind > 1) return err(`session hello kind ${kind}`);
  const flags = b.readUInt8(2);
  if (flags > 1) return err(`session hello flags 0x${flags.toString(16)}`);
  const off = 4 + MULTIPATH_SESSION_ID_BYTES + MULTIPATH_NONCE_BYTES;
  const next = readNext(b, off);
  if (next === null) return err('session hello sequence number out of range');
  return ok({
    version,
    kind: kind === 0 ? 'open' : 'join',
    loadBalance: flags === 1,
    rank: b.readUInt8(3),
    sessionId: Buffer.from(b.subarray(4, 4 + MULTIPATH_SESSION_ID_BYTES)),
    nonce: Buffer.from(b.subarray(4 + MULTIPATH_SESSION_ID_BYTES, off)),
    next,
  });
}

export function encodeWelcome(w: MpWelcome): Buffer {
  const b = Buffer.alloc(WELCOME_FIXED_BYTES + w.proof.length);
  writeU64(b, w.next.data, 0);
  writeU64(b, w.next.control, 8);
  w.nonce.copy(b, 16, 0, MULTIPATH_NONCE_BYTES);
  w.proof.copy(b, WELCOME_FIXED_BYTES);
  return b;
}

export function decodeWelcome(b: Buffer): Decoded<MpWelcome> {
  if (b.length <= WELCOME_FIXED_BYTES || b.length > WELCOME_FIXED_BYTES + PROOF_BYTES_MAX) {
    return err(`session welcome of ${b.length} bytes`);
  }
  const next = readNext(b, 0);
  if (next === null) return err('session welcome sequence number out of range');
  return ok({
    next,
    nonce: Buffer.from(b.subarray(16, WELCOME_FIXED_BYTES)),
    proof: Buffer.from(b.subarray(WELCOME_FIXED_BYTES)),
  });
}

export function decodeProof(b: Buffer): Decoded<Buffer> {
  if (b.length === 0 || b.length > PROOF_BYTES_MAX)
    return err(`session proof of ${b.length} bytes`);
  return ok(b);
}

export function encodeRefuse(r: MpRefuse): Buffer {
  let text = Buffer.from(r.reason, 'utf8');
  if (text.length > REASON_BYTES_MAX) text = text.subarray(0, REASON_BYTES_MAX);
  return Buffer.concat([Buffer.of(REFUSE_CODES.indexOf(r.code)), text]);
}

export function decodeRefuse(b: Buffer): Decoded<MpRefuse> {
  if (b.length < 1 || b.length > 1 + REASON_BYTES_MAX) return err('session refuse: wrong length');
  const code = REFUSE_CODES[b.readUInt8(0)];
  if (code === undefined) return err('session refuse: unknown code');
  return ok({ code, reason: b.subarray(1).toString('utf8') });
}

export function encodeSeq(seq: number): Buffer {
  const b = Buffer.alloc(8);
  writeU64(b, seq, 0);
  return b;
}

export function decodeSeq(b: Buffer): Decoded<number> {
  if (b.length !== 8) return err(`sequence marker of ${b.length} bytes`);
  const n = readU64(b, 0);
  return n === null ? err('sequence number out of range') : ok(n);
}

/** MP_ACK and MP_RESUME share this body. */
export function encodeNext(n: NextSeqs): Buffer {
  const b = Buffer.alloc(16);
  writeU64(b, n.data, 0);
  writeU64(b, n.control, 8);
  return b;
}

function readNext(b: Buffer, off: number): NextSeqs | null {
  const data = readU64(b, off);
  const control = readU64(b, off + 8);
  return data === null || control === null ? null : { data, control };
}

export function decodeNext(b: Buffer): Decoded<NextSeqs> {
  if (b.length !== 16) return err(`ack of ${b.length} bytes`);
  const n = readNext(b, 0);
  return n === null ? err('ack sequence number out of range') : ok(n);
}

export function encodeHeartbeat(h: MpHeartbeat): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt8(h.reply ? 1 : 0, 0);
  b.writeUInt32BE(h.token >>> 0, 1);
  return b;
}

export function decodeHeartbeat(b: Buffer): Decoded<MpHeartbeat> {
  if (b.length !== 5) return err(`heartbeat of ${b.length} bytes`);
  const kind = b.readUInt8(0);
  if (kind > 1) return err(`heartbeat kind ${kind}`);
  return ok({ reply: kind === 1, token: b.readUInt32BE(1) });
}

export function encodeClose(abort: boolean): Buffer {
  return Buffer.of(abort ? 1 : 0);
}

export function decodeClose(b: Buffer): Decoded<{ abort: boolean }> {
  const v = b.length === 1 ? b.readUInt8(0) : 2;
  if (v > 1) return err('close notice: bad body');
  return ok({ abort: v === 1 });
}
