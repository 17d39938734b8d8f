// From per-round samples to what the report shows: medians per workload and system, the ratios
// of every Tandem system to each baseline, and the goals checked against them. Pure
// functions over plain data, so the numbers in a report can be re-derived from its JSON.
import type { Latency, Sample, SampleWorkloadId } from './types.js';
import { WRITE_STAGES, type WriteStage } from '../src/replication/write-stages.js';

/** Median of the finite values; null when there are none. Even counts average the middle two. */
export function median(values: readonly (number | undefined | null)[]): number | null {
  const xs = values
    .filter((v): v is number => typeof v === 'number' && Number.isFinite(v))
    .sort((a, b) => a - b);
  if (xs.length === 0) return null;
  const mid = xs.length >> 1;
  return xs.length % 2 === 1
    ? (xs[mid] as number)
    : ((xs[mid - 1] as number) + (xs[mid] as number)) / 2;
}

function maxOf(values: readonly (number | undefined)[]): number | null {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return xs.length === 0 ? null : Math.max(...xs);
}

/** Medians over the rounds of one workload on one system. */
export interface Aggregate {
  readonly workload: SampleWorkloadId;
  readonly systemId: string;
  /** Rounds that produced numbers / rounds attempted. */
  readonly runsOk: number;
  readonly runs: number;
  readonly mbPerSec: number | null;
  readonly iops: number | null;
  readonly latency: Latency | null;
  readonly flushLatency: Latency | null;
  readonly cpuSecondsPerGiB: number | null;
  /** The highest peak over the rounds (a peak, not a median). */
  readonly peakRssBytes: number | null;
  /** Medians of the first and the last RSS sample of each run: growth under load. */
  readonly rssFirstBytes: number | null;
  readonly rssLastBytes: number | null;
  /**
   * Tandem daemons: median over rounds of each stage's p50 (us) for the writes of the run,
   * null for a stage no write went through; null for other systems.
   */
  readonly writeStagesP50: Readonly<Record<WriteStage, number | null>> | null;
  readonly errors: readonly string[];
}

function medianStages(ss: readonly Sample[]): Record<WriteStage, number | null> | null {
  const withStages = ss.filter((s) => s.writeStages !== undefined);
  if (withStages.length === 0) return null;
  const out = {} as Record<WriteStage, number | null>;
  for (const k of WRITE_STAGES) {
    out[k] = median(
      withStages.map((s) => {
        const st = s.writeStages?.[k];
        return st !== undefined && st.count > 0 ? st.p50Us : null;
      }),
    );
  }
  return out;
}

function medianLatency(ls: readonly (Latency | undefined)[]): Latency | null {
  const p50 = median(ls.map((l) => l?.p50Us));
  const p99 = median(ls.map((l) => l?.p99Us));
  const p999 = median(ls.map((l) => l?.p999Us));
  return p50 === null || p99 === null || p999 === null
    ? null
    : { p50Us: p50, p99Us: p99, p999Us: p999 };
}

/** Groups samples by (workload, system) in first-seen order and takes medians. */
export function aggregate(samples: readonly Sample[]): Aggregate[] {
  const groups = new Map<string, Sample[]>();
  for (const s of samples) {
    const key = `${s.workload}\u0000${s.systemId}`;
    const g = groups.get(key);
    if (g === undefined) groups.set(key, [s]);
    else g.push(s);
  }
  const out: Aggregate[] = [];
  for (const g of groups.values()) {
    const first = g[0] as Sample;
    const good = g.filter((s) => s.ok);
    out.push({
      workload: first.workload,
      systemId: first.systemId,
      runsOk: good.length,
      runs: g.length,
      mbPerSec: median(good.map((s) => s.mbPerSec)),
      iops: median(good.map((s) => s.iops)),
      latency: medianLatency(good.map((s) => s.latency)),
      flushLatency: medianLatency(good.map((s) => s.flushLatency)),
      cpuSecondsPerGiB: median(good.map((s) => s.cpuSecondsPerGiB)),
      peakRssBytes: maxOf(good.map((s) => s.peakRssBytes)),
      rssFirstBytes: median(good.map((s) => s.rssSamplesBytes?.[0])),
      rssLastBytes: median(good.map((s) => s.rssSamplesBytes?.at(-1))),
      writeStagesP50: medianStages(good),
      errors: g.filter((s) => !s.ok).map((s) => `round ${s.round}: ${s.error ?? 'failed'}`),
    });
  }
  return out;
}

export function findAggregate(
  aggs: readonly Aggregate[],
  workload: SampleWorkloadId,
  systemId: string,
): Aggregate | undefined {
  return aggs.find((a) => a.workload === workload && a.systemId === systemId);
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined || b === 0) return null;
  return a / b;
}

/** One Tandem system against one baseline on one workload. */
export interface Ratio {
  readonly workload: SampleWorkloadId;
  readonly systemId: string;
  readonly baselineId: string;
  /** Tandem MB/s over the baseline's (equal to the IOPS ratio at a fixed block size). */
  readonly throughput: number | null;
  /** Tandem p50 completion latency over the baseline's; lower is better. */
  readonly p50Latency: number | null;
}

