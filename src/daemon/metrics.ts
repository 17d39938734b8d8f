// Prometheus metrics of one tandemd (`--metrics-address`). Every value, the write-stage
// histograms included, is read from each Resource's status() at scrape time: the endpoint adds
// nothing to the data path. Metric names follow drbd-reactor's prometheus plugin wherever DRBD
// has the metric (dashboards and alerts written for DRBD work unchanged); the rest is
// `tandem_*`. docs/OPERATIONS.md lists them.
import { isIP } from 'node:net';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import { WRITE_STAGES_BUCKETS } from '../limits.js';
import { WRITE_STAGES } from '../replication/write-stages.js';
import type { Logger } from '../platform/log.js';
import { ConfigError } from '../util/errors.js';
import type {
  ConnectionState,
  DiskState,
  PeerStatus,
  ReplicationState,
  ResourceStatus,
  Role,
} from './status.js';

const ROLES: readonly Role[] = ['Primary', 'Secondary', 'Unknown'];
const DISK_STATES: readonly DiskState[] = [
  'Diskless',
  'Attaching',
  'Inconsistent',
  'Outdated',
  'UpToDate',
  'Failed',
  'DUnknown',
];
const CONNECTION_STATES: readonly ConnectionState[] = [
  'StandAlone',
  'Disconnecting',
  'Connecting',
  'Connected',
];
const REPLICATION_STATES: readonly ReplicationState[] = [
  'Off',
  'Established',
  'SyncSource',
  'SyncTarget',
  'PausedSyncS',
  'PausedSyncT',
  'VerifyS',
  'VerifyT',
];

export interface TandemMetrics {
  readonly registry: Registry;
  /** The exposition text of one scrape. */
  render(): Promise<string>;
}

