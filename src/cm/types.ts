// The connection manager's contract: plain option objects in (the daemon maps drbd.conf onto
// them), events out. One ConnectionManager per node; one connection per (resource, peer node).
// Imports nothing at runtime.
import type { Clock } from '../platform/clock.js';
import type { Random } from '../util/prng.js';
import type {
  Channel,
  ChannelOptions,
  Endpoint,
  Log,
  PathSpec,
  TlsCredentials,
  Transport,
  TransportName,
} from '../transport/types.js';
import type { AnnouncedAddress, RefuseCode } from './wire.js';
import type { MultipathOptions } from '../transport/multipath/types.js';

export type { AnnouncedAddress, RefuseCode } from './wire.js';

/** drbd.conf's connection states as far as the manager knows them. */
export type ConnectionState = 'StandAlone' | 'Connecting' | 'Connected';

export interface CmDeps {
  readonly clock: Clock;
  /** For backoff jitter. */
  readonly random: Random;
  /** Secure random bytes (auth challenges). */
  readonly randomBytes: (length: number) => Buffer;
  readonly log?: Log;
}

export interface NodeOptions {
  /** This node's drbd.conf node-id (0..31 in DRBD; any u16 here). */
  readonly nodeId: number;
  /** Wire protocol versions this node speaks. @default CM_PROTOCOL_VERSION_MIN..CM_PROTOCOL_VERSION_MAX */
  readonly versionMin?: number;
  readonly versionMax?: number;
  /** Feature bits offered in the hello. @default 0 */
  readonly features?: number;
  /** One transport per name; paths pick theirs by `peer.transport`. */
  readonly transports: Partial<Record<TransportName, Transport>>;
  /** Time for a connection to finish the handshake. @default CM_HANDSHAKE_TIMEOUT_MS */
  readonly handshakeTimeoutMs?: number;
  /**
   * ssocks: whether an address the peer announced is worth dialing from here (e.g. on a subnet
   * of a local interface). @default every address is
   */
  readonly reachable?: (address: AnnouncedAddress) => boolean;
}

/**
 * drbd.conf net{} options of one connection. The liveness fields (ping-int, ping-timeout,
 * timeout, ko-count) are applied to the channel once the handshake is done; before that the
 * transport's own settings hold.
 */
export interface ConnectionNetOptions extends ChannelOptions {
  /** Base delay between connection attempts. @default 10_000 (connect-int 10 s) */
  readonly connectIntMs?: number;
  /** Upper bound of the backoff. @default CM_CONNECT_BACKOFF_MAX_MS */
  readonly connectIntMaxMs?: number;
  /** HMAC hash for challenge-response, e.g. "sha256" (cram-hmac-alg). Both or neither with sharedSecret. */
  readonly cramHmacAlg?: string;
  /** shared-secret; never logged. */
  readonly sharedSecret?: string;
}

export interface ConnectionConfig {
  readonly resource: string;
  readonly peerNodeId: number;
  /** Tried in order; the first that connects is used. */
  readonly paths: readonly PathSpec[];
  readonly net?: ConnectionNetOptions;
  /** Addresses announced to this peer; @default the endpoints this manager listens on. */
  readonly announce?: readonly AnnouncedAddress[];
  /**
   * Speak TLS to this peer (drbd.conf `net { tls yes; }`; tcp paths only): this node's
   * credentials, and the name the peer's certificate must carry (its `on HOST` name, or its IP
   * for a floating host). Both sides must agree: a plain channel for a TLS connection (or the
   * reverse) is refused with `tls-mismatch`, a certificate naming someone else with `tls-identity`.
   */
  readonly tls?: { readonly credentials: TlsCredentials; readonly peerName: string };
  /**
   * Run the connection as a multipath session over all `paths` (several drbd.conf paths, or
   * ssocks). Used when both sides set it; key material comes from cram-hmac-alg/shared-secret.
   */
  readonly multipath?: MultipathConnectionOptions;
}

export interface MultipathConnectionOptions extends Omit<MultipathOptions, 'auth'> {
  /**
   * `address ssocks`: `paths` hold the Ethernet address; after connecting, the session adds the
   * fastest address the peer announced (a faster class, or another network of the same class) as
   * the preferred path and keeps Ethernet as the fallback. @default false
   */
  readonly ssocks?: boolean;
}

/** An established connection, handed to the layer above with the `connected` state event. */
export interface Established {
  readonly channel: Channel;
  readonly version: number;
  /** Feature bits both sides offered (AND). */
  readonly features: number;
  readonly peerAddresses: readonly AnnouncedAddress[];
  readonly path: PathSpec;
}

export type CmEvent =
  | {
      readonly kind: 'state';
      readonly resource: string;
      readonly peerNodeId: number;
      readonly state: ConnectionState;
      /** Why the state changed (a close reason, a refusal). */
      readonly reason?: string;
      /** Set when state is Connected. */
      readonly established?: Established;
    }
  | {
      readonly kind: 'path';
      readonly resource: string;
      readonly peerNodeId: number;
      readonly path: PathSpec;
      readonly state: 'connecting' | 'established' | 'failed';
      readonly reason?: string;
    }
  | {
      /** A handshake failed or was refused, by us or by the peer. */
      readonly kind: 'refused';
      readonly resource: string | null;
      readonly peerNodeId: number | null;
      readonly remote: string;
      /** `socket`: a listener refused a socket before the handshake (TLS failure or mismatch, bad setup). */
      readonly code: RefuseCode | 'timeout' | 'closed' | 'socket';
      readonly byPeer: boolean;
      readonly reason: string;
    }
  | { readonly kind: 'listening'; readonly endpoint: Endpoint };

export type CmEventListener = (event: CmEvent) => void;
