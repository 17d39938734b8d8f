// The multipath transport: connectPaths() opens a session over the first reachable path (most
// preferred first) and joins the others in the background; listen() accepts both new sessions and
// paths joining (or resuming) a known one. SessionAcceptor is the acceptor's registry of sessions,
// shared with the connection manager, which hands it channels whose first frame is a session hello.
import { getHashes } from 'node:crypto';
import {
  MULTIPATH_JOIN_TIMEOUT_MS,
  MULTIPATH_PATHS_MAX,
  MULTIPATH_SESSION_ID_BYTES,
  MULTIPATH_SESSIONS_MAX,
} from '../../limits.js';
import { ChannelRegistry } from '../channel-base.js';
import { ConfigError, ConnectionError } from '../../util/errors.js';
import { tlsRefusal } from '../tls.js';
import type {
  ConnectOptions,
  ListenOptions,
  AcceptHandler,
  Channel,
  Endpoint,
  Listener,
  Message,
  PathSpec,
  Transport,
  TransportStats,
} from '../types.js';
import { Dialer, pathRank } from './dialer.js';
import {
  acceptPath,
  initiatePath,
  RefusedHere,
  sendReady,
  type HelloDecision,
  type KeyMaterial,
} from './handshake.js';
import { MultipathSession } from './session.js';
import type { MultipathDeps, MultipathOptions } from './types.js';

export { MultipathSession } from './session.js';
export type { MultipathDeps, MultipathOptions } from './types.js';
export { MP_HELLO } from './wire.js';
export { pathRank } from './dialer.js';

function keyMaterial(opts: MultipathOptions): KeyMaterial {
  const alg = (opts.auth?.alg ?? 'sha256').toLowerCase();
  if (!getHashes().includes(alg)) throw new ConfigError(`hash "${alg}" is not known here`);
  return { alg, secret: Buffer.from(opts.auth?.secret ?? '', 'utf8') };
}

/** A session we opened: the session and its dialer (to add paths later, e.g. ssocks upgrades). */
export interface OpenedSession {
  readonly session: MultipathSession;
  /** Adds a path to the session (dialed now, redialed when it fails); rank defaults to last of its class. */
  addPath(spec: PathSpec, rank?: number): boolean;
}

let nextSessionNumber = 1;

/**
 * Opens a session: tries `paths` most preferred first until one opens, then joins the rest.
 * `first`, when given, is an already connected (and authenticated) channel over paths[0]:
 * the connection manager's handshake ran on it.
 */
