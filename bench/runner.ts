// Runs the benchmark: for each round, every available system in turn (A B A B ...) is started
// on fresh files, driven through every workload by fio, and stopped; then each system's initial
// sync is measured, interleaved the same way. A failure becomes an error sample for that system
// and round, and the run goes on: one broken system never hides the others' numbers.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Children } from './children.js';
import { fioArgs, parseFioJson } from './fio.js';
import { measureProcesses, realProcFs } from './proc.js';
import type {
  RunningSystem,
  Sample,
  StageSample,
  StartContext,
  System,
  Workload,
} from './types.js';
import {
  WRITE_STAGES,
  writeStagesDelta,
  type WriteStage,
  type WriteStagesStatus,
} from '../src/replication/write-stages.js';
import { peerEnv } from './util.js';

const GIB = 2 ** 30;
/** fio gets this long beyond its runtime to connect, finish and write its JSON. */
const FIO_GRACE_MS = 60_000;
/** Writing back what the previous workload left dirty may take this long at most. */
const QUIESCE_TIMEOUT_MS = 120_000;

export interface RunOptions {
  readonly rounds: number;
  readonly runtimeSec: number;
  /**
   * Unmeasured seconds of each workload after a system starts, before the measured runs (0:
   * none). Every system gets the same: Tandem's JIT-compiled code is still cold in its first
   * seconds (a fresh daemon spent 3x the CPU per QD1 write of a warm one), which no
   * long-running daemon is, and every system's page cache and metadata see the same traffic.
   */
  readonly warmupSec: number;
  readonly fileSizeBytes: number;
  readonly syncSizeBytes: number;
  readonly workloads: readonly Workload[];
  readonly sync: boolean;
  /** Storage under test: each start gets a fresh directory below it. */
  readonly storageRoot: string;
  /** Sockets and pidfiles: each start gets a fresh directory below it. */
  readonly runRoot: string;
  readonly children: Children;
  readonly log: (line: string) => void;
  /** Extra Node.js flags for Tandem's processes. */
  readonly nodeArgs: readonly string[];
  /** Checked between steps; a stopped run ends after the current step. */
  readonly aborted: () => boolean;
}

