// Deterministic simulation of a replicated cluster (VOPR style): engines, a network carrying
// wire-encoded packets, crash-prone disks with volatile caches and a workload, all driven by one
// seeded PRNG in virtual time. Each node runs the daemon's own action driver
// (src/replication/driver.ts: metadata barriers that hold back later data I/O and DATA sends,
// failed barriers, timers) on simulated ports; a crash keeps only what was durable. Fault rates are drawn from the
// seed (swarm testing); after the fault phase a heal phase must converge. Checkers: per-sector
// no-lost-acknowledged-write, durability of FUA/FLUSH at ack time, protocol C on the peer,
// no unmarked difference between connected replicas, convergence, resync volume, liveness, and
// the engine's invariants after every step.
import { BITMAP_BLOCK_BYTES, SECTOR_BYTES } from '../../src/limits.js';
import { SeededRandom } from '../../src/util/prng.js';
import { Bitmap } from '../../src/replication/bitmap.js';
import { checkInvariants, createEngine, type EngineState } from '../../src/replication/engine.js';
import {
  DRIVER_BUGS,
  Driver,
  type DiskPort,
  type DriverBug,
  type IoDone,
  type MetaAction,
} from '../../src/replication/driver.js';
import type {
  Action,
  AdminCommand,
  AfterSb0Pri,
  AfterSb1Pri,
  BlockRange,
  BootState,
  ClientRequest,
  EngineConfig,
  EngineEvent,
  Metadata,
  Packet,
  PlantedBug,
  Protocol,
  ReplState,
  DiskState,
  ConnState,
  Role,
} from '../../src/replication/types.js';
import { UUID_JUST_CREATED } from '../../src/replication/uuid.js';
import { decodePacket, encodePacket } from '../../src/replication/wire.js';
import { SimDisk, type FlushSnapshot } from './disk.js';
import { chunksLength } from '../../src/util/chunks.js';

const BLOCK = BITMAP_BLOCK_BYTES;
const SECTORS = BLOCK / SECTOR_BYTES;
const STAMP_MAGIC = 0x5354_414d;

/** Planted bugs: the engine's, and the driver's (DriverBug, src/replication/driver.ts). */
export type { DriverBug };
export type SimBug = PlantedBug | DriverBug;
const isDriverBug = (b: SimBug): b is DriverBug => (DRIVER_BUGS as readonly string[]).includes(b);

export interface SimOptions {
  readonly seed: number;
  readonly plantedBug?: SimBug;
  readonly trace?: boolean;
  /**
   * Whether a client write may overlap one still in flight on the same node (the rate is drawn
   * from the seed). False replays the workload of seeds recorded before overlaps existed.
   * @default true
   */
  readonly overlap?: boolean;
  /**
   * on-io-error of both nodes. By default drawn from a third stream of the seed (pass_on in a
   * quarter of the seeds), so seeds recorded before pass_on existed replay with 'detach'.
   */
  readonly onIoError?: 'detach' | 'pass_on';
}

export interface SimStats {
  simulatedMs: number;
  writesAcked: number;
  /** Writes issued while an overlapping write of the same node was in flight. */
  writesOverlapping: number;
  readsChecked: number;
  sectorsChecked: number;
  faults: Record<string, number>;
  resyncs: number;
  resyncBlocks: number;
  events: number;
}

export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violation: string | null;
  readonly stats: SimStats;
  readonly trace: readonly string[];
  readonly params: string;
}

class Violation extends Error {}

// --- event queue ------------------------------------------------------------------------------

interface QItem {
  readonly at: number;
  readonly seq: number;
  readonly run: () => void;
}

class Queue {
  private heap: QItem[] = [];
  private n = 0;
  push(at: number, run: () => void): void {
    const item = { at, seq: this.n++, run };
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const j = (i - 1) >> 1;
      if (!less(h[i]!, h[j]!)) break;
      [h[i], h[j]] = [h[j]!, h[i]!];
      i = j;
    }
  }
  pop(): QItem | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
  get size(): number {
    return this.heap.length;
  }
}

const less = (a: QItem, b: QItem): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq);

// --- parameters drawn from the seed -----------------------------------------------------------

interface Params {
  protocol: Protocol;
  netDelayMs: number;
  diskDelayMs: number;
  workloadMs: number;
  opIntervalMs: number;
  queueDepth: number;
  fuaProb: number;
  flushProb: number;
  readProb: number;
  faultIntervalMs: number;
  faultWeights: Record<FaultKind, number>;
  diskErrorRate: number;
  csums: boolean;
  verify: boolean;
  fixedRate: boolean;
  alExtents: number;
  initialFullSync: boolean;
  afterSb0Pri: AfterSb0Pri;
  afterSb1Pri: AfterSb1Pri;
  hotBlocks: number;
  /** disk-flushes: false models non-volatile disk caches (writes durable on completion). */
  diskFlushes: boolean;
}

type FaultKind =
  | 'partition'
  | 'disconnect'
  | 'crash'
  | 'crashInMeta'
  | 'powerLoss'
  | 'failover'
  | 'verify'
  | 'diskErrors'
  | 'splitBrain'
  | 'delaySpike';

const SIZE_BYTES = 1024 * 1024;
const BLOCKS = SIZE_BYTES / BLOCK;
const AL_EXTENT_BYTES_SIM = 64 * 1024;
const AL_EXTENT_BLOCKS = AL_EXTENT_BYTES_SIM / BLOCK;
const HEAL_BOUND_MS = 120_000;

function drawParams(r: SeededRandom): Params {
  const pick = <T>(xs: readonly T[]): T => xs[r.int(xs.length)]!;
  const w = (): number => (r.int(4) === 0 ? 0 : 1 + r.int(4));
  return {
    protocol: pick(['A', 'B', 'C', 'C', 'C'] as const),
    netDelayMs: 0.05 + r.next() * 3,
    diskDelayMs: 0.05 + r.next() * 2,
    workloadMs: 3000 + r.int(7000),
    opIntervalMs: 1 + r.next() * 15,
    queueDepth: 1 + r.int(4),
    fuaProb: r.next() * 0.2,
    flushProb: r.next() * 0.2,
    readProb: 0.1 + r.next() * 0.4,
    faultIntervalMs: 150 + r.int(2500),
    faultWeights: {
      partition: w(),
      disconnect: w(),
      crash: w(),
      crashInMeta: w(),
      powerLoss: r.int(2) === 0 ? w() : 0,
      failover: w(),
      verify: w(),
      diskErrors: r.int(3) === 0 ? 1 : 0,
      splitBrain: r.int(3) === 0 ? 1 : 0,
      delaySpike: w(),
    },
    diskErrorRate: 0.02 + r.next() * 0.1,
    csums: r.int(3) === 0,
    verify: r.int(2) === 0,
    fixedRate: r.int(2) === 0,
    alExtents: 2 + r.int(5),
    initialFullSync: r.int(3) === 0,
    afterSb0Pri: pick([
      'disconnect',
      'discard-younger-primary',
      'discard-older-primary',
      'discard-zero-changes',
      'discard-least-changes',
      'discard-node-n2',
    ] as const),
    afterSb1Pri: pick(['disconnect', 'consensus', 'discard-secondary'] as const),
    hotBlocks: 8 + r.int(BLOCKS - 8),
    diskFlushes: r.int(6) !== 0,
  };
}

// --- a simple digest (the engine gets it injected; the daemon uses a real hash) ---------------

export function fnvDigest(d: Uint8Array): Uint8Array {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < d.length; i++) {
    h1 = Math.imul(h1 ^ d[i]!, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ d[i]!, 0x5bd1e995) >>> 0;
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setUint32(0, h1);
  new DataView(out.buffer).setUint32(4, h2);
  return out;
}

// --- nodes ------------------------------------------------------------------------------------

