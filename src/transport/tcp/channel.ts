// One TCP channel: a data socket and a control socket (as DRBD's data and meta sockets), each
// carrying frames. Control frames go out at once; small DATA frames sent in one turn of the
// event loop are gathered into one writev (cork until the next tick). Payload Buffers are
// handed to the socket as they are, never concatenated.
import type { Socket } from 'node:net';
import type { Clock, Timer } from '../../platform/clock.js';
import { TCP_SETUP_TIMEOUT_MS } from '../../limits.js';
import { ConnectionError, ProtocolError } from '../../util/errors.js';
import { BaseChannel, type ResolvedChannelOptions } from '../channel-base.js';
import { describeFrameError, encodeFrameHeader, type FrameDecoder } from '../frame.js';
import type { PathSpec, StreamId } from '../types.js';

export interface TcpStreamParts {
  readonly socket: Socket;
  /** Holds any bytes read past the setup frames. */
  readonly decoder: FrameDecoder;
}

const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

export class TcpChannel extends BaseChannel {
  private readonly socks: { [S in StreamId]: Socket };
  private readonly decoders: { [S in StreamId]: FrameDecoder };
  private readonly accepted = { data: 0, control: 0 };
  private readonly ended = { data: false, control: false };
  private dataHeld = false;
  private dataCorked = false;
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
  ) {
    super(id, 'tcp', path, initiator, clock, opts);
    this.socks = { data: data.socket, control: control.socket };
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
    sock.on('data', (chunk: Buffer) => {
      this.decoders[stream].push(chunk);
      this.pump(stream);
    });
    sock.on('drain', () => this.checkDrain(stream));
    sock.on('end', () => this.onEnd(stream));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      const reset = e.code !== undefined && RESET_CODES.has(e.code);
      this.fail(
        reset ? 'by-peer' : 'error',
        new ConnectionError(`${this.id}: ${stream} socket: ${e.message}`, { cause: e }),
      );
    });
    sock.on('close', () => {
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
    this.accepted[stream] += bytes + 8;
    const tickCork = stream === 'data';
    if (!tickCork || !this.dataCorked) sock.cork();
    sock.write(encodeFrameHeader(type, bytes));
    for (const b of payload) if (b.length > 0) sock.write(b);
    if (!tickCork) {
      sock.uncork();
    } else if (!this.dataCorked) {
      // Everything sent on DATA in this turn leaves as one writev at the next tick.
      this.dataCorked = true;
      process.nextTick(() => {
        this.dataCorked = false;
        sock.uncork();
      });
    }
  }

  protected queuedBytes(stream: StreamId): number {
    return this.socks[stream].writableLength;
  }

  protected flushedBytes(stream: StreamId): number {
    return this.accepted[stream] - this.socks[stream].writableLength;
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
    // The peer closes its side on our FIN (Node's allowHalfOpen is off); a peer that never does
    // leaves the sockets to TCP keepalive.
    return Promise.all(ends).then(() => undefined);
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
