// Path heartbeats of a session under a process that does not run on time. Pins: a heartbeat tick
// that fires late (this process was stalled, what arrived meanwhile is unread) fails no path; a
// process whose every tick is late still detects a dead path (it judges every other tick).
// The session runs over hand-driven fake paths and a clock whose timers can fire late.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../support/clocks.js';
import { MultipathSession } from '../../src/transport/multipath/session.js';
import { MP_ACK, encodeNext } from '../../src/transport/multipath/wire.js';
import type {
  Channel,
  ChannelEventName,
  ChannelEvents,
  Message,
  MessageHandler,
  PathEvent,
  PathSpec,
  StreamId,
} from '../../src/transport/types.js';

/** A path channel the test drives: it records sends and delivers what the test injects. */
class FakePath implements Channel {
  readonly transport = 'memory' as const;
  readonly initiator = true;
  isOpen = true;
  private receiver: MessageHandler | null = null;
  private readonly listeners = new Map<ChannelEventName, ((...a: unknown[]) => void)[]>();
  constructor(
    readonly id: string,
    readonly path: PathSpec,
  ) {}
  /** Message types sent on DATA; with dieOnData the path fails inside its first DATA send. */
  readonly dataSent: number[] = [];
  dieOnData = false;
  send(stream: StreamId, type: number): 'ok' | 'closed' {
    if (!this.isOpen) return 'closed';
    if (stream === 'data') {
      if (this.dieOnData) {
        this.destroy();
        return 'closed';
      }
      this.dataSent.push(type);
    }
    return 'ok';
  }
  setReceiver(h: MessageHandler | null): void {
    this.receiver = h;
  }
  pauseData(): void {}
  resumeData(): void {}
  stats(): ReturnType<Channel['stats']> {
    const s = { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 };
    return {
      data: { ...s, queuedBytes: 0 },
      control: { ...s, queuedBytes: 0 },
      rttMs: null,
      koCount: 0,
    };
  }
  on<E extends ChannelEventName>(event: E, listener: ChannelEvents[E]): () => void {
    const l = this.listeners.get(event) ?? [];
    l.push(listener as (...a: unknown[]) => void);
    this.listeners.set(event, l);
    return () => l.splice(l.indexOf(listener as (...a: unknown[]) => void), 1);
  }
  /** The peer's ack arrives on this path (any frame proves the path alive). */
  hear(): void {
    const m: Message = {
      stream: 'control',
      type: MP_ACK,
      payload: encodeNext({ data: 0, control: 0 }),
    };
    this.receiver?.(m);
  }
  close(): Promise<void> {
    this.destroy();
    return Promise.resolve();
  }
  destroy(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    for (const l of this.listeners.get('closed') ?? []) l({ reason: 'local' });
  }
}

const spec = (address: string): PathSpec => ({
  peer: { transport: 'memory', family: 'memory', address, port: 0 },
});

/** ping-timeout 200 ms: heartbeats every 25 ms, the active path fails after 100 ms of silence. */
function session(id: string, clock: ManualClock): MultipathSession {
  return new MultipathSession(
    {
      id,
      sessionId: Buffer.alloc(16),
      key: Buffer.alloc(32),
      alg: 'sha256',
      initiator: true,
      clock,
      opts: { pingTimeoutMs: 200, timeoutMs: 5_000 },
    },
    spec('fast'),
  );
}

function open(clock: ManualClock): {
  s: MultipathSession;
  fast: FakePath;
  eth: FakePath;
  failed: PathEvent[];
} {
  const s = session('hb', clock);
  const fast = new FakePath('fast', spec('fast'));
  const eth = new FakePath('eth', spec('eth'));
  s.attach(fast, fast.path, 0, { data: 0, control: 0 });
  s.attach(eth, eth.path, 1, { data: 0, control: 0 });
  const failed: PathEvent[] = [];
  s.on('path', (e) => {
    if (e.state === 'failed') failed.push(e);
  });
  return { s, fast, eth, failed };
}

test('a late heartbeat tick (this process stalled) fails no path', () => {
  const clock = new ManualClock();
  const { s, fast, eth, failed } = open(clock);
  for (let i = 0; i < 20; i++) {
    clock.step(5);
    fast.hear();
    eth.hear();
  }
  clock.stall(300);
  // The stall is over: what the peers sent meanwhile is read now.
  fast.hear();
  eth.hear();
  for (let i = 0; i < 20; i++) {
    clock.step(5);
    fast.hear();
    eth.hear();
  }
  assert.deepEqual(
    failed.map((e) => e.error?.message),
    [],
    'no path failed over a stall of this process',
  );
  assert.equal(s.paths().find((p) => p.active)?.spec.peer.address, 'fast');
  s.destroy();
});

test('a process whose every tick is late still detects a dead path', () => {
  const clock = new ManualClock();
  const { s, eth, failed } = open(clock);
  // fast is dead (never heard again); eth answers. Every tick runs 40 ms late.
  for (let i = 0; i < 20 && failed.length === 0; i++) {
    clock.stall(65);
    eth.hear();
  }
  assert.equal(failed[0]?.path.peer.address, 'fast', 'fast was failed');
  assert.equal(s.paths().find((p) => p.active)?.spec.peer.address, 'eth');
  s.destroy();
});

test('a message whose path dies inside send() goes out on the next path, before later ones', () => {
  const clock = new ManualClock();
  const s = session('die', clock);
  const fast = new FakePath('fast', spec('fast'));
  s.attach(fast, fast.path, 0, { data: 0, control: 0 });
  fast.dieOnData = true;
  s.send('data', 7, [Buffer.from('lost in send')]);
  assert.equal(fast.isOpen, false, 'the path failed inside send()');
  const eth = new FakePath('eth', spec('eth'));
  s.attach(eth, eth.path, 1, { data: 0, control: 0 });
  s.send('data', 8, [Buffer.from('later')]);
  assert.deepEqual(
    eth.dataSent.filter((t) => t === 7 || t === 8),
    [7, 8],
  );
  s.destroy();
});
