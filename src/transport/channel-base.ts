// What every Channel implementation shares: events, the receiver and its queue, stats,
// backpressure bookkeeping and liveness (pings on CONTROL, ko-count on stalled sends).
// Subclasses move bytes; this class decides when a peer is dead. Time comes from the Clock.
import {
  TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX,
  TRANSPORT_STREAM_HIGH_WATER_BYTES,
  TRANSPORT_STREAM_QUEUE_BYTES_MAX,
} from '../limits.js';
import type { Clock, Timer } from '../platform/clock.js';
import { assert } from '../util/assert.js';
import { ConnectionError } from '../util/errors.js';
import { MSG_PING, MSG_PING_ACK } from './frame.js';
import type {
  Channel,
  ChannelEventName,
  ChannelEvents,
  ChannelOptions,
  ChannelStats,
  ChannelTransportStats,
  CloseInfo,
  Message,
  MessageHandler,
  PathSpec,
  PathTransportStats,
  SendStatus,
  TransportStats,
  StreamId,
  TransportName,
} from './types.js';

export interface ResolvedChannelOptions {
  readonly pingIntMs: number;
  readonly pingTimeoutMs: number;
  readonly timeoutMs: number;
  readonly koCount: number;
  readonly highWaterBytes: number;
}

export function resolveChannelOptions(o: ChannelOptions = {}): ResolvedChannelOptions {
  const r = {
    pingIntMs: o.pingIntMs ?? 10_000,
    pingTimeoutMs: o.pingTimeoutMs ?? 500,
    timeoutMs: o.timeoutMs ?? 6_000,
    koCount: o.koCount ?? 7,
    highWaterBytes: o.highWaterBytes ?? TRANSPORT_STREAM_HIGH_WATER_BYTES,
  };
  assert(r.pingIntMs > 0 && r.pingTimeoutMs > 0 && r.timeoutMs > 0, 'liveness times positive');
  assert(r.koCount >= 1, 'ko-count at least 1');
  assert(
    r.highWaterBytes > 0 && r.highWaterBytes < TRANSPORT_STREAM_QUEUE_BYTES_MAX,
    'high water within the queue bound',
  );
  return r;
}

/** Control-stream messages kept for a receiver that is not yet set; more is a protocol abuse. */
const UNRECEIVED_MESSAGES_MAX = 4096;

interface Counters {
  bytesSent: number;
  bytesReceived: number;
  messagesSent: number;
  messagesReceived: number;
}

const newCounters = (): Counters => ({
  bytesSent: 0,
  bytesReceived: 0,
  messagesSent: 0,
  messagesReceived: 0,
});

export abstract class BaseChannel implements Channel {
  private readonly listeners: { [E in ChannelEventName]: ChannelEvents[E][] } = {
    established: [],
    drain: [],
    closed: [],
    path: [],
  };
  private receiver: MessageHandler | null = null;
  private readonly unreceived: Message[] = [];
  private readonly counters = { data: newCounters(), control: newCounters() };
  private readonly overHighWater = { data: false, control: false };
  private open = true;
  private dataPausedByUser = false;
  private srttMs: number | null = null;
  private kos = 0;
  private pingTimer: Timer | null = null;
  private pingDeadline: Timer | null = null;
  private pingSentAtMs = 0;
  private koTimer: Timer | null = null;
  private lastFlushed = { data: 0, control: 0 };

  protected constructor(
    readonly id: string,
    readonly transport: TransportName,
    readonly path: PathSpec,
    readonly initiator: boolean,
    protected readonly clock: Clock,
    protected opts: ResolvedChannelOptions,
  ) {}

  get isOpen(): boolean {
    return this.open;
  }

  // --- what subclasses implement ---------------------------------------------------------
  /** Hands one frame to the stream's queue; never concatenates `payload`. */
  protected abstract writeFrame(stream: StreamId, type: number, payload: readonly Buffer[]): void;
  /** Bytes accepted and not yet handed to the network on `stream`. */
  protected abstract queuedBytes(stream: StreamId): number;
  /** Total bytes of `stream` handed to the network so far (progress for ko detection). */
  protected abstract flushedBytes(stream: StreamId): number;
  protected abstract pauseDataRaw(): void;
  protected abstract resumeDataRaw(): void;
  /** Flush queues and end both streams; resolves when the peer may have everything. */
  protected abstract endRaw(): Promise<void>;
  /** Drop everything at once. */
  protected abstract destroyRaw(): void;

