// The fixed-newstyle handshake as a pure state machine: bytes in (through a ByteQueue), option
// replies out, ending in transmission or a close. No sockets or timers, so it is fuzzed
// directly. Invariants: every option but EXPORT_NAME gets a reply; unknown ones ERR_UNSUP; a
// TLS-only export is never named, described or entered before STARTTLS has succeeded.
import { NBD_OPTION_BYTES_MAX, NBD_OPTIONS_PER_CONN_MAX, NBD_STRING_BYTES_MAX } from '../limits.js';
import { assert } from '../util/assert.js';
import type { ByteQueue } from './byte-queue.js';
import {
  BASE_ALLOCATION,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAGIC_INIT,
  NBD_MAGIC_OPTS,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_OPTION_HEADER_BYTES,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  OptionReader,
  encodeOptionReply,
  writeU64,
} from './protocol.js';
import type { NbdExportBackend } from './types.js';

/** The context id this server gives base:allocation. */
export const BASE_ALLOCATION_CONTEXT_ID = 1;

export interface ExportDirectory {
  lookup(name: string): NbdExportBackend | undefined;
  names(): readonly string[];
  /** The export (resolved as lookup does) may only be used over TLS. @default never */
  tlsOnly?(name: string): boolean;
}

/**
 * The spec's server modes, fixed for a connection's lifetime. `off`: STARTTLS is refused
 * (NBD_REP_ERR_POLICY). `forced`: before TLS every option but STARTTLS and ABORT gets
 * NBD_REP_ERR_TLS_REQD and EXPORT_NAME closes. `selective`: plaintext options work, but a
 * TLS-only export is left out of LIST and refused with NBD_REP_ERR_TLS_REQD until TLS is up.
 */
export type TlsMode = 'off' | 'forced' | 'selective';

/** What the handshake agreed on; the transmission phase runs by it. */
export interface TransmissionParams {
  readonly exportName: string;
  readonly backend: NbdExportBackend;
  readonly transmissionFlags: number;
  readonly structuredReplies: boolean;
  /** base:allocation was selected for this export (BLOCK_STATUS allowed). */
  readonly baseAllocation: boolean;
}

export interface HandshakeIo {
  send(bytes: Buffer): void;
  /** The handshake failed or the client aborted; `protocolError` marks a client bug. */
  close(reason: string, protocolError: boolean): void;
  /** Handshake done; the queue's remaining bytes belong to the transmission phase. */
  transmit(params: TransmissionParams): void;
  /**
   * STARTTLS was acknowledged (the ACK is the last thing sent in plaintext): the owner upgrades
   * the socket and calls `tlsReady()` once the TLS session is up. Bytes already queued were sent
   * in plaintext after STARTTLS and must not be trusted: the owner closes instead.
   */
  startTls(): void;
}

export function transmissionFlagsFor(b: NbdExportBackend, structured: boolean): number {
  const c = b.capabilities;
  const writable = !b.readOnly;
  let f = NBD_FLAG_HAS_FLAGS;
  if (b.readOnly) f |= NBD_FLAG_READ_ONLY;
  if (c.flush) f |= NBD_FLAG_SEND_FLUSH;
  if (c.fua && writable) f |= NBD_FLAG_SEND_FUA;
  if (c.trim && writable) f |= NBD_FLAG_SEND_TRIM;
  if (c.writeZeroes && writable) f |= NBD_FLAG_SEND_WRITE_ZEROES;
  if (c.writeZeroes && c.fastZero && writable) f |= NBD_FLAG_SEND_FAST_ZERO;
  if (structured) f |= NBD_FLAG_SEND_DF;
  if (c.multiConn) f |= NBD_FLAG_CAN_MULTI_CONN;
  if (c.cache) f |= NBD_FLAG_SEND_CACHE;
  return f;
}

/** The 18 bytes a server sends first: NBDMAGIC, IHAVEOPT, handshake flags. */
export function serverGreeting(): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeBigUInt64BE(NBD_MAGIC_INIT, 0);
  b.writeBigUInt64BE(NBD_MAGIC_OPTS, 8);
  b.writeUInt16BE(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES, 16);
  return b;
}

type Phase =
  | { kind: 'client-flags' }
  | { kind: 'option-header' }
  | { kind: 'option-data'; option: number; lengthBytes: number }
  | { kind: 'skip'; option: number; leftBytes: number }
  | { kind: 'tls-wait' }
  | { kind: 'done' };

