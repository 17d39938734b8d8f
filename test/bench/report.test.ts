// The markdown report shows every measured cell, the ratio table, and for a system that could not
// run, its reason instead of numbers; the JSON carries what the table was derived from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildReport,
  fmt,
  renderMarkdown,
  syncRampGoal,
  type RunInfo,
} from '../../bench/report.js';
import type { Sample } from '../../bench/types.js';

const run: RunInfo = {
  quick: true,
  startedAt: '2026-11-21T13:00:00.000Z',
  finishedAt: '2026-11-21T13:02:00.000Z',
  rounds: 1,
  runtimeSec: 2,
  fileSizeBytes: 256 * 2 ** 20,
  syncSizeBytes: 2 ** 30,
  storageDir: '/var/tmp',
  host: { cpus: '2' },
};

const sample = (
  systemId: string,
  workload: Sample['workload'],
  mb: number,
  p50: number,
): Sample => ({
  round: 1,
  systemId,
  workload,
  ok: true,
  mbPerSec: mb,
  iops: mb * 256,
  latency: { p50Us: p50, p99Us: 2 * p50, p999Us: 3 * p50 },
  cpuSecondsPerGiB: 1.5,
  peakRssBytes: 10 * 2 ** 20,
});

test('fmt keeps a few significant digits and shows a dash for nothing', () => {
  assert.equal(fmt(1234.56), '1235');
  assert.equal(fmt(42.04), '42.0');
  assert.equal(fmt(0.456), '0.46');
  assert.equal(fmt(null), '-');
  assert.equal(fmt(Number.POSITIVE_INFINITY), '-');
});

test('report: table rows, ratios, unavailable systems with their reason, errors', () => {
  const r = buildReport(
    run,
    [
      {
        id: 'nbdkit',
        label: 'nbdkit file',
        kind: 'baseline',
        available: true,
        notes: ['nbdkit -f'],
      },
      { id: 'qsd-mirror', label: 'qsd', kind: 'baseline', available: true, notes: [] },
      { id: 'tandem-standalone', label: 'one node', kind: 'tandem', available: true, notes: [] },
      {
        id: 'tandem-C',
        label: 'two nodes C',
        kind: 'tandem',
        available: false,
        reason: 'needs tandemd',
        notes: [],
      },
    ],
    ['seqw', 'sync'],
    [
      sample('nbdkit', 'seqw', 2000, 300),
      sample('qsd-mirror', 'seqw', 400, 2000),
      sample('tandem-standalone', 'seqw', 1500, 450),
      {
        round: 1,
        systemId: 'nbdkit',
        workload: 'sync',
        ok: false,
        error: 'nbdcopy exited with code 1',
      },
      { round: 1, systemId: 'tandem-C', workload: 'seqw', ok: false, error: 'start failed: x' },
      { round: 2, systemId: 'tandem-C', workload: 'seqw', ok: false, error: 'start failed: x' },
    ],
  );
  const md = renderMarkdown(r);
  assert.match(md, /quick run/i);
  assert.match(
    md,
    /\| seq write 128 KiB QD8 \| nbdkit \| 2000 \| 512000 \| 300 \| 600 \| 900 \| - \| 1\.50 \| 10\.0 \| 1\/1 \|/,
  );
  assert.match(
    md,
    /\| seq write 128 KiB QD8 \| tandem-standalone \| 0\.75 \| 3\.75 \| 1\.50 \| 0\.23 \|/,
  );
  assert.match(md, /tandem-C\*\*: two nodes C — needs tandemd/);
  assert.match(md, /- nbdkit file \(sync r1\): nbdcopy exited with code 1/);
  assert.match(md, /standalone ≥ 0\.9× nbdkit \(seqw\) \| 0\.75 \| not met/);
  assert.match(
    md,
    /protocol C seq write ≥ 0\.5× nbdkit \| - \| not measured \(tandem-C: needs tandemd\)/,
  );
  assert.doesNotMatch(md, /\| tandem-C \| \d/);
  assert.match(md, /- nbdkit: nbdkit -f/);
  const json = JSON.parse(JSON.stringify(r)) as typeof r;
  assert.match(md, /- two nodes C \(seqw r1, seqw r2\): start failed: x/);
  assert.equal(json.samples.length, 6);
  assert.equal(json.ratios.length, 2);
});

