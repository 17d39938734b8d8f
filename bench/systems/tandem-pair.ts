// Tandem with two nodes on one loopback: two tandemd processes (alpha Primary, beta Secondary)
// replicating one resource with protocol C, B or A over the tcp transport (or, as they land,
// the fabric transport's tcp provider and a two-path multipath session); fio drives alpha.
// Both daemons are the system: CPU and RSS are summed over them. Driven through the control
// socket with the CLI's own client, so the harness waits on events, never on sleeps.
// `tandem-solo` is one tandemd with a single-host resource (no peer), Primary: the engine and
// daemon path alone, beside the standalone export. Each reports alpha's write-stage breakdown.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, streamEvents } from '../../src/cli/control-client.js';
import { EventState, allConnected, allInSync } from '../../src/cli/event-state.js';
import type { ChildHandle } from '../children.js';
import { measureProcesses, realProcFs } from '../proc.js';
import type { WriteStagesStatus } from '../../src/replication/write-stages.js';
import type { ResourceStatus } from '../../src/daemon/status.js';
import type {
  Availability,
  RunningSystem,
  StartContext,
  SyncMeasurement,
  System,
} from '../types.js';
import { filesMatchSampled, freePort, preallocate, waitFor } from '../util.js';
import { syncTimeoutMs, SYNC_VERIFY_SAMPLES } from './nbdkit.js';
import { CertDir } from '../../test/support/tls-certs.js';

export type Protocol = 'A' | 'B' | 'C';
export type PairTransport = 'tcp' | 'fabric' | 'multipath';
/** Paths of the multipath session (each its own TCP connection on loopback). */
const MULTIPATH_PATHS = 2;

const RESOURCE = 'bench';
/**
 * Size of each node's external (flexible) metadata file: superblock, activity log and a bitmap
 * for one peer need about 1 MiB per GiB of data; this leaves room up to 32 GiB. External
 * metadata keeps the data file, the export and the bytes a sync moves exactly fileSizeBytes.
 */
export const METADATA_FILE_BYTES = 64 * 2 ** 20;
const DAEMON_READY_TIMEOUT_MS = 15_000;
const CONNECT_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 30_000;

/** Which build runs: this one, or (a baseline system) another built checkout's dist/. */
interface Build {
  readonly daemon: string;
  readonly cli: string;
}
const thisBuild: Build = {
  daemon: fileURLToPath(new URL('../../src/daemon/main.js', import.meta.url)),
  cli: fileURLToPath(new URL('../../src/cli/main.js', import.meta.url)),
};
const daemonScript = thisBuild.daemon;

/**
 * TANDEM_BENCH_BASELINE=DIR: a checkout of an earlier commit, built (`npm ci` there), whose
 * protocol-C pair runs as `tandem-C-baseline` in the same interleaved run, so a data-path
 * change is measured before and after against the same peers, files and load.
 */
export const BASELINE_ENV = 'TANDEM_BENCH_BASELINE';
function baselineBuild(): Build | null {
  const dir = process.env[BASELINE_ENV];
  if (dir === undefined || dir === '') return null;
  return {
    daemon: join(dir, 'dist', 'src', 'daemon', 'main.js'),
    cli: join(dir, 'dist', 'src', 'cli', 'main.js'),
  };
}
/** Writing fresh metadata onto a preallocated file is quick; this is only a bound. */
const CREATE_MD_TIMEOUT_MS = 30_000;

export interface PairNode {
  readonly name: string;
  readonly nodeId: number;
  readonly nbdPort: number;
  /** One replication port per path (a single one unless the transport is multipath). */
  readonly replicationPorts: readonly number[];
  readonly disk: string;
  readonly metaDisk: string;
}

/** One node's TLS identity (PEM files), for `net { tls yes; }`. */
export interface PairTls {
  readonly certificate: string;
  readonly privkey: string;
  readonly ca: string;
}

/**
 * The drbd.conf-syntax configuration the daemons read (each picks its `on` section). With
 * `tls`, the configuration of one node: its own certificate in `net { }` (as each machine has
 * its own files), so each node gets a file of its own.
 */