/** Metrics over `statuses()`, which is read once per scrape. */
export function createMetrics(deps: {
  readonly statuses: () => readonly ResourceStatus[];
}): TandemMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client names these gauges *_total, which promtool refuses (a gauge is no counter);
  // process_*, nodejs_heap_* and the event loop lag stay.
  for (const m of [
    'nodejs_active_handles_total',
    'nodejs_active_requests_total',
    'nodejs_active_resources_total',
  ])
    registry.removeSingleMetric(m);
  let scrape: readonly ResourceStatus[] = [];
  const up = (): readonly ResourceStatus[] => scrape.filter((r) => r.up);

  const R = ['name'] as const;
  const D = ['name', 'volume'] as const;
  const C = ['name', 'conn_name', 'peer_node_id'] as const;
  const PD = ['name', 'conn_name', 'peer_node_id', 'volume'] as const;
  const P = ['name', 'conn_name', 'peer_node_id', 'path'] as const;
  const conn = (r: ResourceStatus, p: PeerStatus) => ({
    name: r.name,
    conn_name: p.name,
    peer_node_id: String(p.nodeId),
  });
  // Tandem has one volume per resource (volume 0); DRBD's labels keep room for more.
  const peerDevice = (r: ResourceStatus, p: PeerStatus) => ({ ...conn(r, p), volume: '0' });
  const peers = function* (): Generator<[ResourceStatus, PeerStatus]> {
    for (const r of up()) for (const p of r.peers) yield [r, p];
  };

  /** A gauge set from the scrape's statuses. */
  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Record<L, string>, v: number) => void) => void,
  ): void => {
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        fill((labels, v) => this.set(labels as never, v));
      },
    });
  };
  /** A counter whose value is a status counter (reset and re-added each scrape). */
  const counter = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (set: (labels: Record<L, string>, v: number) => void) => void,
  ): void => {
    new Counter<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        fill((labels, v) => this.inc(labels as never, v));
      },
    });
  };
  /** drbd-reactor's enum shape: one series per state, labelled with the metric's own name, 1 for the current one. */
  const enumGauge = <S extends string, L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    states: readonly S[],
    each: (emit: (labels: Record<L, string>, current: S) => void) => void,
  ): void =>
    gauge<L | typeof name>(name, help, [...labelNames, name], (set) =>
      each((labels, current) => {
        for (const s of states)
          set({ ...labels, [name]: s } as Record<L | typeof name, string>, s === current ? 1 : 0);
      }),
    );

  // --- DRBD's metrics, by drbd-reactor's names -------------------------------------------------
  gauge('drbd_resource_resources', 'Number of resources', [], (set) => set({}, up().length));
  enumGauge('drbd_resource_role', 'DRBD role of the resource', R, ROLES, (emit) => {
    for (const r of up()) emit({ name: r.name }, r.role);
  });
  enumGauge('drbd_connection_state', 'DRBD connection state', C, CONNECTION_STATES, (emit) => {
    for (const [r, p] of peers()) emit(conn(r, p), p.connection);
  });
  enumGauge('drbd_device_state', 'DRBD device state', D, DISK_STATES, (emit) => {
    for (const r of up()) emit({ name: r.name, volume: '0' }, r.disk);
  });
  gauge('drbd_device_size_bytes', 'Device size in bytes', D, (set) => {
    for (const r of up()) set({ name: r.name, volume: '0' }, r.sizeBytes);
  });
  gauge(
    'drbd_device_unintentionaldiskless',
    'Boolean whether the devices is unintentional diskless (Tandem has no intentional diskless clients)',
    D,
    (set) => {
      for (const r of up()) set({ name: r.name, volume: '0' }, r.disk === 'Diskless' ? 1 : 0);
    },
  );
  gauge(
    'drbd_device_upperpending',
    'Number of block I/O requests forwarded to DRBD, but not yet answered by DRBD.',
    D,
    (set) => {
      for (const r of up()) set({ name: r.name, volume: '0' }, r.io.requestsInFlight);
    },
  );
  counter('drbd_device_read_bytes_total', 'Net data read from local hard disk', D, (set) => {
    for (const r of up()) set({ name: r.name, volume: '0' }, r.io.readBytes);
  });
  counter('drbd_device_written_bytes_total', 'Net data written on local disk', D, (set) => {
    for (const r of up()) set({ name: r.name, volume: '0' }, r.io.writtenBytes);
  });
  gauge(
    'drbd_peerdevice_outofsync_bytes',
    'Number of bytes currently out of sync with this peer, according to the bitmap that DRBD has for it',
    PD,
    (set) => {
      for (const [r, p] of peers()) set(peerDevice(r, p), p.outOfSyncBytes);
    },
  );
  // drbd-reactor names these without _total; promtool only accepts that on a gauge. The value
  // only grows while the daemon runs, so rate() over them works as on a counter.
  gauge(
    'drbd_peerdevice_sent_bytes',
    'Number of bytes currently sent to this peer (grows like a counter)',
    PD,
    (set) => {
      for (const [r, p] of peers()) set(peerDevice(r, p), p.sentBytes);
    },
  );
  gauge(
    'drbd_peerdevice_received_bytes',
    'Number of bytes currently received from this peer (grows like a counter)',
    PD,
    (set) => {
      for (const [r, p] of peers()) set(peerDevice(r, p), p.receivedBytes);
    },
  );

  // --- Tandem's own -------------------------------------------------------------------------
  gauge('tandem_resource_up', 'Boolean whether the resource is up on this node', R, (set) => {
    for (const r of scrape) set({ name: r.name }, r.up ? 1 : 0);
  });
  enumGauge(
    'tandem_connection_peer_role',
    "The peer's role as this node sees it (Unknown unless connected)",
    C,
    ROLES,
    (emit) => {
      for (const [r, p] of peers()) emit(conn(r, p), p.role);
    },
  );
  enumGauge(
    'tandem_peerdevice_disk_state',
    "The peer's disk state as this node sees it (DUnknown unless connected)",
    PD,
    DISK_STATES,
    (emit) => {
      for (const [r, p] of peers()) emit(peerDevice(r, p), p.peerDisk);
    },
  );
  enumGauge(
    'tandem_peerdevice_replication_state',
    'Replication state with this peer',
    PD,
    REPLICATION_STATES,
    (emit) => {
      for (const [r, p] of peers()) emit(peerDevice(r, p), p.replication);
    },
  );
  gauge(
    'tandem_peerdevice_resync_done_ratio',
    'Progress of the running resync or verify with this peer, 0 to 1 (absent when none runs)',
    PD,
    (set) => {
      for (const [r, p] of peers())
        if (p.sync !== null) set(peerDevice(r, p), p.sync.percent / 100);
    },
  );
  gauge(
    'tandem_peerdevice_resync_rate_bytes_per_second',
    'Rate of the running resync or verify with this peer (absent when none runs)',
    PD,
    (set) => {
      for (const [r, p] of peers())
        if (p.sync !== null) set(peerDevice(r, p), p.sync.rateBytesPerSec);
    },
  );
  counter(
    'tandem_peerdevice_resync_bytes_total',
    'Resync data sent to or received from this peer',
    PD,
    (set) => {
      for (const [r, p] of peers()) set(peerDevice(r, p), p.resyncBytes);
    },
  );
  counter(
    'tandem_connection_failovers_total',
    'Times a multipath session moved to another path after a failure',
    C,
    (set) => {
      for (const [r, p] of peers()) set(conn(r, p), p.failovers);
    },
  );
  counter(
    'tandem_connection_failbacks_total',
    'Times a multipath session moved back to a preferred path',
    C,
    (set) => {
      for (const [r, p] of peers()) set(conn(r, p), p.failbacks);
    },
  );
  gauge(
    'tandem_connection_rtt_seconds',
    'Smoothed ping round trip to the peer (absent before the first answer)',
    C,
    (set) => {
      for (const [r, p] of peers()) {
        const rtt = p.transport?.rttMs ?? null;
        if (rtt !== null) set(conn(r, p), rtt / 1000);
      }
    },
  );
  gauge(
    'tandem_connection_transport_info',
    'What carries the connection: transport (tcp, fabric, multipath), active (the carrier now), provider (fabric)',
    [...C, 'transport', 'active', 'provider'],
    (set) => {
      for (const [r, p] of peers()) {
        const t = p.transport;
        if (t === null) continue;
        set(
          { ...conn(r, p), transport: t.name, active: t.active ?? '', provider: t.provider ?? '' },
          1,
        );
      }
    },
  );
  const paths = function* (): Generator<
    [Record<(typeof P)[number], string>, PeerStatus['paths'][number]]
  > {
    for (const [r, p] of peers())
      for (const path of p.paths) yield [{ ...conn(r, p), path: path.remote }, path];
  };
  gauge(
    'tandem_path_info',
    'A configured path to the peer: its local address, its transport (the configured one until established, then the one carrying it) and fabric provider',
    [...P, 'local', 'transport', 'provider'],
    (set) => {
      for (const [l, path] of paths())
        set(
          { ...l, local: path.local, transport: path.transport, provider: path.provider ?? '' },
          1,
        );
    },
  );
  gauge('tandem_path_established', 'Boolean whether the path is established', P, (set) => {
    for (const [l, path] of paths()) set(l, path.established ? 1 : 0);
  });
  gauge('tandem_path_active', 'Boolean whether traffic goes over this path now', P, (set) => {
    for (const [l, path] of paths()) set(l, path.active ? 1 : 0);
  });
  counter(
    'tandem_path_sent_bytes_total',
    'Transport payload bytes sent over the path since it was established',
    P,
    (set) => {
      for (const [l, path] of paths()) set(l, path.bytesSent);
    },
  );
  counter(
    'tandem_path_received_bytes_total',
    'Transport payload bytes received over the path since it was established',
    P,
    (set) => {
      for (const [l, path] of paths()) set(l, path.bytesReceived);
    },
  );
  counter(
    'tandem_path_zero_copy_bytes_total',
    'Fabric paths: bytes sent without a copy (absent on other transports)',
    P,
    (set) => {
      for (const [l, path] of paths())
        if (path.zeroCopyBytes !== undefined) set(l, path.zeroCopyBytes);
    },
  );
  counter(
    'tandem_path_copied_bytes_total',
    'Fabric paths: bytes copied into bounce buffers before sending (absent on other transports)',
    P,
    (set) => {
      for (const [l, path] of paths()) if (path.copiedBytes !== undefined) set(l, path.copiedBytes);
    },
  );

  registry.registerMetric(writeStagesHistogram(up) as unknown as Metric);
  counter(
    'tandem_write_stages_dropped_total',
    'Client writes left out of tandem_write_stage_seconds (their tracking slot was reused while they were in flight)',
    R,
    (set) => {
      for (const r of up()) set({ name: r.name }, r.writeStages.dropped);
    },
  );

  return {
    registry,
    async render() {
      scrape = deps.statuses();
      return registry.metrics();
    },
  };
}

