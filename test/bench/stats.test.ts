// Medians, per-system aggregates, Tandem/baseline ratios and the goals are derived from
// samples alone; these pin the arithmetic, including rounds that failed and systems that are absent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregate, checkGoals, median, ratios, GOALS } from '../../bench/stats.js';
import type { Sample } from '../../bench/types.js';

test('median: odd, even, unsorted, with gaps, empty', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([10, undefined, null, Number.NaN, 30]), 20);
  assert.equal(median([]), null);
  assert.equal(median([undefined]), null);
});

const lat = (p50: number) => ({ p50Us: p50, p99Us: p50 * 4, p999Us: p50 * 10 });
function s(
  systemId: string,
  workload: Sample['workload'],
  round: number,
  mb: number,
  p50: number,
): Sample {
  return {
    round,
    systemId,
    workload,
    ok: true,
    mbPerSec: mb,
    iops: mb * 10,
    latency: lat(p50),
    cpuSecondsPerGiB: mb / 100,
    peakRssBytes: round * 1000,
    rssSamplesBytes: [round * 100, round * 200, round * 300],
  };
}

test('aggregate: medians over ok rounds, highest peak RSS, failed rounds listed', () => {
  const aggs = aggregate([
    s('nbdkit', 'seqw', 1, 1000, 10),
    s('nbdkit', 'seqw', 2, 3000, 30),
    s('nbdkit', 'seqw', 3, 2000, 20),
    { round: 4, systemId: 'nbdkit', workload: 'seqw', ok: false, error: 'fio died' },
    s('qsd-mirror', 'seqw', 1, 400, 100),
  ]);
  assert.equal(aggs.length, 2);
  const a = aggs[0];
  assert.ok(a !== undefined);
  assert.equal(a.systemId, 'nbdkit');
  assert.equal(a.runs, 4);
  assert.equal(a.runsOk, 3);
  assert.equal(a.mbPerSec, 2000);
  assert.equal(a.iops, 20000);
  assert.deepEqual(a.latency, lat(20));
  assert.equal(a.flushLatency, null);
  assert.equal(a.cpuSecondsPerGiB, 20);
  assert.equal(a.peakRssBytes, 3000);
  assert.equal(a.rssFirstBytes, 200);
  assert.equal(a.rssLastBytes, 600);
  assert.deepEqual(a.errors, ['round 4: fio died']);
});

test('a system whose every round failed has no numbers at all', () => {
  const [a] = aggregate([{ round: 1, systemId: 'x', workload: 'rw1', ok: false, error: 'boom' }]);
  assert.ok(a !== undefined);
  assert.equal(a.runsOk, 0);
  assert.equal(a.mbPerSec, null);
  assert.equal(a.latency, null);
  assert.equal(a.peakRssBytes, null);
});

test('ratios: Tandem over each baseline; missing baseline gives null, not a number', () => {
  const aggs = aggregate([
    s('nbdkit', 'rw1', 1, 40, 50),
    s('qsd-mirror', 'rw1', 1, 10, 200),
    s('tandem-C', 'rw1', 1, 20, 100),
    s('tandem-C', 'seqw', 1, 800, 1000),
    s('nbdkit', 'seqw', 1, 1600, 500),
  ]);
  const rs = ratios(aggs, ['rw1', 'seqw'], ['tandem-C', 'tandem-A'], ['nbdkit', 'qsd-mirror']);
  assert.deepEqual(rs, [
    { workload: 'rw1', systemId: 'tandem-C', baselineId: 'nbdkit', throughput: 0.5, p50Latency: 2 },
    {
      workload: 'rw1',
      systemId: 'tandem-C',
      baselineId: 'qsd-mirror',
      throughput: 2,
      p50Latency: 0.5,
    },
    {
      workload: 'seqw',
      systemId: 'tandem-C',
      baselineId: 'nbdkit',
      throughput: 0.5,
      p50Latency: 2,
    },
    {
      workload: 'seqw',
      systemId: 'tandem-C',
      baselineId: 'qsd-mirror',
      throughput: null,
      p50Latency: null,
    },
  ]);
});

test('goals: met, not met and not measured, with bounds in both directions', () => {
  const aggs = aggregate([
    s('nbdkit', 'rw1', 1, 40, 50),
    s('qsd-mirror', 'rw1', 1, 10, 200),
    s('tandem-C', 'rw1', 1, 20, 100), // p50 0.5x qsd: met (<= 0.75)
    s('nbdkit', 'rw32', 1, 100, 50),
    s('qsd-mirror', 'rw32', 1, 40, 200),
    s('tandem-C', 'rw32', 1, 60, 100), // 1.5x qsd: not met (>= 2)
  ]);
  const results = checkGoals(
    ratios(aggs, ['rw1', 'rw32', 'seqw'], ['tandem-C'], ['nbdkit', 'qsd-mirror']),
  );
  const by = (text: string) => results.find((r) => r.goal.text === text);
  assert.equal(by('protocol C 4 KiB QD1 p50 ≤ 0.75× qsd-mirror')?.status, 'met');
  assert.equal(by('protocol C 4 KiB QD1 p50 ≤ 0.75× qsd-mirror')?.value, 0.5);
  assert.equal(by('protocol C 4 KiB QD32 IOPS ≥ 2× qsd-mirror')?.status, 'not met');
  assert.equal(by('protocol C seq write ≥ 0.5× nbdkit')?.status, 'not measured');
  assert.equal(results.length, GOALS.length);
  assert.ok(
    results
      .filter((r) => r.goal.systemId === 'tandem-standalone')
      .every((r) => r.status === 'not measured'),
  );
});
