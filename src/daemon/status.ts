// The shape of `tandem status --json`: per resource, its role and disks, and per peer the
// connection, replication and sync progress, with counters that only grow while it is up.
// State names are DRBD's so operators and Pacemaker agents read them without translation.

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
  readonly transport: string;
  readonly local: string;
  readonly remote: string;
  readonly established: boolean;
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
  /** The session's active path after its last failover/failback ("transport:address:port"). */
  readonly activePath: string;
  readonly paths: readonly PathStatus[];
  /** Transport counters (e.g. zeroCopyBytes/copiedBytes for fabric). */
  readonly transport: Readonly<Record<string, number | string>>;
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
    for (const p of r.peers) {
      const role = p.connection === 'Connected' ? ` role:${p.role}` : '';
      out.push(`  ${p.name} connection:${p.connection}${role}`);
      if (p.connection !== 'Connected') continue;
      const repl = p.replication === 'Established' ? '' : ` replication:${p.replication}`;
      out.push(`    peer-disk:${p.peerDisk}${repl} out-of-sync:${p.outOfSyncBytes}`);
      if (p.sync !== null) {
        const eta = p.sync.etaSec === null ? '?' : `${Math.round(p.sync.etaSec)}s`;
        out.push(
          `    done:${p.sync.percent.toFixed(2)} rate:${formatRate(p.sync.rateBytesPerSec)} eta:${eta}`,
        );
      }
    }
  }
  return out.join('\n') + (out.length > 0 ? '\n' : '');
}

export function formatRate(bytesPerSec: number): string {
  if (bytesPerSec >= 1024 * 1024) return `${(bytesPerSec / (1024 * 1024)).toFixed(1)} MiB/s`;
  return `${(bytesPerSec / 1024).toFixed(0)} KiB/s`;
}
