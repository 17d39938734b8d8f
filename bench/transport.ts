// bench:transport — one channel's DATA throughput (4 KiB, 64 KiB, 1 MiB messages) and CONTROL
// round trip, for the TCP transport and (when the addon and provider are there) the fabric
// transport, beside iperf3, libfabric's fi_pingpong (libfabric-bin) and our native fabric_bw
// (bench/native: msg and rma bandwidth with a window in flight, the stand-in for fabtests'
// fi_msg_bw/fi_rma_bw, which Debian does not package) on the same loopback in the same run, as
// ratios; plus the fabric's zero-copy vs copied byte counters. The receiver runs in a worker
// thread (its own event loop), as iperf3's server is its own process. `bench:fabric` is the same
// run. Not part of npm test: numbers on a shared VM are noisy; nothing here asserts speed.
// BENCH_SECONDS (3), BENCH_PROVIDER (tcp), BENCH_FABRIC_BW_COMP (spin,wait,fd:
// fabric_bw's completion modes, each size run with each; the ratio uses the fastest).
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { systemClock } from '../src/platform/clock.js';
import { buildFabricBw } from './native/build.js';
import { runFabricBw, type FabricBwComp, type FabricBwMode } from './native/fabric-bw.js';
import { loadFabricAddon } from '../src/transport/fabric/addon.js';
import { fabricTransport, type FabricTransportApi } from '../src/transport/fabric/index.js';
import { tcpTransport } from '../src/transport/tcp/index.js';
import type { Channel, Endpoint, Transport } from '../src/transport/types.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const HOST = '127.0.0.1';
const PROVIDER = process.env['BENCH_PROVIDER'] ?? 'tcp';
const MSG_ECHO = 2;
const COMPS = (process.env['BENCH_FABRIC_BW_COMP'] ?? 'spin,wait,fd')
  .split(',')
  .filter((c): c is FabricBwComp => c === 'spin' || c === 'wait' || c === 'fd');
const NATIVE_BW =
  "native libfabric msg/rma bandwidth (fabric_bw, our stand-in for fabtests' fi_msg_bw/fi_rma_bw, which Debian does not package)";
const channel = { pingIntMs: 1000, pingTimeoutMs: 5000 };
type Kind = 'tcp' | 'fabric';

const SIZES = [
  ['4 KiB', 4096],
  ['64 KiB', 65536],
  ['1 MiB', 1 << 20],
] as const;

function make(kind: Kind): Transport {
  return kind === 'tcp'
    ? tcpTransport(channel)({ clock: systemClock, randomBytes })
    : fabricTransport({ provider: PROVIDER, channel })({ clock: systemClock });
}

const endpoint = (kind: Kind, port: number): Endpoint => ({
  transport: kind,
  family: 'ipv4',
  address: HOST,
  port,
});

async function receiver(kind: Kind): Promise<void> {
  const t = make(kind);
  let bytes = 0;
  const l = await t.listen(endpoint(kind, 0), (ch) => {
    ch.setReceiver((m) => {
      if (m.stream === 'data') bytes += m.payload.length;
      else if (m.type === MSG_ECHO) ch.send('control', MSG_ECHO, [m.payload]);
    });
  });
  parentPort?.on('message', (m: string) => {
    if (m === 'count') parentPort?.postMessage({ bytes });
    if (m === 'stop') void t.close().then(() => process.exit(0));
  });
  parentPort?.postMessage({ port: l.endpoint.port });
}

function received(w: Worker): Promise<number> {
  return new Promise((resolve) => {
    w.once('message', (m: { bytes: number }) => resolve(m.bytes));
    w.postMessage('count');
  });
}

