// The one driver that carries out the engine's actions, for tandemd and for the simulator.
//
// The engine decides; this module holds the rules of *how* its actions happen (the Action
// contract in types.ts): events are fed one at a time, never re-entrantly; a step's local data
// I/O is issued after its other actions (the peer's round trip is the longer path); metadata
// actions are barriers that flush the data disk when an extent leaves the activity log, write
// durably, and hold back every later data I/O and DATA send; a failed barrier fails the disk,
// is answered (on-io-error) before anything it held moves, and what it held then fails with
// EIO (I/O) or goes out after the engine's overtaking State (DATA); timers. The world comes in
// through three small ports (disk, network, clock) and a host that receives what is not I/O.
// tandemd plugs in its files and channels, the simulator its crash-prone disks and seeded
// network: a rule written once here is a rule the simulator tests.
import type { Errno } from '../util/errno.js';
import type { Timer } from '../platform/clock.js';
import { Fifo } from '../util/fifo.js';
import { brokenInvariant, step, type EngineState, type StepResult } from './engine.js';
import type {
  Action,
  BlockRange,
  BrokenInvariant,
  EngineEvent,
  EngineNote,
  Packet,
  ResizeRefusal,
  StateChange,
  Stream,
} from './types.js';
import type { WriteStages } from './write-stages.js';

/** A disk operation's answer: null when it succeeded, else its errno ('EIO', 'ENOSPC', ...). */
export type IoDone = (errno: Errno | null, data?: Uint8Array) => void;

/** The engine's metadata actions: each is a barrier. */
export type MetaAction = Extract<Action, { type: 'persistMeta' | 'alCommit' | 'bitmapFlush' }>;

/**
 * Whether a metadata barrier flushes the data disk before its own write. Only an extent leaving
 * the activity log needs the data flush first (its writes lose their cover); adding one changes
 * nothing for writes already done, which stay covered by their own hot extents. A whole-file
 * fdatasync would otherwise stall every write while a sequential writer crosses into each new
 * 4 MiB extent.
 */
export function barrierFlushesData(a: MetaAction): boolean {
  return a.type !== 'alCommit' || a.remove.length > 0;
}

/**
 * The local disk as the driver uses it. Every call answers through its callback exactly once
 * and never synchronously (the driver relies on it: an answer inside a step would reorder it).
 */
export interface DiskPort {
  /** `into`: the client's buffer to read into (see BlockStore.read); a port may ignore it. */
  read(offsetBytes: number, lengthBytes: number, done: IoDone, into?: Uint8Array): void;
  /** Writes the concatenation of `data` (slices of received buffers: never modify them). */
  write(offsetBytes: number, data: readonly Uint8Array[], fua: boolean, done: IoDone): void;
  trim(offsetBytes: number, lengthBytes: number, done: IoDone): void;
  zeroes(offsetBytes: number, lengthBytes: number, fua: boolean, done: IoDone): void;
  /** Makes every completed write durable (also the data flush of a metadata barrier). */
  flush(done: IoDone): void;
  /** Writes a barrier's metadata durably (the driver already flushed the data if needed). */
  writeMeta(a: MetaAction, done: IoDone): void;
  /** In-memory bitmap changes (made durable by the next bitmapFlush barrier); synchronous. */
  bitmapSet(peer: number, ranges: readonly BlockRange[]): void;
  bitmapClear(peer: number, ranges: readonly BlockRange[]): void;
  /** How many data bytes the backing could hold now. */
  capacity(done: (capacityBytes: number, refusal: ResizeRefusal) => void): void;
  /** Grows the data region and its metadata to `sizeBytes` (run as a barrier). */
  grow(sizeBytes: number, done: IoDone): void;
}

export interface NetPort {
  /**
   * The connection to `peer` now (any value the port compares by identity), so a DATA send
   * held behind a barrier goes only to the connection it was meant for, never a later one.
   */
  connection(peer: number): unknown;
  /** Sends now; with `conn`, only if the peer's connection is still that one. */
  send(peer: number, stream: Stream, packet: Packet, conn?: unknown): void;
  connect(peer: number): void;
  disconnect(peer: number): void;
}

export interface ClockPort {
  /** Monotonic milliseconds: the resync controller paces by real turn durations. */
  nowMs(): number;
  setTimeout(fn: () => void, delayMs: number): Timer;
  /** Runs `fn` soon, never synchronously. */
  defer(fn: () => void): void;
}

