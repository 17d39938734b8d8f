// The NBD server: a set of named exports served on any number of TCP and Unix listeners.
// Exports are added and removed while it runs (the daemon maps resources to exports).
// Invariants: at most NBD_CONNECTIONS_MAX connections; a handshake not finished within
// NBD_HANDSHAKE_TIMEOUT_MS (TLS handshake included) is dropped; close() ends every connection
// after its in-flight work. With TLS credentials, an export added `tlsRequired` is reachable
// only after NBD_OPT_STARTTLS and a client certificate that chains to the CA.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import {
  createSecureContext,
  createServer as createTlsServer,
  type TLSSocket,
  type TlsOptions,
} from 'node:tls';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import { NBD_CLOSE_TIMEOUT_MS, NBD_CONNECTIONS_MAX, NBD_HANDSHAKE_TIMEOUT_MS } from '../limits.js';
import { ConfigError } from '../util/errors.js';
import { NbdConnection } from './connection.js';
import { serverGreeting, type ExportDirectory, type TlsMode } from './handshake.js';
import type { NbdExportBackend, NbdListenerSpec, NbdServerEvent } from './types.js';

/** PEM credentials for NBD_OPT_STARTTLS (x509, the client's certificate checked). */
export interface NbdTlsCredentials {
  /** The server's certificate, PEM (intermediates after it, if any). */
  readonly certificate: string | Buffer;
  /** Its private key, PEM, unencrypted. */
  readonly privateKey: string | Buffer;
  /** The CA certificate(s), PEM, that every client certificate must chain to. */
  readonly ca: string | Buffer;
}

export interface NbdExportOptions {
  /** Only over TLS: before STARTTLS the export is refused (NBD_REP_ERR_TLS_REQD). @default false */
  readonly tlsRequired?: boolean;
}

export interface NbdServerOptions {
  /** Enables NBD_OPT_STARTTLS; see `setTlsCredentials`. @default none: STARTTLS is refused */
  readonly tls?: NbdTlsCredentials;
  /** Receives the event stream (connections, exports chosen, protocol errors). */
  readonly onEvent?: (e: NbdServerEvent) => void;
  /** @default systemClock */
  readonly clock?: Clock;
  /** @default NBD_HANDSHAKE_TIMEOUT_MS */
  readonly handshakeTimeoutMs?: number;
  /** How long a connection we ended may wait for the client's close; also close()'s grace. @default NBD_CLOSE_TIMEOUT_MS */
  readonly closeTimeoutMs?: number;
  /** @default NBD_CONNECTIONS_MAX */
  readonly connectionsMax?: number;
}

export interface NbdListener {
  readonly spec: NbdListenerSpec;
  /** The bound address: "host:port" (with the real port when 0 was asked) or the socket path. */
  readonly address: string;
  /** The bound TCP port (0 for Unix sockets). */
  readonly port: number;
  close(): Promise<void>;
}

interface Live {
  readonly conn: NbdConnection;
  readonly socket: Socket;
  timer: Timer | undefined;
}

export class NbdServer implements ExportDirectory {
  private readonly exports = new Map<string, NbdExportBackend>();
  private readonly tlsOnlyNames = new Set<string>();
  private tlsOptions: TlsOptions | undefined;
  private readonly listeners = new Set<Server>();
  private readonly live = new Map<number, Live>();
  private nextConn = 1;
  private closing = false;
  private readonly clock: Clock;
  private readonly emit: (e: NbdServerEvent) => void;
  private idleWaiters: (() => void)[] = [];

  private readonly closeTimeoutMs: number;

  constructor(private readonly opts: NbdServerOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.closeTimeoutMs = opts.closeTimeoutMs ?? NBD_CLOSE_TIMEOUT_MS;
    this.emit = opts.onEvent ?? (() => undefined);
    if (opts.tls !== undefined) this.setTlsCredentials(opts.tls);
  }

