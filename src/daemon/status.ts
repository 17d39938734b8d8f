// The shape of `tandem status --json`: per resource, its role and disks, and per peer the
// connection, replication and sync progress, with counters that only grow while it is up.
// State names are DRBD's so operators and Pacemaker agents read them without translation.
import type { ChannelTransportStats, PathSpec, PathTransportStats } from '../transport/types.js';
import { formatStageP50, type WriteStagesStatus } from '../replication/write-stages.js';

export type Role = 'Primary' | 'Secondary' | 'Unknown';
export type DiskState =
  'Diskless' | 'Attaching' | 'Inconsistent' | 'Outdated' | 'UpToDate' | 'Failed' | 'DUnknown';
export type ConnectionState = 'StandAlone' | 'Disconnecting' | 'Connecting' | 'Connected';
export type ReplicationState =
  | 'Off'
  | 'Established'
  | 'SyncSource'
  | 'SyncTarget'
  | 'PausedSyncS'
  | 'PausedSyncT'
  | 'VerifyS'
  | 'VerifyT';

export interface SyncProgress {
  readonly percent: number;
  readonly rateBytesPerSec: number;
  /** Seconds to go at the current rate; null while the rate is still unknown. */
  readonly etaSec: number | null;
}

export interface PathStatus {
  /** The configured transport, or once established the one carrying the path (tcp, fabric). */
  readonly transport: string;
  /** The libfabric provider of an established fabric path. */
  readonly provider?: string;
  readonly local: string;
  readonly remote: string;
  readonly established: boolean;
  /** Traffic goes over this path now. */
  readonly active: boolean;
  /** Payload bytes over this path since it was established (0 when it is not). */
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /** Fabric paths: bytes sent without a copy, and copied into bounce buffers. */
  readonly zeroCopyBytes?: number;
  readonly copiedBytes?: number;
}

/** The transport of a connected peer and its counters, summed over its paths. */
export interface PeerTransportStatus {
  /** The connection's transport: tcp, fabric or multipath. */
  readonly name: string;
  /** What carries traffic now (the active path's transport; null while it has none). */
  readonly active: string | null;
  /** The libfabric provider of the active path, when it is a fabric one. */
  readonly provider?: string;
  /** Smoothed ping round trip; null before the first answer. */
  readonly rttMs: number | null;
  /** Transport payload bytes (replication traffic plus the transport's own messages). */
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly zeroCopyBytes?: number;
  readonly copiedBytes?: number;
}

export interface PeerStatus {
  readonly name: string;
  readonly nodeId: number;
  readonly connection: ConnectionState;
  readonly role: Role;
  readonly replication: ReplicationState;
  readonly peerDisk: DiskState;
  readonly outOfSyncBytes: number;
  readonly sync: SyncProgress | null;
  readonly sentBytes: number;
  readonly receivedBytes: number;
  readonly resyncBytes: number;
  /** Multipath sessions: moves to another path after a failure, and back to a preferred one. */
  readonly failovers: number;
  readonly failbacks: number;
  readonly paths: readonly PathStatus[];
  /** The transport in use and its counters (zeroCopyBytes/copiedBytes for fabric); null unless connected. */
  readonly transport: PeerTransportStatus | null;
  /**
   * Why the last attempt to connect failed (dial error, TLS refusal, handshake refusal), until
   * the peer connects again.
   */
  readonly lastError?: string;
  /** A TLS connection's protocol and cipher, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384". */
  readonly tls?: string;
}

/** This node's side of the device: what reached the local disk, and requests not yet answered. */
export interface DeviceIoStatus {
  /** Bytes submitted to the local disk for reads and writes (client, peer and resync I/O). */
  readonly readBytes: number;
  readonly writtenBytes: number;
  /** Client requests the engine has not completed yet (DRBD's upper pending). */
  readonly requestsInFlight: number;
}

export interface ResourceStatus {
  readonly name: string;
  readonly up: boolean;
  readonly role: Role;
  readonly disk: DiskState;
  readonly sizeBytes: number;
  /** Where NBD clients attach, e.g. nbd://127.0.0.1:10809/r0. */
  readonly device: string;
  readonly writable: boolean;
  /**
   * Client writes on this node by stage (engine, barrier, disk, peer, total): count, mean, p50,
   * p99 and max in microseconds, since the daemon started (docs/REPLICATION.md "Where a write's
   * time goes").
   */
  readonly writeStages: WriteStagesStatus;
  /** Counters since the daemon started; they keep counting across detach and attach. */
  readonly io: DeviceIoStatus;
  readonly peers: readonly PeerStatus[];
}

/** Renders status the way `drbdadm status` does, indented per object. */
export function formatStatus(resources: readonly ResourceStatus[]): string {
  const out: string[] = [];
  for (const r of resources) {
    if (!r.up) {
      out.push(`${r.name}: not up (run \`tandem up ${r.name}\`)`);
      continue;
    }
    out.push(`${r.name} role:${r.role}`);
    out.push(`  disk:${r.disk} size:${r.sizeBytes} device:${r.device}`);
    const p50 = formatStageP50(r.writeStages);
    if (p50 !== '') out.push(`  write latency p50: ${p50}`);
    for (const p of r.peers) {
      const role = p.connection === 'Connected' ? ` role:${p.role}` : '';
      out.push(`  ${p.name} connection:${p.connection}${role}`);
      if (p.connection !== 'Connected') {
        if (p.lastError !== undefined) out.push(`    last-error: ${p.lastError}`);
        continue;
      }
      const repl = p.replication === 'Established' ? '' : ` replication:${p.replication}`;
      out.push(`    peer-disk:${p.peerDisk}${repl} out-of-sync:${p.outOfSyncBytes}`);
      if (p.sync !== null) {
        const eta = p.sync.etaSec === null ? '?' : `${Math.round(p.sync.etaSec)}s`;
        out.push(
          `    done:${p.sync.percent.toFixed(2)} rate:${formatRate(p.sync.rateBytesPerSec)} eta:${eta}`,
        );
      }
      if (p.transport !== null) out.push(...formatTransport(p.transport, p.paths));
      if (p.tls !== undefined) out.push(`    tls:${p.tls}`);
    }
  }
  return out.join('\n') + (out.length > 0 ? '\n' : '');
}