/** Gbit/s the receiver got while the sender kept the stream at its high-water mark. */
async function throughput(ch: Channel, w: Worker, size: number): Promise<number> {
  const payload = randomBytes(size);
  const before = await received(w);
  const start = performance.now();
  const end = start + SECONDS * 1000;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      while (performance.now() < end) {
        if (ch.send('data', 1, [payload]) === 'over-high-water') {
          const off = ch.on('drain', () => {
            off();
            pump();
          });
          return;
        }
      }
      resolve();
    };
    pump();
  });
  // Wait until the receiver has everything that was sent.
  const sent = ch.stats().data.bytesSent;
  let got = 0;
  while (got < sent) got = await received(w);
  return ((got - before) * 8) / ((performance.now() - start) / 1000) / 1e9;
}

async function rtt(ch: Channel, n: number): Promise<{ p50: number; p99: number }> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      ch.setReceiver(() => resolve());
      ch.send('control', MSG_ECHO, [Buffer.alloc(8)]);
    });
    samples.push((performance.now() - t0) * 1000);
  }
  samples.sort((a, b) => a - b);
  return { p50: samples[Math.floor(n / 2)] ?? 0, p99: samples[Math.floor(n * 0.99)] ?? 0 };
}

/**
 * Runs a reference tool's server on a random high port (one may be taken on this shared VM:
 * a few tries) and its client until the client answers; returns what `parse` makes of it.
 */
async function reference(
  server: (port: number) => [string, string[]],
  client: (port: number) => [string, string[]],
  parse: (stdout: string) => number | null,
): Promise<number | null> {
  for (let tries = 0; tries < 5; tries++) {
    const port = randomInt(40_000, 60_000);
    const [cmd, args] = server(port);
    const s = spawn(cmd, args, { stdio: 'ignore' });
    let exited = false;
    s.on('exit', () => (exited = true));
    s.on('error', () => (exited = true));
    try {
      for (let i = 0; i < 50 && !exited; i++) {
        try {
          const [c, a] = client(port);
          const { stdout } = await promisify(execFile)(c, a, { timeout: 60_000 });
          const v = parse(stdout);
          if (v !== null) return v;
        } catch {
          await new Promise((r) => setTimeout(r, 100)); // server not up yet
        }
      }
    } finally {
      s.kill();
    }
  }
  return null;
}

const iperf3 = (): Promise<number | null> =>
  reference(
    (port) => ['iperf3', ['-s', '-1', '-p', String(port), '-B', HOST]],
    (port) => ['iperf3', ['-c', HOST, '-p', String(port), '-t', String(SECONDS), '-J']],
    (stdout) => {
      const j = JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } };
      return j.end.sum_received.bits_per_second / 1e9;
    },
  );

/** fi_pingpong keeps one message in flight: a latency-bound figure, not a bandwidth ceiling. */
const fiPingpong = (): Promise<number | null> => {
  const args = ['-p', PROVIDER, '-e', 'msg', '-I', '200', '-S', String(1 << 20)];
  return reference(
    (port) => ['fi_pingpong', [...args, '-B', String(port)]],
    (port) => ['fi_pingpong', [...args, '-P', String(port), HOST]],
    (stdout) => {
      const mbs = Number(stdout.trim().split('\n').at(-1)?.trim().split(/\s+/)[5]);
      return Number.isFinite(mbs) ? (mbs * 8 * 1e6) / 1e9 : null;
    },
  );
};

/**
 * fabric_bw msg and rma at each size, with each completion mode; returns the fastest of the modes
 * as Gbit/s under `msg SIZE` / `rma SIZE`. Prints every run, and why one is missing.
 */