/** Ratios of every Tandem system to every baseline, per workload, in the given orders. */
export function ratios(
  aggs: readonly Aggregate[],
  workloads: readonly SampleWorkloadId[],
  tandemIds: readonly string[],
  baselineIds: readonly string[],
): Ratio[] {
  const out: Ratio[] = [];
  for (const w of workloads) {
    for (const t of tandemIds) {
      const ta = findAggregate(aggs, w, t);
      if (ta === undefined || ta.runsOk === 0) continue;
      for (const b of baselineIds) {
        const ba = findAggregate(aggs, w, b);
        out.push({
          workload: w,
          systemId: t,
          baselineId: b,
          throughput: ratio(ta.mbPerSec, ba?.mbPerSec),
          p50Latency: ratio(ta.latency?.p50Us, ba?.latency?.p50Us),
        });
      }
    }
  }
  return out;
}

/**
 * Tandem systems compared with another Tandem system, beside the baselines: the single-host
 * daemon against the standalone export measures the engine's own cost.
 */
export const TANDEM_PAIRS: readonly { systemId: string; baselineId: string }[] = [
  { systemId: 'tandem-solo', baselineId: 'tandem-standalone' },
];

/** The ratios of TANDEM_PAIRS, for the systems that produced numbers. */
export function pairRatios(
  aggs: readonly Aggregate[],
  workloads: readonly SampleWorkloadId[],
): Ratio[] {
  return TANDEM_PAIRS.flatMap((p) => ratios(aggs, workloads, [p.systemId], [p.baselineId]));
}

/** A goal from issues 10 and 16, stated as a bound on one ratio. */
export interface Goal {
  readonly text: string;
  readonly systemId: string;
  readonly workload: SampleWorkloadId;
  readonly baselineId: string;
  readonly metric: 'throughput' | 'p50Latency';
  readonly bound: { readonly atLeast: number } | { readonly atMost: number };
}

export type GoalStatus = 'met' | 'not met' | 'not measured';

export interface GoalResult {
  readonly goal: Goal;
  readonly value: number | null;
  readonly status: GoalStatus;
}

const STANDALONE_WORKLOADS: readonly SampleWorkloadId[] = [
  'seqw',
  'rw1',
  'rw1f',
  'rw32',
  'mix',
  'seqr',
];

export const GOALS: readonly Goal[] = [
  ...STANDALONE_WORKLOADS.map((w): Goal => ({
    text: `standalone ≥ 0.9× nbdkit (${w})`,
    systemId: 'tandem-standalone',
    workload: w,
    baselineId: 'nbdkit',
    metric: 'throughput',
    bound: { atLeast: 0.9 },
  })),
  ...STANDALONE_WORKLOADS.map((w): Goal => ({
    text: `tandem-solo ≥ 0.9× tandem-standalone (${w})`,
    systemId: 'tandem-solo',
    workload: w,
    baselineId: 'tandem-standalone',
    metric: 'throughput',
    bound: { atLeast: 0.9 },
  })),
  {
    text: 'protocol C seq write ≥ 0.5× nbdkit',
    systemId: 'tandem-C',
    workload: 'seqw',
    baselineId: 'nbdkit',
    metric: 'throughput',
    bound: { atLeast: 0.5 },
  },
  {
    text: 'protocol C seq write ≥ 2× qsd-mirror',
    systemId: 'tandem-C',
    workload: 'seqw',
    baselineId: 'qsd-mirror',
    metric: 'throughput',
    bound: { atLeast: 2 },
  },
  {
    text: 'protocol C 4 KiB QD1 p50 ≤ 0.75× qsd-mirror',
    systemId: 'tandem-C',
    workload: 'rw1',
    baselineId: 'qsd-mirror',
    metric: 'p50Latency',
    bound: { atMost: 0.75 },
  },
  {
    text: 'protocol C 4 KiB QD32 IOPS ≥ 2× qsd-mirror',
    systemId: 'tandem-C',
    workload: 'rw32',
    baselineId: 'qsd-mirror',
    metric: 'throughput',
    bound: { atLeast: 2 },
  },
  {
    text: 'initial sync ≥ 0.8× nbdcopy',
    systemId: 'tandem-C',
    workload: 'sync',
    baselineId: 'nbdkit',
    metric: 'throughput',
    bound: { atLeast: 0.8 },
  },
];

export function checkGoals(rs: readonly Ratio[], goals: readonly Goal[] = GOALS): GoalResult[] {
  return goals.map((goal) => {
    const r = rs.find(
      (x) =>
        x.workload === goal.workload &&
        x.systemId === goal.systemId &&
        x.baselineId === goal.baselineId,
    );
    const value = r === undefined ? null : r[goal.metric];
    if (value === null) return { goal, value, status: 'not measured' };
    const met = 'atLeast' in goal.bound ? value >= goal.bound.atLeast : value <= goal.bound.atMost;
    return { goal, value, status: met ? 'met' : 'not met' };
  });
}
