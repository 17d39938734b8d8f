// The harness of the multipath fio tests (daemon-fio*.test.ts): two tandemd processes in two
// network namespaces joined by "interconnect" (203.0.113.0/24, the first path, so preferred) and
// "ethernet" (198.51.100.0/24); fio with verify on the Primary's NBD export; the Primary's events
// stream; stall figures from fio's latency log against the daemon's switch times.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { createInterface } from 'node:readline';
import { CLI_JS, type LocalCluster } from '../../src/cli/local-cluster.js';
import type { TandemEvent } from '../../src/daemon/control-protocol.js';
import { NetnsPair } from '../support/netns.js';
import { peerEnv } from '../support/peers.js';
import {
  MIB,
  fileSha,
  peerStatus,
  skipInitialSync,
  status,
  waitInSync,
  waitUntil,
  withPair,
} from '../e2e/support.js';
import { fioRandWriteArgs } from '../support/fio.js';

export const DISK_BYTES = 64 * MIB;
export const FIO_REGION = 32 * MIB;
export const PING_TIMEOUT_MS = 500;

interface Fio {
  /** Stops fio (SIGINT: it ends its jobs and prints its report) and returns the job's result. */
  stop(): Promise<{ error: number; writes: number; verifyReads: number; stderr: string }>;
}

