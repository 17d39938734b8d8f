// Connection manager over the memory transport: handshake, authentication, version
// negotiation, refusals with logged reasons, path order and connect-int backoff.
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import {
  MSG_HELLO,
  MSG_REFUSE,
  decodeHello,
  decodeRefuse,
  encodeHello,
} from '../../src/cm/wire.js';
import { MemoryNetwork } from '../../src/transport/memory/index.js';
import type { Channel, Endpoint, Message } from '../../src/transport/types.js';
import { Inbox } from '../compliance/transport.suite.js';
import { ManualClock, realClock } from '../support/clocks.js';
import { closeAllNodes, connectBoth, connected, makeNode, refused } from './support.js';

afterEach(closeAllNodes);

const ep = (address: string): Endpoint => ({
  transport: 'memory',
  family: 'memory',
  address,
  port: 0,
});

async function pair(
  netA = {},
  netB = netA,
  extraA = {},
  extraB = {},
): Promise<{ a: ReturnType<typeof makeNode>; b: ReturnType<typeof makeNode>; net: MemoryNetwork }> {
  const net = new MemoryNetwork(realClock);
  const a = makeNode(0, net.transport(), realClock, extraA);
  const b = makeNode(1, net.transport(), realClock, extraB);
  await a.cm.listen(ep('alpha'));
  await b.cm.listen(ep('beta'));
  connectBoth(
    a,
    ep('alpha'),
    b,
    ep('beta'),
    'r0',
    { connectIntMs: 50, ...netA },
    { connectIntMs: 50, ...netB },
  );
  return { a, b, net };
}

test('two nodes connect, agree on a version, exchange addresses, then carry messages', async () => {
  const { a, b } = await pair(
    {},
    {},
    { versionMin: 1, versionMax: 3 },
    { versionMin: 2, versionMax: 5 },
  );
  const ea = await a.waitEvent('connected', connected('r0', 1));
  const eb = await b.waitEvent('connected', connected('r0', 0));
  assert.ok(ea.kind === 'state' && ea.established && eb.kind === 'state' && eb.established);
  assert.equal(ea.established.version, 3);
  assert.equal(eb.established.version, 3);
  assert.deepEqual(ea.established.peerAddresses, [
    { transport: 'memory', family: 'memory', address: 'beta', port: 0 },
  ]);
  assert.deepEqual(eb.established.peerAddresses, [
    { transport: 'memory', family: 'memory', address: 'alpha', port: 0 },
  ]);
  assert.equal(a.cm.state('r0', 1), 'Connected');
  const chA = ea.established.channel;
  const chB = eb.established.channel;
  assert.notEqual(chA.initiator, chB.initiator);
  const inA = new Inbox(chA);
  const inB = new Inbox(chB);
  chA.send('data', 1, [Buffer.from('hello b')]);
  chB.send('control', 2, [Buffer.from('hello a')]);
  await inA.until(1);
  await inB.until(1);
  assert.equal(inA.messages[0]?.payload.toString(), 'hello a');
  assert.equal(inB.messages[0]?.payload.toString(), 'hello b');
  await a.cm.close();
  await b.waitEvent(
    'lost',
    (e) => e.kind === 'state' && e.state === 'Connecting' && /lost/.test(e.reason ?? ''),
  );
  await b.cm.close();
  assert.equal(b.cm.state('r0', 0), 'StandAlone');
});

test('messages the acceptor sends the moment it is Connected reach the dialer', async () => {
  const { a, b } = await pair();
  // b (node 1) accepts a's dial: a has the lower id. b sends at once on both streams.
  b.cm.on((e) => {
    if (e.kind === 'state' && e.established) {
      for (let i = 0; i < 20; i++)
        e.established.channel.send(i % 2 ? 'data' : 'control', 9, [Buffer.of(i)]);
    }
  });
  const ea = await a.waitEvent('connected', connected('r0', 1));
  assert.ok(ea.kind === 'state' && ea.established);
  const inbox = new Inbox(ea.established.channel);
  await inbox.until(20);
  assert.deepEqual(
    inbox.on('control').map((m) => m.payload[0]),
    [0, 2, 4, 6, 8, 10, 12, 14, 16, 18],
  );
  assert.deepEqual(
    inbox.on('data').map((m) => m.payload[0]),
    [1, 3, 5, 7, 9, 11, 13, 15, 17, 19],
  );
  await a.cm.close();
  await b.cm.close();
});

