// Model test: random interleavings of sends (both sides, both streams), path cuts, resets,
// restores, receive pauses and time steps over a two-path session (single-path and
// load-balanced). Whatever happens, once a path is back every message arrives exactly once, in
// order, and the session never closes. fast-check shrinks a failure to a minimal schedule.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { StreamId } from '../../src/transport/types.js';
import { Probe, Sender, World, assertExactlyOnceInOrder } from './world.js';

type Side = 'a' | 'b';
type Op =
  | { kind: 'send'; side: Side; stream: StreamId; n: number; bytes: number }
  | { kind: 'cut' | 'reset' | 'restore'; path: 'fast' | 'eth' }
  | { kind: 'pause' | 'resume'; side: Side }
  | { kind: 'advance'; ms: number };

const side = fc.constantFrom<Side>('a', 'b');
const path = fc.constantFrom<'fast' | 'eth'>('fast', 'eth');
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('send' as const),
    side,
    stream: fc.constantFrom<StreamId>('data', 'control'),
    n: fc.integer({ min: 1, max: 40 }),
    bytes: fc.constantFrom(4, 100, 3000, 70_000),
  }),
  fc.record({ kind: fc.constantFrom('cut' as const, 'reset' as const, 'restore' as const), path }),
  fc.record({ kind: fc.constantFrom('pause' as const, 'resume' as const), side }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 400 }) }),
  // Short steps: messages delivered but not yet acknowledged when a path fails come back as
  // duplicates, which the receiver must drop.
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 3 }) }),
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 3 }) }),
);

/** Runs a schedule, checks delivery; returns the duplicates the receivers dropped. */
async function runModel(ops: readonly Op[], loadBalancePaths: boolean): Promise<number> {
  const w = new World();
  const { a, b } = await w.open({
    pingTimeoutMs: 100,
    timeoutMs: 1_000_000,
    redialMs: 20,
    flapsPerMinuteMax: 1_000,
    loadBalancePaths,
    highWaterBytes: 256 * 1024,
  });
  const probes = { a: new Probe(a, w.clock), b: new Probe(b, w.clock) };
  const senders = {
    a: { data: new Sender(a, 'data'), control: new Sender(a, 'control') },
    b: { data: new Sender(b, 'data'), control: new Sender(b, 'control') },
  };
  const ch = { a, b };
  for (const o of ops) {
    switch (o.kind) {
      case 'send': {
        const s = senders[o.side][o.stream];
        (s as { bytes: number }).bytes = o.bytes;
        s.send(o.n);
        break;
      }
      case 'cut':
        w.faults.cut(o.path);
        break;
      case 'reset':
        w.faults.reset(o.path);
        break;
      case 'restore':
        w.faults.restore(o.path);
        break;
      case 'pause':
        ch[o.side].pauseData();
        break;
      case 'resume':
        ch[o.side].resumeData();
        break;
      case 'advance':
        await w.run(o.ms, o.ms < 5 ? 1 : 5);
        break;
    }
  }
  w.faults.restore('fast');
  w.faults.restore('eth');
  a.resumeData();
  b.resumeData();
  const total = (x: Side, s: StreamId): number => senders[x][s].next;
  await w.until(
    () =>
      probes.b.got.data.length >= total('a', 'data') &&
      probes.b.got.control.length >= total('a', 'control') &&
      probes.a.got.data.length >= total('b', 'data') &&
      probes.a.got.control.length >= total('b', 'control'),
    20_000,
    'every message delivered',
  );
  await w.run(50);
  assert.equal(probes.a.closedInfo(), null, 'a never closed');
  assert.equal(probes.b.closedInfo(), null, 'b never closed');
  assertExactlyOnceInOrder(probes.b.got.data, total('a', 'data'), 'a→b data');
  assertExactlyOnceInOrder(probes.b.got.control, total('a', 'control'), 'a→b control');
  assertExactlyOnceInOrder(probes.a.got.data, total('b', 'data'), 'b→a data');
  assertExactlyOnceInOrder(probes.a.got.control, total('b', 'control'), 'b→a control');
  const dups = a.sessionCounters().duplicatesDropped + b.sessionCounters().duplicatesDropped;
  await w.close();
  return dups;
}

for (const lb of [false, true]) {
  test(`model: sends, path failures and resumes interleave; exactly once, in order (load-balance ${lb})`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 15, maxLength: 60 }), async (ops) => {
        await runModel(ops, lb);
      }),
      { numRuns: 40 },
    );
  });
}

test('model: a message delivered but not acknowledged when its path is cut is replayed and dropped as a duplicate', async () => {
  // Found by the property above with dedup disabled: the receiver must drop the replayed copy.
  const dups = await runModel(
    [
      { kind: 'advance', ms: 2 },
      { kind: 'send', side: 'a', stream: 'data', n: 1, bytes: 4 },
      { kind: 'advance', ms: 1 },
      { kind: 'cut', path: 'fast' },
      { kind: 'send', side: 'a', stream: 'data', n: 1, bytes: 4 },
    ],
    false,
  );
  assert.equal(dups, 1);
});
