// tandemd --metrics-address: a running pair serves /metrics with drbd-reactor's names for what
// DRBD has (role, connection and disk states, bytes) and Tandem's own for the rest, in a text
// promtool accepts, and a real Prometheus server scraping both daemons answers PromQL about them.
// Pins metrics that drift from the status they are read from (a Secondary counting no replicated
// writes, a role label that never changes), and an endpoint bound somewhere not asked for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { DAEMON_JS, LocalCluster, freePort } from '../../src/cli/local-cluster.js';
import { MIB, nbdWrite, skipInitialSync, waitRole, withPair } from './support.js';
import { requirePeers } from '../support/peers.js';
import { PrometheusServer, promtoolCheck } from '../support/prometheus.js';

/** One sample's value from an exposition text; undefined when no series has those labels. */
function sample(
  text: string,
  name: string,
  labels: Readonly<Record<string, string>>,
): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      have.set(l[1]!, l[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

async function scrape(address: string): Promise<string> {
  const res = await fetch(`http://${address}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

test('a running pair serves /metrics; promtool accepts it; Prometheus scrapes it and answers PromQL', async (t) => {
  if (!requirePeers(t, 'prometheus', 'promtool', 'prometheus')) return;
  const address = { alice: `127.0.0.1:${await freePort()}`, bob: `127.0.0.1:${await freePort()}` };
  const at = (n: string): string => address[n as keyof typeof address];
  await withPair(
    { diskBytes: 32 * MIB, daemonArgs: (n) => ['--metrics-address', at(n)] },
    async (c) => {
      await skipInitialSync(c, 'alice');
      await waitRole(c, 'alice', 'Primary');
      const payload = randomBytes(256 * 1024);
      await nbdWrite(c, 'alice', [
        [0, payload],
        [MIB, payload],
      ]);

      const alice = await scrape(at('alice'));
      const bob = await scrape(at('bob'));
      const r = { name: c.resource };
      const toPeer = (peer: string) => ({ ...r, conn_name: peer });
      assert.equal(sample(alice, 'drbd_resource_resources', {}), 1);
      assert.equal(sample(alice, 'drbd_resource_role', { ...r, drbd_resource_role: 'Primary' }), 1);
      assert.equal(
        sample(alice, 'drbd_resource_role', { ...r, drbd_resource_role: 'Secondary' }),
        0,
      );
      assert.equal(sample(bob, 'drbd_resource_role', { ...r, drbd_resource_role: 'Secondary' }), 1);
      for (const [text, peer] of [
        [alice, 'bob'],
        [bob, 'alice'],
      ] as const) {
        const p = toPeer(peer);
        assert.equal(
          sample(text, 'drbd_connection_state', { ...p, drbd_connection_state: 'Connected' }),
          1,
        );
        assert.equal(
          sample(text, 'drbd_connection_state', { ...p, drbd_connection_state: 'Connecting' }),
          0,
        );
        assert.equal(
          sample(text, 'drbd_device_state', { ...r, volume: '0', drbd_device_state: 'UpToDate' }),
          1,
        );
        assert.equal(
          sample(text, 'tandem_peerdevice_disk_state', {
            ...p,
            tandem_peerdevice_disk_state: 'UpToDate',
          }),
          1,
        );
        assert.equal(sample(text, 'drbd_peerdevice_outofsync_bytes', { ...p, volume: '0' }), 0);
        const size = sample(text, 'drbd_device_size_bytes', { ...r, volume: '0' }) ?? 0;
        assert.ok(size > 16 * MIB && size <= 32 * MIB, `size ${size}`);
        // Both copies took the 512 KiB: alice from her client, bob from the wire.
        assert.ok(
          (sample(text, 'drbd_device_written_bytes_total', { ...r, volume: '0' }) ?? 0) >=
            2 * payload.length,
          text,
        );
        assert.equal(sample(text, 'tandem_path_established', { ...p }), 1);
        assert.equal(
          sample(text, 'tandem_connection_transport_info', { ...p, transport: 'tcp' }),
          1,
        );
      }
      assert.ok(
        (sample(alice, 'drbd_peerdevice_sent_bytes', { ...toPeer('bob'), volume: '0' }) ?? 0) >=
          2 * payload.length,
      );
      assert.ok(
        (sample(bob, 'drbd_peerdevice_received_bytes', { ...toPeer('alice'), volume: '0' }) ?? 0) >=
          2 * payload.length,
      );
      assert.equal(sample(alice, 'drbd_device_upperpending', { ...r, volume: '0' }), 0);
      // Each client write (and only those) is in the stage histograms; bob had none.
      for (const stage of ['engine', 'disk', 'peer', 'total'])
        assert.equal(sample(alice, 'tandem_write_stage_seconds_count', { ...r, stage }), 2, stage);
      assert.equal(sample(bob, 'tandem_write_stage_seconds_count', { ...r, stage: 'total' }), 0);

      for (const [node, text] of [
        ['alice', alice],
        ['bob', bob],
      ] as const) {
        const lint = await promtoolCheck(text);
        assert.equal(lint.code, 0, `promtool check metrics on ${node}'s /metrics:\n${lint.output}`);
      }
      const notFound = await fetch(`http://${at('alice')}/`);
      assert.equal(notFound.status, 404);

      const prom = await PrometheusServer.start([
        { address: at('alice'), labels: { node: 'alice' } },
        { address: at('bob'), labels: { node: 'bob' } },
      ]);
      try {
        const nodes = async (promql: string): Promise<string[]> =>
          (await prom.query(promql)).map((s) => s.metric['node'] ?? '?').sort();
        await prom.until(
          'scraping both daemons',
          async () => (await nodes('up == 1')).length === 2,
        );
        assert.deepEqual(
          await nodes(`drbd_resource_role{name="${c.resource}",drbd_resource_role="Primary"} == 1`),
          ['alice'],
        );
        assert.deepEqual(
          await nodes(`drbd_connection_state{drbd_connection_state="Connected"} == 1`),
          ['alice', 'bob'],
        );
        // A role change reaches Prometheus: alice steps down, bob is promoted.
        await c.tandem('alice', 'secondary', c.resource);
        await c.tandem('bob', 'primary', c.resource);
        await prom.until('bob Primary in PromQL', async () => {
          const primaries = await nodes('drbd_resource_role{drbd_resource_role="Primary"} == 1');
          return primaries.length === 1 && primaries[0] === 'bob';
        });
      } finally {
        await prom.stop();
      }
    },
  );
});

test('tandemd refuses a bad metrics address, and stops when its port is taken', async () => {
  const p = spawn(process.execPath, [DAEMON_JS, '--metrics-address', '9942'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((r) => p.on('close', (c) => r(c)));
  assert.equal(code, 2, stderr);
  assert.match(stderr, /--metrics-address "9942": not HOST:PORT \(write HOST:PORT/);

  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const { port } = taken.address() as AddressInfo;
  const c = await LocalCluster.create({
    diskBytes: 16 * MIB,
    daemonArgs: () => ['--metrics-address', `127.0.0.1:${port}`],
  });
  try {
    await assert.rejects(c.start('alice'), /EADDRINUSE \(another process listens there\)/);
  } finally {
    await c.destroy();
    taken.close();
  }
});
