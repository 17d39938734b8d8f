// A multipath session: one Channel carried by joined path channels. Every message gets a
// per-stream sequence number (implicit on a path, set by MP_SEQ markers); the receiver delivers
// each sequence number exactly once and in order, acknowledges cumulatively, and the sender keeps
// every unacknowledged message for replay on another path. The layer above sees a pause, never a
// close, unless no path is left for longer than `timeoutMs` or the peer stops acknowledging for
// ko-count intervals of `timeoutMs`.
import {
  MULTIPATH_ACK_DELAY_MS,
  MULTIPATH_ACK_EVERY_BYTES,
  MULTIPATH_CLOSE_LINGER_MS,
  MULTIPATH_ACTIVE_PATH_SILENT_HEARTBEATS,
  MULTIPATH_HEARTBEAT_INTERVAL_MIN_MS,
  MULTIPATH_HEARTBEATS_PER_PING_TIMEOUT,
  MULTIPATH_REPLAY_BUFFER_BYTES,
  TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX,
} from '../../limits.js';
import type { Clock, Timer } from '../../platform/clock.js';
import { assert } from '../../util/assert.js';
import { ConnectionError, ProtocolError } from '../../util/errors.js';
import {
  addTransportTotals,
  BaseChannel,
  NO_TRANSPORT_TOTALS,
  resolveChannelOptions,
  sumTransportStats,
  type ResolvedChannelOptions,
  type TransportTotals,
} from '../channel-base.js';
import type {
  Channel,
  ChannelOptions,
  ChannelStats,
  ChannelTransportStats,
  CloseReason,
  Message,
  PathEvent,
  PathSpec,
  PathTransportStats,
  StreamId,
} from '../types.js';
import type { MultipathOptions } from './types.js';
import {
  MP_ACK,
  MP_CLOSE,
  MP_HEARTBEAT,
  MP_RESUME,
  MP_SEQ,
  MP_TYPE_FIRST,
  MP_TYPE_LAST,
  decodeClose,
  decodeHeartbeat,
  decodeNext,
  decodeSeq,
  encodeClose,
  encodeHeartbeat,
  encodeNext,
  encodeSeq,
  type NextSeqs,
} from './wire.js';

const STREAMS = ['control', 'data'] as const;

/** Preference of a transport class: lower is faster (fabric before tcp). */
export function classRank(transport: string): number {
  return transport === 'fabric' ? 0 : 1;
}

/** Heartbeat interval of every path: several per ping-timeout, never more than ping-int. */
function heartbeatIntervalMs(o: ResolvedChannelOptions): number {
  return Math.max(
    MULTIPATH_HEARTBEAT_INTERVAL_MIN_MS,
    Math.min(o.pingIntMs, o.pingTimeoutMs / MULTIPATH_HEARTBEATS_PER_PING_TIMEOUT),
  );
}

/** One joined path of a session. */
export class PathLink {
  lastHeardMs: number;
  srttMs: number | null = null;
  hbToken = 0;
  hbSentAtMs = 0;
  hbOutstanding = false;
  /** Sequence number the next message we send on this path stream implicitly carries. */
  readonly sendNext: { [S in StreamId]: number | null } = { data: null, control: null };
  /** Sequence number of the next message arriving on this path stream (null before a marker). */
  readonly recvNext: { [S in StreamId]: number | null } = { data: null, control: null };
  readonly blocked = { data: false, control: false };
  readonly offs: (() => void)[] = [];
  alive = true;

  constructor(
    readonly channel: Channel,
    readonly spec: PathSpec,
    /** Lower is preferred: class first, then configuration order. */
    readonly rank: number,
    nowMs: number,
  ) {
    this.lastHeardMs = nowMs;
  }

  get name(): string {
    const p = this.spec.peer;
    return `${p.transport}:${p.address}:${p.port}`;
  }
}

interface OutEntry {
  readonly seq: number;
  readonly type: number;
  readonly payload: readonly Buffer[];
  readonly bytes: number;
  path: PathLink | null;
}

/** The sender's replay buffer of one stream: unacknowledged messages, oldest first. */
class OutStream {
  items: OutEntry[] = [];
  head = 0;
  /** Every entry below this index has been sent on some live path. */
  scanFrom = 0;
  nextSeq = 0;
  bytes = 0;

  get acked(): number {
    return this.items[this.head]?.seq ?? this.nextSeq;
  }

