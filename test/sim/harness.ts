// A hand-driven two-node harness for scenario tests: each node runs the daemon's action driver
// (`Driver`, src/replication/driver.ts) on ports the test drives: FIFO links carrying
// wire-encoded packets, in-memory disks with a cache whose every operation (data I/O, flushes,
// metadata writes, capacity probes, grows) waits until the test completes it, and timers that
// fire when the test ticks. Nothing moves until the test says so (deliver one packet, complete
// one disk I/O, settle everything), so a test can pin an exact interleaving. Metadata writes
// are barrier I/O as in the daemon: they hold later data I/O and DATA sends until completed.
import { BITMAP_BLOCK_BYTES, RESYNC_TICK_MS } from '../../src/limits.js';
import { Bitmap } from '../../src/replication/bitmap.js';
import {
  Driver,
  type DiskPort,
  type IoDone,
  type MetaAction,
} from '../../src/replication/driver.js';
import { checkInvariants, createEngine, type EngineState } from '../../src/replication/engine.js';
import type {
  Action,
  AdminCommand,
  BootState,
  ClientRequest,
  EngineConfig,
  EngineEvent,
  EngineNote,
  Metadata,
  Packet,
  Stream,
} from '../../src/replication/types.js';
import { UUID_JUST_CREATED } from '../../src/replication/uuid.js';
import { decodePacket, encodePacket } from '../../src/replication/wire.js';
import { SimDisk } from './disk.js';
import { SeededRandom } from '../../src/util/prng.js';
import type { Errno } from '../../src/util/errno.js';
import { fnvDigest } from './cluster.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export const BLOCK = BITMAP_BLOCK_BYTES;
export const SIZE = 64 * BLOCK;

/**
 * What an I/O waiting at a node's disk port is. `meta-flush` is the data flush a metadata
 * barrier (or a grow) runs before its own write; `flush` is one the engine asked for.
 */
export type IoKind =
  'read' | 'write' | 'trim' | 'zeroes' | 'flush' | 'meta-flush' | 'meta' | 'capacity' | 'grow';

/** One operation the driver issued to a node's disk port, answered when the test says. */
export interface PendingIo {
  readonly kind: IoKind;
  /** Applies the operation to the disk and answers the driver. */
  run(): void;
  /** Answers the driver with an error; nothing reaches the disk. */
  fail(errno: Errno): void;
}

const DATA_IO: ReadonlySet<IoKind> = new Set(['read', 'write', 'trim', 'zeroes', 'flush']);
const BARRIER_IO: ReadonlySet<IoKind> = new Set(['meta-flush', 'meta']);

const copyOf = (b: Bitmap): Bitmap => b.grown(b.blocks);

export class HNode {
  driver!: Driver;
  readonly disk = new SimDisk(SIZE);
  /** What the metadata on disk holds (written when a metadata barrier completes). */
  meta: Metadata;
  pbitmap = new Bitmap(SIZE / BLOCK);
  pal = new Set<number>();
  /** The disk port's in-memory bitmap (bitmapSet/bitmapClear); a bitmapFlush writes it. */
  mbitmap = new Bitmap(SIZE / BLOCK);
  /** Operations issued to the disk port, oldest first; the test completes them. */
  readonly pendingIo: PendingIo[] = [];
  /** What the driver asked to run soon (ClockPort.defer); completeIo and settle run it. */
  readonly deferred: (() => void)[] = [];
  /** The driver's timers (ClockPort.setTimeout), by harness id; tick() fires them. */
  readonly timers = new Map<number, () => void>();
  nextTimer = 1;
  readonly completions = new Map<number, { ok: boolean; errno?: string; data?: Uint8Array }>();
  readonly admin: { ok: boolean; message: string }[] = [];
  /** Admin commands the harness fed itself (the detach answering a failed barrier). */
  readonly ownCmds = new Set<number>();
  readonly notes: EngineNote[] = [];
  /** Packets the driver put on the network (held DATA sends once released). */
  readonly sent: Packet[] = [];
  /** The next data I/O completed (read, write, trim, zeroes, flush) fails with EIO. */
  failNextIo = false;
  /** The next metadata barrier I/O completed (its data flush or its write) fails with EIO. */
  failNextMeta = false;
  /** diskFlush actions the engine emitted (epoch and client flushes). */
  flushIos = 0;
  /** What a capacity probe reports (the backing device's room for data). @default SIZE */
  capacityBytes = SIZE;
  /** fencePeer actions not answered yet (the test answers with fencePeerDone). */
  readonly fences: { peer: number; token: number }[] = [];
  /** unfencePeer actions, by peer. */
  readonly unfences: number[] = [];
  /** The next flush issued is a barrier's data flush (set by DriverHost.barrierStarted). */
  barrierFlushNext = false;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly peer: number,
  ) {
    this.meta = {
      currentUuid: UUID_JUST_CREATED,
      bitmapUuids: { [peer]: 0n },
      historyUuids: [],
      flags: { consistent: false, wasUpToDate: false, crashedPrimary: false },
    };
  }

  get engine(): EngineState {
    const e = this.driver.engine;
    if (e === null) throw new Error(`${this.name}: the driver is stopped`);
    return e;
  }

  /** How many operations of these kinds wait at the disk port. */
  pendingOf(kinds: ReadonlySet<IoKind> | readonly IoKind[]): number {
    const set = kinds instanceof Set ? kinds : new Set(kinds);
    return this.pendingIo.filter((io) => set.has(io.kind)).length;
  }
}

