// A small NBD client (fixed newstyle, STARTTLS, OPT_GO, simple and structured replies, pipelined
// commands) that the demo, the end-to-end tests and the benchmarks use to drive exports.
// Invariant: every issued command settles exactly once: by its reply, or by the connection's
// end (ConnectionError), or by a protocol violation from the server (ProtocolError).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ConnectionError, NbdCommandError, ProtocolError } from '../util/errors.js';
import { ByteQueue } from './byte-queue.js';
import {
  BASE_ALLOCATION,
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_MAGIC_INIT,
  NBD_MAGIC_OPTION_REPLY,
  NBD_MAGIC_OPTS,
  NBD_MAGIC_SIMPLE_REPLY,
  NBD_MAGIC_STRUCTURED_REPLY,
  NBD_OPT_ABORT,
  NBD_OPT_GO,
  NBD_OPT_LIST,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  encodeOption,
  encodeRequest,
  encodeString32,
  readU64,
} from './protocol.js';
import type { NbdBlockSizes, NbdExtent, NbdListenerSpec } from './types.js';

export interface NbdClientOptions {
  readonly listener: NbdListenerSpec;
  /** @default "" (the default export) */
  readonly exportName?: string;
  /** Negotiate structured replies. @default true */
  readonly structuredReplies?: boolean;
  /** Select base:allocation (needs structured replies). @default true */
  readonly baseAllocation?: boolean;
  /** Upgrade to TLS first (NBD_OPT_STARTTLS); any refusal fails the connect. @default plaintext */
  readonly tls?: NbdClientTls;
  readonly signal?: AbortSignal;
}

/** PEM credentials of a TLS client. The server's certificate must name the listener's host. */
export interface NbdClientTls {
  /** The CA(s) the server's certificate must chain to. */
  readonly ca: string | Buffer;
  /** This client's certificate and key, for servers that check clients (Tandem's do). */
  readonly certificate?: string | Buffer;
  readonly privateKey?: string | Buffer;
}

export interface NbdExportListing {
  readonly name: string;
  readonly description: string;
}

interface Pending {
  readonly type: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  data: Buffer | undefined;
  extents: NbdExtent[] | undefined;
  errno: number;
  message: string;
  resolve(p: Pending): void;
  reject(e: Error): void;
}

/** Sequential reads during the handshake: resolves when `n` bytes have arrived. */
class Reader {
  readonly queue = new ByteQueue();
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failed: Error | undefined;

  push(b: Buffer): void {
    this.queue.push(b);
    this.check();
  }

  fail(e: Error): void {
    this.failed ??= e;
    const w = this.want;
    this.want = undefined;
    w?.reject(e);
  }

  read(n: number): Promise<Buffer> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.check();
    });
  }

  private check(): void {
    const w = this.want;
    if (w === undefined || this.queue.length < w.n) return;
    this.want = undefined;
    w.resolve(Buffer.from(this.queue.takeContiguous(w.n)));
  }
}

async function openSocket(spec: NbdListenerSpec, signal: AbortSignal | undefined): Promise<Socket> {
  const s =
    spec.kind === 'tcp'
      ? netConnect({ host: spec.host, port: spec.port, noDelay: true })
      : netConnect({ path: spec.path });
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      s.destroy();
      reject(new ConnectionError('connect aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    s.once('connect', () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    s.once('error', (e) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new ConnectionError(`cannot connect to NBD server: ${e.message}`, { cause: e }));
    });
  });
  s.setNoDelay(true);
  return s;
}

async function greet(r: Reader, s: Socket): Promise<void> {
  const g = await r.read(18);
  if (g.readBigUInt64BE(0) !== NBD_MAGIC_INIT || g.readBigUInt64BE(8) !== NBD_MAGIC_OPTS) {
    throw new ProtocolError('not a newstyle NBD server');
  }
  const flags = g.readUInt16BE(16);
  if ((flags & NBD_FLAG_FIXED_NEWSTYLE) === 0)
    throw new ProtocolError('server is not fixed newstyle');
  let cflags = NBD_FLAG_C_FIXED_NEWSTYLE;
  if ((flags & NBD_FLAG_NO_ZEROES) !== 0) cflags |= NBD_FLAG_C_NO_ZEROES;
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(cflags, 0);
  s.write(b);
}

/**
 * STARTTLS, then the TLS handshake on the same socket; the reader is fed from the TLS socket
 * from then on. A server that does not ACK, or whose certificate does not verify, fails it.
 */
