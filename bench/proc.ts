// CPU time and peak memory of a system's processes, read from /proc the way `ps` and `top` do.
// CPU: utime+stime of each process (all its threads) plus cutime+cstime (children it reaped),
// summed over the given pids and every live descendant. Peak RSS: VmHWM, which we reset
// through /proc/PID/clear_refs before a workload so each workload reports its own peak.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** What the accounting needs from /proc; a fake in tests, the real one in runs. */
export interface ProcFs {
  /** The file's text, or null when it does not exist (the process is gone). */
  read(path: string): string | null;
  /** Entry names, or [] when the directory does not exist. */
  list(path: string): string[];
  /** Writes text; false when the file cannot be written. */
  write(path: string, text: string): boolean;
}

export const realProcFs: ProcFs = {
  read(path) {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return null;
    }
  },
  list(path) {
    try {
      return readdirSync(path);
    } catch {
      return [];
    }
  },
  write(path, text) {
    try {
      writeFileSync(path, text);
      return true;
    } catch {
      return false;
    }
  },
};

export interface ProcStat {
  readonly pid: number;
  readonly comm: string;
  readonly state: string;
  readonly ppid: number;
  /** Clock ticks in user and kernel mode, all threads. */
  readonly utimeTicks: number;
  readonly stimeTicks: number;
  /** Clock ticks of children this process has waited for. */
  readonly cutimeTicks: number;
  readonly cstimeTicks: number;
}

/**
 * Parses /proc/PID/stat (proc(5)). comm sits in parentheses and may itself hold spaces and
 * parentheses, so the fields after it are found from the LAST ')'.
 */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 1 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state); field N is rest[N - 3].
  const field = (n: number): number => Number(rest[n - 3]);
  const state = rest[0];
  const values = [field(4), field(14), field(15), field(16), field(17)];
  if (!Number.isInteger(pid) || state === undefined || values.some((v) => !Number.isFinite(v)))
    return null;
  return {
    pid,
    comm: text.slice(open + 1, close),
    state,
    ppid: field(4),
    utimeTicks: field(14),
    stimeTicks: field(15),
    cutimeTicks: field(16),
    cstimeTicks: field(17),
  };
}

function parseStatusKiB(statusText: string, field: string): number | null {
  const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(statusText);
  return m?.[1] === undefined ? null : Number(m[1]) * 1024;
}

/** Peak resident set size (VmHWM) from /proc/PID/status, in bytes; null if absent. */
export function parseVmHwmBytes(statusText: string): number | null {
  return parseStatusKiB(statusText, 'VmHWM');
}

/** Current resident set size (VmRSS) from /proc/PID/status, in bytes; null if absent. */
export function parseVmRssBytes(statusText: string): number | null {
  return parseStatusKiB(statusText, 'VmRSS');
}

/** Live descendants of `pid` (children of every thread, recursively), excluding `pid`. */
export function descendants(fs: ProcFs, pid: number): number[] {
  const out: number[] = [];
  const seen = new Set<number>([pid]);
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    for (const tid of fs.list(`/proc/${p}/task`)) {
      const text = fs.read(`/proc/${p}/task/${tid}/children`) ?? '';
      for (const c of text.trim().split(/\s+/)) {
        const child = Number(c);
        if (c === '' || !Number.isInteger(child) || seen.has(child)) continue;
        seen.add(child);
        out.push(child);
        queue.push(child);
      }
    }
  }
  return out;
}

/** The given pids and their live descendants, each once. */
export function processTree(fs: ProcFs, pids: readonly number[]): number[] {
  const all = new Set<number>();
  for (const p of pids) {
    all.add(p);
    for (const d of descendants(fs, p)) all.add(d);
  }
  return [...all];
}

/**
 * Total CPU ticks of a process tree, keyed by pid so that two snapshots can be compared
 * process by process (a process that appeared in between counts from zero).
 */
export function cpuTicksByPid(fs: ProcFs, pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const p of processTree(fs, pids)) {
    const text = fs.read(`/proc/${p}/stat`);
    const st = text === null ? null : parseProcStat(text);
    if (st === null) continue;
    out.set(p, st.utimeTicks + st.stimeTicks + st.cutimeTicks + st.cstimeTicks);
  }
  return out;
}

/**
 * CPU seconds spent between two snapshots. A process present only in `after` started in
 * between and counts in full; one present only in `before` exited, and its time since
 * `before` is lost unless its parent reaped it (then it shows in the parent's cutime).
 */
export function cpuSecondsBetween(
  before: ReadonlyMap<number, number>,
  after: ReadonlyMap<number, number>,
  ticksPerSec: number,
): number {
  let ticks = 0;
  for (const [pid, t] of after) ticks += Math.max(0, t - (before.get(pid) ?? 0));
  return ticks / ticksPerSec;
}

/** Resets VmHWM to the current RSS of each process of the tree (Linux clear_refs "5"). */
export function resetPeakRss(fs: ProcFs, pids: readonly number[]): boolean {
  let all = true;
  for (const p of processTree(fs, pids)) all = fs.write(`/proc/${p}/clear_refs`, '5') && all;
  return all;
}

function sumStatus(
  fs: ProcFs,
  pids: readonly number[],
  parse: (t: string) => number | null,
): number {
  let sum = 0;
  for (const p of processTree(fs, pids)) {
    const text = fs.read(`/proc/${p}/status`);
    sum += (text === null ? null : parse(text)) ?? 0;
  }
  return sum;
}

/** Sum over the tree of each process's peak RSS, in bytes. */
export function peakRssBytes(fs: ProcFs, pids: readonly number[]): number {
  return sumStatus(fs, pids, parseVmHwmBytes);
}

/** Sum over the tree of each process's current RSS, in bytes. */
export function rssBytes(fs: ProcFs, pids: readonly number[]): number {
  return sumStatus(fs, pids, parseVmRssBytes);
}

let ticks: number | undefined;
/** USER_HZ, the unit of the tick fields in /proc/PID/stat. */
export function clockTicksPerSec(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    } catch {
      ticks = 100;
    }
    if (!Number.isInteger(ticks) || ticks <= 0) ticks = 100;
  }
  return ticks;
}

/** How often measureProcesses samples the current RSS (to show growth under load). */
export const RSS_SAMPLE_INTERVAL_MS = 1000;

export interface Measured<T> {
  readonly value: T;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly peakRssBytes: number;
  /** Current RSS of the processes, sampled every RSS_SAMPLE_INTERVAL_MS during the action. */
  readonly rssSamplesBytes: readonly number[];
}

/** Measures CPU seconds and RSS (peak and over time) of a set of processes around an action. */
export async function measureProcesses<T>(
  fs: ProcFs,
  pids: () => readonly number[],
  action: () => Promise<T>,
): Promise<Measured<T>> {
  resetPeakRss(fs, pids());
  const before = cpuTicksByPid(fs, pids());
  const t0 = process.hrtime.bigint();
  const rssSamplesBytes: number[] = [];
  const sampler = setInterval(
    () => rssSamplesBytes.push(rssBytes(fs, pids())),
    RSS_SAMPLE_INTERVAL_MS,
  );
  let value: T;
  try {
    value = await action();
  } finally {
    clearInterval(sampler);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = cpuTicksByPid(fs, pids());
  return {
    value,
    seconds,
    cpuSeconds: cpuSecondsBetween(before, after, clockTicksPerSec()),
    peakRssBytes: peakRssBytes(fs, pids()),
    rssSamplesBytes,
  };
}