/** What the driver hands to its owner: everything that is not disk, network or time. */
export interface DriverHost {
  complete(a: Extract<Action, { type: 'complete' }>): void;
  adminResult(a: Extract<Action, { type: 'adminResult' }>): void;
  stateChange(c: StateChange): void;
  /** Run the fence-peer handler against `peer`; feed fencePeerDone with `token` when it ends. */
  fencePeer(peer: number, token: number): void;
  /** Run the unfence-peer handler (the peer fenced earlier is UpToDate again). */
  unfencePeer(peer: number): void;
  note(n: EngineNote): void;
  /**
   * A metadata barrier failed (its write, or its data flush): the on-disk metadata may no
   * longer say what the data holds. The host feeds the engine its answer (the on-io-error
   * detach) from here; the driver releases what the barrier held only afterwards.
   */
  diskFailed(errno: Errno): void;
  /** After each step, before its actions run (traces, invariant checks). */
  stepped?(ev: EngineEvent, actions: readonly Action[]): void;
  /** A metadata barrier starts its I/O (the simulator arms crashes inside barriers here). */
  barrierStarted?(): void;
  /**
   * The engine broke an invariant (our bug): the driver is failing the resource safe, by
   * feeding the engine a detach and a disconnect of every peer. Say so loudly.
   */
  invariantBroken?(b: BrokenInvariant): void;
}

/**
 * Planted bugs of the driver, test-only: each breaks one rule so the simulator can show it
 * catches the breakage. `data-before-al`: DATA sends do not wait for barriers.
 * `meta-skips-flush`: no barrier flushes the data disk. `failed-meta-releases-io`: a failed
 * barrier does not fail the disk (the I/O it held runs) and is answered after the release.
 * `state-behind-held-data`: `overtake` is ignored and a failed barrier is answered after the
 * release (the order before seed 1410's fix).
 */
export type DriverBug =
  'data-before-al' | 'meta-skips-flush' | 'failed-meta-releases-io' | 'state-behind-held-data';

export const DRIVER_BUGS: readonly DriverBug[] = [
  'data-before-al',
  'meta-skips-flush',
  'failed-meta-releases-io',
  'state-behind-held-data',
];

export interface DriverOptions {
  readonly plantedBug?: DriverBug;
  /** The engine's step function; a test may script the actions instead. @default step */
  readonly step?: (s: EngineState, ev: EngineEvent) => StepResult;
  /**
   * The invariants checked after every step. @default brokenInvariant, or none with a scripted
   * `step` (its state is no engine's)
   */
  readonly invariants?: (s: EngineState) => BrokenInvariant | null;
  /**
   * Where client writes spend their time: the driver marks what it sees of each (issued, let
   * go by a barrier, local disk done, its Data sent); the owner marks the rest.
   */
  readonly stages?: WriteStages;
}

export interface DriverPorts {
  readonly disk: DiskPort | null;
  readonly net: NetPort;
  readonly clock: ClockPort;
  readonly host: DriverHost;
}

type Barrier =
  | { readonly kind: 'meta'; readonly action: MetaAction; readonly flushData: boolean }
  | { readonly kind: 'grow'; readonly token: number; readonly sizeBytes: number };

/** Work waiting for the barriers queued before it (`ticket` = barriers queued then). */
type Held =
  | { readonly kind: 'io'; readonly ticket: number; readonly action: LocalIo }
  | {
      readonly kind: 'send';
      readonly ticket: number;
      readonly peer: number;
      readonly packet: Packet;
      readonly conn: unknown;
    };

type BitmapChange = Extract<Action, { type: 'bitmapSet' | 'bitmapClear' }>;

type LocalIo = Extract<
  Action,
  { type: 'diskRead' | 'diskWrite' | 'diskTrim' | 'diskZeroes' | 'diskFlush' }
>;