test("the connection's net options (ping-int, ping-timeout) apply once it is up", async () => {
  const { a, b, net } = await pair({ pingIntMs: 30, pingTimeoutMs: 200 });
  const ea = await a.waitEvent('connected', connected('r0', 1));
  await b.waitEvent('connected', connected('r0', 0));
  assert.ok(ea.kind === 'state' && ea.established);
  const ch = ea.established.channel;
  // The transport default would ping only every 10 s; the connection's 30 ms gives an RTT soon.
  for (let i = 0; i < 500 && ch.stats().rttMs === null; i++)
    await new Promise((r) => setTimeout(r, 5));
  assert.notEqual(ch.stats().rttMs, null);
  net.blackhole(ch);
  const lost = await a.waitEvent(
    'lost',
    (e) => e.kind === 'state' && e.state === 'Connecting' && /timeout/.test(e.reason ?? ''),
  );
  assert.ok(lost.kind === 'state');
  assert.match(lost.reason ?? '', /ping not answered within 200 ms/);
  await a.cm.close();
  await b.cm.close();
});

test('one listener serves several resources between the same nodes', async () => {
  const { a, b } = await pair();
  a.cm.addConnection({
    resource: 'r1',
    peerNodeId: 1,
    paths: [{ peer: ep('beta') }],
    net: { connectIntMs: 50 },
  });
  b.cm.addConnection({
    resource: 'r1',
    peerNodeId: 0,
    paths: [{ peer: ep('alpha') }],
    net: { connectIntMs: 50 },
  });
  const e0 = await a.waitEvent('r0', connected('r0', 1));
  const e1 = await a.waitEvent('r1', connected('r1', 1));
  await b.waitEvent('r0', connected('r0', 0));
  await b.waitEvent('r1', connected('r1', 0));
  assert.ok(e0.kind === 'state' && e0.established && e1.kind === 'state' && e1.established);
  assert.notEqual(e0.established.channel, e1.established.channel);
  assert.equal(a.transport.stats().channelsOpen, 2);
});

test('matching shared secret: authenticated connection', async () => {
  const auth = { cramHmacAlg: 'sha256', sharedSecret: 'correct horse' };
  const { a, b } = await pair(auth);
  await a.waitEvent('connected', connected('r0', 1));
  await b.waitEvent('connected', connected('r0', 0));
  await a.cm.close();
  await b.cm.close();
});

test('wrong secret: refused on both sides, logged without the secret', async () => {
  const { a, b } = await pair(
    { cramHmacAlg: 'sha1', sharedSecret: 'secret-of-alpha' },
    { cramHmacAlg: 'sha1', sharedSecret: 'secret-of-beta' },
  );
  // Each side verifies the other's response itself.
  await a.waitEvent('own auth failure', refused('auth-failed', false));
  await b.waitEvent('own auth failure', refused('auth-failed', false));
  assert.equal(a.cm.state('r0', 1), 'Connecting');
  assert.equal(b.cm.state('r0', 0), 'Connecting');
  assert.ok(!a.events.some(connected('r0', 1)));
  assert.ok(!b.events.some(connected('r0', 0)));
  for (const n of [a, b]) {
    assert.match(n.log.text(), /failed authentication/);
    assert.doesNotMatch(n.log.text(), /secret-of/);
    assert.ok(!JSON.stringify(n.events).includes('secret-of'));
  }
  await a.cm.close();
  await b.cm.close();
});

test('auth on one side only is refused as a mismatch', async () => {
  const { a, b } = await pair({ cramHmacAlg: 'sha256', sharedSecret: 's' }, {});
  await a.waitEvent('mismatch', refused('auth-mismatch'));
  await b.waitEvent('mismatch', refused('auth-mismatch'));
  await a.cm.close();
  await b.cm.close();
});

