// The TCP transport: a channel is two TCP connections (data, control) that open with a
// STREAM_SETUP frame naming their role and a random connection cookie; the listener pairs
// sockets by cookie and answers STREAM_SETUP_ACK on control. IPv4 and IPv6 (IPoIB is IPv4/6
// on the IB interface). Nothing from the network can throw here: bad bytes close the socket.
import net, { type Socket } from 'node:net';
import {
  TCP_KEEPALIVE_IDLE_MS,
  TCP_PENDING_SOCKETS_MAX,
  TCP_SETUP_TIMEOUT_MS,
  TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX,
} from '../../limits.js';
import type { Clock, Timer } from '../../platform/clock.js';
import { ConnectionError, ProtocolError } from '../../util/errors.js';
import {
  ChannelRegistry,
  resolveChannelOptions,
  type ResolvedChannelOptions,
} from '../channel-base.js';
import {
  FrameDecoder,
  MSG_STREAM_SETUP,
  MSG_STREAM_SETUP_ACK,
  describeFrameError,
  encodeFrameHeader,
} from '../frame.js';
import type {
  AcceptHandler,
  Channel,
  ChannelOptions,
  Endpoint,
  Listener,
  Log,
  PathSpec,
  StreamId,
  Transport,
  TransportStats,
} from '../types.js';
import { TcpChannel, type TcpStreamParts } from './channel.js';
import { SlabReader } from './slab.js';

export interface TcpOptions extends ChannelOptions {
  /**
   * SO_SNDBUF / SO_RCVBUF (drbd.conf sndbuf-size, rcvbuf-size). Node's net API cannot set them
   * on TCP sockets; they are accepted, and a warning is logged once when set (the kernel's
   * autotuning applies). @default undefined (autotuning)
   */
  readonly sndbufBytes?: number;
  readonly rcvbufBytes?: number;
  /** TCP keepalive on both sockets, first probe after this idle time; 0 = off. @default TCP_KEEPALIVE_IDLE_MS */
  readonly keepaliveIdleMs?: number;
  /** Time to open both sockets and pair them. @default TCP_SETUP_TIMEOUT_MS */
  readonly setupTimeoutMs?: number;
}

export interface TcpDeps {
  readonly clock: Clock;
  /** Secure random bytes (connection cookies). */
  readonly randomBytes: (length: number) => Buffer;
  readonly log?: Log;
}

/** Cookie (16 bytes) + role (1 byte: 0 data, 1 control): STREAM_SETUP's payload. */
const COOKIE_BYTES = 16;
const SETUP_PAYLOAD_BYTES = COOKIE_BYTES + 1;
const ROLE: Record<StreamId, number> = { data: 0, control: 1 };

export const tcpTransport =
  (opts: TcpOptions = {}) =>
  (deps: TcpDeps): Transport =>
    new TcpTransport(deps, opts);

function familyOf(address: string): 'ipv4' | 'ipv6' {
  return net.isIPv6(address) ? 'ipv6' : 'ipv4';
}

function setupFrame(cookie: Buffer, stream: StreamId): Buffer[] {
  return [
    encodeFrameHeader(MSG_STREAM_SETUP, SETUP_PAYLOAD_BYTES),
    cookie,
    Buffer.of(ROLE[stream]),
  ];
}

export class TcpTransport implements Transport {
  readonly name = 'tcp' as const;
  private readonly chOpts: ResolvedChannelOptions;
  private readonly keepaliveIdleMs: number;
  private readonly setupTimeoutMs: number;
  private readonly registry = new ChannelRegistry();
  private readonly listeners = new Set<Listener>();
  private nextId = 1;
  private warnedBuf = false;

  constructor(
    private readonly deps: TcpDeps,
    private readonly opts: TcpOptions,
  ) {
    this.chOpts = resolveChannelOptions(opts);
    this.keepaliveIdleMs = opts.keepaliveIdleMs ?? TCP_KEEPALIVE_IDLE_MS;
    this.setupTimeoutMs = opts.setupTimeoutMs ?? TCP_SETUP_TIMEOUT_MS;
  }

  private tune(sock: Socket): void {
    sock.setNoDelay(true);
    if (this.keepaliveIdleMs > 0) sock.setKeepAlive(true, this.keepaliveIdleMs);
    if (
      !this.warnedBuf &&
      (this.opts.sndbufBytes !== undefined || this.opts.rcvbufBytes !== undefined)
    ) {
      this.warnedBuf = true;
      this.deps.log?.warn(
        { sndbufBytes: this.opts.sndbufBytes, rcvbufBytes: this.opts.rcvbufBytes },
        'tcp: sndbuf-size/rcvbuf-size cannot be set from Node.js; kernel autotuning applies',
      );
    }
  }

