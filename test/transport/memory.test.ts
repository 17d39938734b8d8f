// The compliance suite against the in-memory transport (real clock), plus its virtual-clock use.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryNetwork } from '../../src/transport/memory/index.js';
import type { Channel, Endpoint } from '../../src/transport/types.js';
import { koCountSuite, transportSuite, type PairFactory } from '../compliance/transport.suite.js';
import { ManualClock, realClock } from '../support/clocks.js';

const ep = (address: string): Endpoint => ({
  transport: 'memory',
  family: 'memory',
  address,
  port: 0,
});

const makeMemoryPair: PairFactory = async (opts) => {
  const net = new MemoryNetwork(realClock);
  const ta = net.transport(opts);
  const tb = net.transport(opts);
  let accepted: Channel | null = null;
  const listener = await tb.listen(ep('b'), (ch) => (accepted = ch));
  const a = await ta.connect({ peer: ep('b') }, { signal: new AbortController().signal });
  assert.ok(accepted);
  const b: Channel = accepted;
  return {
    a,
    b,
    blackhole: () => net.blackhole(a),
    cleanup: async () => {
      await listener.close();
      await ta.close();
      await tb.close();
    },
  };
};
transportSuite('memory', makeMemoryPair);
koCountSuite('memory', makeMemoryPair);

test('memory transport runs on a virtual clock: delivery, RTT and ping timeout in virtual time', async () => {
  const clock = new ManualClock();
  const net = new MemoryNetwork(clock, { latencyMs: 3 });
  const opts = { pingIntMs: 1000, pingTimeoutMs: 500 };
  const ta = net.transport(opts);
  const tb = net.transport(opts);
  let b: Channel | null = null;
  await tb.listen(ep('b'), (ch) => (b = ch));
  const connecting = ta.connect({ peer: ep('b') }, { signal: new AbortController().signal });
  clock.advance(3);
  const a = await connecting;
  assert.ok(b);
  const got: string[] = [];
  (b as Channel).setReceiver((m) => got.push(m.payload.toString()));
  a.send('data', 1, [Buffer.from('x')]);
  clock.advance(2);
  assert.deepEqual(got, []);
  clock.advance(1);
  assert.deepEqual(got, ['x']);
  clock.advance(1000 + 6);
  assert.equal(a.stats().rttMs, 6);
  let reason = '';
  a.on('closed', (i) => (reason = i.reason));
  net.blackhole(a);
  // The last ack came at 1009: next ping at 2009, declared dead at 2009 + 500; now is 1012.
  clock.advance(2508 - 1012);
  assert.equal(reason, '');
  clock.advance(1);
  assert.equal(reason, 'timeout');
  await ta.close();
  await tb.close();
});

test('memory connect to an address nobody listens on is refused; abort is honoured', async () => {
  const net = new MemoryNetwork(realClock);
  const t = net.transport();
  await assert.rejects(
    t.connect({ peer: ep('nobody') }, { signal: new AbortController().signal }),
    {
      code: 'TANDEM_ERR_CONNECTION',
    },
  );
  const ac = new AbortController();
  ac.abort(new Error('stop'));
  await assert.rejects(t.connect({ peer: ep('nobody') }, { signal: ac.signal }), /stop/);
});
