// Multipath under a real write load (issue 8's acceptance test): two tandemd processes in two
// network namespaces, a connection with two paths, "interconnect" (203.0.113.0/24, first, so
// preferred) and "ethernet" (198.51.100.0/24); fio writes with verify through the Primary's
// NBD export while the test cuts the interconnect (ip link down, alternately on the Primary's
// side and, silently, on the peer's side) and restores it. fio sees no error, each cut is a
// failover and each restore a failback (status counters fed by the session's path events), no
// resync happens and both disks end identical. The completion-latency stall around each switch
// is measured from fio's latency log and printed (docs/TRANSPORTS.md records it).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { NetnsPair, requireRoot } from '../support/netns.js';
import { peerEnv, requirePeers } from '../support/peers.js';
import {
  MIB,
  fileSha,
  peerStatus,
  skipInitialSync,
  status,
  waitConnected,
  waitInSync,
  waitUntil,
  withPair,
} from '../e2e/support.js';

const DISK_BYTES = 64 * MIB;
const FIO_REGION = 32 * MIB;
const PING_TIMEOUT_MS = 500;

interface Fio {
  /** ms (performance.now()) when fio was started; its log times count from about then. */
  readonly startMs: number;
  /** Stops fio (SIGINT: it ends its jobs and prints its report) and returns the job's result. */
  stop(): Promise<{ error: number; writes: number; verifyReads: number; stderr: string }>;
}

