// Handshake messages of the connection manager (CONTROL stream, types 0xFF10..0xFF1F), byte by
// byte in PROTOCOL.md. Encoders are total; decoders are pure, return results and never throw.
import { CM_ADDRESSES_MAX, CM_REASON_BYTES_MAX, CM_RESOURCE_NAME_BYTES_MAX } from '../limits.js';
import type { AddressFamily, TransportName } from '../transport/types.js';
import { err, ok, type Result } from '../util/result.js';

export const MSG_HELLO = 0xff10;
export const MSG_AUTH = 0xff11;
export const MSG_ADDRESSES = 0xff12;
export const MSG_READY = 0xff13;
export const MSG_REFUSE = 0xff1f;

/** Hello feature bit: this connection runs as a multipath session (both sides must offer it). */
export const FEATURE_MULTIPATH = 0x0000_0001;

/** "TNDH": the first bytes of a hello. */
export const HELLO_MAGIC = 0x544e4448;
export const HELLO_FIXED_BYTES = 19;
const FLAG_AUTH = 0x01;

export interface Hello {
  readonly versionMin: number;
  readonly versionMax: number;
  readonly features: number;
  readonly fromNodeId: number;
  readonly toNodeId: number;
  readonly resource: string;
  /** Present (non-empty) when the sender requires cram-hmac authentication. */
  readonly challenge: Buffer | null;
}

/** One address a node can be reached on (the address exchange). */
export interface AnnouncedAddress {
  readonly transport: TransportName;
  readonly family: AddressFamily;
  readonly address: string;
  readonly port: number;
}

export type RefuseCode =
  | 'incompatible-version'
  | 'unknown-resource'
  | 'unknown-node'
  | 'auth-failed'
  | 'auth-mismatch'
  | 'already-connected'
  | 'crossed'
  | 'protocol'
  | 'rate-limited'
  | 'tls-mismatch'
  | 'tls-identity';

const REFUSE_CODES: readonly RefuseCode[] = [
  'incompatible-version',
  'unknown-resource',
  'unknown-node',
  'auth-failed',
  'auth-mismatch',
  'already-connected',
  'crossed',
  'protocol',
  'rate-limited',
  'tls-mismatch',
  'tls-identity',
];

export interface Refuse {
  readonly code: RefuseCode;
  readonly reason: string;
}

const TRANSPORTS: readonly TransportName[] = ['memory', 'tcp', 'fabric', 'multipath'];
const FAMILIES: readonly AddressFamily[] = ['ipv4', 'ipv6', 'memory', 'fabric'];

type Decoded<T> = Result<T, string>;

export function encodeHello(h: Hello): Buffer {
  const name = Buffer.from(h.resource, 'utf8');
  const ch = h.challenge ?? Buffer.alloc(0);
  const b = Buffer.alloc(HELLO_FIXED_BYTES + name.length + ch.length);
  b.writeUInt32BE(HELLO_MAGIC, 0);
  b.writeUInt16BE(h.versionMin, 4);
  b.writeUInt16BE(h.versionMax, 6);
  b.writeUInt32BE(h.features >>> 0, 8);
  b.writeUInt16BE(h.fromNodeId, 12);
  b.writeUInt16BE(h.toNodeId, 14);
  b.writeUInt8(ch.length > 0 ? FLAG_AUTH : 0, 16);
  b.writeUInt8(ch.length, 17);
  b.writeUInt8(name.length, 18);
  name.copy(b, HELLO_FIXED_BYTES);
  ch.copy(b, HELLO_FIXED_BYTES + name.length);
  return b;
}

