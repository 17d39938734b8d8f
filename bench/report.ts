// The report: one JSON document holding every sample and what was derived from it, and its
// markdown rendering. Derived numbers (medians, ratios, goals) are recomputed from the samples
// by buildReport, so the JSON is self-consistent. A system without numbers shows its reason.
import { SYNC_TITLE, WORKLOADS } from './fio.js';
import {
  aggregate,
  checkGoals,
  findAggregate,
  pairRatios,
  ratios,
  type Aggregate,
  type GoalResult,
  type GoalStatus,
  type Ratio,
} from './stats.js';
import type { Latency, Sample, SampleWorkloadId } from './types.js';
import { WRITE_STAGES } from '../src/replication/write-stages.js';

export interface SystemEntry {
  readonly id: string;
  readonly label: string;
  readonly kind: 'baseline' | 'tandem';
  readonly available: boolean;
  readonly reason?: string;
  readonly notes: readonly string[];
}

export interface RunInfo {
  readonly quick: boolean;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly rounds: number;
  readonly runtimeSec: number;
  /** Unmeasured seconds of each workload after each start (absent in older reports). */
  readonly warmupSec?: number;
  readonly fileSizeBytes: number;
  readonly syncSizeBytes: number;
  readonly storageDir: string;
  readonly host: Readonly<Record<string, string>>;
}

export interface Report {
  readonly run: RunInfo;
  readonly systems: readonly SystemEntry[];
  readonly workloads: readonly { id: SampleWorkloadId; title: string }[];
  readonly samples: readonly Sample[];
  readonly aggregates: readonly Aggregate[];
  readonly ratios: readonly Ratio[];
  readonly goals: readonly GoalResult[];
}

export const BASELINE_IDS = ['nbdkit', 'qsd-mirror'] as const;

export function buildReport(
  run: RunInfo,
  systems: readonly SystemEntry[],
  workloads: readonly SampleWorkloadId[],
  samples: readonly Sample[],
): Report {
  const aggs = aggregate(samples);
  const tandemIds = systems.filter((s) => s.kind === 'tandem').map((s) => s.id);
  const rs = [...ratios(aggs, workloads, tandemIds, BASELINE_IDS), ...pairRatios(aggs, workloads)];
  return {
    run,
    systems,
    workloads: workloads.map((id) => ({ id, title: workloadTitle(id, run.syncSizeBytes) })),
    samples,
    aggregates: aggs,
    ratios: rs,
    goals: checkGoals(rs),
  };
}

export function workloadTitle(id: SampleWorkloadId, syncSizeBytes: number): string {
  if (id === 'sync') return `${SYNC_TITLE} ${formatSize(syncSizeBytes)}`;
  return WORKLOADS.find((w) => w.id === id)?.title ?? id;
}