export async function openSession(
  deps: MultipathDeps,
  opts: MultipathOptions,
  paths: readonly PathSpec[],
  o: {
    readonly signal: AbortSignal;
    /** An already connected channel over paths[first.index]. */
    readonly first?: { readonly channel: Channel; readonly index: number };
    /** Ranks of `paths` (lower preferred); @default class, then order */
    readonly ranks?: readonly number[];
  },
): Promise<OpenedSession> {
  if (paths.length === 0 || paths.length > MULTIPATH_PATHS_MAX) {
    throw new ConfigError(`a session needs 1..${MULTIPATH_PATHS_MAX} paths, not ${paths.length}`);
  }
  const km = keyMaterial(opts);
  const ranked = paths.map((spec, i) => ({ spec, rank: o.ranks?.[i] ?? pathRank(spec, i) }));
  const byRank = [...ranked].sort((a, b) => a.rank - b.rank);
  const firstPath = o.first ? ranked[o.first.index] : undefined;
  const order = firstPath ? [firstPath, ...byRank.filter((r) => r !== firstPath)] : byRank;
  const sessionId = deps.randomBytes(MULTIPATH_SESSION_ID_BYTES);
  let lastError: Error = new ConnectionError('no path to try');
  for (const [i, p] of order.entries()) {
    let ch: Channel | null = null;
    try {
      if (i === 0 && o.first) ch = o.first.channel;
      else {
        const t = deps.transports[p.spec.peer.transport];
        if (t === undefined) throw new ConfigError(`no ${p.spec.peer.transport} transport`);
        ch = await t.connect(p.spec, { signal: o.signal });
      }
      const opened = ch;
      let made: { session: MultipathSession; dialer: Dialer } | null = null;
      await initiatePath(ch, {
        kind: 'open',
        sessionId,
        loadBalance: opts.loadBalancePaths ?? false,
        rank: p.rank,
        key: km,
        alg: km.alg,
        next: { data: 0, control: 0 },
        randomBytes: deps.randomBytes,
        clock: deps.clock,
        timeoutMs: opts.joinTimeoutMs ?? MULTIPATH_JOIN_TIMEOUT_MS,
        onReady: (r) => {
          const session = new MultipathSession(
            {
              id: `mp-c${nextSessionNumber++}`,
              sessionId,
              key: r.key,
              alg: km.alg,
              initiator: true,
              clock: deps.clock,
              opts,
            },
            p.spec,
          );
          const dialer = new Dialer(session, deps, opts);
          const link = session.attach(opened, p.spec, p.rank, r.peerNext);
          dialer.addPath(p.spec, p.rank, link);
          made = { session, dialer };
        },
      });
      const m = made as { session: MultipathSession; dialer: Dialer } | null;
      if (m === null) throw new ConnectionError('session handshake ended without a session');
      const { session, dialer } = m;
      for (const q of ranked) if (q !== p) dialer.addPath(q.spec, q.rank);
      let nextIndex = ranked.length;
      return {
        session,
        addPath: (spec, rank) => {
          const added = dialer.addPath(spec, rank ?? pathRank(spec, nextIndex));
          if (added) nextIndex++;
          return added;
        },
      };
    } catch (e) {
      ch?.destroy();
      lastError = e as Error;
      if (o.signal.aborted) throw e;
    }
  }
  throw new ConnectionError(`multipath: no path opened a session: ${lastError.message}`, {
    cause: lastError,
  });
}

/** The acceptor's sessions by id: opens new ones, joins paths to known ones. */
export class SessionAcceptor {
  private readonly sessions = new Map<string, MultipathSession>();
  private readonly km: KeyMaterial;

  constructor(
    private readonly deps: MultipathDeps,
    private readonly opts: MultipathOptions,
  ) {
    this.km = keyMaterial(opts);
  }

  get size(): number {
    return this.sessions.size;
  }

  /**
   * Runs the session handshake on an accepted channel. `first` is its first frame when the
   * caller already read it. `only` refuses the other kind of hello: a channel that skipped the
   * connection manager's authenticated handshake may only join a session, never open one.
   * `opts` (the connection's net{} options and key material) replace the acceptor's for a
   * session opened here. Resolves with the new session for an open, null for a join.
   */
  async accept(
    ch: Channel,
    first: Message | null = null,
    only?: 'open' | 'join',
    opts?: MultipathOptions,
  ): Promise<MultipathSession | null> {
    const km = opts ? keyMaterial(opts) : this.km;
    let joined: MultipathSession | null = null;
    const decide = (h: { kind: 'open' | 'join'; sessionId: Buffer }): HelloDecision => {
      if (only !== undefined && h.kind !== only) {
        return { ok: false, code: 'protocol', reason: `expected a session ${only} here` };
      }
      if (h.kind === 'open') {
        if (this.sessions.size >= MULTIPATH_SESSIONS_MAX) {
          return { ok: false, code: 'busy', reason: 'too many sessions' };
        }
        if (this.sessions.has(h.sessionId.toString('hex'))) {
          return { ok: false, code: 'protocol', reason: 'session id already in use' };
        }
        return { ok: true, key: km, next: { data: 0, control: 0 } };
      }
      const s = this.sessions.get(h.sessionId.toString('hex'));
      if (s === undefined || !s.isOpen) {
        return { ok: false, code: 'unknown-session', reason: 'no such session here' };
      }
      joined = s;
      return { ok: true, key: s.key, next: s.receivedNext(), alg: s.alg };
    };
    try {
      const r = await acceptPath(ch, first, {
        alg: km.alg,
        randomBytes: this.deps.randomBytes,
        clock: this.deps.clock,
        timeoutMs: this.opts.joinTimeoutMs ?? MULTIPATH_JOIN_TIMEOUT_MS,
        decide,
      });
      const rank = r.hello.rank;
      const target = joined as MultipathSession | null;
      if (target !== null) {
        sendReady(ch);
        target.attach(ch, ch.path, rank, r.peerNext);
        return null;
      }
      const id = r.hello.sessionId.toString('hex');
      if (this.sessions.has(id)) throw new ConnectionError('session id already in use');
      const session = new MultipathSession(
        {
          id: `mp-a${nextSessionNumber++}`,
          sessionId: r.hello.sessionId,
          key: r.key,
          alg: km.alg,
          initiator: false,
          clock: this.deps.clock,
          opts: { ...(opts ?? this.opts), loadBalancePaths: r.hello.loadBalance },
        },
        ch.path,
      );
      this.sessions.set(id, session);
      session.on('closed', () => {
        if (this.sessions.get(id) === session) this.sessions.delete(id);
      });
      sendReady(ch);
      session.attach(ch, ch.path, rank, r.peerNext);
      return session;
    } catch (e) {
      // A refusal is on its way and the channel closes gracefully: do not cut it short.
      if (!(e instanceof RefusedHere)) ch.destroy();
      throw e;
    }
  }

