// The fio JSON parser turns real fio 3.33 output (captured from nbdkit runs) into the numbers the
// report shows, and rejects output it cannot trust with a reason instead of a made-up number.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { WORKLOADS, fioArgs, parseFioJson } from '../../bench/fio.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../../test/fixtures/bench/${name}.json`, import.meta.url), 'utf8');

function parsed(text: string) {
  const r = parseFioJson(text);
  if (!r.ok) assert.fail(r.error);
  return r.value;
}

test('random write with a flush after each: write side, flush latency, fio CPU', () => {
  const f = parsed(fixture('rw1f'));
  assert.equal(f.jobName, 'rw1f');
  assert.equal(f.write.ioBytes, 9019392);
  assert.equal(f.write.bwBytesPerSec, 9010381);
  assert.equal(f.write.iops, 2199.8002);
  assert.equal(f.read.ioBytes, 0);
  assert.equal(f.read.clat, null);
  assert.deepEqual(f.write.clat, { p50Us: 29.056, p99Us: 96.768, p999Us: 1449.984 });
  assert.ok(f.flush !== null);
  assert.equal(f.flush.p50Us, 264.192);
  assert.equal(f.runtimeMs, 1000);
  assert.ok(Math.abs(f.fioCpuPercent - 6.3) < 1e-9);
});

test('mixed read/write: both directions carry bytes and latencies, no flushes', () => {
  const f = parsed(fixture('mix'));
  assert.equal(f.read.ioBytes, 622198784);
  assert.equal(f.write.ioBytes, 261160960);
  assert.ok(f.read.clat !== null && f.write.clat !== null);
  assert.equal(f.write.clat.p50Us, 880.64);
  assert.equal(f.flush, null);
});

test('sequential read: only the read side has latency', () => {
  const f = parsed(fixture('seqr'));
  assert.equal(f.write.clat, null);
  assert.equal(f.read.clat?.p999Us, 18219.008);
  assert.equal(f.read.iops, 8393.213573);
});

test('text before the JSON (fio: connected to NBD server) is skipped', () => {
  const f = parsed(`fio: connected to NBD server\n${fixture('seqr')}`);
  assert.equal(f.read.ioBytes, 1102315520);
});

test('bad output is an error with a reason, never a number', () => {
  const cases: [string, RegExp][] = [
    ['', /no JSON object/],
    ['{"jobs": [', /not valid JSON/],
    ['{"x": 1}', /no jobs array/],
    ['{"jobs": []}', /expected 1 job/],
  ];
  const good = JSON.parse(fixture('rw1f')) as { jobs: Record<string, unknown>[] };
  const job = good.jobs[0] as Record<string, unknown>;
  const withJob = (patch: Record<string, unknown>): string =>
    JSON.stringify({ ...good, jobs: [{ ...job, ...patch }] });
  cases.push([withJob({ error: 5 }), /error 5/]);
  cases.push([withJob({ write: { ...(job['write'] as object), iops: 'many' } }), /write\.iops/]);
  cases.push([withJob({ read: undefined }), /job\.read is missing/]);
  cases.push([withJob({ job_runtime: null }), /job_runtime/]);
  const noPct = { ...(job['write'] as Record<string, unknown>) };
  noPct['clat_ns'] = { N: 5 };
  cases.push([withJob({ write: noPct }), /percentile is missing/]);
  const idle = (d: unknown) => ({ ...(d as object), total_ios: 0, clat_ns: { N: 0 } });
  cases.push([
    withJob({ write: idle(job['write']), read: idle(job['read']), sync: {} }),
    /no I\/O/,
  ]);
  for (const [text, why] of cases) {
    const r = parseFioJson(text);
    assert.equal(r.ok, false, `accepted: ${text.slice(0, 80)}`);
    if (!r.ok) assert.match(r.error, why);
  }
});

test('every workload gets the same common options; only its own options differ', () => {
  const o = {
    uri: 'nbd://127.0.0.1:4242/',
    sizeBytes: 1 << 30,
    runtimeSec: 8,
    outputPath: '/x.json',
  };
  const common = [
    '--ioengine=nbd',
    '--uri=nbd://127.0.0.1:4242/',
    `--size=${1 << 30}`,
    '--time_based',
    '--runtime=8',
    '--randrepeat=0',
    '--norandommap',
    '--output-format=json',
    '--output=/x.json',
  ];
  for (const w of WORKLOADS) {
    const args = fioArgs(w, o);
    for (const c of common) assert.ok(args.includes(c), `${w.id} lacks ${c}`);
    assert.deepEqual(
      args.filter((a) => !common.includes(a)),
      [`--name=${w.id}`, ...w.fioOptions],
    );
  }
  const byId = Object.fromEntries(WORKLOADS.map((w) => [w.id, w.fioOptions.join(' ')]));
  assert.deepEqual(byId, {
    seqw: '--rw=write --bs=128k --iodepth=8',
    rw1: '--rw=randwrite --bs=4k --iodepth=1',
    rw1f: '--rw=randwrite --bs=4k --iodepth=1 --fsync=1',
    rw32: '--rw=randwrite --bs=4k --iodepth=32',
    mix: '--rw=randrw --rwmixread=70 --bs=64k --iodepth=16',
    seqr: '--rw=read --bs=128k --iodepth=8',
  });
});