  compact(): void {
    if (this.head < 1024 || this.head * 2 < this.items.length) return;
    this.items = this.items.slice(this.head);
    this.scanFrom = Math.max(0, this.scanFrom - this.head);
    this.head = 0;
  }
}

/** The receiver's side of one stream: next sequence number and messages that came early. */
class InStream {
  next = 0;
  readonly held = new Map<number, { type: number; payload: Buffer }>();
  heldBytes = 0;
  duplicates = 0;
}

export interface SessionCounters {
  readonly duplicatesDropped: number;
  readonly failovers: number;
  readonly failbacks: number;
  readonly replayedMessages: number;
}

export interface SessionInit {
  readonly id: string;
  readonly sessionId: Buffer;
  readonly key: Buffer;
  readonly alg: string;
  readonly initiator: boolean;
  readonly clock: Clock;
  readonly opts: MultipathOptions;
}

/** Hooks the dialer (initiator side) gives the session. */
export interface PathOwner {
  /** A joined path failed (not by our own close). */
  onPathFailed(link: PathLink): void;
  /** The session ended; stop dialing. */
  onSessionEnd(): void;
}

export class MultipathSession extends BaseChannel {
  readonly sessionId: Buffer;
  readonly key: Buffer;
  readonly alg: string;
  readonly loadBalance: boolean;
  private readonly out = { data: new OutStream(), control: new OutStream() };
  private readonly inn = { data: new InStream(), control: new InStream() };
  private readonly links: PathLink[] = [];
  private active: PathLink | null = null;
  private hbIntMs: number;
  private readonly replayBytes: number;
  private hbTimer: Timer | null = null;
  /** When the pending heartbeat tick is due (a late tick proves nothing about silence). */
  private hbDueMs = 0;
  private hbSkipped = false;
  private noPathTimer: Timer | null = null;
  private ackTimer: Timer | null = null;
  private ackOwed = false;
  private bytesSinceAck = 0;
  private dataPaused = false;
  private ending = false;
  private lastPathError: Error | null = null;
  /** The active path that failed, until another one takes over (for the failover event). */
  private failedActive: PathLink | null = null;
  private closeWaiters: (() => void)[] = [];
  private owner: PathOwner | null = null;
  private counts = { failovers: 0, failbacks: 0, replayed: 0 };
  /** The session had no path at some time since the last ko check. */
  private noPathSinceKoCheck = false;
  /** When the session lost its last path (for stall figures), or null. */
  private pausedSinceMs: number | null = null;
  /** What paths that have left the session carried (status sums stay monotonic). */
  private retired: TransportTotals = NO_TRANSPORT_TOTALS;

  constructor(init: SessionInit, firstPath: PathSpec) {
    const o = init.opts;
    const replayBytes = o.replayBufferBytes ?? MULTIPATH_REPLAY_BUFFER_BYTES;
    assert(
      replayBytes > 0 && replayBytes >= TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX / 64,
      'replay buffer size',
    );
    const resolved = resolveChannelOptions({
      ...o,
      highWaterBytes: Math.min(o.highWaterBytes ?? replayBytes, replayBytes),
    });
    super(init.id, 'multipath', firstPath, init.initiator, init.clock, resolved);
    this.sessionId = init.sessionId;
    this.key = init.key;
    this.alg = init.alg;
    this.loadBalance = o.loadBalancePaths ?? false;
    this.replayBytes = replayBytes;
    this.hbIntMs = heartbeatIntervalMs(resolved);
    this.scheduleHeartbeat();
    this.armNoPathTimer();
    // ko-count follows acknowledgements: a peer that stops taking DATA stops acking it, whatever
    // path carries it. Session pings are not needed: each path is heartbeated instead.
    this.startKoWatchdog();
  }

  /** net{} settings named after the handshake: heartbeats follow the new ping-timeout. */
  override configure(options: ChannelOptions): void {
    super.configure({
      ...options,
      ...(options.highWaterBytes !== undefined
        ? { highWaterBytes: Math.min(options.highWaterBytes, this.replayBytes) }
        : {}),
    });
    const hb = heartbeatIntervalMs(this.opts);
    if (hb === this.hbIntMs) return;
    this.hbIntMs = hb;
    if (this.hbTimer !== null) {
      this.hbTimer.cancel();
      this.scheduleHeartbeat();
    }
  }

