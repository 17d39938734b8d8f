// A Channel over one libfabric FI_EP_MSG connection: messages are cut into fragments of at most
// one peer receive buffer, and per-stream credits guarantee the peer has a buffer posted for
// every fragment we send. Invariants: we never send on a stream without a credit; a regular
// CONTROL fragment never takes the last CONTROL credit (it is kept for a credit update, as in
// DRBD's RDMA transport); a peer that sends beyond the credits we granted is a protocol error.
// Graceful close is a handshake: the closer disconnects only once the peer acknowledged its close
// (so nothing of it is in flight), and the peer keeps its endpoint until then (linger).
import {
  FABRIC_CLOSE_TIMEOUT_MS,
  FABRIC_WIRE_HEADER_BYTES,
  TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX,
} from '../../limits.js';
import type { Clock, Timer } from '../../platform/clock.js';
import { assert } from '../../util/assert.js';
import { ConnectionError, ProtocolError } from '../../util/errors.js';
import { BaseChannel, type ResolvedChannelOptions } from '../channel-base.js';
import type { ChannelStats, PathSpec, PathTransportStats, StreamId } from '../types.js';
import type { NativeConnection, NativeConnectionEvent } from './addon.js';
import {
  decodeFragmentHeader,
  describeWireError,
  encodeFragmentHeader,
  FLAG_FIRST,
  FLAG_LAST,
  type ConnHello,
  type FragmentKind,
} from './wire.js';

const STREAMS: readonly StreamId[] = ['control', 'data'];
/**
 * Addon error codes that mean the peer went away rather than something failing here (sockets
 * fails the sends and receives in flight with EIO when the peer vanishes mid-transfer).
 */
const PEER_LEFT_CODES = new Set([
  'ECONNRESET',
  'ECONNABORTED',
  'ENOTCONN',
  'EPIPE',
  'ESHUTDOWN',
  'EIO',
]);
/** A send refused at once with these: the connection is gone (sockets says ENOENT). */
const SEND_PEER_LEFT_CODES = new Set([...PEER_LEFT_CODES, 'ENOENT']);

interface OutMessage {
  readonly type: number;
  readonly parts: readonly Buffer[];
  readonly totalBytes: number;
  part: number;
  partOffset: number;
  started: boolean;
}

interface InFlight {
  readonly stream: StreamId | null;
  readonly bytes: number;
}

interface Reassembly {
  readonly type: number;
  readonly buf: Buffer;
  filled: number;
}

export interface FabricChannelStats extends ChannelStats {
  readonly provider: string;
  /** Payload bytes sent straight from the caller's Buffers (registered, no copy). */
  readonly zeroCopyBytes: number;
  /** Payload bytes copied into bounce buffers before sending. */
  readonly copiedBytes: number;
  /** Credits we hold for sending on each stream right now. */
  readonly credits: { readonly data: number; readonly control: number };
  /** 'manual': the addon moves the provider's data by polling its queues (`fabric-progress`). */
  readonly progress: 'auto' | 'manual';
}

/** Both sides' handshake, once the connection is up. */
export interface FabricChannelSetup {
  readonly id: string;
  readonly path: PathSpec;
  readonly initiator: boolean;
  readonly local: ConnHello;
  readonly peer: ConnHello;
  readonly zcopyThresholdBytes: number;
  /** The provider the transport chose, for when the connection does not name its own. */
  readonly provider: string;
}

/** What the transport hears about a channel's end. */
export interface FabricChannelHooks {
  /** The channel closed (its counters are final). */
  gone(ch: FabricChannel): void;
  /** The native connection outlives the channel for a while (true), or is released (false). */
  lingering(ch: FabricChannel, on: boolean): void;
}

