// Baseline without replication: nbdkit's file plugin (C) serving a preallocated file over TCP on
// loopback. Its initial-sync counterpart is `nbdcopy` from one nbdkit to another: the same bytes
// a replica's full sync moves, by a tool built for copying NBD exports.
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import type { Children, ChildHandle } from '../children.js';
import { measureProcesses, realProcFs } from '../proc.js';
import type { RunningSystem, StartContext, SyncMeasurement, System } from '../types.js';
import {
  filesMatchSampled,
  freePort,
  peerEnv,
  pidfileHolds,
  preallocate,
  waitFor,
} from '../util.js';
import { commandWorks } from './probe.js';

/** Random chunks compared between source and copy after a sync. */
export const SYNC_VERIFY_SAMPLES = 64;
/** How long a server may take to bind its socket. */
const SERVER_READY_TIMEOUT_MS = 15_000;
/** Slowest full copy we wait for before calling it failed: a pessimistic 20 MB/s. */
const SYNC_RATE_FLOOR_BYTES_PER_SEC = 20e6;

/** Upper bound on one full copy of `bytes` (a minute of slack plus the floor rate). */
export function syncTimeoutMs(bytes: number): number {
  return 60_000 + Math.ceil((bytes / SYNC_RATE_FLOOR_BYTES_PER_SEC) * 1000);
}

/** Starts `nbdkit file FILE` on a free loopback port; resolves once its socket is bound. */
export async function startNbdkitFile(
  children: Children,
  name: string,
  file: string,
  runDir: string,
): Promise<{ child: ChildHandle; port: number; uri: string; commandLine: string }> {
  const port = await freePort();
  const pidfile = join(runDir, `${name}.pid`);
  const args = ['-f', '-i', '127.0.0.1', '-p', String(port), '-P', pidfile, 'file', file];
  const child = await children.start(name, 'nbdkit', args, { env: peerEnv() });
  await waitFor(
    `${name} on port ${port}`,
    () => pidfileHolds(pidfile, child.pid),
    SERVER_READY_TIMEOUT_MS,
    [child],
  );
  return { child, port, uri: `nbd://127.0.0.1:${port}/`, commandLine: `nbdkit ${args.join(' ')}` };
}

/** Runs a command under GNU time and returns its CPU seconds and peak RSS. */
export async function runTimed(
  children: Children,
  name: string,
  command: string,
  args: readonly string[],
  timeoutMs: number,
  runDir: string,
): Promise<{ cpuSeconds: number; peakRssBytes: number }> {
  const out = join(runDir, `${name}.time`);
  await children.run(
    name,
    '/usr/bin/time',
    ['-f', '%U %S %M', '-o', out, command, ...args],
    timeoutMs,
    { env: peerEnv() },
  );
  const [u, s, m] = (await readFile(out, 'utf8')).trim().split(/\s+/).map(Number);
  if (
    u === undefined ||
    s === undefined ||
    m === undefined ||
    [u, s, m].some((x) => !Number.isFinite(x))
  )
    throw new Error(`${name}: cannot parse GNU time output in ${out}`);
  return { cpuSeconds: u + s, peakRssBytes: m * 1024 };
}

export const nbdkitSystem: System = {
  id: 'nbdkit',
  label: 'nbdkit file plugin (C, no replication); sync: nbdcopy nbdkit → nbdkit',
  kind: 'baseline',

  async probe() {
    for (const cmd of ['nbdkit', 'nbdcopy', '/usr/bin/time']) {
      const r = await commandWorks(cmd, ['--version']);
      if (!r.available) return r;
    }
    return { available: true };
  },

  async start(ctx: StartContext): Promise<RunningSystem> {
    const file = join(ctx.storageDir, 'nbdkit.img');
    await preallocate(file, ctx.fileSizeBytes, 'random');
    const srv = await startNbdkitFile(ctx.children, 'nbdkit', file, ctx.runDir);
    return {
      uri: srv.uri,
      pids: () => [srv.child.pid],
      notes: [srv.commandLine],
      stop: async () => {
        await srv.child.stop();
      },
    };
  },

  async initialSync(ctx: StartContext): Promise<SyncMeasurement> {
    const src = join(ctx.storageDir, 'copy-src.img');
    const dst = join(ctx.storageDir, 'copy-dst.img');
    await preallocate(src, ctx.fileSizeBytes, 'random');
    await preallocate(dst, ctx.fileSizeBytes, 'zero');
    const a = await startNbdkitFile(ctx.children, 'nbdkit-src', src, ctx.runDir);
    const b = await startNbdkitFile(ctx.children, 'nbdkit-dst', dst, ctx.runDir);
    try {
      const m = await measureProcesses(
        realProcFs,
        () => [a.child.pid, b.child.pid],
        () =>
          runTimed(
            ctx.children,
            'nbdcopy',
            'nbdcopy',
            [a.uri, b.uri],
            syncTimeoutMs(ctx.fileSizeBytes),
            ctx.runDir,
          ),
      );
      if (!(await filesMatchSampled(src, dst, ctx.fileSizeBytes, SYNC_VERIFY_SAMPLES)))
        throw new Error('nbdcopy finished but the copy differs from the source');
      return {
        bytes: ctx.fileSizeBytes,
        seconds: m.seconds,
        cpuSeconds: m.cpuSeconds + m.value.cpuSeconds,
        peakRssBytes: m.peakRssBytes + m.value.peakRssBytes,
        method: `nbdcopy ${a.uri} ${b.uri} (both nbdkit file; source random data)`,
      };
    } finally {
      await Promise.all([a.child.stop(), b.child.stop()]);
    }
  },
};
