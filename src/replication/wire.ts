// Binary codec for the engine's peer packets: a 12-byte big-endian header (magic, version,
// command, body length) followed by a fixed per-command field layout. Decoders return results
// and never throw on bad bytes; encoders return a Buffer list so bulk payloads are not copied.
import type { BlockRange, Packet, PacketKind } from './types.js';
import { err, ok, type Result } from '../util/result.js';
import { WIRE_BODY_BYTES_MAX, UUID_HISTORY_MAX, WIRE_RANGES_MAX } from '../limits.js';

export const WIRE_MAGIC = 0x54_4e_44_4d; // "TNDM"
export const WIRE_VERSION = 2;
export const WIRE_HEADER_BYTES = 12;

type FieldType =
  | 'u8'
  | 'u32'
  | 'num' // non-negative safe integer as u64
  | 'u64' // bigint
  | 'bool'
  | 'bytes'
  | 'u64list'
  | 'ranges'
  | { readonly oneOf: readonly string[] };

const ROLE = { oneOf: ['Primary', 'Secondary', 'Unknown'] } as const;
const DISK = {
  oneOf: ['Diskless', 'Attaching', 'Inconsistent', 'Outdated', 'UpToDate', 'Failed'],
} as const;

// Order of this table is the command numbering: append only.
const SCHEMA: Readonly<Record<PacketKind, readonly (readonly [string, FieldType])[]>> = {
  Handshake: [
    ['nodeId', 'u32'],
    ['protocol', { oneOf: ['A', 'B', 'C'] }],
    ['sizeBytes', 'num'],
    ['role', ROLE],
    ['disk', DISK],
    ['currentUuid', 'u64'],
    ['bitmapUuid', 'u64'],
    ['historyUuids', 'u64list'],
    ['crashedPrimary', 'bool'],
    ['discardMyData', 'bool'],
    ['bitmapWeight', 'num'],
    ['allowTwoPrimaries', 'bool'],
  ],
  Bitmap: [
    ['ranges', 'ranges'],
    ['last', 'bool'],
  ],
  SyncUuid: [['uuid', 'u64']],
  StartResync: [
    ['senderIsSource', 'bool'],
    ['full', 'bool'],
  ],
  State: [
    ['role', ROLE],
    ['disk', DISK],
  ],
  NewCurrentUuid: [
    ['uuid', 'u64'],
    ['clearBitmap', 'bool'],
  ],
  PromoteRequest: [['id', 'num']],
  PromoteReply: [
    ['id', 'num'],
    ['granted', 'bool'],
  ],
  Data: [
    ['seq', 'num'],
    ['epoch', 'num'],
    ['op', { oneOf: ['write', 'trim', 'zeroes'] }],
    ['offsetBytes', 'num'],
    ['lengthBytes', 'num'],
    ['fua', 'bool'],
    ['ack', { oneOf: ['none', 'recv', 'write'] }],
    ['peerSeq', 'num'],
    ['data', 'bytes'],
  ],
  Barrier: [
    ['epoch', 'num'],
    ['flush', 'bool'],
  ],
  BarrierAck: [
    ['epoch', 'num'],
    ['setSize', 'num'],
  ],
  RecvAck: [['seq', 'num']],
  WriteAck: [['seq', 'num']],
  NegAck: [['seq', 'num']],
  DataRequest: [
    ['id', 'num'],
    ['offsetBytes', 'num'],
    ['lengthBytes', 'num'],
  ],
  DataReply: [
    ['id', 'num'],
    ['ok', 'bool'],
    ['data', 'bytes'],
  ],
  RsRequest: [
    ['id', 'num'],
    ['start', 'num'],
    ['count', 'num'],
    ['digest', 'bytes'],
  ],
  RsReply: [
    ['id', 'num'],
    ['start', 'num'],
    ['count', 'num'],
    ['data', 'bytes'],
  ],
  RsInSync: [
    ['id', 'num'],
    ['start', 'num'],
    ['count', 'num'],
  ],
  RsNegAck: [
    ['id', 'num'],
    ['start', 'num'],
    ['count', 'num'],
  ],
  RsWriteAck: [
    ['id', 'num'],
    ['start', 'num'],
    ['count', 'num'],
  ],
  ResyncDone: [],
  ResyncDoneAck: [['currentUuid', 'u64']],
  OvStart: [],
  OvRequest: [
    ['id', 'num'],
    ['start', 'num'],
    ['count', 'num'],
  ],
  OvReply: [
    ['id', 'num'],
    ['start', 'num'],
    ['count', 'num'],
    ['digest', 'bytes'],
  ],
  OvResult: [
    ['start', 'num'],
    ['count', 'num'],
    ['inSync', 'bool'],
  ],
  OvDone: [],
  ResizeQuery: [['id', 'num']],
  ResizeInfo: [
    ['id', 'num'],
    ['capacityBytes', 'num'],
    ['refusal', { oneOf: ['none', 'failed'] }],
  ],
  Resize: [
    ['id', 'num'],
    ['sizeBytes', 'num'],
    ['assumeClean', 'bool'],
  ],
  ResizeDone: [
    ['id', 'num'],
    ['ok', 'bool'],
  ],
  OutOfSync: [
    ['start', 'num'],
    ['count', 'num'],
  ],
};