  // --- Channel ---------------------------------------------------------------------------
  send(stream: StreamId, type: number, payload: readonly Buffer[]): SendStatus {
    assert(Number.isInteger(type) && type >= 0 && type <= 0xffff, `message type ${type}`);
    if (!this.open) return 'closed';
    let bytes = 0;
    for (const b of payload) bytes += b.length;
    assert(bytes <= TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX, `message of ${bytes} bytes too large`);
    assert(
      this.queuedBytes(stream) + bytes <= TRANSPORT_STREAM_QUEUE_BYTES_MAX,
      `send beyond TRANSPORT_STREAM_QUEUE_BYTES_MAX on ${stream}: caller ignored backpressure`,
    );
    const c = this.counters[stream];
    c.bytesSent += bytes;
    c.messagesSent++;
    this.writeFrame(stream, type, payload);
    if (this.open && this.queuedBytes(stream) >= this.opts.highWaterBytes) {
      this.overHighWater[stream] = true;
      return 'over-high-water';
    }
    return 'ok';
  }

  setReceiver(handler: MessageHandler | null): void {
    this.receiver = handler;
    while (this.receiver !== null && this.unreceived.length > 0) {
      const m = this.unreceived.shift();
      if (m !== undefined) this.receiver(m);
    }
    this.syncDataPause();
  }

  pauseData(): void {
    this.dataPausedByUser = true;
    this.syncDataPause();
  }

  resumeData(): void {
    this.dataPausedByUser = false;
    this.syncDataPause();
  }

  configure(options: ChannelOptions): void {
    this.opts = resolveChannelOptions({ ...this.opts, ...options });
    // The next ping follows the new interval; a ping in flight keeps its deadline.
    if (this.open && this.pingTimer !== null) {
      this.pingTimer.cancel();
      this.schedulePing();
    }
  }

  stats(): ChannelStats {
    const s = (id: StreamId): ChannelStats['data'] => ({
      ...this.counters[id],
      queuedBytes: this.open ? this.queuedBytes(id) : 0,
    });
    return { data: s('data'), control: s('control'), rttMs: this.srttMs, koCount: this.kos };
  }

  transportStats(): ChannelTransportStats {
    const p = this.pathTransportStats();
    return sumTransportStats(this.transport, p, [p]);
  }

  /** This channel as the one path it runs over; subclasses add what they know (provider...). */
  protected pathTransportStats(): PathTransportStats {
    return ownPath(this);
  }

  on<E extends ChannelEventName>(event: E, listener: ChannelEvents[E]): () => void {
    const list = this.listeners[event];
    list.push(listener);
    return () => {
      const i = list.indexOf(listener);
      if (i >= 0) list.splice(i, 1);
    };
  }

  async close(): Promise<void> {
    if (!this.open) return;
    this.stopLiveness();
    try {
      await this.endRaw();
    } finally {
      this.finish({ reason: 'local' });
    }
  }

  destroy(error?: Error): void {
    if (!this.open) return;
    this.destroyRaw();
    this.finish(error ? { reason: 'local', error } : { reason: 'local' });
  }

  // --- for subclasses --------------------------------------------------------------------
  protected emit<E extends ChannelEventName>(
    event: E,
    ...args: Parameters<ChannelEvents[E]>
  ): void {
    for (const l of [...this.listeners[event]]) (l as (...a: unknown[]) => void)(...args);
  }

  /** Starts pings and the ko watchdog; call once both streams are up. */
  protected startLiveness(): void {
    if (!this.open) return;
    this.schedulePing();
    this.scheduleKoCheck();
  }

  /**
   * Starts only the ko watchdog, for a channel that checks the peer's liveness its own way (a
   * multipath session heartbeats each path and times out when it has none).
   */
  protected startKoWatchdog(): void {
    if (!this.open || this.koTimer !== null) return;
    this.scheduleKoCheck();
  }

  /**
   * While true, stalled sends do not count as kos (nor reset them): the channel is waiting for
   * something a timeout of its own bounds (a session with no path left). @default false
   */
  protected koSuspended(): boolean {
    return false;
  }

