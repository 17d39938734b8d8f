// One end of the multipath netns test, run by it inside a namespace (`ip netns exec`): the
// receiver listens on every network and checks the sequence it receives; the sender streams
// numbered DATA messages with backpressure. Both print one JSON object a line on stdout (events,
// delivery gaps, reports) and take commands on stdin ("report", "stop").
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { multipathTransport, type MultipathSession } from '../../src/transport/multipath/index.js';
import type { MultipathOptions } from '../../src/transport/multipath/types.js';
import { tcpTransport } from '../../src/transport/tcp/index.js';
import type { Channel, Endpoint, PathEvent } from '../../src/transport/types.js';
import { realClock } from '../support/clocks.js';

interface Config {
  readonly port: number;
  readonly addresses: readonly string[];
  readonly opts: MultipathOptions;
  readonly messageBytes?: number;
}

const print = (o: object): void => {
  process.stdout.write(`${JSON.stringify({ ...o, t: Date.now() })}\n`);
};

const ep = (address: string, port: number): Endpoint => ({
  transport: 'tcp',
  family: 'ipv4',
  address,
  port,
});

function transport(cfg: Config): ReturnType<ReturnType<typeof multipathTransport>> {
  const tcp = tcpTransport({ setupTimeoutMs: 1_000 })({ clock: realClock, randomBytes });
  return multipathTransport(cfg.opts)({ clock: realClock, randomBytes, transports: { tcp } });
}

function watch(s: Channel): void {
  s.on('path', (e: PathEvent) =>
    print({
      ev: 'path',
      state: e.state,
      change: e.change ?? null,
      path: e.path.peer.address,
      from: e.from?.peer.address ?? null,
      error: e.error?.message ?? null,
    }),
  );
  s.on('closed', (i) => print({ ev: 'closed', reason: i.reason, error: i.error?.message ?? null }));
}

function commands(on: (line: string) => void): void {
  createInterface({ input: process.stdin }).on('line', on);
}

async function receiver(cfg: Config): Promise<void> {
  const mp = transport(cfg);
  let session: MultipathSession | null = null;
  let expected = 0;
  let bad = 0;
  let last = Date.now();
  const onSession = (ch: Channel): void => {
    session = ch as MultipathSession;
    watch(ch);
    print({ ev: 'session' });
    ch.setReceiver((m) => {
      if (m.stream !== 'data') return;
      const seq = m.payload.readUInt32BE(0);
      if (seq !== expected) {
        bad++;
        print({ ev: 'bad', seq, expected });
      }
      expected = seq + 1;
      const now = Date.now();
      if (now - last >= 20) print({ ev: 'gap', ms: now - last });
      last = now;
    });
  };
  let port = cfg.port;
  for (const a of cfg.addresses) {
    const l = await mp.listen(ep(a, port), onSession);
    port = l.endpoint.port;
  }
  print({ ev: 'listening', port });
  commands((line) => {
    if (line === 'report') {
      const s = session;
      print({
        ev: 'report',
        received: expected,
        bad,
        duplicatesDropped: s?.sessionCounters().duplicatesDropped ?? 0,
      });
    }
  });
}

async function sender(cfg: Config): Promise<void> {
  const mp = transport(cfg);
  const s = await mp.connectPaths(
    cfg.addresses.map((a) => ({ peer: ep(a, cfg.port) })),
    { signal: AbortSignal.timeout(10_000) },
  );
  watch(s);
  print({ ev: 'connected' });
  const bytes = cfg.messageBytes ?? 4096;
  let next = 0;
  let waiting = false;
  let stopped = false;
  s.on('drain', () => (waiting = false));
  const tick = (): void => {
    if (stopped || !s.isOpen) return;
    // A steady 8 messages per 2 ms tick: enough to see every stall, little CPU.
    for (let i = 0; i < 8 && !waiting; i++) {
      const b = Buffer.alloc(bytes);
      b.writeUInt32BE(next++, 0);
      if (s.send('data', 1, [b]) === 'over-high-water') waiting = true;
    }
    setTimeout(tick, 2);
  };
  tick();
  commands((line) => {
    if (line === 'stop') {
      stopped = true;
      print({ ev: 'stopped', sent: next });
    }
  });
}

const [role, json] = process.argv.slice(2);
const cfg = JSON.parse(json ?? '{}') as Config;
(role === 'receiver' ? receiver(cfg) : sender(cfg)).catch((e: unknown) => {
  print({ ev: 'fatal', error: String(e) });
  process.exit(1);
});
