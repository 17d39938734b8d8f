// Connection manager over TCP loopback: crossed dials always leave exactly one connection, a
// peer that accepts but never speaks is timed out, and random bytes never crash the listener.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { afterEach, test } from 'node:test';
import { MSG_HELLO, encodeHello } from '../../src/cm/wire.js';
import { MSG_STREAM_SETUP, encodeFrameHeader } from '../../src/transport/frame.js';
import { tcpTransport } from '../../src/transport/tcp/index.js';
import type { Endpoint } from '../../src/transport/types.js';
import { SeededRandom } from '../../src/util/prng.js';
import { realClock } from '../support/clocks.js';
import { closeAllNodes, connectBoth, connected, makeNode, refused } from './support.js';

afterEach(closeAllNodes);

const deps = { clock: realClock, randomBytes };
const ep = (address: string, port = 0): Endpoint => ({
  transport: 'tcp',
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  address,
  port,
});

test('simultaneous dials from both sides, 100 times: always exactly one connection', async (t) => {
  let crossings = 0;
  for (let round = 0; round < 100; round++) {
    const host = round % 2 === 0 ? '127.0.0.1' : '::1';
    const a = makeNode(round % 3, tcpTransport()(deps), realClock, {}, round * 2 + 1);
    const b = makeNode(3 + (round % 2), tcpTransport()(deps), realClock, {}, round * 2 + 2);
    const aEp = await a.cm.listen(ep(host));
    const bEp = await b.cm.listen(ep(host));
    // Both add the connection in the same turn: both dial at once.
    connectBoth(a, aEp, b, bEp, 'r0', { connectIntMs: 20 });
    const ea = await a.waitEvent('connected', connected('r0', b.cm.nodeId));
    const eb = await b.waitEvent('connected', connected('r0', a.cm.nodeId));
    assert.ok(ea.kind === 'state' && ea.established && eb.kind === 'state' && eb.established);
    // The survivor is the one the lower node id dialed, on both sides.
    assert.equal(ea.established.channel.initiator, true, `round ${round}`);
    assert.equal(eb.established.channel.initiator, false, `round ${round}`);
    // Wait until losers are gone, then exactly one channel remains on each side.
    for (let i = 0; i < 500; i++) {
      if (a.transport.stats().channelsOpen === 1 && b.transport.stats().channelsOpen === 1) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal(a.transport.stats().channelsOpen, 1, `round ${round}: channels at a`);
    assert.equal(b.transport.stats().channelsOpen, 1, `round ${round}: channels at b`);
    assert.equal(a.cm.established('r0', b.cm.nodeId)?.channel, ea.established.channel);
    assert.equal(b.cm.established('r0', a.cm.nodeId)?.channel, eb.established.channel);
    assert.equal(a.events.filter(connected('r0', b.cm.nodeId)).length, 1);
    assert.equal(b.events.filter(connected('r0', a.cm.nodeId)).length, 1);
    // The one connection works.
    const got = new Promise<string>((resolve) =>
      eb.established?.channel.setReceiver((m) => resolve(m.payload.toString())),
    );
    ea.established.channel.send('control', 1, [Buffer.from(`round ${round}`)]);
    assert.equal(await got, `round ${round}`);
    crossings += [...a.events, ...b.events].filter(refused('crossed')).length;
    await a.cm.close();
    await b.cm.close();
    await a.transport.close();
    await b.transport.close();
  }
  t.diagnostic(`crossed dials resolved by refusal: ${crossings}`);
});

test('a peer that accepts TCP but never speaks is timed out', async () => {
  const silent = net.createServer(() => {}); // accepts, never writes
  const held: net.Socket[] = [];
  silent.on('connection', (s) => held.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const addr = silent.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const a = makeNode(0, tcpTransport({ setupTimeoutMs: 300 })(deps), realClock);
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: ep('127.0.0.1', port) }],
    net: { connectIntMs: 60_000 },
  });
  const e = await a.waitEvent('path failed', (x) => x.kind === 'path' && x.state === 'failed');
  assert.ok(e.kind === 'path');
  assert.match(e.reason ?? '', /timed out/);
  assert.equal(a.cm.state('r0', 1), 'Connecting');
  await a.cm.close();
  await a.transport.close();
  for (const s of held) s.destroy();
  await new Promise<void>((r) => silent.close(() => r()));
});

