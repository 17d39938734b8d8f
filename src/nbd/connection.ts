// One NBD client connection: handshake, then pipelined requests with replies in completion
// order. Invariants: at most NBD_CONN_REQUESTS_IN_FLIGHT_MAX requests and
// NBD_CONN_IN_FLIGHT_BYTES_MAX payload bytes are held (reading pauses beyond that); every
// request but DISC gets exactly one reply (one simple reply or chunks ending in DONE); bad
// input gets the spec's error or closes this connection only, never throws out of here. After
// STARTTLS the owner swaps the wire for the TLS socket; nothing read in plaintext after the
// STARTTLS option is ever used.
import {
  NBD_BLOCK_STATUS_EXTENTS_MAX,
  NBD_CONN_IN_FLIGHT_BYTES_MAX,
  NBD_CONN_REQUESTS_IN_FLIGHT_MAX,
  NBD_PAYLOAD_BYTES_MAX,
} from '../limits.js';
import { DiskIoError, InvalidRequestError, NbdCommandError } from '../util/errors.js';
import { errnoOf as errnoFromError } from '../util/errno.js';
import { assert } from '../util/assert.js';
import { ByteQueue } from './byte-queue.js';
import { ReadBuffers } from './read-buffers.js';
import {
  BASE_ALLOCATION_CONTEXT_ID,
  Handshake,
  type ExportDirectory,
  type TlsMode,
  type TransmissionParams,
} from './handshake.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ERROR_OF,
  NBD_ESHUTDOWN,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REQUEST_BYTES,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  commandName,
  decodeRequest,
  encodeChunkHeader,
  encodeErrorChunk,
  encodeSimpleReply,
  writeU64,
  type NbdRequest,
} from './protocol.js';
import type { NbdExtent } from './types.js';

/** The socket as this connection uses it (net.Socket and tls.TLSSocket satisfy it; tests may fake it). */
export interface NbdWire {
  /** `done` runs once the bytes are written to the kernel, or the write failed. */
  write(b: Buffer, done?: (err?: Error | null) => void): boolean;
  cork(): void;
  uncork(): void;
  pause(): unknown;
  resume(): unknown;
  end(): unknown;
  destroy(): unknown;
  readonly writableNeedDrain: boolean;
}

export interface ConnectionHooks {
  /** The connection is gone (closed by either side); called once. */
  closed(reason: string): void;
  entered(exportName: string): void;
  protocolError(message: string): void;
  /** We ended our side; the owner should drop the socket if the client never closes its own. */
  ending(): void;
  /** Runs fn on a later turn of the loop (setImmediate); injected for reply coalescing. */
  defer(fn: () => void): void;
  /**
   * STARTTLS was acknowledged and the ACK written: upgrade the socket (stop delivering its
   * plaintext bytes here), then call `tlsEstablished` with the TLS socket. Needed unless the
   * connection's TLS mode is `off`.
   */
  startTls?(): void;
}

type ReadState =
  | { kind: 'handshake' }
  | { kind: 'header' }
  | { kind: 'payload'; req: NbdRequest }
  | { kind: 'discard'; req: NbdRequest; leftBytes: number }
  | { kind: 'stopped' };

class RequestRefused {
  constructor(
    readonly errno: number,
    readonly message: string,
  ) {}
}

export class NbdConnection {
  private readonly queue = new ByteQueue();
  private readonly handshake: Handshake;
  private readonly scratch = Buffer.allocUnsafe(NBD_REQUEST_BYTES);
  private state: ReadState = { kind: 'handshake' };
  private params: TransmissionParams | undefined;
  private inFlight = 0;
  private inFlightBytes = 0;
  private readPaused = false;
  private replies: Buffer[] = [];
  /** Queued replies that are this connection's read buffers: given back once written. */
  private readonly lent = new Set<Buffer>();
  private readonly readBuffers = new ReadBuffers();
  private flushScheduled = false;
  /** A reply went out directly in this turn of the event loop (see sendSoon). */
  private wroteThisTurn = false;
  private closing = false; // DISC, shutdown or a protocol error: finish in-flight, then end
  private closed = false;
  private shuttingDown = false;

  constructor(
    private wire: NbdWire,
    exports: ExportDirectory,
    private readonly hooks: ConnectionHooks,
    tlsMode: TlsMode = 'off',
  ) {
    this.handshake = new Handshake(
      this.queue,
      exports,
      {
        send: (b) => this.send(b),
        close: (reason, isProtocolError) => {
          if (isProtocolError) this.hooks.protocolError(reason);
          this.finish(reason);
        },
        transmit: (p) => {
          this.params = p;
          this.state = { kind: 'header' };
          this.hooks.entered(p.exportName);
        },
        startTls: () => this.startTls(),
      },
      tlsMode,
    );
  }

