// Multipath failover with real processes in two network namespaces joined by two networks,
// "interconnect" (203.0.113.0/24, preferred) and "ethernet" (198.51.100.0/24). The sender streams
// numbered messages while the test cuts the interconnect (ip link down, alternately on the
// sender's side and, silently, on the receiver's side) and restores it. Pins: zero loss, zero
// duplicates, order kept, every cycle fails over and back (path events), the same under 5% loss
// on the surviving path, and a session that ends by timeout when both networks are cut.
// The delivery stall around each failover and failback is measured and printed (TRANSPORTS.md).
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { NetnsPair, requireRoot } from '../support/netns.js';

const PEER = fileURLToPath(new URL('./netns-peer.js', import.meta.url));
const PING_TIMEOUT_MS = 500;
const TIMEOUT_MS = 3_000;
const OPTS = {
  pingTimeoutMs: PING_TIMEOUT_MS,
  timeoutMs: TIMEOUT_MS,
  redialMs: 100,
  // The test flaps the interconnect on purpose (a cycle every few seconds): no hold-down here.
  flapsPerMinuteMax: 1_000,
};

interface Line {
  readonly ev: string;
  readonly t: number;
  readonly [k: string]: unknown;
}

/** A child's JSON lines, kept, with waits. */
class Peer {
  readonly lines: Line[] = [];
  private waiters: { pred: (l: Line) => boolean; done: (l: Line) => void }[] = [];
  constructor(
    readonly child: ChildProcess,
    readonly name: string,
  ) {
    if (child.stdout) {
      createInterface({ input: child.stdout }).on('line', (s) => {
        let l: Line;
        try {
          l = JSON.parse(s) as Line;
        } catch {
          return;
        }
        this.lines.push(l);
        for (const w of [...this.waiters]) {
          if (w.pred(l)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.done(l);
          }
        }
      });
    }
    child.stderr?.on('data', (b: Buffer) => process.stderr.write(`[${name}] ${b.toString()}`));
  }
  send(cmd: string): void {
    this.child.stdin?.write(`${cmd}\n`);
  }
  /** The first line from index `from` on that matches. */
  wait(pred: (l: Line) => boolean, what: string, timeoutMs: number, from = 0): Promise<Line> {
    const past = this.lines.slice(from).find(pred);
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        done: (l: Line) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`${this.name}: ${what} not seen in ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}

const isChange = (change: string, path: string) => (l: Line) =>
  l.ev === 'path' && l.change === change && typeof l.path === 'string' && l.path.startsWith(path);

async function start(ns: NetnsPair, messageBytes = 4096): Promise<{ rx: Peer; tx: Peer }> {
  const ic = ns.net('interconnect');
  const eth = ns.net('ethernet');
  const rx = new Peer(
    ns.spawnNode('b', PEER, [
      'receiver',
      JSON.stringify({ port: 0, addresses: [ic.addrB, eth.addrB], opts: OPTS }),
    ]),
    'receiver',
  );
  const listening = await rx.wait(
    (l) => l.ev === 'listening' || l.ev === 'fatal',
    'listening',
    10_000,
  );
  assert.equal(listening.ev, 'listening', JSON.stringify(listening));
  const tx = new Peer(
    ns.spawnNode('a', PEER, [
      'sender',
      JSON.stringify({
        port: listening['port'],
        addresses: [ic.addrB, eth.addrB],
        opts: OPTS,
        messageBytes,
      }),
    ]),
    'sender',
  );
  const c = await tx.wait((l) => l.ev === 'connected' || l.ev === 'fatal', 'connected', 10_000);
  assert.equal(c.ev, 'connected', JSON.stringify(c));
  // The ethernet path joins in the background; wait for it so the first cut has a fallback.
  await tx.wait(
    (l) => l.ev === 'path' && l.state === 'established' && l.path === eth.addrB,
    'ethernet path',
    10_000,
  );
  return { rx, tx };
}

/** Stops the sender and checks the receiver got every message once, in order. */
async function finish(rx: Peer, tx: Peer): Promise<void> {
  const from = tx.lines.length;
  tx.send('stop');
  const stopped = await tx.wait((l) => l.ev === 'stopped', 'stopped', 5_000, from);
  const sent = stopped['sent'] as number;
  for (let i = 0; ; i++) {
    const mark = rx.lines.length;
    rx.send('report');
    const r = await rx.wait((l) => l.ev === 'report', 'report', 5_000, mark);
    if (r['received'] === sent || i > 100) {
      assert.equal(r['bad'], 0, 'no message out of order, lost or duplicated');
      assert.equal(r['received'], sent, `received ${String(r['received'])} of ${sent}`);
      return;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
}

interface Cycle {
  side: 'a' | 'b';
  cutAt: number;
  failoverAt: number;
  restoreAt: number;
  failbackAt: number;
}

/** Max delivery gap at the receiver that ended within [from, to). */
function maxGap(rx: Peer, from: number, to: number): number {
  let m = 0;
  for (const l of rx.lines) {
    if (l.ev === 'gap' && l.t >= from && l.t < to) m = Math.max(m, l['ms'] as number);
  }
  return m;
}

/**
 * The failback's own stall: how long after the switch (the sender's event) deliveries stayed
 * stopped, for gaps that end within `windowMs` of it. A gap that began before the switch (a loss
 * on the old path) counts only from the switch on.
 */
function stallAfter(rx: Peer, atMs: number, windowMs: number): number {
  let m = 0;
  for (const l of rx.lines) {
    if (l.ev !== 'gap' || l.t < atMs || l.t >= atMs + windowMs) continue;
    m = Math.max(m, l.t - Math.max(atMs, l.t - (l['ms'] as number)));
  }
  return m;
}

const FAILBACK_WINDOW_MS = 150;

async function cycles(ns: NetnsPair, rx: Peer, tx: Peer, n: number): Promise<Cycle[]> {
  const ic = ns.net('interconnect');
  const out: Cycle[] = [];
  for (let i = 0; i < n; i++) {
    const side = i % 2 === 0 ? 'a' : 'b';
    let mark = tx.lines.length;
    const cutAt = Date.now();
    ns.setLink('interconnect', side, false);
    const fo = await tx.wait(
      isChange('failover', '198.51.100.'),
      `cycle ${i}: failover`,
      10_000,
      mark,
    );
    await rx.wait(isChange('failover', '198.51.100.'), `cycle ${i}: receiver failover`, 10_000);
    // Let traffic run on ethernet a little, then heal the interconnect.
    await new Promise((r) => setTimeout(r, 200));
    mark = tx.lines.length;
    const restoreAt = Date.now();
    ns.setLink('interconnect', side, true);
    const fb = await tx.wait(isChange('failback', ic.addrB), `cycle ${i}: failback`, 15_000, mark);
    await new Promise((r) => setTimeout(r, 200));
    out.push({ side, cutAt, failoverAt: fo.t, restoreAt, failbackAt: fb.t });
  }
  return out;
}

/**
 * Per cycle: detection (cut to the sender's failover event), the failover stall (longest gap
 * between the cut and the restore), the failback stall (see stallAfter) and,
 * as the machine's noise floor, the longest gap in the quiet time after it on the interconnect.
 */
function summarize(rx: Peer, cs: readonly Cycle[]): string {
  const rows = cs.map((c, i) => {
    const next = cs[i + 1]?.cutAt ?? Date.now();
    const fbTo = c.failbackAt + FAILBACK_WINDOW_MS;
    return {
      side: c.side,
      detectMs: c.failoverAt - c.cutAt,
      failoverStallMs: maxGap(rx, c.cutAt, c.restoreAt),
      failbackStallMs: stallAfter(rx, c.failbackAt, FAILBACK_WINDOW_MS),
      quietGapMs: maxGap(rx, fbTo, next),
    };
  });
  type Key = 'detectMs' | 'failoverStallMs' | 'failbackStallMs' | 'quietGapMs';
  const max = (k: Key, side?: 'a' | 'b'): number =>
    Math.max(0, ...rows.filter((r) => side === undefined || r.side === side).map((r) => r[k]));
  return JSON.stringify({
    cycles: rows.length,
    localCut: {
      maxDetectMs: max('detectMs', 'a'),
      maxFailoverStallMs: max('failoverStallMs', 'a'),
    },
    peerCut: { maxDetectMs: max('detectMs', 'b'), maxFailoverStallMs: max('failoverStallMs', 'b') },
    maxFailbackStallMs: max('failbackStallMs'),
    maxQuietGapMs: max('quietGapMs'),
    failoverStallsMs: rows.map((r) => r.failoverStallMs),
    failbackStallsMs: rows.map((r) => r.failbackStallMs),
  });
}

const NETS = [
  { name: 'interconnect', prefix: '203.0.113' },
  { name: 'ethernet', prefix: '198.51.100' },
];

test(
  'netns: 20 interconnect cuts (either side) fail over and back with no loss',
  { timeout: 110_000 },
  async (t) => {
    if (!requireRoot(t)) return;
    const ns = NetnsPair.create(NETS);
    try {
      const { rx, tx } = await start(ns);
      const cs = await cycles(ns, rx, tx, 20);
      await finish(rx, tx);
      const s = summarize(rx, cs);
      t.diagnostic(`multipath stalls: ${s}`);
      assert.equal(cs.length, 20);
    } finally {
      ns.cleanup();
    }
  },
);

test('netns: the same with 5% loss on the ethernet path', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const ns = NetnsPair.create(NETS);
  try {
    ns.setLoss('ethernet', 5);
    const { rx, tx } = await start(ns);
    const cs = await cycles(ns, rx, tx, 4);
    await finish(rx, tx);
    t.diagnostic(`multipath stalls with 5% loss on ethernet: ${summarize(rx, cs)}`);
  } finally {
    ns.cleanup();
  }
});

test(
  'netns: both networks cut: the session ends with timeout on both sides',
  { timeout: 30_000 },
  async (t) => {
    if (!requireRoot(t)) return;
    const ns = NetnsPair.create(NETS);
    try {
      const { rx, tx } = await start(ns);
      const cutAt = Date.now();
      ns.setLink('interconnect', 'b', false);
      ns.setLink('ethernet', 'b', false);
      const [ct, cr] = await Promise.all([
        tx.wait((l) => l.ev === 'closed', 'sender closed', 15_000),
        rx.wait((l) => l.ev === 'closed', 'receiver closed', 15_000),
      ]);
      assert.equal(ct['reason'], 'timeout');
      assert.equal(cr['reason'], 'timeout');
      const after = ct.t - cutAt;
      assert.ok(after >= TIMEOUT_MS, `ended after ${after} ms, before the timeout`);
      t.diagnostic(
        `session ended ${after} ms after both cuts (ping-timeout ${PING_TIMEOUT_MS} + timeout ${TIMEOUT_MS})`,
      );
    } finally {
      ns.cleanup();
    }
  },
);