export function renderPairConfig(
  protocol: Protocol,
  transport: PairTransport,
  nodes: readonly PairNode[],
  diskFlushes = true,
  resyncDefaults = false,
  tls: PairTls | null = null,
): string {
  const tlsNet =
    tls === null
      ? ''
      : ` tls yes; tls-certificate ${tls.certificate}; tls-privkey ${tls.privkey}; tls-ca ${tls.ca};`;
  const lines = [
    '# Written by the Tandem bench harness: two nodes on one loopback.',
    `resource ${RESOURCE} {`,
    `  net { protocol ${protocol}; transport ${transport};${tlsNet} }`,
    // Resync unthrottled (fixed rate at the maximum), as nbdcopy and the qsd mirror are, unless
    // the run is about the defaults a new user gets (no resync option in the file).
    // Without diskFlushes: DRBD's tuning for non-volatile write caches, no flush of the backing
    // disk at every epoch boundary (nbdkit and the qsd mirror flush only when the client asks).
    `  disk {${resyncDefaults ? '' : ' c-plan-ahead 0; resync-rate 8388608; c-max-rate 4194304;'}${diskFlushes ? '' : ' disk-flushes no; md-flushes no;'} }`,
  ];
  for (const n of nodes) {
    lines.push(
      `  on ${n.name} {`,
      `    node-id ${n.nodeId};`,
      `    device nbd://127.0.0.1:${n.nbdPort}/${RESOURCE};`,
      `    disk ${n.disk};`,
      `    meta-disk ${n.metaDisk};`,
    );
    if (transport !== 'multipath') lines.push(`    address 127.0.0.1:${n.replicationPorts[0]};`);
    lines.push('  }');
  }
  if (transport === 'multipath') {
    lines.push('  connection {');
    const paths = Math.min(...nodes.map((n) => n.replicationPorts.length));
    for (let i = 0; i < paths; i++) {
      lines.push('    path {');
      for (const n of nodes)
        lines.push(`      host ${n.name} address 127.0.0.1:${n.replicationPorts[i]};`);
      lines.push('    }');
    }
    lines.push('  }');
  }
  lines.push('}', '');
  return lines.join('\n');
}

