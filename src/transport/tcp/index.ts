// The TCP transport: a channel is two TCP connections (data, control) that open with a
// STREAM_SETUP frame naming their role and a random connection cookie; the listener pairs
// sockets by cookie and answers STREAM_SETUP_ACK on control. IPv4 and IPv6 (IPoIB is IPv4/6
// on the IB interface). Nothing from the network can throw here: bad bytes close the socket.
import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import {
  TCP_KEEPALIVE_IDLE_MS,
  TCP_PENDING_SOCKETS_MAX,
  TCP_REFUSE_REASON_BYTES_MAX,
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
  MSG_STREAM_REFUSE,
  MSG_STREAM_SETUP,
  MSG_STREAM_SETUP_ACK,
  MSG_STREAM_STARTTLS,
  MSG_STREAM_STARTTLS_ACK,
  describeFrameError,
  encodeFrameHeader,
} from '../frame.js';
import type {
  AcceptHandler,
  Channel,
  ChannelOptions,
  ChannelTls,
  ConnectOptions,
  Endpoint,
  Listener,
  ListenOptions,
  Log,
  PathSpec,
  StreamId,
  Transport,
  TlsCredentials,
  TransportStats,
} from '../types.js';
import {
  decodeStreamRefuse,
  describeRefusal,
  describeTlsError,
  describeVerifyError,
  encodeStreamRefuse,
  hasCertificate,
  type StreamRefusal,
} from '../tls.js';
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

/** The oldest TLS version a node accepts (1.3 is negotiated when both sides have it). */
const TLS_MIN_VERSION = 'TLSv1.2';

function refuseFrame(r: StreamRefusal): Buffer {
  const payload = encodeStreamRefuse(r);
  return Buffer.concat([encodeFrameHeader(MSG_STREAM_REFUSE, payload.length), payload]);
}

function refusedBy(where: string, payload: Buffer): ConnectionError {
  const d = decodeStreamRefuse(payload);
  return new ConnectionError(
    `tcp: ${where}: ${d.ok ? describeRefusal(d.value) : `refused (${d.error})`}`,
  );
}

function describeSocketError(e: Error): string {
  return describeTlsError(e);
}