export function formatRate(bytesPerSec: number): string {
  if (bytesPerSec >= 1024 * 1024) return `${(bytesPerSec / (1024 * 1024)).toFixed(1)} MiB/s`;
  return `${(bytesPerSec / 1024).toFixed(0)} KiB/s`;
}

/** `transport:fabric(tcp) sent:.. received:.. zero-copy:.. copied:..`, plus a line a path when several. */
function formatTransport(t: PeerTransportStatus, paths: readonly PathStatus[]): string[] {
  const carrier = (name: string, provider: string | undefined): string =>
    provider === undefined ? name : `${name}(${provider})`;
  const name =
    t.name === 'multipath'
      ? `multipath active:${t.active === null ? '-' : carrier(t.active, t.provider)}`
      : carrier(t.name, t.provider);
  const lines = [`    transport:${name}${formatCounters(t)}`];
  if (t.name !== 'multipath') return lines;
  for (const p of paths) {
    const state = p.active ? ' active' : p.established ? '' : ' down';
    const counters = p.established ? formatCounters(p) : '';
    lines.push(`      path:${p.remote} ${carrier(p.transport, p.provider)}${state}${counters}`);
  }
  return lines;
}

function formatCounters(c: {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly zeroCopyBytes?: number;
  readonly copiedBytes?: number;
}): string {
  let s = ` sent:${formatBytes(c.bytesSent)} received:${formatBytes(c.bytesReceived)}`;
  if (c.zeroCopyBytes !== undefined) {
    s += ` zero-copy:${formatBytes(c.zeroCopyBytes)} copied:${formatBytes(c.copiedBytes ?? 0)}`;
  }
  return s;
}

/** Binary units, one decimal from KiB up: 512B, 4.0KiB, 1.5GiB. */
export function formatBytes(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  if (bytes < 1024) return `${bytes}B`;
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)}${units[i] ?? ''}`;
}

/**
 * Status of a peer's configured paths and transport from its channel's transport stats (null:
 * not connected). A path we dialed is matched by its peer address and port; one the peer
 * dialed has the peer's ephemeral port, so it is matched by addresses, in configuration order.
 */
export function describeTransport(
  configured: readonly PathSpec[],
  stats: ChannelTransportStats | null,
  rttMs: number | null,
): { paths: PathStatus[]; transport: PeerTransportStatus | null } {
  const live = stats?.paths ?? [];
  const match = matchPaths(configured, live);
  const shown = (path: PathSpec, m: PathTransportStats | null): PathStatus => {
    const base = {
      local: path.local ? `${path.local.address}` : '',
      remote: `${path.peer.address}:${path.peer.port}`,
    };
    if (m === null) {
      return {
        transport: path.peer.transport,
        ...base,
        established: false,
        active: false,
        bytesSent: 0,
        bytesReceived: 0,
      };
    }
    return {
      transport: m.transport,
      ...(m.provider !== undefined ? { provider: m.provider } : {}),
      ...base,
      established: true,
      active: m.active,
      bytesSent: m.bytesSent,
      bytesReceived: m.bytesReceived,
      ...fabricCounters(m),
    };
  };
  const paths = configured.map((path, i) => shown(path, match[i] ?? null));
  // Paths the session found beyond the configuration (an ssocks upgrade to a fabric address).
  for (const l of live) if (!match.includes(l)) paths.push(shown(l.path, l));
  if (stats === null) return { paths, transport: null };
  const provider = stats.active?.provider;
  return {
    paths,
    transport: {
      name: stats.transport,
      active: stats.active?.transport ?? null,
      ...(provider !== undefined ? { provider } : {}),
      rttMs,
      bytesSent: stats.bytesSent,
      bytesReceived: stats.bytesReceived,
      ...fabricCounters(stats),
    },
  };
}

function fabricCounters(c: { readonly zeroCopyBytes?: number; readonly copiedBytes?: number }): {
  zeroCopyBytes?: number;
  copiedBytes?: number;
} {
  return c.zeroCopyBytes === undefined
    ? {}
    : { zeroCopyBytes: c.zeroCopyBytes, copiedBytes: c.copiedBytes ?? 0 };
}

/** For each configured path, the live path it is (or null); each live path is used once. */
export function matchPaths(
  configured: readonly PathSpec[],
  live: readonly PathTransportStats[],
): (PathTransportStats | null)[] {
  const out: (PathTransportStats | null)[] = configured.map(() => null);
  const used = new Set<PathTransportStats>();
  const rules: ((c: PathSpec, l: PathTransportStats) => boolean)[] = [
    // We dialed it.
    (c, l) => l.path.peer.address === c.peer.address && l.path.peer.port === c.peer.port,
    // The peer dialed it from the configured address to our configured one.
    (c, l) =>
      l.path.peer.address === c.peer.address &&
      c.local !== undefined &&
      l.path.local?.address === c.local.address,
    (c, l) => l.path.peer.address === c.peer.address,
  ];
  for (const rule of rules) {
    configured.forEach((c, i) => {
      if (out[i] !== null) return;
      const l = live.find((x) => !used.has(x) && rule(c, x));
      if (l === undefined) return;
      out[i] = l;
      used.add(l);
    });
  }
  return out;
}
