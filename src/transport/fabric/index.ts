// The fabric transport (`address sdp IP:PORT`, `transport "rdma"`): Channels over libfabric
// FI_EP_MSG connections (verbs on InfiniBand/RoCE, tcp or sockets without RDMA hardware).
// Selecting it where the addon or provider is missing fails with what to install.
import {
  FABRIC_BUFFER_BYTES_MAX,
  FABRIC_BUFFER_BYTES_MIN,
  FABRIC_BUFFERS_MAX,
  FABRIC_CONNECT_TIMEOUT_MS,
  FABRIC_CONTROL_CREDITS_MIN,
} from '../../limits.js';
import type { Clock } from '../../platform/clock.js';
import { ConnectionError, FabricUnavailableError, InvalidRequestError } from '../../util/errors.js';
import { resolveChannelOptions, type ResolvedChannelOptions } from '../channel-base.js';
import { tlsRefusal } from '../tls.js';
import type {
  ConnectOptions,
  ListenOptions,
  AcceptHandler,
  Channel,
  Endpoint,
  Listener,
  PathSpec,
  Transport,
  TransportStats,
} from '../types.js';
import {
  loadFabricAddon,
  providerPackage,
  type FabricAddon,
  type NativeConnection,
  type NativeConnectionEvent,
  type NativeConnectionOptions,
  type NativeListener,
} from './addon.js';
import { FabricChannel, type FabricChannelStats } from './channel.js';
import {
  defaultProgress,
  resolveFabricOptions,
  type FabricOptions,
  type ResolvedFabricOptions,
} from './options.js';
import { decodeConnHello, describeWireError, encodeConnHello, type ConnHello } from './wire.js';

export type { FabricOptions } from './options.js';
export type { FabricChannelStats } from './channel.js';
export { FabricChannel } from './channel.js';

/** The fabric transport: a Transport whose stats carry the zero-copy counters per connection. */
export interface FabricTransportApi extends Transport {
  readonly provider: string;
  stats(): FabricTransportStats;
}

export interface FabricDeps {
  readonly clock: Clock;
  /** Where FI_PROVIDER is read from. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** For tests: an addon other than native/build's. */
  readonly addon?: FabricAddon;
}

export interface FabricConnectionStats {
  readonly id: string;
  readonly provider: string;
  readonly zeroCopyBytes: number;
  readonly copiedBytes: number;
}

export interface FabricTransportStats extends TransportStats {
  readonly provider: string;
  readonly zeroCopyBytes: number;
  readonly copiedBytes: number;
  /** One entry per open channel (what `tandem status --json` shows beside the transport). */
  readonly connections: readonly FabricConnectionStats[];
}

const HELLO_BOUNDS = {
  bufferBytesMin: FABRIC_BUFFER_BYTES_MIN,
  bufferBytesMax: FABRIC_BUFFER_BYTES_MAX,
  controlCreditsMin: FABRIC_CONTROL_CREDITS_MIN,
  creditsMax: FABRIC_BUFFERS_MAX,
};

/**
 * The provider to use: the option, else $FI_PROVIDER, else verbs when a verbs device exists,
 * else tcp.
 */
