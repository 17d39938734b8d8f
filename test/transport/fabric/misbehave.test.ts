// A misbehaving peer must never crash the process: it lies in its connection data, sends
// garbage, sends beyond its credits, sends a message larger than our buffers, or vanishes in
// the middle of a transfer. Each case ends in a refused or closed connection with a reason,
// and the transport keeps serving well-behaved peers. The peer is the raw addon.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  loadFabricAddon,
  type NativeConnectionEvent,
} from '../../../src/transport/fabric/addon.js';
import { fabricTransport } from '../../../src/transport/fabric/index.js';
import { defaultProgress } from '../../../src/transport/fabric/options.js';
import {
  decodeFragmentHeader,
  encodeConnHello,
  encodeFragmentHeader,
  FLAG_FIRST,
  FLAG_LAST,
} from '../../../src/transport/fabric/wire.js';
import { FABRIC_CLOSE_TIMEOUT_MS } from '../../../src/limits.js';
import type { Clock } from '../../../src/platform/clock.js';
import type { Channel, CloseInfo, Endpoint } from '../../../src/transport/types.js';
import { waitFor } from '../../compliance/transport.suite.js';
import { realClock } from '../../support/clocks.js';
import { inCi } from '../../support/peers.js';

const addon = loadFabricAddon();
const ep: Endpoint = { transport: 'fabric', family: 'ipv4', address: '127.0.0.1', port: 0 };

for (const provider of (process.env['FABRIC_TEST_PROVIDERS'] ?? 'tcp,sockets').split(','))
  misbehaviourSuite(provider);