  /**
   * A stall that overlaps a time with no path is the no-path timeout's to judge, not the peer's
   * doing: that ko interval does not count. Asked once per ko interval.
   */
  protected override koSuspended(): boolean {
    const suspended = this.links.length === 0 || this.noPathSinceKoCheck;
    this.noPathSinceKoCheck = false;
    return suspended;
  }

  setOwner(owner: PathOwner): void {
    this.owner = owner;
  }

  /** Next sequence number expected per stream: what a resume or join tells the peer. */
  receivedNext(): NextSeqs {
    return { data: this.inn.data.next, control: this.inn.control.next };
  }

  /** The joined paths, preferred first. */
  paths(): readonly { spec: PathSpec; rank: number; active: boolean; rttMs: number | null }[] {
    return [...this.links]
      .sort((a, b) => a.rank - b.rank)
      .map((l) => ({ spec: l.spec, rank: l.rank, active: l === this.active, rttMs: l.srttMs }));
  }

  sessionCounters(): SessionCounters {
    return {
      duplicatesDropped: this.inn.data.duplicates + this.inn.control.duplicates,
      failovers: this.counts.failovers,
      failbacks: this.counts.failbacks,
      replayedMessages: this.counts.replayed,
    };
  }

  override stats(): ChannelStats {
    const s = super.stats();
    return {
      ...s,
      rttMs: this.active?.srttMs ?? this.links[0]?.srttMs ?? null,
    };
  }

  /** Per joined path: its transport, provider and counters; totals include departed paths. */
  override transportStats(): ChannelTransportStats {
    const paths = [...this.links].sort((a, b) => a.rank - b.rank).map((l) => this.linkStats(l));
    const active = paths.find((p) => p.active) ?? null;
    return sumTransportStats(this.transport, active, paths, this.retired);
  }

  private linkStats(l: PathLink): PathTransportStats {
    const t = l.channel.transportStats?.();
    const s = l.channel.stats();
    const provider = t?.active?.provider;
    return {
      path: l.spec,
      transport: t?.active?.transport ?? l.channel.transport,
      ...(provider !== undefined ? { provider } : {}),
      active: l === this.active,
      bytesSent: t?.bytesSent ?? s.data.bytesSent + s.control.bytesSent,
      bytesReceived: t?.bytesReceived ?? s.data.bytesReceived + s.control.bytesReceived,
      ...(t?.zeroCopyBytes !== undefined
        ? { zeroCopyBytes: t.zeroCopyBytes, copiedBytes: t.copiedBytes ?? 0 }
        : {}),
    };
  }

  /** Takes links out of the session, keeping what they carried in the totals. */
  private removeLinks(links: readonly PathLink[]): void {
    for (const l of links) {
      const i = this.links.indexOf(l);
      if (i < 0) continue;
      this.retired = addTransportTotals(this.retired, this.linkStats(l));
      this.links.splice(i, 1);
    }
  }

  // --- paths -----------------------------------------------------------------------------------
  /**
   * Adds a path whose handshake just finished; `peerNext` is what the peer has received.
   * A path of the same rank already joined is replaced (the peer redialed it).
   */
  attach(channel: Channel, spec: PathSpec, rank: number, peerNext: NextSeqs): PathLink | null {
    if (!this.isOpen || this.ending || !channel.isOpen) {
      channel.destroy();
      return null;
    }
    for (const old of this.links.filter((l) => l.rank === rank)) {
      this.pathFailed(old, new ConnectionError(`${old.name}: replaced by a new join`));
    }
    const link = new PathLink(channel, spec, rank, this.clock.nowMs());
    this.links.push(link);
    link.offs.push(
      channel.on('closed', (info) =>
        this.pathFailed(
          link,
          info.error ?? new ConnectionError(`${link.name}: path closed (${info.reason})`),
        ),
      ),
      channel.on('drain', (stream) => {
        link.blocked[stream] = false;
        this.pump();
      }),
    );
    if (this.dataPaused) channel.pauseData();
    channel.setReceiver((m) => this.onPathMessage(link, m));
    if (!link.alive) return null; // queued messages killed it
    this.emit('path', { path: spec, state: 'established' });
    this.applyAck(peerNext, link);
    this.sendHeartbeat(link);
    this.reselect();
    return link;
  }

