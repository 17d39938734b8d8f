// Simulator command line: `npm run sim -- --seeds N [--seed-start S] [--bug NAME]` runs seeds
// S..S+N-1 and stops at the first violation (exit 1); `--seed S --trace` replays one seed and
// prints its full event trace (identical on every replay). `--no-overlap`: no overlapping writes.
// `--on-io-error detach|pass_on`: both nodes use it (default: drawn from the seed).
import { runSeed, type SimStats } from './cluster.js';
import type { SimBug } from './cluster.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function num(name: string, dflt: number): number {
  const v = arg(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`sim: ${name} needs a non-negative integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

const bug = arg('--bug') as SimBug | undefined;
const trace = process.argv.includes('--trace');
// Seeds recorded before overlapping writes existed replay with --no-overlap.
const noOverlap = process.argv.includes('--no-overlap') ? { overlap: false } : {};
const ioErr = arg('--on-io-error');
if (ioErr !== undefined && ioErr !== 'detach' && ioErr !== 'pass_on') {
  console.error(`sim: --on-io-error needs detach or pass_on, got ${JSON.stringify(ioErr)}`);
  process.exit(2);
}
const onIoError: { onIoError?: 'detach' | 'pass_on' } =
  ioErr === 'detach' || ioErr === 'pass_on' ? { onIoError: ioErr } : {};
const one = arg('--seed');
const totals: SimStats = {
  simulatedMs: 0,
  writesAcked: 0,
  writesOverlapping: 0,
  readsChecked: 0,
  sectorsChecked: 0,
  faults: {},
  resyncs: 0,
  resyncBlocks: 0,
  events: 0,
};

function add(s: SimStats): void {
  totals.simulatedMs += s.simulatedMs;
  totals.writesAcked += s.writesAcked;
  totals.writesOverlapping += s.writesOverlapping;
  totals.readsChecked += s.readsChecked;
  totals.sectorsChecked += s.sectorsChecked;
  totals.resyncs += s.resyncs;
  totals.resyncBlocks += s.resyncBlocks;
  totals.events += s.events;
  for (const [k, v] of Object.entries(s.faults)) totals.faults[k] = (totals.faults[k] ?? 0) + v;
}

const started = Date.now();
if (one !== undefined) {
  const seed = num('--seed', 0);
  const r = runSeed({
    seed,
    trace,
    ...noOverlap,
    ...onIoError,
    ...(bug !== undefined ? { plantedBug: bug } : {}),
  });
  if (trace) for (const l of r.trace) console.log(l);
  console.log(`seed ${seed}: ${r.ok ? 'ok' : `VIOLATION ${r.violation}`}`);
  console.log(`params: ${r.params}`);
  console.log(`stats: ${JSON.stringify(r.stats)}`);
  process.exit(r.ok ? 0 : 1);
}
const count = num('--seeds', 100);
const from = num('--seed-start', 1);
for (let seed = from; seed < from + count; seed++) {
  const r = runSeed({
    seed,
    ...noOverlap,
    ...onIoError,
    ...(bug !== undefined ? { plantedBug: bug } : {}),
  });
  add(r.stats);
  if (!r.ok) {
    console.log(`seed ${seed}: VIOLATION ${r.violation}`);
    console.log(`params: ${r.params}`);
    console.log(
      `replay: npm run sim -- --seed ${seed} --trace${bug !== undefined ? ` --bug ${bug}` : ''}${ioErr !== undefined ? ` --on-io-error ${ioErr}` : ''}`,
    );
    process.exit(1);
  }
  if ((seed - from + 1) % 1000 === 0)
    console.log(`${seed - from + 1} seeds ok (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}
console.log(`${count} seeds ok (seeds ${from}..${from + count - 1})`);
console.log(`simulated hours: ${(totals.simulatedMs / 3_600_000).toFixed(2)}`);
console.log(`faults: ${JSON.stringify(totals.faults)}`);
console.log(
  `writes acknowledged and checked: ${totals.writesAcked} (issued overlapping a write in flight: ${totals.writesOverlapping}); reads checked: ${totals.readsChecked}; sectors checked: ${totals.sectorsChecked}`,
);
console.log(
  `resyncs: ${totals.resyncs}; resync blocks moved: ${totals.resyncBlocks}; engine steps: ${totals.events}`,
);
console.log(`wall time: ${((Date.now() - started) / 1000).toFixed(1)} s`);
