// One TCP channel: a data socket and a control socket (as DRBD's data and meta sockets), each
// carrying frames. The first frame of a turn of the event loop on each stream goes out at once;
// later CONTROL frames of that turn share one writev at the next tick, later small DATA frames
// are gathered into a batch buffer (one writev at the next tick). Payload Buffers are
// handed to the socket as they are, never concatenated. With TLS the sockets are TLSSockets:
// the same corked writes reach OpenSSL as one writev per turn (records, not a copy a frame).
import type { Socket } from 'node:net';
import type { Clock, Timer } from '../../platform/clock.js';
import {
  TCP_BATCH_BYTES,
  TCP_COALESCE_MESSAGE_BYTES_MAX,
  TCP_CLOSE_LINGER_MS,
  TCP_SETUP_TIMEOUT_MS,
  TRANSPORT_FRAME_HEADER_BYTES,
} from '../../limits.js';
import { ConnectionError, ProtocolError } from '../../util/errors.js';
import { BaseChannel, type ResolvedChannelOptions } from '../channel-base.js';
import { FRAME_MAGIC, describeFrameError, encodeFrameHeader, type FrameDecoder } from '../frame.js';
import type { ChannelTls, PathSpec, StreamId } from '../types.js';
import type { SlabReader } from './slab.js';

export interface TcpStreamParts {
  readonly socket: Socket;
  /** Holds any bytes read past the setup frames. */
  readonly decoder: FrameDecoder;
  /** Set when the socket reads into a slab (`onread`); it then emits no 'data' events. */
  readonly slab?: SlabReader;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);
const STREAMS: readonly StreamId[] = ['data', 'control'];

export class TcpChannel extends BaseChannel {
  private readonly socks: { [S in StreamId]: Socket };
  private readonly decoders: { [S in StreamId]: FrameDecoder };
  private readonly accepted = { data: 0, control: 0 };
  private readonly ended = { data: false, control: false };
  private dataHeld = false;
  /**
   * Per stream, in this turn of the event loop: whether a frame went out directly, and whether
   * the socket is corked for the later frames of the turn. `endTurn` clears both.
   */
  private readonly turn: { [S in StreamId]: { wrote: boolean; corked: boolean } } = {
    data: { wrote: false, corked: false },
    control: { wrote: false, corked: false },
  };
  /** `endTurn` is queued with process.nextTick: once a turn, whatever the frame count. */
  private endTurnQueued = false;
  private readonly slabs: { [S in StreamId]: SlabReader | undefined };
  /** The current batch buffer of small DATA frames; [batchStart, batchUsed) is not yet written. */
  private batch: Buffer | null = null;
  private batchStart = 0;
  private batchUsed = 0;
  private delivering = { data: false, control: false };
  private endTimer: Timer | null = null;

  constructor(
    id: string,
    path: PathSpec,
    initiator: boolean,
    clock: Clock,
    opts: ResolvedChannelOptions,
    data: TcpStreamParts,
    control: TcpStreamParts,
    /** Set when both sockets are TLS sessions with a verified peer. */
    readonly tls?: ChannelTls,
  ) {
    super(id, 'tcp', path, initiator, clock, opts);
    this.socks = { data: data.socket, control: control.socket };
    this.slabs = { data: data.slab, control: control.slab };
    this.decoders = { data: data.decoder, control: control.decoder };
    for (const s of ['data', 'control'] as const) this.attach(s);
  }

  /** Starts reading and liveness; call after the owner subscribed to events. */
  start(): void {
    this.startLiveness();
    this.emit('established');
    this.emit('path', { path: this.path, state: 'established' });
    for (const s of ['control', 'data'] as const) this.pump(s);
  }

