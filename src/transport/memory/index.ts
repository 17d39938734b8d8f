// The in-memory transport: channels between Transports of one MemoryNetwork, for tests and the
// simulator. Every delivery is scheduled on the injected Clock, so a virtual clock drives it
// deterministically. Messages are atomic; per-stream order holds; DATA held back by a paused
// receiver stays in the sender's queue (like a closed TCP window) and CONTROL passes it.
import type { Clock, Timer } from '../../platform/clock.js';
import { ConnectionError } from '../../util/errors.js';
import {
  BaseChannel,
  ChannelRegistry,
  resolveChannelOptions,
  type ResolvedChannelOptions,
} from '../channel-base.js';
import { tlsRefusal } from '../tls.js';
import type {
  ConnectOptions,
  ListenOptions,
  AcceptHandler,
  Channel,
  ChannelOptions,
  Endpoint,
  Listener,
  PathSpec,
  StreamId,
  Transport,
  TransportStats,
} from '../types.js';

export interface MemoryNetworkOptions {
  /** Delay of every delivery, in Clock milliseconds. @default 0 */
  readonly latencyMs?: number;
}

interface QueuedFrame {
  readonly type: number;
  readonly payload: readonly Buffer[];
  readonly bytes: number;
  /** Clock time at which the frame reaches the peer. */
  readonly dueMs: number;
}

/** A set of in-process nodes; one per test or simulation. */
export class MemoryNetwork {
  readonly latencyMs: number;
  private readonly listeners = new Map<
    string,
    { transport: MemoryTransport; onChannel: AcceptHandler }
  >();
  private nextId = 1;

  constructor(
    readonly clock: Clock,
    opts: MemoryNetworkOptions = {},
  ) {
    this.latencyMs = opts.latencyMs ?? 0;
  }

  /** One node's transport on this network. */
  transport(opts: ChannelOptions = {}): Transport {
    return new MemoryTransport(this, resolveChannelOptions(opts));
  }

  /**
   * Stops all delivery on the channel and its peer in both directions without closing either
   * (a half-open connection: cable pulled, peer hung). Liveness must then declare it dead.
   */
  blackhole(channel: Channel): void {
    if (channel instanceof MemoryChannel) channel.setBlackholed();
  }

  /** @internal */
  newId(): string {
    return `mem-${this.nextId++}`;
  }

  /** @internal */
  bind(address: string, transport: MemoryTransport, onChannel: AcceptHandler): boolean {
    if (this.listeners.has(address)) return false;
    this.listeners.set(address, { transport, onChannel });
    return true;
  }

  /** @internal */
  unbind(address: string, transport: MemoryTransport): void {
    if (this.listeners.get(address)?.transport === transport) this.listeners.delete(address);
  }

  /** @internal */
  lookup(address: string): { transport: MemoryTransport; onChannel: AcceptHandler } | undefined {
    return this.listeners.get(address);
  }
}

class MemoryTransport implements Transport {
  readonly name = 'memory' as const;
  private readonly registry = new ChannelRegistry();
  private readonly bound = new Set<string>();

  constructor(
    readonly network: MemoryNetwork,
    readonly opts: ResolvedChannelOptions,
  ) {}

  listen(endpoint: Endpoint, onChannel: AcceptHandler, opts?: ListenOptions): Promise<Listener> {
    const refused = tlsRefusal('memory', opts);
    if (refused) return Promise.reject(refused);
    if (endpoint.family !== 'memory' || !this.network.bind(endpoint.address, this, onChannel)) {
      return Promise.reject(
        new ConnectionError(`memory: cannot listen on ${endpoint.address}: in use or not memory`),
      );
    }
    this.bound.add(endpoint.address);
    const listener: Listener = {
      endpoint: { ...endpoint, transport: 'memory', port: 0 },
      close: () => {
        this.network.unbind(endpoint.address, this);
        this.bound.delete(endpoint.address);
        return Promise.resolve();
      },
    };
    return Promise.resolve(listener);
  }

