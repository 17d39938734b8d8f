// Canaries: each planted bug must be caught by the simulator's checkers within 200 seeds,
// which proves the checkers can see the failures they exist for. Also: a seed's trace is
// identical on every replay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSeed, type SimBug } from './cluster.js';

const SEEDS_MAX = 200;

function firstCatch(bug: SimBug): { seed: number; violation: string } | null {
  for (let seed = 1; seed <= SEEDS_MAX; seed++) {
    const r = runSeed({ seed, plantedBug: bug });
    if (!r.ok) return { seed, violation: r.violation ?? '' };
  }
  return null;
}

const cases: [SimBug, RegExp][] = [
  ['no-bit-while-disconnected', /convergence|lost write|unmarked difference/],
  ['resync-overwrites-newer', /convergence|lost write|unmarked difference/],
  ['early-ack', /lost write|convergence/],
  // The node driver sends DATA before the AL transaction covering it is durable (the bug the
  // e2e crash test once found): a crash inside the transaction leaves an unmarked difference.
  ['data-before-al', /unmarked difference|convergence/],
  // The Secondary acknowledges an epoch before its flush (group commit without the flush): a
  // completed FLUSH is not durable on the peer.
  ['barrier-ack-before-flush', /completed flush .*lost write/],
  // No metadata barrier flushes the data disk first: bits cleared and extents dropped from
  // the AL reach the disk before the writes they vouch for.
  ['meta-skips-flush', /unmarked difference|convergence|lost write/],
  // The Primary issues a write overlapping one still in flight: its disk and the peer's may
  // apply the two in different orders (the replicas diverge, or an acked write is undone).
  ['overlap-unordered', /unmarked difference|convergence|lost write/],
  // on-io-error pass_on without marking a block whose local write failed: the old block is
  // what this disk keeps (a completed FLUSH or FUA vouches for it; a read returns it).
  ['pass-on-unmarked', /lost write/],
];

for (const [bug, kind] of cases) {
  test(`canary ${bug} is caught within ${SEEDS_MAX} seeds`, () => {
    const c = firstCatch(bug);
    assert.ok(c !== null, `${bug} was never caught`);
    assert.match(c.violation, kind);
  });
}

test('replaying a seed gives the identical trace', () => {
  const a = runSeed({ seed: 4242, trace: true });
  const b = runSeed({ seed: 4242, trace: true });
  assert.ok(a.trace.length > 100);
  assert.deepEqual(a.trace, b.trace);
  assert.equal(a.ok, b.ok);
});