  private attach(stream: StreamId): void {
    const sock = this.socks[stream];
    sock.removeAllListeners('data');
    sock.removeAllListeners('end');
    sock.removeAllListeners('error');
    sock.removeAllListeners('close');
    sock.removeAllListeners('drain');
    const onChunk = (chunk: Buffer): void => {
      this.decoders[stream].push(chunk);
      this.pump(stream);
    };
    const slab = this.slabs[stream];
    if (slab) slab.sink = onChunk;
    else sock.on('data', onChunk);
    sock.on('drain', () => this.checkDrain(stream));
    sock.on('end', () => this.onEnd(stream));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      const reset = e.code !== undefined && RESET_CODES.has(e.code);
      this.fail(
        reset ? 'by-peer' : 'error',
        new ConnectionError(`${this.id}: ${stream} socket: ${e.message}`, { cause: e }),
      );
    });
    sock.on('close', (hadError: boolean) => {
      // A stream the peer ended cleanly closes once our side has ended too; the other stream
      // may still be delivering what was sent before the close (onEnd waits for it).
      if (this.ended[stream] && !hadError) return;
      this.fail('by-peer', new ConnectionError(`${this.id}: ${stream} socket closed by peer`));
    });
  }

  /** Decodes and delivers whole frames; stops while DATA is held by the receiver. */
  private pump(stream: StreamId): void {
    if (this.delivering[stream]) return; // re-entered from a receiver: the outer loop goes on
    this.delivering[stream] = true;
    try {
      const dec = this.decoders[stream];
      while (this.isOpen && !(stream === 'data' && this.dataHeld)) {
        const r = dec.next();
        if (!r.ok) {
          this.fail(
            'error',
            new ProtocolError(`${this.id}: ${stream} stream: ${describeFrameError(r.error)}`),
          );
          return;
        }
        if (r.frame === null) break;
        this.deliver(stream, r.frame.type, r.frame.payload);
      }
    } finally {
      this.delivering[stream] = false;
    }
  }

  private onEnd(stream: StreamId): void {
    if (!this.isOpen) return;
    this.ended[stream] = true;
    this.pump(stream);
    if (this.ended.data && this.ended.control) {
      this.fail('by-peer', new ConnectionError(`${this.id}: closed by peer`));
      return;
    }
    // One stream ended cleanly: the other should follow once its bytes are through.
    this.endTimer ??= this.clock.setTimeout(() => {
      this.fail('by-peer', new ConnectionError(`${this.id}: closed by peer (${stream} ended)`));
    }, TCP_SETUP_TIMEOUT_MS);
  }

  protected writeFrame(stream: StreamId, type: number, payload: readonly Buffer[]): void {
    const sock = this.socks[stream];
    let bytes = 0;
    for (const b of payload) bytes += b.length;
    this.accepted[stream] += bytes + TRANSPORT_FRAME_HEADER_BYTES;
    const turn = this.turn[stream];
    if (!turn.wrote) {
      // The first frame of a turn on each stream leaves at once, header and payload in one
      // writev: at queue depth 1 it is the only one, and waiting for the end of the turn would
      // put the sender's own work (an inline disk write) in front of it.
      turn.wrote = true;
      if (!this.endTurnQueued) {
        this.endTurnQueued = true;
        process.nextTick(this.endTurn);
      }
      sock.cork();
      this.writeUnbatched(sock, type, bytes, payload);
      sock.uncork();
      return;
    }
    // Later frames of the turn (a burst of acks at queue depth 32, a run of writes) wait in the
    // corked socket and leave in one writev when the turn ends.
    if (!turn.corked) {
      turn.corked = true;
      sock.cork();
    }
    if (stream === 'control') {
      this.writeUnbatched(sock, type, bytes, payload);
      return;
    }
    if (bytes <= TCP_COALESCE_MESSAGE_BYTES_MAX) {
      // Small DATA: copied into the turn's batch buffer, so many messages cost one socket write.
      const need = bytes + TRANSPORT_FRAME_HEADER_BYTES;
      if (this.batch === null || this.batch.length - this.batchUsed < need) {
        this.flushBatch();
        // The old batch may still be queued in the socket: a fresh buffer, never a reuse.
        this.batch = Buffer.allocUnsafe(Math.max(TCP_BATCH_BYTES, need));
        this.batchStart = this.batchUsed = 0;
      }
      const batch = this.batch;
      let off = this.batchUsed;
      off = batch.writeUInt16BE(FRAME_MAGIC, off);
      off = batch.writeUInt16BE(type, off);
      off = batch.writeUInt32BE(bytes, off);
      for (const b of payload) off += b.copy(batch, off);
      this.batchUsed = off;
      return;
    }
    // Large DATA: the payload Buffers go to the socket as they are (no copy), after any batch.
    this.flushBatch();
    this.writeUnbatched(sock, type, bytes, payload);
  }

  /** Header, then each non-empty payload Buffer as it is; the caller decides about corking. */
  private writeUnbatched(sock: Socket, type: number, bytes: number, payload: readonly Buffer[]) {
    sock.write(encodeFrameHeader(type, bytes));
    for (const b of payload) if (b.length > 0) sock.write(b);
  }

  /** Queued once a turn (a bound field, so no closure a frame): what the turn corked leaves. */
  private readonly endTurn = (): void => {
    this.endTurnQueued = false;
    for (const stream of STREAMS) {
      const turn = this.turn[stream];
      turn.wrote = false;
      if (!turn.corked) continue;
      turn.corked = false;
      if (stream === 'data') this.flushBatch();
      this.socks[stream].uncork();
    }
  };

  private flushBatch(): void {
    if (this.batch === null || this.batchUsed === this.batchStart) return;
    this.socks.data.write(this.batch.subarray(this.batchStart, this.batchUsed));
    this.batchStart = this.batchUsed;
  }

  protected queuedBytes(stream: StreamId): number {
    const pending = stream === 'data' ? this.batchUsed - this.batchStart : 0;
    return this.socks[stream].writableLength + pending;
  }

  protected flushedBytes(stream: StreamId): number {
    return this.accepted[stream] - this.queuedBytes(stream);
  }

  protected pauseDataRaw(): void {
    if (this.dataHeld) return;
    this.dataHeld = true;
    this.socks.data.pause();
  }

  protected resumeDataRaw(): void {
    if (!this.dataHeld) return;
    this.dataHeld = false;
    this.pump('data');
    if (!this.dataHeld) this.socks.data.resume();
  }

  protected endRaw(): Promise<void> {
    const ends = (['data', 'control'] as const).map(
      (s) =>
        new Promise<void>((resolve) => {
          const sock = this.socks[s];
          if (sock.destroyed || sock.writableFinished) {
            resolve();
            return;
          }
          sock.once('finish', () => resolve());
          sock.once('close', () => resolve());
          sock.end();
        }),
    );
    return Promise.all(ends).then(() => this.lingerForPeerClose());
  }

  /**
   * After our FIN the peer closes its side (Node's allowHalfOpen is off), but only a socket that
   * reads sees that FIN: one paused for receive backpressure would stay open (and keep a
   * listener's close() waiting) forever. Read on, dropping what comes, and destroy whatever the
   * peer has not closed after TCP_CLOSE_LINGER_MS.
   */
  private lingerForPeerClose(): void {
    const open = (['data', 'control'] as const)
      .map((s) => this.socks[s])
      .filter((sock) => !sock.destroyed);
    if (open.length === 0) return;
    const linger = this.clock.setTimeout(() => {
      for (const sock of open) {
        sock.on('error', () => {});
        sock.destroy();
      }
    }, TCP_CLOSE_LINGER_MS);
    let left = open.length;
    for (const sock of open) {
      sock.once('close', () => {
        if (--left === 0) linger.cancel();
      });
      sock.removeAllListeners('data');
      sock.on('data', () => {});
      sock.resume();
    }
  }

  protected destroyRaw(): void {
    this.endTimer?.cancel();
    for (const s of ['data', 'control'] as const) {
      const sock = this.socks[s];
      sock.removeAllListeners('close');
      sock.on('error', () => {}); // errors after close are of no interest
      sock.destroy();
    }
  }
}
