// The compliance suite against the TCP transport over IPv4 and IPv6 loopback (through a relay
// that can blackhole the link), and TCP-specific checks: stream setup, garbage to the listener.
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { tcpTransport } from '../../src/transport/tcp/index.js';
import type { Channel, Endpoint } from '../../src/transport/types.js';
import {
  closedOf,
  Inbox,
  koCountSuite,
  transportSuite,
  type PairFactory,
} from '../compliance/transport.suite.js';
import { realClock } from '../support/clocks.js';
import { BlackholeProxy } from '../support/tcp-proxy.js';

const deps = { clock: realClock, randomBytes };

function endpoint(address: string, port = 0): Endpoint {
  return { transport: 'tcp', family: address.includes(':') ? 'ipv6' : 'ipv4', address, port };
}

for (const host of ['127.0.0.1', '::1']) {
  const makeTcpPair: PairFactory = async (opts) => {
    const ta = tcpTransport(opts)(deps);
    const tb = tcpTransport(opts)(deps);
    let accepted: (ch: Channel) => void = () => {};
    const gotB = new Promise<Channel>((resolve) => (accepted = resolve));
    const listener = await tb.listen(endpoint(host), (ch) => accepted(ch));
    const proxy = await new BlackholeProxy(host, listener.endpoint.port).start();
    const a = await ta.connect(
      { peer: endpoint(host, proxy.port) },
      { signal: AbortSignal.timeout(10_000) },
    );
    const b = await gotB;
    return {
      a,
      b,
      blackhole: () => proxy.blackhole(),
      cleanup: async () => {
        await ta.close();
        await tb.close();
        await proxy.stop();
      },
    };
  };
  transportSuite(`tcp ${host}`, makeTcpPair);
  koCountSuite(`tcp ${host}`, makeTcpPair);
}

test('tcp: a connect to a closed port is refused with ConnectionError', async () => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const a = probe.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  await new Promise<void>((r) => probe.close(() => r()));
  const t = tcpTransport()(deps);
  await assert.rejects(
    t.connect({ peer: endpoint('127.0.0.1', port) }, { signal: AbortSignal.timeout(5000) }),
    { code: 'TANDEM_ERR_CONNECTION' },
  );
});

test('tcp: accepted channel names the remote address; stats of the transport', async () => {
  const ta = tcpTransport()(deps);
  const tb = tcpTransport()(deps);
  let b: Channel | null = null;
  const l = await tb.listen(endpoint('::1'), (ch) => (b = ch));
  const a = await ta.connect({ peer: l.endpoint }, { signal: AbortSignal.timeout(5000) });
  const inbox = new Inbox(await waitAccepted(() => b));
  a.send('data', 1, [Buffer.alloc(1000)]);
  await inbox.until(1);
  const bb = await waitAccepted(() => b);
  assert.equal(bb.path.peer.family, 'ipv6');
  assert.equal(bb.path.peer.address, '::1');
  assert.equal(l.endpoint.family, 'ipv6');
  assert.ok(l.endpoint.port > 0);
  assert.equal(ta.stats().channelsOpen, 1);
  assert.equal(ta.stats().bytesSent, 1000);
  assert.equal(tb.stats().bytesReceived, 1000);
  const closed = closedOf(bb);
  await ta.close();
  assert.equal((await closed).reason, 'by-peer');
  await tb.close();
});

async function waitAccepted(get: () => Channel | null): Promise<Channel> {
  for (let i = 0; i < 1000; i++) {
    const c = get();
    if (c) return c;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error('no channel accepted');
}

test('a graceful close with DATA paused still reads to the peer FIN: the socket goes away', async () => {
  const ta = tcpTransport({})(deps);
  const tb = tcpTransport({})(deps);
  let accepted: (ch: Channel) => void = () => {};
  const gotB = new Promise<Channel>((resolve) => (accepted = resolve));
  const listener = await tb.listen(endpoint('127.0.0.1'), (ch) => accepted(ch));
  const a = await ta.connect({ peer: listener.endpoint }, { signal: AbortSignal.timeout(10_000) });
  const b = await gotB;
  const bClosed = closedOf(b);
  // The accepted side holds DATA (receive backpressure) and then closes gracefully: unless it
  // reads on to the peer's FIN, its DATA socket stays open for good.
  const first = new Promise<void>((resolve) =>
    b.setReceiver(() => {
      b.pauseData();
      resolve();
    }),
  );
  a.send('data', 1, [Buffer.alloc(64 * 1024)]);
  await first;
  a.send('data', 1, [Buffer.alloc(64 * 1024)]);
  await b.close();
  assert.equal((await closedOf(a)).reason, 'by-peer');
  assert.equal((await bClosed).reason, 'local');
  // The sockets are the channel's own business; reaching in is the only way to see them.
  const socks = Object.values((b as unknown as { socks: Record<string, net.Socket> }).socks);
  const start = performance.now();
  while (socks.some((x) => !x.destroyed) && performance.now() - start < 4_000) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(
    socks.every((x) => x.destroyed),
    'every socket of the closed channel went away',
  );
  await listener.close();
  await ta.close();
  await tb.close();
});
