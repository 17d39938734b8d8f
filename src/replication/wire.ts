// Binary codec for the engine's peer packets: a 12-byte big-endian header (magic, version,
// command, body length) followed by a fixed per-command field layout. Decoders return results
// and never throw on bad bytes; encoders return a Buffer list so bulk payloads are not copied.
// The layout is one table (SCHEMA) read by a generic codec; the packets of every replicated
// write (Data, its acks, Barrier, BarrierAck) also have hand-written codecs that produce and
// accept exactly the same bytes without a BigInt or a table walk per field. A hot packet the
// fast decoder does not accept as it is goes to the generic decoder, so errors are identical.
import type { BlockRange, Packet, PacketKind } from './types.js';
import { err, ok, type Result } from '../util/result.js';
import { SECTOR_BYTES, WIRE_BODY_BYTES_MAX, UUID_HISTORY_MAX, WIRE_RANGES_MAX } from '../limits.js';

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
  | 'chunks' // like bytes, but the value is a list of slices (scatter-gather); decodes to one
  | 'u64list'
  | 'ranges'
  | { readonly oneOf: readonly string[] };

const DATA_OP = { oneOf: ['write', 'trim', 'zeroes'] } as const;
const DATA_ACK = { oneOf: ['none', 'recv', 'write'] } as const;
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
    ['op', DATA_OP],
    ['offsetBytes', 'num'],
    ['lengthBytes', 'num'],
    ['fua', 'bool'],
    ['ack', DATA_ACK],
    ['peerSeq', 'num'],
    ['data', 'chunks'],
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

/** Encodes a packet as [header+fields, ...payload]; payload buffers are not copied. */
export function encodePacket(p: Packet): Buffer[] {
  switch (p.kind) {
    case 'Data':
      return encodeData(p);
    case 'RecvAck':
    case 'WriteAck':
    case 'NegAck':
      return encodeSeqAck(
        p.kind === 'WriteAck' ? CMD_WRITE_ACK : p.kind === 'RecvAck' ? CMD_RECV_ACK : CMD_NEG_ACK,
        p.seq,
      );
    case 'Barrier':
      return encodeBarrier(p.epoch, p.flush);
    case 'BarrierAck':
      return encodeBarrierAck(p.epoch, p.setSize);
    default:
      return encodePacketGeneric(p);
  }
}

/** The table-driven encoder for every kind (the reference the hot-packet encoders match). */
export function encodePacketGeneric(p: Packet): Buffer[] {
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
  return [head, ...payloads.map(asBuffer)];
}

