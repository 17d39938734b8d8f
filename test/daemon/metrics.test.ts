// The metrics module without daemons: what a status turns into (resync progress, multipath
// paths and failovers, fabric counters, states as drbd-reactor's enums), the export wrapper
// that times writes, the address grammar, and the HTTP endpoint. Pins a metric that reads the
// wrong status field, a wrapper that freezes the backend's size, and an address that binds wider
// than asked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WriteStages } from '../../src/replication/write-stages.js';
import { createLogger } from '../../src/platform/log.js';
import { createMetrics, parseMetricsAddress, serveMetrics } from '../../src/daemon/metrics.js';
import type { PeerStatus, ResourceStatus } from '../../src/daemon/status.js';
import { ConfigError } from '../../src/util/errors.js';
import { optionalPeer } from '../support/peers.js';
import { promtoolCheck } from '../support/prometheus.js';

const peer: PeerStatus = {
  name: 'bob',
  nodeId: 1,
  connection: 'Connected',
  role: 'Secondary',
  replication: 'SyncSource',
  peerDisk: 'Inconsistent',
  outOfSyncBytes: 3 * 1024 * 1024,
  sync: { percent: 25, rateBytesPerSec: 4096, etaSec: 12 },
  sentBytes: 5000,
  receivedBytes: 600,
  resyncBytes: 1024 * 1024,
  failovers: 3,
  failbacks: 2,
  paths: [
    {
      transport: 'fabric',
      provider: 'verbs',
      local: '10.0.0.1',
      remote: '10.0.0.2:7789',
      established: true,
      active: true,
      bytesSent: 4000,
      bytesReceived: 500,
      zeroCopyBytes: 3000,
      copiedBytes: 1000,
    },
    {
      transport: 'tcp',
      local: '192.168.0.1',
      remote: '192.168.0.2:7789',
      established: false,
      active: false,
      bytesSent: 0,
      bytesReceived: 0,
    },
  ],
  transport: {
    name: 'multipath',
    active: 'fabric',
    provider: 'verbs',
    rttMs: 0.25,
    bytesSent: 4000,
    bytesReceived: 500,
  },
};
const r0: ResourceStatus = {
  name: 'r0',
  up: true,
  role: 'Primary',
  disk: 'UpToDate',
  sizeBytes: 64 * 1024 * 1024,
  device: 'nbd://127.0.0.1:10809/r0',
  writable: true,
  io: { readBytes: 8192, writtenBytes: 65536, requestsInFlight: 4 },
  writeStages: new WriteStages(() => 0).status(),
  peers: [peer],
};
const down: ResourceStatus = { ...r0, name: 'r1', up: false, peers: [] };

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('a status becomes drbd-reactor metrics and tandem_* ones; promtool accepts the text', async () => {
  let statuses: ResourceStatus[] = [r0, down];
  const m = createMetrics({ statuses: () => statuses });
  const text = await m.render();
  const c = 'name="r0",conn_name="bob",peer_node_id="1"';
  const pd = `${c},volume="0"`;
  const expect: [string, number][] = [
    ['drbd_resource_resources', 1],
    ['drbd_resource_role{name="r0",drbd_resource_role="Primary"}', 1],
    ['drbd_resource_role{name="r0",drbd_resource_role="Secondary"}', 0],
    [`drbd_connection_state{${c},drbd_connection_state="Connected"}`, 1],
    ['drbd_device_state{name="r0",volume="0",drbd_device_state="UpToDate"}', 1],
    ['drbd_device_size_bytes{name="r0",volume="0"}', 64 * 1024 * 1024],
    ['drbd_device_read_bytes_total{name="r0",volume="0"}', 8192],
    ['drbd_device_written_bytes_total{name="r0",volume="0"}', 65536],
    ['drbd_device_upperpending{name="r0",volume="0"}', 4],
    ['drbd_device_unintentionaldiskless{name="r0",volume="0"}', 0],
    [`drbd_peerdevice_outofsync_bytes{${pd}}`, 3 * 1024 * 1024],
    [`drbd_peerdevice_sent_bytes{${pd}}`, 5000],
    [`drbd_peerdevice_received_bytes{${pd}}`, 600],
    ['tandem_resource_up{name="r0"}', 1],
    ['tandem_resource_up{name="r1"}', 0],
    [`tandem_connection_peer_role{${c},tandem_connection_peer_role="Secondary"}`, 1],
    [`tandem_peerdevice_disk_state{${pd},tandem_peerdevice_disk_state="Inconsistent"}`, 1],
    [`tandem_peerdevice_disk_state{${pd},tandem_peerdevice_disk_state="UpToDate"}`, 0],
    [
      `tandem_peerdevice_replication_state{${pd},tandem_peerdevice_replication_state="SyncSource"}`,
      1,
    ],
    [`tandem_peerdevice_resync_done_ratio{${pd}}`, 0.25],
    [`tandem_peerdevice_resync_rate_bytes_per_second{${pd}}`, 4096],
    [`tandem_peerdevice_resync_bytes_total{${pd}}`, 1024 * 1024],
    [`tandem_connection_failovers_total{${c}}`, 3],
    [`tandem_connection_failbacks_total{${c}}`, 2],
    [`tandem_connection_rtt_seconds{${c}}`, 0.00025],
    [
      `tandem_connection_transport_info{${c},transport="multipath",active="fabric",provider="verbs"}`,
      1,
    ],
    [
      `tandem_path_info{${c},path="10.0.0.2:7789",local="10.0.0.1",transport="fabric",provider="verbs"}`,
      1,
    ],
    [`tandem_path_established{${c},path="10.0.0.2:7789"}`, 1],
    [`tandem_path_established{${c},path="192.168.0.2:7789"}`, 0],
    [`tandem_path_active{${c},path="10.0.0.2:7789"}`, 1],
    [`tandem_path_sent_bytes_total{${c},path="10.0.0.2:7789"}`, 4000],
    [`tandem_path_received_bytes_total{${c},path="10.0.0.2:7789"}`, 500],
    [`tandem_path_zero_copy_bytes_total{${c},path="10.0.0.2:7789"}`, 3000],
    [`tandem_path_copied_bytes_total{${c},path="10.0.0.2:7789"}`, 1000],
  ];
  for (const [series, v] of expect) assert.equal(sample(text, series), v, series);
  // A resource that is down has no DRBD objects (as in the kernel), and tcp paths no fabric counters.
  assert.ok(!text.includes('drbd_resource_role{name="r1"'));
  assert.ok(
    !text.includes(
      'tandem_path_zero_copy_bytes_total{name="r0",conn_name="bob",peer_node_id="1",path="192.168.0.2:7789"}',
    ),
  );
  if (optionalPeer('prometheus', 'promtool')) {
    const lint = await promtoolCheck(text);
    assert.equal(lint.code, 0, lint.output);
  }

  // Read again at each scrape: the resync ended, the series for its progress go.
  statuses = [
    { ...r0, peers: [{ ...peer, replication: 'Established', sync: null, peerDisk: 'UpToDate' }] },
  ];
  const after = await m.render();
  assert.equal(sample(after, `tandem_peerdevice_resync_done_ratio{${pd}}`), undefined);
  assert.equal(
    sample(
      after,
      `tandem_peerdevice_replication_state{${pd},tandem_peerdevice_replication_state="Established"}`,
    ),
    1,
  );
  assert.equal(sample(after, 'tandem_resource_up{name="r1"}'), undefined);
});

