// The transport contract (DRBD's transport boundary): a Channel joins two nodes with two ordered,
// reliable message streams, DATA (bulk) and CONTROL (small, urgent; never waits behind DATA).
// This file imports nothing at runtime; memory, tcp, fabric and multipath implement it and all
// pass test/compliance/transport.suite.ts.

/** The transports Tandem knows; drbd.conf's `transport "..."`. */
export type TransportName = 'memory' | 'tcp' | 'fabric' | 'multipath';

/** Address family of an endpoint: ipv4/ipv6 for tcp (IPoIB too), memory for the in-process one. */
export type AddressFamily = 'ipv4' | 'ipv6' | 'memory' | 'fabric';

/** One place a node can be reached. For memory, `address` is a name and `port` is 0. */
export interface Endpoint {
  readonly transport: TransportName;
  readonly family: AddressFamily;
  readonly address: string;
  readonly port: number;
}

/** One drbd.conf `path { host A address ..; host B address ..; }`: a local/peer endpoint pair. */
export interface PathSpec {
  /** Bind the outgoing side to this address (port 0 = any); omitted: the OS picks. */
  readonly local?: Endpoint;
  readonly peer: Endpoint;
}

/**
 * A node's TLS identity for tcp channels (drbd.conf `net { tls yes; }`): its certificate and
 * key, and the CAs a peer's certificate must chain to, as PEM, plus a context built from them
 * once. Loaded and checked by the daemon (src/daemon/tls-files.ts).
 */
export interface TlsCredentials {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly caPem: Buffer;
  /** node:tls createSecureContext({ cert, key, ca }) of the three. */
  readonly context: import('node:tls').SecureContext;
  /** Where they came from, for logs and errors (the certificate's file). */
  readonly label: string;
}

/** What a TLS channel knows about its session; the peer's chain was verified against the CA. */
export interface ChannelTls {
  /** e.g. TLSv1.3 */
  readonly protocol: string;
  /** e.g. TLS_AES_256_GCM_SHA384 */
  readonly cipher: string;
  /** The peer's certificate (subject, subjectaltname, validity) for the identity check. */
  readonly peerCertificate: import('node:tls').PeerCertificate;
}

/** Options of Transport.connect. */
export interface ConnectOptions {
  readonly signal: AbortSignal;
  /** Speak TLS (tcp only; other transports refuse it): mutual authentication, no fallback. */
  readonly tls?: TlsCredentials;
}

/** Options of Transport.listen. */
export interface ListenOptions {
  /** Every socket of this listener speaks TLS with these credentials (tcp only). */
  readonly tls?: TlsCredentials;
  /**
   * A socket refused before it became a channel (TLS handshake or certificate failures, a TLS
   * mismatch): who it came from and why, so the layer above can show it. Logged regardless.
   */
  readonly onRefused?: (remote: { address: string; port: number }, reason: string) => void;
}

/** The two streams of a connection (DRBD's DATA_STREAM and CONTROL_STREAM). */
export type StreamId = 'data' | 'control';

/**
 * Message types 0..MESSAGE_TYPE_USER_MAX belong to the layers above; the rest are reserved for
 * the transport (pings, stream setup) and the connection manager (handshake).
 */
export const MESSAGE_TYPE_USER_MAX = 0xfeff;

/** A received message. `payload` is a slice of a receive buffer where possible (not a copy). */
export interface Message {
  readonly stream: StreamId;
  /** 0..0xffff; the frame's type field. */
  readonly type: number;
  readonly payload: Buffer;
}

/** Why a channel closed. */
export type CloseReason =
  /** We called close()/destroy(). */
  | 'local'
  /** The peer closed or reset the connection. */
  | 'by-peer'
  /** A ping went unanswered for pingTimeoutMs, or sends stalled for koCount × timeoutMs. */
  | 'timeout'
  /** A socket error or a protocol violation (bad frame). */
  | 'error';

export interface CloseInfo {
  readonly reason: CloseReason;
  readonly error?: Error;
}

export type PathState = 'connecting' | 'established' | 'failed' | 'closed';

export interface PathEvent {
  readonly path: PathSpec;
  readonly state: PathState;
  readonly error?: Error;
  /**
   * Multipath sessions only: this path became the active one because the previous active path
   * failed (failover) or because it is preferred and healed (failback); or it failed too often
   * and is held down for a while.
   */
  readonly change?: 'failover' | 'failback' | 'held-down';
  /** With failover/failback: the path that was active before. */
  readonly from?: PathSpec;
}

export interface StreamStats {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly messagesSent: number;
  readonly messagesReceived: number;
  /** Bytes accepted by send() and not yet handed to the network (socket, fabric, peer queue). */
  readonly queuedBytes: number;
}

export interface ChannelStats {
  readonly data: StreamStats;
  readonly control: StreamStats;
  /** Smoothed ping round-trip time (RFC 6298 style SRTT), null before the first ping-ack. */
  readonly rttMs: number | null;
  /** Consecutive send stalls of timeoutMs each (DRBD's ko-count progress). */
  readonly koCount: number;
}

/** What carries one path of a channel and what went over it (for `tandem status`). */
export interface PathTransportStats {
  readonly path: PathSpec;
  readonly transport: TransportName;
  /** The libfabric provider (fabric paths only). */
  readonly provider?: string;
  /** Traffic goes over this path now (always true for a single-path channel). */
  readonly active: boolean;
  /** Payload bytes of both streams, pings excluded. */
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Fabric only: payload bytes sent from the caller's Buffers without a copy. */
  readonly zeroCopyBytes?: number;
  /** Fabric only: payload bytes copied into bounce buffers before sending. */
  readonly copiedBytes?: number;
}