  private pathFailed(link: PathLink, error: Error): void {
    if (!link.alive) return;
    link.alive = false;
    for (const off of link.offs.splice(0)) off();
    this.removeLinks([link]);
    link.channel.destroy();
    if (this.ending || !this.isOpen) return;
    this.lastPathError = error;
    this.requeue(link);
    this.emit('path', { path: link.spec, state: 'failed', error });
    if (this.active === link) {
      this.active = null;
      this.failedActive = link;
    }
    this.owner?.onPathFailed(link);
    this.reselect();
  }

  /** Messages sent on a failed path go out again on another one. */
  private requeue(link: PathLink): void {
    for (const s of STREAMS) this.reroute(link, s);
  }

  /** Picks the active path after a change: a failover when the active one failed. */
  private reselect(): void {
    const best = this.bestLink();
    if (this.active === null) {
      if (best === null) {
        this.noPathSinceKoCheck = true;
        this.armNoPathTimer();
        return;
      }
      const from = this.failedActive;
      this.failedActive = null;
      this.setActive(best, from ? 'failover' : null, from);
    } else if (best !== null && best !== this.active && best.rank < this.active.rank) {
      this.failback(best);
    }
    this.pump();
  }

  private bestLink(): PathLink | null {
    let best: PathLink | null = null;
    for (const l of this.links) if (best === null || l.rank < best.rank) best = l;
    return best;
  }

  private setActive(
    link: PathLink,
    change: 'failover' | 'failback' | null,
    from: PathLink | null,
  ): void {
    this.active = link;
    this.noPathTimer?.cancel();
    this.noPathTimer = null;
    this.pausedSinceMs = null;
    if (change === 'failover') {
      this.counts.failovers++;
      // The resume: what we have received, so the peer replays from there on this path.
      this.sendOn(link, 'control', MP_RESUME, encodeNext(this.receivedNext()));
      this.clearAckOwed();
    } else if (change === 'failback') this.counts.failbacks++;
    if (change !== null) {
      const ev: PathEvent = {
        path: link.spec,
        state: 'established',
        change,
        ...(from ? { from: from.spec } : {}),
      };
      this.emit('path', ev);
    }
  }

  /**
   * Failback to a preferred path that (re)joined: switch at once, and send again on it whatever
   * the old path still carries, ahead of anything new. The old path stays joined and drains in
   * the background; the receiver keeps whichever copy comes first, so a slow or lossy old path
   * cannot hold up the switch.
   */
  private failback(to: PathLink): void {
    const from = this.active;
    if (from === null) return;
    this.setActive(to, 'failback', from);
    // Load balancing keeps DATA on every path: only CONTROL follows the preferred one.
    for (const s of this.loadBalance ? (['control'] as const) : STREAMS) this.reroute(from, s);
  }

  /** Puts the stream's unacknowledged messages sent on `link` back in line for the active path. */
  private reroute(link: PathLink, stream: StreamId): void {
    const o = this.out[stream];
    for (let i = o.head; i < o.items.length; i++) {
      const e = o.items[i];
      if (e === undefined || e.path !== link) continue;
      e.path = null;
      this.counts.replayed++;
      if (i < o.scanFrom) o.scanFrom = i;
    }
  }

  private armNoPathTimer(): void {
    if (this.noPathTimer !== null || !this.isOpen || this.ending) return;
    this.pausedSinceMs = this.clock.nowMs();
    this.noPathTimer = this.clock.setTimeout(() => {
      this.noPathTimer = null;
      if (this.links.length > 0) return;
      const last = this.lastPathError ? ` (last: ${this.lastPathError.message})` : '';
      this.end(
        'timeout',
        new ConnectionError(`${this.id}: no path for ${this.opts.timeoutMs} ms${last}`),
      );
    }, this.opts.timeoutMs);
  }

  /** Milliseconds the session has had no path, or 0 when it has one. */
  pausedForMs(): number {
    return this.pausedSinceMs === null ? 0 : this.clock.nowMs() - this.pausedSinceMs;
  }

  // --- receiving -----------------------------------------------------------------------------
  private onPathMessage(link: PathLink, m: Message): void {
    if (!link.alive) return;
    link.lastHeardMs = this.clock.nowMs();
    if (m.type >= MP_TYPE_FIRST && m.type <= MP_TYPE_LAST) {
      this.onSessionFrame(link, m);
      return;
    }
    const seq = link.recvNext[m.stream];
    if (seq === null) {
      this.protocolError(link, `${m.stream} message before a sequence marker`);
      return;
    }
    link.recvNext[m.stream] = seq + 1;
    this.receive(link, m.stream, seq, m.type, m.payload);
  }