test('version mismatch is refused with both ranges in the message', async () => {
  const { a, b } = await pair(
    {},
    {},
    { versionMin: 1, versionMax: 2 },
    { versionMin: 3, versionMax: 4 },
  );
  const ea = await a.waitEvent('version refusal', refused('incompatible-version'));
  const eb = await b.waitEvent('version refusal', refused('incompatible-version'));
  for (const e of [ea, eb]) {
    assert.ok(e.kind === 'refused');
    assert.match(e.reason, /incompatible versions (1\.\.2 vs 3\.\.4|3\.\.4 vs 1\.\.2)/);
  }
  assert.match(a.log.text() + b.log.text(), /incompatible versions/);
  await a.cm.close();
  await b.cm.close();
});

/** Opens a raw channel to a manager's listener, bypassing any manager on this side. */
async function rawDial(net: MemoryNetwork, to: string): Promise<{ ch: Channel; inbox: Message[] }> {
  const t = net.transport();
  const ch = await t.connect({ peer: ep(to) }, { signal: new AbortController().signal });
  const inbox: Message[] = [];
  ch.setReceiver((m) => inbox.push(m));
  return { ch, inbox };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(cond(), what);
}

test('unknown resource and unknown node are refused with a logged reason', async () => {
  const net = new MemoryNetwork(realClock);
  const b = makeNode(1, net.transport(), realClock);
  await b.cm.listen(ep('beta'));
  b.cm.addConnection({
    resource: 'r0',
    peerNodeId: 0,
    paths: [{ peer: ep('nowhere') }],
    net: { connectIntMs: 60_000 },
  });
  const hello = (resource: string, from: number): Buffer =>
    encodeHello({
      versionMin: 1,
      versionMax: 1,
      features: 0,
      fromNodeId: from,
      toNodeId: 1,
      resource,
      challenge: null,
    });
  for (const [resource, from, code] of [
    ['nope', 0, 'unknown-resource'],
    ['r0', 7, 'unknown-node'],
  ] as const) {
    const { ch, inbox } = await rawDial(net, 'beta');
    ch.send('control', MSG_HELLO, [hello(resource, from)]);
    await until(() => inbox.length > 0, 'an answer');
    assert.equal(inbox[0]?.type, MSG_REFUSE);
    const r = decodeRefuse(inbox[0]?.payload ?? Buffer.alloc(0));
    assert.ok(r.ok);
    assert.equal(r.value.code, code);
    await b.waitEvent(code, refused(code, false));
  }
  assert.match(b.log.text(), /no resource "nope" here/);
  assert.match(b.log.text(), /no connection from node 7/);
  await b.cm.close();
});

test('a peer that reflects our challenge back is refused', async () => {
  const net = new MemoryNetwork(realClock);
  const a = makeNode(0, net.transport(), realClock);
  // The impostor listens as "beta" and answers every hello with the dialer's own challenge.
  const fake = net.transport();
  const seen: number[] = [];
  await fake.listen(ep('beta'), (ch) => {
    ch.setReceiver((m) => {
      seen.push(m.type);
      if (m.type !== MSG_HELLO) return;
      const h = decodeHello(m.payload);
      assert.ok(h.ok && h.value.challenge);
      ch.send('control', MSG_HELLO, [
        encodeHello({ ...h.value, fromNodeId: 1, toNodeId: 0, challenge: h.value.challenge }),
      ]);
    });
  });
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: ep('beta') }],
    net: { connectIntMs: 60_000, cramHmacAlg: 'sha256', sharedSecret: 'k' },
  });
  const e = await a.waitEvent('reflection refused', refused('auth-failed', false));
  assert.ok(e.kind === 'refused');
  assert.match(e.reason, /reflected challenge/);
  await until(() => seen.includes(MSG_REFUSE), 'the impostor got a refusal');
  assert.ok(!seen.includes(0xff11), 'no auth response was given to the impostor');
  await a.cm.close();
  await fake.close();
});

