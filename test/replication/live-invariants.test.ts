// The invariants the driver checks after every step in tandemd (brokenInvariant): each is broken
// on purpose here, by constructing the engine state that breaks it, and the driver must fail the
// resource safe at once: the host hears which invariant, the engine detaches its disk and
// disconnects every peer (Diskless, StandAlone), and later requests fail with EIO instead of
// being served from a state we no longer trust. Once only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Driver, type IoDone } from '../../src/replication/driver.js';
import {
  brokenInvariant,
  checkInvariants,
  createEngine,
  type EngineState,
} from '../../src/replication/engine.js';
import type {
  Action,
  BootState,
  BrokenInvariant,
  InvariantCode,
  StateChange,
} from '../../src/replication/types.js';
import { Pair, baseConfig } from '../sim/harness.js';
import { pendingDiskPort } from '../support/pending-disk.js';

type Peer = EngineState['peers'] extends Map<number, infer P> ? P : never;

const BOOT: BootState = {
  meta: {
    currentUuid: 0x5eedn << 1n,
    bitmapUuids: { 2: 0n },
    historyUuids: [],
    flags: { consistent: true, wasUpToDate: true, crashedPrimary: false },
  },
  bitmaps: {},
  alExtents: [],
};

/** A driver around a real engine (UpToDate disk, peer 2 not connected) on recording ports. */
function rig() {
  const { state, actions } = createEngine(baseConfig(1), BOOT);
  const broken: BrokenInvariant[] = [];
  const changes: StateChange[] = [];
  const completions: Extract<Action, { type: 'complete' }>[] = [];
  const disconnected: number[] = [];
  const deferred: (() => void)[] = [];
  const pending: { what: string; done: IoDone }[] = [];
  const driver = new Driver(state, {
    disk: pendingDiskPort(pending, () => undefined),
    net: {
      connection: () => 'c',
      send: () => undefined,
      connect: () => undefined,
      disconnect: (peer) => void disconnected.push(peer),
    },
    clock: {
      setTimeout: () => ({ cancel: () => undefined }),
      defer: (fn) => void deferred.push(fn),
      nowMs: () => 0,
    },
    host: {
      complete: (a) => void completions.push(a),
      adminResult: () => undefined,
      stateChange: (c) => void changes.push(c),
      fencePeer: () => undefined,
      unfencePeer: () => undefined,
      note: () => undefined,
      diskFailed: () => undefined,
      invariantBroken: (b) => void broken.push(b),
    },
  });
  driver.start(actions);
  const engine = (): EngineState => {
    const e = driver.engine;
    assert.ok(e !== null);
    return e;
  };
  const peer = (): Peer => {
    const p = engine().peers.get(2);
    assert.ok(p !== undefined);
    return p;
  };
  /** An event the engine ignores: only the driver's check after the step can react. */
  const nudge = (): void => driver.feed({ type: 'timer', timerId: 987_654, nowMs: 0 });
  return { driver, engine, peer, nudge, broken, changes, completions, disconnected, deferred };
}

/** Puts peer 2 on an established connection in the engine's state. */
function established(p: Peer): void {
  p.conn = 'Connected';
  p.settled = true;
  p.repl = 'Established';
  p.disk = 'UpToDate';
  p.role = 'Secondary';
}

const idleResync = (): NonNullable<Peer['rs']> => ({
  cursor: 0,
  inflight: new Map(),
  creditBytes: 0,
  requestedBytes: 0,
  cameInBytes: 0,
  lastTurnMs: null,
  turnSoon: false,
  plan: [],
  planTotal: 0,
  finishing: false,
  timerId: 424_242,
});