export function chooseProvider(
  addon: FabricAddon,
  opt: string | undefined,
  env: NodeJS.ProcessEnv,
): string {
  if (opt !== undefined) return opt;
  const fromEnv = env['FI_PROVIDER'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv.split(',')[0] ?? fromEnv;
  return addon.getinfo({ provider: 'verbs' }).length > 0 ? 'verbs' : 'tcp';
}

/**
 * Builds the fabric transport, or throws FabricUnavailableError saying what to install when the
 * addon is not built or the provider is not there.
 */
export const fabricTransport =
  (opts: FabricOptions = {}) =>
  (deps: FabricDeps): FabricTransportApi => {
    const resolved = resolveFabricOptions(opts);
    let addon = deps.addon;
    if (addon === undefined) {
      const r = loadFabricAddon();
      if (!r.ok) throw new FabricUnavailableError(r.error);
      addon = r.value;
    }
    const env = deps.env ?? process.env;
    const provider = chooseProvider(addon, resolved.provider, env);
    if (addon.getinfo({ provider }).length === 0) {
      throw new FabricUnavailableError(
        `libfabric provider "${provider}" is not available here (FI_EP_MSG with FI_MSG|FI_RMA): ` +
          `install ${providerPackage(provider)}; fi_info -l lists the providers present`,
      );
    }
    return new FabricTransport(
      addon,
      provider,
      resolved,
      resolveChannelOptions(opts.channel),
      deps.clock,
    );
  };

class FabricTransport implements FabricTransportApi {
  readonly name = 'fabric' as const;
  private readonly channels = new Set<FabricChannel>();
  /** Closed channels whose endpoint waits for the peer to disconnect (graceful close). */
  private readonly lingering = new Set<FabricChannel>();
  private readonly listeners = new Set<NativeListener>();
  private readonly connecting = new Set<NativeConnection>();
  private opened = 0;
  private closedBytes = { sent: 0, received: 0, zeroCopy: 0, copied: 0 };
  private nextId = 1;

  constructor(
    private readonly addon: FabricAddon,
    readonly provider: string,
    private readonly opts: ResolvedFabricOptions,
    private readonly channelOpts: ResolvedChannelOptions,
    private readonly clock: Clock,
  ) {}

  private nativeOptions(): NativeConnectionOptions {
    return {
      provider: this.provider,
      bufferBytes: this.opts.bufferBytes,
      recvBuffers: this.opts.dataCredits + this.opts.controlCredits,
      sendBuffers: this.opts.sendBuffers,
      zcopyThreshold: this.opts.zcopyThresholdBytes,
      recvPollUs: this.opts.recvPollUs,
      progress: this.opts.progress ?? defaultProgress(this.provider),
    };
  }

  private hello(): ConnHello {
    return {
      bufferBytes: this.opts.bufferBytes,
      dataCredits: this.opts.dataCredits,
      controlCredits: this.opts.controlCredits,
    };
  }

  listen(endpoint: Endpoint, onChannel: AcceptHandler, opts?: ListenOptions): Promise<Listener> {
    const refused = tlsRefusal('fabric', opts);
    if (refused) return Promise.reject(refused);
    let native: NativeListener;
    try {
      native = this.addon.listen(
        { provider: this.provider, host: endpoint.address, port: String(endpoint.port) },
        (_kind, id, data) => this.onConnReq(native, endpoint, id, data, onChannel),
      );
    } catch (e) {
      return Promise.reject(
        new ConnectionError(
          `fabric listen on ${endpoint.address}:${endpoint.port} (${this.provider}): ${(e as Error).message}`,
        ),
      );
    }
    this.listeners.add(native);
    const bound: Endpoint = { ...endpoint, port: native.port };
    const listeners = this.listeners;
    return Promise.resolve({
      endpoint: bound,
      close(): Promise<void> {
        if (listeners.delete(native)) native.close();
        return Promise.resolve();
      },
    });
  }

  private onConnReq(
    native: NativeListener,
    endpoint: Endpoint,
    id: number,
    data: Buffer,
    onChannel: AcceptHandler,
  ): void {
    const peerHello = decodeConnHello(data, HELLO_BOUNDS);
    if (!peerHello.ok) {
      // Not a Tandem fabric peer, or one that lies about its buffers: refuse before any setup.
      native.reject(id);
      return;
    }
    const early: NativeConnectionEvent[] = [];
    let channel: FabricChannel | null = null;
    let conn: NativeConnection;
    const onEvent = (...e: NativeConnectionEvent): void => {
      if (channel !== null) return channel.onEvent(...e);
      if (e[0] === 'connected') {
        this.connecting.delete(conn);
        channel = this.makeChannel(conn, endpoint, false, peerHello.value);
        channel.start(early);
        if (channel.isOpen) onChannel(channel);
      } else if (e[0] === 'error' || e[0] === 'shutdown') {
        this.connecting.delete(conn);
        conn.close();
      } else {
        early.push(e);
      }
    };
    try {
      conn = native.accept(id, this.nativeOptions(), encodeConnHello(this.hello()), onEvent);
    } catch {
      return; // the request is gone (peer left); nothing to clean up
    }
    this.connecting.add(conn);
  }

  private makeChannel(
    conn: NativeConnection,
    peerEndpoint: Endpoint,
    initiator: boolean,
    peer: ConnHello,
    path?: PathSpec,
  ): FabricChannel {
    const id = `fabric-${this.nextId++}`;
    const ch = new FabricChannel(
      conn,
      {
        id,
        path: path ?? { peer: peerEndpoint },
        initiator,
        local: this.hello(),
        peer,
        zcopyThresholdBytes: this.opts.zcopyThresholdBytes,
        provider: this.provider,
      },
      this.clock,
      this.channelOpts,
      { gone: (c) => this.forget(c), lingering: (c, on) => this.setLingering(c, on) },
    );
    this.channels.add(ch);
    this.opened++;
    return ch;
  }

  private setLingering(c: FabricChannel, on: boolean): void {
    if (on) this.lingering.add(c);
    else this.lingering.delete(c);
  }

  private forget(c: FabricChannel): void {
    if (!this.channels.delete(c)) return;
    const s = c.stats();
    this.closedBytes.sent += s.data.bytesSent + s.control.bytesSent;
    this.closedBytes.received += s.data.bytesReceived + s.control.bytesReceived;
    this.closedBytes.zeroCopy += s.zeroCopyBytes;
    this.closedBytes.copied += s.copiedBytes;
  }

  connect(path: PathSpec, o: ConnectOptions): Promise<Channel> {
    const refused = tlsRefusal('fabric', o);
    if (refused) return Promise.reject(refused);
    const { peer } = path;
    if (peer.family === 'memory') {
      return Promise.reject(
        new InvalidRequestError(`fabric cannot reach a ${peer.family} address`),
      );
    }
    if (o.signal.aborted) return Promise.reject(o.signal.reason as Error);
    return new Promise<Channel>((resolve, reject) => {
      const early: NativeConnectionEvent[] = [];
      let channel: FabricChannel | null = null;
      let settled = false;
      let conn: NativeConnection | null = null;
      const finish = (e: Error | null): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        o.signal.removeEventListener('abort', onAbort);
        if (conn !== null) this.connecting.delete(conn);
        if (e !== null) {
          conn?.close();
          reject(e);
        }
      };
      const onAbort = (): void => finish(o.signal.reason as Error);
      const timer = this.clock.setTimeout(
        () =>
          finish(
            new ConnectionError(
              `fabric connect to ${peer.address}:${peer.port} timed out after ${FABRIC_CONNECT_TIMEOUT_MS} ms`,
            ),
          ),
        FABRIC_CONNECT_TIMEOUT_MS,
      );
      o.signal.addEventListener('abort', onAbort, { once: true });
      const onEvent = (...e: NativeConnectionEvent): void => {
        if (channel !== null) return channel.onEvent(...e);
        if (settled) return;
        switch (e[0]) {
          case 'connected': {
            const h = decodeConnHello(e[1], HELLO_BOUNDS);
            if (!h.ok) {
              finish(
                new ConnectionError(
                  `fabric peer ${peer.address}:${peer.port} answered with bad connection data: ${describeWireError(h.error)}`,
                ),
              );
              return;
            }
            finish(null);
            if (conn === null) return;
            channel = this.makeChannel(conn, peer, true, h.value, path);
            channel.start(early);
            resolve(channel);
            return;
          }
          case 'error':
            finish(
              new ConnectionError(
                `fabric connect to ${peer.address}:${peer.port} (${this.provider}) failed: ${e[1]} [${e[2]}]`,
              ),
            );
            return;
          case 'shutdown':
            finish(
              new ConnectionError(`fabric peer ${peer.address}:${peer.port} closed during connect`),
            );
            return;
          case 'recv':
          case 'sent':
            early.push(e);
            return;
        }
      };
      try {
        conn = this.addon.connect(
          { ...this.nativeOptions(), host: peer.address, port: String(peer.port) },
          encodeConnHello(this.hello()),
          onEvent,
        );
        this.connecting.add(conn);
      } catch (e) {
        finish(
          new ConnectionError(
            `fabric connect to ${peer.address}:${peer.port} (${this.provider}): ${(e as Error).message}`,
          ),
        );
      }
    });
  }

  stats(): FabricTransportStats {
    const connections: FabricConnectionStats[] = [];
    let sent = this.closedBytes.sent;
    let received = this.closedBytes.received;
    let zeroCopy = this.closedBytes.zeroCopy;
    let copied = this.closedBytes.copied;
    for (const c of this.channels) {
      const s: FabricChannelStats = c.stats();
      sent += s.data.bytesSent + s.control.bytesSent;
      received += s.data.bytesReceived + s.control.bytesReceived;
      zeroCopy += s.zeroCopyBytes;
      copied += s.copiedBytes;
      connections.push({
        id: c.id,
        provider: s.provider,
        zeroCopyBytes: s.zeroCopyBytes,
        copiedBytes: s.copiedBytes,
      });
    }
    return {
      channelsOpen: this.channels.size,
      channelsOpened: this.opened,
      bytesSent: sent,
      bytesReceived: received,
      provider: this.provider,
      zeroCopyBytes: zeroCopy,
      copiedBytes: copied,
      connections,
    };
  }

  close(): Promise<void> {
    for (const l of this.listeners) l.close();
    this.listeners.clear();
    for (const c of this.connecting) c.close();
    this.connecting.clear();
    for (const ch of [...this.channels]) ch.destroy();
    for (const ch of [...this.lingering]) ch.release();
    return Promise.resolve();
  }
}