/** fio inside `netns` (the Primary's namespace, where its NBD export is), in `dir`. */
export function startFio(dir: string, uri: string, netns: string): Fio {
  const args = [
    ...fioRandWriteArgs({ uri, size: FIO_REGION, iodepth: 8 }),
    '--time_based',
    '--runtime=600',
    // Verify what was written while writing, not only at the end.
    '--verify_backlog=512',
    '--write_lat_log=lat',
    '--log_offset=0',
    // Log times in Unix epoch ms, comparable with Date.now() at the cuts and events.
    '--log_unix_epoch=1',
    '--output-format=json',
  ];
  const p = spawn('ip', ['netns', 'exec', netns, 'fio', ...args], {
    cwd: dir,
    env: peerEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  p.stdout.on('data', (c: Buffer) => (out += c.toString()));
  p.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const closed = new Promise<void>((r) => p.on('close', () => r()));
  return {
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

/** Write completions from fio's latency log: issue and completion time (epoch ms). */
async function writes(dir: string): Promise<{ issuedMs: number; doneMs: number }[]> {
  const text = await readFile(join(dir, 'lat_clat.1.log'), 'utf8');
  const out: { issuedMs: number; doneMs: number }[] = [];
  for (const line of text.split('\n')) {
    const [doneMs, ns, dir] = line.split(',').map((x) => Number(x.trim()));
    if (doneMs === undefined || ns === undefined || dir !== 1) continue;
    out.push({ issuedMs: doneMs - ns / 1e6, doneMs });
  }
  return out;
}

/**
 * Failover stall: the longest latency of the writes in flight at some time between the cut and
 * the switch (their whole latency: the cut is what stopped them).
 */
function failoverStall(
  ws: readonly { issuedMs: number; doneMs: number }[],
  cutMs: number,
  switchMs: number,
): number {
  let m = 0;
  for (const w of ws)
    if (w.issuedMs <= switchMs && w.doneMs >= cutMs) m = Math.max(m, w.doneMs - w.issuedMs);
  return m;
}

/**
 * Failback stall: how long writes in flight at the switch, or issued within 100 ms after it,
 * stayed pending after it. Time a write spent waiting before the switch (a loss on the lossy
 * Ethernet path) is not the failback's.
 */
function failbackStall(
  ws: readonly { issuedMs: number; doneMs: number }[],
  switchMs: number,
): number {
  let m = 0;
  for (const w of ws) {
    if (w.doneMs < switchMs || w.issuedMs > switchMs + 100) continue;
    m = Math.max(m, w.doneMs - Math.max(w.issuedMs, switchMs));
  }
  return m;
}

/**
 * Time each switch is left alone before the next change, so the writes a failover stalled have
 * completed before the failback is measured, and the failback's before the next cut. This is a
 * spacing of the measurement, not a wait for a condition.
 */
const DWELL_MS = 200;
const dwell = (): Promise<void> => new Promise((r) => setTimeout(r, DWELL_MS));

/**
 * A node's `tandem events --json`, kept running for the whole test: each event with the time it
 * reached us. One long-lived stream instead of polling `status` (a CLI process per poll), which
 * loaded the 2-core machine enough to show in the stalls being measured.
 */
class EventStream {
  private readonly seen: { atMs: number; e: TandemEvent }[] = [];
  /** Epoch ms minus the daemon's clock, at its smallest (the least delayed event). */
  private offsetMs = Infinity;
  private readonly waiters = new Set<() => void>();
  private readonly child;

  constructor(c: LocalCluster, node: string) {
    const n = c.node(node);
    this.child = spawn(
      process.execPath,
      [
        CLI_JS,
        '-c',
        c.configPath,
        '-n',
        node,
        '--control',
        n.controlPath,
        'events',
        '--json',
        '--now',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      try {
        const e = JSON.parse(line) as TandemEvent;
        const atMs = Date.now();
        this.offsetMs = Math.min(this.offsetMs, atMs - e.timeMs);
        this.seen.push({ atMs, e });
      } catch {
        return;
      }
      for (const w of [...this.waiters]) w();
    });
  }

  /** Resolves once the stream is live (the daemon sent its snapshot of the current state). */
  ready(): Promise<number> {
    return this.wait((e) => e.kind === 'exists', 'events snapshot', 0);
  }

  /** Events from index `from` on. */
  since(from: number): readonly TandemEvent[] {
    return this.seen.slice(from).map((x) => x.e);
  }

  get length(): number {
    return this.seen.length;
  }

  /**
   * The first event from index `from` on that matches; resolves with when it happened (epoch
   * ms: the daemon's time of the event, mapped with the least delay seen over the pipe).
   */
  wait(
    pred: (e: TandemEvent) => boolean,
    what: string,
    from: number,
    timeoutMs = 20_000,
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = this.seen.slice(from).find((x) => pred(x.e));
        if (hit === undefined) return false;
        done();
        resolve(hit.e.timeMs + this.offsetMs);
        return true;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${what}: no event within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  stop(): void {
    this.child.kill();
  }
}

/** A session path change (failover, failback) onto a path of `prefix`.0/24. */
const switched =
  (change: 'failover' | 'failback', prefix: string) =>
  (e: TandemEvent): boolean =>
    e.object === 'path' &&
    e.props['change'] === change &&
    String(e.props['peer']).startsWith(`${prefix}.`);

interface Scenario {
  readonly cycles: number;
  /** Packet loss (%) on the Ethernet path, the one that carries the load during cuts. */
  readonly lossPercent?: number;
}

export function pair(ns: NetnsPair) {
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

export function withNetns(body: (ns: NetnsPair) => Promise<void>): Promise<void> {
  const ns = NetnsPair.create([
    { name: 'interconnect', prefix: '203.0.113' },
    { name: 'ethernet', prefix: '198.51.100' },
  ]);
  return body(ns).finally(() => ns.cleanup());
}

export async function cutsUnderFio(t: TestContext, sc: Scenario): Promise<void> {
  await withNetns((ns) =>
    withPair(pair(ns), async (c) => {
      await skipInitialSync(c, 'alice');
      const before = await peerStatus(c, 'alice');
      if (sc.lossPercent !== undefined) ns.setLoss('ethernet', sc.lossPercent);
      const events = new EventStream(c, 'alice');
      await events.ready();
      const first = events.length;
      const fio = startFio(c.dir, c.node('alice').nbdUri, ns.nsA);
      await waitUntil(
        async () => (await peerStatus(c, 'alice')).sentBytes > before.sentBytes + MIB,
        'fio writing',
      );
      const failovers: [number, number][] = [];
      const failbacks: number[] = [];
      try {
        for (let i = 0; i < sc.cycles; i++) {
          const side = i % 2 === 0 ? 'a' : 'b';
          let mark = events.length;
          const cut = Date.now();
          ns.setLink('interconnect', side, false);
          const fo = await events.wait(switched('failover', '198.51.100'), `cut ${i}`, mark);
          failovers.push([cut, fo]);
          await dwell();
          mark = events.length;

          ns.setLink('interconnect', side, true);
          // Failback needs a reconnect on the healed path (connect-int retries): on a loaded
          // machine that has taken over 20 s, so it gets longer than a failover.
          failbacks.push(
            await events.wait(switched('failback', '203.0.113'), `heal ${i}`, mark, 60_000),
          );
          await dwell();
        }
      } finally {
        events.stop();
        const r = await fio.stop();
        assert.equal(r.error, 0, `fio reported an error:\n${r.stderr}`);
        assert.doesNotMatch(r.stderr, /verify|bad magic|error/i, 'fio stderr is clean');
        assert.ok(r.writes > 0 && r.verifyReads > 0, `fio wrote and verified (${r.writes})`);
      }
      // Through every cut the connection stayed up, replication Established, the bitmap empty.
      for (const e of events.since(first)) {
        if (e.object === 'connection')
          assert.equal(e.props['connection'], 'Connected', 'connected');
        if (e.object !== 'peer-device') continue;
        assert.equal(e.props['replication'], 'Established', `no resync: ${JSON.stringify(e)}`);
        assert.equal(e.props['out-of-sync'], 0, `nothing out of sync: ${JSON.stringify(e)}`);
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
      const ws = await writes(c.dir);
      const fo = failovers.map(([cut, at]) => failoverStall(ws, cut, at));
      const fb = failbacks.map((at) => failbackStall(ws, at));
      const lat = ws.map((w) => w.doneMs - w.issuedMs).sort((a, b) => a - b);
      const pct = (q: number): string => (lat[Math.floor(q * (lat.length - 1))] ?? 0).toFixed(0);
      const fmt = (xs: number[]): string =>
        `max ${Math.max(...xs).toFixed(0)} ms, median ${[...xs].sort((a, b) => a - b)[xs.length >> 1]!.toFixed(0)} ms`;
      t.diagnostic(
        `${sc.cycles} cycles${sc.lossPercent ? `, ${sc.lossPercent}% loss on ethernet` : ''}: ` +
          `failover stall ${fmt(fo)}; failback stall ${fmt(fb)} (ping-timeout ${PING_TIMEOUT_MS} ms); ` +
          `all ${lat.length} writes: median ${pct(0.5)} ms, p99 ${pct(0.99)} ms; ` +
          `per cycle (ms): failover ${fo.map((x) => x.toFixed(0)).join(' ')}; ` +
          `failback ${fb.map((x) => x.toFixed(0)).join(' ')}`,
      );
    }),
  );
}