export class FabricChannel extends BaseChannel {
  private readonly queues: Record<StreamId, OutMessage[]> = { data: [], control: [] };
  private readonly queued: Record<StreamId, number> = { data: 0, control: 0 };
  private readonly flushed: Record<StreamId, number> = { data: 0, control: 0 };
  /** Credits we hold: receive buffers the peer has posted for us. */
  private readonly credits: Record<StreamId, number>;
  /** Credits the peer holds from us and has not used yet. */
  private readonly peerCredits: Record<StreamId, number>;
  /** Our buffers the peer used and we reposted, not yet granted back. */
  private readonly pendingGrants: Record<StreamId, number> = { data: 0, control: 0 };
  private readonly lowWater: Record<StreamId, number>;
  private readonly reassembly: Record<StreamId, Reassembly | null> = { data: null, control: null };
  private readonly inFlight = new Map<number, InFlight>();
  private readonly heldData: Buffer[] = [];
  private readonly maxFragmentBytes: number;
  private nextToken = 1;
  private dataPaused = false;
  private draining = false;
  private blackholed = false;
  private ending: {
    resolve: () => void;
    timer: Timer;
    closeSent: boolean;
    /** The peer acknowledged our close: everything we sent has arrived. */
    acked: boolean;
  } | null = null;
  /** Our close was acknowledged: disconnect at once, the peer waits for it. */
  private closeAcked = false;
  private shut = false;
  private readonly zcopyThresholdBytes: number;
  /** The peer's close arrived: it sends nothing more and we owe it a close-ack. */
  private peerEnded = false;
  private ackOwed = false;
  /** The native connection is gone (the peer disconnected): nothing to linger for. */
  private nativeGone = false;
  /** Closed, but the endpoint stays until the peer disconnects so our close-ack reaches it. */
  private linger: Timer | null = null;
  private retryTimer: Timer | null = null;
  /** Read at setup: the addon forgets it once the connection is torn down. */
  private readonly provider: string;

  constructor(
    private readonly conn: NativeConnection,
    setup: FabricChannelSetup,
    clock: Clock,
    opts: ResolvedChannelOptions,
    private readonly hooks: FabricChannelHooks,
  ) {
    super(setup.id, 'fabric', setup.path, setup.initiator, clock, opts);
    this.credits = { data: setup.peer.dataCredits, control: setup.peer.controlCredits };
    this.peerCredits = { data: setup.local.dataCredits, control: setup.local.controlCredits };
    this.lowWater = {
      data: Math.max(1, Math.floor(setup.local.dataCredits / 4)),
      control: Math.max(1, Math.floor(setup.local.controlCredits / 4)),
    };
    this.maxFragmentBytes =
      Math.min(setup.local.bufferBytes, setup.peer.bufferBytes) - FABRIC_WIRE_HEADER_BYTES;
    assert(this.maxFragmentBytes > 0, 'fragment room');
    this.zcopyThresholdBytes = Math.max(1, setup.zcopyThresholdBytes);
    // An accepted sockets connection's info carries no provider name.
    this.provider = conn.provider !== '' ? conn.provider : setup.provider;
  }

  /** Called by the transport once the channel is handed out; replays events that came early. */
  start(early: readonly NativeConnectionEvent[]): void {
    for (const e of early) this.onEvent(...e);
    if (this.isOpen) this.startLiveness();
  }

  /** The addon's event sink for this connection. */
  readonly onEvent = (...e: NativeConnectionEvent): void => {
    if (this.linger !== null) return this.onLingerEvent(e);
    // A blackholed channel hears nothing, not even the peer leaving (a pulled cable).
    if (!this.isOpen || this.blackholed) return;
    switch (e[0]) {
      case 'recv':
        this.onMessage(e[1]);
        break;
      case 'sent':
        this.onSent(e[1]);
        break;
      case 'shutdown':
        this.nativeGone = true;
        this.peerGone(new ConnectionError(`${this.id}: the peer closed the fabric connection`));
        break;
      case 'error': {
        const error = new ConnectionError(`${this.id}: ${e[1]} [${e[2]}]`);
        // A failed receive on a connected endpoint is how some providers (sockets: EIO) report
        // a peer that vanished; a truncated one is the peer breaking our buffer size.
        const left = PEER_LEFT_CODES.has(e[2]) || (e[3] === 'receive' && e[2] !== 'ETRUNC');
        this.nativeGone = true;
        if (left) this.peerGone(error);
        else this.fail('error', error);
        break;
      }
      case 'connected':
        break;
    }
  };

