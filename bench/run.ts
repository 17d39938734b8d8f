#!/usr/bin/env node
// `npm run bench [-- --quick]`: benchmarks Tandem against nbdkit and a qemu-storage-daemon
// write-blocking mirror with fio over NBD, interleaved, and writes a markdown table and a JSON
// file to bench/results/. Every child process dies with the harness, also on Ctrl-C.
import { Command, InvalidArgumentError } from 'commander';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Children } from './children.js';
import { WORKLOADS, isWorkloadId } from './fio.js';
import { buildReport, renderMarkdown, type SystemEntry } from './report.js';
import { runBenchmark } from './runner.js';
import { nbdkitSystem } from './systems/nbdkit.js';
import { commandOutput } from './systems/probe.js';
import { qsdMirrorSystem } from './systems/qsd-mirror.js';
import { tandemStandaloneSystem, tandemStandaloneVariants } from './systems/tandem.js';
import { tandemPairSystems, tandemSoloSystem } from './systems/tandem-pair.js';
import type { SampleWorkloadId, System } from './types.js';

const MIB = 2 ** 20;

/** Every system, in interleaving order. */
const ALL_SYSTEMS: readonly System[] = [
  nbdkitSystem,
  qsdMirrorSystem,
  tandemStandaloneSystem,
  tandemSoloSystem,
  ...tandemStandaloneVariants,
  ...tandemPairSystems,
];