/** Resolves once `cond` holds on the daemon's event state; rejects after timeoutMs with the state. */
async function waitState(
  controlPath: string,
  what: string,
  cond: (s: EventState) => boolean,
  timeoutMs: number,
): Promise<void> {
  const state = new EventState();
  let timer: NodeJS.Timeout | undefined;
  const seen = (): string =>
    (['connection', 'device', 'peer-device'] as const)
      .map((o) => `${o} ${JSON.stringify(state.all(o, RESOURCE))}`)
      .join('; ');
  try {
    await Promise.race([
      streamEvents(controlPath, true, (e) => {
        state.apply(e);
        return state.snapshotDone && cond(state);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${RESOURCE}: not ${what} after ${timeoutMs} ms (${seen()})`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function withTimeout<T>(what: string, p: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what}: no reply in ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A failure that says all there is to say: no daemon log lines appended. */
class NotWiredError extends Error {}

/** A failure with the last lines each daemon logged, which usually say why. */
function withDaemonOutput(e: unknown, daemons: readonly ChildHandle[]): Error {
  if (e instanceof NotWiredError) return e;
  const why = e instanceof Error ? e.message : String(e);
  const logs = daemons.map((d) => `${d.name}: …${d.output().slice(-800).trim()}`).join(' | ');
  return new Error(daemons.length === 0 ? why : `${why} [${logs}]`);
}

/** The transport name the Primary's status reports for its (first) peer connection. */
async function transportInUse(controlPath: string): Promise<string> {
  const status = await withTimeout(
    'status',
    request(controlPath, 'status', { resource: RESOURCE }),
    REQUEST_TIMEOUT_MS,
  );
  const peers = (
    status as { peers?: { transport?: { name?: unknown }; paths?: { transport?: unknown }[] }[] }[]
  )[0]?.peers;
  const peer = peers?.[0];
  const name = peer?.transport?.name ?? peer?.paths?.[0]?.transport;
  return typeof name === 'string' && name !== '' ? name : 'unknown';
}

/** Whether the Primary's (first) peer connection reports a TLS session in status. */
async function tlsInUse(controlPath: string): Promise<boolean> {
  const status = await withTimeout(
    'status',
    request(controlPath, 'status', { resource: RESOURCE }),
    REQUEST_TIMEOUT_MS,
  );
  const tls = (status as { peers?: { tls?: unknown }[] }[])[0]?.peers?.[0]?.tls;
  return typeof tls === 'string' && tls.startsWith('TLS');
}

/** alpha's `writeStages` from `status --json`. */
async function writeStagesOf(controlPath: string): Promise<WriteStagesStatus> {
  const status = await withTimeout(
    'status',
    request(controlPath, 'status', { resource: RESOURCE }),
    REQUEST_TIMEOUT_MS,
  );
  const ws = (status as { writeStages?: WriteStagesStatus }[])[0]?.writeStages;
  if (typeof ws?.stages?.total?.count !== 'number')
    throw new Error('status --json has no writeStages (a tandemd without the stage breakdown)');
  return ws;
}

interface Pair {
  readonly daemons: readonly ChildHandle[];
  readonly controls: readonly string[];
  readonly nodes: readonly PairNode[];
  readonly config: string;
  stop(): Promise<void>;
}

/**
 * Writes the config, starts both daemons, brings the resource up and waits for Connected; with
 * `solo`, alpha alone (a single-host resource: nothing to connect to).
 */
async function launchPair(
  ctx: StartContext,
  protocol: Protocol,
  transport: PairTransport,
  diskFlushes: boolean,
  build: Build = thisBuild,
  solo = false,
  resyncDefaults = false,
  tls = false,
): Promise<Pair> {
  const nodes: PairNode[] = [];
  for (const [i, name] of (solo ? ['alpha'] : ['alpha', 'beta']).entries()) {
    nodes.push({
      name,
      nodeId: i,
      nbdPort: await freePort(),
      replicationPorts: await Promise.all(
        Array.from({ length: transport === 'multipath' ? MULTIPATH_PATHS : 1 }, () => freePort()),
      ),
      disk: join(ctx.storageDir, `${name}.img`),
      metaDisk: join(ctx.storageDir, `${name}.md`),
    });
  }
  for (const n of nodes) {
    await preallocate(n.disk, ctx.fileSizeBytes, n.nodeId === 0 ? 'random' : 'zero');
    await preallocate(n.metaDisk, METADATA_FILE_BYTES, 'zero');
  }
  const config = join(ctx.runDir, 'tandem.conf');
  await writeFile(
    config,
    renderPairConfig(protocol, transport, nodes, diskFlushes, resyncDefaults),
  );
  // TLS: a CA and one certificate per node, made with openssl now, and a file per node.
  const certs = tls ? await CertDir.create() : null;
  const configOf = new Map<string, string>();
  if (certs !== null) {
    const ca = await certs.ca('bench-ca');
    for (const n of nodes) {
      const leaf = await certs.leaf(ca, n.name);
      const file = join(ctx.runDir, `tandem.${n.name}.conf`);
      await writeFile(
        file,
        renderPairConfig(protocol, transport, nodes, diskFlushes, resyncDefaults, {
          ...leaf,
          ca: ca.certificate,
        }),
      );
      configOf.set(n.name, file);
    }
  }
  const configFor = (name: string): string => configOf.get(name) ?? config;
  const daemons: ChildHandle[] = [];
  const controls: string[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(
      controls.map((c) =>
        withTimeout('down', request(c, 'down', { resource: RESOURCE }), REQUEST_TIMEOUT_MS).catch(
          () => undefined,
        ),
      ),
    );
    await Promise.all(daemons.map((d) => d.stop()));
    await certs?.destroy();
  };
  try {
    // Fresh v09 metadata on each node, as an admin would: `tandem create-md RES` (drbdadm's).
    for (const n of nodes) {
      await ctx.children.run(
        `create-md ${n.name}`,
        process.execPath,
        [
          build.cli,
          '--config',
          configFor(n.name),
          '--node',
          n.name,
          'create-md',
          RESOURCE,
          '--force',
        ],
        CREATE_MD_TIMEOUT_MS,
      );
    }
    for (const n of nodes) {
      const control = join(ctx.runDir, `${n.name}.sock`);
      const d = await ctx.children.start(
        `tandemd-${n.name}`,
        process.execPath,
        [
          ...ctx.nodeArgs,
          build.daemon,
          '--config',
          configFor(n.name),
          '--node',
          n.name,
          '--control',
          control,
        ],
        { env: { ...process.env, FI_PROVIDER: 'tcp' } },
      );
      daemons.push(d);
      controls.push(control);
      await waitFor(`tandemd ${n.name}`, () => existsSync(control), DAEMON_READY_TIMEOUT_MS, [d]);
    }
    ctx.log(`${RESOURCE}: daemons up, bringing the resource up on both nodes`);
    for (const c of controls)
      await withTimeout('up', request(c, 'up', { resource: RESOURCE }), REQUEST_TIMEOUT_MS);
    if (solo) return { daemons, controls, nodes, config, stop };
    // Connected is not enough: promote only once replication is Established (the peers'
    // handshake done), as a careful admin script would after `wait-connect`.
    await waitState(
      controls[0] ?? '',
      'connected and Established',
      (s) =>
        allConnected(s, RESOURCE) &&
        s.all('peer-device', RESOURCE).length > 0 &&
        s.all('peer-device', RESOURCE).every((p) => p['replication'] === 'Established'),
      CONNECT_TIMEOUT_MS,
    );
    const used = await transportInUse(controls[0] ?? '');
    ctx.log(`${RESOURCE}: connected over ${used}${tls ? ' with TLS' : ''}`);
    if (tls && !(await tlsInUse(controls[0] ?? '')))
      throw new Error('tls yes is configured but the connection does not report a TLS session');
    // A daemon that accepts `transport fabric` but dials TCP must not pass off TCP's numbers.
    if (transport !== 'tcp' && used !== transport)
      throw new NotWiredError(
        `tandemd replicates over "${used}", not "${transport}": the ${transport} transport is not wired into the daemon yet`,
      );
    return { daemons, controls, nodes, config, stop };
  } catch (e) {
    await stop();
    throw withDaemonOutput(e, daemons);
  }
}

function pairSystem(
  protocol: Protocol,
  transport: PairTransport,
  diskFlushes = true,
  baseline: Build | null = null,
  tls = false,
): System {
  const build = baseline ?? thisBuild;
  const id = `tandem-${protocol}${transport === 'tcp' ? '' : `-${transport}`}${tls ? '-tls' : ''}${diskFlushes ? '' : '-noflush'}${baseline === null ? '' : '-baseline'}`;
  const over =
    transport === 'tcp'
      ? 'the tcp transport'
      : transport === 'fabric'
        ? "the fabric transport (libfabric's tcp provider)"
        : `a multipath session of ${MULTIPATH_PATHS} TCP paths`;
  return {
    id,
    label:
      `Tandem, two nodes (tandemd alpha Primary → beta), protocol ${protocol} over ${over} on loopback` +
      (tls ? ', TLS on both streams (net { tls yes; }, openssl-made certificates)' : '') +
      (diskFlushes ? '' : ', disk-flushes no, md-flushes no') +
      (baseline === null ? '' : `, the baseline build in $${BASELINE_ENV}`),
    kind: 'tandem',
    ...(diskFlushes ? {} : { optIn: true }),

    probe: async () => {
      if (tls && !(await haveOpenssl()))
        return { available: false, reason: 'needs openssl (apt-get install openssl)' };
      return probeDaemon(build.daemon);
    },

    async start(ctx: StartContext): Promise<RunningSystem> {
      const p = await launchPair(ctx, protocol, transport, diskFlushes, build, false, false, tls);
      try {
        const alpha = p.controls[0] ?? '';
        // Like qsd-mirror's start: a full initial sync to the peer before fio (not measured
        // here; initialSync below measures it).
        ctx.log(`${RESOURCE}: primary --force on alpha, waiting for the initial sync`);
        await forcePrimary(
          alpha,
          'in sync',
          (s) => allInSync(s, RESOURCE),
          syncTimeoutMs(ctx.fileSizeBytes),
        );
        const n = p.nodes[0];
        return {
          uri: `nbd://127.0.0.1:${n?.nbdPort ?? 0}/${RESOURCE}`,
          pids: () => p.daemons.map((d) => d.pid),
          notes: [
            `tandemd --config CONF --node alpha|beta; protocol ${protocol}${tls ? '; tls yes (a CA and a certificate per node made with openssl)' : ''}; create-md; up; primary --force; wait until UpToDate/UpToDate`,
          ],
          stop: () => p.stop(),
          writeStages: () => writeStagesOf(alpha),
        };
      } catch (e) {
        await p.stop();
        throw withDaemonOutput(e, p.daemons);
      }
    },

    async initialSync(ctx: StartContext): Promise<SyncMeasurement> {
      const p = await launchPair(ctx, protocol, transport, diskFlushes, build, false, false, tls);
      try {
        const alpha = p.controls[0] ?? '';
        const m = await measureProcesses(
          realProcFs,
          () => p.daemons.map((d) => d.pid),
          async () => {
            await forcePrimary(
              alpha,
              'in sync',
              (s) => allInSync(s, RESOURCE),
              syncTimeoutMs(ctx.fileSizeBytes),
            );
          },
        );
        const [a, b] = p.nodes;
        if (a === undefined || b === undefined) throw new Error('pair without two nodes');
        if (!(await filesMatchSampled(a.disk, b.disk, ctx.fileSizeBytes, SYNC_VERIFY_SAMPLES)))
          throw new Error('resync reported UpToDate but the replica differs from the source');
        return {
          bytes: ctx.fileSizeBytes,
          seconds: m.seconds,
          cpuSeconds: m.cpuSeconds,
          peakRssBytes: m.peakRssBytes,
          method: `primary --force on alpha until UpToDate/UpToDate (protocol ${protocol})`,
        };
      } catch (e) {
        throw withDaemonOutput(e, p.daemons);
      } finally {
        await p.stop();
      }
    },
  };
}

/** `tandem primary --force` on one node (a new data generation), then wait for `until`. */
async function forcePrimary(
  control: string,
  what: string,
  until: (s: EventState) => boolean,
  timeoutMs: number,
): Promise<void> {
  await withTimeout(
    'primary --force',
    request(control, 'primary', { resource: RESOURCE, flags: { force: true } }),
    REQUEST_TIMEOUT_MS,
  );
  await waitState(control, what, until, timeoutMs);
}

function haveOpenssl(): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('openssl', ['version'], { timeout: 5000 }, (e) => resolve(e === null));
  });
}