  /**
   * Sets (or replaces, for connections accepted from now on) the TLS credentials. Throws a
   * ConfigError when the PEM does not parse or the key does not belong to the certificate.
   */
  setTlsCredentials(c: NbdTlsCredentials): void {
    const options: TlsOptions = {
      cert: c.certificate,
      key: c.privateKey,
      ca: c.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    };
    const problem = (what: string, e: unknown): ConfigError =>
      new ConfigError(`NBD TLS credentials: ${what}: ${(e as Error).message}`);
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(c.certificate);
    } catch (e) {
      throw problem('the certificate is not a PEM x509 certificate', e);
    }
    let key: KeyObject;
    try {
      key = createPrivateKey(c.privateKey);
    } catch (e) {
      throw problem('the private key is not a PEM private key', e);
    }
    // OpenSSL quietly drops a key that does not match the certificate; every handshake would
    // then fail with nothing said at startup.
    if (!cert.checkPrivateKey(key)) {
      throw new ConfigError(
        `NBD TLS credentials: the private key does not belong to the certificate (${cert.subject.replace(/\n/g, ', ')})`,
      );
    }
    try {
      new X509Certificate(c.ca);
    } catch (e) {
      throw problem('the CA is not a PEM x509 certificate', e);
    }
    try {
      createSecureContext(options);
    } catch (e) {
      throw problem('not usable', e);
    }
    this.tlsOptions = options;
  }

  addExport(name: string, backend: NbdExportBackend, opts: NbdExportOptions = {}): void {
    if (this.exports.has(name)) throw new ConfigError(`NBD export "${name}" already exists`);
    if (Buffer.byteLength(name, 'utf8') > 4096 || name.includes('\0')) {
      throw new ConfigError(`NBD export name "${name.slice(0, 40)}..." is not a valid NBD string`);
    }
    if (opts.tlsRequired === true && this.tlsOptions === undefined) {
      throw new ConfigError(`NBD export "${name}" requires TLS, but the server has no credentials`);
    }
    this.exports.set(name, backend);
    if (opts.tlsRequired === true) this.tlsOnlyNames.add(name);
  }

  /** Stops offering an export; connections already using it keep it until they close. */
  removeExport(name: string): boolean {
    this.tlsOnlyNames.delete(name);
    return this.exports.delete(name);
  }

  tlsOnly(name: string): boolean {
    if (this.exports.has(name)) return this.tlsOnlyNames.has(name);
    if (name !== '' || this.exports.size !== 1) return false;
    return this.tlsOnlyNames.size === 1;
  }

  /**
   * The spec's mode for a new connection: FORCEDTLS when every export needs TLS (options are
   * haggled only inside TLS), SELECTIVETLS when some do, NOTLS without credentials.
   */
  private tlsMode(): TlsMode {
    if (this.tlsOptions === undefined) return 'off';
    const all = this.exports.size > 0 && this.tlsOnlyNames.size === this.exports.size;
    return all ? 'forced' : 'selective';
  }

  /** The empty name is the spec's "default export": the only one, when there is just one. */
  lookup(name: string): NbdExportBackend | undefined {
    const b = this.exports.get(name);
    if (b !== undefined || name !== '' || this.exports.size !== 1) return b;
    return this.exports.values().next().value;
  }

  names(): readonly string[] {
    return [...this.exports.keys()];
  }

  get connectionCount(): number {
    return this.live.size;
  }

  async listen(spec: NbdListenerSpec): Promise<NbdListener> {
    if (this.closing) throw new ConfigError('NBD server is closed');
    const server = createServer({ noDelay: true, pauseOnConnect: false }, (s) => this.accept(s));
    server.maxConnections = this.opts.connectionsMax ?? NBD_CONNECTIONS_MAX;
    const bind = (): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const done = (): void => {
          server.off('error', reject);
          resolve();
        };
        if (spec.kind === 'tcp') server.listen({ host: spec.host, port: spec.port }, done);
        else server.listen({ path: spec.path }, done);
      });
    try {
      await bind();
    } catch (e) {
      // A socket file left by a crashed daemon: replace it, but never one somebody serves on.
      if (spec.kind !== 'unix' || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      if (await unixSocketAlive(spec.path)) throw e;
      await unlink(spec.path);
      await bind();
    }
    this.listeners.add(server);
    const a = server.address();
    const port = typeof a === 'object' && a !== null ? a.port : 0;
    const address =
      spec.kind === 'tcp'
        ? `${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${port}`
        : spec.path;
    this.emit({ type: 'listening', address });
    return {
      spec,
      address,
      port,
      close: async () => {
        await closeServer(server);
        this.listeners.delete(server);
        if (spec.kind === 'unix') await unlink(spec.path).catch(() => undefined);
      },
    };
  }

  private accept(socket: Socket): void {
    const id = this.nextConn++;
    const remote =
      socket.remoteAddress !== undefined ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix';
    socket.setNoDelay(true);
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.emit({ type: 'connect', conn: id, remote });
    const onData = (chunk: Buffer): void => conn.onData(chunk);
    const onDrain = (): void => conn.onDrain();
    const conn = new NbdConnection(
      socket,
      this,
      {
        closed: () => undefined,
        entered: (exportName) => {
          const l = this.live.get(id);
          l?.timer?.cancel();
          if (l !== undefined) l.timer = undefined;
          this.emit({ type: 'export', conn: id, exportName });
        },
        protocolError: (message) => this.emit({ type: 'protocol-error', conn: id, message }),
        ending: () => {
          const l = this.live.get(id);
          if (l === undefined) return;
          l.timer?.cancel();
          l.timer = this.clock.setTimeout(() => socket.destroy(), this.closeTimeoutMs);
        },
        defer: (fn) => setImmediate(fn),
        startTls: () => {
          socket.off('data', onData);
          socket.off('drain', onDrain);
          this.upgrade(id, socket, conn);
        },
      },
      this.tlsMode(),
    );
    const timeoutMs = this.opts.handshakeTimeoutMs ?? NBD_HANDSHAKE_TIMEOUT_MS;
    const timer = this.clock.setTimeout(() => {
      this.emit({
        type: 'protocol-error',
        conn: id,
        message: `handshake not done in ${timeoutMs} ms`,
      });
      socket.destroy();
    }, timeoutMs);
    this.live.set(id, { conn, socket, timer });
    socket.on('data', onData);
    socket.on('drain', onDrain);
    // A reset or broken pipe is the client's business: the close event below cleans up.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const l = this.live.get(id);
      l?.timer?.cancel();
      this.live.delete(id);
      conn.onClose();
      this.emit({ type: 'close', conn: id, reason: 'closed' });
      if (this.live.size === 0) {
        const w = this.idleWaiters;
        this.idleWaiters = [];
        for (const f of w) f();
      }
    });
    socket.write(serverGreeting());
  }

  /**
   * Runs the server side of the TLS handshake on a socket whose STARTTLS was acknowledged. The
   * socket goes into a tls.Server through its 'connection' event (Node's documented injection)
   * because only tls.Server enforces requestCert + rejectUnauthorized: a bare
   * `new TLSSocket(socket, { isServer: true })` admits a client certificate from any CA. One
   * server per upgrade, so its 'secureConnection' is this connection's. Tearing down the plain
   * socket (timeouts, close, destroy) tears down the TLS session on it too.
   */
  private upgrade(id: number, raw: Socket, conn: NbdConnection): void {
    const options = this.tlsOptions;
    if (options === undefined) {
      raw.destroy();
      return;
    }
    const server = createTlsServer(options);
    server.once('secureConnection', (t: TLSSocket) => {
      if (!t.authorized) {
        // rejectUnauthorized already ended such a session; this is the belt to its braces.
        this.emit({ type: 'protocol-error', conn: id, message: 'TLS client not authorized' });
        t.destroy();
        return;
      }
      t.on('data', (chunk: Buffer) => conn.onData(chunk));
      t.on('drain', () => conn.onDrain());
      t.on('error', () => undefined);
      const cn = t.getPeerCertificate().subject?.CN;
      this.emit({
        type: 'tls',
        conn: id,
        protocol: t.getProtocol() ?? 'unknown',
        client: Array.isArray(cn) ? cn.join(',') : (cn ?? ''),
      });
      conn.tlsEstablished(t);
    });
    server.once('tlsClientError', (err: Error, t: TLSSocket) => {
      const refused = t.authorizationError;
      const why =
        refused !== null && refused !== undefined
          ? `client certificate refused (${String(refused)})`
          : err.message.split('\n')[0];
      this.emit({ type: 'protocol-error', conn: id, message: `TLS handshake failed: ${why}` });
    });
    server.emit('connection', raw);
  }

  /** Resolves once no connection is open (for tests and orderly shutdown). */
  whenIdle(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Stops listening, lets every connection finish its in-flight requests (new ones get
   * ESHUTDOWN), then ends them. Idempotent.
   */
  async close(): Promise<void> {
    this.closing = true;
    const servers = [...this.listeners];
    this.listeners.clear();
    for (const l of this.live.values()) l.conn.shutdown();
    // A client that never closes its side must not hold shutdown forever.
    const t = this.clock.setTimeout(() => this.destroy(), this.closeTimeoutMs);
    await Promise.all([...servers.map(closeServer), this.whenIdle()]);
    t.cancel();
  }

  /** Drops every connection at once. */
  destroy(): void {
    this.closing = true;
    for (const s of this.listeners) s.close();
    this.listeners.clear();
    for (const l of this.live.values()) l.socket.destroy();
  }
}

function unixSocketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function closeServer(s: Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}
