// How drbd.conf's addresses, paths and net options become transports, paths and multipath
// sessions on one node: sdp/rdma -> fabric, several paths / load-balance-paths / ssocks ->
// multipath, fabric tunables -> FabricOptions; and which transports the node builds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigText, resourcesForNode } from '../../src/config/index.js';
import { planResource, type ResourcePlan } from '../../src/daemon/resource-config.js';
import {
  createTransports,
  interconnectEndpoints,
  onLocalSubnet,
} from '../../src/daemon/transports.js';
import { silentLogger } from '../../src/platform/log.js';
import { systemClock } from '../../src/platform/clock.js';
import { secureBytes } from '../../src/platform/random.js';
import type { FabricTransportApi } from '../../src/transport/fabric/index.js';
import { ConfigError, FabricUnavailableError } from '../../src/util/errors.js';
import type { Endpoint } from '../../src/transport/types.js';

function plan(text: string, node = 'alice'): ResourcePlan {
  const { config } = parseConfigText(text, 'test.res');
  const r = resourcesForNode(config, node)[0];
  assert.ok(r);
  return planResource(r, node);
}

const hosts = (alice: string, bob: string, extra = ''): string => `
resource r0 {
  ${extra}
  on alice { node-id 0; device "nbd://127.0.0.1:20001/r0"; disk /tmp/a; meta-disk internal; address ${alice}; }
  on bob { node-id 1; device "nbd://127.0.0.1:20002/r0"; disk /tmp/b; meta-disk internal; address ${bob}; }
}`;

test('ipv4 addresses are one TCP path and no session', () => {
  const p = plan(hosts('127.0.0.1:7100', '127.0.0.1:7101'));
  assert.equal(p.peers.length, 1);
  const peer = p.peers[0]!;
  assert.deepEqual(
    peer.paths.map((x) => x.peer),
    [{ transport: 'tcp', family: 'ipv4', address: '127.0.0.1', port: 7101 }],
  );
  assert.equal(peer.multipath, undefined);
  assert.deepEqual(p.listen, [
    { transport: 'tcp', family: 'ipv4', address: '127.0.0.1', port: 7100 },
  ]);
  assert.deepEqual(p.ssocks, []);
});

test('address sdp selects the fabric transport, with the fabric tunables from net{}', () => {
  const p = plan(
    hosts(
      'sdp 127.0.0.1:7100',
      'sdp 127.0.0.1:7101',
      'net { fabric-provider tcp; fabric-progress manual; zcopy-threshold 16384; recv-poll 50; fabric-data-buffers 32; }',
    ),
  );
  assert.equal(p.peers[0]!.paths[0]!.peer.transport, 'fabric');
  assert.equal(p.listen[0]!.transport, 'fabric');
  assert.equal(p.fabric.provider, 'tcp');
  assert.equal(p.fabric.progress, 'manual');
  assert.equal(p.fabric.zcopyThresholdBytes, 16384);
  assert.equal(p.fabric.recvPollUs, 50);
  assert.equal(p.fabric.dataCredits, 32);
  assert.equal(p.fabric.bufferBytes, undefined);
});

test('net { transport "rdma"; } selects the fabric transport for ipv4 addresses', () => {
  const p = plan(hosts('127.0.0.1:7100', '127.0.0.1:7101', 'net { transport "rdma"; }'));
  assert.equal(p.peers[0]!.paths[0]!.peer.transport, 'fabric');
  assert.equal(p.peers[0]!.paths[0]!.peer.family, 'ipv4');
});

test('a bad fabric tunable is a config error naming the option', () => {
  assert.throws(
    () => plan(hosts('sdp 127.0.0.1:7100', 'sdp 127.0.0.1:7101', 'net { recv-poll 5000000; }')),
    /recv-poll/,
  );
  assert.throws(
    () => plan(hosts('sdp 127.0.0.1:7100', 'sdp 127.0.0.1:7101', 'net { fabric-progress often; }')),
    /fabric-progress/,
  );
});

test('fabric rules across options fail the plan, not the daemon later', () => {
  assert.throws(
    () =>
      plan(
        hosts(
          'sdp 127.0.0.1:7100',
          'sdp 127.0.0.1:7101',
          'net { fabric-buffer-size 8192; zcopy-threshold 65536; }',
        ),
      ),
    (e: unknown) => e instanceof ConfigError && /r0: zcopy-threshold/.test(e.message),
  );
});

test('address ssocks: TCP to the Ethernet address, as a session that may upgrade', () => {
  const p = plan(hosts('ssocks 198.51.100.1:7100', 'ssocks 198.51.100.2:7100'));
  const peer = p.peers[0]!;
  assert.equal(peer.paths.length, 1);
  assert.equal(peer.paths[0]!.peer.transport, 'tcp');
  assert.equal(peer.multipath?.ssocks, true);
  assert.deepEqual(p.ssocks, [
    { transport: 'tcp', family: 'ipv4', address: '198.51.100.1', port: 7100 },
  ]);
});