async function nativeBw(): Promise<Map<string, number>> {
  const best = new Map<string, number>();
  console.log(`${NATIVE_BW}, provider ${PROVIDER}, window 64, ${SECONDS}s per run:`);
  const built = buildFabricBw();
  if (!built.ok) {
    console.log(`  fabric_bw unavailable: ${built.error}`);
    return best;
  }
  for (const mode of ['msg', 'rma'] as FabricBwMode[]) {
    for (const [name, size] of SIZES) {
      const runs: string[] = [];
      for (const comp of COMPS) {
        try {
          const r = await runFabricBw(built.binary, {
            mode,
            provider: PROVIDER,
            sizeBytes: size,
            seconds: SECONDS,
            comp,
          });
          if (r.kind === 'unsupported') {
            console.log(`  fabric_bw ${mode}: unsupported (${r.reason})`);
            return best;
          }
          const gbps = (r.bytesPerSec * 8) / 1e9;
          best.set(`${mode} ${name}`, Math.max(gbps, best.get(`${mode} ${name}`) ?? 0));
          runs.push(`${gbps.toFixed(2)} Gbit/s (-c ${comp}, counted by ${r.countedBy})`);
        } catch (e) {
          runs.push(`failed (-c ${comp}): ${(e as Error).message}`);
        }
      }
      console.log(`  fabric_bw ${mode} ${name.padEnd(6)}: ${runs.join('; ')}`);
    }
  }
  return best;
}

async function runKind(kind: Kind, results: Map<string, number>): Promise<void> {
  const w = new Worker(new URL(import.meta.url), { workerData: kind });
  const port = await new Promise<number>((r) =>
    w.once('message', (m: { port: number }) => r(m.port)),
  );
  const t = make(kind);
  const ch = await t.connect({ peer: endpoint(kind, port) }, { signal: AbortSignal.timeout(5000) });
  for (const [name, size] of SIZES) results.set(`${kind} ${name}`, await throughput(ch, w, size));
  const r = await rtt(ch, 2000);
  console.log(
    `${kind} CONTROL echo RTT (idle link, 2000 samples): p50 ${r.p50.toFixed(0)} µs, p99 ${r.p99.toFixed(0)} µs`,
  );
  if (kind === 'fabric') {
    const s = (t as FabricTransportApi).stats();
    console.log(
      `fabric (${PROVIDER}) counters: zeroCopyBytes ${s.zeroCopyBytes}, copiedBytes ${s.copiedBytes}`,
    );
  }
  w.postMessage('stop');
  await t.close();
}

async function main(): Promise<void> {
  const results = new Map<string, number>();
  await runKind('tcp', results);
  const addon = loadFabricAddon();
  if (addon.ok) await runKind('fabric', results);
  else console.log(`fabric transport: unavailable (${addon.error})`);
  const ip = await iperf3();
  const fi = addon.ok ? await fiPingpong() : null;
  const native = await nativeBw();
  console.log(
    `iperf3 (1 stream, ${SECONDS}s): ${ip === null ? 'unavailable' : `${ip.toFixed(2)} Gbit/s`}`,
  );
  if (addon.ok) {
    console.log(
      `fi_pingpong -p ${PROVIDER} 1 MiB: ${fi === null ? 'unavailable' : `${fi.toFixed(2)} Gbit/s`}`,
    );
  }
  for (const [name, gbps] of results) {
    const size = name.split(' ').slice(1).join(' ');
    const tcp = results.get(`tcp ${size}`);
    const ratios = [
      ...(ip ? [`${(gbps / ip).toFixed(2)} × iperf3`] : []),
      ...(name.startsWith('fabric') && tcp ? [`${(gbps / tcp).toFixed(2)} × tandem tcp`] : []),
      ...(name.startsWith('fabric') && fi ? [`${(gbps / fi).toFixed(2)} × fi_pingpong`] : []),
      ...(['msg', 'rma'] as const).flatMap((mode) => {
        const n = native.get(`${mode} ${size}`);
        return name.startsWith('fabric') && n
          ? [`${(gbps / n).toFixed(2)} × fabric_bw ${mode}`]
          : [];
      }),
    ];
    console.log(
      `tandem ${name.padEnd(13)}: ${gbps.toFixed(2)} Gbit/s${ratios.length ? ` = ${ratios.join(', ')}` : ''}`,
    );
  }
}

if (isMainThread) await main();
else await receiver(workerData as Kind);