const KINDS = Object.keys(SCHEMA) as PacketKind[];
const CMD_OF = new Map<PacketKind, number>(KINDS.map((k, i) => [k, i + 1]));

export interface WireHeader {
  readonly kind: PacketKind;
  readonly bodyBytes: number;
}

export type WireError = {
  readonly code: 'short' | 'magic' | 'version' | 'command' | 'length' | 'field';
  readonly message: string;
};

const werr = (code: WireError['code'], message: string): { ok: false; error: WireError } =>
  err({ code, message });

/** Encodes a packet as [header+fields, payload?]; the payload buffer is not copied. */
export function encodePacket(p: Packet): Buffer[] {
  const fields = SCHEMA[p.kind];
  const rec = p as unknown as Record<string, unknown>;
  let size = 0;
  const payloads: Uint8Array[] = [];
  for (const [name, t] of fields) size += fieldSize(t, rec[name]);
  const head = Buffer.alloc(WIRE_HEADER_BYTES + size);
  let o = WIRE_HEADER_BYTES;
  for (const [name, t] of fields) o = writeField(head, o, t, rec[name], payloads);
  const payloadBytes = payloads.reduce((n, b) => n + b.length, 0);
  head.writeUInt32BE(WIRE_MAGIC, 0);
  head.writeUInt16BE(WIRE_VERSION, 4);
  head.writeUInt16BE(CMD_OF.get(p.kind) ?? 0, 6);
  head.writeUInt32BE(size + payloadBytes, 8);
  return [head, ...payloads.map((b) => Buffer.from(b.buffer, b.byteOffset, b.length))];
}

function fieldSize(t: FieldType, v: unknown): number {
  if (typeof t === 'object') return 1;
  switch (t) {
    case 'u8':
    case 'bool':
      return 1;
    case 'u32':
      return 4;
    case 'num':
    case 'u64':
      return 8;
    case 'bytes':
      return 4; // length; the bytes travel as a separate payload buffer
    case 'u64list':
      return 2 + 8 * (v as readonly bigint[]).length;
    case 'ranges':
      return 4 + 16 * (v as readonly BlockRange[]).length;
  }
}

function writeField(
  b: Buffer,
  o: number,
  t: FieldType,
  v: unknown,
  payloads: Uint8Array[],
): number {
  if (typeof t === 'object') {
    b.writeUInt8(t.oneOf.indexOf(v as string), o);
    return o + 1;
  }
  switch (t) {
    case 'u8':
      b.writeUInt8(v as number, o);
      return o + 1;
    case 'bool':
      b.writeUInt8(v === true ? 1 : 0, o);
      return o + 1;
    case 'u32':
      b.writeUInt32BE(v as number, o);
      return o + 4;
    case 'num':
      b.writeBigUInt64BE(BigInt(v as number), o);
      return o + 8;
    case 'u64':
      b.writeBigUInt64BE(BigInt.asUintN(64, v as bigint), o);
      return o + 8;
    case 'bytes': {
      const d = v as Uint8Array;
      b.writeUInt32BE(d.length, o);
      if (d.length > 0) payloads.push(d);
      return o + 4;
    }
    case 'u64list': {
      const l = v as readonly bigint[];
      b.writeUInt16BE(l.length, o);
      o += 2;
      for (const x of l) {
        b.writeBigUInt64BE(BigInt.asUintN(64, x), o);
        o += 8;
      }
      return o;
    }
    case 'ranges': {
      const l = v as readonly BlockRange[];
      b.writeUInt32BE(l.length, o);
      o += 4;
      for (const r of l) {
        b.writeBigUInt64BE(BigInt(r.start), o);
        b.writeBigUInt64BE(BigInt(r.count), o + 8);
        o += 16;
      }
      return o;
    }
  }
}

