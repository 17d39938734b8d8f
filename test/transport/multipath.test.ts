// The transport compliance suite over multipath sessions: two memory paths, two TCP paths
// (through relays that can blackhole them), and load-balanced TCP paths. A session must pass the
// same contract as a single channel; "blackhole" silences every path, so it must end by timeout.

import { randomBytes } from 'node:crypto';
import { MemoryNetwork } from '../../src/transport/memory/index.js';
import { multipathTransport } from '../../src/transport/multipath/index.js';
import { tcpTransport } from '../../src/transport/tcp/index.js';
import type { Channel, ChannelOptions, Endpoint, PathSpec } from '../../src/transport/types.js';
import { koCountSuite, transportSuite, type TransportPair } from '../compliance/transport.suite.js';
import { realClock } from '../support/clocks.js';
import { PathFaults } from '../support/path-faults.js';
import { BlackholeProxy } from '../support/tcp-proxy.js';

const mem = (address: string): Endpoint => ({
  transport: 'memory',
  family: 'memory',
  address,
  port: 0,
});
const tcp = (address: string, port = 0): Endpoint => ({
  transport: 'tcp',
  family: 'ipv4',
  address,
  port,
});

/** Session timeout in these tests: short, so the half-open test ends quickly. */
const withTimeout = (opts: ChannelOptions): ChannelOptions => ({ timeoutMs: 2_000, ...opts });

function acceptOne(): { onChannel: (ch: Channel) => void; accepted: Promise<Channel> } {
  let onChannel: (ch: Channel) => void = () => {};
  const accepted = new Promise<Channel>((resolve) => (onChannel = resolve));
  return { onChannel, accepted };
}

async function memoryPair(opts: ChannelOptions): Promise<TransportPair> {
  const net = new MemoryNetwork(realClock);
  const faults = new PathFaults(net);
  const memA = faults.wrap(net.transport());
  const memB = net.transport();
  const o = withTimeout(opts);
  const ta = multipathTransport(o)({ clock: realClock, randomBytes, transports: { memory: memA } });
  const tb = multipathTransport(o)({ clock: realClock, randomBytes, transports: { memory: memB } });
  const { onChannel, accepted } = acceptOne();
  await tb.listen(mem('b1'), onChannel);
  await tb.listen(mem('b2'), onChannel);
  const paths: PathSpec[] = [{ peer: mem('b1') }, { peer: mem('b2') }];
  const a = await ta.connectPaths(paths, { signal: AbortSignal.timeout(10_000) });
  const b = await accepted;
  return {
    a,
    b,
    blackhole: () => {
      faults.cut('b1');
      faults.cut('b2');
    },
    cleanup: async () => {
      await ta.close();
      await tb.close();
      await memA.close();
      await memB.close();
    },
  };
}

transportSuite('multipath over two memory paths', memoryPair);
koCountSuite('multipath over two memory paths', memoryPair);

async function tcpPair(opts: ChannelOptions, loadBalancePaths: boolean): Promise<TransportPair> {
  const o = { ...withTimeout(opts), loadBalancePaths };
  const tcpA = tcpTransport(opts)({ clock: realClock, randomBytes });
  const tcpB = tcpTransport(opts)({ clock: realClock, randomBytes });
  const ta = multipathTransport(o)({ clock: realClock, randomBytes, transports: { tcp: tcpA } });
  const tb = multipathTransport(o)({ clock: realClock, randomBytes, transports: { tcp: tcpB } });
  const { onChannel, accepted } = acceptOne();
  const l = await tb.listen(tcp('127.0.0.1'), onChannel);
  const proxies = await Promise.all(
    [0, 1].map(() => new BlackholeProxy('127.0.0.1', l.endpoint.port).start()),
  );
  const a = await ta.connectPaths(
    proxies.map((p) => ({ peer: tcp('127.0.0.1', p.port) })),
    { signal: AbortSignal.timeout(10_000) },
  );
  const b = await accepted;
  return {
    a,
    b,
    blackhole: () => {
      for (const p of proxies) p.blackhole();
    },
    cleanup: async () => {
      await ta.close();
      await tb.close();
      await tcpA.close();
      await tcpB.close();
      await Promise.all(proxies.map((p) => p.stop()));
    },
  };
}

transportSuite('multipath over two tcp paths', (opts) => tcpPair(opts, false));
transportSuite('multipath over two load-balanced tcp paths', (opts) => tcpPair(opts, true));
koCountSuite('multipath over two tcp paths', (opts) => tcpPair(opts, false));
koCountSuite('multipath over two load-balanced tcp paths', (opts) => tcpPair(opts, true));
