// A virtual-time world for multipath tests: two nodes on a MemoryNetwork driven by a ManualClock,
// the dialer's transport wrapped in PathFaults, and helpers to stream numbered messages and check
// that each stream arrives exactly once, in order.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { MemoryNetwork } from '../../src/transport/memory/index.js';
import {
  multipathTransport,
  type MultipathSession,
  type MultipathTransport,
} from '../../src/transport/multipath/index.js';
import type { MultipathOptions } from '../../src/transport/multipath/types.js';
import type {
  Channel,
  CloseInfo,
  Endpoint,
  PathEvent,
  StreamId,
  Transport,
} from '../../src/transport/types.js';
import { ManualClock } from '../support/clocks.js';
import { PathFaults } from '../support/path-faults.js';

export const mem = (address: string): Endpoint => ({
  transport: 'memory',
  family: 'memory',
  address,
  port: 0,
});

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Records what a session receives and its events. */
export class Probe {
  readonly got: { [S in StreamId]: number[] } = { data: [], control: [] };
  readonly events: (PathEvent & { atMs: number })[] = [];
  closed: CloseInfo | null = null;
  constructor(
    readonly ch: Channel,
    clock: ManualClock,
  ) {
    ch.setReceiver((m) => this.got[m.stream].push(m.payload.readUInt32BE(0)));
    ch.on('path', (e) => this.events.push({ ...e, atMs: clock.nowMs() }));
    ch.on('closed', (i) => (this.closed = i));
  }
  closedInfo(): CloseInfo | null {
    return this.closed;
  }
  changes(kind: 'failover' | 'failback' | 'held-down'): (PathEvent & { atMs: number })[] {
    return this.events.filter((e) => e.change === kind);
  }
}

/** Sends numbered messages on one stream, respecting backpressure. */
export class Sender {
  next = 0;
  private waiting = false;
  constructor(
    readonly ch: Channel,
    readonly stream: StreamId,
    readonly bytes = 100,
  ) {
    ch.on('drain', (s) => {
      if (s === stream) this.waiting = false;
    });
  }
  /** Sends up to n messages now; returns how many went. */
  send(n: number): number {
    let sent = 0;
    while (sent < n && !this.waiting && this.ch.isOpen) {
      const b = Buffer.alloc(Math.max(4, this.bytes));
      b.writeUInt32BE(this.next++, 0);
      if (this.ch.send(this.stream, 1, [b]) === 'over-high-water') this.waiting = true;
      sent++;
    }
    return sent;
  }
}

export function assertExactlyOnceInOrder(got: readonly number[], sent: number, what: string): void {
  const dup = got.length - new Set(got).size;
  assert.equal(dup, 0, `${what}: ${dup} duplicates`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== i) assert.fail(`${what}: position ${i} holds ${got[i]} (order or loss)`);
  }
  assert.equal(got.length, sent, `${what}: ${sent - got.length} of ${sent} missing`);
}

export class World {
  readonly clock = new ManualClock();
  readonly net: MemoryNetwork;
  readonly faults: PathFaults;
  readonly memA: Transport;
  readonly memB: Transport;
  ta!: MultipathTransport;
  tb!: MultipathTransport;

  constructor(latencyMs = 1) {
    this.net = new MemoryNetwork(this.clock, { latencyMs });
    this.faults = new PathFaults(this.net);
    this.memA = this.faults.wrap(this.net.transport({ pingTimeoutMs: 60_000, pingIntMs: 60_000 }));
    this.memB = this.net.transport({ pingTimeoutMs: 60_000, pingIntMs: 60_000 });
  }

  /** Opens a session a→b over paths named `addresses` (preferred first). */
  async open(
    opts: MultipathOptions,
    addresses: readonly string[] = ['fast', 'eth'],
  ): Promise<{ a: MultipathSession; b: MultipathSession }> {
    const deps = (t: Transport) => ({ clock: this.clock, randomBytes, transports: { memory: t } });
    this.ta = multipathTransport(opts)(deps(this.memA));
    this.tb = multipathTransport(opts)(deps(this.memB));
    let b: Channel | null = null;
    for (const addr of addresses) await this.tb.listen(mem(addr), (ch) => (b = ch));
    const opening = this.ta.connectPaths(
      addresses.map((addr) => ({ peer: mem(addr) })),
      { signal: new AbortController().signal },
    );
    let a: MultipathSession | null = null;
    void opening.then((s) => (a = s));
    await this.until(() => a !== null && b !== null, 5_000);
    return { a: a as unknown as MultipathSession, b: b as unknown as MultipathSession };
  }

  /** Advances virtual time by `ms`, letting promise chains run between steps. */
  async run(ms: number, stepMs = 2): Promise<void> {
    for (let t = 0; t < ms; t += stepMs) {
      this.clock.advance(Math.min(stepMs, ms - t));
      await flush();
    }
  }

  /** Advances time until `cond` holds; fails after `limitMs` of virtual time. */
  async until(cond: () => boolean, limitMs: number, what = 'condition'): Promise<number> {
    const start = this.clock.nowMs();
    while (!cond()) {
      if (this.clock.nowMs() - start > limitMs) assert.fail(`${what} not reached in ${limitMs} ms`);
      this.clock.advance(1);
      await flush();
    }
    return this.clock.nowMs() - start;
  }

  async close(): Promise<void> {
    const closing = Promise.all([this.ta.close(), this.tb.close()]);
    await this.run(50);
    await closing;
  }
}