export function baseConfig(id: number, over: Partial<EngineConfig> = {}): EngineConfig {
  return {
    nodeId: id,
    nodeName: id === 1 ? 'alpha' : 'bravo',
    sizeBytes: SIZE,
    peers: [{ nodeId: id === 1 ? 2 : 1, name: id === 1 ? 'bravo' : 'alpha' }],
    protocol: 'C',
    allowTwoPrimaries: false,
    afterSb0Pri: 'disconnect',
    afterSb1Pri: 'disconnect',
    afterSb2Pri: 'disconnect',
    maxEpochSize: 2048,
    alExtents: 4,
    alExtentBytes: 16 * BLOCK,
    onIoError: 'detach',
    resync: {
      resyncRateBytesPerSec: 100 * 1024 * 1024,
      cPlanAheadTenths: 0,
      cFillTargetBytes: 64 * 1024,
      cDelayTargetTenths: 10,
      cMaxRateBytesPerSec: 100 * 1024 * 1024,
      cMinRateBytesPerSec: 0,
    },
    csums: false,
    verify: true,
    digest: fnvDigest,
    uuidSeed: id * 7919,
    ...over,
  };
}

export class Pair {
  readonly a: HNode;
  readonly b: HNode;
  /** FIFO per direction and stream; a packet is delivered only by deliver()/settle(). */
  readonly links = new Map<string, Uint8Array[]>();
  connected = false;
  /** Which connection is up (a DATA send held for an earlier one is dropped). */
  private connGen = 0;
  private cmd = 1;
  private req = 1;
  readonly log: string[] = [];

  constructor(over: Partial<EngineConfig> = {}, overB: Partial<EngineConfig> = {}) {
    this.a = new HNode(1, 'alpha', 2);
    this.b = new HNode(2, 'bravo', 1);
    this.restart(this.a, over);
    this.restart(this.b, { ...over, ...overB });
  }

  boot(n: HNode): BootState {
    return { meta: n.meta, bitmaps: { [n.peer]: n.pbitmap.ranges() }, alExtents: [...n.pal] };
  }

  node(id: number): HNode {
    return id === 1 ? this.a : this.b;
  }

  /**
   * Restarts a node from what its disk and metadata hold (after crash() or cleanly): the old
   * driver stops, what its disk port had under way is lost.
   */
  restart(n: HNode, over: Partial<EngineConfig> = {}): void {
    (n.driver as Driver | undefined)?.stop();
    n.pendingIo.length = 0;
    n.deferred.length = 0;
    n.timers.clear();
    n.barrierFlushNext = false;
    n.mbitmap = copyOf(n.pbitmap);
    const r = createEngine(baseConfig(n.id, over), this.boot(n));
    n.driver = this.driverFor(n, r.state);
    n.driver.start(r.actions);
  }

  /** Feeds one event to a node's driver. An attach first gives the driver the disk again. */
  step(n: HNode, ev: EngineEvent): void {
    if (ev.type === 'admin' && ev.command.cmd === 'attach' && n.engine.disk === 'Diskless') {
      // A freshly opened disk: its in-memory bitmap is what it holds; a failure is forgotten.
      n.mbitmap = copyOf(n.pbitmap);
      n.driver.attachDisk(this.portFor(n));
    }
    n.driver.feed(ev);
  }