export class Driver {
  private state: EngineState | null;
  private readonly inbox = new Fifo<EngineEvent>();
  private stepping = false;
  private disk: DiskPort | null;
  private readonly net: NetPort;
  private readonly clock: ClockPort;
  private readonly host: DriverHost;
  private readonly bug: DriverBug | undefined;
  private readonly step: (s: EngineState, ev: EngineEvent) => StepResult;
  private readonly invariants: ((s: EngineState) => BrokenInvariant | null) | null;
  private readonly stages: WriteStages | undefined;
  private readonly timers = new Map<number, Timer>();
  /** Barriers not yet done, oldest first; the first one runs. */
  private readonly barriers = new Fifo<Barrier>();
  private barriersQueued = 0;
  private barriersDone = 0;
  private barrierRunning = false;
  private readonly held = new Fifo<Held>();
  /** The errno of the barrier that failed the disk, or null (reset by attachDisk). */
  private failure: Errno | null = null;
  /** A failed barrier is being answered: what barriers held stays held meanwhile. */
  private answering = false;
  /** A failure arrived during a step: release once the inbox is drained. */
  private releaseAfterSteps = false;
  /** Data I/O and barriers issued to the disk port and not answered yet. */
  private diskBusy = 0;
  private idleWaiters: (() => void)[] = [];
  private stopped = false;
  /** Reused for a step's local data I/O, issued after the step's other actions. */
  private readonly deferredIo: LocalIo[] = [];
  /** The invariant a step broke (the resource was failed safe then), or null. */
  private broken: BrokenInvariant | null = null;
  /** Admin commands the driver feeds itself (the fail-safe): negative ids, never the host's. */
  private ownCmdId = 0;
  /** Bitmap changes made while a barrier ran, for the port once it ends (`bitmapChange`). */
  private readonly bitmapLater = new Fifo<{ readonly disk: DiskPort; readonly a: BitmapChange }>();

  constructor(state: EngineState, ports: DriverPorts, options: DriverOptions = {}) {
    this.state = state;
    this.disk = ports.disk;
    this.net = ports.net;
    this.clock = ports.clock;
    this.host = ports.host;
    this.bug = options.plantedBug;
    this.step = options.step ?? step;
    this.invariants = options.invariants ?? (options.step === undefined ? brokenInvariant : null);
    this.stages = options.stages;
  }

  get engine(): EngineState | null {
    return this.state;
  }

  /** The invariant that failed this resource safe, or null. */
  get brokenInvariant(): BrokenInvariant | null {
    return this.broken;
  }

  /** The metadata barrier that failed the disk, as an errno, or null. */
  get diskFailure(): Errno | null {
    return this.failure;
  }

  /** Feeds one event; events fed while a step runs wait their turn (never re-entrant). */
  feed(ev: EngineEvent): void {
    if (this.stopped) return;
    this.inbox.push(ev);
    if (!this.stepping) this.run(null);
  }

  /** Carries out the actions createEngine returned, as if they were a step's. */
  start(actions: readonly Action[]): void {
    if (this.stepping) throw new Error('Driver.start inside a step');
    this.run(actions);
  }

  private run(first: readonly Action[] | null): void {
    this.stepping = true;
    try {
      if (first !== null) this.execute(first);
      for (let e = this.inbox.shift(); e !== undefined; e = this.inbox.shift()) {
        const s = this.state;
        if (s === null || this.stopped) break;
        const r = this.step(s, e);
        this.state = r.state;
        this.host.stepped?.(e, r.actions);
        if (this.broken === null && this.invariants !== null) this.checkInvariants(r.state);
        this.execute(r.actions);
      }
    } finally {
      this.stepping = false;
    }
    if (this.releaseAfterSteps && !this.stopped) {
      this.releaseAfterSteps = false;
      this.release();
    }
  }

  /**
   * Performs a step's actions in order, except that local data writes and flushes go last: a
   * Primary's write then puts its Data (a flush its Barrier) on the wire before its own disk
   * work. Nothing in a step depends on an I/O being issued (the engine waits for its diskDone;
   * a flush covers writes done before it), and a barrier queued later in the step still holds
   * the I/O: issuing it later only orders it more strictly.
   */
  private execute(actions: readonly Action[]): void {
    const deferred = this.deferredIo;
    const base = deferred.length;
    for (const a of actions) {
      if (this.stopped) return;
      if (
        a.type === 'diskWrite' ||
        a.type === 'diskTrim' ||
        a.type === 'diskZeroes' ||
        a.type === 'diskFlush'
      )
        deferred.push(a);
      else this.perform(a);
    }
    for (let i = base; i < deferred.length; i++) this.io(deferred[i]!);
    deferred.length = base;
  }