test('the write-stage breakdown of status is a Prometheus histogram per stage', async () => {
  const empty = r0.writeStages.stages.total;
  const total = {
    ...empty,
    count: 3,
    sumUs: 3500,
    // One write in [2, 4) us, two in [1024, 2048) us.
    buckets: [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2],
  };
  const withStages: ResourceStatus = {
    ...r0,
    writeStages: { stages: { ...r0.writeStages.stages, total }, dropped: 5 },
  };
  const m = createMetrics({ statuses: () => [withStages] });
  const text = await m.render();
  const t = 'name="r0",stage="total"';
  const bucket = (le: string): number | undefined =>
    sample(text, `tandem_write_stage_seconds_bucket{${t},le="${le}"}`);
  assert.equal(bucket('0.000002'), 0);
  assert.equal(bucket('0.000004'), 1);
  assert.equal(bucket('0.001024'), 1);
  assert.equal(bucket('0.002048'), 3);
  assert.equal(bucket('1073.741824'), 3);
  assert.equal(bucket('+Inf'), 3);
  assert.equal(sample(text, `tandem_write_stage_seconds_sum{${t}}`), 0.0035);
  assert.equal(sample(text, `tandem_write_stage_seconds_count{${t}}`), 3);
  assert.equal(sample(text, 'tandem_write_stage_seconds_count{name="r0",stage="disk"}'), 0);
  assert.equal(sample(text, 'tandem_write_stages_dropped_total{name="r0"}'), 5);
  if (optionalPeer('prometheus', 'promtool')) {
    const lint = await promtoolCheck(text);
    assert.equal(lint.code, 0, lint.output);
  }
});

test('--metrics-address takes HOST:PORT with an IP literal or localhost, nothing wider by default', () => {
  assert.deepEqual(parseMetricsAddress('127.0.0.1:9942'), { host: '127.0.0.1', port: 9942 });
  assert.deepEqual(parseMetricsAddress('[::1]:9942'), { host: '::1', port: 9942 });
  assert.deepEqual(parseMetricsAddress('localhost:0'), { host: 'localhost', port: 0 });
  assert.deepEqual(parseMetricsAddress('0.0.0.0:9942'), { host: '0.0.0.0', port: 9942 });
  for (const [text, why] of [
    ['9942', /not HOST:PORT/],
    [':9942', /no host/],
    ['127.0.0.1', /not HOST:PORT/],
    ['127.0.0.1:', /not HOST:PORT/],
    ['0.0.0:9942', /not an IPv4 address/],
    ['::1:9942', /not HOST:PORT/],
    ['[127.0.0.1]:9942', /not an IPv6 address/],
    ['127.0.0.1:70000', /above 65535/],
    ['127.0.0.1:123456', /not HOST:PORT/],
    ['example.com:9942', /not an IPv4 address or localhost/],
  ] as const) {
    assert.throws(
      () => parseMetricsAddress(text),
      (e: unknown) => e instanceof ConfigError && why.test(e.message),
      text,
    );
  }
});

test('the endpoint serves GET /metrics only, and a taken port is a clear error', async () => {
  const m = createMetrics({ statuses: () => [r0] });
  const log = createLogger({ node: 'test' }, 'error');
  const s = await serveMetrics({ host: '127.0.0.1', port: 0 }, m, log);
  try {
    assert.match(s.address, /^127\.0\.0\.1:\d+$/);
    const ok = await fetch(`http://${s.address}/metrics`);
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /drbd_resource_role\{name="r0",drbd_resource_role="Primary"\} 1/);
    assert.equal((await fetch(`http://${s.address}/`)).status, 404);
    assert.equal((await fetch(`http://${s.address}/metrics`, { method: 'POST' })).status, 405);
    const port = Number(s.address.split(':')[1]);
    await assert.rejects(
      serveMetrics({ host: '127.0.0.1', port }, m, log),
      (e: unknown) =>
        e instanceof ConfigError && /EADDRINUSE \(another process listens there\)/.test(e.message),
    );
  } finally {
    await s.close();
  }
});