  /** A frame arrived on `stream`; pings are answered here and never reach the receiver. */
  protected deliver(stream: StreamId, type: number, payload: Buffer): void {
    if (!this.open) return;
    if (stream === 'control' && type === MSG_PING) {
      this.writeFrame('control', MSG_PING_ACK, [payload]);
      return;
    }
    if (stream === 'control' && type === MSG_PING_ACK) {
      this.onPingAck();
      return;
    }
    const c = this.counters[stream];
    c.bytesReceived += payload.length;
    c.messagesReceived++;
    const m: Message = { stream, type, payload };
    if (this.receiver !== null && this.unreceived.length === 0) {
      this.receiver(m);
      return;
    }
    this.unreceived.push(m);
    this.syncDataPause();
    if (this.unreceived.length > UNRECEIVED_MESSAGES_MAX) {
      this.fail('error', new ConnectionError(`${this.id}: too many messages with no receiver`));
    }
  }

  /** The stream's queue shrank: emit drain if a sender was told to wait. */
  protected checkDrain(stream: StreamId): void {
    if (!this.open || !this.overHighWater[stream]) return;
    if (this.queuedBytes(stream) < this.opts.highWaterBytes) {
      this.overHighWater[stream] = false;
      this.emit('drain', stream);
    }
  }

  /** The underlying connection ended or failed (not by our close()/destroy()). */
  protected fail(reason: CloseInfo['reason'], error?: Error): void {
    if (!this.open) return;
    this.destroyRaw();
    this.finish(error ? { reason, error } : { reason });
  }

  private finish(info: CloseInfo): void {
    if (!this.open) return;
    this.open = false;
    this.stopLiveness();
    this.unreceived.length = 0;
    this.emit('path', {
      path: this.path,
      state: info.reason === 'local' ? 'closed' : 'failed',
      ...(info.error ? { error: info.error } : {}),
    });
    this.emit('closed', info);
  }

  private syncDataPause(): void {
    if (!this.open) return;
    const hold = this.dataPausedByUser || this.receiver === null || this.unreceived.length > 0;
    if (hold) this.pauseDataRaw();
    else this.resumeDataRaw();
  }

  // --- liveness --------------------------------------------------------------------------
  private schedulePing(): void {
    this.pingTimer = this.clock.setTimeout(() => this.sendPing(), this.opts.pingIntMs);
  }

  private sendPing(): void {
    this.pingTimer = null;
    if (!this.open) return;
    this.pingSentAtMs = this.clock.nowMs();
    this.writeFrame('control', MSG_PING, []);
    this.pingDeadline = this.clock.setTimeout(() => {
      this.pingDeadline = null;
      this.fail(
        'timeout',
        new ConnectionError(`${this.id}: ping not answered within ${this.opts.pingTimeoutMs} ms`),
      );
    }, this.opts.pingTimeoutMs);
  }

  private onPingAck(): void {
    if (this.pingDeadline === null) return; // a late or unsolicited ack: ignore
    this.pingDeadline.cancel();
    this.pingDeadline = null;
    const sample = Math.max(0, this.clock.nowMs() - this.pingSentAtMs);
    this.srttMs = this.srttMs === null ? sample : this.srttMs * 0.875 + sample * 0.125;
    this.schedulePing();
  }

  /** Pings out of band (e.g. a test or the engine wants a fresh RTT); no-op if one is out. */
  pingNow(): void {
    if (!this.open || this.pingDeadline !== null) return;
    this.pingTimer?.cancel();
    this.sendPing();
  }

  private scheduleKoCheck(): void {
    this.koTimer = this.clock.setTimeout(() => this.koCheck(), this.opts.timeoutMs);
  }

  private koCheck(): void {
    this.koTimer = null;
    if (!this.open) return;
    if (this.koSuspended()) {
      for (const s of ['data', 'control'] as const) this.lastFlushed[s] = this.flushedBytes(s);
      this.scheduleKoCheck();
      return;
    }
    let stalled = false;
    for (const s of ['data', 'control'] as const) {
      const flushed = this.flushedBytes(s);
      if (this.queuedBytes(s) > 0 && flushed === this.lastFlushed[s]) stalled = true;
      this.lastFlushed[s] = flushed;
    }
    this.kos = stalled ? this.kos + 1 : 0;
    if (this.kos >= this.opts.koCount) {
      this.fail(
        'timeout',
        new ConnectionError(
          `${this.id}: peer stopped accepting data (${this.kos} × ${this.opts.timeoutMs} ms)`,
        ),
      );
      return;
    }
    this.scheduleKoCheck();
  }

