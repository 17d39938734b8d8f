// The connection manager with multipath sessions (memory transport, real clock): a connection
// with two paths becomes one session that survives the loss of its active path without leaving
// Connected; with ssocks, a connection made on the Ethernet address upgrades to the other address
// the peer announced and keeps Ethernet as the fallback.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { MemoryNetwork } from '../../src/transport/memory/index.js';
import { SessionRefused, initiatePath } from '../../src/transport/multipath/handshake.js';
import type { MultipathSession } from '../../src/transport/multipath/index.js';
import type { Channel, Endpoint } from '../../src/transport/types.js';
import { waitFor } from '../compliance/transport.suite.js';
import { realClock } from '../support/clocks.js';
import { PathFaults } from '../support/path-faults.js';
import { connected, makeNode } from './support.js';

const mem = (address: string): Endpoint => ({
  transport: 'memory',
  family: 'memory',
  address,
  port: 0,
});
const MP = { pingTimeoutMs: 300, timeoutMs: 5_000, redialMs: 50 };
const NET = { connectIntMs: 100, cramHmacAlg: 'sha256', sharedSecret: 'multipath secret' };

function numbered(ch: Channel): number[] {
  const got: number[] = [];
  ch.setReceiver((m) => got.push(m.payload.readUInt32BE(0)));
  return got;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

test('cm: two paths make one session; losing the active path keeps the connection Connected', async () => {
  const net = new MemoryNetwork(realClock);
  const faults = new PathFaults(net);
  const a = makeNode(0, faults.wrap(net.transport()), realClock);
  const b = makeNode(1, net.transport(), realClock);
  try {
    for (const x of ['a1', 'a2']) await a.cm.listen(mem(x));
    for (const x of ['b1', 'b2']) await b.cm.listen(mem(x));
    a.cm.addConnection({
      resource: 'r0',
      peerNodeId: 1,
      paths: [{ peer: mem('b1') }, { peer: mem('b2') }],
      net: NET,
      multipath: MP,
    });
    b.cm.addConnection({
      resource: 'r0',
      peerNodeId: 0,
      paths: [{ peer: mem('a1') }, { peer: mem('a2') }],
      net: NET,
      multipath: MP,
    });
    await a.waitEvent('connected', connected('r0', 1));
    await b.waitEvent('connected', connected('r0', 0));
    const sa = a.cm.established('r0', 1)?.channel as MultipathSession;
    const sb = b.cm.established('r0', 0)?.channel as MultipathSession;
    assert.equal(sa.transport, 'multipath');
    assert.equal(sb.transport, 'multipath');
    await waitFor('both paths joined', (done) => {
      const t = setInterval(() => sa.paths().length === 2 && done(undefined), 10);
      return () => clearInterval(t);
    });
    const got = numbered(sb);
    const failover = waitFor('failover', (done) =>
      sa.on('path', (e) => e.change === 'failover' && done(e)),
    );
    let n = 0;
    const pump = setInterval(() => {
      for (let i = 0; i < 20; i++) sa.send('data', 1, [u32(n++)]);
    }, 5);
    await new Promise((r) => setTimeout(r, 100));
    const active = sa.paths().find((p) => p.active)?.spec.peer.address ?? '';
    faults.cut(active);
    await failover;
    await new Promise((r) => setTimeout(r, 200));
    clearInterval(pump);
    await waitFor('all delivered', (done) => {
      const t = setInterval(() => got.length >= n && done(undefined), 10);
      return () => clearInterval(t);
    });
    assert.deepEqual(got, [...Array(n).keys()], 'exactly once, in order');
    assert.equal(a.cm.state('r0', 1), 'Connected');
    assert.ok(
      !a.events.some(
        (e) =>
          e.kind === 'state' && e.state === 'Connecting' && e.reason?.startsWith('connection lost'),
      ),
      'never left Connected',
    );
  } finally {
    await a.cm.close();
    await b.cm.close();
  }
});

test('cm: ssocks connects on Ethernet, upgrades to the other announced address, keeps Ethernet', async () => {
  const net = new MemoryNetwork(realClock);
  const a = makeNode(0, net.transport(), realClock);
  const b = makeNode(1, net.transport(), realClock);
  try {
    await a.cm.listen(mem('a-eth'));
    await b.cm.listen(mem('b-eth'));
    await b.cm.listen(mem('b-fast'));
    const mp = { ...MP, ssocks: true };
    a.cm.addConnection({
      resource: 'r0',
      peerNodeId: 1,
      paths: [{ peer: mem('b-eth') }],
      net: NET,
      multipath: mp,
    });
    b.cm.addConnection({
      resource: 'r0',
      peerNodeId: 0,
      paths: [{ peer: mem('a-eth') }],
      net: NET,
      multipath: mp,
    });
    await a.waitEvent('connected', connected('r0', 1));
    const sa = a.cm.established('r0', 1)?.channel as MultipathSession;
    await waitFor('upgrade to b-fast', (done) => {
      const t = setInterval(() => {
        const p = sa.paths();
        if (p.length === 2 && p.find((x) => x.active)?.spec.peer.address === 'b-fast')
          done(undefined);
      }, 10);
      return () => clearInterval(t);
    });
    assert.deepEqual(
      sa.paths().map((p) => p.spec.peer.address),
      ['b-fast', 'b-eth'],
    );
  } finally {
    await a.cm.close();
    await b.cm.close();
  }
});

test('cm: both ends of a session run the connection net{} options, not only the one that dialed', async () => {
  const net = new MemoryNetwork(realClock);
  const a = makeNode(0, net.transport(), realClock);
  const b = makeNode(1, net.transport(), realClock);
  try {
    await a.cm.listen(mem('a1'));
    await b.cm.listen(mem('b1'));
    const mp = { ...MP, pingTimeoutMs: 700, timeoutMs: 4_321 };
    a.cm.addConnection({
      resource: 'r0',
      peerNodeId: 1,
      paths: [{ peer: mem('b1') }],
      net: NET,
      multipath: mp,
    });
    b.cm.addConnection({
      resource: 'r0',
      peerNodeId: 0,
      paths: [{ peer: mem('a1') }],
      net: NET,
      multipath: mp,
    });
    await a.waitEvent('connected', connected('r0', 1));
    await b.waitEvent('connected', connected('r0', 0));
    const sessions = [a.cm.established('r0', 1)?.channel, b.cm.established('r0', 0)?.channel];
    assert.deepEqual(
      sessions.map((s) => s?.initiator).sort(),
      [false, true],
      'one side opened the session, the other accepted it',
    );
    for (const s of sessions) {
      const o = (s as unknown as { opts: { pingTimeoutMs: number; timeoutMs: number } }).opts;
      assert.equal(o.pingTimeoutMs, 700, `${s?.id}: ping-timeout`);
      assert.equal(o.timeoutMs, 4_321, `${s?.id}: timeout`);
    }
  } finally {
    await a.cm.close();
    await b.cm.close();
  }
});

test('cm: a channel that skips the authenticated handshake cannot open a session', async () => {
  const net = new MemoryNetwork(realClock);
  const b = makeNode(1, net.transport(), realClock);
  const t = net.transport();
  try {
    await b.cm.listen(mem('b1'));
    b.cm.addConnection({
      resource: 'r0',
      peerNodeId: 0,
      paths: [{ peer: mem('nowhere') }],
      net: NET,
      multipath: MP,
    });
    const ch = await t.connect({ peer: mem('b1') }, { signal: AbortSignal.timeout(5_000) });
    await assert.rejects(
      initiatePath(ch, {
        kind: 'open',
        sessionId: randomBytes(16),
        loadBalance: false,
        rank: 0,
        key: { alg: 'sha256', secret: Buffer.alloc(0) },
        alg: 'sha256',
        next: { data: 0, control: 0 },
        randomBytes,
        clock: realClock,
        timeoutMs: 5_000,
      }),
      (e: unknown) => e instanceof SessionRefused && /expected a session join/.test(e.message),
    );
    ch.destroy();
  } finally {
    await b.cm.close();
    await t.close();
  }
});
