// Tunables of the fabric transport (drbd.conf net{} / tandem.conf; docs/CONFIG.md) and their
// validation. Resolved options are what the channel and the addon use; bad values are a
// ConfigError naming the option.
import {
  FABRIC_BUFFER_BYTES,
  FABRIC_BUFFER_BYTES_MAX,
  FABRIC_BUFFER_BYTES_MIN,
  FABRIC_BUFFERS_MAX,
  FABRIC_CONTROL_CREDITS,
  FABRIC_CONTROL_CREDITS_MIN,
  FABRIC_DATA_CREDITS,
  FABRIC_RECV_POLL_US_MAX,
  FABRIC_SEND_BUFFERS,
  FABRIC_WIRE_HEADER_BYTES,
  FABRIC_ZCOPY_THRESHOLD_BYTES,
} from '../../limits.js';
import { ConfigError } from '../../util/errors.js';
import type { ChannelOptions } from '../types.js';

export interface FabricOptions {
  /** libfabric provider (`fabric-provider`). @default $FI_PROVIDER, else verbs if present, else tcp */
  readonly provider?: string;
  /** Payloads at or above this many bytes are sent without a copy (`zcopy-threshold`). @default 8192 */
  readonly zcopyThresholdBytes?: number;
  /**
   * Who moves data (`fabric-progress`): the provider ('auto') or the addon polling its queues
   * ('manual'). @default 'manual' for sockets, else 'auto'
   */
  readonly progress?: 'auto' | 'manual';
  /** Busy-poll the receive queue this long before sleeping (`recv-poll`). @default 0 */
  readonly recvPollUs?: number;
  /** Size of each registered receive/bounce buffer (`fabric-buffer-size`). @default 65536 */
  readonly bufferBytes?: number;
  /** Receive buffers posted for DATA: the peer's DATA credits (`fabric-data-buffers`). @default 64 */
  readonly dataCredits?: number;
  /** Receive buffers posted for CONTROL (`fabric-control-buffers`). @default 16 */
  readonly controlCredits?: number;
  /** Registered bounce buffers; bounds sends in flight (`fabric-send-buffers`). @default 64 */
  readonly sendBuffers?: number;
  /** Liveness and backpressure of every channel (net{} ping-int, timeout, ...). */
  readonly channel?: ChannelOptions;
}

export interface ResolvedFabricOptions {
  readonly provider: string | undefined;
  /** undefined: by provider (`defaultProgress`). */
  readonly progress: 'auto' | 'manual' | undefined;
  readonly zcopyThresholdBytes: number;
  readonly recvPollUs: number;
  readonly bufferBytes: number;
  readonly dataCredits: number;
  readonly controlCredits: number;
  readonly sendBuffers: number;
}

function intIn(name: string, v: number | undefined, dflt: number, lo: number, hi: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < lo || x > hi) {
    throw new ConfigError(`${name} must be an integer in [${lo}, ${hi}], got ${String(v)}`);
  }
  return x;
}

/**
 * Progress when `fabric-progress` is not set: manual for libfabric's sockets provider, whose
 * progress thread (1.17) can sleep with work pending (docs/TRANSPORTS.md); auto for the rest.
 */
export function defaultProgress(provider: string): 'auto' | 'manual' {
  return provider === 'sockets' ? 'manual' : 'auto';
}

export function resolveFabricOptions(o: FabricOptions = {}): ResolvedFabricOptions {
  const bufferBytes = intIn(
    'fabric-buffer-size',
    o.bufferBytes,
    FABRIC_BUFFER_BYTES,
    FABRIC_BUFFER_BYTES_MIN,
    FABRIC_BUFFER_BYTES_MAX,
  );
  const dataCredits = intIn(
    'fabric-data-buffers',
    o.dataCredits,
    FABRIC_DATA_CREDITS,
    1,
    FABRIC_BUFFERS_MAX,
  );
  const controlCredits = intIn(
    'fabric-control-buffers',
    o.controlCredits,
    FABRIC_CONTROL_CREDITS,
    FABRIC_CONTROL_CREDITS_MIN,
    FABRIC_BUFFERS_MAX,
  );
  if (dataCredits + controlCredits > FABRIC_BUFFERS_MAX) {
    throw new ConfigError(
      `fabric-data-buffers + fabric-control-buffers must not exceed ${FABRIC_BUFFERS_MAX}`,
    );
  }
  const provider = o.provider;
  if (provider !== undefined && !/^[a-z0-9_;-]{1,64}$/i.test(provider)) {
    throw new ConfigError(`fabric-provider "${provider}" is not a libfabric provider name`);
  }
  const progress = o.progress;
  if (progress !== undefined && progress !== 'auto' && progress !== 'manual') {
    throw new ConfigError(`fabric-progress must be auto or manual, got ${String(progress)}`);
  }
  return {
    provider,
    progress,
    bufferBytes,
    dataCredits,
    controlCredits,
    sendBuffers: intIn(
      'fabric-send-buffers',
      o.sendBuffers,
      FABRIC_SEND_BUFFERS,
      1,
      FABRIC_BUFFERS_MAX,
    ),
    zcopyThresholdBytes: intIn(
      'zcopy-threshold',
      o.zcopyThresholdBytes,
      FABRIC_ZCOPY_THRESHOLD_BYTES,
      0,
      bufferBytes - FABRIC_WIRE_HEADER_BYTES,
    ),
    recvPollUs: intIn('recv-poll', o.recvPollUs, 0, 0, FABRIC_RECV_POLL_US_MAX),
  };
}