  private startTls(): void {
    assert(this.hooks.startTls !== undefined, 'a TLS mode without a startTls hook');
    // The ACK is the last plaintext we send; it must leave before the TLS handshake does.
    this.flushReplies();
    if (this.queue.length > 0) {
      // Bytes behind STARTTLS, sent before its reply, came in plaintext: honouring them would
      // let anyone on the path inject options into the TLS session (the STARTTLS injection bug).
      this.hooks.protocolError('data after NBD_OPT_STARTTLS before its reply');
      this.queue.clear();
      return this.finish('data after NBD_OPT_STARTTLS');
    }
    this.tlsPending = true;
    this.hooks.startTls();
  }

  /** STARTTLS asked the owner to upgrade; the plaintext socket must not deliver here. */
  private tlsPending = false;

  /** The TLS session is up on `wire`: every later byte in or out goes through it. */
  tlsEstablished(wire: NbdWire): void {
    if (this.closed || this.closing) return;
    assert(this.tlsPending, 'tlsEstablished() without STARTTLS');
    this.tlsPending = false;
    this.wire = wire;
    this.handshake.tlsReady();
    this.pump();
  }

  get inTransmission(): boolean {
    return this.params !== undefined;
  }

  get requestsInFlight(): number {
    return this.inFlight;
  }

  onData(chunk: Buffer): void {
    if (this.closed || this.state.kind === 'stopped') return;
    // The owner stops plaintext delivery at STARTTLS; should a chunk slip through, drop it.
    if (this.tlsPending) return;
    this.queue.push(chunk);
    this.pump();
  }

  onDrain(): void {
    this.maybeResume();
  }

