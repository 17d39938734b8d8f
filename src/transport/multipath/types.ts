// The multipath session's contract: options (drbd.conf net{} and path list) and dependencies.
// A session is a Channel carried by one or more path Channels of other transports; it survives
// the loss of any path as long as one comes back within `timeoutMs`. Imports nothing at runtime.
import type { Clock } from '../../platform/clock.js';
import type { ChannelOptions, Log, Transport, TransportName } from '../types.js';

export interface MultipathOptions extends ChannelOptions {
  /**
   * drbd.conf `load-balance-paths yes`: DATA is spread over every healthy path and reassembled
   * in order; CONTROL stays on the preferred path. @default false
   */
  readonly loadBalancePaths?: boolean;
  /** Unacknowledged bytes kept per stream for replay. @default MULTIPATH_REPLAY_BUFFER_BYTES */
  readonly replayBufferBytes?: number;
  /** Failures of one path within a minute above which it is held down. @default MULTIPATH_FLAPS_PER_MINUTE_MAX */
  readonly flapsPerMinuteMax?: number;
  /** How long a flapping path is held down. @default MULTIPATH_HOLD_DOWN_MS */
  readonly holdDownMs?: number;
  /** First redial delay of a failed path (doubles up to MULTIPATH_REDIAL_MAX_MS). @default MULTIPATH_REDIAL_MS */
  readonly redialMs?: number;
  /** Time for a path's join handshake. @default MULTIPATH_JOIN_TIMEOUT_MS */
  readonly joinTimeoutMs?: number;
  /**
   * Key material of the session handshake (cram-hmac-alg / shared-secret). Without it the
   * session key is derived from public nonces only: resumes then prove nothing more than the
   * first connection did (which the connection manager authenticates).
   */
  readonly auth?: { readonly alg: string; readonly secret: string };
}

export interface MultipathDeps {
  readonly clock: Clock;
  /** Secure random bytes (session ids, nonces). */
  readonly randomBytes: (length: number) => Buffer;
  /** The transports paths use, by name (tcp, fabric, memory). */
  readonly transports: Partial<Record<TransportName, Transport>>;
  readonly log?: Log;
}