export function decodeHello(b: Buffer): Decoded<Hello> {
  if (b.length < HELLO_FIXED_BYTES) return err(`hello of ${b.length} bytes is too short`);
  if (b.readUInt32BE(0) !== HELLO_MAGIC) return err('hello magic is wrong (not a Tandem peer?)');
  const versionMin = b.readUInt16BE(4);
  const versionMax = b.readUInt16BE(6);
  if (versionMin > versionMax) return err(`hello version range ${versionMin}..${versionMax}`);
  const flags = b.readUInt8(16);
  const chLen = b.readUInt8(17);
  const nameLen = b.readUInt8(18);
  if (((flags & FLAG_AUTH) !== 0) !== chLen > 0)
    return err('hello auth flag and challenge disagree');
  if (nameLen === 0 || nameLen > CM_RESOURCE_NAME_BYTES_MAX)
    return err('hello resource name length');
  if (b.length !== HELLO_FIXED_BYTES + nameLen + chLen) return err('hello length mismatch');
  const nameBytes = b.subarray(HELLO_FIXED_BYTES, HELLO_FIXED_BYTES + nameLen);
  const resource = nameBytes.toString('utf8');
  if (!Buffer.from(resource, 'utf8').equals(nameBytes)) return err('hello resource is not UTF-8');
  return ok({
    versionMin,
    versionMax,
    features: b.readUInt32BE(8),
    fromNodeId: b.readUInt16BE(12),
    toNodeId: b.readUInt16BE(14),
    resource,
    challenge: chLen > 0 ? Buffer.from(b.subarray(HELLO_FIXED_BYTES + nameLen)) : null,
  });
}

export function encodeAddresses(list: readonly AnnouncedAddress[]): Buffer {
  const parts: Buffer[] = [Buffer.of(list.length)];
  for (const a of list) {
    const addr = Buffer.from(a.address, 'utf8');
    const h = Buffer.alloc(5);
    h.writeUInt8(TRANSPORTS.indexOf(a.transport), 0);
    h.writeUInt8(FAMILIES.indexOf(a.family), 1);
    h.writeUInt16BE(a.port, 2);
    h.writeUInt8(addr.length, 4);
    parts.push(h, addr);
  }
  return Buffer.concat(parts);
}

export function decodeAddresses(b: Buffer): Decoded<AnnouncedAddress[]> {
  if (b.length < 1) return err('addresses: empty');
  const n = b.readUInt8(0);
  if (n > CM_ADDRESSES_MAX) return err(`addresses: ${n} exceeds ${CM_ADDRESSES_MAX}`);
  const out: AnnouncedAddress[] = [];
  let off = 1;
  for (let i = 0; i < n; i++) {
    if (off + 5 > b.length) return err('addresses: truncated');
    const transport = TRANSPORTS[b.readUInt8(off)];
    const family = FAMILIES[b.readUInt8(off + 1)];
    const port = b.readUInt16BE(off + 2);
    const len = b.readUInt8(off + 4);
    off += 5;
    if (transport === undefined || family === undefined) return err('addresses: unknown code');
    if (off + len > b.length) return err('addresses: truncated');
    const bytes = b.subarray(off, off + len);
    const text = bytes.toString('utf8');
    // Replacement characters would make an address nobody announced.
    if (!Buffer.from(text, 'utf8').equals(bytes)) return err('addresses: not UTF-8');
    out.push({ transport, family, port, address: text });
    off += len;
  }
  if (off !== b.length) return err('addresses: trailing bytes');
  return ok(out);
}

export function encodeReady(version: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(version, 0);
  return b;
}

export function decodeReady(b: Buffer): Decoded<number> {
  if (b.length !== 2) return err('ready: wrong length');
  return ok(b.readUInt16BE(0));
}

export function encodeRefuse(r: Refuse): Buffer {
  let text = Buffer.from(r.reason, 'utf8');
  if (text.length > CM_REASON_BYTES_MAX) text = text.subarray(0, CM_REASON_BYTES_MAX);
  return Buffer.concat([Buffer.of(REFUSE_CODES.indexOf(r.code)), text]);
}

export function decodeRefuse(b: Buffer): Decoded<Refuse> {
  if (b.length < 1 || b.length > 1 + CM_REASON_BYTES_MAX) return err('refuse: wrong length');
  const code = REFUSE_CODES[b.readUInt8(0)];
  if (code === undefined) return err('refuse: unknown code');
  return ok({ code, reason: b.subarray(1).toString('utf8') });
}