test('repeated auth failures from one address are rate-limited', async () => {
  const net = new MemoryNetwork(realClock);
  const b = makeNode(1, net.transport(), realClock);
  await b.cm.listen(ep('beta'));
  b.cm.addConnection({
    resource: 'r0',
    peerNodeId: 0,
    paths: [{ peer: ep('nowhere') }],
    net: { connectIntMs: 60_000, cramHmacAlg: 'sha256', sharedSecret: 'right' },
  });
  // The attacker dials from a fixed address with a wrong secret, again and again.
  const attacker = makeNode(0, net.transport(), realClock);
  for (let i = 0; i < 4; i++) {
    await attacker.cm.removeConnection('r0', 1);
    attacker.cm.addConnection({
      resource: 'r0',
      peerNodeId: 1,
      paths: [{ local: ep('mallory'), peer: ep('beta') }],
      net: { connectIntMs: 60_000, cramHmacAlg: 'sha256', sharedSecret: 'wrong' },
    });
    const n = i;
    await b.waitEvent(
      `failure ${n}`,
      (e) => b.events.filter(refused('auth-failed')).length > n || refused('rate-limited')(e),
    );
  }
  await b.waitEvent('rate limited', refused('rate-limited', false));
  assert.match(b.log.text(), /blocking mallory/);
  await attacker.cm.close();
  await b.cm.close();
});

test('paths are tried in order; the first that connects is used', async () => {
  const net = new MemoryNetwork(realClock);
  const a = makeNode(0, net.transport(), realClock);
  const b = makeNode(1, net.transport(), realClock);
  await b.cm.listen(ep('beta-2'));
  b.cm.addConnection({
    resource: 'r0',
    peerNodeId: 0,
    paths: [{ peer: ep('alpha-none') }],
    net: { connectIntMs: 60_000 },
  });
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: ep('beta-1') }, { peer: ep('beta-2') }],
    net: { connectIntMs: 60_000 },
  });
  const e = await a.waitEvent('connected', connected('r0', 1));
  assert.ok(e.kind === 'state' && e.established);
  assert.equal(e.established.path.peer.address, 'beta-2');
  const paths = a.events
    .filter((x) => x.kind === 'path')
    .map((x) => (x.kind === 'path' ? `${x.path.peer.address} ${x.state}` : ''));
  assert.deepEqual(paths.slice(0, 4), [
    'beta-1 connecting',
    'beta-1 failed',
    'beta-2 connecting',
    'beta-2 established',
  ]);
  await a.cm.close();
  await b.cm.close();
});

test('connect-int backoff doubles with jitter and is capped (virtual time)', async () => {
  const clock = new ManualClock();
  const net = new MemoryNetwork(clock);
  const a = makeNode(0, net.transport(), clock);
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: ep('nobody') }],
    net: { connectIntMs: 1000, connectIntMaxMs: 8000 },
  });
  const failedAt: number[] = [];
  const gaps: number[] = [];
  a.cm.on((e) => {
    if (e.kind !== 'path') return;
    if (e.state === 'failed') failedAt.push(clock.nowMs());
    if (e.state === 'connecting' && failedAt.length > 0) {
      gaps.push(clock.nowMs() - (failedAt[failedAt.length - 1] ?? 0));
    }
  });
  for (let i = 0; i < 200; i++) {
    clock.advance(100);
    await Promise.resolve();
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(gaps.length >= 4, `retries: ${gaps.join(',')}`);
  // After the n-th failure in a row the wait is min(8000, 1000 * 2^n) * [0.5, 1).
  for (const [i, g] of gaps.entries()) {
    const base = Math.min(8000, 1000 * 2 ** (i + 1));
    assert.ok(g >= base * 0.5 && g < base, `gap ${i} = ${g} for base ${base}`);
  }
  assert.ok(
    gaps.some((g, i) => g !== Math.min(8000, 1000 * 2 ** (i + 1))),
    'jitter varies the delay',
  );
  await a.cm.close();
});