test('with no Tandem numbers the report says so instead of an empty ratio table', () => {
  const r = buildReport(
    run,
    [{ id: 'nbdkit', label: 'nbdkit', kind: 'baseline', available: true, notes: [] }],
    ['rw1'],
    [sample('nbdkit', 'rw1', 40, 50)],
  );
  assert.match(renderMarkdown(r), /No Tandem system produced numbers/);
});

test('tandem-solo against tandem-standalone: a goal per workload, and the stage table', () => {
  const stages = (p50: number) => ({
    engine: { count: 100, p50Us: p50 / 10 },
    barrier: { count: 0, p50Us: 0 },
    disk: { count: 100, p50Us: p50 / 2 },
    peer: { count: 0, p50Us: 0 },
    total: { count: 100, p50Us: p50 },
  });
  const r = buildReport(
    run,
    [
      { id: 'nbdkit', label: 'nbdkit', kind: 'baseline', available: true, notes: [] },
      { id: 'tandem-standalone', label: 'one node', kind: 'tandem', available: true, notes: [] },
      { id: 'tandem-solo', label: 'one tandemd', kind: 'tandem', available: true, notes: [] },
    ],
    ['rw1', 'seqw'],
    [
      sample('nbdkit', 'rw1', 40, 50),
      sample('tandem-standalone', 'rw1', 36, 60),
      { ...sample('tandem-solo', 'rw1', 18, 120), writeStages: stages(120) },
      { ...sample('tandem-solo', 'rw1', 20, 110), round: 2, writeStages: stages(100) },
      sample('tandem-standalone', 'seqw', 1000, 400),
      { ...sample('tandem-solo', 'seqw', 950, 420), writeStages: stages(400) },
    ],
  );
  const md = renderMarkdown(r);
  assert.match(md, /tandem-solo ≥ 0\.9× tandem-standalone \(rw1\) \| 0\.53 \| not met/);
  assert.match(md, /tandem-solo ≥ 0\.9× tandem-standalone \(seqw\) \| 0\.95 \| met/);
  assert.match(md, /tandem-solo ≥ 0\.9× tandem-standalone \(mix\) \| - \| not measured/);
  assert.match(md, /## Where a write's time goes/);
  assert.match(md, /\| workload \| system \| engine \| barrier \| disk \| peer \| total \|/);
  // Medians over the two rounds (total 120 and 100); stages no write went through show a dash.
  assert.match(md, /\| 4 KiB randwrite QD1 \| tandem-solo \| 11\.0 \| - \| 55\.0 \| - \| 110 \|/);
  const section = md.slice(md.indexOf("## Where a write's time goes"), md.indexOf('## Ratios'));
  assert.doesNotMatch(section, /tandem-standalone/, 'the export has no engine stages');
});

test('the default-options sync goal: median ramp over rounds, a round that never got there counts as never', () => {
  const s = (round: number, rampSeconds: number | null): Sample => ({
    round,
    systemId: 'tandem-C-sync-defaults',
    workload: 'sync',
    ok: true,
    rampSeconds,
  });
  assert.equal(syncRampGoal([]), null);
  assert.equal(syncRampGoal([s(1, 1.5), s(2, 2.5), s(3, null)])?.status, 'met');
  const never = syncRampGoal([s(1, 4), s(2, null), s(3, null)]);
  assert.equal(never?.status, 'not met');
  assert.equal(never?.value, 'never');
  assert.equal(syncRampGoal([s(1, 6)])?.status, 'not met');
});