  /**
   * After every step, the engine's cheap invariants (`brokenInvariant`: counters, no scans).
   * A broken one is a bug of ours, and going on could serve or replicate wrong data: the
   * resource fails safe instead, once. The step's actions still run (its completions must
   * answer), then the engine detaches the disk (`failed`: even a lone Primary) and disconnects
   * every peer: Diskless and StandAlone, every later request failing with EIO. An operator
   * looks at the logs, then attaches and connects again (a resync follows from the bitmaps).
   */
  private checkInvariants(s: EngineState): void {
    const b = this.invariants?.(s) ?? null;
    if (b === null) return;
    this.broken = b;
    this.host.invariantBroken?.(b);
    this.inbox.push({
      type: 'admin',
      cmdId: --this.ownCmdId,
      command: { cmd: 'detach', failed: true },
    });
    for (const peer of s.peers.keys())
      this.inbox.push({
        type: 'admin',
        cmdId: --this.ownCmdId,
        command: { cmd: 'disconnect', peer },
      });
  }

  /** A new disk (attach): the failure of the last one is forgotten. */
  attachDisk(disk: DiskPort): void {
    // Changes still held were made for the disk before: they go to it now, not to this one.
    this.releaseBitmap();
    this.disk = disk;
    this.failure = null;
  }

  /**
   * Stops using the disk: new I/O is answered ENODEV, and `done` runs once every I/O and
   * barrier already issued to it has answered. Whether a barrier had failed it is passed on,
   * so the owner knows not to write anything more (a clean close would mark the AL clean).
   */
  detachDisk(done: (failed: boolean) => void): void {
    const failed = this.failure !== null;
    this.disk = null;
    this.whenDiskIdle(() => done(failed));
  }

  /** Runs `done` once no I/O or barrier is outstanding at the disk port. */
  whenDiskIdle(done: () => void): void {
    if (this.diskBusy === 0 && this.barriers.length === 0) this.clock.defer(done);
    else this.idleWaiters.push(done);
  }

  /**
   * Stops the driver (the daemon took the resource down; the simulator crashed the node):
   * timers are cancelled, held work is dropped, answers still on the way are ignored. The
   * events not yet stepped are returned so their waiters can be answered.
   */
  stop(): EngineEvent[] {
    this.stopped = true;
    this.state = null;
    for (const t of this.timers.values()) t.cancel();
    this.timers.clear();
    this.barriers.drain();
    this.held.drain();
    // Bitmap changes a running barrier holds still reach its disk when it answers: a clean close
    // writes the whole bitmap after a data flush, and must not lose them.
    // Idle waiters still wait for what the disk port has under way (a write landing after
    // the files close would be covered by nothing).
    return this.inbox.drain();
  }

  // --- actions ---------------------------------------------------------------------------

  private perform(a: Action): void {
    switch (a.type) {
      case 'diskRead':
        return this.io(a);
      case 'diskWrite':
      case 'diskTrim':
      case 'diskZeroes':
      case 'diskFlush':
        return this.io(a);
      case 'persistMeta':
      case 'alCommit':
      case 'bitmapFlush':
        return this.queueBarrier({
          kind: 'meta',
          action: a,
          flushData: barrierFlushesData(a) && this.bug !== 'meta-skips-flush',
        });
      case 'bitmapSet':
      case 'bitmapClear':
        return this.bitmapChange(a);
      case 'send':
        return this.send(a);
      case 'connect':
        return this.net.connect(a.peer);
      case 'disconnect':
        return this.net.disconnect(a.peer);
      case 'complete':
        return this.host.complete(a);
      case 'adminResult':
        return this.host.adminResult(a);
      case 'stateChange':
        return this.host.stateChange(a.change);
      case 'fencePeer':
        return this.host.fencePeer(a.peer, a.token);
      case 'unfencePeer':
        return this.host.unfencePeer(a.peer);
      case 'note':
        return this.host.note(a.note);
      case 'setTimer': {
        this.timers.get(a.timerId)?.cancel();
        const id = a.timerId;
        this.timers.set(
          id,
          this.clock.setTimeout(() => {
            this.timers.delete(id);
            this.feed({ type: 'timer', timerId: id, nowMs: this.clock.nowMs() });
          }, a.afterMs),
        );
        return;
      }
      case 'cancelTimer':
        this.timers.get(a.timerId)?.cancel();
        this.timers.delete(a.timerId);
        return;
      case 'probeCapacity': {
        const token = a.token;
        const d = this.disk;
        if (d === null)
          return this.clock.defer(() =>
            this.feed({ type: 'capacity', token, capacityBytes: 0, refusal: 'failed' }),
          );
        return d.capacity((capacityBytes, refusal) =>
          this.feed({ type: 'capacity', token, capacityBytes, refusal }),
        );
      }
      case 'growDisk':
        return this.queueBarrier({ kind: 'grow', token: a.token, sizeBytes: a.sizeBytes });
    }
  }