  private onSessionFrame(link: PathLink, m: Message): void {
    switch (m.type) {
      case MP_SEQ: {
        const r = decodeSeq(m.payload);
        if (!r.ok) return this.protocolError(link, r.error);
        link.recvNext[m.stream] = r.value;
        return;
      }
      case MP_ACK:
      case MP_RESUME: {
        const r = decodeNext(m.payload);
        if (!r.ok) return this.protocolError(link, r.error);
        this.applyAck(r.value, link);
        // The peer resumed on this path: it has given up its active one, so do we.
        if (m.type === MP_RESUME && this.active !== null && this.active !== link) {
          this.pathFailed(this.active, new ConnectionError('the peer resumed on another path'));
        }
        return;
      }
      case MP_HEARTBEAT: {
        const r = decodeHeartbeat(m.payload);
        if (!r.ok) return this.protocolError(link, r.error);
        if (!r.value.reply) {
          this.sendOn(
            link,
            'control',
            MP_HEARTBEAT,
            encodeHeartbeat({ reply: true, token: r.value.token }),
          );
        } else if (link.hbOutstanding && r.value.token === link.hbToken) {
          link.hbOutstanding = false;
          const sample = Math.max(0, this.clock.nowMs() - link.hbSentAtMs);
          link.srttMs = link.srttMs === null ? sample : link.srttMs * 0.875 + sample * 0.125;
        }
        return;
      }
      case MP_CLOSE: {
        const r = decodeClose(m.payload);
        if (!r.ok) return this.protocolError(link, r.error);
        this.end('by-peer', new ConnectionError(`${this.id}: closed by peer`));
        return;
      }
      default:
        this.protocolError(link, `unexpected session frame 0x${m.type.toString(16)}`);
    }
  }

  private protocolError(link: PathLink, what: string): void {
    this.pathFailed(link, new ProtocolError(`${link.name}: ${what}`));
  }

  private receive(
    link: PathLink,
    stream: StreamId,
    seq: number,
    type: number,
    payload: Buffer,
  ): void {
    const inn = this.inn[stream];
    if (seq < inn.next) {
      inn.duplicates++;
      return;
    }
    if (seq > inn.next) {
      if (!inn.held.has(seq)) {
        inn.held.set(seq, { type, payload });
        inn.heldBytes += payload.length;
        // The peer never has more than its replay buffer (plus one message) unacknowledged.
        if (inn.heldBytes > this.replayBytes + 2 * TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX) {
          this.protocolError(link, `${stream}: peer sent beyond its replay window`);
        }
      }
      return;
    }
    this.accept(stream, type, payload);
    for (;;) {
      const h = inn.held.get(inn.next);
      if (h === undefined || !this.isOpen) break;
      inn.held.delete(inn.next);
      inn.heldBytes -= h.payload.length;
      this.accept(stream, h.type, h.payload);
    }
  }

  private accept(stream: StreamId, type: number, payload: Buffer): void {
    this.inn[stream].next++;
    this.bytesSinceAck += payload.length + 1;
    this.ackOwed = true;
    this.deliver(stream, type, payload);
    if (this.bytesSinceAck >= Math.min(MULTIPATH_ACK_EVERY_BYTES, this.replayBytes / 4)) {
      this.sendAck();
    } else {
      this.ackTimer ??= this.clock.setTimeout(() => {
        this.ackTimer = null;
        this.sendAck();
      }, MULTIPATH_ACK_DELAY_MS);
    }
  }

  private sendAck(): void {
    if (!this.ackOwed || !this.isOpen) return;
    const link = this.active ?? this.bestLink();
    if (link === null) return; // the resume on the next path carries it
    this.sendOn(link, 'control', MP_ACK, encodeNext(this.receivedNext()));
    this.clearAckOwed();
  }

  private clearAckOwed(): void {
    this.ackOwed = false;
    this.bytesSinceAck = 0;
    this.ackTimer?.cancel();
    this.ackTimer = null;
  }

  private applyAck(next: NextSeqs, from: PathLink): void {
    for (const s of STREAMS) {
      const o = this.out[s];
      if (next[s] > o.nextSeq) {
        this.protocolError(from, `ack of ${s} message ${next[s]} never sent`);
        return;
      }
      while (o.head < o.items.length) {
        const e = o.items[o.head];
        if (e === undefined || e.seq >= next[s]) break;
        o.bytes -= e.bytes;
        o.head++;
      }
      if (o.scanFrom < o.head) o.scanFrom = o.head;
      o.compact();
      this.checkDrain(s);
    }
    if (this.out.data.bytes === 0 && this.out.control.bytes === 0) {
      for (const w of this.closeWaiters.splice(0)) w();
    }
  }