/** Both TLS streams show the same peer certificate (by fingerprint). */
function sameIdentity(a: TcpStreamParts, b: TcpStreamParts): boolean {
  const fa = (a.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
  const fb = (b.socket as tls.TLSSocket).getPeerCertificate().fingerprint256;
  return typeof fa === 'string' && fa === fb;
}

/** The session of a verified TLS socket, as the channel reports it. */
function channelTls(ts: tls.TLSSocket): ChannelTls {
  const cipher = ts.getCipher();
  return {
    protocol: ts.getProtocol() ?? 'TLS',
    cipher: cipher.standardName || cipher.name,
    peerCertificate: ts.getPeerCertificate(),
  };
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

  connect(path: PathSpec, o: ConnectOptions): Promise<Channel> {
    const { signal, tls: creds } = o;
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    const cookie = this.deps.randomBytes(COOKIE_BYTES);
    const where = `${path.peer.address}:${path.peer.port}`;
    return new Promise<Channel>((resolve, reject) => {
      /** Every socket made here (plain ones, and the TLS ones over them): destroyed on failure. */
      const socks: Socket[] = [];
      /** The socket each stream's frames travel on once set up (the TLS one with credentials). */
      const ready: Partial<Record<StreamId, Socket>> = {};
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
      const guard = (sock: Socket, what: string): void => {
        socks.push(sock);
        sock.on('error', (e) =>
          fail(
            new ConnectionError(`tcp: ${where}: ${what}${describeSocketError(e)}`, { cause: e }),
          ),
        );
        sock.on('close', () => fail(new ConnectionError(`tcp: ${where} closed during setup`)));
      };
      const sendSetup = (sock: Socket, stream: StreamId): void => {
        sock.cork();
        for (const b of setupFrame(cookie, stream)) sock.write(b);
        sock.uncork();
      };
      /** TLS: the acceptor said go ahead; the handshake, then our own check of its certificate. */
      const startTls = (raw: Socket, stream: StreamId, c: TlsCredentials): void => {
        const ts = tls.connect({
          socket: raw,
          secureContext: c.context,
          minVersion: TLS_MIN_VERSION,
          // Verified here, so that a refusal can tell the acceptor why; the name is checked by
          // the connection manager once the hello says which node this is.
          rejectUnauthorized: false,
          checkServerIdentity: () => undefined,
        });
        guard(ts, 'TLS handshake failed: ');
        ts.on('data', (chunk: Buffer) => onChunk(stream, chunk));
        ts.on('secureConnect', () => {
          const cert = ts.getPeerCertificate();
          if (!ts.authorized || !hasCertificate(cert)) {
            const why = describeVerifyError(ts.authorizationError, hasCertificate(cert));
            // Tell the acceptor why before closing: these sockets leave `socks`, fail() must
            // not destroy them before the refusal is out.
            for (const x of [ts, raw]) socks.splice(socks.indexOf(x), 1);
            ts.end(refuseFrame({ code: 'cert-rejected', reason: why }));
            const linger = this.deps.clock.setTimeout(() => ts.destroy(), this.setupTimeoutMs);
            ts.once('close', () => linger.cancel());
            return fail(
              new ConnectionError(`tcp: ${where}: TLS: the peer's certificate is refused: ${why}`),
            );
          }
          ready[stream] = ts;
          sendSetup(ts, stream);
        });
      };
      const open = (stream: StreamId): void => {
        const raw = net.connect({
          // A TLS socket reads through OpenSSL in record-sized chunks; the slab is for clear ones.
          ...(creds ? {} : { onread: slabs[stream].onread }),
          host: path.peer.address,
          port: path.peer.port,
          ...(path.local ? { localAddress: path.local.address } : {}),
          ...(path.local && path.local.port !== 0 ? { localPort: path.local.port } : {}),
        });
        guard(raw, '');
        raw.on('connect', () => {
          this.tune(raw);
          if (creds === undefined) {
            ready[stream] = raw;
            sendSetup(raw, stream);
            return;
          }
          raw.write(encodeFrameHeader(MSG_STREAM_STARTTLS, 0));
          const pre = new FrameDecoder(TCP_REFUSE_REASON_BYTES_MAX + 1);
          const onPre = (chunk: Buffer): void => {
            pre.push(chunk);
            const r = pre.next();
            if (!r.ok)
              return fail(new ProtocolError(`tcp: ${where}: ${describeFrameError(r.error)}`));
            if (r.frame === null) return;
            if (r.frame.type === MSG_STREAM_REFUSE) return fail(refusedBy(where, r.frame.payload));
            if (r.frame.type !== MSG_STREAM_STARTTLS_ACK || pre.bufferedBytes > 0) {
              return fail(new ProtocolError(`tcp: ${where} answered STARTTLS with something else`));
            }
            raw.removeListener('data', onPre);
            startTls(raw, stream, creds);
          };
          raw.on('data', onPre);
        });
        if (creds === undefined)
          slabs[stream].sink = (chunk: Buffer): void => onChunk(stream, chunk);
      };
      const onChunk = (stream: StreamId, chunk: Buffer): void => {
        decoders[stream].push(chunk);
        if (stream === 'control') return onControl();
        // Nothing comes on DATA before the channel is up, but the acceptor's refusal.
        const r = decoders.data.next();
        if (r.ok && r.frame?.type === MSG_STREAM_REFUSE)
          return fail(refusedBy(where, r.frame.payload));
        if (r.ok && r.frame === null) return;
        fail(new ProtocolError(`tcp: ${where} sent data before setup`));
      };
      open('data');
      open('control');
      const onControl = (): void => {
        const r = decoders.control.next();
        if (!r.ok) return fail(new ProtocolError(`tcp: ${where}: ${describeFrameError(r.error)}`));
        if (r.frame === null) return;
        if (r.frame.type === MSG_STREAM_REFUSE) return fail(refusedBy(where, r.frame.payload));
        if (r.frame.type !== MSG_STREAM_SETUP_ACK || !r.frame.payload.equals(cookie)) {
          return fail(new ProtocolError(`tcp: ${where} answered setup with something else`));
        }
        const data = ready.data;
        const control = ready.control;
        if (data === undefined || control === undefined) {
          return fail(new ProtocolError(`tcp: ${where} acknowledged setup before both streams`));
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
          { socket: data, decoder: decoders.data, ...(creds ? {} : { slab: slabs.data }) },
          { socket: control, decoder: decoders.control, ...(creds ? {} : { slab: slabs.control }) },
          creds ? channelTls(control as tls.TLSSocket) : undefined,
        );
        this.track(ch);
        resolve(ch);
        ch.start();
      };
    });
  }

  async listen(
    endpoint: Endpoint,
    onChannel: AcceptHandler,
    opts: ListenOptions = {},
  ): Promise<Listener> {
    const pending = new Map<string, PendingPair>();
    /** Accepted sockets that have not finished their stream setup. */
    const settingUp = new Set<Socket>();
    const server = net.createServer({ noDelay: true, pauseOnConnect: false });
    const log = this.deps.log;
    const creds = opts.tls;
    const refused = (sock: Socket, why: string): void => {
      const remote = { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 };
      log?.warn({ remote: `${remote.address}:${remote.port}` }, `tcp: refused socket: ${why}`);
      opts.onRefused?.(remote, why);
    };
    const reject = (sock: Socket, why: string, tell?: StreamRefusal): void => {
      refused(sock, why);
      if (tell === undefined) {
        sock.destroy();
        return;
      }
      // The peer learns why before the socket closes; destroyed if it does not close in time.
      sock.end(refuseFrame(tell));
      const t = this.deps.clock.setTimeout(() => sock.destroy(), this.setupTimeoutMs);
      sock.once('close', () => t.cancel());
    };
    /**
     * The first frames of one socket (clear, or inside TLS): a stream setup, paired by cookie;
     * with TLS also the dialer's refusal of our certificate.
     */
    const setup = (sock: Socket, secure: boolean): void => {
      if (settingUp.size >= TCP_PENDING_SOCKETS_MAX)
        return reject(sock, 'too many pending sockets');
      settingUp.add(sock);
      const dec = new FrameDecoder(TCP_REFUSE_REASON_BYTES_MAX + 1);
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        settingUp.delete(sock);
        timer.cancel();
        sock.removeListener('data', onData);
        sock.removeAllListeners('close');
      };
      const timer = this.deps.clock.setTimeout(() => {
        finish();
        reject(sock, 'no stream setup in time');
      }, this.setupTimeoutMs);
      sock.on('close', () => finish());
      const onData = (chunk: Buffer): void => {
        dec.push(chunk);
        const r = dec.next();
        if (!r.ok) {
          finish();
          return reject(sock, describeFrameError(r.error));
        }
        if (r.frame === null) return;
        const { type, payload } = r.frame;
        if (type === MSG_STREAM_STARTTLS && !secure) {
          finish();
          if (creds === undefined) {
            return reject(
              sock,
              'the peer wants TLS (net { tls yes; } there) but this node has tls no',
              {
                code: 'tls-unsupported',
                reason: 'tls no on the acceptor',
              },
            );
          }
          if (dec.bufferedBytes > 0) return reject(sock, 'bytes after STARTTLS');
          sock.write(encodeFrameHeader(MSG_STREAM_STARTTLS_ACK, 0));
          return handshake(sock);
        }
        if (type === MSG_STREAM_REFUSE && secure) {
          finish();
          const d = decodeStreamRefuse(payload);
          return reject(
            sock,
            d.ok && d.value.code === 'cert-rejected'
              ? `TLS: the peer rejected this node's certificate: ${d.value.reason} (check tls-certificate here and tls-ca there)`
              : 'bad stream refusal',
          );
        }
        const role = payload[COOKIE_BYTES];
        if (type === MSG_STREAM_SETUP && creds !== undefined && !secure) {
          finish();
          return reject(
            sock,
            'the peer connects without TLS but this node requires it (net { tls yes; })',
            {
              code: 'tls-required',
              reason: 'tls yes on the acceptor',
            },
          );
        }
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
      };
      sock.on('data', onData);
    };
    // TLS: a tls.Server that never listens; sockets that asked for STARTTLS are handed to it.
    const tlsServer =
      creds === undefined
        ? null
        : tls.createServer({
            cert: creds.certPem,
            key: creds.keyPem,
            ca: creds.caPem,
            minVersion: TLS_MIN_VERSION,
            requestCert: true,
            // Verified in 'secureConnection', so that the refusal can tell the dialer why.
            rejectUnauthorized: false,
            handshakeTimeout: this.setupTimeoutMs,
          });
    const handshaking = new Set<Socket>();
    const handshake = (raw: Socket): void => {
      if (tlsServer === null) return;
      // Sockets in a TLS handshake are bounded like those waiting for their stream setup.
      if (handshaking.size >= TCP_PENDING_SOCKETS_MAX)
        return reject(raw, 'too many sockets in a TLS handshake');
      handshaking.add(raw);
      raw.once('close', () => handshaking.delete(raw));
      tlsServer.emit('connection', raw);
    };
    tlsServer?.on('secureConnection', (ts: tls.TLSSocket) => {
      ts.on('error', () => {}); // a reset during setup is handled by 'close'
      const cert = ts.getPeerCertificate();
      if (!ts.authorized || !hasCertificate(cert)) {
        const why = describeVerifyError(ts.authorizationError, hasCertificate(cert));
        return reject(ts, `TLS: the peer's certificate is refused: ${why}`, {
          code: 'cert-rejected',
          reason: why,
        });
      }
      setup(ts, true);
    });
    tlsServer?.on('tlsClientError', (e: Error, ts: tls.TLSSocket) => {
      refused(ts, `TLS handshake failed: ${describeTlsError(e)}`);
      ts.destroy();
    });
    server.on('connection', (sock: Socket) => {
      sock.on('error', () => {}); // a reset during setup is handled by 'close'
      this.tune(sock);
      setup(sock, false);
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
          for (const sock of handshaking) sock.destroy();
          handshaking.clear();
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
    const secure = control.socket instanceof tls.TLSSocket;
    if (
      secure !== data.socket instanceof tls.TLSSocket ||
      (secure && !sameIdentity(data, control))
    ) {
      // Both streams of one connection come from one authenticated peer, or neither is used.
      this.deps.log?.warn(
        { remote: control.socket.remoteAddress },
        'tcp: streams of one cookie disagree on TLS identity',
      );
      data.socket.destroy();
      control.socket.destroy();
      return;
    }
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
      secure ? channelTls(control.socket) : undefined,
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