/** Reads a header; the caller then needs bodyBytes more bytes for decodePacket. */
export function decodeHeader(b: Uint8Array): Result<WireHeader, WireError> {
  if (b.length < WIRE_HEADER_BYTES)
    return werr('short', `header needs ${WIRE_HEADER_BYTES} bytes, got ${b.length}`);
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const magic = v.getUint32(0);
  if (magic !== WIRE_MAGIC) return werr('magic', `bad packet magic 0x${magic.toString(16)}`);
  const version = v.getUint16(4);
  if (version !== WIRE_VERSION) return werr('version', `unsupported wire version ${version}`);
  const cmd = v.getUint16(6);
  const kind = KINDS[cmd - 1];
  if (kind === undefined) return werr('command', `unknown packet command ${cmd}`);
  const bodyBytes = v.getUint32(8);
  if (bodyBytes > WIRE_BODY_BYTES_MAX)
    return werr('length', `packet body ${bodyBytes} bytes exceeds ${WIRE_BODY_BYTES_MAX}`);
  return ok({ kind, bodyBytes });
}

/** Decodes one whole packet (header and body, nothing after it). */
export function decodePacket(b: Uint8Array): Result<Packet, WireError> {
  const h = decodeHeader(b);
  if (!h.ok) return h;
  if (b.length !== WIRE_HEADER_BYTES + h.value.bodyBytes)
    return werr(
      'length',
      `packet is ${b.length} bytes, header says ${WIRE_HEADER_BYTES + h.value.bodyBytes}`,
    );
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  const out: Record<string, unknown> = { kind: h.value.kind };
  let o = WIRE_HEADER_BYTES;
  const byteFields: string[] = [];
  const byteLens: number[] = [];
  for (const [name, t] of SCHEMA[h.value.kind]) {
    const r = readField(v, o, t);
    if (!r.ok) return werr('field', `${h.value.kind}.${name}: ${r.error}`);
    o = r.value.next;
    if (t === 'bytes') {
      byteFields.push(name);
      byteLens.push(r.value.value as number);
    } else out[name] = r.value.value;
  }
  for (let i = 0; i < byteFields.length; i++) {
    const n = byteLens[i] ?? 0;
    if (o + n > b.length)
      return werr('field', `${h.value.kind}.${byteFields[i]}: payload runs past the packet`);
    out[byteFields[i] ?? ''] = b.subarray(o, o + n);
    o += n;
  }
  if (o !== b.length) return werr('length', `${h.value.kind}: ${b.length - o} trailing bytes`);
  return ok(out as unknown as Packet);
}

type Read = Result<{ value: unknown; next: number }, string>;

function readField(v: DataView, o: number, t: FieldType): Read {
  const need = (n: number): boolean => o + n <= v.byteLength;
  if (typeof t === 'object') {
    if (!need(1)) return err('truncated');
    const i = v.getUint8(o);
    const s = t.oneOf[i];
    return s === undefined ? err(`value ${i} out of range`) : ok({ value: s, next: o + 1 });
  }
  switch (t) {
    case 'u8':
      return need(1) ? ok({ value: v.getUint8(o), next: o + 1 }) : err('truncated');
    case 'bool': {
      if (!need(1)) return err('truncated');
      const x = v.getUint8(o);
      return x > 1 ? err(`boolean ${x}`) : ok({ value: x === 1, next: o + 1 });
    }
    case 'u32':
      return need(4) ? ok({ value: v.getUint32(o), next: o + 4 }) : err('truncated');
    case 'num': {
      if (!need(8)) return err('truncated');
      const x = v.getBigUint64(o);
      return x > BigInt(Number.MAX_SAFE_INTEGER)
        ? err(`integer ${x} too large`)
        : ok({ value: Number(x), next: o + 8 });
    }
    case 'u64':
      return need(8) ? ok({ value: v.getBigUint64(o), next: o + 8 }) : err('truncated');
    case 'bytes':
      return need(4) ? ok({ value: v.getUint32(o), next: o + 4 }) : err('truncated');
    case 'u64list': {
      if (!need(2)) return err('truncated');
      const n = v.getUint16(o);
      if (n > UUID_HISTORY_MAX) return err(`${n} UUIDs exceed ${UUID_HISTORY_MAX}`);
      if (!need(2 + 8 * n)) return err('truncated');
      const l: bigint[] = [];
      for (let i = 0; i < n; i++) l.push(v.getBigUint64(o + 2 + 8 * i));
      return ok({ value: l, next: o + 2 + 8 * n });
    }
    case 'ranges': {
      if (!need(4)) return err('truncated');
      const n = v.getUint32(o);
      if (n > WIRE_RANGES_MAX) return err(`${n} ranges exceed ${WIRE_RANGES_MAX}`);
      if (!need(4 + 16 * n)) return err('truncated');
      const l: BlockRange[] = [];
      for (let i = 0; i < n; i++) {
        const s = v.getBigUint64(o + 4 + 16 * i);
        const c = v.getBigUint64(o + 12 + 16 * i);
        if (s > 0xffff_ffffn || c > 0xffff_ffffn) return err('range out of bounds');
        l.push({ start: Number(s), count: Number(c) });
      }
      return ok({ value: l, next: o + 4 + 16 * n });
    }
  }
}
