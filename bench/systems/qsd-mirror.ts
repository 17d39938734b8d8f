// Baseline with synchronous replication: qemu-storage-daemon exports a file over NBD while a
// blockdev-mirror job in copy-mode write-blocking copies every write to a replica served by
// nbdkit over TCP loopback, so a write completes only once both copies have it. fio starts
// after the mirror's initial full copy (job ready); that copy is this system's initial sync.
import { join } from 'node:path';
import type { ChildHandle } from '../children.js';
import { QmpClient, parseBlockJobs } from '../qmp.js';
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
import { startNbdkitFile, syncTimeoutMs, SYNC_VERIFY_SAMPLES } from './nbdkit.js';
import { commandWorks } from './probe.js';

const SERVER_READY_TIMEOUT_MS = 15_000;
const QMP_TIMEOUT_MS = 10_000;

interface Launched {
  readonly qsd: ChildHandle;
  readonly peer: ChildHandle;
  readonly qmp: QmpClient;
  readonly uri: string;
  readonly src: string;
  readonly replica: string;
  readonly commandLine: string;
  stop(): Promise<void>;
}

async function launch(ctx: StartContext): Promise<Launched> {
  const src = join(ctx.storageDir, 'qsd-src.img');
  const tgt = join(ctx.storageDir, 'qsd-replica.img');
  await preallocate(src, ctx.fileSizeBytes, 'random');
  await preallocate(tgt, ctx.fileSizeBytes, 'zero');
  const peer = await startNbdkitFile(ctx.children, 'qsd-peer-nbdkit', tgt, ctx.runDir);
  let qsd: ChildHandle | undefined;
  try {
    const port = await freePort();
    const qmpPath = join(ctx.runDir, 'qmp.sock');
    const pidfile = join(ctx.runDir, 'qsd.pid');
    const args = [
      '--chardev',
      `socket,id=qmp0,path=${qmpPath},server=on,wait=off`,
      '--monitor',
      'chardev=qmp0',
      '--blockdev',
      `driver=file,node-name=src-file,filename=${src},aio=threads,cache.direct=off`,
      '--blockdev',
      'driver=raw,node-name=src,file=src-file',
      '--blockdev',
      `driver=nbd,node-name=tgt,server.type=inet,server.host=127.0.0.1,server.port=${peer.port}`,
      '--nbd-server',
      `addr.type=inet,addr.host=127.0.0.1,addr.port=${port}`,
      '--export',
      'type=nbd,id=exp0,node-name=src,name=vol,writable=on',
      '--pidfile',
      pidfile,
    ];
    const started = await ctx.children.start('qemu-storage-daemon', 'qemu-storage-daemon', args, {
      env: peerEnv(),
    });
    qsd = started;
    await waitFor(
      'qemu-storage-daemon',
      () => pidfileHolds(pidfile, started.pid),
      SERVER_READY_TIMEOUT_MS,
      [started, peer.child],
    );
    const qmp = await QmpClient.open(qmpPath, QMP_TIMEOUT_MS);
    const stop = async (): Promise<void> => {
      qmp.close();
      await Promise.all([started.stop(), peer.child.stop()]);
    };
    return {
      qsd: started,
      peer: peer.child,
      qmp,
      uri: `nbd://127.0.0.1:${port}/vol`,
      src,
      replica: tgt,
      commandLine: `qemu-storage-daemon ${args.join(' ')}`,
      stop,
    };
  } catch (e) {
    await Promise.all([qsd?.stop(), peer.child.stop()]);
    throw e;
  }
}

/** Starts the write-blocking mirror and waits until its initial full copy is done (ready). */
async function mirrorUntilReady(l: Launched, timeoutMs: number): Promise<string> {
  await l.qmp.execute(
    'blockdev-mirror',
    { 'job-id': 'm0', device: 'src', target: 'tgt', sync: 'full', 'copy-mode': 'write-blocking' },
    QMP_TIMEOUT_MS,
  );
  let summary = '';
  await waitFor(
    'mirror job ready',
    async () => {
      const jobs = parseBlockJobs(await l.qmp.execute('query-block-jobs', {}, QMP_TIMEOUT_MS));
      const j = jobs[0];
      if (
        j === undefined ||
        j.ioStatus !== 'ok' ||
        j.status === 'aborting' ||
        j.status === 'concluded'
      )
        throw new Error(`mirror job failed: ${JSON.stringify(jobs)}`);
      summary = `job ${j.device} ${j.status} ready=${j.ready} offset=${j.offset} len=${j.len}`;
      return j.ready;
    },
    timeoutMs,
    [l.qsd, l.peer],
  );
  return summary;
}

export const qsdMirrorSystem: System = {
  id: 'qsd-mirror',
  label: 'qemu-storage-daemon, blockdev-mirror copy-mode=write-blocking to nbdkit over TCP',
  kind: 'baseline',

  async probe() {
    for (const cmd of ['qemu-storage-daemon', 'nbdkit']) {
      const r = await commandWorks(cmd, ['--version']);
      if (!r.available)
        return {
          available: false,
          reason: `${r.reason} (apt-get install qemu-system-common nbdkit)`,
        };
    }
    return { available: true };
  },

  async start(ctx: StartContext): Promise<RunningSystem> {
    const l = await launch(ctx);
    try {
      const ready = await mirrorUntilReady(l, syncTimeoutMs(ctx.fileSizeBytes));
      return {
        uri: l.uri,
        pids: () => [l.qsd.pid, l.peer.pid],
        notes: [l.commandLine, `mirror before fio: ${ready}`],
        stop: () => l.stop(),
      };
    } catch (e) {
      await l.stop();
      throw e;
    }
  },

  async initialSync(ctx: StartContext): Promise<SyncMeasurement> {
    const l = await launch(ctx);
    try {
      const m = await measureProcesses(
        realProcFs,
        () => [l.qsd.pid, l.peer.pid],
        () => mirrorUntilReady(l, syncTimeoutMs(ctx.fileSizeBytes)),
      );
      if (!(await filesMatchSampled(l.src, l.replica, ctx.fileSizeBytes, SYNC_VERIFY_SAMPLES)))
        throw new Error('mirror reported ready but the replica differs from the source');
      return {
        bytes: ctx.fileSizeBytes,
        seconds: m.seconds,
        cpuSeconds: m.cpuSeconds,
        peakRssBytes: m.peakRssBytes,
        method: 'blockdev-mirror sync=full copy-mode=write-blocking until the job is ready',
      };
    } finally {
      await l.stop();
    }
  },
};
