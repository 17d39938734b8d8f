// bench:transport — one TCP channel's throughput for 4 KiB, 64 KiB and 1 MiB DATA messages and
// the CONTROL round-trip time, beside iperf3 on the same loopback in the same run. The receiver
// runs in a worker thread (its own event loop), as iperf3's server is its own process.
// Not part of npm test: numbers on a shared 2-vCPU VM are noisy; nothing here asserts speed.
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { systemClock } from '../src/platform/clock.js';
import { tcpTransport } from '../src/transport/tcp/index.js';
import type { Channel } from '../src/transport/types.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const HOST = '127.0.0.1';
const deps = { clock: systemClock, randomBytes };
const MSG_ECHO = 2;

interface WorkerMsg {
  port?: number;
  bytes?: number;
}

async function receiver(): Promise<void> {
  const t = tcpTransport({ pingIntMs: 1000, pingTimeoutMs: 5000 })(deps);
  let bytes = 0;
  const l = await t.listen({ transport: 'tcp', family: 'ipv4', address: HOST, port: 0 }, (ch) => {
    ch.setReceiver((m) => {
      if (m.stream === 'data') bytes += m.payload.length;
      else if (m.type === MSG_ECHO) ch.send('control', MSG_ECHO, [m.payload]);
    });
  });
  parentPort?.on('message', (m: string) => {
    if (m === 'count') parentPort?.postMessage({ bytes } satisfies WorkerMsg);
    if (m === 'stop') void t.close().then(() => process.exit(0));
  });
  parentPort?.postMessage({ port: l.endpoint.port } satisfies WorkerMsg);
}

function ask(w: Worker, what: string): Promise<WorkerMsg> {
  return new Promise((resolve) => {
    w.once('message', (m: WorkerMsg) => resolve(m));
    w.postMessage(what);
  });
}

async function throughput(ch: Channel, w: Worker, size: number): Promise<number> {
  const payload = randomBytes(size);
  const before = (await ask(w, 'count')).bytes ?? 0;
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
  while (got < sent) got = (await ask(w, 'count')).bytes ?? 0;
  const secs = (performance.now() - start) / 1000;
  return ((got - before) * 8) / secs / 1e9;
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

async function iperf3(): Promise<number | null> {
  // A random high port may be taken by someone else on this shared VM: try a few.
  for (let tries = 0; tries < 5; tries++) {
    const port = randomInt(40_000, 60_000);
    const server = spawn('iperf3', ['-s', '-1', '-p', String(port), '-B', HOST], {
      stdio: 'ignore',
    });
    let exited = false;
    server.on('exit', () => (exited = true));
    try {
      for (let i = 0; i < 50 && !exited; i++) {
        try {
          const { stdout } = await promisify(execFile)('iperf3', [
            ...['-c', HOST, '-p', String(port), '-t', String(SECONDS), '-J'],
          ]);
          const j = JSON.parse(stdout) as { end: { sum_received: { bits_per_second: number } } };
          return j.end.sum_received.bits_per_second / 1e9;
        } catch {
          await new Promise((r) => setTimeout(r, 100)); // server not up yet
        }
      }
    } finally {
      server.kill();
    }
  }
  return null;
}

async function main(): Promise<void> {
  const w = new Worker(new URL(import.meta.url), { workerData: 'receiver' });
  const { port } = await new Promise<WorkerMsg>((r) => w.once('message', r));
  const t = tcpTransport({ pingIntMs: 1000, pingTimeoutMs: 5000 })(deps);
  const ch = await t.connect(
    { peer: { transport: 'tcp', family: 'ipv4', address: HOST, port: port ?? 0 } },
    { signal: AbortSignal.timeout(5000) },
  );
  const ip = await iperf3();
  console.log(
    `iperf3 (1 stream, ${SECONDS}s): ${ip === null ? 'unavailable' : `${ip.toFixed(2)} Gbit/s`}`,
  );
  for (const [name, size] of [
    ['4 KiB', 4096],
    ['64 KiB', 65536],
    ['1 MiB', 1 << 20],
  ] as const) {
    const gbps = await throughput(ch, w, size);
    const ratio = ip ? ` = ${(gbps / ip).toFixed(2)} × iperf3` : '';
    console.log(`tandem tcp ${name.padEnd(6)} messages: ${gbps.toFixed(2)} Gbit/s${ratio}`);
  }
  const r = await rtt(ch, 2000);
  console.log(
    `CONTROL echo RTT (idle link, 2000 samples): p50 ${r.p50.toFixed(0)} µs, p99 ${r.p99.toFixed(0)} µs`,
  );
  console.log(`transport ping SRTT: ${ch.stats().rttMs?.toFixed(3) ?? 'n/a'} ms`);
  w.postMessage('stop');
  await t.close();
}

if (isMainThread) await main();
else if (workerData === 'receiver') await receiver();