/**
 * `tandem_write_stage_seconds{name,stage}`: the write-stage breakdown of `tandem status --json`
 * (src/replication/write-stages.ts) as a Prometheus histogram, read at scrape time. Its log2
 * buckets become the `le` bounds (bucket b holds [2^(b-1), 2^b) us, so everything up to bucket b
 * is le = 2^b us); the last bucket, which holds the rest, is only in +Inf. prom-client's
 * Histogram only observes samples, so this is a collector object of the shape its registry
 * reads (name, help, type, get).
 */
function writeStagesHistogram(up: () => readonly ResourceStatus[]): object {
  const name = 'tandem_write_stage_seconds';
  const help =
    'Client write latency by stage: engine (received to issued), barrier (activity-log transaction), disk, peer (ack), total (received from NBD to completed)';
  const bounds = Array.from({ length: WRITE_STAGES_BUCKETS - 1 }, (_, b) => 2 ** b / 1e6);
  const values = (): {
    metricName: string;
    labels: Record<string, string | number>;
    value: number;
  }[] => {
    const out: { metricName: string; labels: Record<string, string | number>; value: number }[] =
      [];
    for (const r of up()) {
      for (const stage of WRITE_STAGES) {
        const h = r.writeStages.stages[stage];
        const labels = { name: r.name, stage };
        let below = 0;
        bounds.forEach((le, b) => {
          below += h.buckets[b] ?? 0;
          out.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: below });
        });
        out.push({
          metricName: `${name}_bucket`,
          labels: { ...labels, le: '+Inf' },
          value: h.count,
        });
        out.push({ metricName: `${name}_sum`, labels, value: h.sumUs / 1e6 });
        out.push({ metricName: `${name}_count`, labels, value: h.count });
      }
    }
    return out;
  };
  return {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    collect: () => undefined,
    reset: () => undefined,
    get: () =>
      Promise.resolve({ name, help, type: 'histogram', aggregator: 'sum', values: values() }),
  };
}