interface PeerView {
  conn: ConnState;
  repl: ReplState;
  disk: DiskState;
  role: Role;
  /** Bumps on every change of this node's view of the peer. */
  epoch: number;
}

interface ClientOp {
  readonly req: ClientRequest;
  readonly node: number;
  readonly issuedAt: number;
  readonly floorAtIssue: Int32Array | null;
  readonly range: BlockRange;
  readonly stampSeq: number;
  readonly inSyncAtIssue: Map<number, number>;
  /** The issuing node's own disk was UpToDate (its ack then speaks for that disk too). */
  readonly localAtIssue: boolean;
  /** Each node's incarnation at issue: a peer that crashed since owes nothing unflushed. */
  readonly incAtIssue: readonly number[];
}

interface ResyncSession {
  readonly source: number;
  readonly target: number;
  readonly bitsAtStart: number;
  bitsAdded: number;
  /** Distinct blocks sent (a block re-fetched after a racing write counts once). */
  readonly moved: Set<number>;
}

/** A metadata write under way (a crash lands any part of it). */
interface MetaWrite {
  readonly action: MetaAction;
  /** bitmapFlush: the in-memory bitmap when its write began (the daemon takes pages then). */
  readonly bits: Bitmap | null;
}

class Node {
  /** The running engine's driver; null while the node is down. */
  driver: Driver | null = null;
  incarnation = 0;
  readonly disk: SimDisk;
  meta: Metadata;
  readonly pbitmap: Bitmap; // persisted bitmap of the (single) peer slot
  mbitmap: Bitmap; // the daemon's in-memory bitmap, mirroring the engine's actions
  readonly pal = new Set<number>();
  readonly wantConnect = new Set<number>();
  role: Role = 'Secondary';
  diskState: DiskState = 'Diskless';
  readonly views = new Map<number, PeerView>();
  errorUntil = 0;
  detached = false;
  floor = new Int32Array(BLOCKS);
  durable = new Int32Array(BLOCKS);
  /** This incarnation's simulated disk as the driver sees it. */
  port: DiskPort | null = null;
  /** The metadata write under way, if any. */
  metaWriting: MetaWrite | null = null;
  /** crashInMeta: crash while the next metadata barrier runs, if one starts before this. */
  crashArmedUntil = 0;

  get engine(): EngineState | null {
    return this.driver?.engine ?? null;
  }

  constructor(
    readonly id: number,
    readonly name: string,
    readonly peerId: number,
    volatileCache: boolean,
  ) {
    this.disk = new SimDisk(SIZE_BYTES, volatileCache);
    this.meta = {
      currentUuid: UUID_JUST_CREATED,
      bitmapUuids: { [peerId]: 0n },
      historyUuids: [],
      flags: { consistent: false, wasUpToDate: false, crashedPrimary: false },
    };
    this.pbitmap = new Bitmap(BLOCKS);
    this.mbitmap = new Bitmap(BLOCKS);
    this.views.set(peerId, {
      conn: 'StandAlone',
      repl: 'Off',
      disk: 'Diskless',
      role: 'Unknown',
      epoch: 0,
    });
  }

  view(): PeerView {
    return this.views.get(this.peerId)!;
  }

  /**
   * What the daemon boots the engine from (LocalDisk.open): an activity log left unclean marks
   * its extents in every bitmap slot on disk and is emptied before the engine starts.
   */
  boot(alExtentBlocks: number): BootState {
    for (const e of this.pal)
      this.pbitmap.set({ start: e * alExtentBlocks, count: alExtentBlocks });
    this.pal.clear();
    return {
      meta: this.meta,
      bitmaps: { [this.peerId]: this.pbitmap.ranges() },
      alExtents: [],
    };
  }
}

// --- the simulation ---------------------------------------------------------------------------

export class Simulation {
  readonly rng: SeededRandom;
  readonly p: Params;
  readonly q = new Queue();
  now = 0;
  readonly nodes: Node[];
  readonly trace: string[] = [];
  readonly stats: SimStats = {
    simulatedMs: 0,
    writesAcked: 0,
    writesOverlapping: 0,
    readsChecked: 0,
    sectorsChecked: 0,
    faults: {},
    resyncs: 0,
    resyncBlocks: 0,
    events: 0,
  };
  private nextReq = 1;
  private nextCmd = 1;
  private nextStamp = 1;
  private nextConn = 1;
  private nextIo = 1;
  private packetsInFlight = 0;
  private closesPending = 0;
  readonly ops = new Map<number, ClientOp>();
  /** stamp seq -> the blocks that write covered */
  readonly stamps = new Map<number, BlockRange>();
  /** block -> the node whose writes to it are in flight, and how many */
  readonly writingBlocks = new Map<number, { node: number; count: number }>();
  /**
   * Chance that a write may overlap writes in flight on its node. Drawn from its own stream so
   * the seed's main draws (and the seeds recorded before overlaps) stay as they were.
   */
  private readonly overlapProb: number;
  private readonly overlapRng: SeededRandom;
  private readonly onIoError: 'detach' | 'pass_on';
  private conn: { id: number; lastAt: Record<string, number> } | null = null;
  private partitionedUntil = 0;
  /** A handshake was refused because a Primary held the older data (seed 9715). */
  private primaryRefusedTarget = false;
  /** Diskless Primaries that refused a peer's data of another generation (the heal demotes). */
  private readonly disklessRefused = new Set<number>();
  private delaySpikeUntil = 0;
  private phase: 'workload' | 'heal' | 'done' = 'workload';
  private healStart = 0;
  private readonly sessions = new Map<string, ResyncSession>();
  private readonly flushSnaps = new Map<
    number,
    { floor: Int32Array; peers: Map<number, number> }
  >();
  private readonly cmdCallbacks = new Map<number, (ok: boolean) => void>();

  constructor(readonly opts: SimOptions) {
    this.rng = new SeededRandom(opts.seed);
    this.p = drawParams(this.rng);
    this.overlapRng = new SeededRandom(opts.seed ^ 0x6f766c70);
    this.overlapProb =
      opts.overlap === false || this.overlapRng.int(4) === 0 ? 0 : this.overlapRng.next();
    this.onIoError =
      opts.onIoError ??
      (new SeededRandom(opts.seed ^ 0x7061736f).int(4) === 0 ? 'pass_on' : 'detach');
    // pass_on is about disk errors: its seeds always have some (their fault choice differs
    // from the same seed under 'detach' from the first disk-error fault on anyway).
    if (this.onIoError === 'pass_on')
      this.p.faultWeights.diskErrors = Math.max(this.p.faultWeights.diskErrors, 2);
    this.nodes = [
      new Node(1, 'n1', 2, this.p.diskFlushes),
      new Node(2, 'n2', 1, this.p.diskFlushes),
    ];
  }

  params(): string {
    const p = this.p;
    return `protocol=${p.protocol} net=${p.netDelayMs.toFixed(2)}ms disk=${p.diskDelayMs.toFixed(2)}ms workload=${p.workloadMs}ms qd=${p.queueDepth} faultEvery=${p.faultIntervalMs}ms csums=${p.csums} verify=${p.verify} fixedRate=${p.fixedRate} al=${p.alExtents} fullSync=${p.initialFullSync} sb0=${p.afterSb0Pri} sb1=${p.afterSb1Pri} hot=${p.hotBlocks} diskFlushes=${p.diskFlushes} overlap=${this.overlapProb.toFixed(2)} onIoError=${this.onIoError}`;
  }

  private log(line: string): void {
    if (this.opts.trace === true) this.trace.push(`${this.now.toFixed(3).padStart(10)} ${line}`);
  }

  private fault(kind: string): void {
    this.stats.faults[kind] = (this.stats.faults[kind] ?? 0) + 1;
    this.log(`FAULT ${kind}`);
  }