const KNOWN_CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

export class Handshake {
  private phase: Phase = { kind: 'client-flags' };
  private noZeroes = false;
  private structured = false;
  private options = 0;
  /** The export SET_META_CONTEXT selected base:allocation for, if any. */
  private metaExport: string | undefined;
  /** STARTTLS was acknowledged: everything after it travels inside TLS. */
  private tls = false;

  constructor(
    private readonly queue: ByteQueue,
    private readonly exports: ExportDirectory,
    private readonly io: HandshakeIo,
    private readonly tlsMode: TlsMode = 'off',
  ) {}

  get finished(): boolean {
    return this.phase.kind === 'done';
  }

  /** The owner finished the TLS handshake that `io.startTls` asked for; pump() goes on. */
  tlsReady(): void {
    assert(this.phase.kind === 'tls-wait', 'tlsReady() without an acknowledged STARTTLS');
    this.phase = { kind: 'option-header' };
  }

  /** Consumes as much of the queue as forms whole handshake messages. */
  pump(): void {
    for (;;) {
      const p = this.phase;
      switch (p.kind) {
        case 'done':
        case 'tls-wait':
          return;
        case 'client-flags': {
          if (this.queue.length < 4) return;
          const flags = this.queue.takeContiguous(4).readUInt32BE(0);
          if ((flags & ~KNOWN_CLIENT_FLAGS) !== 0) {
            return this.fail(`unknown client flags 0x${flags.toString(16)}`);
          }
          this.noZeroes = (flags & NBD_FLAG_C_NO_ZEROES) !== 0;
          this.phase = { kind: 'option-header' };
          break;
        }
        case 'option-header': {
          if (this.queue.length < NBD_OPTION_HEADER_BYTES) return;
          const h = this.queue.takeContiguous(NBD_OPTION_HEADER_BYTES);
          if (h.readBigUInt64BE(0) !== NBD_MAGIC_OPTS) return this.fail('bad option magic');
          if (++this.options > NBD_OPTIONS_PER_CONN_MAX) {
            return this.fail(
              `more than ${NBD_OPTIONS_PER_CONN_MAX} options (NBD_OPTIONS_PER_CONN_MAX)`,
            );
          }
          const option = h.readUInt32BE(8);
          const lengthBytes = h.readUInt32BE(12);
          if (lengthBytes > NBD_OPTION_BYTES_MAX) {
            if (option === NBD_OPT_EXPORT_NAME) return this.fail('EXPORT_NAME too long');
            this.phase = { kind: 'skip', option, leftBytes: lengthBytes };
          } else {
            this.phase = { kind: 'option-data', option, lengthBytes };
          }
          break;
        }
        case 'skip': {
          const left = p.leftBytes - this.queue.skip(p.leftBytes);
          if (left > 0) {
            this.phase = { ...p, leftBytes: left };
            return;
          }
          this.phase = { kind: 'option-header' };
          if (this.tlsFirst(p.option)) this.replyTlsRequired(p.option);
          else
            this.reply(
              p.option,
              NBD_REP_ERR_TOO_BIG,
              `option data over ${NBD_OPTION_BYTES_MAX} bytes (NBD_OPTION_BYTES_MAX)`,
            );
          break;
        }
        case 'option-data': {
          if (this.queue.length < p.lengthBytes) return;
          const data = this.queue.takeContiguous(p.lengthBytes);
          this.phase = { kind: 'option-header' };
          this.option(p.option, data);
          break;
        }
        default: {
          const never: never = p;
          return never;
        }
      }
    }
  }

  private fail(reason: string, protocolError = true): void {
    this.phase = { kind: 'done' };
    this.io.close(reason, protocolError);
  }

  private reply(option: number, type: number, message?: string | Buffer): void {
    const data = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    this.io.send(encodeOptionReply(option, type, data));
  }

  /** In FORCEDTLS mode, before TLS, this option is answered NBD_REP_ERR_TLS_REQD. */
  private tlsFirst(option: number): boolean {
    return (
      this.tlsMode === 'forced' &&
      !this.tls &&
      option !== NBD_OPT_STARTTLS &&
      option !== NBD_OPT_ABORT
    );
  }

