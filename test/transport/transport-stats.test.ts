// What `tandem status` shows about a connection's transport: Channel.transportStats() on single
// channels and multipath sessions (active path, per-path counters, sums that survive a failover),
// and the status shape built from it (configured paths matched to live ones, compact text).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeTransport, formatStatus, matchPaths } from '../../src/daemon/status.js';
import type { PeerStatus, ResourceStatus } from '../../src/daemon/status.js';
import { WriteStages } from '../../src/replication/write-stages.js';
import { channelTransportStats } from '../../src/transport/channel-base.js';
import { MemoryNetwork } from '../../src/transport/memory/index.js';
import type {
  Channel,
  ChannelTransportStats,
  Endpoint,
  PathSpec,
  PathTransportStats,
} from '../../src/transport/types.js';
import { ManualClock } from '../support/clocks.js';
import { Sender, World, mem } from '../multipath/world.js';

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

const ip = (transport: 'tcp' | 'fabric', address: string, port: number): Endpoint => ({
  transport,
  family: 'ipv4',
  address,
  port,
});

test('a single channel reports itself as its one active path, with its payload bytes', async () => {
  const clock = new ManualClock();
  const net = new MemoryNetwork(clock);
  const ta = net.transport();
  const tb = net.transport();
  let b: Channel | null = null;
  await tb.listen(mem('b'), (ch) => (b = ch));
  const opening = ta.connect({ peer: mem('b') }, { signal: new AbortController().signal });
  let a: Channel | null = null;
  void opening.then((ch) => (a = ch));
  for (let i = 0; i < 100 && (a === null || b === null); i++) {
    clock.advance(1);
    await flush();
  }
  assert.ok(a !== null && b !== null, 'connected');
  const [ca, cb] = [a as Channel, b as Channel];
  const got: number[] = [];
  cb.setReceiver((m) => got.push(m.payload.length));
  ca.send('data', 1, [Buffer.alloc(1000), Buffer.alloc(24)]);
  ca.send('control', 2, [Buffer.alloc(10)]);
  for (let i = 0; i < 100 && got.length < 2; i++) {
    clock.advance(1);
    await flush();
  }
  assert.deepEqual(
    got.sort((x, y) => x - y),
    [10, 1024],
  );
  const s = channelTransportStats(ca);
  assert.equal(s.transport, 'memory');
  assert.deepEqual(s.active, { transport: 'memory' });
  assert.equal(s.bytesSent, 1034);
  assert.equal(s.bytesReceived, 0);
  assert.equal(s.zeroCopyBytes, undefined, 'no fabric counters on a memory channel');
  assert.equal(s.paths.length, 1);
  assert.equal(s.paths[0]?.active, true);
  assert.equal(s.paths[0]?.path.peer.address, 'b');
  assert.equal(channelTransportStats(cb).bytesReceived, 1034);
  ca.destroy();
  await ta.close();
  await tb.close();
});

test('a multipath session reports its active path and per-path sums that survive a failover', async () => {
  const w = new World();
  const { a, b } = await w.open({ pingTimeoutMs: 200, timeoutMs: 5_000, redialMs: 100 });
  b.setReceiver(() => {});
  const sender = new Sender(a, 'data', 4000);
  for (let t = 0; t < 100; t += 2) {
    sender.send(5);
    await w.run(2);
  }
  const before = a.transportStats();
  assert.equal(before.transport, 'multipath');
  assert.deepEqual(before.active, { transport: 'memory' });
  assert.deepEqual(
    before.paths.map((p) => [p.path.peer.address, p.active]),
    [
      ['fast', true],
      ['eth', false],
    ],
  );
  const fast = before.paths[0];
  assert.ok(fast !== undefined && fast.bytesSent >= 4000 * sender.next, 'data went over fast');
  const sum = (k: 'bytesSent' | 'bytesReceived'): number =>
    before.paths.reduce((n, p) => n + p[k], 0);
  assert.equal(before.bytesSent, sum('bytesSent'));
  assert.equal(before.bytesReceived, sum('bytesReceived'));

  w.faults.reset('fast');
  await w.until(() => a.paths().find((p) => p.active)?.spec.peer.address === 'eth', 2_000);
  for (let t = 0; t < 100; t += 2) {
    sender.send(5);
    await w.run(2);
  }
  const after = a.transportStats();
  const eth = after.paths.find((p) => p.path.peer.address === 'eth');
  assert.equal(eth?.active, true, 'eth carries traffic now');
  assert.ok(
    after.bytesSent >= before.bytesSent + (eth?.bytesSent ?? 0) - (before.paths[1]?.bytesSent ?? 0),
    'what the failed path carried still counts',
  );
  assert.ok(after.bytesSent > before.bytesSent);
  await w.close();
});

const live = (path: PathSpec, extra: Partial<PathTransportStats> = {}): PathTransportStats => ({
  path,
  transport: path.peer.transport,
  active: true,
  bytesSent: 10,
  bytesReceived: 20,
  ...extra,
});