  private at(delayMs: number, run: () => void): void {
    this.q.push(this.now + delayMs, run);
  }

  private config(n: Node): EngineConfig {
    return {
      nodeId: n.id,
      nodeName: n.name,
      sizeBytes: SIZE_BYTES,
      peers: [{ nodeId: n.peerId, name: this.node(n.peerId).name }],
      protocol: this.p.protocol,
      allowTwoPrimaries: false,
      afterSb0Pri: this.p.afterSb0Pri,
      afterSb1Pri: this.p.afterSb1Pri,
      afterSb2Pri: 'disconnect',
      maxEpochSize: 2048,
      alExtents: this.p.alExtents,
      alExtentBytes: AL_EXTENT_BYTES_SIM,
      onIoError: this.onIoError,
      diskFlushes: this.p.diskFlushes,
      resync: {
        resyncRateBytesPerSec: 2 * 1024 * 1024,
        cPlanAheadTenths: this.p.fixedRate ? 0 : 20,
        cFillTargetBytes: 256 * 1024,
        cDelayTargetTenths: 10,
        cMaxRateBytesPerSec: 20 * 1024 * 1024,
        cMinRateBytesPerSec: 512 * 1024,
      },
      csums: this.p.csums,
      verify: this.p.verify,
      digest: fnvDigest,
      uuidSeed: this.rng.int(0x7fff_ffff),
      ...(this.opts.plantedBug !== undefined && !isDriverBug(this.opts.plantedBug)
        ? { plantedBug: this.opts.plantedBug }
        : {}),
    };
  }

