// TLS on the tcp transport (drbd.conf `net { tls yes; }`), with certificates made by the real
// openssl CLI: the compliance suite over TLS; both streams verified against the CA in both
// directions; a certificate from another CA, an expired one, and TLS on one side only each
// refused with a clear reason on BOTH sides (the dialer's error, the listener's onRefused); the
// connection manager refusing a certificate that names another node; and the bytes on the wire
// never containing what was sent (checked against plain TCP, where they do).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, test } from 'node:test';
import { MemoryNetwork } from '../../src/transport/memory/index.js';
import { tcpTransport } from '../../src/transport/tcp/index.js';
import type {
  Channel,
  Endpoint,
  ListenOptions,
  TlsCredentials,
} from '../../src/transport/types.js';
import { loadTlsCredentials } from '../../src/daemon/tls-files.js';
import {
  Inbox,
  koCountSuite,
  transportSuite,
  type PairFactory,
} from '../compliance/transport.suite.js';
import { realClock } from '../support/clocks.js';
import { havePeer } from '../support/peers.js';
import { BlackholeProxy } from '../support/tcp-proxy.js';
import { CertDir, type PemFiles, type TestCa } from '../support/tls-certs.js';
import { closeAllNodes, connected, makeNode, refused } from '../cm/support.js';

const deps = { clock: realClock, randomBytes };
const ep = (address: string, port = 0): Endpoint => ({
  transport: 'tcp',
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  address,
  port,
});

interface Ids {
  ca: TestCa;
  alice: TlsCredentials;
  bob: TlsCredentials;
  /** Named bob, signed by another CA. */
  mallory: TlsCredentials;
  /** bob's name and the right CA, but expired. */
  expired: TlsCredentials;
  /** Right CA, but the certificate names carol. */
  carol: TlsCredentials;
}

let dir: CertDir | null = null;
let made: Promise<Ids> | null = null;

function creds(leaf: PemFiles, ca: TestCa): TlsCredentials {
  return loadTlsCredentials({
    certificate: leaf.certificate,
    privkey: leaf.privkey,
    ca: ca.certificate,
  }).credentials;
}

/** Made once, on first use (the compliance suite registers its tests before `before` runs). */
function ids(): Promise<Ids> {
  made ??= (async () => {
    // No skip: TLS without its certificates is not tested at all (install-peers.sh has openssl).
    if (!havePeer('openssl')) throw new Error('missing openssl: apt-get install openssl');
    dir = await CertDir.create();
    const ca = await dir.ca('tandem-ca');
    const other = await dir.ca('other-ca');
    const [a, b, m, e, c] = await Promise.all([
      dir.leaf(ca, 'alice'),
      dir.leaf(ca, 'bob'),
      dir.leaf(other, 'bob'),
      dir.leaf(ca, 'bob', { expired: true }),
      dir.leaf(ca, 'carol'),
    ]);
    return {
      ca,
      alice: creds(a, ca),
      bob: creds(b, ca),
      mallory: creds(m, ca),
      expired: creds(e, ca),
      carol: creds(c, ca),
    };
  })();
  return made;
}

after(async () => {
  await closeAllNodes();
  await dir?.destroy();
});