/** Where the metrics endpoint listens: an IP literal (or localhost) and a port. */
export interface MetricsAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `HOST:PORT` (`[v6]:PORT` for IPv6). The host is required, so the endpoint is only
 * reachable where the operator chose (no default to every interface); port 0 picks a free one.
 */
export function parseMetricsAddress(text: string): MetricsAddress {
  const bad = (why: string): never => {
    throw new ConfigError(
      `--metrics-address ${JSON.stringify(text)}: ${why} (write HOST:PORT, e.g. 127.0.0.1:9942 or [::1]:9942)`,
    );
  };
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  if (m === null) return bad('not HOST:PORT');
  const host = m[1] ?? m[2] ?? '';
  if (host === '') return bad('no host');
  if (m[1] !== undefined && isIP(host) !== 6) return bad(`${host} is not an IPv6 address`);
  if (m[2] !== undefined && host !== 'localhost' && isIP(host) !== 4)
    return bad(`${host} is not an IPv4 address or localhost`);
  const port = Number(m[3]);
  if (port > 65_535) return bad(`port ${port} is above 65535`);
  return { host, port };
}

export interface MetricsServer {
  /** The bound address, HOST:PORT. */
  readonly address: string;
  close(): Promise<void>;
}

/** Serves GET /metrics; anything else is 404 (or 405 for another method). */
export async function serveMetrics(
  at: MetricsAddress,
  metrics: TandemMetrics,
  log: Logger,
): Promise<MetricsServer> {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end();
      return;
    }
    const body = await metrics.render();
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      log.error({ err: String(e) }, 'metrics scrape failed');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('scrape failed\n');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new ConfigError(
          `cannot serve metrics on ${at.host}:${at.port}: ${e.code ?? e.message}${e.code === 'EADDRINUSE' ? ' (another process listens there)' : ''}`,
          { cause: e },
        ),
      ),
    );
    server.listen({ host: at.host, port: at.port, exclusive: true }, resolve);
  });
  const a = server.address();
  const address =
    a === null || typeof a === 'string'
      ? String(a)
      : `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
  server.on('error', (e) => log.error({ err: String(e) }, 'metrics endpoint failed'));
  // A scraper's keep-alive connection must not hold a stopping daemon.
  server.keepAliveTimeout = 5_000;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