async function startTls(
  s: Socket,
  r: Reader,
  o: NbdClientTls,
  spec: NbdListenerSpec,
): Promise<Socket> {
  s.write(encodeOption(NBD_OPT_STARTTLS));
  const rep = await optionReply(r, NBD_OPT_STARTTLS);
  if (rep.type !== NBD_REP_ACK) throw optionError('NBD_OPT_STARTTLS', rep);
  if (r.queue.length > 0) throw new ProtocolError('server sent data behind its STARTTLS reply');
  s.removeAllListeners('data');
  s.removeAllListeners('close');
  const t = tlsConnect({
    socket: s,
    host: spec.kind === 'tcp' ? spec.host : 'localhost',
    ca: o.ca,
    ...(o.certificate !== undefined ? { cert: o.certificate } : {}),
    ...(o.privateKey !== undefined ? { key: o.privateKey } : {}),
  });
  t.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    t.once('secureConnect', resolve);
    t.once('error', (e: Error) =>
      reject(new ConnectionError(`TLS with the NBD server failed: ${e.message}`, { cause: e })),
    );
    t.once('close', () => reject(new ConnectionError('server closed during the TLS handshake')));
  });
  t.removeAllListeners('close');
  t.on('data', (b: Buffer) => r.push(b));
  return t;
}

interface OptionReply {
  readonly type: number;
  readonly data: Buffer;
}

async function optionReply(r: Reader, option: number): Promise<OptionReply> {
  const h = await r.read(20);
  if (h.readBigUInt64BE(0) !== NBD_MAGIC_OPTION_REPLY || h.readUInt32BE(8) !== option) {
    throw new ProtocolError(`bad option reply for option ${option}`);
  }
  const type = h.readUInt32BE(12);
  const len = h.readUInt32BE(16);
  if (len > 16 * 1024 * 1024) throw new ProtocolError('option reply too long');
  const data = len > 0 ? await r.read(len) : Buffer.alloc(0);
  return { type, data };
}

function optionError(option: string, rep: OptionReply): ProtocolError {
  const msg = rep.data.toString('utf8');
  return new ProtocolError(
    `${option} refused (reply 0x${rep.type.toString(16)})${msg ? `: ${msg}` : ''}`,
  );
}

export class NbdClient {
  private readonly pending = new Map<number, Pending>();
  private nextHandle = 1;
  private closedError: Error | undefined;
  private readonly queue: ByteQueue;
  private closeWaiters: (() => void)[] = [];
  private readonly scratch = Buffer.allocUnsafe(20);
  private idleWaiters: (() => void)[] = [];
  private rx:
    | { kind: 'header' }
    | { kind: 'simple-data'; handle: number; p: Pending }
    | {
        kind: 'chunk';
        handle: number;
        p: Pending;
        flags: number;
        type: number;
        lengthBytes: number;
      } = {
    kind: 'header',
  };

  private constructor(
    private readonly socket: Socket,
    reader: Reader,
    readonly sizeBytes: number,
    readonly transmissionFlags: number,
    readonly blockSizes: NbdBlockSizes | undefined,
    readonly structuredReplies: boolean,
    readonly baseAllocation: boolean,
  ) {
    this.queue = reader.queue;
    socket.removeAllListeners('data');
    socket.removeAllListeners('close');
    socket.on('close', () => this.fail(new ConnectionError('NBD connection closed')));
    socket.on('data', (b: Buffer) => {
      this.queue.push(b);
      this.parse();
    });
    this.parse();
  }

  /** Lists the server's exports (NBD_OPT_LIST), then aborts the handshake. */
  static async list(
    listener: NbdListenerSpec,
    signal?: AbortSignal,
    tls?: NbdClientTls,
  ): Promise<NbdExportListing[]> {
    let s = await openSocket(listener, signal);
    const r = new Reader();
    s.on('data', (b: Buffer) => r.push(b));
    s.on('close', () => r.fail(new ConnectionError('server closed the connection')));
    s.on('error', () => undefined);
    try {
      await greet(r, s);
      if (tls !== undefined) {
        s = await startTls(s, r, tls, listener);
        s.on('close', () => r.fail(new ConnectionError('server closed the connection')));
      }
      s.write(encodeOption(NBD_OPT_LIST));
      const out: NbdExportListing[] = [];
      for (;;) {
        const rep = await optionReply(r, NBD_OPT_LIST);
        if (rep.type === NBD_REP_ACK) break;
        if (rep.type !== NBD_REP_SERVER) throw optionError('NBD_OPT_LIST', rep);
        const n = rep.data.readUInt32BE(0);
        out.push({
          name: rep.data.subarray(4, 4 + n).toString('utf8'),
          description: rep.data.subarray(4 + n).toString('utf8'),
        });
      }
      s.write(encodeOption(NBD_OPT_ABORT));
      return out;
    } finally {
      s.end();
    }
  }