  /**
   * DATA-stream packets wait for the metadata barriers queued before them, as local writes do:
   * the engine emits `alCommit` and then, in the same step, the `Data` for the write it
   * covers; sent at once, the peer could write a block our activity log does not cover yet,
   * and a crash then would leave the disks different with nothing to resync it. Once one
   * packet waits, later ones queue behind it. CONTROL packets never wait; nor does an
   * overtaking send (our disk is gone: the peer must hear it before the writes held here).
   */
  private send(a: Extract<Action, { type: 'send' }>): void {
    if (a.packet.kind === 'Data') this.stages?.sent(a.reqId, a.packet.seq); // stage hook
    const overtake = a.overtake === true && this.bug !== 'state-behind-held-data';
    if (a.stream === 'control' || overtake || this.bug === 'data-before-al' || this.clear())
      return this.net.send(a.peer, a.stream, a.packet);
    this.held.push({
      kind: 'send',
      ticket: this.barriersQueued,
      peer: a.peer,
      packet: a.packet,
      conn: this.net.connection(a.peer),
    });
  }

  /**
   * The port's in-memory bitmap is what a metadata barrier writes, and that barrier's data
   * flush is what makes a cleared bit true on disk: it covers the writes done before it was
   * issued. A bit cleared later (a resync write that completed meanwhile, its data maybe still
   * in the disk's cache) must not ride along, or a power loss keeps the cleared bit and loses
   * the data, and nothing marks the block any more (simulator seed 500000946: a SyncTarget's
   * resync writes). So while a barrier runs (flush, then write) the changes wait, in order, and
   * reach the port when it ends; the next bitmap write is preceded by its own flush.
   * (DRBD writes bitmap pages without flushing the data device first, so it has this window
   * with a volatile cache; closing it costs nothing but the wait.)
   */
  private bitmapChange(a: BitmapChange): void {
    const d = this.disk;
    if (d === null) return;
    if (this.barrierRunning || this.bitmapLater.length > 0) {
      this.bitmapLater.push({ disk: d, a });
      return;
    }
    if (a.type === 'bitmapSet') d.bitmapSet(a.peer, a.ranges);
    else d.bitmapClear(a.peer, a.ranges);
  }

  /**
   * The barrier ended (or answered after a stop): the bitmap changes it held reach the disk
   * they were made for, in order (even one detached meanwhile: it is closed once idle, and a
   * clean close writes its bitmap).
   */
  private releaseBitmap(): void {
    for (let c = this.bitmapLater.shift(); c !== undefined; c = this.bitmapLater.shift()) {
      if (c.a.type === 'bitmapSet') c.disk.bitmapSet(c.a.peer, c.a.ranges);
      else c.disk.bitmapClear(c.a.peer, c.a.ranges);
    }
  }

  /** Nothing is held and no barrier is pending: work may go at once. */
  private clear(): boolean {
    return this.barriersDone >= this.barriersQueued && this.held.length === 0;
  }

  private io(a: LocalIo): void {
    if (a.type === 'diskWrite') this.stages?.issued(a.reqId, a.ioId); // stage hook
    if (!this.clear()) {
      this.held.push({ kind: 'io', ticket: this.barriersQueued, action: a });
      return;
    }
    this.issue(a);
  }

  /** Hands one data I/O to the disk port (or answers it when there is no usable disk). */
  private issue(a: LocalIo): void {
    const ioId = a.ioId;
    const d = this.disk;
    const refused = d === null ? 'ENODEV' : this.failure !== null ? 'EIO' : null;
    if (refused !== null || d === null) {
      const errno = refused ?? 'ENODEV';
      this.clock.defer(() => this.feed({ type: 'diskDone', ioId, ok: false, errno }));
      return;
    }
    this.diskBusy++;
    const done: IoDone = (errno, data) => {
      this.diskAnswered();
      if (errno === null) this.stages?.diskDone(ioId); // stage hook: local disk done
      if (errno !== null) this.feed({ type: 'diskDone', ioId, ok: false, errno });
      else if (data !== undefined) this.feed({ type: 'diskDone', ioId, ok: true, data });
      else this.feed({ type: 'diskDone', ioId, ok: true });
    };
    switch (a.type) {
      case 'diskRead':
        return d.read(a.offsetBytes, a.lengthBytes, done, a.into);
      case 'diskWrite':
        return d.write(a.offsetBytes, a.data, a.fua, done);
      case 'diskTrim':
        return d.trim(a.offsetBytes, a.lengthBytes, done);
      case 'diskZeroes':
        return d.zeroes(a.offsetBytes, a.lengthBytes, a.fua, done);
      case 'diskFlush':
        return d.flush(done);
    }
  }