  /** After the channel closed: get our close-ack out, then wait for the peer to disconnect. */
  private onLingerEvent(e: NativeConnectionEvent): void {
    switch (e[0]) {
      case 'recv': {
        // Only grants matter now (a close-ack may be waiting for a CONTROL credit).
        const h = decodeFragmentHeader(e[1]);
        if (h.ok) this.credits.control += h.value.grantControl;
        this.lingerSendAck();
        return;
      }
      case 'sent':
        this.inFlight.delete(e[1]);
        this.lingerSendAck();
        return;
      case 'shutdown':
      case 'error':
        this.nativeGone = true;
        this.release();
        return;
      case 'connected':
        return;
    }
  }

  private lingerSendAck(): void {
    if (!this.ackOwed || this.credits.control < 1) return;
    const r = this.sendBareRaw('close-ack');
    if (r === 'sent') this.ackOwed = false;
    else if (r instanceof Error) this.release();
  }

  /** Drops a lingering native connection now (the linger timed out, or the transport closes). */
  release(): void {
    if (this.linger === null) return;
    this.linger.cancel();
    this.linger = null;
    this.conn.close();
    this.hooks.lingering(this, false);
  }

  /** Test hook: bytes stop flowing both ways, and neither side is told (a pulled cable). */
  setBlackholed(): void {
    this.blackholed = true;
  }

  fabricStats(): Pick<
    FabricChannelStats,
    'provider' | 'zeroCopyBytes' | 'copiedBytes' | 'credits' | 'progress'
  > {
    const s = this.conn.stats();
    return {
      provider: this.provider,
      zeroCopyBytes: s.zeroCopyBytes,
      copiedBytes: s.copiedBytes,
      credits: { ...this.credits },
      progress: s.progress,
    };
  }

  override stats(): FabricChannelStats {
    return { ...super.stats(), ...this.fabricStats() };
  }

  protected override pathTransportStats(): PathTransportStats {
    const f = this.fabricStats();
    return {
      ...super.pathTransportStats(),
      provider: f.provider,
      zeroCopyBytes: f.zeroCopyBytes,
      copiedBytes: f.copiedBytes,
    };
  }

  // --- BaseChannel ------------------------------------------------------------------------
  protected writeFrame(stream: StreamId, type: number, payload: readonly Buffer[]): void {
    let total = 0;
    for (const p of payload) total += p.length;
    this.queues[stream].push({
      type,
      parts: payload,
      totalBytes: total,
      part: 0,
      partOffset: 0,
      started: false,
    });
    this.queued[stream] += total;
    this.pump();
  }

  protected queuedBytes(stream: StreamId): number {
    return this.queued[stream];
  }

  protected flushedBytes(stream: StreamId): number {
    return this.flushed[stream];
  }

  protected pauseDataRaw(): void {
    this.dataPaused = true;
  }

  protected resumeDataRaw(): void {
    this.dataPaused = false;
    this.releaseHeld();
  }