export interface RunOutput {
  readonly samples: Sample[];
  /** Notes per system id, deduplicated, in first-seen order. */
  readonly notes: Map<string, string[]>;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function freshContext(o: RunOptions, tag: string, sizeBytes: number): Promise<StartContext> {
  return {
    storageDir: await mkdtemp(join(o.storageRoot, `${tag}-`)),
    runDir: await mkdtemp(join(o.runRoot, `${tag}-`)),
    fileSizeBytes: sizeBytes,
    children: o.children,
    log: o.log,
    nodeArgs: o.nodeArgs,
  };
}

async function dropContext(ctx: StartContext): Promise<void> {
  await rm(ctx.storageDir, { recursive: true, force: true });
  await rm(ctx.runDir, { recursive: true, force: true });
}

/** Runs every workload for `warmupSec`, unmeasured; a failure is logged, not fatal. */
async function warmUp(
  o: RunOptions,
  ctx: StartContext,
  sys: RunningSystem,
  systemId: string,
): Promise<void> {
  if (o.warmupSec <= 0) return;
  for (const w of o.workloads) {
    const args = fioArgs(w, {
      uri: sys.uri,
      sizeBytes: ctx.fileSizeBytes,
      runtimeSec: o.warmupSec,
      outputPath: join(ctx.runDir, `warmup-${w.id}.json`),
    });
    try {
      await o.children.run('fio', 'fio', args, o.warmupSec * 1000 + FIO_GRACE_MS, {
        env: peerEnv(),
      });
    } catch (e) {
      o.log(`${systemId}: warm-up ${w.id} failed: ${errorMessage(e)}`);
    }
  }
}

/** One fio run against a running system, with the system's CPU and peak RSS around it. */
export async function runWorkload(
  o: RunOptions,
  ctx: StartContext,
  sys: RunningSystem,
  w: Workload,
  round: number,
  systemId: string,
): Promise<Sample> {
  const outputPath = join(ctx.runDir, `fio-${w.id}.json`);
  const args = fioArgs(w, {
    uri: sys.uri,
    sizeBytes: ctx.fileSizeBytes,
    runtimeSec: o.runtimeSec,
    outputPath,
  });
  const base = { round, systemId, workload: w.id } as const;
  try {
    // Write back what earlier workloads left dirty (syncfs of the storage's filesystem), so
    // their writeback does not land in this workload's numbers, flush latency above all.
    await o.children.run('sync', 'sync', ['-f', ctx.storageDir], QUIESCE_TIMEOUT_MS, {
      env: peerEnv(),
    });
    const stagesBefore = await stagesOf(sys, o);
    const m = await measureProcesses(
      realProcFs,
      () => sys.pids(),
      () =>
        o.children.run('fio', 'fio', args, o.runtimeSec * 1000 + FIO_GRACE_MS, { env: peerEnv() }),
    );
    const stages = stagesBetween(stagesBefore, await stagesOf(sys, o));
    const parsed = parseFioJson(await readFile(outputPath, 'utf8'));
    if (!parsed.ok) return { ...base, ok: false, error: parsed.error };
    const f = parsed.value;
    const moved = f.read.ioBytes + f.write.ioBytes;
    const dir = w.latencyOf === 'read' ? f.read : f.write;
    return {
      ...base,
      ok: true,
      mbPerSec: (f.read.bwBytesPerSec + f.write.bwBytesPerSec) / 1e6,
      iops: f.read.iops + f.write.iops,
      ...(dir.clat === null ? {} : { latency: dir.clat }),
      ...(f.flush === null ? {} : { flushLatency: f.flush }),
      readBytes: f.read.ioBytes,
      writtenBytes: f.write.ioBytes,
      seconds: m.seconds,
      cpuSeconds: m.cpuSeconds,
      cpuSecondsPerGiB: moved > 0 ? m.cpuSeconds / (moved / GIB) : 0,
      peakRssBytes: m.peakRssBytes,
      rssSamplesBytes: m.rssSamplesBytes,
      fioCpuPercent: f.fioCpuPercent,
      ...(stages === null ? {} : { writeStages: stages }),
    };
  } catch (e) {
    return { ...base, ok: false, error: errorMessage(e) };
  }
}

/** The system's write-stage snapshot, or null (not a Tandem daemon, or status failed). */
async function stagesOf(sys: RunningSystem, o: RunOptions): Promise<WriteStagesStatus | null> {
  if (sys.writeStages === undefined) return null;
  try {
    return await sys.writeStages();
  } catch (e) {
    o.log(`write stages: ${errorMessage(e)}`);
    return null;
  }
}

/** Count and p50 per stage of the writes between two snapshots. */
export function stagesBetween(
  before: WriteStagesStatus | null,
  after: WriteStagesStatus | null,
): Record<WriteStage, StageSample> | null {
  if (before === null || after === null) return null;
  const d = writeStagesDelta(after, before);
  const out = {} as Record<WriteStage, StageSample>;
  for (const k of WRITE_STAGES) out[k] = { count: d.stages[k].count, p50Us: d.stages[k].p50Us };
  return out;
}

function addNotes(out: RunOutput, id: string, notes: readonly string[]): void {
  const list = out.notes.get(id) ?? [];
  for (const n of notes) if (!list.includes(n)) list.push(n);
  out.notes.set(id, list);
}

async function roundOfWorkloads(
  o: RunOptions,
  s: System,
  round: number,
  out: RunOutput,
): Promise<void> {
  const ctx = await freshContext(o, `${s.id}-r${round}`, o.fileSizeBytes);
  let running: RunningSystem | undefined;
  try {
    o.log(`round ${round}: starting ${s.id}`);
    try {
      running = await s.start(ctx);
    } catch (e) {
      const error = `start failed: ${errorMessage(e)}`;
      o.log(`round ${round}: ${s.id} ${error}`);
      for (const w of o.workloads)
        out.samples.push({ round, systemId: s.id, workload: w.id, ok: false, error });
      return;
    }
    addNotes(out, s.id, running.notes);
    await warmUp(o, ctx, running, s.id);
    for (const w of o.workloads) {
      if (o.aborted()) return;
      const sample = await runWorkload(o, ctx, running, w, round, s.id);
      o.log(
        `round ${round}: ${s.id} ${w.id}: ` +
          (sample.ok
            ? `${sample.mbPerSec?.toFixed(1)} MB/s, ${sample.iops?.toFixed(0)} IOPS, p50 ${sample.latency?.p50Us.toFixed(0)} µs`
            : `ERROR ${sample.error}`),
      );
      out.samples.push(sample);
    }
  } finally {
    await running?.stop();
    await dropContext(ctx);
  }
}

async function roundOfSync(o: RunOptions, s: System, round: number, out: RunOutput): Promise<void> {
  if (s.initialSync === undefined) return;
  const ctx = await freshContext(o, `${s.id}-sync-r${round}`, o.syncSizeBytes);
  const base = { round, systemId: s.id, workload: 'sync' } as const;
  try {
    o.log(`round ${round}: initial sync on ${s.id}`);
    const m = await s.initialSync(ctx);
    addNotes(out, s.id, [`initial sync: ${m.method}`]);
    const sample: Sample = {
      ...base,
      ok: true,
      mbPerSec: m.bytes / m.seconds / 1e6,
      writtenBytes: m.bytes,
      seconds: m.seconds,
      cpuSeconds: m.cpuSeconds,
      cpuSecondsPerGiB: m.cpuSeconds / (m.bytes / GIB),
      peakRssBytes: m.peakRssBytes,
      ...(m.rampSeconds === undefined ? {} : { rampSeconds: m.rampSeconds }),
    };
    o.log(
      `round ${round}: ${s.id} sync: ${sample.mbPerSec?.toFixed(1)} MB/s in ${m.seconds.toFixed(2)} s` +
        (m.rampSeconds === undefined
          ? ''
          : `, at target rate after ${m.rampSeconds === null ? 'never' : `${m.rampSeconds.toFixed(2)} s`}`),
    );
    out.samples.push(sample);
  } catch (e) {
    o.log(`round ${round}: ${s.id} sync ERROR ${errorMessage(e)}`);
    out.samples.push({ ...base, ok: false, error: errorMessage(e) });
  } finally {
    await dropContext(ctx);
  }
}

/** Runs every round; `systems` are the available ones, in their interleaving order. */
export async function runBenchmark(systems: readonly System[], o: RunOptions): Promise<RunOutput> {
  const out: RunOutput = { samples: [], notes: new Map() };
  for (let round = 1; round <= o.rounds; round++) {
    for (const s of systems) {
      if (o.aborted()) return out;
      if (o.workloads.length > 0 && s.syncOnly !== true) await roundOfWorkloads(o, s, round, out);
    }
    if (!o.sync) continue;
    for (const s of systems) {
      if (o.aborted()) return out;
      await roundOfSync(o, s, round, out);
    }
  }
  return out;
}