  adminCmd(n: HNode, command: AdminCommand): { ok: boolean; message: string } {
    const before = n.admin.length;
    this.step(n, { type: 'admin', cmdId: this.cmd++, command });
    // A promotion asks the peer first (two-phase): let the control packets through.
    for (let i = 0; i < 10 && n.admin.length === before; i++) {
      this.deliver(1, 'control');
      this.deliver(2, 'control');
    }
    return n.admin[before] ?? { ok: false, message: '(pending)' };
  }

  request(n: HNode, req: DistributiveOmit<ClientRequest, 'id'>): number {
    const id = this.req++;
    this.step(n, { type: 'request', req: { ...req, id } as ClientRequest });
    return id;
  }

  write(n: HNode, block: number, fill: number, blocks = 1, fua = false): number {
    return this.request(n, {
      op: 'write',
      offsetBytes: block * BLOCK,
      data: [new Uint8Array(blocks * BLOCK).fill(fill)],
      fua,
    });
  }

  /** The disk port of a node: every operation waits in `pendingIo` for the test. */
  private portFor(n: HNode): DiskPort {
    const pend = (
      kind: IoKind,
      apply: () => Uint8Array | undefined,
      done: IoDone,
      errnoOf?: () => Errno | null,
    ): void => {
      n.pendingIo.push({
        kind,
        run: () => {
          const errno = errnoOf?.() ?? null;
          if (errno !== null) return done(errno);
          const data = apply();
          if (data !== undefined) done(null, data);
          else done(null);
        },
        fail: (errno) => done(errno),
      });
    };
    return {
      read: (offsetBytes, lengthBytes, done) =>
        pend('read', () => n.disk.read(offsetBytes, lengthBytes), done),
      write: (offsetBytes, payload, fua, done) => {
        const data = Buffer.concat(payload);
        pend('write', () => void n.disk.write(offsetBytes, data, fua), done);
      },
      trim: (offsetBytes, lengthBytes, done) =>
        pend('trim', () => void n.disk.zero(offsetBytes, lengthBytes, false), done),
      zeroes: (offsetBytes, lengthBytes, fua, done) =>
        pend('zeroes', () => void n.disk.zero(offsetBytes, lengthBytes, fua), done),
      flush: (done) => {
        // A flush covers what was written when it was issued, not writes completing later.
        const snap = n.disk.snapshot();
        const kind = n.barrierFlushNext ? 'meta-flush' : 'flush';
        n.barrierFlushNext = false;
        pend(kind, () => void n.disk.flushSnapshot(snap), done);
      },
      writeMeta: (a, done) => {
        n.barrierFlushNext = false;
        const bits = a.type === 'bitmapFlush' ? copyOf(n.mbitmap) : null;
        pend('meta', () => void this.applyMeta(n, a, bits), done);
      },
      bitmapSet: (_peer, ranges) => {
        for (const r of ranges) n.mbitmap.set(r);
      },
      bitmapClear: (_peer, ranges) => {
        for (const r of ranges) n.mbitmap.clear(r);
      },
      capacity: (done) =>
        n.pendingIo.push({
          kind: 'capacity',
          run: () => done(n.capacityBytes, 'none'),
          fail: () => done(0, 'failed'),
        }),
      grow: (sizeBytes, done) => {
        n.barrierFlushNext = false;
        pend(
          'grow',
          () => {
            const blocks = sizeBytes / BLOCK;
            if (blocks > n.pbitmap.blocks) n.pbitmap = n.pbitmap.grown(blocks);
            if (blocks > n.mbitmap.blocks) n.mbitmap = n.mbitmap.grown(blocks);
            return undefined;
          },
          done,
          () => (sizeBytes <= n.capacityBytes ? null : 'ENOSPC'),
        );
      },
    };
  }

  /** A metadata write reaches the disk: what a restart or an attach boots from. */
  private applyMeta(n: HNode, a: MetaAction, bits: Bitmap | null): void {
    switch (a.type) {
      case 'persistMeta':
        n.meta = a.meta;
        return;
      case 'alCommit':
        for (const e of a.remove) n.pal.delete(e);
        for (const e of a.add) n.pal.add(e);
        return;
      case 'bitmapFlush':
        if (bits !== null) n.pbitmap = bits;
        return;
    }
  }

  /** Sees every step of either node: its event and the actions it returned (tests' marks). */
  observer: ((n: HNode, ev: EngineEvent, actions: readonly Action[]) => void) | null = null;