test('configured paths are matched to live ones: dialed by address and port, accepted by addresses', () => {
  const configured: PathSpec[] = [
    { local: ip('fabric', '10.0.0.1', 0), peer: ip('fabric', '10.0.0.2', 7790) },
    { local: ip('tcp', '192.168.1.1', 0), peer: ip('tcp', '192.168.1.2', 7790) },
  ];
  // We dialed the second one: its peer is exactly the configured endpoint.
  const dialed = live({ peer: ip('tcp', '192.168.1.2', 7790) });
  // The peer dialed the first: an ephemeral port, our listener as local.
  const accepted = live({
    local: ip('fabric', '10.0.0.1', 7790),
    peer: ip('fabric', '10.0.0.2', 40001),
  });
  const m = matchPaths(configured, [dialed, accepted]);
  assert.equal(m[0], accepted);
  assert.equal(m[1], dialed);
  // Two configured paths to one peer address: each live path is used once.
  const twin: PathSpec[] = [
    { local: ip('tcp', '127.0.0.1', 0), peer: ip('tcp', '127.0.0.1', 7001) },
    { local: ip('tcp', '127.0.0.1', 0), peer: ip('tcp', '127.0.0.1', 7002) },
  ];
  const l1 = live({ local: ip('tcp', '127.0.0.1', 7001), peer: ip('tcp', '127.0.0.1', 5000) });
  const m2 = matchPaths(twin, [l1]);
  assert.deepEqual(
    m2.map((x) => x === l1),
    [true, false],
  );
  assert.deepEqual(matchPaths(configured, []), [null, null]);
});

test('status shows the transport, the provider and the zero-copy counters per peer and path', () => {
  const configured: PathSpec[] = [
    { local: ip('fabric', '10.0.0.1', 0), peer: ip('fabric', '10.0.0.2', 7790) },
    { local: ip('tcp', '192.168.1.1', 0), peer: ip('tcp', '192.168.1.2', 7790) },
  ];
  const fabricPath = live(configured[0] as PathSpec, {
    provider: 'verbs',
    bytesSent: 3 * 1024 * 1024,
    zeroCopyBytes: 3 * 1024 * 1024 - 512,
    copiedBytes: 512,
  });
  const stats: ChannelTransportStats = {
    transport: 'multipath',
    active: { transport: 'fabric', provider: 'verbs' },
    bytesSent: 3 * 1024 * 1024 + 100,
    bytesReceived: 2048,
    zeroCopyBytes: 3 * 1024 * 1024 - 512,
    copiedBytes: 512,
    paths: [fabricPath],
  };
  const shown = describeTransport(configured, stats, 0.25);
  assert.deepEqual(shown.transport, {
    name: 'multipath',
    active: 'fabric',
    provider: 'verbs',
    rttMs: 0.25,
    bytesSent: 3 * 1024 * 1024 + 100,
    bytesReceived: 2048,
    zeroCopyBytes: 3 * 1024 * 1024 - 512,
    copiedBytes: 512,
  });
  assert.deepEqual(shown.paths[0], {
    transport: 'fabric',
    provider: 'verbs',
    local: '10.0.0.1',
    remote: '10.0.0.2:7790',
    established: true,
    active: true,
    bytesSent: 3 * 1024 * 1024,
    bytesReceived: 20,
    zeroCopyBytes: 3 * 1024 * 1024 - 512,
    copiedBytes: 512,
  });
  assert.deepEqual(shown.paths[1], {
    transport: 'tcp',
    local: '192.168.1.1',
    remote: '192.168.1.2:7790',
    established: false,
    active: false,
    bytesSent: 0,
    bytesReceived: 0,
  });
  // A live path beyond the configuration (an ssocks upgrade) is listed after the configured ones.
  const upgrade = live({ peer: ip('fabric', '10.9.9.2', 7791) }, { provider: 'verbs' });
  const extra = describeTransport(configured, { ...stats, paths: [fabricPath, upgrade] }, null);
  assert.equal(extra.paths.length, 3);
  assert.equal(extra.paths[2]?.remote, '10.9.9.2:7791');
  assert.equal(extra.paths[2]?.established, true);
  const down = describeTransport(configured, null, null);
  assert.equal(down.transport, null);
  assert.ok(down.paths.every((p) => !p.established));

  const peer: PeerStatus = {
    name: 'beta',
    nodeId: 1,
    connection: 'Connected',
    role: 'Secondary',
    replication: 'Established',
    peerDisk: 'UpToDate',
    outOfSyncBytes: 0,
    sync: null,
    sentBytes: 0,
    receivedBytes: 0,
    resyncBytes: 0,
    failovers: 0,
    failbacks: 0,
    paths: shown.paths,
    transport: shown.transport,
  };
  const res: ResourceStatus = {
    name: 'r0',
    up: true,
    role: 'Primary',
    disk: 'UpToDate',
    sizeBytes: 1 << 20,
    device: 'nbd://127.0.0.1:1/r0',
    writable: true,
    writeStages: new WriteStages(() => 0).status(),
    peers: [peer],
  };
  const text = formatStatus([res]).split('\n');
  assert.ok(
    text.includes(
      '    transport:multipath active:fabric(verbs) sent:3.0MiB received:2.0KiB zero-copy:3.0MiB copied:512B',
    ),
    text.join('\n'),
  );
  assert.ok(
    text.includes(
      '      path:10.0.0.2:7790 fabric(verbs) active sent:3.0MiB received:20B zero-copy:3.0MiB copied:512B',
    ),
    text.join('\n'),
  );
  assert.ok(text.includes('      path:192.168.1.2:7790 tcp down'), text.join('\n'));

  // A single-path fabric connection is one line.
  const single = describeTransport(
    [configured[0] as PathSpec],
    {
      transport: 'fabric',
      active: { transport: 'fabric', provider: 'tcp' },
      bytesSent: 100,
      bytesReceived: 0,
      zeroCopyBytes: 0,
      copiedBytes: 100,
      paths: [live(configured[0] as PathSpec, { provider: 'tcp' })],
    },
    null,
  );
  const text1 = formatStatus([
    { ...res, peers: [{ ...peer, paths: single.paths, transport: single.transport }] },
  ]);
  assert.match(
    text1,
    /\n {4}transport:fabric\(tcp\) sent:100B received:0B zero-copy:0B copied:100B\n$/,
  );
});
