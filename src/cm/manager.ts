// The connection manager: listens (one listener per address, shared by all resources), dials
// every configured peer with connect-int backoff and jitter, runs the handshake (hello, HMAC
// challenge-response, address exchange) on CONTROL, and keeps exactly one connection per
// (resource, peer). Crossed dials: the connection dialed by the lower node id survives.
import { createHmac, getHashes, timingSafeEqual } from 'node:crypto';
import {
  CM_AUTH_BLOCK_MS,
  CM_AUTH_CHALLENGE_BYTES,
  CM_AUTH_FAILURE_WINDOW_MS,
  CM_AUTH_FAILURES_MAX,
  CM_AUTH_TRACKED_ADDRESSES_MAX,
  CM_CONNECT_BACKOFF_MAX_MS,
  CM_HANDSHAKE_TIMEOUT_MS,
  CM_PROTOCOL_VERSION_MAX,
  CM_PROTOCOL_VERSION_MIN,
  CM_RESOURCE_NAME_BYTES_MAX,
} from '../limits.js';
import type { Timer } from '../platform/clock.js';
import { MP_HELLO, SessionAcceptor, openSession, pathRank } from '../transport/multipath/index.js';
import { RefusedHere } from '../transport/multipath/handshake.js';
import type { MultipathOptions } from '../transport/multipath/types.js';
import { peerNameProblem } from '../transport/tls.js';
import type {
  Channel,
  Endpoint,
  Listener,
  Message,
  PathSpec,
  TlsCredentials,
} from '../transport/types.js';
import { AsyncQueue } from '../util/async-queue.js';
import { ConfigError, ConnectionError } from '../util/errors.js';
import type {
  AnnouncedAddress,
  CmDeps,
  CmEvent,
  CmEventListener,
  ConnectionConfig,
  ConnectionState,
  Established,
  NodeOptions,
  RefuseCode,
} from './types.js';
import {
  MSG_ADDRESSES,
  MSG_AUTH,
  MSG_HELLO,
  MSG_READY,
  MSG_REFUSE,
  FEATURE_MULTIPATH,
  decodeAddresses,
  decodeHello,
  decodeReady,
  decodeRefuse,
  encodeAddresses,
  encodeHello,
  encodeReady,
  encodeRefuse,
  type Hello,
} from './wire.js';

/** A handshake step failed; `code` goes into the REFUSE we send (unless byPeer). */
class HandshakeFailure extends Error {
  constructor(
    readonly code: RefuseCode | 'timeout' | 'closed',
    message: string,
    readonly byPeer = false,
    /** We sent a REFUSE and are closing gracefully: do not destroy (it would drop the REFUSE). */
    readonly refusing = false,
  ) {
    super(message);
  }
}

/** A refusal (ours, or the session acceptor's) closes gracefully so that it reaches the peer. */
function dropUnlessRefusing(ch: Channel, e: unknown): void {
  if (!((e instanceof HandshakeFailure && e.refusing) || e instanceof RefusedHere)) ch.destroy();
}

/** Hands handshake messages out one at a time; detaches itself on a final message type. */
class Pump {
  private readonly queue = new AsyncQueue<Message>();
  private released = false;
  private readonly offClosed: () => void;

  constructor(
    private readonly ch: Channel,
    finalTypes: readonly number[],
  ) {
    // DATA the peer sends right after READY must wait for the layer above, not hit the pump.
    ch.pauseData();
    ch.setReceiver((m) => {
      if (m.stream !== 'control') {
        this.abort(new HandshakeFailure('protocol', 'data message during the handshake'));
        return;
      }
      // The last handshake message: later messages belong to the layer above, so stop taking
      // them now (they queue in the channel until a receiver is set).
      if (finalTypes.includes(m.type) || m.type === MSG_REFUSE) ch.setReceiver(null);
      this.queue.push(m);
    });
    this.offClosed = ch.on('closed', (info) =>
      this.abort(new HandshakeFailure('closed', `closed during the handshake (${info.reason})`)),
    );
  }

  next(): Promise<Message> {
    return this.queue.next();
  }

  abort(e: HandshakeFailure): void {
    this.queue.fail(e);
  }

  done(): void {
    if (this.released) return;
    this.released = true;
    this.offClosed();
    // Release the pause; DATA stays held until the layer above sets a receiver.
    this.ch.setReceiver(null);
    this.ch.resumeData();
  }
}