/** The daemon on main may still be the stub that refuses to run; then say so. */
async function probeDaemon(daemon: string = daemonScript): Promise<Availability> {
  if (!existsSync(daemon))
    return { available: false, reason: `${daemon} is missing (run npm run build)` };
  const dir = await mkdtemp(join(tmpdir(), 'tb-probe-'));
  try {
    const stderr = await new Promise<string>((resolve) => {
      execFile(
        process.execPath,
        [
          daemon,
          '--config',
          join(dir, 'none.conf'),
          '--node',
          'probe',
          '--control',
          join(dir, 'c.sock'),
        ],
        { timeout: 5000 },
        (_e, _stdout, err) => resolve(err),
      );
    });
    if (/not implemented/i.test(stderr))
      return {
        available: false,
        reason: 'not available yet: needs tandemd (the daemon on main is a stub)',
      };
    return { available: true };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * One tandemd, a single-host resource made Primary with --force (a new data generation: there
 * is no peer to sync from); fio drives its export.
 */
export const tandemSoloSystem: System = {
  id: 'tandem-solo',
  label: 'Tandem, one tandemd: a single-host resource (no peer), Primary',
  kind: 'tandem',

  probe: () => probeDaemon(),

  async start(ctx: StartContext): Promise<RunningSystem> {
    const p = await launchPair(ctx, 'C', 'tcp', true, thisBuild, true);
    try {
      const alpha = p.controls[0] ?? '';
      ctx.log(`${RESOURCE}: primary --force on alpha (single host)`);
      await forcePrimary(
        alpha,
        'Primary and UpToDate',
        (s) =>
          s.get('resource', RESOURCE)?.['role'] === 'Primary' &&
          s.all('device', RESOURCE).some((d) => d['disk'] === 'UpToDate'),
        REQUEST_TIMEOUT_MS,
      );
      return {
        uri: `nbd://127.0.0.1:${p.nodes[0]?.nbdPort ?? 0}/${RESOURCE}`,
        pids: () => p.daemons.map((d) => d.pid),
        notes: [
          'tandemd --config CONF --node alpha, a resource with one `on` host; create-md; up; primary --force',
        ],
        stop: () => p.stop(),
        writeStages: () => writeStagesOf(alpha),
      };
    } catch (e) {
      await p.stop();
      throw withDaemonOutput(e, p.daemons);
    }
  },
};

/** DRBD's default c-max-rate: what a default-options resync should reach, and soon. */
export const DEFAULT_C_MAX_RATE_BYTES = 100 * 1024 * 1024;
/** Status samples while the default-options sync runs. */
const RAMP_SAMPLE_MS = 250;
/** The rate is the out-of-sync drop over this trailing window. */
const RAMP_WINDOW_MS = 1000;

/**
 * When a sync first ran at `rateBytes` (within 5 %: sampling jitter), from samples of the
 * source's out-of-sync bytes: the end of the first trailing window whose drop reached it.
 */
export function rampSeconds(
  samples: readonly { readonly ms: number; readonly outOfSyncBytes: number }[],
  rateBytes: number,
  windowMs = RAMP_WINDOW_MS,
): number | null {
  let from = 0;
  for (let i = 0; i < samples.length; i++) {
    const end = samples[i];
    if (end === undefined) continue;
    while ((samples[from + 1]?.ms ?? Infinity) <= end.ms - windowMs) from++;
    const start = samples[from];
    if (start === undefined || end.ms - start.ms < windowMs) continue;
    const rate = ((start.outOfSyncBytes - end.outOfSyncBytes) * 1000) / (end.ms - start.ms);
    if (rate >= 0.95 * rateBytes) return end.ms / 1000;
  }
  return null;
}

/**
 * Protocol C with no resync option in the file (DRBD's defaults: the c-plan-ahead controller,
 * c-fill-target 50 KiB, c-max-rate 100 MiB/s): only the initial sync, with how long the rate
 * took to reach c-max-rate. Issue 16 wants that within 5 s.
 */
export const tandemSyncDefaultsSystem: System = {
  id: 'tandem-C-sync-defaults',
  label: 'Tandem, two nodes, protocol C, default resync options (initial sync only)',
  kind: 'tandem',
  syncOnly: true,

  probe: () => probeDaemon(),

  start(): Promise<RunningSystem> {
    return Promise.reject(new Error('tandem-C-sync-defaults measures the initial sync only'));
  },

  async initialSync(ctx: StartContext): Promise<SyncMeasurement> {
    const p = await launchPair(ctx, 'C', 'tcp', true, thisBuild, false, true);
    try {
      const alpha = p.controls[0] ?? '';
      const samples: { ms: number; outOfSyncBytes: number }[] = [];
      let done = false;
      let t0 = 0;
      const sampler = (async (): Promise<void> => {
        while (!done) {
          const all = await withTimeout(
            'status',
            request(alpha, 'status', { resource: RESOURCE }),
            REQUEST_TIMEOUT_MS,
          );
          const oos = (all as ResourceStatus[])[0]?.peers[0]?.outOfSyncBytes;
          if (t0 > 0 && oos !== undefined)
            samples.push({ ms: performance.now() - t0, outOfSyncBytes: oos });
          await new Promise((r) => setTimeout(r, RAMP_SAMPLE_MS));
        }
      })();
      let m: Awaited<ReturnType<typeof measureProcesses>>;
      try {
        m = await measureProcesses(
          realProcFs,
          () => p.daemons.map((d) => d.pid),
          async () => {
            t0 = performance.now();
            await forcePrimary(
              alpha,
              'in sync',
              (s) => allInSync(s, RESOURCE),
              syncTimeoutMs(ctx.fileSizeBytes),
            );
          },
        );
      } finally {
        done = true;
        await sampler;
      }
      const ramp = rampSeconds(samples, DEFAULT_C_MAX_RATE_BYTES);
      return {
        bytes: ctx.fileSizeBytes,
        seconds: m.seconds,
        cpuSeconds: m.cpuSeconds,
        peakRssBytes: m.peakRssBytes,
        rampSeconds: ramp,
        method:
          'primary --force on alpha until UpToDate/UpToDate, no resync option in the file ' +
          `(status sampled every ${RAMP_SAMPLE_MS} ms; ramp = first ${RAMP_WINDOW_MS} ms window at ≥ 95 % of 100 MiB/s)`,
      };
    } catch (e) {
      throw withDaemonOutput(e, p.daemons);
    } finally {
      await p.stop();
    }
  },
};

export const tandemPairSystems: readonly System[] = [
  pairSystem('C', 'tcp'),
  // What TLS costs: tandem-C with `net { tls yes; }`.
  pairSystem('C', 'tcp', true, null, true),
  pairSystem('C', 'tcp', false),
  pairSystem('B', 'tcp'),
  pairSystem('A', 'tcp'),
  pairSystem('C', 'fabric'),
  pairSystem('C', 'multipath'),
  tandemSyncDefaultsSystem,
  ...((b) => (b === null ? [] : [pairSystem('C', 'tcp', true, b)]))(baselineBuild()),
];
