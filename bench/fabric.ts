// bench:fabric — the fabric transport (libfabric tcp provider, or FI_PROVIDER/BENCH_PROVIDER)
// beside the TCP transport and libfabric's own fi_pingpong (libfabric-bin) on the same loopback,
// in the same run, as ratios; plus the zero-copy vs copied byte counters. The receiver runs in a
// worker thread. Not part of npm test: numbers on a shared VM are noisy; nothing asserts speed.
import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { promisify } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { systemClock } from '../src/platform/clock.js';
import { fabricTransport } from '../src/transport/fabric/index.js';
import { tcpTransport } from '../src/transport/tcp/index.js';
import type { Channel, Endpoint, Transport } from '../src/transport/types.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const HOST = '127.0.0.1';
const PROVIDER = process.env['BENCH_PROVIDER'] ?? 'tcp';
const channel = { pingIntMs: 1000, pingTimeoutMs: 5000 };
type Kind = 'tcp' | 'fabric';

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
    });
  });
  parentPort?.on('message', (m: string) => {
    if (m === 'count') parentPort?.postMessage({ bytes });
    if (m === 'stop') void t.close().then(() => process.exit(0));
  });
  parentPort?.postMessage({ port: l.endpoint.port });
}

function ask(w: Worker): Promise<number> {
  return new Promise((resolve) => {
    w.once('message', (m: { bytes: number }) => resolve(m.bytes));
    w.postMessage('count');
  });
}

async function throughput(ch: Channel, w: Worker, size: number): Promise<number> {
  const payload = randomBytes(size);
  const before = await ask(w);
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
  const sent = ch.stats().data.bytesSent;
  let got = 0;
  while (got < sent) got = await ask(w);
  return ((got - before) * 8) / ((performance.now() - start) / 1000) / 1e9;
}

/** libfabric's own ping-pong at 1 MiB over the same provider: Gbit/s, or null. */
async function fiPingpong(): Promise<number | null> {
  for (let tries = 0; tries < 3; tries++) {
    const port = randomInt(40_000, 60_000);
    const args = ['-p', PROVIDER, '-e', 'msg', '-I', '200', '-S', String(1 << 20)];
    const server = spawn('fi_pingpong', [...args, '-B', String(port)], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 30; i++) {
        try {
          const { stdout } = await promisify(execFile)(
            'fi_pingpong',
            [...args, '-P', String(port), HOST],
            { timeout: 60_000 },
          );
          const last = stdout.trim().split('\n').at(-1)?.trim().split(/\s+/);
          const mbs = Number(last?.[5]);
          if (Number.isFinite(mbs)) return (mbs * 8 * 1e6) / 1e9;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    } finally {
      server.kill();
    }
  }
  return null;
}

async function main(): Promise<void> {
  const results: Record<string, number> = {};
  for (const kind of ['tcp', 'fabric'] as const) {
    const w = new Worker(new URL(import.meta.url), { workerData: kind });
    const port = await new Promise<number>((r) =>
      w.once('message', (m: { port: number }) => r(m.port)),
    );
    const t = make(kind);
    const ch = await t.connect(
      { peer: endpoint(kind, port) },
      { signal: AbortSignal.timeout(5000) },
    );
    for (const [name, size] of [
      ['64 KiB', 65536],
      ['1 MiB', 1 << 20],
    ] as const) {
      results[`${kind} ${name}`] = await throughput(ch, w, size);
    }
    if (kind === 'fabric') {
      const s = (t as ReturnType<ReturnType<typeof fabricTransport>>).stats();
      console.log(
        `fabric (${PROVIDER}) counters: zeroCopyBytes ${s.zeroCopyBytes}, copiedBytes ${s.copiedBytes}`,
      );
    }
    w.postMessage('stop');
    await t.close();
  }
  const fi = await fiPingpong();
  console.log(
    `fi_pingpong -p ${PROVIDER} 1 MiB: ${fi === null ? 'unavailable' : `${fi.toFixed(2)} Gbit/s`}`,
  );
  for (const [name, gbps] of Object.entries(results)) {
    const tcp = results[`tcp ${name.split(' ').slice(1).join(' ')}`];
    const vsTcp =
      name.startsWith('fabric') && tcp ? ` = ${(gbps / tcp).toFixed(2)} × tandem tcp` : '';
    const vsFi = fi ? `, ${(gbps / fi).toFixed(2)} × fi_pingpong` : '';
    console.log(`tandem ${name.padEnd(13)}: ${gbps.toFixed(2)} Gbit/s${vsTcp}${vsFi}`);
  }
}

if (isMainThread) await main();
else await receiver(workerData as Kind);