  private driverFor(n: HNode, state: EngineState): Driver {
    const driver: Driver = new Driver(state, {
      disk: this.portFor(n),
      net: {
        connection: () => (this.connected ? this.connGen : null),
        send: (_peer, stream, packet, conn) => {
          if (conn !== undefined && conn !== (this.connected ? this.connGen : null)) return;
          n.sent.push(packet);
          if (this.connected) this.queue(n.id, stream).push(Buffer.concat(encodePacket(packet)));
        },
        // The test opens and breaks the connection itself (connect(), cut()).
        connect: () => undefined,
        disconnect: () => undefined,
      },
      clock: {
        nowMs: () => this.nowMs,
        setTimeout: (fn) => {
          const id = n.nextTimer++;
          n.timers.set(id, fn);
          return { cancel: () => void n.timers.delete(id) };
        },
        defer: (fn) => void n.deferred.push(fn),
      },
      host: {
        complete: (a) =>
          n.completions.set(
            a.reqId,
            a.ok
              ? { ok: true, ...(a.data !== undefined ? { data: a.data } : {}) }
              : { ok: false, errno: a.errno },
          ),
        adminResult: (a) => {
          if (n.ownCmds.delete(a.cmdId)) return;
          n.admin.push({ ok: a.ok, message: a.message });
        },
        fencePeer: (peer, token) => void n.fences.push({ peer, token }),
        unfencePeer: (peer) => void n.unfences.push(peer),
        stateChange: (c) => {
          // The engine let its disk go (detach, on-io-error): the daemon's driver stops
          // using it, and an attach gives it back.
          if (c.what === 'disk' && c.disk === 'Diskless') driver.detachDisk(() => undefined);
        },
        note: (note) => {
          n.notes.push(note);
          this.log.push(`${n.name}: ${JSON.stringify(note)}`);
        },
        diskFailed: (errno) => {
          this.log.push(`${n.name}: metadata write failed (${errno}): detach`);
          const cmdId = this.cmd++;
          n.ownCmds.add(cmdId);
          driver.feed({ type: 'admin', cmdId, command: { cmd: 'detach', failed: true } });
        },
        stepped: (ev, actions) => {
          this.observer?.(n, ev, actions);
          const e = driver.engine;
          if (e !== null) checkInvariants(e);
          for (const a of actions) if (a.type === 'diskFlush') n.flushIos++;
        },
        barrierStarted: () => {
          n.barrierFlushNext = true;
        },
        // checkInvariants (in stepped) asserts everything the driver's live check covers.
        invariantBroken: (b) => {
          throw new Error(`${n.name}: the driver found a broken invariant: ${b.detail}`);
        },
      },
    });
    return driver;
  }

  private queue(from: number, stream: Stream): Uint8Array[] {
    const k = `${from}:${stream}`;
    let q = this.links.get(k);
    if (q === undefined) {
      q = [];
      this.links.set(k, q);
    }
    return q;
  }

  /** Opens the connection (both sides must have been told to connect). */
  connect(): void {
    this.connected = true;
    this.connGen++;
    this.links.clear();
    this.step(this.a, { type: 'connEstablished', peer: 2 });
    this.step(this.b, { type: 'connEstablished', peer: 1 });
  }

  /** Breaks the connection; in-flight packets are lost. */
  cut(): void {
    this.connected = false;
    this.links.clear();
    this.step(this.a, { type: 'connClosed', peer: 2 });
    this.step(this.b, { type: 'connClosed', peer: 1 });
  }

  /** Power loss of one node: in-flight packets and its pending I/O vanish, the peer sees the
   *  link drop, the node's disk keeps a seeded part of its cache, and it restarts from its
   *  metadata. */
  crash(n: HNode, seed = 1): void {
    this.connected = false;
    this.links.clear();
    const other = n === this.a ? this.b : this.a;
    this.step(other, { type: 'connClosed', peer: n.id });
    n.driver.stop();
    n.pendingIo.length = 0; // writes under way are lost, not torn
    n.disk.crash(new SeededRandom(seed));
    this.restart(n);
  }

  /** Delivers one queued packet from `from` on `stream`; false if none. */
  deliver(from: number, stream: Stream = 'data'): boolean {
    const q = this.queue(from, stream);
    const bytes = q.shift();
    if (bytes === undefined) return false;
    const d = decodePacket(bytes);
    if (!d.ok) throw new Error(`decode: ${d.error.message}`);
    const to = this.node(from === 1 ? 2 : 1);
    this.step(to, { type: 'packet', peer: from, packet: d.value });
    return true;
  }

