// Fabric wire format: every fabric message starts with a 16-byte big-endian header; the
// connection data of fi_connect/fi_accept carries a 16-byte transport handshake. Decoders are
// pure and return results; they never throw on bad bytes from a peer.
import { FABRIC_CONN_DATA_BYTES, FABRIC_WIRE_HEADER_BYTES } from '../../limits.js';
import type { Result } from '../../util/result.js';
import { err, ok } from '../../util/result.js';

/** "TF": first two bytes of every fabric message. */
export const FABRIC_MAGIC = 0x5446;
/** "TFc1": first four bytes of the connection data. */
export const FABRIC_CONN_MAGIC = 0x54466331;
/** 2: graceful close is a close / close-ack handshake (version 1 had no close-ack). */
export const FABRIC_WIRE_VERSION = 2;

/**
 * data/control: a fragment of a message on that stream. credit: only carries grants (sent when
 * the peer runs low and nothing else is going out). close: the sender flushed everything and ends.
 * close-ack: everything up to the peer's close arrived here; the closer may now disconnect without
 * losing a tail still in flight (which libfabric's sockets provider does on fi_close).
 */
export type FragmentKind = 'data' | 'control' | 'credit' | 'close' | 'close-ack';
const KIND_CODES: Record<FragmentKind, number> = {
  data: 1,
  control: 2,
  credit: 3,
  close: 4,
  'close-ack': 5,
};
const KINDS: readonly (FragmentKind | undefined)[] = [
  undefined,
  'data',
  'control',
  'credit',
  'close',
  'close-ack',
];

export const FLAG_FIRST = 1;
export const FLAG_LAST = 2;

export interface FragmentHeader {
  readonly kind: FragmentKind;
  /** FLAG_FIRST | FLAG_LAST bits. */
  readonly flags: number;
  /** The message type (frame type of the contract); 0 on credit/close. */
  readonly type: number;
  /** Receive buffers the sender reposted for our DATA / CONTROL since its last grant. */
  readonly grantData: number;
  readonly grantControl: number;
  /** On a FIRST fragment: the whole message's payload bytes; otherwise 0. */
  readonly totalBytes: number;
}

export function encodeFragmentHeader(h: FragmentHeader): Buffer {
  const b = Buffer.alloc(FABRIC_WIRE_HEADER_BYTES);
  b.writeUInt16BE(FABRIC_MAGIC, 0);
  b.writeUInt8(KIND_CODES[h.kind], 2);
  b.writeUInt8(h.flags, 3);
  b.writeUInt16BE(h.type, 4);
  b.writeUInt16BE(h.grantData, 6);
  b.writeUInt16BE(h.grantControl, 8);
  b.writeUInt32BE(h.totalBytes, 12);
  return b;
}

export type WireError =
  | { kind: 'short'; bytes: number }
  | { kind: 'bad-magic'; magic: number }
  | { kind: 'bad-kind'; code: number }
  | { kind: 'bad-flags'; flags: number }
  | { kind: 'bad-version'; version: number }
  | { kind: 'bad-field'; field: string; value: number };

export function describeWireError(e: WireError): string {
  switch (e.kind) {
    case 'short':
      return `fabric message of ${e.bytes} bytes is shorter than its header`;
    case 'bad-magic':
      return `bad fabric magic 0x${e.magic.toString(16)}`;
    case 'bad-kind':
      return `unknown fabric message kind ${e.code}`;
    case 'bad-flags':
      return `bad fabric fragment flags 0x${e.flags.toString(16)}`;
    case 'bad-version':
      return `peer speaks fabric wire version ${e.version}, we speak ${FABRIC_WIRE_VERSION}`;
    case 'bad-field':
      return `fabric ${e.field} ${e.value} out of range`;
  }
}

export function decodeFragmentHeader(b: Uint8Array): Result<FragmentHeader, WireError> {
  if (b.length < FABRIC_WIRE_HEADER_BYTES) return err({ kind: 'short', bytes: b.length });
  const v = new DataView(b.buffer, b.byteOffset, FABRIC_WIRE_HEADER_BYTES);
  const magic = v.getUint16(0);
  if (magic !== FABRIC_MAGIC) return err({ kind: 'bad-magic', magic });
  const code = v.getUint8(2);
  const kind = KINDS[code];
  if (kind === undefined) return err({ kind: 'bad-kind', code });
  const flags = v.getUint8(3);
  const fragmentOfMessage = kind === 'data' || kind === 'control';
  if ((flags & ~(FLAG_FIRST | FLAG_LAST)) !== 0 || (!fragmentOfMessage && flags !== 0)) {
    return err({ kind: 'bad-flags', flags });
  }
  const totalBytes = v.getUint32(12);
  if ((flags & FLAG_FIRST) === 0 && totalBytes !== 0) {
    return err({ kind: 'bad-field', field: 'totalBytes', value: totalBytes });
  }
  return ok({
    kind,
    flags,
    type: v.getUint16(4),
    grantData: v.getUint16(6),
    grantControl: v.getUint16(8),
    totalBytes,
  });
}

/** The transport handshake each side puts into its connection data. */
export interface ConnHello {
  /** Size of each receive buffer the sender posted: the largest fabric message it takes. */
  readonly bufferBytes: number;
  /** Initial credits the sender grants us on each stream (receive buffers it posted). */
  readonly dataCredits: number;
  readonly controlCredits: number;
}

export interface ConnHelloBounds {
  readonly bufferBytesMin: number;
  readonly bufferBytesMax: number;
  readonly controlCreditsMin: number;
  readonly creditsMax: number;
}

export function encodeConnHello(h: ConnHello): Buffer {
  const b = Buffer.alloc(FABRIC_CONN_DATA_BYTES);
  b.writeUInt32BE(FABRIC_CONN_MAGIC, 0);
  b.writeUInt16BE(FABRIC_WIRE_VERSION, 4);
  b.writeUInt32BE(h.bufferBytes, 8);
  b.writeUInt16BE(h.dataCredits, 12);
  b.writeUInt16BE(h.controlCredits, 14);
  return b;
}

/** Validates a peer's hello; a peer may lie, so every field is bounded here. */
export function decodeConnHello(
  b: Uint8Array,
  bounds: ConnHelloBounds,
): Result<ConnHello, WireError> {
  if (b.length < FABRIC_CONN_DATA_BYTES) return err({ kind: 'short', bytes: b.length });
  const v = new DataView(b.buffer, b.byteOffset, FABRIC_CONN_DATA_BYTES);
  const magic = v.getUint32(0);
  if (magic !== FABRIC_CONN_MAGIC) return err({ kind: 'bad-magic', magic });
  const version = v.getUint16(4);
  if (version !== FABRIC_WIRE_VERSION) return err({ kind: 'bad-version', version });
  const bufferBytes = v.getUint32(8);
  if (bufferBytes < bounds.bufferBytesMin || bufferBytes > bounds.bufferBytesMax) {
    return err({ kind: 'bad-field', field: 'bufferBytes', value: bufferBytes });
  }
  const dataCredits = v.getUint16(12);
  if (dataCredits < 1 || dataCredits > bounds.creditsMax) {
    return err({ kind: 'bad-field', field: 'dataCredits', value: dataCredits });
  }
  const controlCredits = v.getUint16(14);
  if (controlCredits < bounds.controlCreditsMin || controlCredits > bounds.creditsMax) {
    return err({ kind: 'bad-field', field: 'controlCredits', value: controlCredits });
  }
  return ok({ bufferBytes, dataCredits, controlCredits });
}
