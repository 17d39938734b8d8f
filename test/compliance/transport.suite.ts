// The transport compliance suite: every Transport (memory, tcp, fabric, multipath) runs these
// same tests through transportSuite(). A transport is done when this passes. Tests wait on
// events with timeouts and never on sleeps.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX } from '../../src/limits.js';
import type {
  Channel,
  ChannelOptions,
  CloseInfo,
  Message,
  StreamId,
} from '../../src/transport/types.js';

export interface TransportPair {
  /** The side that connected. */
  readonly a: Channel;
  /** The side that accepted. */
  readonly b: Channel;
  /** Makes the connection half-open: bytes stop flowing both ways and neither side is told. */
  blackhole(): void | Promise<void>;
  /** Releases everything (listeners, proxies); channels may already be closed. */
  cleanup(): Promise<void>;
}

export type PairFactory = (opts: ChannelOptions) => Promise<TransportPair>;

const WAIT_MS = 15_000;

export function waitFor<T>(
  what: string,
  subscribe: (done: (v: T) => void) => () => void,
  timeoutMs = WAIT_MS,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let unsubscribe = (): void => {};
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    unsubscribe = subscribe((v) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(v);
    });
  });
}

export function closedOf(ch: Channel): Promise<CloseInfo> {
  return waitFor(`${ch.id} closed`, (done) => ch.on('closed', done));
}

/** Collects messages; `until(n)` resolves once n have arrived. */
export class Inbox {
  readonly messages: Message[] = [];
  private waiters: { n: number; done: () => void }[] = [];
  constructor(ch: Channel) {
    ch.setReceiver((m) => {
      this.messages.push(m);
      for (const w of [...this.waiters]) {
        if (this.messages.length >= w.n) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.done();
        }
      }
    });
  }
  on(stream: StreamId): Message[] {
    return this.messages.filter((m) => m.stream === stream);
  }
  until(n: number, timeoutMs = WAIT_MS): Promise<void> {
    if (this.messages.length >= n) return Promise.resolve();
    return waitFor(
      `${n} messages (have ${this.messages.length})`,
      (done) => {
        const w = { n, done: () => done(undefined) };
        this.waiters.push(w);
        return () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
        };
      },
      timeoutMs,
    );
  }
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Fills a buffer with a pattern that differs per offset, so misplaced bytes are detected. */
function pattern(bytes: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  let x = seed | 1;
  for (let i = 0; i + 4 <= bytes; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x, i);
  }
  for (let i = bytes - (bytes % 4); i < bytes; i++) b[i] = i & 0xff;
  return b;
}

async function withPair(
  make: PairFactory,
  opts: ChannelOptions,
  body: (p: TransportPair) => Promise<void>,
): Promise<void> {
  const p = await make(opts);
  try {
    await body(p);
  } finally {
    p.a.destroy();
    p.b.destroy();
    await p.cleanup();
  }
}

