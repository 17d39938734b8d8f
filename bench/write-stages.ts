// bench:write-stages — what the always-on write-stage breakdown costs per write: the seven
// marks a replicated write makes (received, sent, issued, barrier done, disk done, peer ack,
// complete) on the real clock, with up to 128 writes in flight, against the same loop that only
// reads the clock as often, and with a counter for a clock (the bookkeeping alone). A few
// seconds; nothing here asserts speed.
// `node dist/bench/write-stages.js [writes]`
import { systemClock } from '../src/platform/clock.js';
import { WriteStages } from '../src/replication/write-stages.js';

const writes = Number(process.argv[2] ?? 2_000_000);
const depth = 128;
const nowUs = (): number => systemClock.nowMs() * 1000;

function withStages(n: number, clock: () => number = nowUs): number {
  const w = new WriteStages(clock);
  const t0 = performance.now();
  for (let id = 0; id < n + depth; id++) {
    if (id < n) {
      w.received(id);
      w.sent(id, id);
      w.issued(id, id);
      if ((id & 63) === 0) w.barrierDone(id);
    }
    const old = id - depth;
    if (old >= 0) {
      w.diskDone(old);
      w.peerAck(old);
      w.complete(old, true);
    }
  }
  const dt = performance.now() - t0;
  if (w.status().stages.total.count !== n) throw new Error('lost writes');
  return dt;
}

/** The same clock reads and loop, no bookkeeping: what the marks cost beyond reading time. */
function clockOnly(n: number): number {
  let sink = 0;
  const t0 = performance.now();
  for (let id = 0; id < n + depth; id++) {
    if (id < n) sink += nowUs() + nowUs();
    if (id - depth >= 0) sink += nowUs() + nowUs() + nowUs();
  }
  const dt = performance.now() - t0;
  if (sink === 0) throw new Error('unreachable');
  return dt;
}

withStages(writes / 10);
clockOnly(writes / 10);
const best = (f: (n: number) => number): number => Math.min(f(writes), f(writes), f(writes));
const marks = best(withStages);
const clock = best(clockOnly);
// A counter for a clock: the bookkeeping alone (samples spread over the buckets as it counts).
let tick = 0;
const counter = (): number => (tick += 7);
const book = best((n) => withStages(n, counter));
const ns = (ms: number): string => ((ms * 1e6) / writes).toFixed(0);
console.log(
  `write stages: ${ns(marks)} ns per write with its marks (clock reads alone ${ns(clock)} ns, ` +
    `bookkeeping alone ${ns(book)} ns), over ${writes} writes, ${depth} in flight`,
);