  // --- sending ---------------------------------------------------------------------------------
  protected writeFrame(stream: StreamId, type: number, payload: readonly Buffer[]): void {
    assert(
      type < MP_TYPE_FIRST || type > MP_TYPE_LAST,
      `message type 0x${type.toString(16)} is reserved for multipath sessions`,
    );
    let bytes = 0;
    for (const b of payload) bytes += b.length;
    const o = this.out[stream];
    o.items.push({ seq: o.nextSeq++, type, payload, bytes, path: null });
    o.bytes += bytes;
    this.pump();
  }

  /** Sends every unsent message that a path can take now. */
  private pump(): void {
    if (!this.isOpen) return;
    for (const s of STREAMS) {
      const o = this.out[s];
      for (let i = Math.max(o.scanFrom, o.head); i < o.items.length; i++) {
        const e = o.items[i];
        if (e === undefined) break;
        if (e.path === null) {
          const link = this.target(s);
          if (link === null) break;
          this.transmit(link, s, e);
          // The path died inside send(): the entry is unsent, and scanFrom must not pass it
          // (everything below scanFrom went out on a live path); the failover pumps again.
          if (e.path === null) break;
        }
        if (i === o.scanFrom) o.scanFrom = i + 1;
      }
    }
  }

  private target(stream: StreamId): PathLink | null {
    if (stream === 'data' && this.loadBalance) {
      let best: PathLink | null = null;
      let bestQueued = Infinity;
      for (const l of this.links) {
        if (l.blocked.data) continue;
        const q = l.channel.stats().data.queuedBytes;
        if (q < bestQueued || (q === bestQueued && best !== null && l.rank < best.rank)) {
          best = l;
          bestQueued = q;
        }
      }
      return best;
    }
    const a = this.active;
    return a === null || a.blocked[stream] ? null : a;
  }

  private transmit(link: PathLink, stream: StreamId, e: OutEntry): void {
    if (stream === 'control' && this.ackOwed) {
      // Piggyback: the ack rides in the same write as the CONTROL message.
      this.sendOn(link, 'control', MP_ACK, encodeNext(this.receivedNext()));
      this.clearAckOwed();
    }
    if (link.sendNext[stream] !== e.seq) this.sendOn(link, stream, MP_SEQ, encodeSeq(e.seq));
    // A path that failed while we wrote to it took its entries back (requeue).
    if (!link.alive) return;
    const status = link.channel.send(stream, e.type, e.payload);
    if (!link.alive) return;
    link.sendNext[stream] = e.seq + 1;
    e.path = link;
    if (status === 'over-high-water') link.blocked[stream] = true;
  }

  /** Sends a session frame on a path; a path that closed meanwhile is skipped. */
  private sendOn(link: PathLink, stream: StreamId, type: number, body: Buffer): void {
    if (link.alive && link.channel.isOpen) link.channel.send(stream, type, [body]);
  }

  // --- heartbeats ------------------------------------------------------------------------------
  private scheduleHeartbeat(): void {
    this.hbDueMs = this.clock.nowMs() + this.hbIntMs;
    this.hbTimer = this.clock.setTimeout(() => this.heartbeat(), this.hbIntMs);
  }

  /**
   * Every tick heartbeats each path and fails a silent one: a path carrying traffic after
   * MULTIPATH_ACTIVE_PATH_SILENT_HEARTBEATS intervals (well within ping-timeout, so failover
   * resumes before the layer above notices), an idle standby after ping-timeout.
   */
  private heartbeat(): void {
    this.hbTimer = null;
    if (!this.isOpen) return;
    const now = this.clock.nowMs();
    // A late tick means this process did not run (GC, a long task): what arrived meanwhile is
    // still unread, so silence proves nothing until the next tick. Never twice in a row: a
    // process that is always late must still detect a dead path.
    const judge = now - this.hbDueMs <= this.hbIntMs || this.hbSkipped;
    this.hbSkipped = !judge;
    for (const l of [...this.links]) {
      const silentMs = now - l.lastHeardMs;
      const limitMs = this.carriesTraffic(l)
        ? this.hbIntMs * MULTIPATH_ACTIVE_PATH_SILENT_HEARTBEATS
        : this.opts.pingTimeoutMs;
      if (judge && silentMs > limitMs) {
        this.pathFailed(
          l,
          new ConnectionError(
            `${l.name}: no heartbeat for ${Math.round(silentMs)} ms (ping-timeout ${this.opts.pingTimeoutMs} ms)`,
          ),
        );
      } else this.sendHeartbeat(l);
    }
    this.scheduleHeartbeat();
  }