export function transportSuite(name: string, make: PairFactory): void {
  describe(`transport compliance: ${name}`, () => {
    test('a fresh pair is open on both sides, the initiator is a', async () => {
      await withPair(make, {}, async ({ a, b }) => {
        assert.equal(a.isOpen, true);
        assert.equal(b.isOpen, true);
        assert.equal(a.initiator, true);
        assert.equal(b.initiator, false);
        await Promise.resolve();
      });
    });

    test('each stream keeps its order, both directions, interleaved sends', async () => {
      await withPair(make, {}, async ({ a, b }) => {
        const inB = new Inbox(b);
        const inA = new Inbox(a);
        const n = 2000;
        for (let i = 0; i < n; i++) {
          a.send(i % 3 === 0 ? 'control' : 'data', 7, [u32(i), Buffer.alloc(i % 97)]);
          b.send(i % 2 === 0 ? 'control' : 'data', 8, [u32(i)]);
        }
        await inB.until(n);
        await inA.until(n);
        for (const [inbox, type] of [
          [inB, 7],
          [inA, 8],
        ] as const) {
          for (const stream of ['data', 'control'] as const) {
            const seq = inbox.on(stream).map((m) => m.payload.readUInt32BE(0));
            const sorted = [...seq].sort((x, y) => x - y);
            assert.deepEqual(seq, sorted, `${stream} out of order`);
            assert.ok(inbox.on(stream).every((m) => m.type === type));
          }
        }
        assert.equal(inB.messages.length, n);
      });
    });

    test('scatter-gather payloads arrive as their concatenation; 0-byte messages too', async () => {
      await withPair(make, {}, async ({ a, b }) => {
        const inbox = new Inbox(b);
        const parts = [Buffer.from('ab'), Buffer.alloc(0), Buffer.from('cde'), pattern(5000, 3)];
        a.send('data', 1, parts);
        a.send('data', 2, []);
        a.send('control', 3, [Buffer.alloc(0)]);
        a.send('control', 0xfeff, []);
        await inbox.until(4);
        const data = inbox.on('data');
        assert.deepEqual(data[0]?.payload, Buffer.concat(parts));
        assert.equal(data[1]?.type, 2);
        assert.equal(data[1]?.payload.length, 0);
        const ctl = inbox.on('control');
        assert.deepEqual(
          ctl.map((m) => [m.type, m.payload.length]),
          [
            [3, 0],
            [0xfeff, 0],
          ],
        );
      });
    });

    test('a maximum-size message arrives intact on each stream', async () => {
      await withPair(make, {}, async ({ a, b }) => {
        const inbox = new Inbox(b);
        const big = pattern(TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX, 11);
        const half = TRANSPORT_MESSAGE_PAYLOAD_BYTES_MAX >>> 1;
        a.send('data', 9, [big.subarray(0, half), big.subarray(half)]);
        a.send('control', 10, [big]);
        await inbox.until(2, 60_000);
        for (const m of inbox.messages) {
          assert.equal(m.payload.length, big.length);
          assert.equal(sha(m.payload), sha(big));
        }
      });
    });

    test('CONTROL never waits behind DATA the receiver is not reading', async () => {
      await withPair(make, { highWaterBytes: 256 * 1024 }, async ({ a, b }) => {
        const inbox = new Inbox(b);
        b.pauseData();
        const chunk = Buffer.alloc(64 * 1024, 1);
        let sent = 0;
        // Fill the data path until the sender itself holds data back (network buffers full).
        for (let i = 0; i < 4096 && a.send('data', 1, [chunk]) === 'ok'; i++) sent++;
        sent++;
        assert.ok(a.stats().data.queuedBytes >= 256 * 1024, 'sender saw backpressure');
        a.send('control', 2, [Buffer.from('urgent')]);
        await waitFor('control message', (done) => {
          const t = setInterval(() => {
            if (inbox.on('control').length === 1) done(undefined);
          }, 5);
          return () => clearInterval(t);
        });
        assert.ok(inbox.on('data').length < sent, 'data was still held back');
        b.resumeData();
        await inbox.until(sent + 1, 60_000);
        assert.equal(inbox.on('data').length, sent);
      });
    });

    test('backpressure: over-high-water, then drain, and nothing is lost', async () => {
      await withPair(make, { highWaterBytes: 128 * 1024 }, async ({ a, b }) => {
        const inbox = new Inbox(b);
        b.pauseData();
        const chunk = pattern(32 * 1024, 5);
        let sent = 0;
        let status: string = 'ok';
        while (status === 'ok' && sent < 8192) {
          status = a.send('data', 4, [u32(sent), chunk]);
          sent++;
        }
        assert.equal(status, 'over-high-water');
        const st = a.stats();
        assert.ok(st.data.queuedBytes >= 128 * 1024);
        assert.ok(st.data.queuedBytes > 0);
        const drained = waitFor<StreamId>('drain', (done) => a.on('drain', done));
        b.resumeData();
        assert.equal(await drained, 'data');
        assert.ok(a.stats().data.queuedBytes < 128 * 1024);
        await inbox.until(sent, 60_000);
        const seq = inbox.on('data').map((m) => m.payload.readUInt32BE(0));
        assert.deepEqual(seq, [...Array(sent).keys()]);
        assert.ok(inbox.on('data').every((m) => sha(m.payload.subarray(4)) === sha(chunk)));
      });
    });

    test('stats count bytes and messages on each stream and estimate the RTT', async () => {
      await withPair(make, { pingIntMs: 20, pingTimeoutMs: 5000 }, async ({ a, b }) => {
        const inbox = new Inbox(b);
        a.send('data', 1, [Buffer.alloc(100)]);
        a.send('data', 1, [Buffer.alloc(50)]);
        a.send('control', 1, [Buffer.alloc(10)]);
        await inbox.until(3);
        const sa = a.stats();
        const sb = b.stats();
        assert.equal(sa.data.bytesSent, 150);
        assert.equal(sa.data.messagesSent, 2);
        assert.equal(sa.control.bytesSent, 10);
        assert.equal(sb.data.bytesReceived, 150);
        assert.equal(sb.data.messagesReceived, 2);
        assert.equal(sb.control.messagesReceived, 1);
        await waitFor('an RTT estimate', (done) => {
          const t = setInterval(() => {
            if (a.stats().rttMs !== null) done(undefined);
          }, 5);
          return () => clearInterval(t);
        });
        assert.ok((a.stats().rttMs ?? -1) >= 0);
      });
    });

    test('graceful close: everything sent arrives, then the peer sees by-peer', async () => {
      await withPair(make, {}, async ({ a, b }) => {
        const inbox = new Inbox(b);
        const bClosed = closedOf(b);
        const aClosed = closedOf(a);
        for (let i = 0; i < 100; i++) a.send('data', 1, [u32(i), Buffer.alloc(10_000)]);
        a.send('control', 2, [u32(100)]);
        await a.close();
        assert.equal(a.isOpen, false);
        assert.equal((await aClosed).reason, 'local');
        assert.equal((await bClosed).reason, 'by-peer');
        assert.equal(inbox.on('data').length, 100);
        assert.equal(inbox.on('control').length, 1);
        await a.close(); // idempotent
        a.destroy();
        assert.equal(a.send('data', 1, []), 'closed');
      });
    });

    for (const side of ['sender', 'receiver'] as const) {
      test(`abrupt close by the ${side} in the middle of a large message`, async () => {
        await withPair(make, {}, async ({ a, b }) => {
          const inbox = new Inbox(b);
          const bClosed = closedOf(b);
          const aClosed = closedOf(a);
          const big = pattern(16 * 1024 * 1024, 7);
          a.send('data', 5, [big]);
          a.send('data', 6, [Buffer.alloc(0)]);
          if (side === 'sender') {
            a.destroy(new Error('test abort'));
            assert.equal((await aClosed).reason, 'local');
            assert.equal((await bClosed).reason, 'by-peer');
          } else {
            b.destroy();
            assert.equal((await bClosed).reason, 'local');
            const info = await aClosed;
            assert.ok(
              info.reason === 'by-peer' || info.reason === 'error',
              `sender closed with ${info.reason}`,
            );
          }
          // A message is delivered whole or not at all.
          for (const m of inbox.messages) {
            if (m.type === 5) assert.equal(sha(m.payload), sha(big));
          }
          assert.equal(a.isOpen, false);
          assert.equal(b.isOpen, false);
        });
      });
    }

    test('half-open: a silent peer is declared dead by ping on both sides', async () => {
      await withPair(make, { pingIntMs: 50, pingTimeoutMs: 300 }, async (p) => {
        const aClosed = closedOf(p.a);
        const bClosed = closedOf(p.b);
        // Let one ping round trip succeed first, so the detection is the timeout, not setup.
        await waitFor('first ping-ack', (done) => {
          const t = setInterval(() => {
            if (p.a.stats().rttMs !== null) done(undefined);
          }, 5);
          return () => clearInterval(t);
        });
        await p.blackhole();
        const [ia, ib] = await Promise.all([aClosed, bClosed]);
        assert.equal(ia.reason, 'timeout');
        assert.equal(ib.reason, 'timeout');
        assert.match(ia.error?.message ?? '', /ping/);
      });
    });

    test('messages that arrive before a receiver is set are kept and delivered in order', async () => {
      await withPair(make, {}, async ({ a, b }) => {
        for (let i = 0; i < 10; i++) a.send(i % 2 ? 'data' : 'control', 1, [u32(i)]);
        // Wait for the bytes to reach b without a receiver.
        await waitFor('bytes at b', (done) => {
          const t = setInterval(() => {
            if (b.stats().control.messagesReceived >= 5) done(undefined);
          }, 5);
          return () => clearInterval(t);
        });
        const inbox = new Inbox(b);
        await inbox.until(10);
        assert.deepEqual(
          inbox.on('control').map((m) => m.payload.readUInt32BE(0)),
          [0, 2, 4, 6, 8],
        );
        assert.deepEqual(
          inbox.on('data').map((m) => m.payload.readUInt32BE(0)),
          [1, 3, 5, 7, 9],
        );
      });
    });
  });
}

/**
 * ko-count: a peer that stops taking DATA is declared dead after koCount stalls of timeoutMs.
 * Part of the contract, kept apart from transportSuite(); memory, tcp, fabric and multipath
 * (memory, tcp, load-balanced tcp paths) all run it.
 */
export function koCountSuite(name: string, make: PairFactory): void {
  describe(`transport compliance (ko-count): ${name}`, () => {
    test('a peer that stops taking DATA is declared dead after ko-count stalls of timeout', async () => {
      const opts = { pingIntMs: 60_000, timeoutMs: 100, koCount: 3, highWaterBytes: 256 * 1024 };
      await withPair(make, opts, async ({ a, b }) => {
        new Inbox(b);
        b.pauseData();
        const aClosed = closedOf(a);
        const chunk = Buffer.alloc(256 * 1024);
        // Fill every buffer on the way so the sender's own queue holds bytes that cannot move.
        for (let i = 0; i < 256 && a.isOpen; i++) a.send('data', 1, [chunk]);
        assert.ok(a.stats().data.queuedBytes > 0);
        const info = await aClosed;
        assert.equal(info.reason, 'timeout');
        assert.match(info.error?.message ?? '', /stopped accepting/);
      });
    });
  });
}