  node(id: number): Node {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  // --- driving engines ---

  private start(n: Node): void {
    n.incarnation++;
    const boot = n.boot(AL_EXTENT_BLOCKS);
    n.mbitmap = new Bitmap(BLOCKS);
    for (const r of n.pbitmap.ranges()) n.mbitmap.set(r);
    n.role = 'Secondary';
    n.diskState = 'Diskless';
    n.views.set(n.peerId, {
      conn: 'StandAlone',
      repl: 'Off',
      disk: 'Diskless',
      role: 'Unknown',
      epoch: n.view().epoch + 1,
    });
    n.detached = false;
    n.metaWriting = null;
    const r = createEngine(this.config(n), boot);
    n.driver = this.driverFor(n, r.state);
    this.log(
      `${n.name} START uuid=${n.meta.currentUuid.toString(16)} crashed=${n.meta.flags.crashedPrimary}`,
    );
    n.driver.start(r.actions);
    this.admin(n, { cmd: 'connect', peer: n.peerId, discardMyData: false });
  }

  private deliver(n: Node, ev: EngineEvent): void {
    try {
      n.driver?.feed(ev);
    } catch (err) {
      if (err instanceof Violation) throw err;
      throw new Violation(`invariant/assertion on ${n.name}: ${(err as Error).message}`);
    }
  }

  admin(n: Node, command: AdminCommand, then?: (ok: boolean) => void): void {
    const cmdId = this.nextCmd++;
    if (then !== undefined) this.cmdCallbacks.set(cmdId, then);
    this.deliver(n, { type: 'admin', cmdId, command });
  }

  private diskLatency(): number {
    return this.p.diskDelayMs * (0.5 + this.rng.next());
  }

  private diskFails(n: Node): boolean {
    return this.now < n.errorUntil && this.rng.next() < this.p.diskErrorRate;
  }

  /**
   * The production driver on this node's simulated disk, network and virtual clock. Its
   * answers are dropped once the node crashed (a new incarnation has a new driver).
   */
  private driverFor(n: Node, state: EngineState): Driver {
    const inc = n.incarnation;
    const live = (): boolean => n.incarnation === inc;
    const later = (run: () => void): void =>
      this.at(this.diskLatency(), () => {
        if (live()) run();
      });
    const disk: DiskPort = {
      read: (offsetBytes, lengthBytes, done) =>
        later(() =>
          this.diskFails(n) ? done('EIO') : done(null, n.disk.read(offsetBytes, lengthBytes)),
        ),
      write: (offsetBytes, data, fua, done) =>
        this.simWrite(n, offsetBytes, Buffer.concat(data), fua, done),
      trim: (offsetBytes, lengthBytes, done) =>
        this.simWrite(n, offsetBytes, new Uint8Array(lengthBytes), false, done),
      zeroes: (offsetBytes, lengthBytes, fua, done) =>
        this.simWrite(n, offsetBytes, new Uint8Array(lengthBytes), fua, done),
      flush: (done) => {
        const snap: FlushSnapshot = n.disk.snapshot();
        later(() => {
          if (this.diskFails(n)) return done('EIO');
          n.disk.flushSnapshot(snap);
          done(null);
        });
      },
      writeMeta: (action, done) => {
        const w: MetaWrite = {
          action,
          bits: action.type === 'bitmapFlush' ? copyBitmap(n.mbitmap) : null,
        };
        n.metaWriting = w;
        later(() => {
          n.metaWriting = null;
          // A failed metadata write lands in part.
          const failed = this.diskFails(n);
          applyMeta(n, w, failed ? this.rng : null);
          if (failed) this.log(`${n.name} metadata write failed`);
          done(failed ? 'EIO' : null);
        });
      },
      bitmapSet: (_peer, ranges) => {
        for (const r of ranges) {
          n.mbitmap.set(r);
          this.noteBitsAdded(n, r.count);
        }
      },
      bitmapClear: (_peer, ranges) => {
        for (const r of ranges) n.mbitmap.clear(r);
      },
      // The simulator's disks never grow: a capacity probe reports the current size.
      capacity: (done) => later(() => done(n.disk.sizeBytes, 'none')),
      grow: (_sizeBytes, done) => later(() => done('ENOSPC')),
    };
    n.port = disk;
    return new Driver(
      state,
      {
        disk,
        net: {
          connection: () => this.conn?.id ?? -1,
          send: (peer, stream, packet, conn) => {
            if (conn === undefined || this.conn?.id === conn) this.send(n, peer, stream, packet);
          },
          connect: (peer) => {
            n.wantConnect.add(peer);
            this.scheduleConnect();
          },
          disconnect: (peer) => {
            n.wantConnect.delete(peer);
            this.closeConn(n);
          },
        },
        clock: {
          nowMs: () => this.now,
          setTimeout: (fn, delayMs) => {
            let live = true;
            this.at(delayMs, () => {
              if (live) fn();
            });
            return { cancel: () => (live = false) };
          },
          defer: (fn) => this.at(0, fn),
        },
        host: {
          complete: (a) => this.onComplete(n, a),
          adminResult: (a) => {
            const cb = this.cmdCallbacks.get(a.cmdId);
            this.cmdCallbacks.delete(a.cmdId);
            cb?.(a.ok);
          },
          stateChange: (c) => this.onStateChange(n, c),
          // The simulator's configurations keep fencing dont-care; the engine never asks.
          fencePeer: () => {
            throw new Error('simulator: unexpected fencePeer (fencing is not simulated)');
          },
          unfencePeer: () => {
            throw new Error('simulator: unexpected unfencePeer (fencing is not simulated)');
          },
          note: (note) => this.onNote(n, note),
          diskFailed: () => {
            this.log(`${n.name} metadata write failed: detach`);
            // `failed`: even a lone Primary goes (under pass_on no data error would detach it:
            // seed 61002091, its disk failing every I/O stayed attached as a stuck SyncTarget).
            this.admin(n, { cmd: 'detach', failed: true });
          },
          stepped: (ev, actions) => {
            this.stats.events++;
            if (this.opts.trace === true) {
              this.log(`${n.name} <- ${describeEvent(ev)}`);
              for (const a of actions)
                if (a.type !== 'send') this.log(`${n.name} -> ${describeAction(a)}`);
            }
            checkInvariants(state);
          },
          barrierStarted: () => this.armedCrash(n, inc),
          // checkInvariants (in stepped) asserts everything the driver's live check covers.
          invariantBroken: (b) => {
            throw new Error(`simulator: the driver found a broken invariant: ${b.detail}`);
          },
        },
      },
      this.opts.plantedBug !== undefined && isDriverBug(this.opts.plantedBug)
        ? { plantedBug: this.opts.plantedBug }
        : {},
    );
  }

  /** A data write (or trim/zeroes as zeros) on the simulated disk, failing in error bursts. */
  private simWrite(
    n: Node,
    offsetBytes: number,
    payload: Uint8Array,
    fua: boolean,
    done: IoDone,
  ): void {
    const inc = n.incarnation;
    const data = new Uint8Array(payload);
    const key = this.nextIo++;
    n.disk.inFlight.set(key, { offsetBytes, data });
    this.at(this.diskLatency(), () => {
      if (n.incarnation !== inc) return;
      n.disk.inFlight.delete(key);
      if (this.diskFails(n)) return done('EIO');
      n.disk.write(offsetBytes, data, fua);
      done(null);
    });
  }

  /** crashInMeta: a crash somewhere inside this barrier's flush or write. */
  private armedCrash(n: Node, inc: number): void {
    if (n.crashArmedUntil <= this.now) return;
    n.crashArmedUntil = 0;
    this.at(this.rng.next() * 3 * this.p.diskDelayMs, () => {
      if (n.incarnation === inc && n.engine !== null && this.downCount() === 0) {
        this.fault('crashInMeta');
        this.crash(n);
        this.at(100 + this.rng.int(3000), () => this.restart(n));
      }
    });
  }

  private onStateChange(n: Node, c: Extract<Action, { type: 'stateChange' }>['change']): void {
    const v = n.view();
    switch (c.what) {
      case 'role':
        n.role = c.role;
        return;
      case 'disk':
        n.diskState = c.disk;
        if (c.disk === 'Diskless' && n.engine !== null) n.detached = true;
        return;
      case 'connection':
        v.conn = c.conn;
        break;
      case 'replication':
        v.repl = c.repl;
        if (c.repl === 'Established')
          this.at(0, () => this.checkReplicasAgree(`${n.name} became Established`));
        break;
      case 'peerDisk':
        v.disk = c.disk;
        break;
      case 'peerRole':
        v.role = c.role;
        break;
    }
    v.epoch++;
  }

  private noteBitsAdded(n: Node, count: number): void {
    for (const s of this.sessions.values()) if (s.target === n.id) s.bitsAdded += count;
  }

  private onNote(n: Node, note: Extract<Action, { type: 'note' }>['note']): void {
    this.log(`${n.name} NOTE ${JSON.stringify(note)}`);
    if (note.kind === 'split-brain' && note.resolved.startsWith('refused: a Primary'))
      this.primaryRefusedTarget = true;
    if (note.kind === 'handshake' && note.rule === 'diskless-stale-data')
      this.disklessRefused.add(n.id);
    if (note.kind === 'resync-started' && note.role === 'target') {
      this.stats.resyncs++;
      this.sessions.set(`${note.peer}->${n.id}`, {
        source: note.peer,
        target: n.id,
        bitsAtStart: note.bits,
        bitsAdded: 0,
        moved: new Set(),
      });
    }
    if (note.kind === 'resync-finished' && note.role === 'target') {
      const key = `${note.peer}->${n.id}`;
      const s = this.sessions.get(key);
      this.sessions.delete(key);
      if (s !== undefined && s.moved.size > s.bitsAtStart + s.bitsAdded)
        throw new Violation(
          `resync ${key} moved ${s.moved.size} blocks but only ${s.bitsAtStart}+${s.bitsAdded} were marked`,
        );
      // The target now holds the source's data: it inherits the source's obligations.
      const src = this.node(note.peer);
      n.floor = this.p.protocol === 'C' ? new Int32Array(src.floor) : new Int32Array(src.durable);
      n.durable = new Int32Array(src.durable);
    }
  }

  // --- network ---

  private linkDelay(): number {
    const spike = this.now < this.delaySpikeUntil ? 20 + this.rng.next() * 80 : 0;
    return this.p.netDelayMs * (0.5 + this.rng.next()) + spike;
  }

  private send(from: Node, to: number, stream: 'data' | 'control', packet: Packet): void {
    const c = this.conn;
    if (c === null) return;
    const bytes = Buffer.concat(encodePacket(packet));
    const key = `${from.id}:${stream}`;
    const when = Math.max(this.now + this.linkDelay(), c.lastAt[key] ?? 0);
    c.lastAt[key] = when;
    if (packet.kind === 'RsReply' || packet.kind === 'RsInSync') {
      const s = this.sessions.get(`${from.id}->${to}`);
      if (s !== undefined)
        for (let b = packet.start; b < packet.start + packet.count; b++) s.moved.add(b);
      this.stats.resyncBlocks += packet.count;
    }
    this.packetsInFlight++;
    this.q.push(when, () => {
      this.packetsInFlight--;
      if (this.conn?.id !== c.id) return;
      const d = decodePacket(bytes);
      if (!d.ok) throw new Violation(`wire decode failed: ${d.error.message}`);
      this.deliver(this.node(to), { type: 'packet', peer: from.id, packet: d.value });
    });
  }

  private scheduleConnect(): void {
    this.at(5 + this.rng.next() * 30, () => this.tryConnect());
  }

  private tryConnect(): void {
    if (this.conn !== null || this.now < this.partitionedUntil) return;
    // Both ends learn of the old connection's end before a new one starts (per peer,
    // connClosed and connEstablished alternate: the engine's contract).
    if (this.closesPending > 0) {
      this.at(10, () => this.tryConnect());
      return;
    }
    const [a, b] = this.nodes as [Node, Node];
    if (a.engine === null || b.engine === null) return;
    if (!a.wantConnect.has(b.id) || !b.wantConnect.has(a.id)) return;
    this.conn = { id: this.nextConn++, lastAt: {} };
    this.log(`NET established conn=${this.conn.id}`);
    this.deliver(a, { type: 'connEstablished', peer: b.id });
    this.deliver(b, { type: 'connEstablished', peer: a.id });
  }

  /** Drops the connection; the live ends learn about it after a detection delay. */
  private closeConn(initiator: Node | null): void {
    const c = this.conn;
    if (c === null) return;
    this.conn = null;
    this.log(`NET closed conn=${c.id}`);
    for (const n of this.nodes) {
      if (n === initiator) continue;
      const inc = n.incarnation;
      this.closesPending++;
      this.at(1 + this.rng.next() * 5, () => {
        this.closesPending--;
        if (n.incarnation !== inc) return;
        this.deliver(n, { type: 'connClosed', peer: n.peerId });
      });
    }
    this.at(50 + this.rng.next() * 50, () => this.tryConnect());
  }

  // --- workload and checking ---

  private primaries(): Node[] {
    return this.nodes.filter((n) => n.engine !== null && n.role === 'Primary');
  }

  private inSyncPeers(n: Node): Map<number, number> {
    const m = new Map<number, number>();
    const v = n.view();
    if (v.conn === 'Connected' && v.repl === 'Established' && v.disk === 'UpToDate')
      m.set(n.peerId, v.epoch);
    return m;
  }

  private issueOp(): void {
    const prim = this.primaries();
    if (prim.length === 0) return;
    const n = prim[this.rng.int(prim.length)]!;
    let outstanding = 0;
    for (const o of this.ops.values()) if (o.node === n.id) outstanding++;
    if (outstanding >= this.p.queueDepth) return;
    const id = this.nextReq++;
    const roll = this.rng.next();
    const count = 1 + this.rng.int(3);
    let start = Math.min(this.rng.int(this.p.hotBlocks), BLOCKS - count);
    let range = { start, count };
    let req: ClientRequest;
    let stampSeq = 0;
    if (roll < this.p.flushProb) req = { op: 'flush', id };
    else if (roll < this.p.flushProb + this.p.readProb)
      req = { op: 'read', id, offsetBytes: start * BLOCK, lengthBytes: count * BLOCK };
    else {
      // Overlapping writes in flight on one node: the engine orders them (issue order on
      // every copy), so the floors stay sound. Across nodes (two Primaries after a split) a
      // later stamp may lose to an earlier one: never overlap those.
      const aim = this.overlapTarget(n);
      if (aim !== null) {
        start = Math.max(0, Math.min(aim.start + this.overlapRng.int(5) - 2, BLOCKS - count));
        range = { start, count };
      }
      let busy = false;
      for (let b = start; b < start + count; b++) {
        const w = this.writingBlocks.get(b);
        if (w === undefined) continue;
        if (w.node !== n.id) return;
        busy = true;
      }
      if (busy && !(this.overlapRng.next() < this.overlapProb)) return;
      if (busy) this.stats.writesOverlapping++;
      stampSeq = this.nextStamp++;
      this.stamps.set(stampSeq, range);
      for (let b = start; b < start + count; b++) {
        const w = this.writingBlocks.get(b);
        if (w === undefined) this.writingBlocks.set(b, { node: n.id, count: 1 });
        else w.count++;
      }
      req = {
        op: 'write',
        id,
        offsetBytes: start * BLOCK,
        data: asReceived(stampData(stampSeq, range)),
        fua: this.rng.next() < this.p.fuaProb,
      };
    }
    const op: ClientOp = {
      req,
      node: n.id,
      issuedAt: this.now,
      floorAtIssue: req.op === 'read' ? new Int32Array(n.floor) : null,
      range,
      stampSeq,
      inSyncAtIssue: this.inSyncPeers(n),
      localAtIssue: this.localUpToDate(n),
      incAtIssue: this.nodes.map((x) => x.incarnation),
    };
    this.ops.set(id, op);
    if (req.op === 'flush')
      this.flushSnaps.set(id, { floor: new Int32Array(n.floor), peers: op.inSyncAtIssue });
    this.deliver(n, { type: 'request', req });
  }

  /** Sometimes (at the seed's overlap rate) a write of `n` in flight to aim the next one at. */
  private overlapTarget(n: Node): BlockRange | null {
    if (this.overlapProb === 0 || !(this.overlapRng.next() < this.overlapProb)) return null;
    const mine = [...this.ops.values()].filter((o) => o.node === n.id && o.req.op === 'write');
    if (mine.length === 0) return null;
    return mine[this.overlapRng.int(mine.length)]!.range;
  }

  private writeDone(r: BlockRange): void {
    for (let b = r.start; b < r.start + r.count; b++) {
      const w = this.writingBlocks.get(b);
      if (w !== undefined && --w.count <= 0) this.writingBlocks.delete(b);
    }
  }

  private onComplete(n: Node, a: Extract<Action, { type: 'complete' }>): void {
    const op = this.ops.get(a.reqId);
    if (op === undefined) throw new Violation(`${n.name} completed unknown request ${a.reqId}`);
    this.ops.delete(a.reqId);
    const req = op.req;
    if (req.op === 'write') this.writeDone(op.range);
    if (!a.ok) {
      this.log(`${n.name} request ${a.reqId} ${req.op} failed ${a.errno}`);
      if (req.op === 'flush') this.flushSnaps.delete(a.reqId);
      return;
    }
    const stillInSync = (peer: number, epoch: number): boolean => {
      const v = n.view();
      return (
        v.epoch === epoch &&
        v.conn === 'Connected' &&
        v.repl === 'Established' &&
        v.disk === 'UpToDate'
      );
    };
    const local = op.localAtIssue && this.localUpToDate(n);
    if (req.op === 'write') {
      this.stats.writesAcked++;
      const syncPeers = [...op.inSyncAtIssue]
        .filter(([p, e]) => stillInSync(p, e))
        .map(([p]) => this.node(p));
      // What the ack promises, checked when it is given: FUA is durable on every in-sync disk;
      // protocol C (and FUA under A/B) has the write on the peer's disk, flushed or not.
      if (req.fua && local) this.requireOnDisk(n, 'durable', op, `acked FUA write ${a.reqId}`);
      for (const peer of syncPeers) {
        if (req.fua) this.requireOnDisk(peer, 'durable', op, `acked FUA write ${a.reqId}`);
        else if (
          this.p.protocol === 'C' &&
          peer.engine !== null &&
          peer.incarnation === op.incAtIssue[this.nodes.indexOf(peer)]
        )
          // Unless the peer crashed since (its WriteAck may still have been on the way).
          this.requireOnDisk(peer, 'written', op, `acked protocol-C write ${a.reqId}`);
      }
      for (let b = op.range.start; b < op.range.start + op.range.count; b++) {
        n.floor[b] = Math.max(n.floor[b]!, op.stampSeq);
        // `durable` is what this node's own disk keeps through a power loss: not a write
        // acknowledged while it had no UpToDate disk (seed 7321, see targets below).
        if (req.fua && local) n.durable[b] = Math.max(n.durable[b]!, op.stampSeq);
        if (this.p.protocol === 'C' || req.fua) {
          for (const peer of syncPeers) {
            peer.floor[b] = Math.max(peer.floor[b]!, op.stampSeq);
            if (req.fua) peer.durable[b] = Math.max(peer.durable[b]!, op.stampSeq);
          }
        }
      }
    } else if (req.op === 'flush') {
      const snap = this.flushSnaps.get(a.reqId);
      this.flushSnaps.delete(a.reqId);
      if (snap !== undefined) {
        const peers = [...snap.peers]
          .filter(([p, e]) => stillInSync(p, e))
          .map(([p]) => this.node(p));
        // A completed FLUSH: every write acknowledged before it was issued is durable on this
        // node's disk and on every disk in sync for the whole flush.
        for (const t of local ? [n, ...peers] : peers)
          this.requireDurable(t, snap.floor, `completed flush ${a.reqId}`);
        // A node without an UpToDate disk of its own (a Diskless Primary) gains no durable
        // floor: its disk holds none of those writes. After a power loss of both nodes such a
        // disk, whose detach could not be recorded (the metadata write failed with it), comes
        // back claiming UpToDate; promoted alone (the split-brain fault) it serves the data it
        // had, as DRBD without fencing does (seed 7321). Reconnected, it syncs from the peer.
        for (const t of [n, ...peers]) {
          for (let b = 0; b < BLOCKS; b++) {
            if (t !== n || local) t.durable[b] = Math.max(t.durable[b]!, snap.floor[b]!);
            t.floor[b] = Math.max(t.floor[b]!, snap.floor[b]!);
          }
        }
      }
    } else if (req.op === 'read') {
      this.stats.readsChecked++;
      this.checkData(
        n.name,
        `read ${a.reqId}`,
        op.range,
        a.data ?? new Uint8Array(0),
        op.floorAtIssue!,
      );
    }
  }

  private localUpToDate(n: Node): boolean {
    return n.engine !== null && !n.detached && n.diskState === 'UpToDate';
  }

  /** The write of `op` (or a newer one) is on `t`'s disk: durable, or at least written. */
  private requireOnDisk(t: Node, layer: 'durable' | 'written', op: ClientOp, why: string): void {
    const r = op.range;
    const floor = new Int32Array(BLOCKS);
    for (let b = r.start; b < r.start + r.count; b++) floor[b] = op.stampSeq;
    const data =
      layer === 'durable'
        ? t.disk.readDurable(r.start * BLOCK, r.count * BLOCK)
        : t.disk.read(r.start * BLOCK, r.count * BLOCK);
    this.checkData(t.name, `${why} (${layer} layer)`, r, data, floor);
  }

  /** Blocks newly promised durable on `t` (above its durable floor) are on its media. */
  private requireDurable(t: Node, floor: Int32Array, why: string): void {
    for (let b = 0; b < BLOCKS; b++) {
      if (floor[b]! <= t.durable[b]!) continue;
      const r = { start: b, count: 1 };
      this.checkData(
        t.name,
        `${why} (durable layer)`,
        r,
        t.disk.readDurable(b * BLOCK, BLOCK),
        floor,
      );
    }
  }

  /**
   * DRBD's promise after a crash: the bitmaps and activity logs cover every block that can
   * differ between the nodes, so once connected replicas have nothing marked (resync done, or
   * none needed) they agree on every block no write is still on its way to.
   */
  private checkReplicasAgree(why: string): void {
    const [a, b] = this.nodes as [Node, Node];
    for (const n of [a, b]) {
      const e = n.engine;
      const v = n.view();
      if (e === null || !this.localUpToDate(n)) return;
      if (v.conn !== 'Connected' || v.repl !== 'Established' || v.disk !== 'UpToDate') return;
      if (e.bitmaps.get(n.peerId)!.weight > 0 || n.mbitmap.weight > 0) return;
    }
    const busy = new Uint8Array(BLOCKS);
    const mark = (r: BlockRange): void => {
      for (let x = r.start; x < r.start + r.count && x < BLOCKS; x++) busy[x] = 1;
    };
    for (const blk of this.writingBlocks.keys()) busy[blk] = 1;
    for (const n of [a, b]) {
      for (const w of n.disk.inFlight.values()) mark(blockRangeOf(w.offsetBytes, w.data.length));
      // Writes not yet acknowledged by the peer's BarrierAck may be anywhere on their way.
      for (const peer of n.engine!.peers.values()) for (const t of peer.tl.values()) mark(t.range);
    }
    for (let blk = 0; blk < BLOCKS; blk++) {
      if (busy[blk] === 1) continue;
      const x = a.disk.read(blk * BLOCK, BLOCK);
      const y = b.disk.read(blk * BLOCK, BLOCK);
      if (Buffer.compare(x, y) !== 0)
        throw new Violation(
          `unmarked difference (${why}): connected UpToDate replicas with empty bitmaps differ at block ${blk} (n1 write ${stampOf(x)}, n2 write ${stampOf(y)})`,
        );
    }
  }

  /** Every sector holds a value written to that block, no older than the floor. */
  private checkData(
    who: string,
    what: string,
    range: BlockRange,
    data: Uint8Array,
    floor: Int32Array,
  ): void {
    if (data.length !== range.count * BLOCK)
      throw new Violation(`${who} ${what}: ${data.length} bytes for ${range.count} blocks`);
    const v = new DataView(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < range.count; i++) {
      const b = range.start + i;
      for (let s = 0; s < SECTORS; s++) {
        const o = i * BLOCK + s * SECTOR_BYTES;
        const magic = v.getUint32(o);
        let seq = 0;
        if (magic === STAMP_MAGIC) {
          seq = v.getUint32(o + 4);
          const blk = v.getUint32(o + 8);
          const sec = v.getUint32(o + 12);
          const w = this.stamps.get(seq);
          if (blk !== b || sec !== s || w === undefined || b < w.start || b >= w.start + w.count)
            throw new Violation(
              `${who} ${what}: block ${b} sector ${s} holds data of block ${blk} sector ${sec} (write ${seq})`,
            );
        } else if (magic !== 0 || v.getUint32(o + 4) !== 0) {
          throw new Violation(`${who} ${what}: block ${b} sector ${s} holds garbage`);
        }
        this.stats.sectorsChecked++;
        if (seq < floor[b]!)
          throw new Violation(
            `${who} ${what}: block ${b} sector ${s} returned write ${seq} but write ${floor[b]} was acknowledged (lost write)`,
          );
      }
    }
  }

  // --- faults ---

  private faultTick(): void {
    if (this.phase !== 'workload') return;
    this.checkReplicasAgree('fault tick');
    const kinds = Object.entries(this.p.faultWeights) as [FaultKind, number][];
    const total = kinds.reduce((a, [, w]) => a + w, 0);
    if (total > 0) {
      let r = this.rng.next() * total;
      for (const [k, w] of kinds) {
        r -= w;
        if (r < 0) {
          this.injectFault(k);
          break;
        }
      }
    }
    this.at(this.p.faultIntervalMs * (0.5 + this.rng.next()), () => this.faultTick());
  }

  private injectFault(k: FaultKind): void {
    const n = this.nodes[this.rng.int(this.nodes.length)]!;
    switch (k) {
      case 'partition':
        this.fault(k);
        this.partitionedUntil = this.now + 50 + this.rng.int(2000);
        this.closeConn(null);
        this.at(this.partitionedUntil - this.now + 1, () => this.tryConnect());
        return;
      case 'disconnect':
        if (n.engine === null) return;
        this.fault(k);
        this.admin(n, { cmd: 'disconnect', peer: n.peerId });
        this.at(50 + this.rng.int(1500), () => {
          if (n.engine !== null && this.phase === 'workload')
            this.admin(n, { cmd: 'connect', peer: n.peerId, discardMyData: false });
        });
        return;
      case 'crash':
        if (this.downCount() > 0 || n.engine === null) return;
        this.fault(k);
        this.crash(n);
        this.at(100 + this.rng.int(3000), () => this.restart(n));
        return;
      case 'crashInMeta':
        // Power loss inside the next metadata barrier this node runs (AL transaction,
        // superblock, bitmap): the windows where ordering bugs between data and metadata live.
        if (n.engine === null) return;
        n.crashArmedUntil = this.now + 1000;
        return;
      case 'powerLoss': {
        // Both nodes lose power at once: only what each disk made durable survives.
        if (this.downCount() > 0) return;
        this.fault(k);
        const [a, b] = this.nodes as [Node, Node];
        this.crash(a, false);
        this.crash(b, false);
        this.at(100 + this.rng.int(3000), () => this.restart(a));
        this.at(100 + this.rng.int(3000), () => this.restart(b));
        return;
      }
      case 'failover':
        return this.failover();
      case 'verify': {
        if (n.engine === null || !this.p.verify) return;
        this.fault(k);
        this.admin(n, { cmd: 'verify', peer: n.peerId });
        return;
      }
      case 'diskErrors': {
        // Recoverable faults only (VOPR's rule): the other copy is intact, UpToDate and reachable.
        const o = this.node(n.peerId);
        if (
          n.engine === null ||
          o.engine === null ||
          o.detached ||
          o.diskState !== 'UpToDate' ||
          n.view().repl !== 'Established' ||
          o.errorUntil > this.now
        )
          return;
        this.fault(k);
        n.errorUntil = this.now + 20 + this.rng.int(300);
        this.at(500 + this.rng.int(2000), () => this.reattach(n));
        return;
      }
      case 'splitBrain': {
        // Promote a disconnected Secondary while a Primary exists elsewhere.
        if (
          n.engine === null ||
          n.role === 'Primary' ||
          n.view().conn === 'Connected' ||
          n.diskState !== 'UpToDate'
        )
          return;
        this.fault(k);
        this.admin(n, { cmd: 'primary', force: false });
        return;
      }
      case 'delaySpike':
        this.fault(k);
        this.delaySpikeUntil = this.now + 100 + this.rng.int(1000);
        return;
    }
  }

  private downCount(): number {
    return this.nodes.filter((x) => x.engine === null).length;
  }

  private crash(n: Node, failover = true): void {
    // A metadata write under way lands in part; barriers not started and the I/O and DATA
    // packets they held back never happen.
    if (n.metaWriting !== null) applyMeta(n, n.metaWriting, this.rng);
    n.metaWriting = null;
    n.driver?.stop();
    n.driver = null;
    n.crashArmedUntil = 0;
    const r = n.disk.crash(this.rng);
    this.log(`${n.name} CRASH lost=${r.lostBlocks} torn=${r.tornWrites}`);
    n.incarnation++;
    n.wantConnect.clear();
    n.role = 'Secondary';
    n.floor = new Int32Array(n.durable);
    // A node without an UpToDate disk (Diskless, or a SyncTarget catching up) had no good copy
    // of its own: what this disk lost from its cache is lost to that node's clients too (a
    // block device may lose unflushed writes on power loss; the resync brings this disk's
    // version back even over a newer one the other disk holds, as DRBD does).
    // A detached node's own disk is not the crashed one: it keeps what it had durably (seed
    // 84979563: a disk whose detach was never recorded came back claiming UpToDate and was
    // promoted alone, serving what it held, as DRBD without fencing does; it never had the
    // writes the crashed disk held).
    for (const o of this.nodes) {
      if (o === n || o.engine === null || o.diskState === 'UpToDate') continue;
      o.floor = new Int32Array(n.durable);
      if (!o.detached) o.durable = new Int32Array(n.durable);
    }
    for (const [id, op] of this.ops) {
      if (op.node !== n.id) continue;
      this.ops.delete(id);
      if (op.req.op === 'write') this.writeDone(op.range);
    }
    if (this.conn !== null) this.closeConn(n);
    // Failover: a surviving UpToDate Secondary may take over.
    const other = this.node(n.peerId);
    if (failover && this.phase === 'workload' && this.rng.int(2) === 0)
      this.at(10 + this.rng.int(200), () => {
        if (other.engine !== null && other.role !== 'Primary' && other.diskState === 'UpToDate')
          this.admin(other, { cmd: 'primary', force: false });
      });
  }

  private restart(n: Node): void {
    if (n.engine !== null) return;
    this.start(n);
  }

  private reattach(n: Node): void {
    if (n.engine === null || !n.detached || n.diskState !== 'Diskless') return;
    n.errorUntil = 0;
    // A fresh LocalDisk: the in-memory bitmap is what the disk holds; the failure is forgotten.
    if (n.port !== null) n.driver?.attachDisk(n.port);
    const boot = n.boot(AL_EXTENT_BLOCKS);
    n.mbitmap = copyBitmap(n.pbitmap);
    this.admin(n, { cmd: 'attach', boot }, (ok) => {
      if (ok) n.detached = false;
    });
  }

  private failover(): void {
    const prim = this.primaries();
    const p = prim[0];
    if (p === undefined) {
      const cand = this.nodes.filter((x) => x.engine !== null && x.diskState === 'UpToDate');
      const c = cand[this.rng.int(Math.max(1, cand.length))];
      if (c !== undefined) {
        this.fault('failover');
        this.admin(c, { cmd: 'primary', force: false });
      }
      return;
    }
    this.fault('failover');
    this.admin(p, { cmd: 'secondary' }, (ok) => {
      if (!ok) return;
      const o = this.node(p.peerId);
      if (o.engine !== null && o.diskState === 'UpToDate')
        this.admin(o, { cmd: 'primary', force: false });
    });
  }

  // --- phases ---

  private workloadTick(): void {
    if (this.phase !== 'workload') return;
    this.issueOp();
    this.at(this.p.opIntervalMs * (0.2 + this.rng.next() * 1.6), () => this.workloadTick());
  }

  private healTick(): void {
    if (this.phase !== 'heal') return;
    if (this.now - this.healStart > HEAL_BOUND_MS)
      throw new Violation(
        `liveness: not converged ${HEAL_BOUND_MS} ms after heal: ${this.describeState()}`,
      );
    for (const n of this.nodes) {
      if (n.engine === null) this.restart(n);
      if (n.detached) this.reattach(n);
      n.errorUntil = 0;
    }
    this.partitionedUntil = 0;
    this.delaySpikeUntil = 0;
    const [a, b] = this.nodes as [Node, Node];
    if (a.engine !== null && b.engine !== null) {
      const prim = this.primaries();
      if (prim.length === 2) this.admin(b, { cmd: 'secondary' });
      // A Primary promoted on a stale disk (the failover fault after a restart) refuses to
      // become SyncTarget, as DRBD does: the operator demotes it so the newer data flows to it.
      // A Diskless Primary refused the peer's data (another generation than it exposed, as
      // DRBD's "Can only connect to data with current UUID"): the operator demotes it, and it
      // connects and re-attaches as a Secondary.
      for (const id of this.disklessRefused) {
        const n = this.node(id);
        if (n.role === 'Primary' && n.engine !== null && n.engine.disk === 'Diskless')
          this.admin(n, { cmd: 'secondary' });
      }
      this.disklessRefused.clear();
      if (this.primaryRefusedTarget) {
        this.primaryRefusedTarget = false;
        for (const p of prim) this.admin(p, { cmd: 'secondary' });
      }
      for (const n of [a, b]) {
        const v = n.view();
        if (v.conn === 'StandAlone') {
          // Manual split-brain recovery: the Secondary (or n2) discards its data.
          const victim =
            n.role !== 'Primary' && (this.node(n.peerId).role === 'Primary' || n.id === 2);
          this.admin(n, { cmd: 'connect', peer: n.peerId, discardMyData: victim });
        }
        if (
          v.conn === 'Connected' &&
          v.repl === 'Established' &&
          n.mbitmap.weight > 0 &&
          n.engine !== null &&
          n.engine.bitmaps.get(n.peerId)!.weight > 0 &&
          this.rng.int(4) === 0
        ) {
          // Out-of-sync blocks found by verify are resynced by a reconnect (DRBD's advice).
          this.admin(n, { cmd: 'disconnect', peer: n.peerId });
          this.admin(n, { cmd: 'connect', peer: n.peerId, discardMyData: false });
        }
      }
      if (
        prim.length === 0 &&
        a.diskState === 'Inconsistent' &&
        b.diskState === 'Inconsistent' &&
        a.view().conn === 'Connected'
      )
        this.admin(a, { cmd: 'primary', force: true });
      if (this.converged()) {
        this.finalCheck();
        this.phase = 'done';
        return;
      }
    }
    this.at(200, () => this.healTick());
  }

  private converged(): boolean {
    if (this.ops.size > 0) return false;
    for (const n of this.nodes) {
      const e = n.engine;
      if (e === null || n.diskState !== 'UpToDate') return false;
      const v = n.view();
      if (v.conn !== 'Connected' || v.repl !== 'Established' || v.disk !== 'UpToDate') return false;
      if (e.bitmaps.get(n.peerId)!.weight !== 0 || n.mbitmap.weight !== 0) return false;
      if (e.writes.size > 0 || e.flushes.size > 0 || e.ios.size > 0) return false;
      for (const peer of e.peers.values())
        if (peer.tl.size > 0 || peer.rxQueue.length > 0) return false;
    }
    return this.packetsInFlight === 0;
  }

  private finalCheck(): void {
    const [a, b] = this.nodes as [Node, Node];
    const all = { start: 0, count: BLOCKS };
    const da = a.disk.read(0, SIZE_BYTES);
    const db = b.disk.read(0, SIZE_BYTES);
    for (let blk = 0; blk < BLOCKS; blk++) {
      const x = da.subarray(blk * BLOCK, (blk + 1) * BLOCK);
      const y = db.subarray(blk * BLOCK, (blk + 1) * BLOCK);
      if (Buffer.compare(x, y) !== 0)
        throw new Violation(
          `convergence: UpToDate replicas differ at block ${blk} (n1 write ${stampOf(x)}, n2 write ${stampOf(y)})`,
        );
    }
    this.checkData('n1', 'final data', all, da, a.floor);
    this.checkData('n2', 'final data', all, db, b.floor);
  }

  describeState(): string {
    return (
      this.nodes
        .map((n) => {
          const v = n.view();
          return `${n.name}{${n.engine === null ? 'down' : `${n.role}/${n.diskState} ${v.conn}/${v.repl} peer=${v.role}/${v.disk} oos=${n.engine.bitmaps.get(n.peerId)!.weight} port-oos=${n.mbitmap.weight} writes=${n.engine.writes.size}`}}`;
        })
        .join(' ') + ` ops=${this.ops.size}`
    );
  }

  run(): SimResult {
    let violation: string | null = null;
    try {
      this.setup();
      while (this.phase !== 'done') {
        const item = this.q.pop();
        if (item === undefined)
          throw new Violation(`liveness: simulation ran dry: ${this.describeState()}`);
        this.now = Math.max(this.now, item.at);
        item.run();
      }
    } catch (e) {
      if (!(e instanceof Violation)) throw e;
      violation = e.message;
      this.log(`VIOLATION ${violation}`);
    }
    this.stats.simulatedMs = this.now;
    return {
      seed: this.opts.seed,
      ok: violation === null,
      violation,
      stats: this.stats,
      trace: this.trace,
      params: this.params(),
    };
  }

  private setup(): void {
    const [a, b] = this.nodes as [Node, Node];
    this.start(a);
    this.start(b);
    // Initial sync: a full sync from a forced Primary, or skip it for zeroed disks.
    const init = (): void => {
      if (a.view().conn !== 'Connected' || a.view().repl !== 'Established')
        return this.at(10, init);
      if (this.p.initialFullSync) this.admin(a, { cmd: 'primary', force: true });
      else {
        this.admin(a, { cmd: 'new-current-uuid', clearBitmap: true });
        this.admin(a, { cmd: 'primary', force: false });
      }
      this.at(1, () => this.workloadTick());
      this.at(this.p.faultIntervalMs, () => this.faultTick());
      this.at(this.p.workloadMs, () => {
        this.phase = 'heal';
        this.healStart = this.now;
        this.log('HEAL');
        this.healTick();
      });
    };
    this.at(1, init);
  }
}

function blockRangeOf(offsetBytes: number, lengthBytes: number): BlockRange {
  const start = Math.floor(offsetBytes / BLOCK);
  return { start, count: Math.ceil((offsetBytes + lengthBytes) / BLOCK) - start };
}

function copyBitmap(b: Bitmap): Bitmap {
  const c = new Bitmap(BLOCKS);
  for (const r of b.ranges()) c.set(r);
  return c;
}

/**
 * Makes a metadata barrier's write durable: all of it (`rng` null), or on power loss during
 * the write any part of it (bitmap pages and AL transactions land in any order; a torn
 * superblock is caught by its checksum, so it is all or nothing).
 */
function applyMeta(n: Node, w: MetaWrite, rng: SeededRandom | null): void {
  const take = (): boolean => rng === null || rng.int(2) === 0;
  const op = w.action;
  switch (op.type) {
    case 'persistMeta':
      if (take()) n.meta = op.meta;
      return;
    case 'alCommit':
      for (const e of op.remove) if (take()) n.pal.delete(e);
      for (const e of op.add) if (take()) n.pal.add(e);
      return;
    case 'bitmapFlush': {
      const bits = w.bits!;
      for (let b = 0; b < BLOCKS; b++) {
        const want = bits.test(b);
        if (want !== n.pbitmap.test(b) && take()) {
          if (want) n.pbitmap.set({ start: b, count: 1 });
          else n.pbitmap.clear({ start: b, count: 1 });
        }
      }
      return;
    }
  }
}

function stampData(seq: number, r: BlockRange): Uint8Array {
  const d = new Uint8Array(r.count * BLOCK);
  const v = new DataView(d.buffer);
  for (let i = 0; i < r.count; i++) {
    for (let s = 0; s < SECTORS; s++) {
      const o = i * BLOCK + s * SECTOR_BYTES;
      v.setUint32(o, STAMP_MAGIC);
      v.setUint32(o + 4, seq);
      v.setUint32(o + 8, r.start + i);
      v.setUint32(o + 12, s);
    }
  }
  return d;
}

const TCP_SEGMENT_BYTES = 1448;

/**
 * A payload as an NBD socket may hand it over: a first segment that ends mid-sector (1448 bytes,
 * a TCP segment's payload), then the rest, so the engine's scatter-gather paths carry the data.
 */
function asReceived(d: Uint8Array): Uint8Array[] {
  return d.length > TCP_SEGMENT_BYTES
    ? [d.subarray(0, TCP_SEGMENT_BYTES), d.subarray(TCP_SEGMENT_BYTES)]
    : [d];
}

function stampOf(block: Uint8Array): number {
  const v = new DataView(block.buffer, block.byteOffset, block.length);
  return v.getUint32(0) === STAMP_MAGIC ? v.getUint32(4) : 0;
}

function describeEvent(ev: EngineEvent): string {
  switch (ev.type) {
    case 'packet':
      return `packet ${describePacket(ev.packet)}`;
    case 'diskDone':
      return `diskDone io=${ev.ioId} ${ev.ok ? 'ok' : ev.errno}`;
    case 'request':
      return `request ${ev.req.op} id=${ev.req.id}${ev.req.op !== 'flush' ? ` @${ev.req.offsetBytes / BLOCK}` : ''}`;
    case 'admin':
      return `admin ${JSON.stringify(ev.command, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v))}`.slice(
        0,
        200,
      );
    case 'timer':
      return `timer ${ev.timerId}`;
    case 'connEstablished':
    case 'connClosed':
      return `${ev.type} peer=${ev.peer}`;
    case 'capacity':
      return `capacity token=${ev.token} ${ev.capacityBytes} ${ev.refusal}`;
    case 'diskGrown':
      return `diskGrown token=${ev.token} ${ev.ok ? 'ok' : 'failed'}`;
    case 'fencePeerDone':
      return `fencePeerDone peer=${ev.peer} token=${ev.token} exit=${ev.exitCode}`;
  }
}

function describePacket(p: Packet): string {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) {
    if (v instanceof Uint8Array) o[k] = `${v.length}B`;
    else if (typeof v === 'bigint') o[k] = v.toString(16);
    else if (Array.isArray(v))
      o[k] =
        v.length > 4
          ? `[${v.length}]`
          : v.map((x: unknown) => (typeof x === 'bigint' ? x.toString(16) : x));
    else o[k] = v;
  }
  return JSON.stringify(o);
}

function describeAction(a: Action): string {
  switch (a.type) {
    case 'diskWrite':
      return `diskWrite io=${a.ioId} @${a.offsetBytes / BLOCK}+${chunksLength(a.data) / BLOCK}${a.fua ? ' fua' : ''}`;
    case 'persistMeta':
      return `persistMeta current=${a.meta.currentUuid.toString(16)} bm=${Object.values(
        a.meta.bitmapUuids,
      )
        .map((u) => u.toString(16))
        .join(',')} flags=${JSON.stringify(a.meta.flags)}`;
    case 'complete':
      return `complete req=${a.reqId} ${a.ok ? 'ok' : a.errno}`;
    case 'send':
      return `send ${describePacket(a.packet)}`;
    default:
      return JSON.stringify(a, (_k, v: unknown) =>
        typeof v === 'bigint' ? v.toString(16) : v instanceof Uint8Array ? `${v.length}B` : v,
      );
  }
}

export function runSeed(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}
