// The workloads (issue 10's table plus flush-each and 70/30 mixed), the fio command line that
// runs each one identically against every system, and a parser for fio's JSON output that
// validates every field it uses and returns an error instead of throwing on bad output.
import type { FioDirection, FioResult, Latency, Workload, WorkloadId } from './types.js';
import { err, ok, type Result } from '../src/util/result.js';

export const WORKLOADS: readonly Workload[] = [
  {
    id: 'seqw',
    title: 'seq write 128 KiB QD8',
    fioOptions: ['--rw=write', '--bs=128k', '--iodepth=8'],
    latencyOf: 'write',
  },
  {
    id: 'rw1',
    title: '4 KiB randwrite QD1',
    fioOptions: ['--rw=randwrite', '--bs=4k', '--iodepth=1'],
    latencyOf: 'write',
  },
  {
    id: 'rw1f',
    title: '4 KiB randwrite QD1 + flush each',
    fioOptions: ['--rw=randwrite', '--bs=4k', '--iodepth=1', '--fsync=1'],
    latencyOf: 'write',
  },
  {
    id: 'rw32',
    title: '4 KiB randwrite QD32',
    fioOptions: ['--rw=randwrite', '--bs=4k', '--iodepth=32'],
    latencyOf: 'write',
  },
  {
    id: 'mix',
    title: '64 KiB randrw 70/30 QD16 (lat: writes)',
    fioOptions: ['--rw=randrw', '--rwmixread=70', '--bs=64k', '--iodepth=16'],
    latencyOf: 'write',
  },
  {
    id: 'seqr',
    title: 'seq read 128 KiB QD8',
    fioOptions: ['--rw=read', '--bs=128k', '--iodepth=8'],
    latencyOf: 'read',
  },
];

export const SYNC_TITLE = 'initial full sync';

export function workloadById(id: string): Workload | undefined {
  return WORKLOADS.find((w) => w.id === id);
}

export function isWorkloadId(id: string): id is WorkloadId {
  return workloadById(id) !== undefined;
}

export interface FioRunOptions {
  readonly uri: string;
  readonly sizeBytes: number;
  readonly runtimeSec: number;
  /** fio writes its JSON here (stdout also carries "fio: connected to NBD server"). */
  readonly outputPath: string;
}

/**
 * The full fio argument list: the same common options for every system and workload. No
 * ramp_time: CPU is read from /proc over fio's whole run, so the bytes must cover it too.
 */
export function fioArgs(w: Workload, o: FioRunOptions): string[] {
  return [
    `--name=${w.id}`,
    '--ioengine=nbd',
    `--uri=${o.uri}`,
    `--size=${o.sizeBytes}`,
    ...w.fioOptions,
    '--time_based',
    `--runtime=${o.runtimeSec}`,
    '--randrepeat=0',
    '--norandommap',
    '--output-format=json',
    `--output=${o.outputPath}`,
  ];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function num(o: Json, key: string, where: string): Result<number, string> {
  const v = o[key];
  return typeof v === 'number' && Number.isFinite(v)
    ? ok(v)
    : err(`fio JSON: ${where}.${key} is not a number`);
}

/** fio reports percentiles as { "50.000000": ns, ... }; null when the direction had no I/O. */
function percentiles(stats: unknown, where: string): Result<Latency | null, string> {
  if (!isObject(stats)) return err(`fio JSON: ${where} is missing`);
  const n = stats['N'];
  if (n === 0 || n === undefined) return ok(null);
  const p = stats['percentile'];
  if (!isObject(p)) return err(`fio JSON: ${where}.percentile is missing`);
  const us = (key: string): number | null => {
    const v = p[key];
    return typeof v === 'number' && Number.isFinite(v) ? v / 1000 : null;
  };
  const p50 = us('50.000000');
  const p99 = us('99.000000');
  const p999 = us('99.900000');
  if (p50 === null || p99 === null || p999 === null)
    return err(`fio JSON: ${where}.percentile lacks 50/99/99.9`);
  return ok({ p50Us: p50, p99Us: p99, p999Us: p999 });
}

function direction(job: Json, key: 'read' | 'write'): Result<FioDirection, string> {
  const d = job[key];
  if (!isObject(d)) return err(`fio JSON: job.${key} is missing`);
  const fields: Record<string, number> = {};
  for (const f of ['io_bytes', 'bw_bytes', 'iops', 'total_ios']) {
    const r = num(d, f, key);
    if (!r.ok) return r;
    fields[f] = r.value;
  }
  const clat = percentiles(d['clat_ns'], `${key}.clat_ns`);
  if (!clat.ok) return clat;
  return ok({
    ioBytes: fields['io_bytes'] ?? 0,
    bwBytesPerSec: fields['bw_bytes'] ?? 0,
    iops: fields['iops'] ?? 0,
    totalIos: fields['total_ios'] ?? 0,
    clat: clat.value,
  });
}

/** Parses the JSON fio wrote for a single-job run. Text before the JSON object is ignored. */
export function parseFioJson(text: string): Result<FioResult, string> {
  const start = text.indexOf('{');
  if (start < 0) return err('fio output holds no JSON object');
  let doc: unknown;
  try {
    doc = JSON.parse(text.slice(start));
  } catch (e) {
    return err(`fio output is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(doc) || !Array.isArray(doc['jobs'])) return err('fio JSON: no jobs array');
  const jobs = doc['jobs'] as unknown[];
  if (jobs.length !== 1) return err(`fio JSON: expected 1 job, found ${jobs.length}`);
  const job = jobs[0];
  if (!isObject(job)) return err('fio JSON: job is not an object');
  const error = job['error'];
  if (typeof error === 'number' && error !== 0) return err(`fio job failed with error ${error}`);
  const read = direction(job, 'read');
  if (!read.ok) return read;
  const write = direction(job, 'write');
  if (!write.ok) return write;
  let flush: Latency | null = null;
  const sync = job['sync'];
  if (isObject(sync) && typeof sync['total_ios'] === 'number' && sync['total_ios'] > 0) {
    const f = percentiles(sync['lat_ns'], 'sync.lat_ns');
    if (!f.ok) return f;
    flush = f.value;
  }
  const runtime = num(job, 'job_runtime', 'job');
  if (!runtime.ok) return runtime;
  const usr = num(job, 'usr_cpu', 'job');
  if (!usr.ok) return usr;
  const sys = num(job, 'sys_cpu', 'job');
  if (!sys.ok) return sys;
  if (read.value.totalIos + write.value.totalIos === 0) return err('fio job did no I/O');
  return ok({
    jobName: typeof job['jobname'] === 'string' ? job['jobname'] : '',
    read: read.value,
    write: write.value,
    flush,
    runtimeMs: runtime.value,
    fioCpuPercent: usr.value + sys.value,
  });
}