/** Counts auth failures per address and blocks an address that fails too often. */
class AuthLimiter {
  private readonly entries = new Map<string, { failuresMs: number[]; blockedUntilMs: number }>();
  constructor(private readonly now: () => number) {}

  blocked(address: string): boolean {
    const e = this.entries.get(address);
    return e !== undefined && e.blockedUntilMs > this.now();
  }

  fail(address: string): boolean {
    const now = this.now();
    let e = this.entries.get(address);
    if (e === undefined) {
      if (this.entries.size >= CM_AUTH_TRACKED_ADDRESSES_MAX) {
        const oldest = this.entries.keys().next();
        if (!oldest.done) this.entries.delete(oldest.value);
      }
      e = { failuresMs: [], blockedUntilMs: 0 };
      this.entries.set(address, e);
    }
    e.failuresMs = e.failuresMs.filter((t) => now - t < CM_AUTH_FAILURE_WINDOW_MS);
    e.failuresMs.push(now);
    if (e.failuresMs.length >= CM_AUTH_FAILURES_MAX) {
      e.blockedUntilMs = now + CM_AUTH_BLOCK_MS;
      e.failuresMs = [];
      return true;
    }
    return false;
  }
}

interface Attempt {
  readonly abort: AbortController;
  channel: Channel | null;
}

/** One (resource, peer node) connection. */
class Conn {
  state: ConnectionState = 'Connecting';
  established: Established | null = null;
  attempt: Attempt | null = null;
  inbound: Channel | null = null;
  retry: Timer | null = null;
  failures = 0;
  readonly auth: { alg: string; secret: Buffer } | null;
  readonly connectIntMs: number;
  readonly connectIntMaxMs: number;

  constructor(readonly cfg: ConnectionConfig) {
    const n = cfg.net ?? {};
    const { cramHmacAlg: alg, sharedSecret: secret } = n;
    if ((alg === undefined) !== (secret === undefined)) {
      throw new ConfigError(
        `connection ${cfg.resource}/${cfg.peerNodeId}: cram-hmac-alg and shared-secret go together`,
      );
    }
    if (alg !== undefined && !getHashes().includes(alg.toLowerCase())) {
      throw new ConfigError(`cram-hmac-alg "${alg}" is not a hash this system knows`);
    }
    this.auth =
      alg !== undefined && secret !== undefined
        ? { alg: alg.toLowerCase(), secret: Buffer.from(secret, 'utf8') }
        : null;
    if (cfg.tls !== undefined && cfg.multipath !== undefined) {
      throw new ConfigError(
        `connection ${cfg.resource}/${cfg.peerNodeId}: TLS is supported on the tcp transport only, not in a multipath session`,
      );
    }
    this.connectIntMs = n.connectIntMs ?? 10_000;
    this.connectIntMaxMs = n.connectIntMaxMs ?? CM_CONNECT_BACKOFF_MAX_MS;
  }

  get key(): string {
    return connKey(this.cfg.resource, this.cfg.peerNodeId);
  }
}

const connKey = (resource: string, peer: number): string => `${resource}\u0000${peer}`;

const remoteOf = (ch: Channel): string =>
  ch.path.peer.family === 'ipv6'
    ? `[${ch.path.peer.address}]:${ch.path.peer.port}`
    : `${ch.path.peer.address}:${ch.path.peer.port}`;