  private diskAnswered(): void {
    this.diskBusy--;
    this.wakeIdle();
  }

  private wakeIdle(): void {
    if (this.diskBusy !== 0 || this.barriers.length !== 0 || this.idleWaiters.length === 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  // --- barriers ---------------------------------------------------------------------------

  private queueBarrier(b: Barrier): void {
    if (this.disk === null) {
      // No disk, nothing to write (the engine detached it); a resize is answered as failed.
      if (b.kind === 'grow') {
        const token = b.token;
        this.clock.defer(() => this.feed({ type: 'diskGrown', token, ok: false }));
      }
      return;
    }
    this.barriers.push(b);
    this.barriersQueued++;
    if (!this.barrierRunning) this.runBarrier();
  }

  /** Starts the oldest barrier: flush the data disk (if its kind needs it), then write. */
  private runBarrier(): void {
    const b = this.barriers.peek();
    const d = this.disk;
    if (b === undefined || this.stopped) return;
    if (d === null || this.failure !== null) {
      // A failed (or gone) disk writes nothing more: later barriers fail at once.
      this.barriers.shift();
      this.barriersDone++;
      if (b.kind === 'grow') {
        const token = b.token;
        this.clock.defer(() => this.feed({ type: 'diskGrown', token, ok: false }));
      }
      this.release();
      this.wakeIdle();
      return this.runBarrier();
    }
    this.barrierRunning = true;
    this.host.barrierStarted?.();
    const write = (): void => {
      this.diskBusy++;
      const done: IoDone = (errno) => {
        this.diskBusy--;
        this.barrierDone(b, errno);
      };
      if (b.kind === 'meta') d.writeMeta(b.action, done);
      else d.grow(b.sizeBytes, done);
    };
    const flushData = b.kind === 'grow' || b.flushData;
    if (!flushData) return write();
    this.diskBusy++;
    d.flush((errno) => {
      this.diskBusy--;
      if (this.stopped) return this.stoppedBarrierAnswered();
      if (errno !== null) return this.barrierDone(b, errno);
      write();
    });
  }

  /** A barrier under way when the driver stopped has answered: its held bitmap changes go. */
  private stoppedBarrierAnswered(): void {
    this.releaseBitmap();
    this.wakeIdle();
  }

  private barrierDone(b: Barrier, errno: Errno | null): void {
    if (this.stopped) return this.stoppedBarrierAnswered();
    this.barriers.shift();
    this.barriersDone++;
    this.barrierRunning = false;
    this.releaseBitmap();
    if (b.kind === 'grow') {
      // A resize that failed is refused; the disk itself stays in use (its size unchanged).
      this.feed({ type: 'diskGrown', token: b.token, ok: errno === null });
      this.release();
    } else if (errno === null) {
      this.release();
    } else if (this.bug === 'failed-meta-releases-io' || this.bug === 'state-behind-held-data') {
      if (this.bug !== 'failed-meta-releases-io') this.failure ??= errno;
      this.release();
      this.host.diskFailed(errno);
    } else {
      // Set before anything held moves: the I/O it held, and any after, fails without running.
      const first = this.failure === null;
      this.failure ??= errno;
      if (first) this.answer(errno);
      else this.release();
    }
    this.wakeIdle();
    this.runBarrier();
  }

  /** The host answers a failed barrier (a detach) before what the barriers held moves. */
  private answer(errno: Errno): void {
    if (this.stepping) {
      this.releaseAfterSteps = true;
      this.host.diskFailed(errno);
      return;
    }
    this.answering = true;
    try {
      this.host.diskFailed(errno);
    } finally {
      this.answering = false;
    }
    this.release();
  }

  /** Lets held work go whose barriers are all done, in order. */
  private release(): void {
    if (this.answering || this.releaseAfterSteps) return;
    for (let h = this.held.peek(); h !== undefined; h = this.held.peek()) {
      if (h.ticket > this.barriersDone || this.stopped) return;
      this.held.shift();
      if (h.kind === 'io' && h.action.type === 'diskWrite')
        this.stages?.barrierDone(h.action.reqId); // stage hook
      if (h.kind === 'io') this.issue(h.action);
      else this.net.send(h.peer, 'data', h.packet, h.conn);
    }
  }
}