test('a peer that sets up streams but never says hello is timed out by the handshake', async () => {
  const mute = tcpTransport()(deps);
  const l = await mute.listen(ep('::1'), () => {}); // accepts channels, never answers
  const a = makeNode(0, tcpTransport()(deps), realClock, { handshakeTimeoutMs: 300 });
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: l.endpoint }],
    net: { connectIntMs: 60_000 },
  });
  const e = await a.waitEvent('handshake timeout', refused('timeout', false));
  assert.ok(e.kind === 'refused');
  assert.match(e.reason, /handshake not finished in 300 ms/);
  await a.cm.close();
  await a.transport.close();
  await mute.close();
});

/** One fuzz input: random bytes, or a valid prefix (stream setup, hello) and then garbage. */
function fuzzInput(rng: SeededRandom, cookie: Buffer): { control: Buffer; data: Buffer | null } {
  const garbage = randomBytes(rng.int(64));
  const kind = rng.int(4);
  const setup = (role: number): Buffer =>
    Buffer.concat([encodeFrameHeader(MSG_STREAM_SETUP, 17), cookie, Buffer.of(role)]);
  if (kind === 0) return { control: garbage, data: null };
  if (kind === 1) return { control: Buffer.concat([setup(1), garbage]), data: null };
  const hello = encodeHello({
    versionMin: rng.int(3),
    versionMax: rng.int(3),
    features: rng.int(1 << 30),
    fromNodeId: rng.int(3),
    toNodeId: rng.int(3),
    resource: rng.int(2) ? 'r0' : 'x',
    challenge: rng.int(2) ? randomBytes(64) : null,
  });
  // Flip a few bytes of the hello (sometimes of its header) to reach every decoder branch.
  const framed = Buffer.concat([encodeFrameHeader(MSG_HELLO, hello.length), hello]);
  for (let i = rng.int(4); i > 0; i--) framed[rng.int(framed.length)] = rng.int(256);
  const frame = kind === 2 ? Buffer.concat([framed, garbage]) : framed;
  return { control: Buffer.concat([setup(1), frame]), data: setup(0) };
}

test('10,000 random inputs to the listener never crash it', async () => {
  const b = makeNode(1, tcpTransport({ setupTimeoutMs: 200 })(deps), realClock, {
    handshakeTimeoutMs: 200,
  });
  const bEp = await b.cm.listen(ep('127.0.0.1'));
  b.cm.addConnection({
    resource: 'r0',
    peerNodeId: 0,
    paths: [{ peer: ep('127.0.0.1', 1) }],
    net: { connectIntMs: 600_000 },
  });
  const rng = new SeededRandom(20261121);
  const send = (bytes: Buffer): Promise<void> =>
    new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: bEp.port }, () => {
        s.end(bytes);
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.resume();
      setTimeout(() => s.destroy(), 50);
    });
  const inputs = 10_000;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < inputs) {
      next++;
      const cookie = randomBytes(16);
      const input = fuzzInput(rng, cookie);
      await Promise.all([send(input.control), input.data ? send(input.data) : Promise.resolve()]);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  assert.ok(!b.events.some((e) => e.kind === 'state' && e.state === 'Connected'));
  // Still alive and correct: a real peer connects.
  const a = makeNode(0, tcpTransport()(deps), realClock);
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: bEp }],
    net: { connectIntMs: 50 },
  });
  await a.waitEvent('connected after fuzzing', connected('r0', 1), 20_000);
  await a.cm.close();
  await b.cm.close();
  await a.transport.close();
  await b.transport.close();
});