function hmac(alg: string, secret: Buffer, challenge: Buffer, nodeId: number): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(nodeId, 0);
  return createHmac(alg, secret).update(challenge).update(id).digest();
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export class ConnectionManager {
  private readonly conns = new Map<string, Conn>();
  private readonly listeners: Listener[] = [];
  private readonly subscribers: CmEventListener[] = [];
  private readonly limiter: AuthLimiter;
  private readonly versionMin: number;
  private readonly versionMax: number;
  private readonly features: number;
  private readonly handshakeTimeoutMs: number;
  /** Multipath sessions accepted here (their paths join through our listeners). */
  private readonly sessions: SessionAcceptor;
  private closed = false;

  constructor(
    private readonly deps: CmDeps,
    private readonly opts: NodeOptions,
  ) {
    this.versionMin = opts.versionMin ?? CM_PROTOCOL_VERSION_MIN;
    this.versionMax = opts.versionMax ?? CM_PROTOCOL_VERSION_MAX;
    this.features = opts.features ?? 0;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? CM_HANDSHAKE_TIMEOUT_MS;
    if (this.versionMin > this.versionMax) {
      throw new ConfigError(`protocol version range ${this.versionMin}..${this.versionMax}`);
    }
    this.limiter = new AuthLimiter(() => deps.clock.nowMs());
    this.sessions = new SessionAcceptor(this.multipathDeps(), {});
  }

  private multipathDeps(): ConstructorParameters<typeof SessionAcceptor>[0] {
    return {
      clock: this.deps.clock,
      randomBytes: this.deps.randomBytes,
      transports: this.opts.transports,
      ...(this.deps.log ? { log: this.deps.log } : {}),
    };
  }

  private featuresFor(c: Conn): number {
    return this.features | (c.cfg.multipath ? FEATURE_MULTIPATH : 0);
  }

  private static sessionOptions(c: Conn): MultipathOptions {
    const { ssocks: _ssocks, ...o } = c.cfg.multipath ?? {};
    return c.auth ? { ...o, auth: { alg: c.auth.alg, secret: c.auth.secret.toString('utf8') } } : o;
  }

  /**
   * After the handshake on `path`: when both sides asked for it, turn the channel into a
   * multipath session over every configured path (and, with ssocks, the fastest common one).
   */
  private async toSession(c: Conn, est: Established, signal: AbortSignal): Promise<Established> {
    if ((est.features & FEATURE_MULTIPATH) === 0 || !c.cfg.multipath) return est;
    const paths = [...c.cfg.paths];
    const index = Math.max(0, paths.indexOf(est.path));
    const ssocks = c.cfg.multipath.ssocks === true;
    // ssocks: Ethernet is the fallback, so the upgrade path (rank 0 of its class) goes first.
    const ranks = ssocks ? paths.map((p, i) => pathRank(p, i + 1)) : undefined;
    const opened = await openSession(
      this.multipathDeps(),
      ConnectionManager.sessionOptions(c),
      paths,
      {
        signal,
        first: { channel: est.channel, index },
        ...(ranks ? { ranks } : {}),
      },
    );
    if (ssocks) {
      const up = this.upgradeAddress(est);
      if (up) opened.addPath({ peer: up }, pathRank({ peer: up }, 0));
    }
    return { ...est, channel: opened.session };
  }

  /** The fastest address the peer announced that we can use, other than the one we came on. */
  private upgradeAddress(est: Established): Endpoint | null {
    const here = est.path.peer;
    const usable = est.peerAddresses.filter(
      (a) =>
        this.opts.transports[a.transport] !== undefined &&
        a.transport !== 'multipath' &&
        (this.opts.reachable?.(a) ?? true) &&
        !(a.address === here.address && a.transport === here.transport),
    );
    usable.sort((x, y) => pathRank({ peer: x }, 0) - pathRank({ peer: y }, 0));
    const best = usable[0];
    if (best === undefined || pathRank({ peer: best }, 0) > pathRank({ peer: here }, 0))
      return null;
    return best;
  }

  get nodeId(): number {
    return this.opts.nodeId;
  }

  on(listener: CmEventListener): () => void {
    this.subscribers.push(listener);
    return () => {
      const i = this.subscribers.indexOf(listener);
      if (i >= 0) this.subscribers.splice(i, 1);
    };
  }

  /**
   * Listens on `endpoint` for every resource; returns the bound endpoint. With `tls`, every
   * socket there must speak TLS with a certificate the credentials' CA signed.
   */
  async listen(endpoint: Endpoint, o: { readonly tls?: TlsCredentials } = {}): Promise<Endpoint> {
    const t = this.opts.transports[endpoint.transport];
    if (t === undefined) throw new ConfigError(`no ${endpoint.transport} transport to listen on`);
    const l = await t.listen(endpoint, (ch) => void this.accept(ch), {
      ...(o.tls ? { tls: o.tls } : {}),
      onRefused: (remote, reason) => this.listenerRefused(remote, reason),
    });
    this.listeners.push(l);
    this.emit({ kind: 'listening', endpoint: l.endpoint });
    return l.endpoint;
  }

  /**
   * Stops listening on `endpoint` (an address adjust removed from the configuration); channels
   * already accepted stay open. False if nothing listened there.
   */
  unlisten(endpoint: Endpoint): Promise<boolean> {
    const same = (l: Listener): boolean =>
      l.endpoint.transport === endpoint.transport &&
      l.endpoint.address === endpoint.address &&
      l.endpoint.port === endpoint.port;
    const gone = this.listeners.filter(same);
    if (gone.length === 0) return Promise.resolve(false);
    this.listeners.splice(0, this.listeners.length, ...this.listeners.filter((l) => !same(l)));
    // Channels a listener accepted stay up; its close() settles once it stops accepting.
    return Promise.all(gone.map((l) => l.close())).then(() => true);
  }

  /** Adds a peer connection and starts connecting to it (both sides dial). */
  addConnection(cfg: ConnectionConfig): void {
    const nameBytes = Buffer.byteLength(cfg.resource, 'utf8');
    if (nameBytes === 0 || nameBytes > CM_RESOURCE_NAME_BYTES_MAX) {
      throw new ConfigError(
        `resource name "${cfg.resource}" must be 1..${CM_RESOURCE_NAME_BYTES_MAX} bytes`,
      );
    }
    if (cfg.peerNodeId === this.opts.nodeId) {
      throw new ConfigError(`connection of ${cfg.resource} to our own node id ${cfg.peerNodeId}`);
    }
    if (cfg.paths.length === 0) throw new ConfigError(`connection of ${cfg.resource}: no path`);
    for (const p of cfg.paths) {
      if (this.opts.transports[p.peer.transport] === undefined) {
        throw new ConfigError(`path to ${p.peer.address}: no ${p.peer.transport} transport`);
      }
    }
    const c = new Conn(cfg);
    if (this.conns.has(c.key)) {
      throw new ConfigError(`connection ${cfg.resource} to node ${cfg.peerNodeId} exists`);
    }
    this.conns.set(c.key, c);
    this.setState(c, 'Connecting', 'added');
    this.dial(c);
  }

  /** Disconnects and forgets a connection (drbdadm disconnect / down). */
  async removeConnection(resource: string, peerNodeId: number): Promise<void> {
    const c = this.conns.get(connKey(resource, peerNodeId));
    if (c === undefined) return;
    this.conns.delete(c.key);
    await this.shutdown(c);
  }

  state(resource: string, peerNodeId: number): ConnectionState {
    return this.conns.get(connKey(resource, peerNodeId))?.state ?? 'StandAlone';
  }

  established(resource: string, peerNodeId: number): Established | null {
    return this.conns.get(connKey(resource, peerNodeId))?.established ?? null;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map((c) => this.shutdown(c)));
    this.sessions.close();
    await Promise.all(this.listeners.splice(0).map((l) => l.close()));
  }

  // --- internals -----------------------------------------------------------------------------

  /**
   * A listener refused a socket before any handshake (TLS failed, or TLS on one side only). It
   * does not know the resource yet: the connections whose peer dials from that address get it.
   */
  private listenerRefused(remote: { address: string; port: number }, reason: string): void {
    const at = remote.address.startsWith('::ffff:') ? remote.address.slice(7) : remote.address;
    const mine = [...this.conns.values()].filter((c) =>
      c.cfg.paths.some((p) => p.peer.address === at),
    );
    const where = remote.address.includes(':') ? `[${at}]:${remote.port}` : `${at}:${remote.port}`;
    for (const c of mine.length > 0 ? mine : [null]) {
      this.emit({
        kind: 'refused',
        resource: c?.cfg.resource ?? null,
        peerNodeId: c?.cfg.peerNodeId ?? null,
        remote: where,
        code: 'socket',
        byPeer: false,
        reason,
      });
    }
  }

  /**
   * The TLS side of a handshake, once the hello named the connection: TLS on both ends or on
   * neither, and a peer certificate that names the peer. Returns the refusal to send, or null.
   */
  private static tlsProblem(
    c: Conn,
    ch: Channel,
  ): { code: 'tls-mismatch' | 'tls-identity'; reason: string } | null {
    const want = c.cfg.tls;
    if (want === undefined && ch.tls === undefined) return null;
    if (want === undefined)
      return { code: 'tls-mismatch', reason: 'TLS channel for a connection with tls no' };
    if (ch.tls === undefined)
      return { code: 'tls-mismatch', reason: 'plain channel for a connection with tls yes' };
    const problem = peerNameProblem(ch.tls, want.peerName);
    return problem === null ? null : { code: 'tls-identity', reason: problem };
  }
  private emit(e: CmEvent): void {
    for (const s of [...this.subscribers]) s(e);
  }

  private setState(c: Conn, state: ConnectionState, reason: string, est?: Established): void {
    c.state = state;
    this.emit({
      kind: 'state',
      resource: c.cfg.resource,
      peerNodeId: c.cfg.peerNodeId,
      state,
      reason,
      ...(est ? { established: est } : {}),
    });
  }

  private async shutdown(c: Conn): Promise<void> {
    c.retry?.cancel();
    c.retry = null;
    c.attempt?.abort.abort(new ConnectionError('connection removed'));
    c.attempt?.channel?.destroy();
    c.attempt = null;
    c.inbound?.destroy();
    c.inbound = null;
    const est = c.established;
    c.established = null;
    this.setState(c, 'StandAlone', 'removed');
    if (est) await est.channel.close();
  }

  private busy(c: Conn): boolean {
    return c.established !== null || c.attempt !== null || c.inbound !== null;
  }

  private scheduleRetry(c: Conn): void {
    if (this.closed || this.conns.get(c.key) !== c || this.busy(c) || c.retry !== null) return;
    const exp = Math.min(c.failures, 16);
    const base = Math.min(c.connectIntMaxMs, c.connectIntMs * 2 ** exp);
    // Jitter in [0.5, 1) of the base keeps two nodes from dialing in lockstep forever.
    const delay = base * (0.5 + 0.5 * this.deps.random.next());
    c.retry = this.deps.clock.setTimeout(() => {
      c.retry = null;
      this.dial(c);
    }, delay);
  }

  private dial(c: Conn): void {
    if (this.closed || this.conns.get(c.key) !== c || this.busy(c)) return;
    const attempt: Attempt = { abort: new AbortController(), channel: null };
    c.attempt = attempt;
    void this.runAttempt(c, attempt);
  }

  private async runAttempt(c: Conn, attempt: Attempt): Promise<void> {
    const current = (): boolean => c.attempt === attempt && !attempt.abort.signal.aborted;
    for (const path of c.cfg.paths) {
      if (!current()) return;
      const transport = this.opts.transports[path.peer.transport];
      if (transport === undefined) continue;
      this.emitPath(c, path, 'connecting');
      let ch: Channel;
      try {
        ch = await transport.connect(path, {
          signal: attempt.abort.signal,
          ...(c.cfg.tls ? { tls: c.cfg.tls.credentials } : {}),
        });
      } catch (e) {
        this.emitPath(c, path, 'failed', (e as Error).message);
        continue;
      }
      if (!current()) {
        ch.destroy();
        return;
      }
      attempt.channel = ch;
      this.emitPath(c, path, 'established');
      try {
        const est = await this.toSession(
          c,
          await this.dialerHandshake(c, ch, path),
          attempt.abort.signal,
        );
        if (!current()) {
          est.channel.destroy();
          return;
        }
        c.attempt = null;
        this.establish(c, est);
        return;
      } catch (e) {
        dropUnlessRefusing(ch, e);
        if (!current()) return;
        this.reportFailure(c, ch, e);
        // A refusal is an answer from this peer: other paths would get the same one.
        break;
      }
    }
    if (c.attempt !== attempt) return;
    c.attempt = null;
    c.failures++;
    this.scheduleRetry(c);
  }

  private emitPath(
    c: Conn,
    path: PathSpec,
    state: 'connecting' | 'established' | 'failed',
    reason?: string,
  ): void {
    this.emit({
      kind: 'path',
      resource: c.cfg.resource,
      peerNodeId: c.cfg.peerNodeId,
      path,
      state,
      ...(reason !== undefined ? { reason } : {}),
    });
  }

  private reportFailure(c: Conn | null, ch: Channel, e: unknown, hello?: Hello): void {
    const f = e instanceof HandshakeFailure ? e : new HandshakeFailure('protocol', String(e));
    const resource = c?.cfg.resource ?? hello?.resource ?? null;
    const peerNodeId = c?.cfg.peerNodeId ?? hello?.fromNodeId ?? null;
    const remote = remoteOf(ch);
    // The reason never contains the secret: it is built from codes and public fields only.
    this.deps.log?.warn(
      { resource, peerNodeId, remote, code: f.code, byPeer: f.byPeer },
      `handshake ${f.byPeer ? 'refused by peer' : 'failed'}: ${f.message}`,
    );
    this.emit({
      kind: 'refused',
      resource,
      peerNodeId,
      remote,
      code: f.code,
      byPeer: f.byPeer,
      reason: f.message,
    });
  }

  private establish(c: Conn, est: Established): void {
    c.retry?.cancel();
    c.retry = null;
    c.failures = 0;
    if (c.attempt) {
      c.attempt.abort.abort(new ConnectionError('superseded'));
      c.attempt.channel?.destroy();
      c.attempt = null;
    }
    c.established = est;
    const n = c.cfg.net ?? {};
    est.channel.configure?.({
      ...(n.pingIntMs !== undefined ? { pingIntMs: n.pingIntMs } : {}),
      ...(n.pingTimeoutMs !== undefined ? { pingTimeoutMs: n.pingTimeoutMs } : {}),
      ...(n.timeoutMs !== undefined ? { timeoutMs: n.timeoutMs } : {}),
      ...(n.koCount !== undefined ? { koCount: n.koCount } : {}),
      ...(n.highWaterBytes !== undefined ? { highWaterBytes: n.highWaterBytes } : {}),
    });
    est.channel.on('closed', (info) => {
      if (c.established?.channel !== est.channel) return;
      c.established = null;
      if (this.conns.get(c.key) !== c) return;
      this.setState(
        c,
        'Connecting',
        `connection lost (${info.reason}${info.error ? `: ${info.error.message}` : ''})`,
      );
      this.scheduleRetry(c);
    });
    this.setState(c, 'Connected', est.channel.initiator ? 'dialed' : 'accepted', est);
  }

  private refuse(ch: Channel, code: RefuseCode, reason: string): HandshakeFailure {
    if (ch.isOpen) {
      ch.send('control', MSG_REFUSE, [encodeRefuse({ code, reason })]);
      void ch.close();
    }
    return new HandshakeFailure(code, reason, false, true);
  }

  private deadline(ch: Channel, pump: Pump): Timer {
    return this.deps.clock.setTimeout(() => {
      pump.abort(
        new HandshakeFailure('timeout', `handshake not finished in ${this.handshakeTimeoutMs} ms`),
      );
      ch.destroy();
    }, this.handshakeTimeoutMs);
  }

  private agree(h: Hello): { version: number } | { error: string } {
    const version = Math.min(this.versionMax, h.versionMax);
    if (version < Math.max(this.versionMin, h.versionMin)) {
      return {
        error: `incompatible versions ${this.versionMin}..${this.versionMax} vs ${h.versionMin}..${h.versionMax}`,
      };
    }
    return { version };
  }

  private announce(c: Conn): AnnouncedAddress[] {
    if (c.cfg.announce) return [...c.cfg.announce];
    return this.listeners.map((l) => ({
      transport: l.endpoint.transport,
      family: l.endpoint.family,
      address: l.endpoint.address,
      port: l.endpoint.port,
    }));
  }

  private static async expect(pump: Pump, type: number, what: string): Promise<Buffer> {
    return ConnectionManager.check(await pump.next(), type, what);
  }

  private static check(m: Message, type: number, what: string): Buffer {
    if (m.type === MSG_REFUSE) {
      const r = decodeRefuse(m.payload);
      if (!r.ok) throw new HandshakeFailure('protocol', `bad refusal: ${r.error}`);
      throw new HandshakeFailure(r.value.code, r.value.reason, true);
    }
    if (m.type !== type) {
      throw new HandshakeFailure(
        'protocol',
        `expected ${what}, got message type 0x${m.type.toString(16)}`,
      );
    }
    return m.payload;
  }

  private async dialerHandshake(c: Conn, ch: Channel, path: PathSpec): Promise<Established> {
    const pump = new Pump(ch, [MSG_READY]);
    const timer = this.deadline(ch, pump);
    try {
      const myChallenge = c.auth ? this.deps.randomBytes(CM_AUTH_CHALLENGE_BYTES) : null;
      ch.send('control', MSG_HELLO, [
        encodeHello({
          versionMin: this.versionMin,
          versionMax: this.versionMax,
          features: this.featuresFor(c),
          fromNodeId: this.opts.nodeId,
          toNodeId: c.cfg.peerNodeId,
          resource: c.cfg.resource,
          challenge: myChallenge,
        }),
      ]);
      const hr = decodeHello(await ConnectionManager.expect(pump, MSG_HELLO, 'hello'));
      if (!hr.ok) throw this.refuse(ch, 'protocol', hr.error);
      const h = hr.value;
      const agreed = this.agree(h);
      if ('error' in agreed) throw this.refuse(ch, 'incompatible-version', agreed.error);
      if (
        h.resource !== c.cfg.resource ||
        h.fromNodeId !== c.cfg.peerNodeId ||
        h.toNodeId !== this.opts.nodeId
      ) {
        throw this.refuse(
          ch,
          'unknown-node',
          `peer answered as ${h.resource}/node ${h.fromNodeId}`,
        );
      }
      const tlsBad = ConnectionManager.tlsProblem(c, ch);
      if (tlsBad !== null) throw this.refuse(ch, tlsBad.code, tlsBad.reason);
      if (c.auth && myChallenge) {
        if (h.challenge === null)
          throw this.refuse(ch, 'auth-mismatch', 'peer does not authenticate');
        if (sameBytes(h.challenge, myChallenge)) {
          throw this.refuse(
            ch,
            'auth-failed',
            'reflected challenge: the peer returned our own challenge',
          );
        }
        ch.send('control', MSG_AUTH, [
          hmac(c.auth.alg, c.auth.secret, h.challenge, this.opts.nodeId),
        ]);
        const resp = await ConnectionManager.expect(pump, MSG_AUTH, 'auth response');
        const want = hmac(c.auth.alg, c.auth.secret, myChallenge, c.cfg.peerNodeId);
        if (!sameBytes(resp, want)) {
          throw this.refuse(ch, 'auth-failed', 'peer failed authentication (wrong shared-secret?)');
        }
      } else if (h.challenge !== null) {
        throw this.refuse(
          ch,
          'auth-mismatch',
          'peer requires authentication; no shared-secret here',
        );
      }
      ch.send('control', MSG_ADDRESSES, [encodeAddresses(this.announce(c))]);
      const ar = decodeAddresses(await ConnectionManager.expect(pump, MSG_ADDRESSES, 'addresses'));
      if (!ar.ok) throw this.refuse(ch, 'protocol', ar.error);
      const rr = decodeReady(await ConnectionManager.expect(pump, MSG_READY, 'ready'));
      if (!rr.ok || rr.value !== agreed.version)
        throw this.refuse(ch, 'protocol', 'ready with another version');
      pump.done();
      return {
        channel: ch,
        version: agreed.version,
        features: this.featuresFor(c) & h.features,
        peerAddresses: ar.value,
        path,
      };
    } finally {
      timer.cancel();
      pump.done();
    }
  }

  private async accept(ch: Channel): Promise<void> {
    const remote = ch.path.peer.address;
    if (this.closed) {
      ch.destroy();
      return;
    }
    if (this.limiter.blocked(remote)) {
      this.reportFailure(
        null,
        ch,
        this.refuse(ch, 'rate-limited', 'too many failed authentications'),
      );
      return;
    }
    const pump = new Pump(ch, [MSG_ADDRESSES]);
    const timer = this.deadline(ch, pump);
    let hello: Hello | undefined;
    let conn: Conn | null = null;
    try {
      const first = await pump.next();
      if (first.type === MP_HELLO && first.stream === 'control') {
        // A path joining (or resuming) a multipath session: the session handshake authenticates it.
        timer.cancel();
        pump.done();
        await this.sessions.accept(ch, first, 'join');
        return;
      }
      const hr = decodeHello(ConnectionManager.check(first, MSG_HELLO, 'hello'));
      if (!hr.ok) throw this.refuse(ch, 'protocol', hr.error);
      const h = (hello = hr.value);
      const agreed = this.agree(h);
      if ('error' in agreed) throw this.refuse(ch, 'incompatible-version', agreed.error);
      const known = [...this.conns.values()].some((x) => x.cfg.resource === h.resource);
      if (!known) throw this.refuse(ch, 'unknown-resource', `no resource "${h.resource}" here`);
      const c = this.conns.get(connKey(h.resource, h.fromNodeId));
      if (c === undefined || h.toNodeId !== this.opts.nodeId) {
        throw this.refuse(
          ch,
          'unknown-node',
          `resource ${h.resource} has no connection from node ${h.fromNodeId} to node ${h.toNodeId}`,
        );
      }
      const tlsBad = ConnectionManager.tlsProblem(c, ch);
      if (tlsBad !== null) throw this.refuse(ch, tlsBad.code, tlsBad.reason);
      if ((c.auth === null) !== (h.challenge === null)) {
        throw this.refuse(
          ch,
          'auth-mismatch',
          c.auth
            ? 'authentication required (cram-hmac-alg is set here)'
            : 'no authentication configured here',
        );
      }
      this.claimInbound(c, ch);
      conn = c;
      const myChallenge = c.auth ? this.deps.randomBytes(CM_AUTH_CHALLENGE_BYTES) : null;
      ch.send('control', MSG_HELLO, [
        encodeHello({
          versionMin: this.versionMin,
          versionMax: this.versionMax,
          features: this.featuresFor(c),
          fromNodeId: this.opts.nodeId,
          toNodeId: h.fromNodeId,
          resource: h.resource,
          challenge: myChallenge,
        }),
      ]);
      if (c.auth && myChallenge && h.challenge) {
        ch.send('control', MSG_AUTH, [
          hmac(c.auth.alg, c.auth.secret, h.challenge, this.opts.nodeId),
        ]);
        const resp = await ConnectionManager.expect(pump, MSG_AUTH, 'auth response');
        const want = hmac(c.auth.alg, c.auth.secret, myChallenge, h.fromNodeId);
        if (!sameBytes(resp, want)) {
          if (this.limiter.fail(remote)) {
            this.deps.log?.warn({ remote }, `auth: blocking ${remote} for ${CM_AUTH_BLOCK_MS} ms`);
          }
          throw this.refuse(ch, 'auth-failed', 'peer failed authentication (wrong shared-secret?)');
        }
      }
      const ar = decodeAddresses(await ConnectionManager.expect(pump, MSG_ADDRESSES, 'addresses'));
      if (!ar.ok) throw this.refuse(ch, 'protocol', ar.error);
      if (c.inbound !== ch) throw new HandshakeFailure('closed', 'superseded');
      ch.send('control', MSG_ADDRESSES, [encodeAddresses(this.announce(c))]);
      ch.send('control', MSG_READY, [encodeReady(agreed.version)]);
      c.inbound = null;
      // Release the channel before handing it over: done() resets the receiver, which must not
      // undo the one the layer above sets when it sees Connected.
      pump.done();
      const est: Established = {
        channel: ch,
        version: agreed.version,
        features: this.featuresFor(c) & h.features,
        peerAddresses: ar.value,
        path: ch.path,
      };
      if ((est.features & FEATURE_MULTIPATH) !== 0) {
        timer.cancel();
        const session = await this.sessions.accept(
          ch,
          null,
          'open',
          ConnectionManager.sessionOptions(c),
        );
        if (session === null)
          throw new HandshakeFailure('protocol', 'session join instead of open');
        if (this.conns.get(c.key) !== c || c.established !== null) {
          session.destroy();
          return;
        }
        this.establish(c, { ...est, channel: session });
        return;
      }
      this.establish(c, est);
    } catch (e) {
      dropUnlessRefusing(ch, e);
      if (conn !== null && conn.inbound === ch) {
        conn.inbound = null;
        this.scheduleRetry(conn);
      }
      if (!(e instanceof HandshakeFailure && e.message === 'superseded'))
        this.reportFailure(conn, ch, e, hello);
    } finally {
      timer.cancel();
      pump.done();
    }
  }

  /**
   * Takes an inbound channel for `c` or refuses it. Crossed dials: each side keeps the
   * connection dialed by the lower node id, so both sides pick the same one.
   */
  private claimInbound(c: Conn, ch: Channel): void {
    if (c.established !== null) {
      throw this.refuse(ch, 'already-connected', `node ${this.opts.nodeId} is already connected`);
    }
    if (c.inbound !== null)
      throw this.refuse(ch, 'crossed', 'another inbound handshake is running');
    if (c.attempt !== null) {
      if (this.opts.nodeId < c.cfg.peerNodeId) {
        throw this.refuse(ch, 'crossed', 'crossed dials: the lower node id dials');
      }
      c.attempt.abort.abort(new ConnectionError('crossed dials: the peer (lower node id) dials'));
      c.attempt.channel?.destroy();
      c.attempt = null;
    }
    c.retry?.cancel();
    c.retry = null;
    c.inbound = ch;
  }
}
