// The transport compliance suite over the fabric transport with libfabric's tcp and sockets
// providers on 127.0.0.1: the same code path as verbs, minus the RDMA hardware.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fabricTransport, FabricChannel } from '../../../src/transport/fabric/index.js';
import { loadFabricAddon } from '../../../src/transport/fabric/addon.js';
import { channelTransportStats } from '../../../src/transport/channel-base.js';
import type { Channel, Endpoint } from '../../../src/transport/types.js';
import {
  koCountSuite,
  transportSuite,
  waitFor,
  type PairFactory,
} from '../../compliance/transport.suite.js';
import { realClock } from '../../support/clocks.js';
import { inCi } from '../../support/peers.js';
import { fabricAvailable } from './support.js';

const addon = loadFabricAddon();

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve: (v: T) => void = () => {};
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

// The Soft-RoCE guest test reruns this file with verbs on the rxe device's address.
const host = process.env['FABRIC_TEST_HOST'] ?? '127.0.0.1';
// Default: the tcp and sockets providers (sockets in manual progress: its own progress thread
// can sleep with work pending, docs/TRANSPORTS.md); FABRIC_TEST_PROVIDERS picks others.
const providers = (process.env['FABRIC_TEST_PROVIDERS'] ?? 'tcp,sockets').split(',');

const ep = (port: number): Endpoint => ({
  transport: 'fabric',
  family: 'ipv4',
  address: host,
  port,
});

function pairFactory(provider: string, progress?: 'auto' | 'manual'): PairFactory {
  return async (channel) => {
    const tb = fabricTransport({ provider, channel, ...(progress ? { progress } : {}) })({
      clock: realClock,
    });
    const ta = fabricTransport({ provider, channel, ...(progress ? { progress } : {}) })({
      clock: realClock,
    });
    let accepted: Channel | null = null;
    const gotOne = new Promise<Channel>((resolve) => {
      void tb
        .listen(ep(0), (ch) => {
          accepted = ch;
          resolve(ch);
        })
        .then((l) => listener.resolve(l));
    });
    const listener = deferred<Awaited<ReturnType<typeof tb.listen>>>();
    const l = await listener.promise;
    const a = await ta.connect({ peer: l.endpoint }, { signal: AbortSignal.timeout(10_000) });
    const b = accepted ?? (await gotOne);
    return {
      a,
      b,
      blackhole: () => {
        assert.ok(a instanceof FabricChannel && b instanceof FabricChannel);
        a.setBlackholed();
        b.setBlackholed();
      },
      cleanup: async () => {
        await l.close();
        await ta.close();
        await tb.close();
      },
    };
  };
}

for (const provider of providers) {
  const missing = fabricAvailable(provider, host);
  if (missing !== null) {
    test(`fabric compliance (${provider})`, (t) => {
      if (inCi) throw new Error(`${missing} (CI=true: the fabric transport must be tested)`);
      t.skip(missing);
    });
    continue;
  }
  const makePair = pairFactory(provider);
  transportSuite(`fabric/${provider}`, makePair);
  test(`fabric/${provider}: both ends name the provider (status shows it)`, async () => {
    const p = await makePair({});
    try {
      for (const ch of [p.a, p.b]) {
        assert.deepEqual(channelTransportStats(ch).active, { transport: 'fabric', provider });
        // sockets runs in manual progress by default (its progress thread can sleep with work
        // pending); every other provider drives itself.
        assert.ok(ch instanceof FabricChannel);
        assert.equal(ch.stats().progress, provider === 'sockets' ? 'manual' : 'auto');
      }
    } finally {
      p.a.destroy();
      p.b.destroy();
      await p.cleanup();
    }
  });
  koCountSuite(`fabric/${provider}`, makePair);
}

// Manual progress (the addon polls the provider's queues) on a provider that would drive itself:
// the same contract must hold whichever side moves the data.
if (fabricAvailable('tcp', host) === null) {
  transportSuite('fabric/tcp, manual progress', pairFactory('tcp', 'manual'));
  test('fabric/tcp, manual progress: the channel says so and data moves', async () => {
    const p = await pairFactory('tcp', 'manual')({});
    try {
      const got: Buffer[] = [];
      p.b.setReceiver((m) => got.push(m.payload));
      p.a.send('data', 1, [Buffer.alloc(100_000, 7)]);
      await waitFor('the message', (done) => {
        const i = setInterval(() => got.length === 1 && done(undefined), 5);
        return () => clearInterval(i);
      });
      for (const ch of [p.a, p.b]) {
        assert.ok(ch instanceof FabricChannel);
        assert.equal(ch.stats().progress, 'manual');
      }
    } finally {
      p.a.destroy();
      p.b.destroy();
      await p.cleanup();
    }
  });
}