  private newId(initiator: boolean): string {
    return `tcp-${initiator ? 'c' : 'a'}${this.nextId++}`;
  }

  private track(ch: TcpChannel): void {
    this.registry.track(ch);
  }

  connect(path: PathSpec, o: { readonly signal: AbortSignal }): Promise<Channel> {
    const { signal } = o;
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    const cookie = this.deps.randomBytes(COOKIE_BYTES);
    const where = `${path.peer.address}:${path.peer.port}`;
    return new Promise<Channel>((resolve, reject) => {
      const socks: Socket[] = [];
      let settled = false;
      const decoders = { data: new FrameDecoder(), control: new FrameDecoder() };
      const fail = (e: Error): void => {
        if (settled) return;
        settled = true;
        timer.cancel();
        signal.removeEventListener('abort', onAbort);
        for (const s of socks) {
          s.removeAllListeners();
          s.on('error', () => {});
          s.destroy();
        }
        reject(e);
      };
      const onAbort = (): void => fail(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      const timer: Timer = this.deps.clock.setTimeout(
        () => fail(new ConnectionError(`tcp: connecting to ${where} timed out`)),
        this.setupTimeoutMs,
      );
      const slabs = { data: new SlabReader(), control: new SlabReader() };
      const open = (stream: StreamId): Socket => {
        const sock = net.connect({
          onread: slabs[stream].onread,
          host: path.peer.address,
          port: path.peer.port,
          ...(path.local ? { localAddress: path.local.address } : {}),
          ...(path.local && path.local.port !== 0 ? { localPort: path.local.port } : {}),
        });
        socks.push(sock);
        sock.on('error', (e) =>
          fail(new ConnectionError(`tcp: ${where}: ${e.message}`, { cause: e })),
        );
        sock.on('close', () => fail(new ConnectionError(`tcp: ${where} closed during setup`)));
        sock.on('connect', () => {
          this.tune(sock);
          sock.cork();
          for (const b of setupFrame(cookie, stream)) sock.write(b);
          sock.uncork();
        });
        slabs[stream].sink = (chunk: Buffer): void => {
          decoders[stream].push(chunk);
          if (stream === 'control') onControl();
          else fail(new ProtocolError(`tcp: ${where} sent data before setup`));
        };
        return sock;
      };
      const data = open('data');
      const control = open('control');
      const onControl = (): void => {
        const r = decoders.control.next();
        if (!r.ok) return fail(new ProtocolError(`tcp: ${where}: ${describeFrameError(r.error)}`));
        if (r.frame === null) return;
        if (r.frame.type !== MSG_STREAM_SETUP_ACK || !r.frame.payload.equals(cookie)) {
          return fail(new ProtocolError(`tcp: ${where} answered setup with something else`));
        }
        settled = true;
        timer.cancel();
        signal.removeEventListener('abort', onAbort);
        const ch = new TcpChannel(
          this.newId(true),
          {
            ...(path.local ? { local: path.local } : {}),
            peer: path.peer,
          },
          true,
          this.deps.clock,
          this.chOpts,
          { socket: data, decoder: decoders.data, slab: slabs.data },
          { socket: control, decoder: decoders.control, slab: slabs.control },
        );
        this.track(ch);
        resolve(ch);
        ch.start();
      };
    });
  }

  async listen(endpoint: Endpoint, onChannel: AcceptHandler): Promise<Listener> {
    const pending = new Map<string, PendingPair>();
    /** Accepted sockets that have not finished their stream setup. */
    const settingUp = new Set<Socket>();
    const server = net.createServer({ noDelay: true, pauseOnConnect: false });
    const log = this.deps.log;
    const reject = (sock: Socket, why: string): void => {
      log?.warn(
        { remote: `${sock.remoteAddress}:${sock.remotePort}` },
        `tcp: refused socket: ${why}`,
      );
      sock.destroy();
    };
    server.on('connection', (sock: Socket) => {
      sock.on('error', () => {}); // a reset during setup is handled by 'close'
      if (settingUp.size >= TCP_PENDING_SOCKETS_MAX)
        return reject(sock, 'too many pending sockets');
      settingUp.add(sock);
      this.tune(sock);
      const dec = new FrameDecoder(SETUP_PAYLOAD_BYTES);
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        settingUp.delete(sock);
        timer.cancel();
        sock.removeAllListeners('data');
        sock.removeAllListeners('close');
      };
      const timer = this.deps.clock.setTimeout(() => {
        finish();
        reject(sock, 'no stream setup in time');
      }, this.setupTimeoutMs);
      sock.on('close', () => finish());
      sock.on('data', (chunk: Buffer) => {
        dec.push(chunk);
        const r = dec.next();
        if (!r.ok) {
          finish();
          return reject(sock, describeFrameError(r.error));
        }
        if (r.frame === null) return;
        const { type, payload } = r.frame;
        const role = payload[COOKIE_BYTES];
        if (
          type !== MSG_STREAM_SETUP ||
          payload.length !== SETUP_PAYLOAD_BYTES ||
          (role !== 0 && role !== 1)
        ) {
          finish();
          return reject(sock, 'first frame is not a valid stream setup');
        }
        finish();
        sock.pause();
        dec.setMaxPayloadBytes(TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX);
        const stream: StreamId = role === 0 ? 'data' : 'control';
        this.pair(
          pending,
          payload.subarray(0, COOKIE_BYTES),
          stream,
          { socket: sock, decoder: dec },
          endpoint,
          onChannel,
        );
      });
    });
    await new Promise<void>((resolve, rejectListen) => {
      server.once('error', (e) =>
        rejectListen(
          new ConnectionError(
            `tcp: cannot listen on ${endpoint.address}:${endpoint.port}: ${e.message}`,
            { cause: e },
          ),
        ),
      );
      server.listen(
        {
          host: endpoint.address,
          port: endpoint.port,
          ipv6Only: familyOf(endpoint.address) === 'ipv6',
        },
        resolve,
      );
    });
    server.on('error', (e) => log?.warn({ err: e.message }, 'tcp: listener error'));
    const addr = server.address();
    const port = typeof addr === 'object' && addr !== null ? addr.port : endpoint.port;
    let closing: Promise<void> | null = null;
    const listener: Listener = {
      endpoint: { ...endpoint, transport: 'tcp', family: familyOf(endpoint.address), port },
      close: () => {
        closing ??= new Promise<void>((resolve) => {
          this.listeners.delete(listener);
          for (const p of pending.values()) p.drop();
          for (const sock of settingUp) sock.destroy();
          settingUp.clear();
          pending.clear();
          // Stops accepting at once; net.Server's callback would also wait for every channel
          // this listener accepted to end, and those stay open (the Listener contract).
          server.close();
          setImmediate(resolve);
        });
        return closing;
      },
    };
    this.listeners.add(listener);
    return listener;
  }