export function formatSize(bytes: number): string {
  const gib = bytes / 2 ** 30;
  return Number.isInteger(gib) ? `${gib} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

/** Fixed-width-free number formatting: few significant digits, "-" for nothing. */
export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a >= 100) return Math.round(v).toString();
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

const fmtLat = (l: Latency | null, k: keyof Latency): string => fmt(l?.[k]);
const fmtMiB = (b: number | null): string => (b === null ? '-' : fmt(b / 2 ** 20));

function systemLabel(r: Report, id: string): string {
  return r.systems.find((s) => s.id === id)?.label ?? id;
}

export function renderMarkdown(r: Report): string {
  const out: string[] = [];
  const kind = r.run.quick ? 'quick run' : 'full run';
  out.push(`# Tandem benchmark: ${kind}, ${r.run.startedAt}`);
  out.push('');
  out.push(
    `fio \`nbd\` engine over TCP on 127.0.0.1; every export is a ${formatSize(r.run.fileSizeBytes)} ` +
      `preallocated file in \`${r.run.storageDir}\`; ${r.run.runtimeSec} s per fio run ` +
      `(after ${r.run.warmupSec ?? 0} s of each workload, unmeasured, per start); ` +
      `${r.run.rounds} round(s), systems interleaved within each round; cells are medians over ` +
      `rounds (peak RSS: the highest peak).`,
  );
  if (r.run.quick)
    out.push(
      '',
      '**Quick run**: short runs, few rounds, on a shared and busy machine. Smoke test only; ' +
        'only ratios measured in one run mean anything, and these are noisy.',
    );
  out.push('');
  for (const [k, v] of Object.entries(r.run.host)) out.push(`- ${k}: ${v}`);
  out.push('');
  out.push('## Systems');
  out.push('');
  for (const s of r.systems) {
    out.push(`- **${s.id}**: ${s.label}${s.available ? '' : ` — ${s.reason ?? 'not available'}`}`);
  }
  out.push('');
  out.push('## Results');
  out.push('');
  out.push(
    '| workload | system | MB/s | IOPS | clat p50 µs | p99 µs | p99.9 µs | flush p50 µs | CPU s/GiB | peak RSS MiB | runs ok |',
  );
  out.push('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const w of r.workloads) {
    for (const s of r.systems) {
      const a = findAggregate(r.aggregates, w.id, s.id);
      if (a === undefined) continue;
      out.push(
        `| ${w.title} | ${s.id} | ${fmt(a.mbPerSec)} | ${fmt(a.iops)} | ${fmtLat(a.latency, 'p50Us')} | ` +
          `${fmtLat(a.latency, 'p99Us')} | ${fmtLat(a.latency, 'p999Us')} | ` +
          `${fmtLat(a.flushLatency, 'p50Us')} | ${fmt(a.cpuSecondsPerGiB)} | ` +
          `${fmtMiB(a.peakRssBytes)} | ${a.runsOk}/${a.runs} |`,
      );
    }
  }
  out.push('');
  out.push(
    "CPU s/GiB: user+system CPU seconds of all the system's processes (from /proc, children " +
      'included) per GiB moved (written, for write-only workloads). Peak RSS: sum over the ' +
      "system's processes of VmHWM, reset before each workload. For the initial sync, the " +
      'nbdkit row is `nbdcopy` between two nbdkit file servers (nbdcopy included in CPU and RSS).',
  );
  out.push('');
  const memory = r.aggregates.filter((a) => a.workload === 'rw32' && a.rssFirstBytes !== null);
  if (memory.length > 0) {
    out.push('## Memory under 4 KiB QD32 load');
    out.push('');
    out.push(
      'RSS of the system sampled once a second during the run: first and last sample (medians over rounds), and the peak.',
    );
    out.push('');
    out.push('| system | RSS first sample MiB | RSS last sample MiB | peak RSS MiB |');
    out.push('|---|---|---|---|');
    for (const a of memory)
      out.push(
        `| ${a.systemId} | ${fmtMiB(a.rssFirstBytes)} | ${fmtMiB(a.rssLastBytes)} | ${fmtMiB(a.peakRssBytes)} |`,
      );
    out.push('');
  }
  const staged = r.aggregates.filter((a) => a.writeStagesP50 !== null);
  if (staged.length > 0) {
    out.push("## Where a write's time goes (Tandem daemons)");
    out.push('');
    out.push(
      "p50 µs of each stage for the Primary's writes during the measured run (`tandem status " +
        '--json` writeStages, after minus before; log2 buckets, so within 2×), medians over ' +
        'rounds. engine: received from NBD → issued; barrier: → activity-log transaction done ' +
        '(writes that waited for one); disk: → local write done; peer: → peer ack; total: → ' +
        'reply. docs/REPLICATION.md has the details.',
    );
    out.push('');
    out.push(`| workload | system | ${WRITE_STAGES.join(' | ')} |`);
    out.push(`|---|---|${WRITE_STAGES.map(() => '---').join('|')}|`);
    for (const w of r.workloads)
      for (const a of staged) {
        if (a.workload !== w.id) continue;
        const p = a.writeStagesP50;
        out.push(
          `| ${w.title} | ${a.systemId} | ${WRITE_STAGES.map((k) => fmt(p?.[k])).join(' | ')} |`,
        );
      }
    out.push('');
  }
  out.push('## Ratios, Tandem / baseline');
  out.push('');
  if (r.ratios.length === 0) {
    out.push('No Tandem system produced numbers in this run, so there are no ratios.');
  } else {
    out.push('Throughput: higher is better. p50 latency: lower is better.');
    out.push('');
    out.push(
      '| workload | Tandem system | throughput ×nbdkit | throughput ×qsd-mirror | p50 ×nbdkit | p50 ×qsd-mirror |',
    );
    out.push('|---|---|---|---|---|---|');
    for (const w of r.workloads) {
      const tandemIds = [
        ...new Set(r.ratios.filter((x) => x.workload === w.id).map((x) => x.systemId)),
      ];
      for (const t of tandemIds) {
        const get = (b: string): Ratio | undefined =>
          r.ratios.find((x) => x.workload === w.id && x.systemId === t && x.baselineId === b);
        const n = get('nbdkit');
        const q = get('qsd-mirror');
        out.push(
          `| ${w.title} | ${t} | ${fmt(n?.throughput)} | ${fmt(q?.throughput)} | ` +
            `${fmt(n?.p50Latency)} | ${fmt(q?.p50Latency)} |`,
        );
      }
    }
  }
  out.push('');
  out.push('## Goals (issues 10 and 16)');
  out.push('');
  out.push('| goal | measured ratio | status |');
  out.push('|---|---|---|');
  for (const g of r.goals) {
    const why =
      g.status === 'not measured'
        ? ` (${unavailableWhy(r, g.goal.systemId, g.goal.baselineId)})`
        : '';
    out.push(`| ${g.goal.text} | ${fmt(g.value)} | ${g.status}${why} |`);
  }
  const ramp = syncRampGoal(r.samples);
  if (ramp !== null) out.push(`| ${ramp.text} | ${ramp.value} | ${ramp.status} |`);
  const failed = r.samples.filter((s) => !s.ok);
  if (failed.length > 0) {
    out.push('');
    out.push('## Errors');
    out.push('');
    // One line per system and distinct error, naming the workloads and rounds it hit.
    const groups = new Map<string, { systemId: string; error: string; where: string[] }>();
    for (const s of failed) {
      const error = s.error ?? 'failed';
      const key = `${s.systemId}\u0000${error}`;
      const g = groups.get(key) ?? { systemId: s.systemId, error, where: [] };
      g.where.push(`${s.workload} r${s.round}`);
      groups.set(key, g);
    }
    for (const g of groups.values())
      out.push(`- ${systemLabel(r, g.systemId)} (${g.where.join(', ')}): ${g.error}`);
  }
  const notes = r.systems.filter((s) => s.notes.length > 0);
  if (notes.length > 0) {
    out.push('');
    out.push('## Notes');
    out.push('');
    for (const s of notes) for (const n of s.notes) out.push(`- ${s.id}: ${n}`);
  }
  out.push('');
  return out.join('\n');
}