test('fabric: zero-copy and copied bytes are counted per connection', async (t) => {
  const missing = fabricAvailable('tcp');
  if (missing !== null) return t.skip(missing);
  const tb = fabricTransport({ provider: 'tcp' })({ clock: realClock });
  const ta = fabricTransport({ provider: 'tcp' })({ clock: realClock });
  const accepted = deferred<Channel>();
  const l = await tb.listen(ep(0), (ch) => accepted.resolve(ch));
  const a = await ta.connect({ peer: l.endpoint }, { signal: AbortSignal.timeout(10_000) });
  const b = await accepted.promise;
  // A failed assertion must not leave the channels pinging (the process would never exit).
  try {
    const got: Buffer[] = [];
    b.setReceiver((m) => got.push(m.payload));
    const big = Buffer.alloc(1024 * 1024, 0x5a);
    a.send('data', 1, [Buffer.from('small header'), big]);
    a.send('data', 2, [Buffer.alloc(100, 1)]);
    await waitFor('two messages', (done) => {
      const i = setInterval(() => got.length === 2 && done(undefined), 5);
      return () => clearInterval(i);
    });
    assert.deepEqual(got[0], Buffer.concat([Buffer.from('small header'), big]));
    const s = ta.stats();
    assert.equal(s.connections.length, 1);
    assert.equal(s.connections[0]?.provider, 'tcp');
    // 1 MiB goes in fragments of one buffer (64 KiB less the 16-byte header) straight from `big`;
    // its 256-byte tail, the 12-byte part before it and the 100-byte message are copied.
    const fragment = 64 * 1024 - 16;
    const whole = Math.floor(big.length / fragment) * fragment;
    assert.equal(s.zeroCopyBytes, whole, 'the 1 MiB part went without a copy');
    assert.equal(s.copiedBytes, 'small header'.length + (big.length - whole) + 100);
    assert.equal(s.connections[0]?.zeroCopyBytes, whole);
    // What `tandem status` shows for this connection.
    const shown = (): ReturnType<typeof channelTransportStats> => channelTransportStats(a);
    assert.equal(shown().transport, 'fabric');
    assert.deepEqual(shown().active, { transport: 'fabric', provider: 'tcp' });
    assert.equal(shown().zeroCopyBytes, whole);
    assert.equal(shown().copiedBytes, 'small header'.length + (big.length - whole) + 100);
    assert.equal(shown().bytesSent, 'small header'.length + big.length + 100);
    assert.equal(shown().paths[0]?.provider, 'tcp');
    assert.equal(channelTransportStats(b).bytesReceived, shown().bytesSent);
    // Every further large Buffer goes without a copy too, not only the first one registered (the
    // addon once gave every on-the-fly registration the same key, which tcp/sockets refuse).
    for (let i = 0; i < 20; i++) a.send('data', 3, [Buffer.alloc(64 * 1024, i)]);
    await waitFor('twenty more', (done) => {
      const i = setInterval(() => got.length === 22 && done(undefined), 5);
      return () => clearInterval(i);
    });
    const more = 20 * fragment;
    assert.equal(
      shown().zeroCopyBytes,
      whole + more,
      'all later large Buffers went without a copy',
    );
    assert.ok(got.slice(2).every((m, i) => m.length === 64 * 1024 && m[0] === i));
    a.destroy();
    // The counters and the provider outlive the native connection.
    assert.equal(shown().zeroCopyBytes, whole + more);
    assert.equal(shown().active?.provider, 'tcp');
  } finally {
    a.destroy();
    await l.close();
    await ta.close();
    await tb.close();
  }
});

test('selecting a provider that is not here fails with what to install', (t) => {
  if (!addon.ok) return t.skip(addon.error);
  if (addon.value.getinfo({ provider: 'verbs' }).length > 0) return t.skip('this node has verbs');
  assert.throws(() => fabricTransport({ provider: 'verbs' })({ clock: realClock }), {
    code: 'TANDEM_ERR_FABRIC_UNAVAILABLE',
    message: /provider "verbs" is not available.*install rdma-core ibverbs-providers/,
  });
  // Without an option or $FI_PROVIDER, a node without verbs picks tcp.
  assert.equal(fabricTransport({})({ clock: realClock, env: {} }).provider, 'tcp');
  assert.equal(
    fabricTransport({})({ clock: realClock, env: { FI_PROVIDER: 'sockets' } }).provider,
    'sockets',
  );
});