/**
 * A channel's transport as status shows it: its own name (multipath for a session), what
 * carries traffic now, and counters summed over its paths (for a session, including paths
 * that have since failed, so the sums never go down).
 */
export interface ChannelTransportStats {
  readonly transport: TransportName;
  /** The active path's transport and provider; null while a session has no path. */
  readonly active: { readonly transport: TransportName; readonly provider?: string } | null;
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Present when some path is (or was) a fabric one. */
  readonly zeroCopyBytes?: number;
  readonly copiedBytes?: number;
  /** The paths joined now, preferred first. */
  readonly paths: readonly PathTransportStats[];
}

export interface TransportStats {
  readonly channelsOpen: number;
  readonly channelsOpened: number;
  readonly bytesSent: number;
  readonly bytesReceived: number;
}

/**
 * What send() tells the caller: go on; wait for `drain` on that stream before sending more; or
 * the channel is closed and the message was dropped (the `closed` event has already fired, so
 * this only reaches a sender that had not yet noticed).
 */
export type SendStatus = 'ok' | 'over-high-water' | 'closed';

export interface ChannelEvents {
  /** Both streams are up and usable. Channels returned by connect()/listen() are already up. */
  established: () => void;
  /** The stream's queue fell back below its high-water mark after a send said over-high-water. */
  drain: (stream: StreamId) => void;
  /** Emitted once; afterwards send() is refused and no message arrives. */
  closed: (info: CloseInfo) => void;
  path: (event: PathEvent) => void;
}

export type ChannelEventName = keyof ChannelEvents;

/** The receiver of a channel's messages; CONTROL messages are delivered the moment they arrive. */
export type MessageHandler = (message: Message) => void;

export interface Channel {
  /** Unique within the process; for logs. */
  readonly id: string;
  readonly transport: TransportName;
  /** The path this channel runs over (for an accepted channel, peer is the remote address). */
  readonly path: PathSpec;
  /** True on the side that called connect(). */
  readonly initiator: boolean;
  /** Set when both streams run over TLS (tcp with credentials); absent for plain channels. */
  readonly tls?: ChannelTls | undefined;
  readonly isOpen: boolean;

  /**
   * Queues one framed message of `type` whose payload is the concatenation of `payload`; the
   * Buffers are written as a scatter-gather list, never concatenated, and must not be modified
   * until the stream drains. Returns 'over-high-water' when the stream's queue is at or above
   * highWaterBytes: send no more on that stream until `drain`. Sending beyond
   * TRANSPORT_STREAM_QUEUE_BYTES_MAX or a payload above TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX is a
   * caller bug (assertion).
   */
  send(stream: StreamId, type: number, payload: readonly Buffer[]): SendStatus;

  /**
   * Sets the single receiver of messages (replacing any previous one). Messages that arrived
   * while no receiver was set are queued and delivered, in order, from inside this call.
   */
  setReceiver(handler: MessageHandler | null): void;

  /** Stops reading DATA (receive-side backpressure); CONTROL and pings keep flowing. */
  pauseData(): void;
  resumeData(): void;

  stats(): ChannelStats;

  /** The transport(s) under this channel and their counters, for status. Optional. */
  transportStats?(): ChannelTransportStats;

  /**
   * Changes liveness and flow-control settings of this channel (e.g. the resource's net{} once
   * the handshake named it); unset fields keep their value. Optional for implementations.
   */
  configure?(options: ChannelOptions): void;

  /** Subscribes; returns the unsubscribe function. */
  on<E extends ChannelEventName>(event: E, listener: ChannelEvents[E]): () => void;

  /** Graceful: queued messages are flushed, then both streams end. Idempotent. */
  close(): Promise<void>;
  /** Abort at once; queued messages are dropped. Idempotent. */
  destroy(error?: Error): void;
}

/** Liveness and flow-control settings of every channel a transport makes (drbd.conf net{}). */
export interface ChannelOptions {
  /** Interval between pings on CONTROL. @default 10_000 (drbd.conf ping-int 10 s) */
  readonly pingIntMs?: number;
  /** A ping unanswered this long declares the peer dead. @default 500 (ping-timeout 5 ds) */
  readonly pingTimeoutMs?: number;
  /** A send queue that makes no progress this long is one "ko". @default 6_000 (timeout 60 ds) */
  readonly timeoutMs?: number;
  /** This many consecutive kos declare the peer dead. @default 7 (ko-count 7) */
  readonly koCount?: number;
  /** Per-stream queue level at which send() says over-high-water. @default TRANSPORT_STREAM_HIGH_WATER_BYTES */
  readonly highWaterBytes?: number;
}

/** Accepted channels are handed to the callback given to listen(). */
export type AcceptHandler = (channel: Channel) => void;

export interface Listener {
  /** The bound endpoint (with the actual port when 0 was asked for). */
  readonly endpoint: Endpoint;
  /** Stops accepting; channels already accepted stay open. Idempotent. */
  close(): Promise<void>;
}

export interface Transport {
  readonly name: TransportName;
  /** Listens on `endpoint`; every channel a peer opens is passed to `onChannel` once up. */
  listen(endpoint: Endpoint, onChannel: AcceptHandler, opts?: ListenOptions): Promise<Listener>;
  /** Opens a channel over `path`; rejects with ConnectionError (or the abort reason). */
  connect(path: PathSpec, opts: ConnectOptions): Promise<Channel>;
  stats(): TransportStats;
  /** Closes every listener and destroys every channel of this transport. */
  close(): Promise<void>;
}

/** The logging a transport or the connection manager needs; a pino logger fits. */
export interface Log {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}