  /** The socket closed (client vanished or we ended it). */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.state = { kind: 'stopped' };
    this.queue.clear();
    this.replies = [];
    this.hooks.closed(this.closing ? 'closed' : 'client went away');
  }

  /** Graceful stop: refuse new requests with ESHUTDOWN, finish in-flight ones, then end. */
  shutdown(): void {
    if (this.closed) return;
    if (this.params === undefined) return this.finish('server shutting down');
    this.shuttingDown = true;
    this.maybeEnd();
  }

  private pump(): void {
    try {
      this.pumpUnsafe();
    } catch (e) {
      // Only our own bugs land here; drop this client, not the daemon.
      this.hooks.protocolError(`internal error: ${String(e)}`);
      this.finish('internal error');
      this.wire.destroy();
    }
  }

  private pumpUnsafe(): void {
    for (;;) {
      if (this.closed || this.closing) return;
      const s = this.state;
      switch (s.kind) {
        case 'stopped':
          return;
        case 'handshake':
          this.handshake.pump();
          if (this.state.kind === 'handshake') return;
          break;
        case 'header': {
          if (this.overLimits()) return this.pauseReading();
          if (this.queue.length < NBD_REQUEST_BYTES) return;
          const d = decodeRequest(this.queue.takeContiguous(NBD_REQUEST_BYTES, this.scratch));
          if (!d.ok) {
            this.hooks.protocolError(`bad request magic 0x${d.magic.toString(16)}`);
            return this.stopReading('bad request magic');
          }
          const req = d.request;
          if (req.type === NBD_CMD_WRITE) {
            this.state =
              req.lengthBytes > NBD_PAYLOAD_BYTES_MAX
                ? { kind: 'discard', req, leftBytes: req.lengthBytes }
                : { kind: 'payload', req };
          } else if (req.type === NBD_CMD_DISC) {
            return this.stopReading('client sent NBD_CMD_DISC');
          } else {
            this.dispatch(req, undefined);
          }
          break;
        }
        case 'payload': {
          if (this.queue.length < s.req.lengthBytes) return;
          this.state = { kind: 'header' };
          this.dispatch(s.req, this.queue.takeSlices(s.req.lengthBytes));
          break;
        }
        case 'discard': {
          const left = s.leftBytes - this.queue.skip(s.leftBytes);
          if (left > 0) {
            this.state = { ...s, leftBytes: left };
            return;
          }
          this.state = { kind: 'header' };
          this.replyError(
            s.req,
            NBD_EOVERFLOW,
            `WRITE of ${s.req.lengthBytes} bytes is over NBD_PAYLOAD_BYTES_MAX (${NBD_PAYLOAD_BYTES_MAX})`,
          );
          break;
        }
        default: {
          const never: never = s;
          return never;
        }
      }
    }
  }

  private overLimits(): boolean {
    return (
      this.inFlight >= NBD_CONN_REQUESTS_IN_FLIGHT_MAX ||
      this.inFlightBytes >= NBD_CONN_IN_FLIGHT_BYTES_MAX ||
      this.wire.writableNeedDrain ||
      this.backendSaturated()
    );
  }

  /**
   * The backend has no room (its admission says so): stop reading until it calls back. The
   * callback is registered once per wait; a request completing on this connection also
   * re-checks, so a missed callback cannot stall it while it has requests in flight.
   */
  private backendSaturated(): boolean {
    const a = this.params?.backend.admission;
    if (a === undefined || !a.saturated()) return false;
    if (!this.awaitingRoom) {
      this.awaitingRoom = true;
      a.onRoom(() => {
        this.awaitingRoom = false;
        this.maybeResume();
      });
    }
    return true;
  }

  private awaitingRoom = false;

  private pauseReading(): void {
    if (this.readPaused) return;
    this.readPaused = true;
    this.wire.pause();
  }

  private maybeResume(): void {
    if (this.closed || this.closing) return;
    if (!this.readPaused || this.overLimits()) return;
    this.readPaused = false;
    this.wire.resume();
    this.pump();
  }

  /** No more requests are read; in-flight ones finish, then the connection ends. */
  private stopReading(reason: string): void {
    this.closing = true;
    this.state = { kind: 'stopped' };
    this.queue.clear();
    this.wire.pause();
    this.endReason = reason;
    this.maybeEnd();
  }

  private endReason = '';

  private maybeEnd(): void {
    if (this.shuttingDown && !this.closing) {
      // Requests already decoded finish; anything still arriving is refused by state.
      this.closing = true;
      this.state = { kind: 'stopped' };
      this.queue.clear();
      this.wire.pause();
      this.endReason = 'server shutting down';
    }
    if (this.closing && this.inFlight === 0) this.finish(this.endReason);
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closing = true;
    this.endReason = reason;
    this.state = { kind: 'stopped' };
    if (this.tlsPending) {
      // Mid TLS handshake there is no clean way to say goodbye: the owner's socket goes.
      this.wire.destroy();
      return;
    }
    this.flushReplies();
    this.wire.end();
    this.hooks.ending();
    // Keep reading (and ignoring) so the client's FIN is seen and the socket can close.
    this.wire.resume();
  }

  /** `lent`: `b` is one of readBuffers', back to them once the socket has written it. */
  private send(b: Buffer, lent = false): void {
    if (this.closed) return;
    if (lent) this.lent.add(b);
    this.replies.push(b);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.hooks.defer(() => this.flushReplies());
    }
  }

  /**
   * A one-buffer reply: written at once if it is the first of this turn of the event loop (at
   * queue depth 1 the batch would only add a turn to its latency), else batched like the rest.
   */
  private sendSoon(b: Buffer): void {
    if (this.closed) return;
    if (this.flushScheduled || this.wroteThisTurn) return this.send(b);
    this.wroteThisTurn = true;
    this.hooks.defer(() => {
      this.wroteThisTurn = false;
    });
    this.wire.write(b);
  }

  /** Writes every queued reply in one corked batch (one writev). */
  private flushReplies(): void {
    this.flushScheduled = false;
    if (this.closed || this.replies.length === 0) return;
    const batch = this.replies;
    this.replies = [];
    this.wire.cork();
    for (const b of batch) {
      if (this.lent.delete(b)) this.wire.write(b, () => this.readBuffers.give(b));
      else this.wire.write(b);
    }
    this.wire.uncork();
  }

  private dispatch(req: NbdRequest, payload: Buffer[] | undefined): void {
    const p = this.params;
    if (p === undefined) return;
    if (this.shuttingDown) return this.replyError(req, NBD_ESHUTDOWN, 'server is shutting down');
    const refused = this.validate(req, p);
    if (refused !== undefined) return this.replyError(req, refused.errno, refused.message);
    const cost = req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE ? req.lengthBytes : 0;
    this.inFlight++;
    this.inFlightBytes += cost;
    this.execute(req, p, payload).then(
      () => this.settle(cost),
      (e: unknown) => {
        const [errno, message] = errnoOf(e);
        this.replyError(req, errno, `${commandName(req.type)} failed: ${message}`);
        this.settle(cost);
      },
    );
  }

  private settle(cost: number): void {
    this.inFlight--;
    this.inFlightBytes -= cost;
    if (this.closing || this.shuttingDown) this.maybeEnd();
    else this.maybeResume();
  }

  private validate(req: NbdRequest, p: TransmissionParams): RequestRefused | undefined {
    const b = p.backend;
    const tf = p.transmissionFlags;
    const t = req.type;
    const writes = t === NBD_CMD_WRITE || t === NBD_CMD_TRIM || t === NBD_CMD_WRITE_ZEROES;
    const known =
      writes ||
      t === NBD_CMD_READ ||
      t === NBD_CMD_FLUSH ||
      t === NBD_CMD_CACHE ||
      t === NBD_CMD_BLOCK_STATUS;
    if (!known) return new RequestRefused(NBD_EINVAL, `unknown command ${t}`);
    if (writes && b.readOnly) return new RequestRefused(NBD_EPERM, 'the export is read-only');

    let allowed = (tf & NBD_FLAG_SEND_FUA) !== 0 ? NBD_CMD_FLAG_FUA : 0;
    if (t === NBD_CMD_READ && (tf & NBD_FLAG_SEND_DF) !== 0) allowed |= NBD_CMD_FLAG_DF;
    if (t === NBD_CMD_WRITE_ZEROES) {
      allowed |= NBD_CMD_FLAG_NO_HOLE;
      if ((tf & NBD_FLAG_SEND_FAST_ZERO) !== 0) allowed |= NBD_CMD_FLAG_FAST_ZERO;
    }
    if (t === NBD_CMD_BLOCK_STATUS) allowed |= NBD_CMD_FLAG_REQ_ONE;
    if ((req.flags & ~allowed) !== 0) {
      return new RequestRefused(
        NBD_EINVAL,
        `flags 0x${req.flags.toString(16)} not valid for ${commandName(t)}`,
      );
    }
    const advertised =
      (t === NBD_CMD_FLUSH && (tf & NBD_FLAG_SEND_FLUSH) !== 0) ||
      (t === NBD_CMD_TRIM && (tf & NBD_FLAG_SEND_TRIM) !== 0) ||
      (t === NBD_CMD_WRITE_ZEROES && (tf & NBD_FLAG_SEND_WRITE_ZEROES) !== 0) ||
      (t === NBD_CMD_CACHE && (tf & NBD_FLAG_SEND_CACHE) !== 0) ||
      (t === NBD_CMD_BLOCK_STATUS && p.baseAllocation) ||
      t === NBD_CMD_READ ||
      t === NBD_CMD_WRITE;
    if (!advertised) return new RequestRefused(NBD_EINVAL, `${commandName(t)} was not negotiated`);

    if (t === NBD_CMD_FLUSH) {
      if (req.offsetBytes !== 0 || req.lengthBytes !== 0) {
        return new RequestRefused(NBD_EINVAL, 'FLUSH offset and length must be zero');
      }
      return undefined;
    }
    if (req.lengthBytes === 0)
      return new RequestRefused(NBD_EINVAL, `${commandName(t)} of zero length`);
    if (
      (t === NBD_CMD_READ || t === NBD_CMD_WRITE) &&
      req.lengthBytes > b.blockSizes.maximumBytes
    ) {
      return new RequestRefused(
        NBD_EOVERFLOW,
        `${commandName(t)} of ${req.lengthBytes} bytes is over the maximum block size ${b.blockSizes.maximumBytes}`,
      );
    }
    if (req.offsetBytes + req.lengthBytes > b.sizeBytes) {
      return new RequestRefused(
        writes ? NBD_ENOSPC : NBD_EINVAL,
        `${commandName(t)} at ${req.offsetBytes}+${req.lengthBytes} is beyond the export size ${b.sizeBytes}`,
      );
    }
    const min = b.blockSizes.minimumBytes;
    if (req.offsetBytes % min !== 0 || req.lengthBytes % min !== 0) {
      return new RequestRefused(
        NBD_EINVAL,
        `${commandName(t)} not aligned to the minimum block size ${min}`,
      );
    }
    return undefined;
  }

  private async execute(
    req: NbdRequest,
    p: TransmissionParams,
    payload: Buffer[] | undefined,
  ): Promise<void> {
    const b = p.backend;
    const fua = (req.flags & NBD_CMD_FLAG_FUA) !== 0;
    const off = req.offsetBytes;
    const len = req.lengthBytes;
    switch (req.type) {
      case NBD_CMD_READ: {
        // A failed read keeps its buffer out of the pool: the backend may not be done with it.
        const into = this.readBuffers.take(len);
        const data = await b.read(off, len, into);
        if (data.length !== len)
          throw new DiskIoError(`short read: ${data.length} of ${len}`, off, 'EIO');
        // Answered in our buffer means the read into it finished: reusable once written.
        const lent = into !== undefined && data.buffer === into.buffer && data.byteOffset === 0;
        return this.replyRead(req, data, lent);
      }
      case NBD_CMD_WRITE:
        await b.write(off, payload ?? [], fua);
        return this.replyOk(req);
      case NBD_CMD_FLUSH:
        await b.flush();
        return this.replyOk(req);
      case NBD_CMD_TRIM:
        await b.trim(off, len, fua);
        return this.replyOk(req);
      case NBD_CMD_WRITE_ZEROES:
        await b.writeZeroes(off, len, {
          fua,
          noHole: (req.flags & NBD_CMD_FLAG_NO_HOLE) !== 0,
          fastZero: (req.flags & NBD_CMD_FLAG_FAST_ZERO) !== 0,
        });
        return this.replyOk(req);
      case NBD_CMD_CACHE:
        await b.cache(off, len);
        return this.replyOk(req);
      case NBD_CMD_BLOCK_STATUS: {
        const extents = b.capabilities.blockStatus
          ? await b.blockStatus(off, len)
          : [{ lengthBytes: len, hole: false, zero: false }];
        return this.replyBlockStatus(req, extents);
      }
      default:
        throw new InvalidRequestError(`unknown command ${req.type}`);
    }
  }

  private replyOk(req: NbdRequest): void {
    if (this.params?.structuredReplies === true) {
      this.sendSoon(
        encodeChunkHeader(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, req.handleHi, req.handleLo, 0),
      );
    } else {
      this.sendSoon(encodeSimpleReply(0, req.handleHi, req.handleLo));
    }
  }

  private replyRead(req: NbdRequest, data: Buffer, lent: boolean): void {
    if (this.params?.structuredReplies === true) {
      const h = encodeChunkHeader(
        NBD_REPLY_FLAG_DONE,
        NBD_REPLY_TYPE_OFFSET_DATA,
        req.handleHi,
        req.handleLo,
        8 + data.length,
        8,
      );
      writeU64(h, req.offsetBytes, 20);
      this.send(h);
    } else {
      this.send(encodeSimpleReply(0, req.handleHi, req.handleLo));
    }
    this.send(data, lent);
  }

  private replyError(req: NbdRequest, errno: number, message: string): void {
    if (this.params?.structuredReplies === true) {
      this.send(encodeErrorChunk(errno, message, req.handleHi, req.handleLo));
    } else {
      this.send(encodeSimpleReply(errno, req.handleHi, req.handleLo));
    }
  }

  private replyBlockStatus(req: NbdRequest, extents: readonly NbdExtent[]): void {
    const reqOne = (req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0;
    const max = reqOne ? 1 : NBD_BLOCK_STATUS_EXTENTS_MAX;
    const out: { len: number; flags: number }[] = [];
    let covered = 0;
    for (const e of extents) {
      const len = Math.min(e.lengthBytes, req.lengthBytes - covered);
      if (!(len > 0)) break;
      const flags = (e.hole ? NBD_STATE_HOLE : 0) | (e.zero ? NBD_STATE_ZERO : 0);
      const last = out[out.length - 1];
      if (last !== undefined && last.flags === flags) last.len += len;
      else if (out.length < max) out.push({ len, flags });
      else break;
      covered += len;
    }
    // A backend that reported nothing usable: status 0 ("data") is always a safe answer.
    if (out.length === 0) out.push({ len: req.lengthBytes, flags: 0 });
    const payload = 4 + 8 * out.length;
    const h = encodeChunkHeader(
      NBD_REPLY_FLAG_DONE,
      NBD_REPLY_TYPE_BLOCK_STATUS,
      req.handleHi,
      req.handleLo,
      payload,
      payload,
    );
    h.writeUInt32BE(BASE_ALLOCATION_CONTEXT_ID, 20);
    out.forEach((d, i) => {
      h.writeUInt32BE(d.len, 24 + 8 * i);
      h.writeUInt32BE(d.flags, 28 + 8 * i);
    });
    this.send(h);
  }
}

/** Maps a backend failure to the NBD error value and a message for the client. */
export function errnoOf(e: unknown): [number, string] {
  if (e instanceof NbdCommandError) return [e.nbdErrno, e.message];
  if (e instanceof InvalidRequestError) return [NBD_EINVAL, e.message];
  if (e instanceof Error) return [NBD_ERROR_OF[errnoFromError(e)], e.message];
  return [NBD_EIO, String(e)];
}