function startFio(dir: string, uri: string): Fio {
  const args = [
    '--name=load',
    '--ioengine=nbd',
    `--uri=${uri}`,
    '--rw=randwrite',
    '--bs=4k',
    `--size=${FIO_REGION}`,
    '--iodepth=8',
    '--time_based',
    '--runtime=600',
    '--verify=crc32c',
    // Verify what was written while writing, not only at the end.
    '--verify_backlog=512',
    '--write_lat_log=lat',
    '--log_offset=0',
    '--output-format=json',
  ];
  const p = spawn('fio', args, { cwd: dir, env: peerEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const startMs = performance.now();
  let out = '';
  let err = '';
  p.stdout.on('data', (c: Buffer) => (out += c.toString()));
  p.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const closed = new Promise<void>((r) => p.on('close', () => r()));
  return {
    startMs,
    async stop() {
      if (p.exitCode === null) p.kill('SIGINT');
      await closed;
      const i = out.indexOf('{');
      assert.ok(i >= 0, `fio printed no report:\n${err}`);
      const job = (
        JSON.parse(out.slice(i)) as {
          jobs: { error: number; write: { total_ios: number }; read: { total_ios: number } }[];
        }
      ).jobs[0];
      assert.ok(job, 'a fio job report');
      return {
        error: job.error,
        writes: job.write.total_ios,
        verifyReads: job.read.total_ios,
        stderr: err,
      };
    },
  };
}

/** Longest write completion latency (ms) logged in [fromMs, toMs) of fio time. */
async function maxLatency(dir: string, windows: readonly [number, number][]): Promise<number[]> {
  const text = await readFile(join(dir, 'lat_clat.1.log'), 'utf8');
  const max = windows.map(() => 0);
  for (const line of text.split('\n')) {
    const [t, ns, dir] = line.split(',').map((x) => Number(x.trim()));
    if (t === undefined || ns === undefined || dir !== 1) continue;
    windows.forEach(([a, b], i) => {
      if (t >= a && t < b) max[i] = Math.max(max[i]!, ns / 1e6);
    });
  }
  return max;
}

async function onPath(c: LocalCluster, prefix: string, timeoutMs = 20_000): Promise<void> {
  await waitUntil(
    async () => (await peerStatus(c, 'alice')).activePath.includes(`:${prefix}.`),
    `alice: session on ${prefix}.0/24`,
    timeoutMs,
  );
}

interface Scenario {
  readonly cycles: number;
  /** Packet loss (%) on the Ethernet path, the one that carries the load during cuts. */
  readonly lossPercent?: number;
}

function pair(ns: NetnsPair) {
  const ic = ns.net('interconnect');
  const eth = ns.net('ethernet');
  return {
    diskBytes: DISK_BYTES,
    ips: {
      paths: [
        [ic.addrA, ic.addrB],
        [eth.addrA, eth.addrB],
      ] as [string, string][],
    },
    wrap: (n: string) => ['ip', 'netns', 'exec', n === 'alice' ? ns.nsA : ns.nsB],
    // The test flaps the interconnect on purpose: no hold-down here.
    net: `    ping-timeout ${PING_TIMEOUT_MS / 100};\n    timeout 30;\n    path-flaps-max 10000;`,
  };
}

function withNetns(body: (ns: NetnsPair) => Promise<void>): Promise<void> {
  const ns = NetnsPair.create([
    { name: 'interconnect', prefix: '203.0.113' },
    { name: 'ethernet', prefix: '198.51.100' },
  ]);
  return body(ns).finally(() => ns.cleanup());
}

async function cutsUnderFio(t: TestContext, sc: Scenario): Promise<void> {
  await withNetns((ns) =>
    withPair(pair(ns), async (c) => {
      await skipInitialSync(c, 'alice');
      const before = await peerStatus(c, 'alice');
      if (sc.lossPercent !== undefined) ns.setLoss('ethernet', sc.lossPercent);
      const fio = startFio(c.dir, c.node('alice').nbdUri);
      const failovers: [number, number][] = [];
      const failbacks: [number, number][] = [];
      const fioMs = (): number => performance.now() - fio.startMs;
      try {
        for (let i = 0; i < sc.cycles; i++) {
          const side = i % 2 === 0 ? 'a' : 'b';
          const cut = fioMs();
          ns.setLink('interconnect', side, false);
          await onPath(c, '198.51.100');
          failovers.push([cut, fioMs() + 200]);
          const heal = fioMs();
          ns.setLink('interconnect', side, true);
          await onPath(c, '203.0.113');
          failbacks.push([heal, fioMs() + 200]);
        }
      } finally {
        const r = await fio.stop();
        assert.equal(r.error, 0, `fio reported an error:\n${r.stderr}`);
        assert.doesNotMatch(r.stderr, /verify|bad magic|error/i, 'fio stderr is clean');
        assert.ok(r.writes > 0 && r.verifyReads > 0, `fio wrote and verified (${r.writes})`);
      }
      const after = await peerStatus(c, 'alice');
      assert.equal(after.connection, 'Connected');
      assert.ok(after.failovers >= sc.cycles, `${sc.cycles} failovers (${after.failovers})`);
      assert.ok(after.failbacks >= sc.cycles, `${sc.cycles} failbacks (${after.failbacks})`);
      assert.equal(after.resyncBytes, before.resyncBytes, 'no resync');
      assert.equal(after.outOfSyncBytes, 0, 'the bitmap stayed empty');
      await waitInSync(c, 'bob');
      const size = (await status(c, 'alice')).sizeBytes;
      assert.equal(
        await fileSha(c.node('bob').diskPath, size),
        await fileSha(c.node('alice').diskPath, size),
        'both data regions are identical',
      );
      const fo = await maxLatency(c.dir, failovers);
      const fb = await maxLatency(c.dir, failbacks);
      const fmt = (xs: number[]): string =>
        `max ${Math.max(...xs).toFixed(0)} ms, median ${[...xs].sort((a, b) => a - b)[xs.length >> 1]!.toFixed(0)} ms`;
      t.diagnostic(
        `${sc.cycles} cycles${sc.lossPercent ? `, ${sc.lossPercent}% loss on ethernet` : ''}: ` +
          `failover stall ${fmt(fo)}; failback stall ${fmt(fb)} (ping-timeout ${PING_TIMEOUT_MS} ms)`,
      );
    }),
  );
}

test('fio with verify through 20 interconnect cuts: no error, failover and back, no resync', async (t) => {
  if (!requireRoot(t) || !requirePeers(t, 'fio', 'fio')) return;
  await cutsUnderFio(t, { cycles: 20 });
});

test('the same with 5% packet loss on the Ethernet path', async (t) => {
  if (!requireRoot(t) || !requirePeers(t, 'fio', 'fio')) return;
  await cutsUnderFio(t, { cycles: 4, lossPercent: 5 });
});

test('both paths cut: the session ends, writes go on, a bitmap resync follows', async (t) => {
  if (!requireRoot(t) || !requirePeers(t, 'fio', 'fio')) return;
  await withNetns((ns) =>
    withPair(pair(ns), async (c) => {
      await skipInitialSync(c, 'alice');
      const before = await peerStatus(c, 'alice');
      ns.setLink('interconnect', 'a', false);
      ns.setLink('ethernet', 'a', false);
      await waitUntil(
        async () => (await peerStatus(c, 'alice')).connection !== 'Connected',
        'alice: disconnected after both paths were cut',
        30_000,
      );
      const fio = startFio(c.dir, c.node('alice').nbdUri);
      await waitUntil(
        async () => (await peerStatus(c, 'alice')).outOfSyncBytes >= MIB,
        'alice: writes while disconnected marked out of sync',
        30_000,
      );
      const r = await fio.stop();
      assert.equal(r.error, 0, `fio reported an error:\n${r.stderr}`);
      const dirty = (await peerStatus(c, 'alice')).outOfSyncBytes;
      ns.setLink('interconnect', 'a', true);
      ns.setLink('ethernet', 'a', true);
      await waitConnected(c, 'alice', 60_000);
      await waitInSync(c, 'alice', 60_000);
      await waitInSync(c, 'bob', 60_000);
      const after = await peerStatus(c, 'alice');
      const moved = after.resyncBytes - before.resyncBytes;
      assert.ok(moved >= dirty, `the resync moved the dirty blocks (${moved} >= ${dirty})`);
      assert.ok(moved <= FIO_REGION * 1.2, `and no more than fio's region (${moved})`);
      const size = (await status(c, 'alice')).sizeBytes;
      assert.equal(
        await fileSha(c.node('bob').diskPath, size),
        await fileSha(c.node('alice').diskPath, size),
        'both data regions are identical',
      );
    }),
  );
});
