// The NBD server: a set of named exports served on any number of TCP and Unix listeners.
// Exports are added and removed while it runs (the daemon maps resources to exports).
// Invariants: at most NBD_CONNECTIONS_MAX connections; a handshake not finished within
// NBD_HANDSHAKE_TIMEOUT_MS is dropped; close() ends every connection after its in-flight work.
import { unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { systemClock, type Clock, type Timer } from '../platform/clock.js';
import { NBD_CLOSE_TIMEOUT_MS, NBD_CONNECTIONS_MAX, NBD_HANDSHAKE_TIMEOUT_MS } from '../limits.js';
import { ConfigError } from '../util/errors.js';
import { NbdConnection } from './connection.js';
import { serverGreeting, type ExportDirectory } from './handshake.js';
import type { NbdExportBackend, NbdListenerSpec, NbdServerEvent } from './types.js';

export interface NbdServerOptions {
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
  }

  addExport(name: string, backend: NbdExportBackend): void {
    if (this.exports.has(name)) throw new ConfigError(`NBD export "${name}" already exists`);
    if (Buffer.byteLength(name, 'utf8') > 4096 || name.includes('\0')) {
      throw new ConfigError(`NBD export name "${name.slice(0, 40)}..." is not a valid NBD string`);
    }
    this.exports.set(name, backend);
  }

  /** Stops offering an export; connections already using it keep it until they close. */
  removeExport(name: string): boolean {
    return this.exports.delete(name);
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
    const conn = new NbdConnection(socket, this, {
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
    });
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
    socket.on('data', (chunk: Buffer) => conn.onData(chunk));
    socket.on('drain', () => conn.onDrain());
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