  protected endRaw(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(() => this.finishEnd(), FABRIC_CLOSE_TIMEOUT_MS);
      this.ending = { resolve, timer, closeSent: false, acked: false };
      this.pump();
    });
  }

  protected destroyRaw(): void {
    if (this.ending !== null) this.finishEnd();
    else this.shutdown();
  }

  private finishEnd(): void {
    const e = this.ending;
    if (e === null) return;
    this.ending = null;
    e.timer.cancel();
    this.shutdown();
    e.resolve();
  }

  // --- sending -----------------------------------------------------------------------------
  /** Sends fragments while there are credits and send slots; then a credit update if owed. */
  private pump(): void {
    if (!this.isOpen || this.blackholed || this.nativeGone) return;
    for (;;) {
      const stream = this.nextStream();
      if (stream === null) break;
      if (!this.sendFragment(stream)) return;
    }
    if (!this.maybeSendCredit()) return;
    this.maybeEnd();
    this.maybeAck();
  }

  private nextStream(): StreamId | null {
    // CONTROL first, but never its last credit; DATA may use all of its own.
    if (this.queues.control.length > 0 && this.credits.control >= 2) return 'control';
    if (this.queues.data.length > 0 && this.credits.data >= 1) return 'data';
    return null;
  }

  private takeGrants(): { grantData: number; grantControl: number } {
    const g = { grantData: this.pendingGrants.data, grantControl: this.pendingGrants.control };
    return g;
  }

  private commitGrants(g: { grantData: number; grantControl: number }): void {
    this.pendingGrants.data -= g.grantData;
    this.pendingGrants.control -= g.grantControl;
    this.peerCredits.data += g.grantData;
    this.peerCredits.control += g.grantControl;
  }

  /** One fragment of the head message of `stream`; false when the addon has no room now. */
  private sendFragment(stream: StreamId): boolean {
    const m = this.queues[stream][0];
    assert(m !== undefined, 'nextStream picked an empty queue');
    const piece = this.nextPiece(m);
    const first = !m.started;
    const last = this.restEmpty(m, piece.endPart, piece.endOffset);
    const grants = this.takeGrants();
    const header = encodeFragmentHeader({
      kind: stream,
      flags: (first ? FLAG_FIRST : 0) | (last ? FLAG_LAST : 0),
      type: m.type,
      ...grants,
      totalBytes: first ? m.totalBytes : 0,
    });
    const token = this.nextToken++;
    let sent: boolean;
    try {
      sent = this.conn.send(header, piece.buf, piece.offset, piece.length, token);
    } catch (e) {
      this.sendFailed(e as Error & { code?: string });
      return false;
    }
    if (!sent) {
      this.retrySoon();
      return false;
    }
    this.commitGrants(grants);
    this.credits[stream]--;
    this.inFlight.set(token, { stream, bytes: piece.length });
    m.started = true;
    m.part = piece.endPart;
    m.partOffset = piece.endOffset;
    if (last) this.queues[stream].shift();
    return true;
  }

  private restEmpty(m: OutMessage, part: number, offset: number): boolean {
    for (let i = part; i < m.parts.length; i++) {
      const len = m.parts[i]?.length ?? 0;
      if (len > (i === part ? offset : 0)) return false;
    }
    return true;
  }

  /**
   * The next fragment's payload: a zero-copy range of one part when that part has at least the
   * threshold left, else up to one fragment's worth gathered (copied) from consecutive parts.
   */
  private nextPiece(m: OutMessage): {
    buf: Buffer | null;
    offset: number;
    length: number;
    endPart: number;
    endOffset: number;
  } {
    let part = m.part;
    let off = m.partOffset;
    // Skip exhausted or empty parts.
    while (part < m.parts.length && off >= (m.parts[part]?.length ?? 0)) {
      part++;
      off = 0;
    }
    if (part >= m.parts.length)
      return { buf: null, offset: 0, length: 0, endPart: part, endOffset: 0 };
    const cur = m.parts[part];
    assert(cur !== undefined, 'part in range');
    const left = cur.length - off;
    if (left >= this.zcopyThreshold() || left >= this.maxFragmentBytes) {
      const length = Math.min(left, this.maxFragmentBytes);
      const end = off + length;
      return end === cur.length
        ? { buf: cur, offset: off, length, endPart: part + 1, endOffset: 0 }
        : { buf: cur, offset: off, length, endPart: part, endOffset: end };
    }
    // Gather small pieces into one copy; stop before a part big enough to go zero-copy.
    const chunks: Buffer[] = [];
    let room = this.maxFragmentBytes;
    while (part < m.parts.length && room > 0) {
      const p = m.parts[part];
      assert(p !== undefined, 'part in range');
      const avail = p.length - off;
      if (chunks.length > 0 && avail >= this.zcopyThreshold()) break;
      const take = Math.min(avail, room);
      if (take > 0) chunks.push(p.subarray(off, off + take));
      room -= take;
      if (take === avail) {
        part++;
        off = 0;
      } else {
        off += take;
      }
    }
    const buf = chunks.length === 1 ? (chunks[0] ?? null) : Buffer.concat(chunks);
    return { buf, offset: 0, length: buf?.length ?? 0, endPart: part, endOffset: off };
  }

  private zcopyThreshold(): number {
    return this.zcopyThresholdBytes;
  }

  /** Sends a standalone credit update when the peer runs low; false when it could not now. */
  private maybeSendCredit(): boolean {
    const owed = STREAMS.some(
      (s) => this.pendingGrants[s] > 0 && this.peerCredits[s] <= this.lowWater[s],
    );
    if (!owed || this.credits.control < 1) return true;
    return this.sendBare('credit');
  }

  private sendBare(kind: FragmentKind): boolean {
    const r = this.sendBareRaw(kind);
    if (r instanceof Error) this.sendFailed(r);
    else if (r === 'busy') this.retrySoon();
    return r === 'sent';
  }

  /** One header-only message on a CONTROL credit; 'busy' when the addon has no slot now. */
  private sendBareRaw(kind: FragmentKind): 'sent' | 'busy' | (Error & { code?: string }) {
    const grants = this.takeGrants();
    const header = encodeFragmentHeader({ kind, flags: 0, type: 0, ...grants, totalBytes: 0 });
    const token = this.nextToken++;
    let sent: boolean;
    try {
      sent = this.conn.send(header, null, 0, 0, token);
    } catch (e) {
      return e as Error & { code?: string };
    }
    if (!sent) return 'busy';
    this.commitGrants(grants);
    this.credits.control--;
    this.inFlight.set(token, { stream: null, bytes: 0 });
    return 'sent';
  }

  /**
   * Acknowledges the peer's close. While we close too, only after our own close went out: the
   * ack then tells the peer that everything we had to send is ahead of it.
   */
  private maybeAck(): void {
    if (!this.ackOwed || this.credits.control < 1) return;
    if (this.ending !== null && !this.ending.closeSent) return;
    if (this.sendBare('close-ack')) this.ackOwed = false;
  }

  /**
   * Graceful end: once every queue is empty, a close fragment; once the peer acknowledged it
   * (so none of ours is still in flight), shutdown.
   */
  private maybeEnd(): void {
    const e = this.ending;
    if (e === null) return;
    if (this.queues.data.length > 0 || this.queues.control.length > 0) return;
    if (!e.closeSent) {
      if (this.credits.control < 1) return;
      if (!this.sendBare('close')) return;
      e.closeSent = true;
    }
    if (e.acked) {
      this.closeAcked = true;
      this.finishEnd();
    }
  }

  private sendFailed(e: Error & { code?: string }): void {
    const error = new ConnectionError(`${this.id}: fabric send failed: ${e.message}`, { cause: e });
    if (SEND_PEER_LEFT_CODES.has(e.code ?? '')) this.peerGone(error);
    else this.fail('error', error);
  }

  private retrySoon(): void {
    // The addon had no free send slot: a 'sent' event retries; if none is pending, a timer does.
    if (this.inFlight.size > 0 || this.retryTimer !== null) return;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      this.pump();
    }, 1);
  }

  private onSent(token: number): void {
    const f = this.inFlight.get(token);
    if (f === undefined) return;
    this.inFlight.delete(token);
    if (f.stream !== null) {
      this.queued[f.stream] -= f.bytes;
      this.flushed[f.stream] += f.bytes;
      this.checkDrain(f.stream);
    }
    this.pump();
  }

  // --- receiving ---------------------------------------------------------------------------
  private onMessage(msg: Buffer): void {
    const h = decodeFragmentHeader(msg);
    if (!h.ok) {
      this.protocolError(describeWireError(h.error));
      return;
    }
    const { kind } = h.value;
    const stream: StreamId = kind === 'data' ? 'data' : 'control';
    // Every fragment of any kind took one of our posted buffers on its stream.
    if (this.peerCredits[stream] < 1) {
      this.protocolError(`peer sent on ${stream} beyond the credits we granted`);
      return;
    }
    this.peerCredits[stream]--;
    this.credits.data += h.value.grantData;
    this.credits.control += h.value.grantControl;
    if (kind === 'data' && (this.dataPaused || this.heldData.length > 0)) {
      this.heldData.push(msg);
    } else {
      this.consume(msg, h.value.kind, h.value.flags, h.value.type, h.value.totalBytes);
    }
    this.pump();
  }

  private releaseHeld(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.isOpen && !this.dataPaused && this.heldData.length > 0) {
        const msg = this.heldData.shift();
        if (msg === undefined) break;
        const h = decodeFragmentHeader(msg);
        if (!h.ok) break; // validated on arrival
        this.consume(msg, h.value.kind, h.value.flags, h.value.type, h.value.totalBytes);
      }
    } finally {
      this.draining = false;
    }
    if (this.isOpen && this.peerEnded && this.ending === null && this.heldData.length === 0) {
      this.peerGone(null);
    }
    this.pump();
  }

  private consume(
    msg: Buffer,
    kind: FragmentKind,
    flags: number,
    type: number,
    totalBytes: number,
  ): void {
    const stream: StreamId = kind === 'data' ? 'data' : 'control';
    this.pendingGrants[stream]++;
    switch (kind) {
      case 'credit':
        return;
      case 'close':
        if (this.peerEnded) return this.protocolError('a second close');
        this.peerEnded = true;
        this.ackOwed = true;
        // While we close too, ours completes when the peer acknowledges it.
        if (this.ending === null && this.heldData.length === 0) this.peerGone(null);
        return;
      case 'close-ack':
        if (this.ending?.closeSent !== true) {
          return this.protocolError('a close-ack for a close we did not send');
        }
        this.ending.acked = true;
        return;
      case 'data':
      case 'control':
        this.fragment(stream, msg.subarray(FABRIC_WIRE_HEADER_BYTES), flags, type, totalBytes);
        return;
    }
  }

  private fragment(
    stream: StreamId,
    body: Buffer,
    flags: number,
    type: number,
    totalBytes: number,
  ): void {
    const first = (flags & FLAG_FIRST) !== 0;
    const last = (flags & FLAG_LAST) !== 0;
    let r = this.reassembly[stream];
    if (first) {
      if (r !== null) return this.protocolError(`${stream}: a new message began inside another`);
      if (totalBytes > TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX) {
        return this.protocolError(`${stream}: message of ${totalBytes} bytes exceeds the maximum`);
      }
      if (last) {
        if (body.length !== totalBytes)
          return this.protocolError(`${stream}: message length mismatch`);
        this.deliver(stream, type, body);
        return;
      }
      r = { type, buf: Buffer.allocUnsafe(totalBytes), filled: 0 };
      this.reassembly[stream] = r;
    } else if (r === null) {
      return this.protocolError(`${stream}: a continuation fragment without a first one`);
    }
    if (r.filled + body.length > r.buf.length) {
      return this.protocolError(`${stream}: fragments exceed the announced message length`);
    }
    body.copy(r.buf, r.filled);
    r.filled += body.length;
    if (last) {
      this.reassembly[stream] = null;
      if (r.filled !== r.buf.length) return this.protocolError(`${stream}: message ended short`);
      this.deliver(stream, r.type, r.buf);
    }
  }

  private protocolError(what: string): void {
    this.fail('error', new ProtocolError(`${this.id}: ${what}`));
  }

  private peerGone(error: Error | null): void {
    if (!this.isOpen) return;
    if (this.ending !== null) {
      // We are closing gracefully and the peer left too (it saw our close, or both closed at
      // once): that completes our close rather than failing it.
      this.finishEnd();
      return;
    }
    // What the peer sent before its close is delivered first, on resume, even if it is gone.
    if (this.heldData.length > 0 && (error === null || this.peerEnded)) return;
    this.fail('by-peer', error ?? new ConnectionError(`${this.id}: the peer closed the channel`));
  }

  private shutdown(): void {
    if (this.shut) return;
    this.shut = true;
    this.retryTimer?.cancel();
    this.retryTimer = null;
    this.heldData.length = 0;
    this.hooks.gone(this);
    // The peer closed and waits for our close-ack, or for our endpoint to go once it has it:
    // keep the endpoint until the peer disconnects (bounded), or the ack could be lost with it.
    if (this.peerEnded && !this.closeAcked && !this.nativeGone && !this.blackholed) {
      this.linger = this.clock.setTimeout(() => this.release(), FABRIC_CLOSE_TIMEOUT_MS);
      this.hooks.lingering(this, true);
      this.lingerSendAck();
      return;
    }
    this.conn.close();
  }
}
