// The benchmark harness's contracts: a System under test, the workloads fio drives against it,
// and the samples one run of a workload yields. Imports nothing at runtime. Every number in a
// sample was measured; a system or run that could not be measured carries a reason instead.
import type { Children } from './children.js';
import type { WriteStage, WriteStagesStatus } from '../src/replication/write-stages.js';

/** Why a system cannot run here (yet); shown in the report instead of numbers. */
export type Availability = { available: true } | { available: false; reason: string };

export interface StartContext {
  /** A fresh directory on the storage under test, owned by this start; removed after stop. */
  readonly storageDir: string;
  /** A fresh directory for Unix sockets and pidfiles (short path, under the OS temp dir). */
  readonly runDir: string;
  /**
   * Size of every backing file and export, in bytes. Exported files start filled with non-zero
   * data (sync targets with zeroes), the same for every system, so no system's zero-block
   * shortcut (or bug in one) decides a result.
   */
  readonly fileSizeBytes: number;
  /** Spawns and tracks child processes so that every one is killed on failure or Ctrl-C. */
  readonly children: Children;
  readonly log: (line: string) => void;
  /** Extra Node.js flags for Tandem's own processes (e.g. --cpu-prof for profiling runs). */
  readonly nodeArgs: readonly string[];
}

/** A started system: fio talks to `uri`; CPU and peak RSS are read from `pids()` via /proc. */
export interface RunningSystem {
  /** NBD URI of the export fio drives (always TCP on loopback). */
  readonly uri: string;
  /** Every long-running process of the system (their threads and children are included). */
  pids(): readonly number[];
  /** Notes for the report (commands, versions, mirror state). */
  readonly notes: readonly string[];
  /** Stops every process of the system; idempotent. */
  stop(): Promise<void>;
  /**
   * Tandem daemons: the Primary's write-stage breakdown since it started (`tandem status
   * --json`, `writeStages`); the runner takes one before and one after each measured run.
   */
  writeStages?(): Promise<WriteStagesStatus>;
}

/** One measured initial full sync (a whole device copied to an empty peer). */
export interface SyncMeasurement {
  readonly bytes: number;
  readonly seconds: number;
  /** utime+stime of every process of the system during the copy. */
  readonly cpuSeconds: number;
  /** Sum over processes of each one's peak RSS during the copy. */
  readonly peakRssBytes: number;
  /** How this was measured (command line, job). */
  readonly method: string;
  /** Seconds until the sync first ran at its target rate (null: never), if measured. */
  readonly rampSeconds?: number | null;
}

export interface System {
  /** Stable id used on the command line and in the JSON (e.g. "nbdkit", "tandem-C"). */
  readonly id: string;
  /** A human label for the table. */
  readonly label: string;
  /** Tandem systems get ratio rows against the baselines. */
  readonly kind: 'baseline' | 'tandem';
  /** Runs only when named with --systems (variants, not part of the default run). */
  readonly optIn?: boolean;
  /** Measures only the initial sync: no fio workloads. */
  readonly syncOnly?: boolean;
  probe(): Promise<Availability>;
  start(ctx: StartContext): Promise<RunningSystem>;
  /** The initial full sync of `fileSizeBytes` of non-zero data, if the system has one. */
  initialSync?(ctx: StartContext): Promise<SyncMeasurement>;
}

export type WorkloadId = 'seqw' | 'rw1' | 'rw1f' | 'rw32' | 'mix' | 'seqr';
export type SampleWorkloadId = WorkloadId | 'sync';

export interface Workload {
  readonly id: WorkloadId;
  readonly title: string;
  /** fio job options specific to this workload (the common ones are added by fioArgs). */
  readonly fioOptions: readonly string[];
  /** Whose completion latency the table shows: the direction the workload is about. */
  readonly latencyOf: 'read' | 'write';
}

/** Completion latency percentiles in microseconds. */
export interface Latency {
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
}

/** What one fio run measured for one direction. */
export interface FioDirection {
  readonly ioBytes: number;
  readonly bwBytesPerSec: number;
  readonly iops: number;
  readonly totalIos: number;
  /** Null when the direction did no I/O. */
  readonly clat: Latency | null;
}

export interface FioResult {
  readonly jobName: string;
  readonly read: FioDirection;
  readonly write: FioDirection;
  /** Latency of the flushes fio issued (fsync=N), null when there were none. */
  readonly flush: Latency | null;
  readonly runtimeMs: number;
  /** fio's own CPU use in percent of one CPU (usr + sys). */
  readonly fioCpuPercent: number;
}

/** One workload on one system in one round: measured numbers, or why there are none. */
export interface Sample {
  readonly round: number;
  readonly systemId: string;
  readonly workload: SampleWorkloadId;
  readonly ok: boolean;
  readonly error?: string;
  readonly mbPerSec?: number;
  readonly iops?: number;
  readonly latency?: Latency;
  readonly flushLatency?: Latency;
  readonly readBytes?: number;
  readonly writtenBytes?: number;
  readonly seconds?: number;
  readonly cpuSeconds?: number;
  /** CPU seconds of the system per GiB moved (read + written; = per GiB written for writes). */
  readonly cpuSecondsPerGiB?: number;
  readonly peakRssBytes?: number;
  /** RSS of the system once a second during the run (growth under load shows here). */
  readonly rssSamplesBytes?: readonly number[];
  readonly fioCpuPercent?: number;
  /** Tandem daemons: the writes of this run by stage (count and p50), from the status delta. */
  readonly writeStages?: Readonly<Record<WriteStage, StageSample>>;
  /** Initial sync: seconds until it first ran at its target rate (null: never). */
  readonly rampSeconds?: number | null;
}

/** One stage of the writes of one run. */
export interface StageSample {
  readonly count: number;
  readonly p50Us: number;
}