  /** A TLS-only export named before TLS is up (SELECTIVETLS; FORCEDTLS never gets here). */
  private needsTls(name: string): boolean {
    return !this.tls && this.tlsMode !== 'off' && this.exports.tlsOnly?.(name) === true;
  }

  private replyTlsRequired(option: number): void {
    this.reply(option, NBD_REP_ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first');
  }

  private option(option: number, data: Buffer): void {
    if (this.tlsFirst(option)) {
      // EXPORT_NAME cannot be answered with an error: the spec says close.
      if (option === NBD_OPT_EXPORT_NAME) return this.fail('EXPORT_NAME before STARTTLS');
      return this.replyTlsRequired(option);
    }
    switch (option) {
      case NBD_OPT_STARTTLS:
        return this.startTls(data);
      case NBD_OPT_EXPORT_NAME:
        return this.exportName(data);
      case NBD_OPT_ABORT:
        this.reply(option, NBD_REP_ACK);
        return this.fail('client sent NBD_OPT_ABORT', false);
      case NBD_OPT_LIST:
        return this.list(data);
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return this.infoOrGo(option, data);
      case NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.reply(option, NBD_REP_ERR_INVALID, 'expected no data');
        this.structured = true;
        return this.reply(option, NBD_REP_ACK);
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return this.metaContext(option, data);
      default:
        return this.reply(option, NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private startTls(data: Buffer): void {
    if (this.tlsMode === 'off') {
      return this.reply(NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, 'TLS is not configured here');
    }
    if (this.tls) return this.reply(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, 'TLS is already up');
    if (data.length !== 0) {
      return this.reply(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, 'expected no data');
    }
    this.reply(NBD_OPT_STARTTLS, NBD_REP_ACK);
    // The spec: nothing negotiated in plaintext survives STARTTLS (a MitM could have sent it).
    this.structured = false;
    this.metaExport = undefined;
    this.tls = true;
    this.phase = { kind: 'tls-wait' };
    this.io.startTls();
  }

  private exportName(data: Buffer): void {
    const name = new OptionReader(data).string(data.length, NBD_STRING_BYTES_MAX);
    const backend = name === undefined ? undefined : this.exports.lookup(name);
    // EXPORT_NAME cannot answer with an error: the spec says close.
    if (name === undefined || backend === undefined)
      return this.fail('EXPORT_NAME: unknown export');
    if (this.needsTls(name)) return this.fail('EXPORT_NAME of a TLS-only export before STARTTLS');
    const why = backend.unavailable?.();
    if (why !== undefined) return this.fail(`EXPORT_NAME: ${why}`);
    const flags = transmissionFlagsFor(backend, this.structured);
    const b = Buffer.alloc(this.noZeroes ? 10 : 134);
    writeU64(b, backend.sizeBytes, 0);
    b.writeUInt16BE(flags, 8);
    this.io.send(b);
    this.enter(name, backend, flags);
  }

  private enter(name: string, backend: NbdExportBackend, flags: number): void {
    this.phase = { kind: 'done' };
    this.io.transmit({
      exportName: name,
      backend,
      transmissionFlags: flags,
      structuredReplies: this.structured,
      baseAllocation: this.structured && this.metaExport === name,
    });
  }

  private list(data: Buffer): void {
    if (data.length !== 0) return this.reply(NBD_OPT_LIST, NBD_REP_ERR_INVALID, 'expected no data');
    for (const name of this.exports.names()) {
      // SELECTIVETLS: a TLS-only export is not even named to a plaintext client.
      if (this.needsTls(name)) continue;
      const desc = this.exports.lookup(name)?.description ?? '';
      const n = Buffer.from(name, 'utf8');
      const d = Buffer.from(desc, 'utf8');
      const b = Buffer.allocUnsafe(4 + n.length + d.length);
      b.writeUInt32BE(n.length, 0);
      n.copy(b, 4);
      d.copy(b, 4 + n.length);
      this.reply(NBD_OPT_LIST, NBD_REP_SERVER, b);
    }
    this.reply(NBD_OPT_LIST, NBD_REP_ACK);
  }

  private infoOrGo(option: number, data: Buffer): void {
    const r = new OptionReader(data);
    const nameLen = r.u32();
    const name = nameLen === undefined ? undefined : r.string(nameLen, NBD_STRING_BYTES_MAX);
    const count = r.u16();
    if (name === undefined || count === undefined || r.remaining !== count * 2) {
      return this.reply(option, NBD_REP_ERR_INVALID, 'malformed INFO/GO request');
    }
    const requests: number[] = [];
    for (let i = 0; i < count; i++) requests.push(r.u16() ?? 0);
    const backend = this.exports.lookup(name);
    if (backend === undefined) {
      return this.reply(option, NBD_REP_ERR_UNKNOWN, `no export named "${name}"`);
    }
    if (this.needsTls(name)) return this.replyTlsRequired(option);
    const why = option === NBD_OPT_GO ? backend.unavailable?.() : undefined;
    if (why !== undefined) return this.reply(option, NBD_REP_ERR_UNKNOWN, why);
    const flags = transmissionFlagsFor(backend, this.structured);
    const exp = Buffer.allocUnsafe(12);
    exp.writeUInt16BE(NBD_INFO_EXPORT, 0);
    writeU64(exp, backend.sizeBytes, 2);
    exp.writeUInt16BE(flags, 10);
    this.reply(option, NBD_REP_INFO, exp);
    if (requests.includes(NBD_INFO_NAME)) {
      const n = Buffer.from(name, 'utf8');
      const b = Buffer.allocUnsafe(2 + n.length);
      b.writeUInt16BE(NBD_INFO_NAME, 0);
      n.copy(b, 2);
      this.reply(option, NBD_REP_INFO, b);
    }
    if (requests.includes(NBD_INFO_DESCRIPTION) && backend.description !== undefined) {
      const d = Buffer.from(backend.description, 'utf8');
      const b = Buffer.allocUnsafe(2 + d.length);
      b.writeUInt16BE(NBD_INFO_DESCRIPTION, 0);
      d.copy(b, 2);
      this.reply(option, NBD_REP_INFO, b);
    }
    // Block sizes go out even unrequested (the spec allows it) so clients learn the alignment.
    const bs = Buffer.allocUnsafe(14);
    bs.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
    bs.writeUInt32BE(backend.blockSizes.minimumBytes, 2);
    bs.writeUInt32BE(backend.blockSizes.preferredBytes, 6);
    bs.writeUInt32BE(backend.blockSizes.maximumBytes, 10);
    this.reply(option, NBD_REP_INFO, bs);
    this.reply(option, NBD_REP_ACK);
    if (option === NBD_OPT_GO) this.enter(name, backend, flags);
  }

  private metaContext(option: number, data: Buffer): void {
    if (!this.structured) {
      return this.reply(option, NBD_REP_ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
    }
    const r = new OptionReader(data);
    const nameLen = r.u32();
    const name = nameLen === undefined ? undefined : r.string(nameLen, NBD_STRING_BYTES_MAX);
    const count = r.u32();
    const queries: string[] = [];
    for (let i = 0; count !== undefined && i < count; i++) {
      const len = r.u32();
      const q = len === undefined ? undefined : r.string(len, NBD_STRING_BYTES_MAX);
      if (q === undefined) break;
      queries.push(q);
    }
    if (
      name === undefined ||
      count === undefined ||
      queries.length !== count ||
      r.remaining !== 0
    ) {
      return this.reply(option, NBD_REP_ERR_INVALID, 'malformed meta context request');
    }
    if (this.exports.lookup(name) === undefined) {
      return this.reply(option, NBD_REP_ERR_UNKNOWN, `no export named "${name}"`);
    }
    if (this.needsTls(name)) return this.replyTlsRequired(option);
    const list = option === NBD_OPT_LIST_META_CONTEXT;
    // LIST with no query, or the bare namespace, means every context we have.
    const selected =
      queries.some((q) => q === BASE_ALLOCATION || (list && q === 'base:')) ||
      (list && queries.length === 0);
    if (!list) this.metaExport = selected ? name : undefined;
    if (selected) {
      const n = Buffer.from(BASE_ALLOCATION, 'utf8');
      const b = Buffer.allocUnsafe(4 + n.length);
      b.writeUInt32BE(list ? 0 : BASE_ALLOCATION_CONTEXT_ID, 0);
      n.copy(b, 4);
      this.reply(option, NBD_REP_META_CONTEXT, b);
    }
    this.reply(option, NBD_REP_ACK);
  }
}