function misbehaviourSuite(provider: string): void {
  const raw = {
    provider,
    bufferBytes: 256 * 1024,
    recvBuffers: 32,
    sendBuffers: 128,
    zcopyThreshold: 8192,
    recvPollUs: 0,
    progress: defaultProgress(provider),
  };

  function skipWithout(t: { skip: (m: string) => void }): boolean {
    if (
      addon.ok &&
      addon.value.getinfo({ provider, host: '127.0.0.1', port: '0', source: true }).length > 0
    )
      return false;
    const why = addon.ok ? `libfabric ${provider} provider missing` : addon.error;
    if (inCi) throw new Error(why);
    t.skip(why);
    return true;
  }

  async function server(onChannel: (ch: Channel) => void = () => {}) {
    const tr = fabricTransport({ provider })({ clock: realClock });
    const l = await tr.listen(ep, onChannel);
    return { tr, l, close: async () => (await l.close(), await tr.close()) };
  }

  /** A raw connection; resolves once connected, with an event log. */
  function rawConnect(port: number, connData: Buffer) {
    assert.ok(addon.ok);
    const events: NativeConnectionEvent[] = [];
    const waiters: (() => void)[] = [];
    const conn = addon.value.connect(
      { ...raw, host: '127.0.0.1', port: String(port) },
      connData,
      (...e) => {
        events.push(e);
        for (const w of waiters.splice(0)) w();
      },
    );
    const until = (what: string, pred: (e: NativeConnectionEvent) => boolean) =>
      waitFor(what, (done) => {
        const check = () => (events.some(pred) ? done(undefined) : waiters.push(check));
        check();
        return () => {};
      });
    return { conn, events, until };
  }

  const hello = encodeConnHello({ bufferBytes: 256 * 1024, dataCredits: 32, controlCredits: 8 });
  const closedOf = (ch: Channel) => waitFor<CloseInfo>('closed', (done) => ch.on('closed', done));

  async function wellBehavedStillWorks(port: number): Promise<void> {
    const client = fabricTransport({ provider })({ clock: realClock });
    const a = await client.connect(
      { peer: { ...ep, port } },
      { signal: AbortSignal.timeout(10_000) },
    );
    assert.equal(a.isOpen, true);
    a.destroy();
    await client.close();
  }

  test(`${provider}: a peer lying in its connection data is refused before any setup`, async (t) => {
    if (skipWithout(t)) return;
    const s = await server();
    try {
      for (const lie of [
        Buffer.from('not a tandem hello at all'),
        encodeConnHello({ bufferBytes: 1, dataCredits: 32, controlCredits: 8 }),
        encodeConnHello({ bufferBytes: 65536, dataCredits: 0, controlCredits: 8 }),
        encodeConnHello({ bufferBytes: 65536, dataCredits: 60000, controlCredits: 8 }),
        Buffer.alloc(0),
      ]) {
        const r = rawConnect(s.l.endpoint.port, lie);
        await r.until('refusal', (e) => e[0] === 'error' || e[0] === 'shutdown');
        assert.ok(!r.events.some((e) => e[0] === 'connected'), 'a liar is never connected');
        r.conn.close();
      }
      await wellBehavedStillWorks(s.l.endpoint.port);
    } finally {
      await s.close();
    }
  });

  test(`${provider}: garbage, a message beyond our buffer size, and sends beyond credits close with an error`, async (t) => {
    if (skipWithout(t)) return;
    const cases: {
      name: string;
      expect: RegExp;
      attack: (send: (h: Buffer, p: Buffer | null) => void) => void;
      pause?: boolean;
    }[] = [
      {
        name: 'garbage header',
        expect: /magic/,
        attack: (send) => send(Buffer.from('garbage garbage!'), null),
      },
      {
        name: 'continuation without a first fragment',
        expect: /continuation/,
        attack: (send) =>
          send(
            encodeFragmentHeader({
              kind: 'data',
              flags: FLAG_LAST,
              type: 1,
              grantData: 0,
              grantControl: 0,
              totalBytes: 0,
            }),
            Buffer.alloc(10),
          ),
      },
      {
        name: 'message larger than the receive buffer',
        expect: /ETRUNC|truncat/i,
        attack: (send) =>
          send(
            encodeFragmentHeader({
              kind: 'data',
              flags: FLAG_FIRST | FLAG_LAST,
              type: 1,
              grantData: 0,
              grantControl: 0,
              totalBytes: 100_000,
            }),
            Buffer.alloc(100_000),
          ),
      },
      {
        name: 'a close-ack for a close we never sent',
        expect: /close-ack for a close we did not send/,
        attack: (send) =>
          send(
            encodeFragmentHeader({
              kind: 'close-ack',
              flags: 0,
              type: 0,
              grantData: 0,
              grantControl: 0,
              totalBytes: 0,
            }),
            null,
          ),
      },
      {
        name: 'sends beyond its DATA credits',
        expect: /beyond the credits/,
        pause: true,
        attack: (send) => {
          for (let i = 0; i < 70; i++) {
            send(
              encodeFragmentHeader({
                kind: 'data',
                flags: FLAG_FIRST | FLAG_LAST,
                type: 1,
                grantData: 0,
                grantControl: 0,
                totalBytes: 4,
              }),
              Buffer.alloc(4),
            );
          }
        },
      },
    ];
    for (const c of cases) {
      let resolveCh!: (ch: Channel) => void;
      const accepted = new Promise<Channel>((r) => (resolveCh = r));
      const s = await server((ch) => {
        if (c.pause === true) ch.pauseData();
        resolveCh(ch);
      });
      try {
        const r = rawConnect(s.l.endpoint.port, hello);
        await r.until('connected', (e) => e[0] === 'connected');
        const ch = await accepted;
        const closed = closedOf(ch);
        let token = 1;
        c.attack((h, p) => {
          r.conn.send(h, p, 0, p?.length ?? 0, token++);
        });
        const info = await closed;
        assert.equal(info.reason, 'error', `${c.name}: ${info.error?.message}`);
        assert.match(info.error?.message ?? '', c.expect, c.name);
        r.conn.close();
        await wellBehavedStillWorks(s.l.endpoint.port);
      } finally {
        await s.close();
      }
    }
  });

  test(`${provider}: a peer that vanishes in the middle of a large transfer: by-peer, no crash, buffers released`, async (t) => {
    if (skipWithout(t)) return;
    const s = await server((ch) => ch.setReceiver(() => {}));
    try {
      const client = fabricTransport({ provider })({ clock: realClock });
      const a = await client.connect(
        { peer: s.l.endpoint },
        { signal: AbortSignal.timeout(10_000) },
      );
      const closed = closedOf(a);
      const big = Buffer.alloc(8 * 1024 * 1024, 1);
      for (let i = 0; i < 4; i++) a.send('data', 1, [big]);
      await s.close(); // the server side disappears with data in flight
      const info = await closed;
      assert.ok(info.reason === 'by-peer' || info.reason === 'error', info.reason);
      assert.equal(client.stats().channelsOpen, 0);
      await client.close();
    } finally {
      await s.close();
    }
  });

  test(`${provider}: a peer that closes and never disconnects: acknowledged, closed by-peer, released after the linger`, async (t) => {
    if (skipWithout(t)) return;
    // Real timers, except the close timeouts, which the test fires itself.
    const held: (() => void)[] = [];
    const clock: Clock = {
      nowMs: () => realClock.nowMs(),
      setTimeout: (fn, delayMs) => {
        if (delayMs < FABRIC_CLOSE_TIMEOUT_MS) return realClock.setTimeout(fn, delayMs);
        held.push(fn);
        return { cancel: () => held.splice(held.indexOf(fn) >>> 0, 1) };
      },
    };
    const tr = fabricTransport({ provider })({ clock });
    let resolveCh!: (ch: Channel) => void;
    const accepted = new Promise<Channel>((r) => (resolveCh = r));
    const l = await tr.listen(ep, (ch) => resolveCh(ch));
    try {
      const r = rawConnect(l.endpoint.port, hello);
      await r.until('connected', (e) => e[0] === 'connected');
      const ch = await accepted;
      const closed = closedOf(ch);
      const close = encodeFragmentHeader({
        kind: 'close',
        flags: 0,
        type: 0,
        grantData: 0,
        grantControl: 0,
        totalBytes: 0,
      });
      r.conn.send(close, null, 0, 0, 1);
      assert.equal((await closed).reason, 'by-peer');
      const kindOf = (e: NativeConnectionEvent): string | undefined => {
        if (e[0] !== 'recv') return undefined;
        const h = decodeFragmentHeader(e[1]);
        return h.ok ? h.value.kind : undefined;
      };
      await r.until('close-ack', (e) => kindOf(e) === 'close-ack');
      assert.ok(!r.events.some((e) => e[0] === 'shutdown'), 'the endpoint lingers for us');
      assert.ok(held.length > 0, 'a linger timer is pending');
      for (const fn of held.splice(0)) fn();
      await r.until('our endpoint released', (e) => e[0] === 'shutdown' || e[0] === 'error');
      r.conn.close();
      await wellBehavedStillWorks(l.endpoint.port);
    } finally {
      await l.close();
      await tr.close();
    }
  });
}