const positiveInt =
  (what: string) =>
  (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${what} must be a positive integer`);
    return n;
  };

const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

interface Cli {
  quick: boolean;
  rounds?: number;
  runtime?: number;
  warmup?: number;
  sizeMib?: number;
  syncSizeMib?: number;
  systems?: string[];
  workloads?: string[];
  dir: string;
  out: string;
  cpuProf?: string;
}

const packageRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

function log(line: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

async function hostInfo(storageDir: string): Promise<Record<string, string>> {
  const [fio, nbdkit, qsd, libnbd, fs] = await Promise.all([
    commandOutput('fio', ['--version']),
    commandOutput('nbdkit', ['--version']),
    commandOutput('qemu-storage-daemon', ['--version']),
    commandOutput('nbdcopy', ['--version']),
    commandOutput('findmnt', ['-no', 'FSTYPE,SOURCE', '--target', storageDir]),
  ]);
  return {
    cpus: String(availableParallelism()),
    kernel: release(),
    node: process.version,
    fio,
    nbdkit,
    'qemu-storage-daemon': qsd,
    nbdcopy: libnbd,
    'storage filesystem': fs,
    'libuv env (Tandem children inherit it)': `UV_THREADPOOL_SIZE=${process.env['UV_THREADPOOL_SIZE'] ?? 'unset'} UV_USE_IO_URING=${process.env['UV_USE_IO_URING'] ?? 'unset'}`,
    'load average at start': loadavg()
      .map((x) => x.toFixed(2))
      .join(' '),
  };
}

async function main(cli: Cli): Promise<number> {
  const rounds = cli.rounds ?? (cli.quick ? 1 : 3);
  const runtimeSec = cli.runtime ?? (cli.quick ? 1 : 5);
  const warmupSec = cli.warmup ?? 1;
  const fileSizeBytes = (cli.sizeMib ?? (cli.quick ? 256 : 1024)) * MIB;
  const syncSizeBytes = (cli.syncSizeMib ?? (cli.quick ? 256 : 1024)) * MIB;
  const wanted = cli.workloads ?? [...WORKLOADS.map((w) => w.id), 'sync'];
  for (const w of wanted)
    if (w !== 'sync' && !isWorkloadId(w)) throw new InvalidArgumentError(`unknown workload ${w}`);
  const workloads = WORKLOADS.filter((w) => wanted.includes(w.id));
  const sync = wanted.includes('sync');
  const selected = cli.systems ?? ALL_SYSTEMS.filter((s) => s.optIn !== true).map((s) => s.id);
  for (const id of selected)
    if (!ALL_SYSTEMS.some((s) => s.id === id))
      throw new InvalidArgumentError(`unknown system ${id}`);
  const systems = ALL_SYSTEMS.filter((s) => selected.includes(s.id));

  const entries: SystemEntry[] = [];
  const runnable: System[] = [];
  for (const s of systems) {
    const a = await s.probe();
    entries.push({
      id: s.id,
      label: s.label,
      kind: s.kind,
      available: a.available,
      ...(a.available ? {} : { reason: a.reason }),
      notes: [],
    });
    if (a.available) runnable.push(s);
    log(`${s.id}: ${a.available ? 'available' : a.reason}`);
  }

  const children = new Children();
  mkdirSync(cli.dir, { recursive: true });
  const storageRoot = mkdtempSync(join(cli.dir, 'tandem-bench-'));
  const runRoot = mkdtempSync(join(tmpdir(), 'tb-'));
  const cleanup = (): void => {
    children.killAll();
    rmSync(storageRoot, { recursive: true, force: true });
    rmSync(runRoot, { recursive: true, force: true });
  };
  let aborted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: stopping every child process and removing temporary files`);
    aborted = true;
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', cleanup);

  const fioSeconds = rounds * runnable.length * workloads.length * (runtimeSec + warmupSec + 1);
  log(
    `${runnable.length} system(s), ${rounds} round(s), ${workloads.length} workload(s) of ${runtimeSec} s (+${warmupSec} s warm-up)` +
      `${sync ? ' + initial sync' : ''}: at least ${fioSeconds} s of fio, plus setup`,
  );
  const startedAt = new Date();
  const host = await hostInfo(storageRoot);
  try {
    const out = await runBenchmark(runnable, {
      rounds,
      runtimeSec,
      warmupSec,
      fileSizeBytes,
      syncSizeBytes,
      workloads,
      sync,
      storageRoot,
      runRoot,
      children,
      log,
      nodeArgs:
        cli.cpuProf === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${resolve(cli.cpuProf)}`],
      aborted: () => aborted,
    });
    await children.stopAll();
    const finishedAt = new Date();
    const report = buildReport(
      {
        quick: cli.quick,
        startedAt: startedAt.toISOString(),
        finishedAt: finishedAt.toISOString(),
        rounds,
        runtimeSec,
        warmupSec,
        fileSizeBytes,
        syncSizeBytes,
        storageDir: cli.dir,
        host: {
          ...host,
          'load average at end': loadavg()
            .map((x) => x.toFixed(2))
            .join(' '),
        },
      },
      entries.map((e) => ({ ...e, notes: out.notes.get(e.id) ?? [] })),
      [...workloads.map((w): SampleWorkloadId => w.id), ...(sync ? (['sync'] as const) : [])],
      out.samples,
    );
    const outDir = resolve(packageRoot, cli.out);
    mkdirSync(outDir, { recursive: true });
    const base = join(outDir, `${stamp(startedAt)}${cli.quick ? '-quick' : ''}`);
    const md = renderMarkdown(report);
    writeFileSync(`${base}.json`, JSON.stringify(report, null, 2) + '\n');
    writeFileSync(`${base}.md`, md);
    process.stdout.write(md);
    log(`wrote ${base}.md and ${base}.json`);
    return out.samples.some((s) => !s.ok) ? 1 : 0;
  } finally {
    cleanup();
  }
}

const program = new Command('bench')
  .description('fio over NBD against Tandem, nbdkit and a qemu-storage-daemon mirror, interleaved')
  .option('--quick', 'short smoke run: 1 round, 1 s runs, 256 MiB files', false)
  .option(
    '--rounds <n>',
    'rounds (systems interleaved within each) (default: 3, quick 1)',
    positiveInt('rounds'),
  )
  .option('--runtime <s>', 'seconds per fio run (default: 5, quick 1)', positiveInt('runtime'))
  .option(
    '--warmup <s>',
    'unmeasured seconds of each workload after each start, for every system (default: 1; 0: none)',
    (v: string): number => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0)
        throw new InvalidArgumentError('warmup must be a non-negative integer');
      return n;
    },
  )
  .option(
    '--size-mib <n>',
    'size of every export in MiB (default: 1024, quick 256)',
    positiveInt('size'),
  )
  .option(
    '--sync-size-mib <n>',
    'size of the initial sync in MiB (default: 1024, quick 256)',
    positiveInt('sync size'),
  )
  .option(
    '--systems <ids>',
    `comma-separated, from: ${ALL_SYSTEMS.map((s) => `${s.id}${s.optIn === true ? ' (opt-in)' : ''}`).join(', ')}`,
    list,
  )
  .option(
    '--workloads <ids>',
    `comma-separated subset of: ${WORKLOADS.map((w) => w.id).join(',')},sync`,
    list,
  )
  .option('--dir <dir>', 'directory on the storage under test', '/var/tmp')
  .option(
    '--cpu-prof <dir>',
    "run Tandem's processes with node --cpu-prof, writing .cpuprofile files to <dir>",
  )
  .option('--out <dir>', 'results directory (relative to the package root)', 'bench/results')
  .action(async (opts: Cli) => {
    process.exitCode = await main(opts);
  });

await program.parseAsync();