  static async connect(opts: NbdClientOptions): Promise<NbdClient> {
    let s = await openSocket(opts.listener, opts.signal);
    const r = new Reader();
    s.on('data', (b: Buffer) => r.push(b));
    const onClose = (): void =>
      r.fail(new ConnectionError('server closed the connection during the handshake'));
    s.on('close', onClose);
    s.on('error', () => undefined);
    try {
      await greet(r, s);
      if (opts.tls !== undefined) {
        s = await startTls(s, r, opts.tls, opts.listener);
        s.on('close', onClose);
      }
      const name = opts.exportName ?? '';
      let structured = false;
      if (opts.structuredReplies ?? true) {
        s.write(encodeOption(NBD_OPT_STRUCTURED_REPLY));
        const rep = await optionReply(r, NBD_OPT_STRUCTURED_REPLY);
        structured = rep.type === NBD_REP_ACK;
      }
      let baseAllocation = false;
      if (structured && (opts.baseAllocation ?? true)) {
        const data = Buffer.concat([encodeString32(name), u32(1), encodeString32(BASE_ALLOCATION)]);
        s.write(encodeOption(NBD_OPT_SET_META_CONTEXT, data));
        for (;;) {
          const rep = await optionReply(r, NBD_OPT_SET_META_CONTEXT);
          if (rep.type === NBD_REP_META_CONTEXT) baseAllocation = true;
          else if (rep.type === NBD_REP_ACK) break;
          else throw optionError('NBD_OPT_SET_META_CONTEXT', rep);
        }
      }
      const req = Buffer.allocUnsafe(2 + 2);
      req.writeUInt16BE(1, 0);
      req.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 2);
      s.write(encodeOption(NBD_OPT_GO, Buffer.concat([encodeString32(name), req])));
      let size: number | undefined;
      let flags = 0;
      let blockSizes: NbdBlockSizes | undefined;
      for (;;) {
        const rep = await optionReply(r, NBD_OPT_GO);
        if (rep.type === NBD_REP_ACK) break;
        if (rep.type !== NBD_REP_INFO) throw optionError('NBD_OPT_GO', rep);
        if (rep.data.length < 2) throw new ProtocolError('short NBD_REP_INFO');
        const info = rep.data.readUInt16BE(0);
        if (info === NBD_INFO_EXPORT && rep.data.length >= 12) {
          size = readU64(rep.data, 2);
          flags = rep.data.readUInt16BE(10);
        } else if (info === NBD_INFO_BLOCK_SIZE && rep.data.length >= 14) {
          blockSizes = {
            minimumBytes: rep.data.readUInt32BE(2),
            preferredBytes: rep.data.readUInt32BE(6),
            maximumBytes: rep.data.readUInt32BE(10),
          };
        }
      }
      if (size === undefined)
        throw new ProtocolError('NBD_OPT_GO succeeded without NBD_INFO_EXPORT');
      return new NbdClient(s, r, size, flags, blockSizes, structured, baseAllocation);
    } catch (e) {
      s.destroy();
      throw e;
    }
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.issue(NBD_CMD_READ, 0, offsetBytes, lengthBytes).then(
      (p) => p.data ?? Buffer.alloc(0),
    );
  }

  async write(offsetBytes: number, data: Uint8Array, opts: { fua?: boolean } = {}): Promise<void> {
    await this.issue(
      NBD_CMD_WRITE,
      opts.fua === true ? NBD_CMD_FLAG_FUA : 0,
      offsetBytes,
      data.length,
      data,
    );
  }

  async flush(): Promise<void> {
    await this.issue(NBD_CMD_FLUSH, 0, 0, 0);
  }

  async trim(
    offsetBytes: number,
    lengthBytes: number,
    opts: { fua?: boolean } = {},
  ): Promise<void> {
    await this.issue(
      NBD_CMD_TRIM,
      opts.fua === true ? NBD_CMD_FLAG_FUA : 0,
      offsetBytes,
      lengthBytes,
    );
  }

  async writeZeroes(
    offsetBytes: number,
    lengthBytes: number,
    opts: { fua?: boolean; noHole?: boolean; fastZero?: boolean } = {},
  ): Promise<void> {
    const f =
      (opts.fua === true ? NBD_CMD_FLAG_FUA : 0) |
      (opts.noHole === true ? NBD_CMD_FLAG_NO_HOLE : 0) |
      (opts.fastZero === true ? NBD_CMD_FLAG_FAST_ZERO : 0);
    await this.issue(NBD_CMD_WRITE_ZEROES, f, offsetBytes, lengthBytes);
  }

  async cache(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.issue(NBD_CMD_CACHE, 0, offsetBytes, lengthBytes);
  }

  async blockStatus(
    offsetBytes: number,
    lengthBytes: number,
    opts: { reqOne?: boolean } = {},
  ): Promise<NbdExtent[]> {
    const p = await this.issue(
      NBD_CMD_BLOCK_STATUS,
      opts.reqOne === true ? NBD_CMD_FLAG_REQ_ONE : 0,
      offsetBytes,
      lengthBytes,
    );
    return p.extents ?? [];
  }

  /**
   * Sends any request as given (for protocol tests: unknown commands, bad flags); resolves
   * with the NBD error value (0 on success) instead of rejecting.
   */
  async raw(
    type: number,
    flags: number,
    offsetBytes: number,
    lengthBytes: number,
    payload?: Uint8Array,
  ): Promise<number> {
    try {
      await this.issue(type, flags, offsetBytes, lengthBytes, payload);
      return 0;
    } catch (e) {
      if (e instanceof NbdCommandError) return e.nbdErrno;
      throw e;
    }
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Soft disconnect: waits for in-flight commands, sends NBD_CMD_DISC, waits for the close. */
  async disconnect(): Promise<void> {
    if (this.closedError !== undefined) return;
    while (this.pending.size > 0 && this.closedError === undefined) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
    if (this.closedError !== undefined) return;
    this.socket.write(
      encodeRequest({
        flags: 0,
        type: NBD_CMD_DISC,
        handleHi: 0,
        handleLo: 0,
        offsetBytes: 0,
        lengthBytes: 0,
      }),
    );
    this.socket.end();
    await this.closed();
  }

  /** Hard disconnect; in-flight commands reject. */
  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves when the connection is gone. */
  closed(): Promise<void> {
    if (this.closedError !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  private fail(e: Error): void {
    if (this.closedError === undefined) this.closedError = e;
    const ps = [...this.pending.values()];
    this.pending.clear();
    for (const p of ps) p.reject(e);
    this.socket.destroy();
    const w = this.closeWaiters;
    this.closeWaiters = [];
    for (const f of w) f();
    this.wakeIdle();
  }

  private wakeIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  private issue(
    type: number,
    flags: number,
    offsetBytes: number,
    lengthBytes: number,
    payload?: Uint8Array,
  ): Promise<Pending> {
    if (this.closedError !== undefined) return Promise.reject(this.closedError);
    const handle = this.nextHandle;
    this.nextHandle = this.nextHandle >= 0xffff_ffff ? 1 : this.nextHandle + 1;
    return new Promise((resolve, reject) => {
      this.pending.set(handle, {
        type,
        offsetBytes,
        lengthBytes,
        data: undefined,
        extents: undefined,
        errno: 0,
        message: '',
        resolve,
        reject,
      });
      const h = encodeRequest({
        flags,
        type,
        handleHi: 0,
        handleLo: handle,
        offsetBytes,
        lengthBytes,
      });
      if (payload !== undefined && payload.length > 0) {
        this.socket.cork();
        this.socket.write(h);
        this.socket.write(payload);
        this.socket.uncork();
      } else {
        this.socket.write(h);
      }
    });
  }

  private parse(): void {
    try {
      while (this.parseOne());
    } catch (e) {
      this.fail(e instanceof Error ? e : new ProtocolError(String(e)));
    }
  }

  /** Parses one reply (or chunk) if it has fully arrived; false when more bytes are needed. */
  private parseOne(): boolean {
    const q = this.queue;
    const st = this.rx;
    if (st.kind === 'simple-data') {
      if (q.length < st.p.lengthBytes) return false;
      st.p.data = Buffer.from(q.takeContiguous(st.p.lengthBytes));
      this.rx = { kind: 'header' };
      this.settle(st.handle, st.p);
      return true;
    }
    if (st.kind === 'chunk') {
      if (q.length < st.lengthBytes) return false;
      const payload = Buffer.from(q.takeContiguous(st.lengthBytes));
      this.rx = { kind: 'header' };
      this.chunk(st.p, st.type, payload);
      if ((st.flags & NBD_REPLY_FLAG_DONE) !== 0) this.settle(st.handle, st.p);
      return true;
    }
    if (q.length < 4) return false;
    const magic = q.peekU32();
    if (magic === NBD_MAGIC_SIMPLE_REPLY) {
      if (q.length < 16) return false;
      const h = q.takeContiguous(16, this.scratch);
      const errno = h.readUInt32BE(4);
      const handle = h.readUInt32BE(12);
      const p = this.pending.get(handle);
      if (p === undefined) throw new ProtocolError(`reply for unknown handle ${handle}`);
      p.errno = errno;
      if (p.type === NBD_CMD_READ && errno === 0 && p.lengthBytes > 0) {
        this.rx = { kind: 'simple-data', handle, p };
      } else {
        this.settle(handle, p);
      }
      return true;
    }
    if (magic === NBD_MAGIC_STRUCTURED_REPLY) {
      if (q.length < 20) return false;
      const h = q.takeContiguous(20, this.scratch);
      const handle = h.readUInt32BE(12);
      const p = this.pending.get(handle);
      if (p === undefined) throw new ProtocolError(`reply chunk for unknown handle ${handle}`);
      this.rx = {
        kind: 'chunk',
        handle,
        p,
        flags: h.readUInt16BE(4),
        type: h.readUInt16BE(6),
        lengthBytes: h.readUInt32BE(16),
      };
      return true;
    }
    throw new ProtocolError(`bad reply magic 0x${magic.toString(16)}`);
  }

  private chunk(p: Pending, type: number, b: Buffer): void {
    switch (type) {
      case NBD_REPLY_TYPE_NONE:
        return;
      case NBD_REPLY_TYPE_OFFSET_DATA: {
        const off = readU64(b, 0) - p.offsetBytes;
        const data = b.subarray(8);
        if (off < 0 || off + data.length > p.lengthBytes)
          throw new ProtocolError('OFFSET_DATA outside the request');
        p.data ??= Buffer.alloc(p.lengthBytes);
        data.copy(p.data, off);
        return;
      }
      case NBD_REPLY_TYPE_OFFSET_HOLE: {
        p.data ??= Buffer.alloc(p.lengthBytes);
        const off = readU64(b, 0) - p.offsetBytes;
        const n = b.readUInt32BE(8);
        if (off < 0 || off + n > p.lengthBytes)
          throw new ProtocolError('OFFSET_HOLE outside the request');
        p.data.fill(0, off, off + n);
        return;
      }
      case NBD_REPLY_TYPE_BLOCK_STATUS: {
        const ext: NbdExtent[] = [];
        for (let i = 4; i + 8 <= b.length; i += 8) {
          const st = b.readUInt32BE(i + 4);
          ext.push({
            lengthBytes: b.readUInt32BE(i),
            hole: (st & NBD_STATE_HOLE) !== 0,
            zero: (st & NBD_STATE_ZERO) !== 0,
          });
        }
        p.extents = ext;
        return;
      }
      default:
        if ((type & 0x8000) !== 0 && b.length >= 6) {
          p.errno = b.readUInt32BE(0) || 5;
          const n = b.readUInt16BE(4);
          p.message = b.subarray(6, 6 + n).toString('utf8');
          return;
        }
        throw new ProtocolError(`unknown reply chunk type ${type}`);
    }
  }

  private settle(handle: number, p: Pending): void {
    this.pending.delete(handle);
    if (this.pending.size === 0) this.wakeIdle();
    if (p.errno !== 0) {
      p.reject(
        new NbdCommandError(
          `NBD command ${p.type} failed with error ${p.errno}${p.message ? `: ${p.message}` : ''}`,
          p.errno,
        ),
      );
    } else {
      if (p.type === NBD_CMD_READ) p.data ??= Buffer.alloc(p.lengthBytes);
      p.resolve(p);
    }
  }
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}