const makeTlsPair: PairFactory = async (opts) => {
  const { alice, bob } = await ids();
  const ta = tcpTransport(opts)(deps);
  const tb = tcpTransport(opts)(deps);
  let accepted: (ch: Channel) => void = () => {};
  const gotB = new Promise<Channel>((resolve) => (accepted = resolve));
  const listener = await tb.listen(ep('127.0.0.1'), (ch) => accepted(ch), { tls: bob });
  const proxy = await new BlackholeProxy('127.0.0.1', listener.endpoint.port).start();
  const a = await ta.connect(
    { peer: ep('127.0.0.1', proxy.port) },
    { signal: AbortSignal.timeout(10_000), tls: alice },
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
transportSuite('tcp+tls 127.0.0.1', makeTlsPair);
koCountSuite('tcp+tls 127.0.0.1', makeTlsPair);

/**
 * Dials `listen` credentials from `dial` credentials; resolves with the dialer's result and
 * every reason the listener gave for refusing a socket.
 */
async function attempt(
  dial: TlsCredentials | undefined,
  listenTls: TlsCredentials | undefined,
): Promise<{ channel: Channel | null; error: Error | null; refusals: string[] }> {
  const ta = tcpTransport()(deps);
  const tb = tcpTransport()(deps);
  const refusals: string[] = [];
  let accepted: Channel | null = null;
  const o: ListenOptions = {
    ...(listenTls ? { tls: listenTls } : {}),
    onRefused: (_remote, why) => refusals.push(why),
  };
  const l = await tb.listen(ep('127.0.0.1'), (ch) => (accepted = ch), o);
  let channel: Channel | null = null;
  let error: Error | null = null;
  try {
    channel = await ta.connect(
      { peer: l.endpoint },
      { signal: AbortSignal.timeout(10_000), ...(dial ? { tls: dial } : {}) },
    );
  } catch (e) {
    error = e as Error;
  }
  // The listener's side of a refusal may come a moment after the dialer's.
  for (let i = 0; i < 200 && error !== null && refusals.length === 0; i++)
    await new Promise((r) => setTimeout(r, 10));
  if (channel !== null) {
    for (let i = 0; i < 200 && accepted === null; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(accepted, 'the listener accepted the channel');
  }
  await ta.close();
  await tb.close();
  return { channel, error, refusals };
}

test('tls: both sides present certificates, both verify them; the channel says so', async () => {
  const { alice, bob } = await ids();
  const ta = tcpTransport()(deps);
  const tb = tcpTransport()(deps);
  let b: Channel | null = null;
  const l = await tb.listen(ep('127.0.0.1'), (ch) => (b = ch), { tls: bob });
  const a = await ta.connect(
    { peer: l.endpoint },
    { signal: AbortSignal.timeout(10_000), tls: alice },
  );
  const inbox = new Inbox(a);
  for (let i = 0; i < 200 && b === null; i++) await new Promise((r) => setTimeout(r, 5));
  const bb = b as Channel | null;
  assert.ok(bb);
  bb.send('control', 7, [Buffer.from('over tls')]);
  await inbox.until(1);
  assert.equal(inbox.messages[0]?.payload.toString(), 'over tls');
  assert.match(a.tls?.protocol ?? '', /^TLSv1\.[23]$/);
  assert.equal(a.tls?.peerCertificate.subject.CN, 'bob');
  assert.equal(bb.tls?.peerCertificate.subject.CN, 'alice');
  await ta.close();
  await tb.close();
});

test('tls: a dialer whose certificate another CA signed is refused, and told why', async () => {
  const { mallory, alice } = await ids();
  const r = await attempt(mallory, alice);
  assert.equal(r.channel, null);
  assert.match(
    r.error?.message ?? '',
    /the peer rejected this node's certificate: the certificate is not signed by a CA in tls-ca/,
  );
  assert.ok(
    r.refusals.some((x) =>
      /TLS: the peer's certificate is refused: the certificate is not signed by a CA in tls-ca/.test(
        x,
      ),
    ),
    r.refusals.join('\n'),
  );
});

test('tls: a listener whose certificate another CA signed is refused, and told why', async () => {
  const { mallory, alice } = await ids();
  const r = await attempt(alice, mallory);
  assert.equal(r.channel, null);
  assert.match(
    r.error?.message ?? '',
    /TLS: the peer's certificate is refused: the certificate is not signed by a CA in tls-ca/,
  );
  assert.ok(
    r.refusals.some((x) =>
      /the peer rejected this node's certificate: the certificate is not signed/.test(x),
    ),
    r.refusals.join('\n'),
  );
});

test('tls: an expired certificate is refused on both sides, either way round', async () => {
  const { expired, alice } = await ids();
  const dialing = await attempt(expired, alice);
  assert.match(
    dialing.error?.message ?? '',
    /the peer rejected this node's certificate: the certificate has expired/,
  );
  assert.ok(
    dialing.refusals.some((x) => /refused: the certificate has expired/.test(x)),
    dialing.refusals.join('\n'),
  );
  const listening = await attempt(alice, expired);
  assert.match(
    listening.error?.message ?? '',
    /the peer's certificate is refused: the certificate has expired/,
  );
  assert.ok(
    listening.refusals.some((x) =>
      /rejected this node's certificate: the certificate has expired/.test(x),
    ),
    listening.refusals.join('\n'),
  );
});

test('tls: TLS on one side only never connects, and both sides say which', async () => {
  const { alice, bob } = await ids();
  const plainToTls = await attempt(undefined, bob);
  assert.match(
    plainToTls.error?.message ?? '',
    /the peer requires TLS \(net \{ tls yes; \} there\) and this node has tls no/,
  );
  assert.ok(
    plainToTls.refusals.some((x) => /connects without TLS but this node requires it/.test(x)),
    plainToTls.refusals.join('\n'),
  );
  const tlsToPlain = await attempt(alice, undefined);
  assert.match(
    tlsToPlain.error?.message ?? '',
    /the peer does not speak TLS \(tls no there\) and this node requires it/,
  );
  assert.ok(
    tlsToPlain.refusals.some((x) => /wants TLS .* but this node has tls no/.test(x)),
    tlsToPlain.refusals.join('\n'),
  );
});

test('tls: transports that cannot carry TLS refuse credentials instead of running in clear', async () => {
  const { alice } = await ids();
  const t = new MemoryNetwork(realClock).transport();
  await assert.rejects(
    t.connect(
      { peer: { transport: 'memory', family: 'memory', address: 'x', port: 0 } },
      { signal: AbortSignal.timeout(1000), tls: alice },
    ),
    /TLS is supported on the tcp transport only/,
  );
});

/** A relay that keeps every byte it forwards, both ways. */
async function recordingProxy(
  port: number,
): Promise<{ port: number; bytes: () => Buffer; stop: () => Promise<void> }> {
  const seen: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host: '127.0.0.1', port });
    for (const [from, to] of [
      [inbound, outbound],
      [outbound, inbound],
    ] as const) {
      socks.add(from);
      from.on('data', (b: Buffer) => {
        seen.push(Buffer.from(b));
        to.write(b);
      });
      from.on('error', () => to.destroy());
      from.on('close', () => to.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return {
    port: typeof a === 'object' && a !== null ? a.port : 0,
    bytes: () => Buffer.concat(seen),
    stop: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

for (const secure of [true, false]) {
  test(`tls: the wire ${secure ? 'never shows' : 'shows (plain TCP, the control case)'} the bytes sent`, async () => {
    const { alice, bob } = await ids();
    const ta = tcpTransport()(deps);
    const tb = tcpTransport()(deps);
    let b: Channel | null = null;
    const l = await tb.listen(ep('127.0.0.1'), (ch) => (b = ch), secure ? { tls: bob } : {});
    const proxy = await recordingProxy(l.endpoint.port);
    const a = await ta.connect(
      { peer: ep('127.0.0.1', proxy.port) },
      { signal: AbortSignal.timeout(10_000), ...(secure ? { tls: alice } : {}) },
    );
    for (let i = 0; i < 200 && b === null; i++) await new Promise((r) => setTimeout(r, 5));
    const inbox = new Inbox(b as unknown as Channel);
    const marker = Buffer.from(`tandem-secret-${randomBytes(8).toString('hex')}`);
    const block = Buffer.alloc(64 * 1024);
    for (let off = 0; off < block.length; off += marker.length) marker.copy(block, off);
    a.send('data', 1, [block]);
    a.send('control', 2, [marker]);
    await inbox.until(2);
    assert.ok(
      inbox.messages.some((m) => m.payload.equals(block)),
      'the block arrived whole',
    );
    const wire = proxy.bytes();
    assert.ok(wire.length > block.length, `the proxy saw the traffic (${wire.length} bytes)`);
    assert.equal(
      wire.includes(marker),
      !secure,
      secure ? 'marker in clear on a TLS wire' : 'control case: marker visible on plain TCP',
    );
    await ta.close();
    await tb.close();
    await proxy.stop();
  });
}

test('cm: a certificate from the right CA that names another node is refused on both sides', async () => {
  const { alice, carol } = await ids();
  const a = makeNode(0, tcpTransport()(deps), realClock);
  const b = makeNode(1, tcpTransport()(deps), realClock);
  const aEp = await a.cm.listen(ep('127.0.0.1'), { tls: alice });
  // b holds carol's certificate but claims to be bob.
  const bEp = await b.cm.listen(ep('127.0.0.1'), { tls: carol });
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: bEp }],
    net: { connectIntMs: 50 },
    tls: { credentials: alice, peerName: 'bob' },
  });
  b.cm.addConnection({
    resource: 'r0',
    peerNodeId: 0,
    paths: [{ peer: aEp }],
    net: { connectIntMs: 50 },
    tls: { credentials: carol, peerName: 'alice' },
  });
  const mine = await a.waitEvent('identity refused', refused('tls-identity', false));
  const theirs = await b.waitEvent('identity refused by peer', refused('tls-identity', true));
  assert.ok(mine.kind === 'refused' && theirs.kind === 'refused');
  assert.match(mine.reason, /the peer's certificate \(CN=carol, DNS:carol\) does not name 'bob'/);
  assert.match(theirs.reason, /does not name 'bob'/);
  assert.ok(!a.events.some(connected('r0', 1)));
});

test('cm: TLS pair with matching names connects; the established channel is TLS', async () => {
  const { alice, bob } = await ids();
  const a = makeNode(0, tcpTransport()(deps), realClock);
  const b = makeNode(1, tcpTransport()(deps), realClock);
  const aEp = await a.cm.listen(ep('127.0.0.1'), { tls: alice });
  const bEp = await b.cm.listen(ep('127.0.0.1'), { tls: bob });
  a.cm.addConnection({
    resource: 'r0',
    peerNodeId: 1,
    paths: [{ peer: bEp }],
    net: { connectIntMs: 50 },
    tls: { credentials: alice, peerName: 'bob' },
  });
  b.cm.addConnection({
    resource: 'r0',
    peerNodeId: 0,
    paths: [{ peer: aEp }],
    net: { connectIntMs: 50 },
    tls: { credentials: bob, peerName: 'alice' },
  });
  const ea = await a.waitEvent('connected', connected('r0', 1));
  const eb = await b.waitEvent('connected', connected('r0', 0));
  assert.ok(ea.kind === 'state' && eb.kind === 'state');
  assert.equal(ea.established?.channel.tls?.peerCertificate.subject.CN, 'bob');
  assert.equal(eb.established?.channel.tls?.peerCertificate.subject.CN, 'alice');
});