  private pair(
    pending: Map<string, PendingPair>,
    cookie: Buffer,
    stream: StreamId,
    part: TcpStreamParts,
    endpoint: Endpoint,
    onChannel: AcceptHandler,
  ): void {
    const key = cookie.toString('hex');
    let p = pending.get(key);
    if (p === undefined) {
      if (pending.size >= TCP_PENDING_SOCKETS_MAX) {
        part.socket.destroy();
        return;
      }
      p = new PendingPair(this.deps.clock, this.setupTimeoutMs, () => pending.delete(key));
      pending.set(key, p);
    }
    if (p.parts[stream] !== undefined) {
      // Two sockets claim one role of one connection: not a Tandem peer; drop both.
      p.drop();
      part.socket.destroy();
      pending.delete(key);
      return;
    }
    p.parts[stream] = part;
    const { data, control } = p.parts;
    if (data === undefined || control === undefined) return;
    p.settle();
    pending.delete(key);
    const remote = control.socket.remoteAddress ?? '';
    const ch = new TcpChannel(
      this.newId(false),
      {
        local: { ...endpoint, transport: 'tcp' },
        peer: {
          transport: 'tcp',
          family: familyOf(remote),
          address: remote,
          port: control.socket.remotePort ?? 0,
        },
      },
      false,
      this.deps.clock,
      this.chOpts,
      data,
      control,
    );
    control.socket.write(encodeFrameHeader(MSG_STREAM_SETUP_ACK, COOKIE_BYTES));
    control.socket.write(cookie);
    this.track(ch);
    onChannel(ch);
    data.socket.resume();
    control.socket.resume();
    ch.start();
  }

  stats(): TransportStats {
    return this.registry.stats();
  }

  async close(): Promise<void> {
    this.registry.destroyAll();
    await Promise.all([...this.listeners].map((l) => l.close()));
  }
}

/** Accepted sockets of one cookie waiting for their partner. */
class PendingPair {
  readonly parts: { data?: TcpStreamParts; control?: TcpStreamParts } = {};
  private readonly timer: Timer;

  constructor(clock: Clock, timeoutMs: number, onExpire: () => void) {
    this.timer = clock.setTimeout(() => {
      this.drop();
      onExpire();
    }, timeoutMs);
  }

  settle(): void {
    this.timer.cancel();
  }

  drop(): void {
    this.timer.cancel();
    this.parts.data?.socket.destroy();
    this.parts.control?.socket.destroy();
  }
}