  close(): void {
    for (const s of [...this.sessions.values()]) s.destroy();
    this.sessions.clear();
  }
}

export const multipathTransport =
  (opts: MultipathOptions = {}) =>
  (deps: MultipathDeps): MultipathTransport =>
    new MultipathTransport(deps, opts);

export class MultipathTransport implements Transport {
  readonly name = 'multipath' as const;
  private readonly acceptor: SessionAcceptor;
  private readonly registry = new ChannelRegistry();
  private readonly listeners = new Set<Listener>();

  constructor(
    private readonly deps: MultipathDeps,
    private readonly opts: MultipathOptions,
  ) {
    this.acceptor = new SessionAcceptor(deps, opts);
  }

  /** Listens on `endpoint` with the transport it names (tcp, memory, fabric). */
  async listen(
    endpoint: Endpoint,
    onChannel: AcceptHandler,
    opts?: ListenOptions,
  ): Promise<Listener> {
    const refused = tlsRefusal('multipath', opts);
    if (refused) throw refused;
    const t = this.deps.transports[endpoint.transport];
    if (t === undefined || endpoint.transport === 'multipath') {
      throw new ConfigError(`multipath: no ${endpoint.transport} transport to listen with`);
    }
    const inner = await t.listen(endpoint, (ch) => {
      this.acceptor.accept(ch).then(
        (s) => {
          if (s === null) return;
          this.track(s);
          onChannel(s);
        },
        (e: unknown) =>
          this.deps.log?.warn(
            { remote: `${ch.path.peer.address}:${ch.path.peer.port}` },
            `multipath: path refused: ${(e as Error).message}`,
          ),
      );
    });
    const listener: Listener = {
      endpoint: inner.endpoint,
      close: async () => {
        this.listeners.delete(listener);
        await inner.close();
      },
    };
    this.listeners.add(listener);
    return listener;
  }

  connect(path: PathSpec, o: ConnectOptions): Promise<Channel> {
    const refused = tlsRefusal('multipath', o);
    if (refused) return Promise.reject(refused);
    return this.connectPaths([path], o);
  }

  /** Opens a session over several paths (drbd.conf: several path sections). */
  async connectPaths(
    paths: readonly PathSpec[],
    o: { readonly signal: AbortSignal },
  ): Promise<MultipathSession> {
    const { session } = await openSession(this.deps, this.opts, paths, o);
    this.track(session);
    return session;
  }

  private track(s: MultipathSession): void {
    this.registry.track(s);
  }

  stats(): TransportStats {
    return this.registry.stats();
  }

  async close(): Promise<void> {
    this.registry.destroyAll();
    this.acceptor.close();
    await Promise.all([...this.listeners].map((l) => l.close()));
  }
}