/** The same memory as a Buffer (the transport's type), never a copy. */
function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
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
    case 'chunks':
      return 4; // length; the bytes travel as separate payload buffers
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
    case 'chunks': {
      const l = v as readonly Uint8Array[];
      let n = 0;
      for (const d of l) n += d.length;
      b.writeUInt32BE(n, o);
      for (const d of l) if (d.length > 0) payloads.push(d);
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

/** Decodes one whole packet (header and body, nothing after it); payloads are slices of `b`. */
export function decodePacket(b: Uint8Array): Result<Packet, WireError> {
  const hot = decodeHotPacket(b);
  return hot !== null ? ok(hot) : decodePacketGeneric(b);
}

/** The table-driven decoder for every kind (the reference the hot-packet decoders match). */
export function decodePacketGeneric(b: Uint8Array): Result<Packet, WireError> {
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
  const byteLists: boolean[] = [];
  for (const [name, t] of SCHEMA[h.value.kind]) {
    const r = readField(v, o, t);
    if (!r.ok) return werr('field', `${h.value.kind}.${name}: ${r.error}`);
    o = r.value.next;
    if (t === 'bytes' || t === 'chunks') {
      byteFields.push(name);
      byteLens.push(r.value.value as number);
      byteLists.push(t === 'chunks');
    } else out[name] = r.value.value;
  }
  for (let i = 0; i < byteFields.length; i++) {
    const n = byteLens[i] ?? 0;
    if (o + n > b.length)
      return werr('field', `${h.value.kind}.${byteFields[i]}: payload runs past the packet`);
    const slice = b.subarray(o, o + n);
    out[byteFields[i] ?? ''] = byteLists[i] === true ? (n > 0 ? [slice] : []) : slice;
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
    case 'chunks':
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

// --- hot packets ------------------------------------------------------------------------------
// One fixed layout each, written and read at constant offsets. Numbers travel as u64 (two u32
// halves here); a decoded one above 2^53-1 is an error, left to the generic decoder to name.

const cmdOf = (k: PacketKind): number => CMD_OF.get(k) ?? 0;
const CMD_DATA = cmdOf('Data');
const CMD_BARRIER = cmdOf('Barrier');
const CMD_BARRIER_ACK = cmdOf('BarrierAck');
const CMD_RECV_ACK = cmdOf('RecvAck');
const CMD_WRITE_ACK = cmdOf('WriteAck');
const CMD_NEG_ACK = cmdOf('NegAck');

// Data: seq, epoch (u64), op (u8), offsetBytes, lengthBytes (u64), fua, ack (u8), peerSeq (u64),
// payload length (u32), then the payload.
const DATA_FIELDS_BYTES = 8 + 8 + 1 + 8 + 8 + 1 + 1 + 8 + 4;
const SEQ_ACK_FIELDS_BYTES = 8;
const BARRIER_FIELDS_BYTES = 8 + 1;
const BARRIER_ACK_FIELDS_BYTES = 8 + 8;
const TWO_32 = 0x1_0000_0000;
const SAFE_HIGH_MAX = Math.floor(Number.MAX_SAFE_INTEGER / TWO_32); // 2^21 - 1

function writeHeader(b: Buffer, cmd: number, bodyBytes: number): void {
  b.writeUInt32BE(WIRE_MAGIC, 0);
  b.writeUInt16BE(WIRE_VERSION, 4);
  b.writeUInt16BE(cmd, 6);
  b.writeUInt32BE(bodyBytes, 8);
}

/** A non-negative integer below 2^64 as a big-endian u64 (what the generic encoder accepts). */
function writeNum(b: Buffer, o: number, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= TWO_32 * TWO_32)
    throw new RangeError(`${v} is not an unsigned 64-bit integer`);
  const hi = Math.floor(v / TWO_32);
  b.writeUInt32BE(hi, o);
  b.writeUInt32BE(v - hi * TWO_32, o + 4);
}

function oneOfIndex(t: { readonly oneOf: readonly string[] }, v: string): number {
  const i = t.oneOf.indexOf(v);
  if (i < 0) throw new RangeError(`${v} is not one of ${t.oneOf.join(', ')}`);
  return i;
}

function encodeData(p: Extract<Packet, { kind: 'Data' }>): Buffer[] {
  const head = Buffer.allocUnsafe(WIRE_HEADER_BYTES + DATA_FIELDS_BYTES);
  const out: Buffer[] = [head];
  let n = 0;
  for (const d of p.data) {
    if (d.length === 0) continue;
    n += d.length;
    out.push(asBuffer(d));
  }
  writeHeader(head, CMD_DATA, DATA_FIELDS_BYTES + n);
  writeNum(head, 12, p.seq);
  writeNum(head, 20, p.epoch);
  head[28] = oneOfIndex(DATA_OP, p.op);
  writeNum(head, 29, p.offsetBytes);
  writeNum(head, 37, p.lengthBytes);
  head[45] = p.fua ? 1 : 0;
  head[46] = oneOfIndex(DATA_ACK, p.ack);
  writeNum(head, 47, p.peerSeq);
  head.writeUInt32BE(n, 55);
  return out;
}

function encodeSeqAck(cmd: number, seq: number): Buffer[] {
  const b = Buffer.allocUnsafe(WIRE_HEADER_BYTES + SEQ_ACK_FIELDS_BYTES);
  writeHeader(b, cmd, SEQ_ACK_FIELDS_BYTES);
  writeNum(b, 12, seq);
  return [b];
}

function encodeBarrier(epoch: number, flush: boolean): Buffer[] {
  const b = Buffer.allocUnsafe(WIRE_HEADER_BYTES + BARRIER_FIELDS_BYTES);
  writeHeader(b, CMD_BARRIER, BARRIER_FIELDS_BYTES);
  writeNum(b, 12, epoch);
  b[20] = flush ? 1 : 0;
  return [b];
}

function encodeBarrierAck(epoch: number, setSize: number): Buffer[] {
  const b = Buffer.allocUnsafe(WIRE_HEADER_BYTES + BARRIER_ACK_FIELDS_BYTES);
  writeHeader(b, CMD_BARRIER_ACK, BARRIER_ACK_FIELDS_BYTES);
  writeNum(b, 12, epoch);
  writeNum(b, 20, setSize);
  return [b];
}

function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

function u32(b: Uint8Array, o: number): number {
  return b[o]! * 0x100_0000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
}

/** A u64 that fits a safe integer, or -1 (the generic decoder then names the error). */
function num(b: Uint8Array, o: number): number {
  const hi = u32(b, o);
  return hi > SAFE_HIGH_MAX ? -1 : hi * TWO_32 + u32(b, o + 4);
}

/**
 * The fast path alone: the packet when `b` is a well-formed hot packet, else null (another
 * kind, or bad bytes for the generic decoder to name). Exported for the tests.
 */
export function decodeHotPacket(b: Uint8Array): Packet | null {
  if (
    b.length < WIRE_HEADER_BYTES ||
    u32(b, 0) !== WIRE_MAGIC ||
    u16(b, 4) !== WIRE_VERSION ||
    u32(b, 8) !== b.length - WIRE_HEADER_BYTES ||
    b.length - WIRE_HEADER_BYTES > WIRE_BODY_BYTES_MAX
  )
    return null;
  return decodeHot(b, u16(b, 6));
}

/** decodeHotPacket after the header checks. */
function decodeHot(b: Uint8Array, cmd: number): Packet | null {
  const body = b.length - WIRE_HEADER_BYTES;
  switch (cmd) {
    case CMD_DATA: {
      if (body < DATA_FIELDS_BYTES) return null;
      const seq = num(b, 12);
      const epoch = num(b, 20);
      const op = DATA_OP.oneOf[b[28]!];
      const offsetBytes = num(b, 29);
      const lengthBytes = num(b, 37);
      const fua = b[45]!;
      const ack = DATA_ACK.oneOf[b[46]!];
      const peerSeq = num(b, 47);
      const n = u32(b, 55);
      if (
        seq < 0 ||
        epoch < 0 ||
        offsetBytes < 0 ||
        lengthBytes < 0 ||
        peerSeq < 0 ||
        op === undefined ||
        fua > 1 ||
        ack === undefined ||
        n !== body - DATA_FIELDS_BYTES
      )
        return null;
      const at = WIRE_HEADER_BYTES + DATA_FIELDS_BYTES;
      return {
        kind: 'Data',
        seq,
        epoch,
        op,
        offsetBytes,
        lengthBytes,
        fua: fua === 1,
        ack,
        peerSeq,
        data: n > 0 ? [b.subarray(at, at + n)] : [],
      };
    }
    case CMD_RECV_ACK:
    case CMD_WRITE_ACK:
    case CMD_NEG_ACK: {
      const seq = body === SEQ_ACK_FIELDS_BYTES ? num(b, 12) : -1;
      if (seq < 0) return null;
      const kind = cmd === CMD_WRITE_ACK ? 'WriteAck' : cmd === CMD_RECV_ACK ? 'RecvAck' : 'NegAck';
      return { kind, seq };
    }
    case CMD_BARRIER: {
      if (body !== BARRIER_FIELDS_BYTES) return null;
      const epoch = num(b, 12);
      const flush = b[20]!;
      return epoch < 0 || flush > 1 ? null : { kind: 'Barrier', epoch, flush: flush === 1 };
    }
    case CMD_BARRIER_ACK: {
      if (body !== BARRIER_ACK_FIELDS_BYTES) return null;
      const epoch = num(b, 12);
      const setSize = num(b, 20);
      return epoch < 0 || setSize < 0 ? null : { kind: 'BarrierAck', epoch, setSize };
    }
    default:
      return null;
  }
}

/**
 * What a well-formed Data packet must also be, beyond its fields decoding: a write carries
 * exactly `lengthBytes` of payload, trim and zeroes carry none, and the range is whole,
 * non-empty sectors. The receiver checks before the engine locks, marks and writes that range
 * (a peer whose payload disagrees with its range is broken or hostile). Returns what is wrong,
 * or null.
 */
export function dataShapeError(p: Extract<Packet, { kind: 'Data' }>): string | null {
  let payload = 0;
  for (const c of p.data) payload += c.length;
  if (p.op === 'write' && payload !== p.lengthBytes)
    return `Data ${p.seq}: payload of ${payload} bytes for a write of ${p.lengthBytes}`;
  if (p.op !== 'write' && payload !== 0)
    return `Data ${p.seq}: ${p.op} carries ${payload} bytes of payload`;
  if (
    p.lengthBytes === 0 ||
    p.lengthBytes % SECTOR_BYTES !== 0 ||
    p.offsetBytes % SECTOR_BYTES !== 0
  )
    return `Data ${p.seq}: range ${p.offsetBytes}+${p.lengthBytes} is not whole sectors`;
  return null;
}