  /** Runs what the driver deferred (answers it gives itself, e.g. EIO for a failed disk). */
  private runDeferred(n: HNode): boolean {
    if (n.deferred.length === 0) return false;
    for (let f = n.deferred.shift(); f !== undefined; f = n.deferred.shift()) f();
    return true;
  }

  /** Answers one pending operation, failing it if the test armed a failure for its kind. */
  private answer(n: HNode, io: PendingIo): void {
    if (n.failNextIo && DATA_IO.has(io.kind)) {
      n.failNextIo = false;
      return io.fail('EIO');
    }
    if (n.failNextMeta && BARRIER_IO.has(io.kind)) {
      n.failNextMeta = false;
      return io.fail('EIO');
    }
    io.run();
  }

  /**
   * Completes the newest pending disk I/O of a node (a disk may reorder); false if none. What
   * the driver deferred runs first (and counts as a move).
   */
  completeNewestIo(n: HNode): boolean {
    if (this.runDeferred(n)) return true;
    const io = n.pendingIo.pop();
    if (io === undefined) return false;
    this.answer(n, io);
    return true;
  }

  /**
   * Completes the oldest pending disk I/O of a node (metadata barrier I/O included); false if
   * none. What the driver deferred runs first (and counts as a move).
   */
  completeIo(n: HNode): boolean {
    if (this.runDeferred(n)) return true;
    const io = n.pendingIo.shift();
    if (io === undefined) return false;
    this.answer(n, io);
    return true;
  }

  /**
   * Completes a node's metadata barrier I/O (data flush and metadata write), the oldest first,
   * including barriers that start meanwhile, until none is pending or `max` completed. What a
   * barrier held (data I/O, DATA sends) is then released, not completed. Returns how many.
   */
  completeMeta(n: HNode, max = Infinity): number {
    let done = 0;
    while (done < max) {
      const i = n.pendingIo.findIndex((io) => BARRIER_IO.has(io.kind));
      if (i < 0) break;
      const [io] = n.pendingIo.splice(i, 1);
      this.answer(n, io!);
      done++;
    }
    return done;
  }

  /** Virtual time: each tick() is one resync controller tick later. */
  nowMs = 0;

  /** Fires every pending timer of both nodes (one controller tick). */
  tick(): void {
    this.nowMs += RESYNC_TICK_MS;
    for (const n of [this.a, this.b])
      for (const [id, fn] of [...n.timers]) {
        // A timer fired earlier in this tick may have cancelled this one.
        if (!n.timers.delete(id)) continue;
        fn();
      }
  }

  /** Runs until nothing moves: packets, disk I/O and (if `ticks`) resync timer ticks. */
  settle(ticks = 200): void {
    for (let round = 0; round < 100_000; round++) {
      let moved = false;
      for (const from of [1, 2])
        for (const st of ['control', 'data'] as const) while (this.deliver(from, st)) moved = true;
      for (const n of [this.a, this.b]) while (this.completeIo(n)) moved = true;
      if (!moved) {
        if (ticks <= 0 || (this.a.timers.size === 0 && this.b.timers.size === 0)) return;
        ticks--;
        this.tick();
      }
    }
    throw new Error('harness did not settle');
  }

  /** Both nodes connect, settle the handshake, then `alpha` is a fresh UpToDate Primary. */
  static initialized(over: Partial<EngineConfig> = {}, overB: Partial<EngineConfig> = {}): Pair {
    const p = new Pair(over, overB);
    p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
    p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
    p.connect();
    p.settle();
    p.adminCmd(p.a, { cmd: 'new-current-uuid', clearBitmap: true });
    p.settle();
    p.adminCmd(p.a, { cmd: 'primary', force: false });
    p.settle();
    return p;
  }

  oos(n: HNode): number {
    return n.engine.bitmaps.get(n.peer)?.weight ?? -1;
  }

  peerOf(n: HNode): { conn: string; repl: string; disk: string; role: string } {
    const p = n.engine.peers.get(n.peer);
    if (p === undefined) throw new Error('no peer');
    return { conn: p.conn, repl: p.repl, disk: p.disk, role: p.role };
  }

  /** Byte-identical data on both disks (cache included). */
  identical(): boolean {
    return Buffer.compare(this.a.disk.read(0, SIZE), this.b.disk.read(0, SIZE)) === 0;
  }
}