function unavailableWhy(r: Report, ...ids: string[]): string {
  for (const id of ids) {
    const s = r.systems.find((x) => x.id === id);
    if (s === undefined) return `${id} not in this run`;
    if (!s.available) return `${id}: ${s.reason ?? 'not available'}`;
  }
  return 'no successful run';
}

/** Seconds within which a default-options initial sync must reach c-max-rate (issue 16). */
export const SYNC_RAMP_GOAL_SECONDS = 5;

/**
 * The default-options sync goal from the samples that carry a ramp time: the median over
 * rounds (a round that never reached the rate counts as never). Null when not measured.
 */
export function syncRampGoal(
  samples: readonly Sample[],
): { text: string; value: string; status: GoalStatus } | null {
  const ramps = samples
    .filter((s) => s.ok && s.workload === 'sync' && s.rampSeconds !== undefined)
    .map((s) => s.rampSeconds ?? Infinity)
    .sort((a, b) => a - b);
  if (ramps.length === 0) return null;
  const mid = ramps[Math.floor((ramps.length - 1) / 2)] ?? Infinity;
  return {
    text: `default resync options: the sync reaches 100 MiB/s within ${SYNC_RAMP_GOAL_SECONDS} s`,
    value: Number.isFinite(mid)
      ? `${mid.toFixed(2)} s (rounds: ${ramps.map((x) => (Number.isFinite(x) ? x.toFixed(2) : 'never')).join(', ')})`
      : 'never',
    status: mid <= SYNC_RAMP_GOAL_SECONDS ? 'met' : 'not met',
  };
}