  connect(path: PathSpec, opts: ConnectOptions): Promise<Channel> {
    const refused = tlsRefusal('memory', opts);
    if (refused) return Promise.reject(refused);
    const { signal } = opts;
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<Channel>((resolve, reject) => {
      const timer: Timer = this.network.clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        const target = this.network.lookup(path.peer.address);
        if (target === undefined) {
          reject(new ConnectionError(`memory: connection refused by ${path.peer.address}`));
          return;
        }
        const localAddress = path.local?.address ?? `client-${this.network.newId()}`;
        const a = new MemoryChannel(this, path, true);
        const b = new MemoryChannel(
          target.transport,
          {
            local: path.peer,
            peer: { transport: 'memory', family: 'memory', address: localAddress, port: 0 },
          },
          false,
        );
        a.link(b);
        b.link(a);
        this.track(a);
        target.transport.track(b);
        a.up();
        b.up();
        target.onChannel(b);
        resolve(a);
      }, this.network.latencyMs);
      const onAbort = (): void => {
        timer.cancel();
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  stats(): TransportStats {
    return this.registry.stats();
  }

  async close(): Promise<void> {
    for (const a of this.bound) this.network.unbind(a, this);
    this.bound.clear();
    this.registry.destroyAll();
    await Promise.resolve();
  }

  track(c: MemoryChannel): void {
    this.registry.track(c);
  }
}

class MemoryChannel extends BaseChannel {
  private peer: MemoryChannel | null = null;
  private readonly outbox: { [S in StreamId]: QueuedFrame[] } = { data: [], control: [] };
  private readonly outboxBytes = { data: 0, control: 0 };
  private readonly flushed = { data: 0, control: 0 };
  private flushTimer: Timer | null = null;
  private dataHeld = false;
  private blackholed = false;
  private endWaiters: (() => void)[] = [];

  constructor(
    private readonly owner: MemoryTransport,
    path: PathSpec,
    initiator: boolean,
  ) {
    super(owner.network.newId(), 'memory', path, initiator, owner.network.clock, owner.opts);
  }

  link(peer: MemoryChannel): void {
    this.peer = peer;
  }

  up(): void {
    this.startLiveness();
    this.emit('established');
    this.emit('path', { path: this.path, state: 'established' });
  }

  setBlackholed(): void {
    this.blackholed = true;
    if (this.peer) this.peer.blackholed = true;
  }

  protected writeFrame(stream: StreamId, type: number, payload: readonly Buffer[]): void {
    let bytes = 0;
    for (const b of payload) bytes += b.length;
    const dueMs = this.clock.nowMs() + this.owner.network.latencyMs;
    this.outbox[stream].push({ type, payload, bytes, dueMs });
    this.outboxBytes[stream] += bytes;
    this.scheduleFlush();
  }

  protected queuedBytes(stream: StreamId): number {
    return this.outboxBytes[stream];
  }

  protected flushedBytes(stream: StreamId): number {
    return this.flushed[stream];
  }

  protected pauseDataRaw(): void {
    this.dataHeld = true;
  }

  protected resumeDataRaw(): void {
    if (!this.dataHeld) return;
    this.dataHeld = false;
    this.peer?.scheduleFlush();
  }

  protected endRaw(): Promise<void> {
    if (this.blackholed || this.empty()) {
      this.hangUpPeer();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.endWaiters.push(() => {
        this.hangUpPeer();
        resolve();
      });
    });
  }

  protected destroyRaw(): void {
    this.outbox.data.length = this.outbox.control.length = 0;
    this.outboxBytes.data = this.outboxBytes.control = 0;
    this.flushTimer?.cancel();
    this.flushTimer = null;
    this.hangUpPeer();
    for (const w of this.endWaiters.splice(0)) w();
  }

  private empty(): boolean {
    return this.outbox.data.length === 0 && this.outbox.control.length === 0;
  }

  private hangUpPeer(): void {
    const peer = this.peer;
    this.peer = null;
    if (peer === null || this.blackholed) return;
    // The peer learns of the close after the network latency, like a FIN or RST would arrive.
    this.clock.setTimeout(() => {
      peer.fail('by-peer', new ConnectionError(`${peer.id}: closed by peer`));
    }, this.owner.network.latencyMs);
  }

  /** Arms the timer for the earliest frame due; a frame never arrives before its due time. */
  private scheduleFlush(): void {
    // A peer that closed takes nothing more (and re-arming would spin at one instant of time).
    if (this.flushTimer !== null || this.blackholed || this.peer?.isOpen !== true) return;
    let due = Infinity;
    for (const s of ['control', 'data'] as const) {
      const f = this.outbox[s][0];
      if (f !== undefined && !(s === 'data' && this.peer?.dataHeld === true)) {
        due = Math.min(due, f.dueMs);
      }
    }
    if (due === Infinity) return;
    this.flushTimer = this.clock.setTimeout(
      () => {
        this.flushTimer = null;
        this.flush();
        this.scheduleFlush();
      },
      Math.max(0, due - this.clock.nowMs()),
    );
  }

  private flush(): void {
    const peer = this.peer;
    if (peer === null || this.blackholed) return;
    const now = this.clock.nowMs();
    // CONTROL first: it must never wait behind DATA.
    for (const stream of ['control', 'data'] as const) {
      const q = this.outbox[stream];
      while (q.length > 0 && this.isOpen && peer.isOpen) {
        if (stream === 'data' && peer.dataHeld) break;
        const head = q[0];
        if (head === undefined || head.dueMs > now) break;
        const f = head;
        q.shift();
        this.outboxBytes[stream] -= f.bytes;
        this.flushed[stream] += f.bytes;
        const payload =
          f.payload.length === 1 && f.payload[0] ? f.payload[0] : Buffer.concat(f.payload);
        peer.deliver(stream, f.type, payload);
      }
      this.checkDrain(stream);
    }
    if (this.empty()) for (const w of this.endWaiters.splice(0)) w();
  }
}