  private stopLiveness(): void {
    this.pingTimer?.cancel();
    this.pingDeadline?.cancel();
    this.koTimer?.cancel();
    this.pingTimer = this.pingDeadline = this.koTimer = null;
  }
}

/**
 * The channels a transport has open, and its byte counters over every channel it ever opened
 * (closed channels' counts are folded in when they close): what Transport.stats() reports.
 */
export class ChannelRegistry {
  private readonly open = new Set<Channel>();
  private opened = 0;
  private readonly closed = { sent: 0, received: 0 };

  track(ch: Channel): void {
    this.opened++;
    this.open.add(ch);
    ch.on('closed', () => {
      const s = ch.stats();
      this.closed.sent += s.data.bytesSent + s.control.bytesSent;
      this.closed.received += s.data.bytesReceived + s.control.bytesReceived;
      this.open.delete(ch);
    });
  }

  stats(): TransportStats {
    let sent = this.closed.sent;
    let received = this.closed.received;
    for (const c of this.open) {
      const s = c.stats();
      sent += s.data.bytesSent + s.control.bytesSent;
      received += s.data.bytesReceived + s.control.bytesReceived;
    }
    return {
      channelsOpen: this.open.size,
      channelsOpened: this.opened,
      bytesSent: sent,
      bytesReceived: received,
    };
  }

  destroyAll(): void {
    for (const c of [...this.open]) c.destroy();
  }
}

/** Bytes and fabric counters of one or more paths, added up. */
export interface TransportTotals {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly zeroCopyBytes?: number;
  readonly copiedBytes?: number;
}

export const NO_TRANSPORT_TOTALS: TransportTotals = { bytesSent: 0, bytesReceived: 0 };

/** `a + b`; the fabric counters are present when either side has them. */
export function addTransportTotals(a: TransportTotals, b: TransportTotals): TransportTotals {
  const fabric = a.zeroCopyBytes !== undefined || b.zeroCopyBytes !== undefined;
  return {
    bytesSent: a.bytesSent + b.bytesSent,
    bytesReceived: a.bytesReceived + b.bytesReceived,
    ...(fabric
      ? {
          zeroCopyBytes: (a.zeroCopyBytes ?? 0) + (b.zeroCopyBytes ?? 0),
          copiedBytes: (a.copiedBytes ?? 0) + (b.copiedBytes ?? 0),
        }
      : {}),
  };
}

/**
 * A channel's transport stats from its live paths plus `retired` (what paths that have gone
 * carried); the active path is the first one flagged active.
 */
export function sumTransportStats(
  transport: TransportName,
  active: PathTransportStats | null,
  paths: readonly PathTransportStats[],
  retired: TransportTotals = NO_TRANSPORT_TOTALS,
): ChannelTransportStats {
  let t = retired;
  for (const p of paths) t = addTransportTotals(t, p);
  return {
    transport,
    active:
      active === null
        ? null
        : {
            transport: active.transport,
            ...(active.provider !== undefined ? { provider: active.provider } : {}),
          },
    bytesSent: t.bytesSent,
    bytesReceived: t.bytesReceived,
    ...(t.zeroCopyBytes !== undefined
      ? { zeroCopyBytes: t.zeroCopyBytes, copiedBytes: t.copiedBytes ?? 0 }
      : {}),
    paths,
  };
}

/** Any channel's transport stats; one without the accessor counts as its own single path. */
export function channelTransportStats(ch: Channel): ChannelTransportStats {
  const own = ch.transportStats?.();
  if (own !== undefined) return own;
  const p = ownPath(ch);
  return sumTransportStats(ch.transport, p, [p]);
}

function ownPath(ch: Channel): PathTransportStats {
  const s = ch.stats();
  return {
    path: ch.path,
    transport: ch.transport,
    active: true,
    bytesSent: s.data.bytesSent + s.control.bytesSent,
    bytesReceived: s.data.bytesReceived + s.control.bytesReceived,
  };
}