const breakers: Record<InvariantCode, (r: ReturnType<typeof rig>) => void> = {
  'primary-disk': (r) => {
    r.engine().role = 'Primary';
    r.engine().disk = 'Outdated';
  },
  'bitmap-weight': (r) => {
    const b = r.engine().bitmaps.get(2);
    assert.ok(b !== undefined);
    Object.defineProperty(b, 'weight', { value: r.engine().blocks + 1 });
  },
  'sync-target-consistent': (r) => {
    established(r.peer());
    r.peer().repl = 'SyncTarget';
    r.peer().rs = idleResync();
  },
  'sync-target-idle': (r) => {
    established(r.peer());
    r.peer().repl = 'SyncTarget';
    r.engine().disk = 'Inconsistent';
  },
  'replication-unconnected': (r) => {
    r.peer().repl = 'Established';
  },
  'up-to-date-out-of-sync': (r) => {
    established(r.peer());
    r.engine().bitmaps.get(2)?.set({ start: 3, count: 2 });
  },
  'two-primaries': (r) => {
    established(r.peer());
    r.peer().role = 'Primary';
    r.engine().role = 'Primary';
  },
  'al-over-extents': (r) => {
    const e = r.engine();
    for (let x = 0; x <= e.cfg.alExtents; x++) e.al.add(x);
  },
};

test('a healthy engine breaks no invariant', () => {
  const r = rig();
  assert.equal(brokenInvariant(r.engine()), null);
  r.nudge();
  assert.deepEqual(r.broken, []);
  assert.equal(r.engine().disk, 'UpToDate');
});

for (const [code, breakIt] of Object.entries(breakers) as [
  InvariantCode,
  (r: ReturnType<typeof rig>) => void,
][]) {
  test(`invariant ${code}: broken, the resource fails safe (Diskless, StandAlone, EIO)`, () => {
    const r = rig();
    breakIt(r);
    assert.equal(brokenInvariant(r.engine())?.invariant, code, 'the state breaks exactly it');
    assert.throws(() => checkInvariants(r.engine()), 'the tests and the simulator assert it');
    r.nudge();
    assert.equal(r.broken.length, 1, 'the host heard it once');
    assert.equal(r.broken[0]?.invariant, code);
    assert.equal(r.driver.brokenInvariant?.invariant, code);
    assert.equal(r.engine().disk, 'Diskless', 'detached');
    assert.equal(r.peer().conn, 'StandAlone', 'disconnected');
    assert.equal(r.peer().wantConnect, false, 'and not dialing again');
    assert.deepEqual(r.disconnected, [2]);
    assert.ok(r.changes.some((c) => c.what === 'disk' && c.disk === 'Diskless'));
    // Nothing trusted is left to serve from.
    r.engine().role = 'Primary';
    r.driver.feed({
      type: 'request',
      req: { op: 'read', id: 7, offsetBytes: 0, lengthBytes: 4096 },
    });
    for (let f = r.deferred.shift(); f !== undefined; f = r.deferred.shift()) f();
    assert.deepEqual(
      r.completions.find((c) => c.reqId === 7),
      { type: 'complete', reqId: 7, ok: false, errno: 'EIO' },
    );
    r.nudge();
    assert.equal(r.broken.length, 1, 'once only');
  });
}

test('adjust cannot turn allow-two-primaries off under two Primaries (it would break one)', () => {
  const p = Pair.initialized({ allowTwoPrimaries: true }, { allowTwoPrimaries: true });
  assert.equal(p.adminCmd(p.b, { cmd: 'primary', force: false }).ok, true);
  p.settle();
  const off = { cmd: 'reconfigure', options: { allowTwoPrimaries: false } } as const;
  assert.equal(p.adminCmd(p.a, off).ok, false, 'refused while the peer is Primary');
  assert.equal(p.a.engine.cfg.allowTwoPrimaries, true);
  assert.equal(p.adminCmd(p.b, { cmd: 'secondary' }).ok, true);
  p.settle();
  assert.equal(p.adminCmd(p.a, off).ok, true, 'allowed once one is Secondary');
  assert.equal(p.a.engine.cfg.allowTwoPrimaries, false);
});