  private carriesTraffic(l: PathLink): boolean {
    return l === this.active || this.loadBalance;
  }

  private sendHeartbeat(l: PathLink): void {
    if (!l.alive || !l.channel.isOpen) return;
    if (!l.hbOutstanding) {
      l.hbToken = (l.hbToken + 1) >>> 0;
      l.hbSentAtMs = this.clock.nowMs();
      l.hbOutstanding = true;
    }
    this.sendOn(l, 'control', MP_HEARTBEAT, encodeHeartbeat({ reply: false, token: l.hbToken }));
  }

  // --- BaseChannel -----------------------------------------------------------------------------
  /** Unacknowledged bytes: the replay buffer's level, which backpressure and drain follow. */
  protected queuedBytes(stream: StreamId): number {
    return this.out[stream].bytes;
  }

  protected flushedBytes(stream: StreamId): number {
    return this.out[stream].acked;
  }

  protected pauseDataRaw(): void {
    if (this.dataPaused) return;
    this.dataPaused = true;
    for (const l of this.links) l.channel.pauseData();
  }

  protected resumeDataRaw(): void {
    if (!this.dataPaused) return;
    this.dataPaused = false;
    for (const l of this.links) l.channel.resumeData();
  }

  /** Graceful: wait until the peer acknowledged everything, tell it, close the paths. */
  protected async endRaw(): Promise<void> {
    if (this.out.data.bytes > 0 || this.out.control.bytes > 0) {
      await new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    }
    if (!this.isOpen) return;
    this.ending = true;
    this.stopTimers();
    this.owner?.onSessionEnd();
    for (const l of this.links) {
      if (l.channel.isOpen) l.channel.send('control', MP_CLOSE, [encodeClose(false)]);
    }
    const links = [...this.links];
    this.removeLinks(links);
    await Promise.all(links.map((l) => this.closeLink(l)));
  }

  protected destroyRaw(): void {
    this.ending = true;
    this.stopTimers();
    this.owner?.onSessionEnd();
    for (const w of this.closeWaiters.splice(0)) w();
    for (const s of STREAMS) {
      this.out[s].items = [];
      this.out[s].head = this.out[s].scanFrom = 0;
      this.out[s].bytes = 0;
      this.inn[s].held.clear();
    }
    const links = [...this.links];
    this.removeLinks(links);
    for (const l of links) {
      if (l.channel.isOpen) l.channel.send('control', MP_CLOSE, [encodeClose(true)]);
      void this.closeLink(l);
    }
  }

  /**
   * Closes a path gracefully so a CLOSE notice gets through, dropping it after a linger. Done
   * when the channel is closed by any means: a path's close() may never settle when the peer
   * hangs up meanwhile.
   */
  private closeLink(l: PathLink): Promise<void> {
    l.alive = false;
    for (const off of l.offs.splice(0)) off();
    const ch = l.channel;
    ch.setReceiver(() => {});
    // Read on to the peer's end: a path whose DATA stays paused would not see the FIN until the
    // transport's own close linger gave up on it.
    ch.resumeData();
    if (!ch.isOpen) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const linger = this.clock.setTimeout(() => ch.destroy(), MULTIPATH_CLOSE_LINGER_MS);
      const off = ch.on('closed', () => {
        off();
        linger.cancel();
        resolve();
      });
      ch.close().catch(() => ch.destroy());
    });
  }

  private stopTimers(): void {
    this.hbTimer?.cancel();
    this.noPathTimer?.cancel();
    this.ackTimer?.cancel();
    this.hbTimer = this.noPathTimer = this.ackTimer = null;
  }

  /** Ends the session for a reason of the world (peer closed, refused a resume, no path left). */
  end(reason: CloseReason, error: Error): void {
    this.fail(reason, error);
  }

  /** Reports a path event from the dialer (held-down, connecting). */
  reportPath(ev: PathEvent): void {
    if (this.isOpen) this.emit('path', ev);
  }
}