test('several paths make a multipath session, in configuration order, with load-balance-paths', () => {
  const p = plan(`
resource r0 {
  net { load-balance-paths yes; ping-timeout 3; multipath-replay-buffer 4M; }
  on alice { node-id 0; device "nbd://127.0.0.1:20001/r0"; disk /tmp/a; meta-disk internal; }
  on bob { node-id 1; device "nbd://127.0.0.1:20002/r0"; disk /tmp/b; meta-disk internal; }
  connection {
    path { host alice address 203.0.113.1:7100; host bob address 203.0.113.2:7100; }
    path { host alice address 198.51.100.1:7100; host bob address 198.51.100.2:7100; }
  }
}`);
  const peer = p.peers[0]!;
  assert.deepEqual(
    peer.paths.map((x) => `${x.local?.address}->${x.peer.address}:${x.peer.port}`),
    ['203.0.113.1->203.0.113.2:7100', '198.51.100.1->198.51.100.2:7100'],
  );
  assert.equal(peer.multipath?.loadBalancePaths, true);
  assert.equal(peer.multipath?.ssocks, false);
  assert.equal(peer.multipath?.pingTimeoutMs, 300);
  assert.equal(peer.multipath?.replayBufferBytes, 4 * 1024 * 1024);
  assert.equal(p.listen.length, 2);
});

test('transport "memory" is refused in a daemon configuration', () => {
  assert.throws(
    () => plan(hosts('127.0.0.1:7100', '127.0.0.1:7101', 'net { transport "memory"; }')),
    (e: unknown) => e instanceof ConfigError && /memory/.test(e.message),
  );
});

const log = silentLogger;
const deps = { clock: systemClock, randomBytes: secureBytes, log };

test('a node builds tcp only, unless a resource needs the fabric', async () => {
  const t = createTransports([plan(hosts('127.0.0.1:7100', '127.0.0.1:7101'))], {
    ...deps,
    makeFabric: () => assert.fail('no fabric wanted'),
  });
  assert.deepEqual(Object.keys(t.transports), ['tcp']);
  await t.transports.tcp?.close();
});

test('sdp without a usable fabric is a config error that says what to install', () => {
  assert.throws(
    () =>
      createTransports([plan(hosts('sdp 127.0.0.1:7100', 'sdp 127.0.0.1:7101'))], {
        ...deps,
        makeFabric: () => {
          throw new FabricUnavailableError('install libfabric-dev and rebuild');
        },
      }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /r0: the fabric transport/.test(e.message) &&
      /libfabric-dev/.test(e.message),
  );
});

test('ssocks without a fabric stays on TCP', async () => {
  let asked = 0;
  const t = createTransports(
    [plan(hosts('ssocks 198.51.100.1:7100', 'ssocks 198.51.100.2:7100'))],
    {
      ...deps,
      makeFabric: () => {
        asked++;
        throw new FabricUnavailableError('no addon');
      },
    },
  );
  assert.equal(asked, 1);
  assert.equal(t.fabric, null);
  assert.deepEqual(Object.keys(t.transports), ['tcp']);
  await t.transports.tcp?.close();
});

test('interconnect endpoints: other addresses of the family, fabric ones only with verbs', () => {
  const eth: Endpoint = { transport: 'tcp', family: 'ipv4', address: '198.51.100.1', port: 7100 };
  const ifaces = {
    lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true }],
    eth0: [
      { address: '198.51.100.1', family: 'IPv4', internal: false },
      { address: 'fe80::1', family: 'IPv6', internal: false },
    ],
    ib0: [
      { address: '203.0.113.1', family: 'IPv4', internal: false },
      { address: 'fdaa::1', family: 'IPv6', internal: false },
    ],
  } as unknown as Parameters<typeof interconnectEndpoints>[2];
  assert.deepEqual(interconnectEndpoints(eth, null, ifaces), [
    { transport: 'tcp', family: 'ipv4', address: '203.0.113.1', port: 7100 },
  ]);
  const verbs = { provider: 'verbs' } as FabricTransportApi;
  assert.deepEqual(
    interconnectEndpoints(eth, verbs, ifaces).map((e) => `${e.transport}:${e.address}`),
    ['fabric:203.0.113.1', 'tcp:203.0.113.1'],
  );
  const tcpProvider = { provider: 'tcp' } as FabricTransportApi;
  assert.equal(interconnectEndpoints(eth, tcpProvider, ifaces).length, 1);
  assert.deepEqual(
    interconnectEndpoints({ ...eth, address: '127.0.0.1' }, verbs, ifaces),
    [],
    'a loopback ssocks address has no interconnect',
  );
});

test('an ssocks node upgrades only to addresses on a subnet of its own interfaces', () => {
  const ifaces = {
    lo: [{ address: '127.0.0.1', cidr: '127.0.0.1/8', family: 'IPv4', internal: true }],
    ib0: [
      { address: '203.0.113.1', cidr: '203.0.113.1/24', family: 'IPv4', internal: false },
      { address: 'fdaa::1', cidr: 'fdaa::1/64', family: 'IPv6', internal: false },
    ],
  } as unknown as Parameters<typeof onLocalSubnet>[1];
  assert.equal(onLocalSubnet('203.0.113.2', ifaces), true);
  assert.equal(onLocalSubnet('203.0.114.2', ifaces), false);
  assert.equal(onLocalSubnet('198.51.100.2', ifaces), false);
  assert.equal(onLocalSubnet('fdaa::2', ifaces), true);
  assert.equal(onLocalSubnet('fdab::2', ifaces), false);
  assert.equal(onLocalSubnet('not-an-ip', ifaces), false);
});
