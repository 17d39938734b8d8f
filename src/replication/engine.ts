// The replication engine: a deterministic, sans-I/O state machine. step(state, event) mutates
// the state and returns the actions the daemon must perform, in order. No clocks, sockets,
// files or ambient randomness: the same events always yield the same actions.
// Invariants (checkInvariants) hold after every step; a broken one is our bug and asserts.
import {
  AL_EXTENT_BYTES,
  BITMAP_BLOCK_BYTES,
  ENGINE_QUEUED_REQUESTS_MAX,
  RESYNC_REQUEST_BYTES_MAX,
  RESYNC_REQUESTS_IN_FLIGHT_MAX,
  RESYNC_TICK_MS,
  RX_EPOCH_FLUSH_DELAY_MS,
  RX_UNFLUSHED_WRITES_MAX,
  UUID_HISTORY_MAX,
  VERIFY_REQUESTS_IN_FLIGHT_MAX,
  WIRE_RANGES_MAX,
} from '../limits.js';
import { assert } from '../util/assert.js';
import { SeededRandom } from '../util/prng.js';
import { NO_CHUNKS, chunksLength, sliceChunks } from '../util/chunks.js';
import { Bitmap, mergeRanges } from './bitmap.js';
import type {
  Action,
  AdminCommand,
  AdminRefusal,
  BrokenInvariant,
  BlockRange,
  BootState,
  ClientRequest,
  ConnState,
  DiskState,
  EngineConfig,
  EngineEvent,
  HandshakePacket,
  Metadata,
  Packet,
  ReconfigurableOptions,
  ReplState,
  ResizeFailure,
  ResizeRefusal,
  Role,
  Stream,
} from './types.js';
import { refusalMessage } from './refusal.js';
import { UUID_JUST_CREATED, UUID_NEW_BM_OFFSET, handshakeVerdict, type UuidView } from './uuid.js';

const BLOCK = BITMAP_BLOCK_BYTES;
const RS_BLOCKS_MAX = RESYNC_REQUEST_BYTES_MAX / BLOCK;

type Io =
  | { kind: 'clientWrite'; seq: number }
  | { kind: 'clientRead'; reqId: number; offsetBytes: number; lengthBytes: number }
  | { kind: 'clientFlush'; reqId: number }
  /** A flush queued behind the barriers that persist a locally stale mark (pass_on). */
  | { kind: 'staleMark'; seq: number }
  | {
      kind: 'peerWrite';
      peer: number;
      inc: number;
      seq: number;
      ack: 'none' | 'recv' | 'write';
      range: BlockRange;
      /** Parts of one peer write still in flight (a conflict winner writes only some blocks). */
      group: { remaining: number; failed: boolean; readonly epoch: RxOpenEpoch };
    }
  | { kind: 'epochFlush'; peer: number; inc: number }
  | { kind: 'peerRead'; peer: number; inc: number; id: number }
  | {
      kind: 'rsRead';
      peer: number;
      inc: number;
      id: number;
      start: number;
      count: number;
      digest: Uint8Array;
    }
  | { kind: 'rsCsumRead'; peer: number; inc: number; id: number }
  | { kind: 'rsWrite'; peer: number; inc: number; id: number; range: BlockRange }
  | { kind: 'ovLocalRead'; peer: number; inc: number; id: number }
  | { kind: 'ovPeerRead'; peer: number; inc: number; id: number; start: number; count: number };

interface WriteReq {
  readonly reqId: number;
  readonly seq: number;
  readonly range: BlockRange;
  extents: readonly number[];
  localPending: boolean;
  copies: number;
  readonly peersPending: Set<number>;
  readonly replicatedTo: Set<number>;
  /** The local write failed: the peers hold data this disk lacks. */
  localFailed: boolean;
}

interface FlushReq {
  readonly reqId: number;
  localPending: boolean;
  /** peer -> epoch whose BarrierAck we wait for */
  readonly barriers: Map<number, number>;
  /**
   * Good copies that flushed: the local UpToDate disk, peers that acknowledged the barrier.
   * None (a Diskless Primary whose peer went away first) fails the flush, as DRBD completes a
   * request no disk served with EIO (seed 31404443: an "ok" flush vouched for a write the only
   * disk lost in its crash).
   */
  copies: number;
}

interface RsInFlight {
  readonly start: number;
  readonly count: number;
  /** Blocks an application write touched since the request was sent (fully, or partially). */
  readonly touched: Set<number>;
  readonly partial: Set<number>;
  writesPending: number;
  sent: boolean;
}

interface ResyncTarget {
  cursor: number;
  readonly inflight: Map<number, RsInFlight>;
  creditBytes: number;
  /** Requested bytes whose answer has not come in yet (DRBD's rs_in_flight). */
  requestedBytes: number;
  /** Bytes answered since the controller's last turn (DRBD's rs_sect_in). */
  cameInBytes: number;
  /** When the controller last ran; null before its first timed turn. */
  lastTurnMs: number | null;
  /** The next turn is due now: everything requested came in before the tick. */
  turnSoon: boolean;
  readonly plan: number[];
  planTotal: number;
  finishing: boolean;
  timerId: number;
}

interface VerifyReq {
  readonly start: number;
  readonly count: number;
  local: Uint8Array | null;
  remote: Uint8Array | null;
}

interface Peer {
  readonly id: number;
  readonly name: string;
  /**
   * Resource-level fencing of this peer: its fence-peer handler runs (`fencing`), it answered
   * that the peer cannot be promoted (`fenced`, until the peer is UpToDate again and the
   * unfence-peer handler runs), or neither.
   */
  fence: 'none' | 'fencing' | 'fenced';
  fenceToken: number;
  inc: number; // connection incarnation: bumps on every establish/close
  conn: ConnState;
  repl: ReplState;
  role: Role;
  disk: DiskState;
  wantConnect: boolean;
  discardMyData: boolean;
  hsSent: boolean;
  settled: boolean;
  sync: { role: 'source' | 'target'; bmSent: boolean; bmGotLast: boolean } | null;
  // origin side
  epoch: number;
  epochWrites: number;
  closeEpoch: boolean;
  readonly epochSizes: Map<number, number>;
  readonly tl: Map<number, { epoch: number; range: BlockRange }>;
  // receiver side
  /** The epoch whose Barrier has not arrived yet. */
  rxOpen: RxOpenEpoch;
  /**
   * Epochs whose Barrier arrived while writes of theirs were still in flight, oldest first.
   * The next epoch's writes do not wait for them (pipelined, see pumpRx); their BarrierAcks
   * leave in order once each has drained.
   */
  readonly rxClosing: {
    readonly epoch: number;
    readonly flush: boolean;
    readonly ep: RxOpenEpoch;
  }[];
  /**
   * Drained epochs whose BarrierAck waits for a flush, oldest first: `flushing` are covered by
   * the flush in flight (issued after they drained), `unflushed` need the next one. Later
   * epochs' writes do not wait for these flushes (see maybeFinishRxEpoch).
   */
  rxFlushing: RxEpoch[];
  rxUnflushed: RxEpoch[];
  /** A flush is due for `rxUnflushed` (asked for, the write bound, or the delay expired). */
  rxFlushDue: boolean;
  /** The timer that makes unflushed epochs due (RX_EPOCH_FLUSH_DELAY_MS), or null. */
  rxFlushTimer: number | null;
  // origin side: the newest epoch whose Barrier asked for a flush
  flushAskedEpoch: number;
  /** Our disk failed with epochs unflushed: never acknowledge them (the peer marks its log). */
  rxNoAck: boolean;
  readonly rxQueue: Packet[];
  // resync / verify
  rs: ResyncTarget | null;
  readonly rsSourceWaiting: { id: number; start: number; count: number; digest: Uint8Array }[];
  ov: {
    cursor: number;
    readonly inflight: Map<number, VerifyReq>;
    found: number;
    nextId: number;
  } | null;
  verifyMarked: boolean;
  promoteId: number;
  readonly promoteWaiting: Map<number, { cmdId: number; force: boolean }>;
  readonly readsViaPeer: Map<number, number>; // DataRequest id -> client reqId
  readonly readsWaiting: { id: number; offsetBytes: number; lengthBytes: number }[];
  /** Highest Data seq of this peer we started writing (sent back as peerSeq). */
  rxLastSeq: number;
  /** Our writes this peer may not have seen yet (two Primaries: conflict detection). */
  readonly sentLog: { seq: number; range: BlockRange }[];
  /**
   * This peer's writes received but not yet issued to the disk, by arrival: an overlapping
   * later one waits for them, so the disk applies overlapping writes in the Primary's order.
   */
  readonly rxNotStarted: Map<number, BlockRange>;
}

/** A received epoch's writes: how many arrived, how many are still on the disk. */
interface RxOpenEpoch {
  inflight: number;
  count: number;
}

/** A drained epoch on the receiving side: what its BarrierAck will say. */
interface RxEpoch {
  readonly epoch: number;
  readonly setSize: number;
}

/** Writes of the drained epochs waiting for a flush. */
function unflushedWrites(p: Peer): number {
  let n = 0;
  for (const e of p.rxUnflushed) n += e.setSize;
  return n;
}

/** A resize this node started (admin `resize`): query peers, grow them, then grow here. */
interface ResizeOp {
  readonly cmdId: number;
  /** Wire id of this resize in ResizeQuery/ResizeInfo/Resize/ResizeDone. */
  readonly id: number;
  readonly requestedBytes: number | null;
  readonly assumeClean: boolean;
  phase: 'query' | 'peers' | 'local';
  /** Smallest capacity seen so far and whose it is (for messages). */
  capacityBytes: number;
  smallest: string;
  targetBytes: number;
  /** Connected peers taking part; those we still wait for; those that grew. */
  readonly peers: readonly number[];
  readonly waiting: Set<number>;
  readonly grown: number[];
  readonly failed: ResizeFailure[];
}

/** Local storage work the engine asked the daemon for (probeCapacity / growDisk). */
type StorageJob =
  | { readonly kind: 'probe'; readonly peer: number; readonly inc: number; readonly id: number }
  | { readonly kind: 'grow-local' }
  | {
      readonly kind: 'grow-peer';
      readonly peer: number;
      readonly inc: number;
      readonly id: number;
      readonly sizeBytes: number;
      readonly assumeClean: boolean;
    };

interface PendingPromote {
  cmdId: number;
  force: boolean;
  waiting: Set<number>;
  refused: boolean;
}

export interface EngineState {
  /** Replaced (never mutated) by resize and reconfigure. */
  cfg: EngineConfig;
  blocks: number;
  readonly alExtentBlocks: number;
  role: Role;
  disk: DiskState;
  current: bigint;
  readonly bitmapUuids: Map<number, bigint>;
  history: bigint[];
  consistent: boolean;
  wasUpToDate: boolean;
  crashedPrimary: boolean;
  readonly bitmaps: Map<number, Bitmap>;
  /**
   * on-io-error pass_on: blocks whose local write failed while a peer took it. This disk holds
   * an older version of them; reads go to an UpToDate peer until a resync repairs them. Only
   * kept for a disk that was UpToDate when it started (the rest of it is good); on disk it is
   * DRBD's representation (the blocks marked in every peer's bitmap, the disk Inconsistent).
   */
  localStale: Bitmap;
  /** Hot extents, least recently used first (a Set keeps insertion order; a touch re-adds). */
  readonly al: Set<number>;
  readonly alWrites: Map<number, number>; // extent -> writes holding it hot
  /** seq -> extents and references (the request plus each peer's transfer log entry). */
  readonly alHolds: Map<number, { extents: readonly number[]; refs: number }>;
  readonly rng: SeededRandom;
  nextIo: number;
  nextTimer: number;
  nextSeq: number;
  nextId: number;
  readonly ios: Map<number, Io>;
  readonly timers: Map<number, { peer: number; kind: 'resync' | 'epochFlush' }>;
  readonly peers: Map<number, Peer>;
  readonly writes: Map<number, WriteReq>;
  readonly flushes: Map<number, FlushReq>;
  readonly queued: ClientRequest[];
  /** Local block -> writes in flight (client or peer), to order resync reads and writes. */
  readonly writeLocks: Map<number, number>;
  /** Local block -> resync writes in flight. */
  readonly rsLocks: Map<number, number>;
  readonly lockWaiters: (() => void)[];
  /**
   * Client writes accepted but not yet started (queued or held), by arrival. A write that
   * overlaps one of these or a write in `writes` waits: overlapping writes start one after
   * the other, each once the one before completed on every copy (DRBD's
   * complete_conflicting_writes), so the local disk and the peers apply them in one order.
   */
  readonly writesNotStarted: Map<number, BlockRange>;
  /** Client writes held by an overlapping write or a resync lock, by arrival. */
  readonly writesHeld: Extract<ClientRequest, { op: 'write' | 'trim' | 'zeroes' }>[];
  /** retryHeldWrites is running (it re-enters through completions). */
  retryingHeld: 'no' | 'yes' | 'again';
  pendingPromote: PendingPromote | null;
  /**
   * Resource-level fencing: I/O frozen (resource-and-stonith: no write or flush completes
   * until every fence-peer handler answered), and a promotion waiting for the handlers.
   */
  readonly fence: { frozen: boolean; promote: { cmdId: number; force: boolean } | null };
  /** A Primary attached a disk that is not yet UpToDate (it syncs from a peer). */
  attachedAsPrimary: boolean;
  /** Application I/O arrived since the resync controller's last turn. */
  appIoSinceTurn: boolean;
  /** When the controller last saw application I/O (null: never). */
  lastAppIoMs: number | null;
  resize: ResizeOp | null;
  readonly jobs: Map<number, StorageJob>;
  nextJob: number;
  out: Action[];
}

export interface StepResult {
  readonly state: EngineState;
  readonly actions: Action[];
}

// --- construction ---------------------------------------------------------------------------

/** A fresh engine. `boot` is the on-disk state, or null for a node started without a disk. */
export function createEngine(cfg: EngineConfig, boot: BootState | null): StepResult {
  assert(cfg.sizeBytes > 0 && cfg.sizeBytes % BLOCK === 0, 'size is whole bitmap blocks');
  const blocks = cfg.sizeBytes / BLOCK;
  const s: EngineState = {
    cfg,
    blocks,
    alExtentBlocks: (cfg.alExtentBytes ?? AL_EXTENT_BYTES) / BLOCK,
    role: 'Secondary',
    disk: 'Diskless',
    current: UUID_JUST_CREATED,
    bitmapUuids: new Map(),
    history: [],
    consistent: false,
    wasUpToDate: false,
    crashedPrimary: false,
    bitmaps: new Map(),
    localStale: new Bitmap(blocks),
    al: new Set(),
    alWrites: new Map(),
    alHolds: new Map(),
    rng: new SeededRandom(cfg.uuidSeed),
    nextIo: 1,
    nextTimer: 1,
    nextSeq: 1,
    nextId: 1,
    ios: new Map(),
    timers: new Map(),
    peers: new Map(),
    writes: new Map(),
    flushes: new Map(),
    queued: [],
    writeLocks: new Map(),
    rsLocks: new Map(),
    lockWaiters: [],
    writesNotStarted: new Map(),
    writesHeld: [],
    retryingHeld: 'no',
    pendingPromote: null,
    fence: { frozen: false, promote: null },
    attachedAsPrimary: false,
    appIoSinceTurn: false,
    lastAppIoMs: null,
    resize: null,
    jobs: new Map(),
    nextJob: 1,
    out: [],
  };
  for (const p of cfg.peers) {
    s.peers.set(p.nodeId, newPeer(p.nodeId, p.name));
    s.bitmaps.set(p.nodeId, new Bitmap(blocks));
    s.bitmapUuids.set(p.nodeId, 0n);
  }
  if (boot !== null) loadBoot(s, boot);
  return { state: s, actions: drain(s) };
}

function newPeer(id: number, name: string): Peer {
  return {
    id,
    name,
    fence: 'none',
    fenceToken: 0,
    inc: 0,
    conn: 'StandAlone',
    repl: 'Off',
    role: 'Unknown',
    disk: 'Diskless',
    wantConnect: false,
    discardMyData: false,
    hsSent: false,
    settled: false,
    sync: null,
    epoch: 1,
    epochWrites: 0,
    closeEpoch: false,
    epochSizes: new Map(),
    tl: new Map(),
    rxOpen: { inflight: 0, count: 0 },
    rxClosing: [],
    rxFlushing: [],
    rxUnflushed: [],
    rxFlushDue: false,
    rxFlushTimer: null,
    flushAskedEpoch: 0,
    rxNoAck: false,
    rxQueue: [],
    rs: null,
    rsSourceWaiting: [],
    ov: null,
    verifyMarked: false,
    promoteId: 0,
    promoteWaiting: new Map(),
    readsViaPeer: new Map(),
    readsWaiting: [],
    rxLastSeq: 0,
    sentLog: [],
    rxNotStarted: new Map(),
  };
}

function loadBoot(s: EngineState, boot: BootState): void {
  const m = boot.meta;
  s.current = m.currentUuid;
  s.history = [...m.historyUuids].slice(0, UUID_HISTORY_MAX);
  s.consistent = m.flags.consistent;
  s.wasUpToDate = m.flags.wasUpToDate;
  s.crashedPrimary = m.flags.crashedPrimary;
  for (const [id, bm] of s.bitmaps) {
    bm.clearAll();
    for (const r of boot.bitmaps[id] ?? []) bm.set(clampRange(s, r));
    s.bitmapUuids.set(id, m.bitmapUuids[id] ?? 0n);
  }
  s.al.clear();
  s.localStale.clearAll(); // on disk it is the bitmaps and an Inconsistent disk
  for (const e of boot.alExtents) if (e >= 0 && e * s.alExtentBlocks < s.blocks) s.al.add(e);
  setDisk(s, !s.consistent ? 'Inconsistent' : s.wasUpToDate ? 'UpToDate' : 'Outdated');
  if (s.crashedPrimary) {
    // A Primary died: any write in a hot extent may have reached one disk and not another.
    const ranges = [...s.al].map((e) => extentRange(s, e));
    for (const [id, bm] of s.bitmaps) {
      for (const r of ranges) bm.set(r);
      if (ranges.length > 0) emit(s, { type: 'bitmapSet', peer: id, ranges });
    }
    emit(s, { type: 'bitmapFlush' });
  }
}

// --- public stepping ------------------------------------------------------------------------

export function step(s: EngineState, ev: EngineEvent): StepResult {
  switch (ev.type) {
    case 'request':
      onRequest(s, ev.req);
      break;
    case 'packet':
      onPacket(s, ev.peer, ev.packet);
      break;
    case 'diskDone':
      onDiskDone(s, ev);
      break;
    case 'timer':
      onTimer(s, ev.timerId, ev.nowMs);
      break;
    case 'admin':
      onAdmin(s, ev.cmdId, ev.command);
      break;
    case 'connEstablished':
      onEstablished(s, ev.peer);
      break;
    case 'connClosed':
      onClosed(s, ev.peer, true);
      break;
    case 'capacity':
      onCapacity(s, ev.token, ev.capacityBytes, ev.refusal);
      break;
    case 'diskGrown':
      onDiskGrown(s, ev.token, ev.ok);
      break;
    case 'fencePeerDone':
      onFencePeerDone(s, ev.peer, ev.token, ev.exitCode);
      break;
  }
  return { state: s, actions: drain(s) };
}

function drain(s: EngineState): Action[] {
  const a = s.out;
  s.out = [];
  return a;
}

function emit(s: EngineState, a: Action): void {
  s.out.push(a);
}

function send(s: EngineState, p: Peer, stream: Stream, packet: Packet): void {
  emit(s, { type: 'send', peer: p.id, stream, packet });
}

function io(s: EngineState, what: Io): number {
  const id = s.nextIo++;
  s.ios.set(id, what);
  return id;
}

// --- small state helpers --------------------------------------------------------------------

function hasDisk(s: EngineState): boolean {
  return s.disk !== 'Diskless' && s.disk !== 'Failed' && s.disk !== 'Attaching';
}

function setRole(s: EngineState, r: Role): void {
  if (s.role === r) return;
  s.role = r;
  emit(s, { type: 'stateChange', change: { what: 'role', role: r } });
}

function setDisk(s: EngineState, d: DiskState): void {
  if (s.disk === d) return;
  s.disk = d;
  if (d === 'UpToDate' || d === 'Diskless') s.attachedAsPrimary = false;
  emit(s, { type: 'stateChange', change: { what: 'disk', disk: d } });
}

function setConn(s: EngineState, p: Peer, c: ConnState): void {
  if (p.conn === c) return;
  p.conn = c;
  emit(s, { type: 'stateChange', change: { what: 'connection', peer: p.id, conn: c } });
}

function setRepl(s: EngineState, p: Peer, r: ReplState): void {
  if (p.repl === r) return;
  p.repl = r;
  emit(s, { type: 'stateChange', change: { what: 'replication', peer: p.id, repl: r } });
}

function setPeerDisk(s: EngineState, p: Peer, d: DiskState): void {
  if (p.disk === d) return;
  p.disk = d;
  emit(s, { type: 'stateChange', change: { what: 'peerDisk', peer: p.id, disk: d } });
  if (d === 'UpToDate' && p.conn === 'Connected') unfence(s, p);
}

function setPeerRole(s: EngineState, p: Peer, r: Role): void {
  if (p.role === r) return;
  p.role = r;
  emit(s, { type: 'stateChange', change: { what: 'peerRole', peer: p.id, role: r } });
}

function bm(s: EngineState, peer: number): Bitmap {
  const b = s.bitmaps.get(peer);
  assert(b !== undefined, `no bitmap slot for peer ${peer}`);
  return b;
}

function clampRange(s: EngineState, r: BlockRange): BlockRange {
  const start = Math.min(Math.max(0, r.start), s.blocks);
  return { start, count: Math.max(0, Math.min(r.count, s.blocks - start)) };
}

function extentRange(s: EngineState, e: number): BlockRange {
  return clampRange(s, { start: e * s.alExtentBlocks, count: s.alExtentBlocks });
}

function blockRangeOf(offsetBytes: number, lengthBytes: number): BlockRange {
  const start = Math.floor(offsetBytes / BLOCK);
  const end = Math.ceil((offsetBytes + lengthBytes) / BLOCK);
  return { start, count: end - start };
}

function markOutOfSync(s: EngineState, peer: number, r: BlockRange): void {
  if (!hasDisk(s) || r.count === 0) return;
  bm(s, peer).set(r);
  emit(s, { type: 'bitmapSet', peer, ranges: [r] });
}

function markInSync(s: EngineState, peer: number, r: BlockRange): void {
  if (r.count === 0) return;
  if (bm(s, peer).clear(r) > 0) emit(s, { type: 'bitmapClear', peer, ranges: [r] });
}

function metadata(s: EngineState): Metadata {
  const bitmapUuids: Record<number, bigint> = {};
  for (const [id, u] of s.bitmapUuids) bitmapUuids[id] = u;
  return {
    currentUuid: s.current,
    bitmapUuids,
    historyUuids: [...s.history],
    flags: {
      consistent: s.consistent,
      wasUpToDate: s.wasUpToDate,
      crashedPrimary: s.crashedPrimary,
    },
  };
}

function persist(s: EngineState): void {
  if (!hasDisk(s)) return;
  emit(s, { type: 'persistMeta', meta: metadata(s) });
}

function pushHistory(s: EngineState, u: bigint): void {
  if (u === 0n || (u & ~1n) === UUID_JUST_CREATED) return;
  s.history = [u, ...s.history.filter((h) => h !== u)].slice(0, UUID_HISTORY_MAX);
}

function withRoleBit(s: EngineState, u: bigint): bigint {
  return s.role === 'Primary' ? u | 1n : u & ~1n;
}

function randomUuid(s: EngineState): bigint {
  const hi = BigInt(s.rng.int(0x1_0000_0000));
  const lo = BigInt(s.rng.int(0x1_0000_0000));
  let u = ((hi << 32n) | lo) & ~1n;
  if (u === 0n || u === UUID_JUST_CREATED) u = 0x1000n;
  return u;
}

function isConnectedSettled(p: Peer): boolean {
  return p.conn === 'Connected' && p.settled;
}

/** This peer holds every write we hold: no bitmap UUID needed for it. */
function inSyncWith(p: Peer): boolean {
  return (
    isConnectedSettled(p) &&
    p.disk === 'UpToDate' &&
    (p.repl === 'Established' || p.repl === 'VerifyS' || p.repl === 'VerifyT')
  );
}

/** Starts a new data generation (promotion while some peer is out of reach, or forced). */
function newCurrentUuid(s: EngineState): void {
  const old = s.current;
  for (const p of s.peers.values()) {
    if (!inSyncWith(p) && (s.bitmapUuids.get(p.id) ?? 0n) === 0n) s.bitmapUuids.set(p.id, old);
  }
  pushHistory(s, old);
  s.current = withRoleBit(s, randomUuid(s));
  for (const p of s.peers.values()) {
    // A Diskless peer exposes our data: it follows our generation (see onHandshake).
    if (inSyncWith(p) || (isConnectedSettled(p) && p.disk === 'Diskless'))
      send(s, p, 'data', { kind: 'NewCurrentUuid', uuid: s.current, clearBitmap: false });
  }
  persist(s);
}

function sendState(s: EngineState, p: Peer): void {
  if (p.conn === 'Connected') send(s, p, 'data', { kind: 'State', role: s.role, disk: s.disk });
}

function broadcastState(s: EngineState): void {
  for (const p of s.peers.values()) sendState(s, p);
}

/**
 * Tells the peers this disk is gone, ahead of every DATA send a metadata barrier still holds
 * (Action `overtake`). Such a send may be the Data of a write whose activity-log transaction
 * failed with the disk: nothing here will cover its block, so the peer must know our disk is
 * gone before that write lands, and then marks it durably first (startPeerWrite). Sent after
 * the write instead, a peer crash before it persisted the mark, or the link dropping before
 * the mark was sent, left the disks different with nothing marking it (simulator seed 1410).
 */
function broadcastDiskLost(s: EngineState): void {
  for (const p of s.peers.values()) {
    if (p.conn !== 'Connected') continue;
    emit(s, {
      type: 'send',
      peer: p.id,
      stream: 'data',
      packet: { kind: 'State', role: s.role, disk: s.disk },
      overtake: true,
    });
  }
}

// --- client requests ------------------------------------------------------------------------

function onRequest(s: EngineState, req: ClientRequest): void {
  if (req.op !== 'flush') {
    const len = requestBytes(req);
    if (
      req.offsetBytes < 0 ||
      len <= 0 ||
      req.offsetBytes + len > s.cfg.sizeBytes ||
      req.offsetBytes % 512 !== 0 ||
      len % 512 !== 0
    ) {
      emit(s, { type: 'complete', reqId: req.id, ok: false, errno: 'EINVAL' });
      return;
    }
  }
  if (s.role !== 'Primary') {
    emit(s, { type: 'complete', reqId: req.id, ok: false, errno: 'EROFS' });
    return;
  }
  if (mustQueue(s) || s.queued.length > 0) {
    if (s.queued.length >= ENGINE_QUEUED_REQUESTS_MAX) {
      emit(s, { type: 'complete', reqId: req.id, ok: false, errno: 'EAGAIN' });
      return;
    }
    s.queued.push(req);
    noteNotStarted(s, req);
    return;
  }
  noteNotStarted(s, req);
  startRequest(s, req);
}

/** Bytes a data request covers (a write's payload is the sum of its slices). */
function requestBytes(req: Exclude<ClientRequest, { op: 'flush' }>): number {
  return req.op === 'write' ? chunksLength(req.data) : req.lengthBytes;
}

function noteNotStarted(s: EngineState, req: ClientRequest): void {
  if (req.op === 'write' || req.op === 'trim' || req.op === 'zeroes')
    s.writesNotStarted.set(req.id, blockRangeOf(req.offsetBytes, requestBytes(req)));
}

function overlaps(a: BlockRange, b: BlockRange): boolean {
  return a.start < b.start + b.count && b.start < a.start + a.count;
}

/**
 * A client write must wait: it overlaps a write still in flight (not completed on every copy
 * per the protocol) or one that arrived before it and has not started. Costs one pass over the
 * writes in flight, not a lock per block.
 */
function overlapsEarlierWrite(s: EngineState, reqId: number, r: BlockRange): boolean {
  if (s.cfg.plantedBug === 'overlap-unordered') return false;
  for (const w of s.writes.values()) if (overlaps(w.range, r)) return true;
  for (const [id, range] of s.writesNotStarted) {
    if (id === reqId) break;
    if (overlaps(range, r)) return true;
  }
  return false;
}

function retryAsked(s: EngineState): boolean {
  return s.retryingHeld === 'again';
}

/** Starts the held writes that may go now; the rest stay held in their order. */
function retryHeldWrites(s: EngineState): void {
  // Nothing held and no retry running (mid-retry the list is spliced empty: still signal it).
  if (s.writesHeld.length === 0 && s.retryingHeld === 'no') return;
  if (s.retryingHeld !== 'no') {
    s.retryingHeld = 'again';
    return;
  }
  for (let again = true; again;) {
    s.retryingHeld = 'yes';
    for (const req of s.writesHeld.splice(0)) startWrite(s, req);
    again = retryAsked(s);
  }
  s.retryingHeld = 'no';
}

/** While a handshake is undecided, I/O waits (DRBD suspends I/O across state changes). */
function mustQueue(s: EngineState): boolean {
  if (s.fence.frozen) return true;
  for (const p of s.peers.values()) if (p.conn === 'Connected' && !p.settled) return true;
  return false;
}

function pumpQueue(s: EngineState): void {
  while (s.queued.length > 0 && !mustQueue(s)) {
    const req = s.queued[0];
    assert(req !== undefined);
    if (req.op === 'write' || req.op === 'trim' || req.op === 'zeroes') {
      if (!alReady(s, blockRangeOf(req.offsetBytes, requestBytes(req)))) return;
    }
    s.queued.shift();
    startRequest(s, req);
  }
}

/** Some reachable copy holds all the data (DRBD fails I/O without access to good data). */
function hasGoodData(s: EngineState): boolean {
  if (s.disk === 'UpToDate') return true;
  for (const p of s.peers.values()) if (isConnectedSettled(p) && p.disk === 'UpToDate') return true;
  return false;
}

function startRequest(s: EngineState, req: ClientRequest): void {
  s.appIoSinceTurn = true;
  if (!hasGoodData(s)) {
    s.writesNotStarted.delete(req.id);
    emit(s, { type: 'complete', reqId: req.id, ok: false, errno: 'EIO' });
    return;
  }
  switch (req.op) {
    case 'read':
      startRead(s, req.id, req.offsetBytes, req.lengthBytes, false, req.into);
      return;
    case 'flush':
      startFlush(s, req.id);
      return;
    case 'write':
    case 'trim':
    case 'zeroes':
      startWrite(s, req);
      return;
  }
}

function startRead(
  s: EngineState,
  reqId: number,
  offsetBytes: number,
  lengthBytes: number,
  localFailed = false,
  into?: Uint8Array,
): void {
  const r = blockRangeOf(offsetBytes, lengthBytes);
  if (!localFailed && canReadLocally(s, r)) {
    emit(s, {
      type: 'diskRead',
      ioId: io(s, { kind: 'clientRead', reqId, offsetBytes, lengthBytes }),
      offsetBytes,
      lengthBytes,
      ...(into === undefined ? {} : { into }),
    });
    return;
  }
  for (const p of s.peers.values()) {
    if (isConnectedSettled(p) && p.disk === 'UpToDate') {
      const id = s.nextId++;
      p.readsViaPeer.set(id, reqId);
      send(s, p, 'data', { kind: 'DataRequest', id, offsetBytes, lengthBytes });
      return;
    }
  }
  emit(s, { type: 'complete', reqId, ok: false, errno: 'EIO' });
}

function canReadLocally(s: EngineState, r: BlockRange): boolean {
  if (s.disk === 'UpToDate') return true;
  if (s.disk !== 'Inconsistent') return false;
  if (s.localStale.weight > 0 && ![...s.peers.values()].some((p) => p.repl === 'SyncTarget')) {
    // pass_on left this (once UpToDate) disk stale in places: a block no bitmap marks is good
    // here (DRBD's rule for reading an Inconsistent disk); a marked one comes from a peer.
    for (const b of s.bitmaps.values())
      for (let i = r.start; i < r.start + r.count; i++) if (b.test(i)) return false;
    for (let i = r.start; i < r.start + r.count; i++) if (s.localStale.test(i)) return false;
    return true;
  }
  // A SyncTarget serves blocks it already holds in sync; others come from the source.
  for (const p of s.peers.values()) {
    if (p.repl !== 'SyncTarget') continue;
    const b = bm(s, p.id);
    for (let i = r.start; i < r.start + r.count; i++)
      if (b.test(i) || (s.rsLocks.get(i) ?? 0) > 0) return false;
    return true;
  }
  return false;
}

function startFlush(s: EngineState, reqId: number): void {
  const f: FlushReq = { reqId, localPending: false, barriers: new Map(), copies: 0 };
  if (hasDisk(s)) {
    f.localPending = true;
    emit(s, { type: 'diskFlush', ioId: io(s, { kind: 'clientFlush', reqId }) });
  }
  for (const p of s.peers.values()) {
    if (!replicatesTo(s, p)) continue;
    const e = closeEpochNow(s, p, true);
    f.barriers.set(p.id, e);
  }
  s.flushes.set(reqId, f);
  maybeCompleteFlush(s, f);
}

/**
 * Sends the barrier that closes the peer's current epoch; returns that epoch's number. With
 * `flush`, the peer flushes (and acknowledges) it and every epoch before it at once; without,
 * it may wait up to RX_EPOCH_FLUSH_DELAY_MS: only the transfer log waits for those acks.
 */
function closeEpochNow(s: EngineState, p: Peer, flush = false): number {
  const e = p.epoch;
  send(s, p, 'data', { kind: 'Barrier', epoch: e, flush });
  if (flush) p.flushAskedEpoch = e;
  p.epochSizes.set(e, p.epochWrites);
  p.epoch++;
  p.epochWrites = 0;
  p.closeEpoch = false;
  return e;
}

function maybeCompleteFlush(s: EngineState, f: FlushReq): void {
  if (f.localPending || f.barriers.size > 0 || s.fence.frozen) return;
  s.flushes.delete(f.reqId);
  if (f.copies > 0) emit(s, { type: 'complete', reqId: f.reqId, ok: true });
  else emit(s, { type: 'complete', reqId: f.reqId, ok: false, errno: 'EIO' });
}

function replicatesTo(s: EngineState, p: Peer): boolean {
  return isConnectedSettled(p) && p.disk !== 'Diskless' && p.disk !== 'Failed';
}

function extentsOf(s: EngineState, r: BlockRange): number[] {
  const out: number[] = [];
  const first = Math.floor(r.start / s.alExtentBlocks);
  const last = Math.floor((r.start + r.count - 1) / s.alExtentBlocks);
  for (let e = first; e <= last; e++) out.push(e);
  return out;
}

/** Extents of `r` not hot yet (none for almost every write: the O(1) path). */
function alMissing(s: EngineState, r: BlockRange): number {
  const first = Math.floor(r.start / s.alExtentBlocks);
  const last = Math.floor((r.start + r.count - 1) / s.alExtentBlocks);
  let need = 0;
  for (let e = first; e <= last; e++) if (!s.al.has(e)) need++;
  return need;
}

/** Whether the extents of a write can be made hot now (evicting idle ones if needed). */
function alReady(s: EngineState, r: BlockRange): boolean {
  if (!hasDisk(s)) return true;
  const need = alMissing(s, r);
  if (need === 0) return true;
  let room = s.cfg.alExtents - s.al.size;
  if (need <= room) return true;
  const first = Math.floor(r.start / s.alExtentBlocks);
  const last = Math.floor((r.start + r.count - 1) / s.alExtentBlocks);
  for (const e of s.al) {
    if ((s.alWrites.get(e) ?? 0) === 0 && (e < first || e > last) && ++room >= need) return true;
  }
  return false;
}

function alActivate(s: EngineState, r: BlockRange): void {
  const exts = extentsOf(s, r);
  const add = alMissing(s, r) === 0 ? [] : exts.filter((e) => !s.al.has(e));
  const remove: number[] = [];
  if (s.al.size + add.length > s.cfg.alExtents) {
    // Least recently used idle extents leave, oldest first.
    for (const e of s.al) {
      if (s.al.size - remove.length + add.length <= s.cfg.alExtents) break;
      if ((s.alWrites.get(e) ?? 0) === 0 && !exts.includes(e)) remove.push(e);
    }
    assert(
      s.al.size - remove.length + add.length <= s.cfg.alExtents,
      'alReady checked enough idle extents exist',
    );
    for (const e of remove) s.al.delete(e);
  }
  for (const e of exts) {
    s.al.delete(e);
    s.al.add(e);
    s.alWrites.set(e, (s.alWrites.get(e) ?? 0) + 1);
  }
  // An extent leaving the log is no longer covered after a crash: its bitmap bits (for peers
  // that missed writes there) must be on disk first (DRBD writes those bitmap pages).
  if (remove.length > 0) emit(s, { type: 'bitmapFlush' });
  if (add.length > 0 || remove.length > 0) emit(s, { type: 'alCommit', add, remove });
}

function startWrite(
  s: EngineState,
  req: Extract<ClientRequest, { op: 'write' | 'trim' | 'zeroes' }>,
): void {
  const lengthBytes = requestBytes(req);
  const range = blockRangeOf(req.offsetBytes, lengthBytes);
  if (overlapsEarlierWrite(s, req.id, range)) {
    s.writesHeld.push(req);
    return;
  }
  if (!alReady(s, range)) {
    s.queued.push(req);
    // Extents are held by writes the peers have not acknowledged yet: ask for those acks now.
    for (const p of s.peers.values()) {
      if (!replicatesTo(s, p) || p.tl.size === 0) continue;
      if (p.flushAskedEpoch < p.epoch - 1 || p.epochWrites > 0) closeEpochNow(s, p, true);
    }
    return;
  }
  // With two Primaries a peer write may be landing here: order behind it.
  if (blockedByResync(s, range) || (s.cfg.allowTwoPrimaries && blockedByWrites(s, range))) {
    s.writesHeld.push(req);
    return;
  }
  s.writesNotStarted.delete(req.id);
  const seq = s.nextSeq++;
  const w: WriteReq = {
    reqId: req.id,
    seq,
    range,
    extents: hasDisk(s) ? extentsOf(s, range) : [],
    localPending: false,
    copies: 0,
    peersPending: new Set(),
    replicatedTo: new Set(),
    localFailed: false,
  };
  s.writes.set(seq, w);
  touchForResync(s, range, req.offsetBytes, lengthBytes);
  if (hasDisk(s)) {
    alActivate(s, range);
    s.alHolds.set(seq, { extents: w.extents, refs: 1 });
    w.localPending = true;
    lockWrite(s, range, 1);
    const ioId = io(s, { kind: 'clientWrite', seq });
    if (req.op === 'write')
      emit(s, {
        type: 'diskWrite',
        ioId,
        offsetBytes: req.offsetBytes,
        data: req.data,
        fua: req.fua,
        reqId: req.id,
      });
    else if (req.op === 'trim')
      emit(s, { type: 'diskTrim', ioId, offsetBytes: req.offsetBytes, lengthBytes });
    else
      emit(s, {
        type: 'diskZeroes',
        ioId,
        offsetBytes: req.offsetBytes,
        lengthBytes,
        fua: req.fua,
      });
  }
  for (const p of s.peers.values()) {
    if (replicatesTo(s, p)) {
      if (p.closeEpoch) closeEpochNow(s, p);
      // Without an UpToDate local disk the peer's copy is the only good one: wait for it.
      const ack =
        req.fua || s.cfg.protocol === 'C' || s.disk !== 'UpToDate'
          ? 'write'
          : s.cfg.protocol === 'B'
            ? 'recv'
            : 'none';
      emit(s, {
        type: 'send',
        peer: p.id,
        stream: 'data',
        reqId: req.id,
        packet: {
          kind: 'Data',
          seq,
          epoch: p.epoch,
          op: req.op,
          offsetBytes: req.offsetBytes,
          lengthBytes,
          data: req.op === 'write' ? req.data : NO_CHUNKS,
          fua: req.fua,
          ack,
          peerSeq: p.rxLastSeq,
        },
      });
      if (s.cfg.allowTwoPrimaries) {
        p.sentLog.push({ seq, range });
        if (p.sentLog.length > ENGINE_QUEUED_REQUESTS_MAX) p.sentLog.shift();
      }
      p.tl.set(seq, { epoch: p.epoch, range });
      // An extent stays hot until the peer acknowledged the epoch (protocol A/B may still
      // lose the write on the way): after a crash the activity log must cover it.
      const hold = s.alHolds.get(seq);
      if (hold !== undefined) hold.refs++;
      p.epochWrites++;
      if (p.epochWrites >= s.cfg.maxEpochSize) p.closeEpoch = true;
      w.replicatedTo.add(p.id);
      const earlyAck = s.cfg.plantedBug === 'early-ack' && ack === 'write' && !req.fua;
      if (ack === 'none' || earlyAck) w.copies++;
      else w.peersPending.add(p.id);
    } else if (!(s.cfg.plantedBug === 'no-bit-while-disconnected' && p.conn !== 'Connected')) {
      markOutOfSync(s, p.id, range);
    }
  }
  maybeCompleteWrite(s, w);
}

function maybeCompleteWrite(s: EngineState, w: WriteReq): void {
  if (w.localPending || w.peersPending.size > 0 || s.fence.frozen) return;
  s.writes.delete(w.seq);
  releaseAl(s, w.seq);
  if (w.copies > 0) {
    emit(s, { type: 'complete', reqId: w.reqId, ok: true });
    // Later writes may depend on this one: close its epoch now (DRBD sends the barrier as
    // soon as the sender is idle, so the peer acknowledges and flushes promptly).
    for (const id of w.replicatedTo) {
      const p = s.peers.get(id);
      const t = p?.tl.get(w.seq);
      if (p !== undefined && t !== undefined && t.epoch === p.epoch && p.epochWrites > 0)
        closeEpochNow(s, p);
    }
  } else emit(s, { type: 'complete', reqId: w.reqId, ok: false, errno: 'EIO' });
  retryHeldWrites(s);
  pumpQueue(s);
}

function releaseAl(s: EngineState, seq: number): void {
  const h = s.alHolds.get(seq);
  if (h === undefined) return;
  if (--h.refs > 0) return;
  s.alHolds.delete(seq);
  for (const e of h.extents) {
    const n = (s.alWrites.get(e) ?? 1) - 1;
    if (n <= 0) s.alWrites.delete(e);
    else s.alWrites.set(e, n);
  }
}

/** Drops a peer's transfer log, marking what it may lack; returns nothing. */
function clearTl(s: EngineState, p: Peer): void {
  for (const [seq, e] of p.tl) {
    markOutOfSync(s, p.id, e.range);
    releaseAl(s, seq);
  }
  p.tl.clear();
}

function lockWrite(s: EngineState, r: BlockRange, d: number): void {
  for (let b = r.start; b < r.start + r.count; b++) {
    const n = (s.writeLocks.get(b) ?? 0) + d;
    if (n <= 0) s.writeLocks.delete(b);
    else s.writeLocks.set(b, n);
  }
  if (d < 0) wakeLockWaiters(s);
}

function lockRs(s: EngineState, r: BlockRange, d: number): void {
  for (let b = r.start; b < r.start + r.count; b++) {
    const n = (s.rsLocks.get(b) ?? 0) + d;
    if (n <= 0) s.rsLocks.delete(b);
    else s.rsLocks.set(b, n);
  }
  if (d < 0) wakeLockWaiters(s);
}

function blockedByResync(s: EngineState, r: BlockRange): boolean {
  if (s.rsLocks.size === 0) return false;
  for (let b = r.start; b < r.start + r.count; b++) if ((s.rsLocks.get(b) ?? 0) > 0) return true;
  return false;
}

function blockedByWrites(s: EngineState, r: BlockRange): boolean {
  if (s.writeLocks.size === 0) return false;
  for (let b = r.start; b < r.start + r.count; b++) if ((s.writeLocks.get(b) ?? 0) > 0) return true;
  return false;
}

/** A replicated write received but not yet issued (waiting for its epoch) covers the range. */
function rxQueued(s: EngineState, r: BlockRange): boolean {
  for (const p of s.peers.values()) {
    for (const pk of p.rxQueue) {
      if (pk.kind !== 'Data') continue;
      const w = blockRangeOf(pk.offsetBytes, pk.lengthBytes);
      if (w.start < r.start + r.count && r.start < w.start + w.count) return true;
    }
  }
  return false;
}

function wakeLockWaiters(s: EngineState): void {
  if (s.lockWaiters.length > 0) {
    const ws = s.lockWaiters.splice(0);
    for (const w of ws) w();
  }
  retryHeldWrites(s);
  // Every write completion comes here: allocate nothing when nobody waits.
  let waiters = 0;
  for (const p of s.peers.values()) waiters += p.rsSourceWaiting.length + p.readsWaiting.length;
  if (waiters === 0) return;
  const waiting = [...s.peers.values()].flatMap((p) =>
    p.rsSourceWaiting.splice(0).map((r) => [p, r] as const),
  );
  for (const [p, r] of waiting) serveRsRequest(s, p, r);
  const reads = [...s.peers.values()].flatMap((p) =>
    p.readsWaiting.splice(0).map((r) => [p, r] as const),
  );
  for (const [p, r] of reads) servePeerRead(s, p, r);
}

/** An application write is landing on these blocks: resync data requested earlier is older. */
function touchForResync(
  s: EngineState,
  r: BlockRange,
  offsetBytes: number,
  lengthBytes: number,
): void {
  if (s.cfg.plantedBug === 'resync-overwrites-newer') return;
  for (const p of s.peers.values()) {
    if (p.rs === null) continue;
    for (const f of p.rs.inflight.values()) {
      for (
        let b = Math.max(r.start, f.start);
        b < Math.min(r.start + r.count, f.start + f.count);
        b++
      ) {
        const full = offsetBytes <= b * BLOCK && offsetBytes + lengthBytes >= (b + 1) * BLOCK;
        if (full) f.touched.add(b);
        else f.partial.add(b);
      }
    }
  }
}

// --- disk completions -----------------------------------------------------------------------

function onDiskDone(s: EngineState, ev: Extract<EngineEvent, { type: 'diskDone' }>): void {
  const what = s.ios.get(ev.ioId);
  if (what === undefined) return; // an I/O of a detached disk
  s.ios.delete(ev.ioId);
  if (!ev.ok) {
    emit(s, { type: 'note', note: { kind: 'io-error', errno: ev.errno } });
    onIoError(s, what);
    return;
  }
  const data = ev.data ?? new Uint8Array(0);
  switch (what.kind) {
    case 'clientWrite': {
      const w = s.writes.get(what.seq);
      assert(w !== undefined, 'client write in flight');
      w.localPending = false;
      // A write into an Inconsistent disk (SyncTarget) is not yet a good copy of the data.
      if (s.disk === 'UpToDate') w.copies++;
      lockWrite(s, w.range, -1);
      maybeCompleteWrite(s, w);
      return;
    }
    case 'clientRead':
      emit(s, { type: 'complete', reqId: what.reqId, ok: true, data });
      return;
    case 'staleMark':
      staleMarked(s, what.seq);
      return;
    case 'clientFlush': {
      const f = s.flushes.get(what.reqId);
      if (f === undefined) return;
      f.localPending = false;
      if (s.disk === 'UpToDate') f.copies++;
      maybeCompleteFlush(s, f);
      return;
    }
    case 'peerWrite':
      lockWrite(s, what.range, -1);
      peerWriteDone(s, what, true);
      return;
    case 'epochFlush': {
      const p = s.peers.get(what.peer);
      if (p === undefined || p.inc !== what.inc) return;
      for (const e of p.rxFlushing.splice(0))
        send(s, p, 'control', { kind: 'BarrierAck', epoch: e.epoch, setSize: e.setSize });
      flushRxEpochs(s, p);
      return;
    }
    case 'peerRead': {
      const p = s.peers.get(what.peer);
      if (p !== undefined && p.inc === what.inc)
        send(s, p, 'data', { kind: 'DataReply', id: what.id, ok: true, data });
      return;
    }
    case 'rsRead':
      rsReadDone(s, what, data);
      return;
    case 'rsCsumRead': {
      const p = s.peers.get(what.peer);
      const f = p?.rs?.inflight.get(what.id);
      if (p === undefined || p.inc !== what.inc || f === undefined) return;
      sendRsRequest(s, p, what.id, f, s.cfg.digest(data));
      return;
    }
    case 'rsWrite':
      rsWriteDone(s, what);
      return;
    case 'ovLocalRead':
    case 'ovPeerRead':
      ovReadDone(s, what, data);
      return;
  }
}

/** The resync request of a checksum-based resync, once its local checksum read is done. */
function sendRsRequest(
  s: EngineState,
  p: Peer,
  id: number,
  f: { sent: boolean; readonly start: number; readonly count: number },
  digest: Uint8Array,
): void {
  f.sent = true;
  send(s, p, 'data', { kind: 'RsRequest', id, start: f.start, count: f.count, digest });
}

function peerWriteDone(
  s: EngineState,
  what: Extract<Io, { kind: 'peerWrite' }>,
  ok: boolean,
): void {
  if (!ok) what.group.failed = true;
  if (--what.group.remaining > 0) return;
  const p = s.peers.get(what.peer);
  if (p === undefined || p.inc !== what.inc) return;
  what.group.epoch.inflight--;
  if (what.group.failed) send(s, p, 'control', { kind: 'NegAck', seq: what.seq });
  else if (what.ack === 'write') send(s, p, 'control', { kind: 'WriteAck', seq: what.seq });
  maybeFinishRxEpoch(s, p);
}

function onIoError(s: EngineState, what: Io): void {
  // Settle the failed I/O first, then apply on-io-error.
  switch (what.kind) {
    case 'clientWrite': {
      const w = s.writes.get(what.seq);
      if (w !== undefined) {
        w.localPending = false;
        w.localFailed = true;
        lockWrite(s, w.range, -1);
        // Peers now hold data this disk does not: the disk is no longer a full copy.
        if (s.cfg.onIoError === 'pass_on' && s.cfg.plantedBug !== 'pass-on-unmarked') {
          // The write completes through the peers only once the mark is durable: acknowledged
          // first, a crash could bring this disk back UpToDate with the old block, and as
          // SyncSource of its activity log it would send that block to the peers.
          markLocallyStale(s, [w.range]);
          w.localPending = true;
          emit(s, { type: 'diskFlush', ioId: io(s, { kind: 'staleMark', seq: w.seq }) });
        }
      }
      break;
    }
    case 'staleMark':
      staleMarked(s, what.seq);
      break;
    case 'clientRead':
      break;
    case 'peerWrite':
      lockWrite(s, what.range, -1);
      if (s.cfg.onIoError === 'pass_on' && s.cfg.plantedBug !== 'pass-on-unmarked')
        markLocallyStale(s, [what.range]);
      peerWriteDone(s, what, false);
      break;
    case 'rsWrite': {
      lockRs(s, what.range, -1);
      // pass_on keeps the disk and the resync: the failed blocks stay marked (`partial`: not
      // cleared when the request retires) and the resync asks for them again on its next pass
      // (simulator seed 70000448: the request never retired and the resync never finished).
      const p = s.peers.get(what.peer);
      const f = p?.rs?.inflight.get(what.id);
      if (s.cfg.onIoError !== 'pass_on' || p === undefined || p.inc !== what.inc || f === undefined)
        break;
      for (let b = what.range.start; b < what.range.start + what.range.count; b++) f.partial.add(b);
      if (--f.writesPending <= 0) finishRsRequest(s, p, what.id);
      break;
    }
    case 'peerRead': {
      const p = s.peers.get(what.peer);
      if (p !== undefined && p.inc === what.inc)
        send(s, p, 'data', { kind: 'DataReply', id: what.id, ok: false, data: new Uint8Array(0) });
      break;
    }
    case 'rsRead': {
      const p = s.peers.get(what.peer);
      if (p !== undefined && p.inc === what.inc)
        send(s, p, 'control', {
          kind: 'RsNegAck',
          id: what.id,
          start: what.start,
          count: what.count,
        });
      break;
    }
    case 'epochFlush': {
      const p = s.peers.get(what.peer);
      if (p !== undefined && p.inc === what.inc) {
        // Those epochs may not be on disk: never acknowledge them (the peer marks its log).
        p.rxFlushing.length = 0;
        p.rxUnflushed.length = 0;
        p.rxNoAck = true;
      }
      break;
    }
    case 'clientFlush':
      // pass_on: writes still in this disk's cache may not survive a power loss. The activity
      // log covers every write no successful flush has made stable (an extent leaves it only
      // after a barrier's data flush), so its extents are what may go stale.
      if (s.cfg.onIoError === 'pass_on' && s.cfg.plantedBug !== 'pass-on-unmarked')
        markLocallyStale(
          s,
          [...s.al].map((e) => extentRange(s, e)),
        );
      break;
    case 'rsCsumRead': {
      // pass_on keeps the resync: without a checksum of the local block the request asks for
      // the data itself (an empty digest), instead of never being sent (simulator seed 385).
      const p = s.peers.get(what.peer);
      const f = p?.rs?.inflight.get(what.id);
      if (s.cfg.onIoError !== 'pass_on' || p === undefined || p.inc !== what.inc || f === undefined)
        break;
      sendRsRequest(s, p, what.id, f, new Uint8Array(0));
      break;
    }
    case 'ovLocalRead':
    case 'ovPeerRead':
      break;
  }
  if (s.cfg.onIoError === 'detach') detach(s);
  if (what.kind === 'epochFlush') {
    const p = s.peers.get(what.peer);
    if (p !== undefined && p.inc === what.inc) {
      maybeFinishRxEpoch(s, p);
      // pass_on keeps the disk, but those epochs can never be acknowledged: the peer would
      // wait for their BarrierAcks (and a FLUSH with them) forever. Drop the connection, as
      // for a protocol error: the peer marks what it had not seen acknowledged (its transfer
      // log) and the reconnect resyncs it (simulator seed 61001300).
      if (s.cfg.onIoError === 'pass_on' && p.conn === 'Connected') {
        p.wantConnect = true;
        emit(s, { type: 'disconnect', peer: p.id });
        onClosed(s, p.id, true);
      }
    }
  }
  // pass_on keeps the disk: an online-verify read that failed counts as a difference (an empty
  // digest never matches), so the verify goes on and a resync covers the range (simulator seed
  // 62000049: VerifyS waited for the failed read forever).
  if ((what.kind === 'ovLocalRead' || what.kind === 'ovPeerRead') && hasDisk(s))
    ovReadDone(s, what, new Uint8Array(0));
  // Requests whose local part failed complete now, through the peers if they can (DRBD's read
  // retry on the peer; under pass_on the disk is still here and may fail the same read again).
  if (what.kind === 'clientRead')
    startRead(s, what.reqId, what.offsetBytes, what.lengthBytes, true);
  if (what.kind === 'clientFlush') {
    const f = s.flushes.get(what.reqId);
    if (f !== undefined) {
      f.localPending = false;
      maybeCompleteFlush(s, f);
    }
  }
  if (what.kind === 'clientWrite') {
    const w = s.writes.get(what.seq);
    if (w !== undefined) maybeCompleteWrite(s, w);
  }
}

/**
 * on-io-error pass_on: `r` failed on this disk but the data lives on (a peer took the write).
 * As DRBD: the blocks are out of sync with every peer and the disk goes Inconsistent (both
 * persisted: that is what a restart, or DRBD itself, finds); in memory `localStale` keeps which
 * blocks are stale, so the rest of a disk that was UpToDate still serves reads. A resync as
 * SyncTarget (the handshake makes an Inconsistent disk the target) repairs them.
 */
function markLocallyStale(s: EngineState, ranges: readonly BlockRange[]): void {
  if (!hasDisk(s) || ranges.length === 0) return;
  const syncTarget = [...s.peers.values()].some((p) => p.repl === 'SyncTarget');
  for (const r of ranges) {
    for (const id of s.bitmaps.keys()) markOutOfSync(s, id, r);
    if (s.disk === 'UpToDate' || (s.localStale.weight > 0 && syncTarget)) s.localStale.set(r);
    // A resync request in flight over these blocks would clear them when it retires, taking
    // this failed write for a newer one that landed ('touched'): keep them marked and fetch
    // them again (simulator seed 2700059960: a replicated write failed on a SyncTarget over
    // blocks a reply skipped as touched, and the retiring request cleared them).
    for (const p of s.peers.values()) {
      if (p.rs === null) continue;
      for (const f of p.rs.inflight.values())
        for (
          let b = Math.max(r.start, f.start);
          b < Math.min(r.start + r.count, f.start + f.count);
          b++
        )
          f.partial.add(b);
    }
  }
  if (s.disk === 'UpToDate') {
    s.consistent = false;
    setDisk(s, 'Inconsistent');
    broadcastState(s);
  }
  emit(s, { type: 'bitmapFlush' });
  persist(s);
}

/** The barriers persisting a stale mark are done: the write completes through the peers. */
function staleMarked(s: EngineState, seq: number): void {
  const w = s.writes.get(seq);
  if (w === undefined) return;
  w.localPending = false;
  maybeCompleteWrite(s, w);
}

/** on-io-error detach / admin detach: go Diskless and keep serving through the peers. */
function detach(s: EngineState): void {
  if (!hasDisk(s)) return;
  // Record that this copy stops following the data (if the disk still takes writes): after a
  // restart it is Outdated and cannot be promoted without --force.
  s.wasUpToDate = false;
  persist(s);
  setDisk(s, 'Failed');
  setDisk(s, 'Diskless');
  // Outstanding local I/O is abandoned: its completion will be ignored.
  const abandoned = [...s.ios.values()];
  s.ios.clear();
  s.al.clear();
  s.alWrites.clear();
  s.alHolds.clear();
  s.writeLocks.clear();
  s.rsLocks.clear();
  // Writes whose local part failed or is abandoned may be missing here while the peers wrote
  // them, and the activity log may not cover them (a write waiting for an AL transaction that
  // failed): the peers mark them for us once they know our disk is gone (DRBD: the peer of a
  // failed disk marks what it receives; P_OUT_OF_SYNC).
  const missing: WriteReq[] = [];
  for (const w of s.writes.values()) {
    if (w.localPending || w.localFailed) missing.push(w);
    w.extents = [];
    w.localPending = false;
  }
  for (const p of s.peers.values()) {
    p.rxNoAck = true;
    p.rxUnflushed.length = 0;
    if (p.rs !== null) stopResync(s, p);
    if (p.sync !== null) p.sync = null;
    if (p.repl !== 'Off' && p.conn === 'Connected') setRepl(s, p, 'Established');
  }
  broadcastDiskLost(s);
  for (const w of missing) {
    for (const id of w.replicatedTo) {
      const p = s.peers.get(id);
      if (p !== undefined && p.conn === 'Connected')
        send(s, p, 'data', { kind: 'OutOfSync', start: w.range.start, count: w.range.count });
    }
  }
  for (const what of abandoned) {
    switch (what.kind) {
      case 'clientRead':
        // Without the client's buffer: the abandoned read may still land in it later.
        startRead(s, what.reqId, what.offsetBytes, what.lengthBytes);
        break;
      case 'clientFlush': {
        const f = s.flushes.get(what.reqId);
        if (f !== undefined) {
          f.localPending = false;
          maybeCompleteFlush(s, f);
        }
        break;
      }
      case 'peerWrite':
        peerWriteDone(s, what, false);
        break;
      case 'epochFlush': {
        const p = s.peers.get(what.peer);
        if (p !== undefined && p.inc === what.inc) {
          p.rxFlushing.length = 0;
          p.rxUnflushed.length = 0;
          maybeFinishRxEpoch(s, p);
        }
        break;
      }
      case 'peerRead':
      case 'rsRead': {
        const p = s.peers.get(what.peer);
        if (p === undefined || p.inc !== what.inc) break;
        if (what.kind === 'peerRead')
          send(s, p, 'data', {
            kind: 'DataReply',
            id: what.id,
            ok: false,
            data: new Uint8Array(0),
          });
        else
          send(s, p, 'control', {
            kind: 'RsNegAck',
            id: what.id,
            start: what.start,
            count: what.count,
          });
        break;
      }
      case 'clientWrite':
      case 'staleMark': // the write completes below (the peers mark it: OutOfSync above)
      case 'rsCsumRead':
      case 'rsWrite':
      case 'ovLocalRead':
      case 'ovPeerRead':
        break;
    }
  }
  for (const w of [...s.writes.values()]) maybeCompleteWrite(s, w);
  s.lockWaiters.splice(0).forEach((f) => f());
  retryHeldWrites(s);
}

// --- admin ----------------------------------------------------------------------------------

function reply(s: EngineState, cmdId: number, message: string): void {
  emit(s, { type: 'adminResult', cmdId, ok: true, message });
}

function refuseAdmin(s: EngineState, cmdId: number, refusal: AdminRefusal): void {
  emit(s, { type: 'adminResult', cmdId, ok: false, refusal, message: refusalMessage(refusal) });
}

/** Commands that change roles, UUIDs or the disk would race the handshake's view of them. */
const REFUSED_WHILE_HANDSHAKING: ReadonlySet<AdminCommand['cmd']> = new Set([
  'primary',
  'secondary',
  'new-current-uuid',
  'invalidate',
  'invalidate-remote',
  'verify',
  'detach',
  'attach',
  'resize',
]);

function onAdmin(s: EngineState, cmdId: number, c: AdminCommand): void {
  if (REFUSED_WHILE_HANDSHAKING.has(c.cmd) && mustQueue(s)) {
    return refuseAdmin(s, cmdId, { code: 'handshaking' });
  }
  switch (c.cmd) {
    case 'primary':
      promote(s, cmdId, c.force);
      return;
    case 'secondary':
      demote(s, cmdId);
      return;
    case 'connect': {
      const p = s.peers.get(c.peer);
      if (p === undefined) return refuseAdmin(s, cmdId, { code: 'unknown-peer', peer: c.peer });
      p.wantConnect = true;
      p.discardMyData = c.discardMyData;
      if (p.conn === 'StandAlone') setConn(s, p, 'Connecting');
      emit(s, { type: 'connect', peer: p.id });
      return reply(s, cmdId, 'connecting');
    }
    case 'disconnect': {
      const p = s.peers.get(c.peer);
      if (p === undefined) return refuseAdmin(s, cmdId, { code: 'unknown-peer', peer: c.peer });
      p.wantConnect = false;
      emit(s, { type: 'disconnect', peer: p.id });
      onClosed(s, p.id, false);
      setConn(s, p, 'StandAlone');
      return reply(s, cmdId, 'disconnected');
    }
    case 'new-current-uuid':
      return newCurrentUuidCmd(s, cmdId, c.clearBitmap);
    case 'invalidate':
    case 'invalidate-remote': {
      const p = s.peers.get(c.peer);
      if (p === undefined) return refuseAdmin(s, cmdId, { code: 'unknown-peer', peer: c.peer });
      if (!hasDisk(s)) return refuseAdmin(s, cmdId, { code: 'no-disk' });
      const iAmSource = c.cmd === 'invalidate-remote';
      if (p.conn !== 'Connected' || !p.settled || p.repl !== 'Established' || p.sync !== null) {
        if (c.cmd === 'invalidate' && p.conn !== 'Connected') {
          bm(s, p.id).setAll();
          emit(s, { type: 'bitmapSet', peer: p.id, ranges: [{ start: 0, count: s.blocks }] });
          s.consistent = false;
          setDisk(s, 'Inconsistent');
          emit(s, { type: 'bitmapFlush' });
          persist(s);
          return reply(s, cmdId, 'invalidated; full sync on connect');
        }
        return refuseAdmin(s, cmdId, { code: 'not-established' });
      }
      if (iAmSource ? s.disk !== 'UpToDate' : p.disk !== 'UpToDate')
        return refuseAdmin(s, cmdId, { code: 'sync-source-not-up-to-date' });
      if (!iAmSource && s.role === 'Primary')
        return refuseAdmin(s, cmdId, { code: 'primary-invalidate' });
      send(s, p, 'data', { kind: 'StartResync', senderIsSource: iAmSource, full: true });
      beginSync(s, p, iAmSource ? 'source' : 'target', true);
      return reply(s, cmdId, 'full sync started');
    }
    case 'verify':
      return startVerify(s, cmdId, c.peer);
    case 'detach':
      if (!hasDisk(s)) return refuseAdmin(s, cmdId, { code: 'no-disk' });
      if (
        c.failed !== true &&
        s.role === 'Primary' &&
        ![...s.peers.values()].some((p) => isConnectedSettled(p) && p.disk === 'UpToDate')
      )
        return refuseAdmin(s, cmdId, { code: 'primary-needs-up-to-date-peer', action: 'detach' });
      persist(s);
      emit(s, { type: 'bitmapFlush' });
      detach(s);
      return reply(s, cmdId, 'detached');
    case 'attach':
      return attach(s, cmdId, c.boot);
    case 'resize':
      return startResize(s, cmdId, c);
    case 'reconfigure':
      return reconfigure(s, cmdId, c.options);
  }
}

function promote(s: EngineState, cmdId: number, force: boolean): void {
  if (s.role === 'Primary') return reply(s, cmdId, 'already Primary');
  if (s.pendingPromote !== null) return refuseAdmin(s, cmdId, { code: 'promotion-in-progress' });
  const connected = [...s.peers.values()].filter((p) => isConnectedSettled(p));
  if (!s.cfg.allowTwoPrimaries && connected.some((p) => p.role === 'Primary'))
    return refuseAdmin(s, cmdId, { code: 'peer-primary', voted: false });
  if (s.disk === 'Diskless') {
    if (!connected.some((p) => p.disk === 'UpToDate'))
      return refuseAdmin(s, cmdId, { code: 'no-up-to-date-data' });
  } else if (s.disk !== 'UpToDate' && !force) {
    return refuseAdmin(s, cmdId, { code: 'disk-not-up-to-date', disk: s.disk, forceable: true });
  } else if (!hasDisk(s))
    return refuseAdmin(s, cmdId, { code: 'disk-not-up-to-date', disk: s.disk, forceable: false });
  if (connected.some((p) => p.sync !== null && p.sync.role === 'source') && s.disk !== 'UpToDate')
    return refuseAdmin(s, cmdId, { code: 'resync-running', intoThisNode: true });
  if (fencingOn(s) && !force) {
    // DRBD: a peer whose disk is unknown may hold newer data; fence it before promoting.
    const unknown = [...s.peers.values()].filter(
      (p) => p.conn !== 'Connected' && p.fence !== 'fenced',
    );
    if (unknown.length > 0) {
      if (s.fence.promote !== null) return refuseAdmin(s, cmdId, { code: 'fence-pending' });
      s.fence.promote = { cmdId, force };
      for (const p of unknown) startFence(s, p);
      return;
    }
  }
  if (connected.length === 0 || s.cfg.allowTwoPrimaries) return becomePrimary(s, cmdId, force);
  // Two-phase: every connected peer must agree that it is not (becoming) Primary.
  const pp: PendingPromote = { cmdId, force, waiting: new Set(), refused: false };
  for (const p of connected) {
    p.promoteId = s.nextId++;
    pp.waiting.add(p.id);
    send(s, p, 'control', { kind: 'PromoteRequest', id: p.promoteId });
  }
  s.pendingPromote = pp;
}

// --- resource-level fencing -----------------------------------------------------------------

function fencingOn(s: EngineState): boolean {
  return (s.cfg.fencing ?? 'dont-care') !== 'dont-care';
}

function startFence(s: EngineState, p: Peer): void {
  if (p.fence === 'fencing') return;
  p.fence = 'fencing';
  p.fenceToken = s.nextId++;
  emit(s, { type: 'fencePeer', peer: p.id, token: p.fenceToken });
}

/** A fenced peer that is UpToDate again (resynced) may be promoted again: lift the fence. */
function unfence(s: EngineState, p: Peer): void {
  if (p.fence !== 'fenced') return;
  p.fence = 'none';
  emit(s, { type: 'unfencePeer', peer: p.id });
}

/** What DRBD makes of the fence-peer handler's exit code (drbd_try_outdate_peer). */
function fenceOutcome(
  s: EngineState,
  exitCode: number | null,
): { peerDisk: DiskState | null; result: string } {
  switch (exitCode) {
    case 3:
      return { peerDisk: 'Inconsistent', result: 'peer is Inconsistent' };
    case 4:
      return { peerDisk: 'Outdated', result: 'peer was outdated' };
    case 5:
      return s.disk === 'UpToDate'
        ? { peerDisk: 'Outdated', result: 'peer is unreachable, assumed dead' }
        : { peerDisk: null, result: 'peer is unreachable and the local disk is not UpToDate' };
    case 6:
      return { peerDisk: null, result: 'peer is Primary' };
    case 7:
      return {
        peerDisk: 'Outdated',
        result:
          s.cfg.fencing === 'resource-and-stonith'
            ? 'peer was STONITHed'
            : 'peer was STONITHed (exit 7 without fencing resource-and-stonith)',
      };
    case null:
      return { peerDisk: null, result: 'the fence-peer handler did not run or was killed' };
    default:
      return { peerDisk: null, result: `the fence-peer handler failed (exit ${exitCode})` };
  }
}

function onFencePeerDone(
  s: EngineState,
  peerId: number,
  token: number,
  exitCode: number | null,
): void {
  const p = s.peers.get(peerId);
  if (p === undefined || p.fence !== 'fencing' || token !== p.fenceToken) return;
  const { peerDisk, result } = fenceOutcome(s, exitCode);
  const fenced = peerDisk !== null;
  p.fence = fenced ? 'fenced' : 'none';
  emit(s, { type: 'note', note: { kind: 'fence-peer', peer: p.id, exitCode, result, fenced } });
  if (exitCode === 6 && s.role !== 'Primary' && s.disk === 'UpToDate') {
    // The peer is Primary: this copy stops following the data (DRBD outdates itself).
    s.wasUpToDate = false;
    setDisk(s, 'Outdated');
    persist(s);
  }
  if (fenced) {
    if (p.conn !== 'Connected') setPeerDisk(s, p, peerDisk);
    // Reconnected while the handler ran: lift the fence again once the peer is good.
    else if (p.settled && p.disk === 'UpToDate') unfence(s, p);
  }
  if ([...s.peers.values()].some((q) => q.fence === 'fencing')) return;
  // Frozen I/O resumes once every peer is fenced; a failed handler keeps it frozen until the
  // peer is back (DRBD: until resume-io or a reconnect).
  if (
    s.fence.frozen &&
    [...s.peers.values()].every((q) => q.fence !== 'none' || q.conn === 'Connected')
  )
    thaw(s);
  const pp = s.fence.promote;
  if (pp === null) return;
  s.fence.promote = null;
  const unfenced = [...s.peers.values()].some(
    (q) => q.conn !== 'Connected' && q.fence !== 'fenced',
  );
  if (unfenced) return refuseAdmin(s, pp.cmdId, { code: 'fence-failed', result });
  promote(s, pp.cmdId, pp.force);
}

/** Resumes frozen I/O: writes and flushes that finished meanwhile complete now. */
function thaw(s: EngineState): void {
  if (!s.fence.frozen) return;
  s.fence.frozen = false;
  for (const w of [...s.writes.values()]) maybeCompleteWrite(s, w);
  for (const f of [...s.flushes.values()]) maybeCompleteFlush(s, f);
  pumpQueue(s);
}

function onPromoteReply(s: EngineState, p: Peer, id: number, granted: boolean): void {
  const pp = s.pendingPromote;
  if (pp === null || id !== p.promoteId || !pp.waiting.has(p.id)) return;
  pp.waiting.delete(p.id);
  if (!granted) pp.refused = true;
  if (pp.waiting.size > 0) return;
  s.pendingPromote = null;
  if (pp.refused) {
    broadcastState(s); // tells peers that granted that we stay Secondary
    return refuseAdmin(s, pp.cmdId, { code: 'peer-primary', voted: true });
  }
  becomePrimary(s, pp.cmdId, pp.force);
}

function becomePrimary(s: EngineState, cmdId: number, force: boolean): void {
  setRole(s, 'Primary');
  s.crashedPrimary = true;
  const forcedUp = force && s.disk !== 'UpToDate';
  if (forcedUp) {
    s.consistent = true;
    s.wasUpToDate = true;
    setDisk(s, 'UpToDate');
  }
  const outOfReach = [...s.peers.values()].some(
    (p) => !inSyncWith(p) && (s.bitmapUuids.get(p.id) ?? 0n) === 0n,
  );
  if (hasDisk(s) && (forcedUp || outOfReach)) newCurrentUuid(s);
  else {
    s.current = withRoleBit(s, s.current);
    persist(s);
  }
  broadcastState(s);
  if (forcedUp) {
    for (const p of s.peers.values()) {
      if (
        isConnectedSettled(p) &&
        p.disk !== 'UpToDate' &&
        p.disk !== 'Diskless' &&
        p.sync === null
      ) {
        send(s, p, 'data', { kind: 'StartResync', senderIsSource: true, full: true });
        beginSync(s, p, 'source', true);
      }
    }
  }
  reply(s, cmdId, forcedUp ? 'Primary (forced: new data generation)' : 'Primary');
}

function demote(s: EngineState, cmdId: number): void {
  if (s.role !== 'Primary') return reply(s, cmdId, 'already Secondary');
  if (s.writes.size > 0 || s.flushes.size > 0 || s.queued.length > 0 || s.writesNotStarted.size > 0)
    return refuseAdmin(s, cmdId, { code: 'io-in-flight' });
  setRole(s, 'Secondary');
  s.crashedPrimary = false;
  s.current = withRoleBit(s, s.current);
  persist(s);
  emit(s, { type: 'bitmapFlush' });
  broadcastState(s);
  reply(s, cmdId, 'Secondary');
}

function newCurrentUuidCmd(s: EngineState, cmdId: number, clearBitmap: boolean): void {
  if (!hasDisk(s)) return refuseAdmin(s, cmdId, { code: 'no-disk' });
  if (!clearBitmap) {
    newCurrentUuid(s);
    return reply(s, cmdId, 'new current UUID');
  }
  // Skip the initial sync: every connected disk is declared identical (e.g. all zeroed).
  const connected = [...s.peers.values()].filter((p) => isConnectedSettled(p));
  if (connected.some((p) => p.sync !== null || p.repl !== 'Established'))
    return refuseAdmin(s, cmdId, { code: 'resync-running', intoThisNode: false });
  pushHistory(s, s.current);
  s.current = withRoleBit(s, randomUuid(s));
  for (const p of s.peers.values()) {
    bm(s, p.id).clearAll();
    emit(s, { type: 'bitmapClear', peer: p.id, ranges: [{ start: 0, count: s.blocks }] });
    s.bitmapUuids.set(p.id, isConnectedSettled(p) ? 0n : (s.history[0] ?? 0n));
  }
  s.consistent = true;
  s.wasUpToDate = true;
  setDisk(s, 'UpToDate');
  emit(s, { type: 'bitmapFlush' });
  persist(s);
  for (const p of connected) {
    send(s, p, 'data', { kind: 'NewCurrentUuid', uuid: s.current, clearBitmap: true });
    if (p.disk !== 'Diskless') setPeerDisk(s, p, 'UpToDate');
  }
  broadcastState(s);
  reply(s, cmdId, 'new current UUID; bitmap cleared');
}

function attach(s: EngineState, cmdId: number, boot: BootState): void {
  if (hasDisk(s)) return refuseAdmin(s, cmdId, { code: 'disk-attached' });
  if (
    s.role === 'Primary' &&
    ![...s.peers.values()].some((p) => isConnectedSettled(p) && p.disk === 'UpToDate')
  )
    return refuseAdmin(s, cmdId, { code: 'primary-needs-up-to-date-peer', action: 'attach' });
  setDisk(s, 'Attaching');
  loadBoot(s, boot);
  if (s.disk === 'UpToDate') {
    setDisk(s, 'Outdated'); // it missed writes while away; peers decide
    // And says so on disk: metadata still claiming UpToDate (the detach's own write failed with
    // the disk) would bring a crashed node back UpToDate and promotable without a peer, missing
    // what was written meanwhile (simulator seed 2700006952).
    s.wasUpToDate = false;
  }
  // After loadBoot: passing through UpToDate clears attachedAsPrimary (setDisk).
  s.attachedAsPrimary = s.role === 'Primary';
  persist(s);
  for (const p of s.peers.values()) {
    if (p.conn === 'Connected') {
      p.rxNoAck = false;
      p.settled = false;
      p.hsSent = true;
      send(s, p, 'data', handshakePacket(s, p));
    }
  }
  reply(s, cmdId, 'attached');
}

// --- connection and handshake ---------------------------------------------------------------

function onEstablished(s: EngineState, peerId: number): void {
  const p = s.peers.get(peerId);
  if (p === undefined || p.conn === 'Connected' || !p.wantConnect) return;
  p.inc++;
  setConn(s, p, 'Connected');
  // The peer is reachable again: it cannot have been promoted behind our back; frozen I/O
  // resumes (requests still wait for the handshake to settle).
  if (s.fence.frozen && ![...s.peers.values()].some((q) => q.fence === 'fencing')) thaw(s);
  p.settled = false;
  p.hsSent = true;
  p.epoch = 1;
  p.epochWrites = 0;
  p.closeEpoch = false;
  p.epochSizes.clear();
  p.flushAskedEpoch = 0;
  p.rxNoAck = false;
  p.rxLastSeq = 0;
  p.sentLog.length = 0;
  send(s, p, 'data', handshakePacket(s, p));
}

function handshakePacket(s: EngineState, p: Peer): HandshakePacket {
  return {
    kind: 'Handshake',
    nodeId: s.cfg.nodeId,
    protocol: s.cfg.protocol,
    sizeBytes: s.cfg.sizeBytes,
    role: s.role,
    disk: s.disk,
    currentUuid: s.current,
    bitmapUuid: s.bitmapUuids.get(p.id) ?? 0n,
    historyUuids: s.history,
    crashedPrimary: s.crashedPrimary,
    discardMyData: p.discardMyData,
    bitmapWeight: bm(s, p.id).weight,
    allowTwoPrimaries: s.cfg.allowTwoPrimaries,
  };
}

function myView(s: EngineState, p: Peer): UuidView {
  return {
    nodeId: s.cfg.nodeId,
    nodeName: s.cfg.nodeName,
    role: s.role,
    currentUuid: s.current,
    bitmapUuid: s.bitmapUuids.get(p.id) ?? 0n,
    historyUuids: s.history,
    crashedPrimary: s.crashedPrimary,
    bitmapWeight: bm(s, p.id).weight,
    discardMyData: p.discardMyData,
  };
}

function onHandshake(s: EngineState, p: Peer, h: HandshakePacket): void {
  if (!p.hsSent) {
    // The peer re-handshakes (it attached a disk): answer in kind.
    p.settled = false;
    send(s, p, 'data', handshakePacket(s, p));
  }
  p.hsSent = false;
  setPeerRole(s, p, h.role);
  setPeerDisk(s, p, h.disk);
  if (h.sizeBytes !== s.cfg.sizeBytes || h.protocol !== s.cfg.protocol || h.nodeId !== p.id) {
    const rule =
      h.sizeBytes !== s.cfg.sizeBytes
        ? `size-mismatch: ${s.cfg.sizeBytes} bytes here, ${h.sizeBytes} on the peer`
        : h.protocol !== s.cfg.protocol
          ? `protocol-mismatch: ${s.cfg.protocol} here, ${h.protocol} on the peer`
          : 'incompatible';
    emit(s, {
      type: 'note',
      note: { kind: 'handshake', peer: p.id, rule, decision: 'disconnect' },
    });
    return goStandAlone(s, p);
  }
  const diskless =
    !hasDisk(s) || h.disk === 'Diskless' || h.disk === 'Failed' || h.disk === 'Attaching';
  if (
    diskless &&
    s.role === 'Primary' &&
    h.role === 'Primary' &&
    !(s.cfg.allowTwoPrimaries && h.allowTwoPrimaries)
  ) {
    // Both Primary without two-primaries: only a split brain can explain it. With two disks
    // the UUID rules see it (after-sb-2pri); a Diskless side has no UUIDs to compare, so the
    // connection is refused until one of them is demoted.
    emit(s, {
      type: 'note',
      note: { kind: 'handshake', peer: p.id, rule: 'two-primaries', decision: 'disconnect' },
    });
    return goStandAlone(s, p);
  }
  if (diskless && !hasDisk(s) && h.disk !== 'Diskless' && h.disk !== 'Failed') {
    // A Diskless node exposes the peer's data generation (DRBD's ed_uuid). A Diskless Primary
    // may only connect to data of the generation it exposed: a peer on another one lacks writes
    // this Primary acknowledged (they went to a disk it has lost since, or to a peer whose new
    // generation a crash undid), and serving from it would take data back in time
    // (DRBD's "Can only connect to data with current UUID"; seed 31418678).
    if (s.role === 'Primary' && (s.current & ~1n) !== (h.currentUuid & ~1n)) {
      emit(s, {
        type: 'note',
        note: {
          kind: 'handshake',
          peer: p.id,
          rule: 'diskless-stale-data',
          decision: 'disconnect',
        },
      });
      return goStandAlone(s, p);
    }
    s.current = withRoleBit(s, h.currentUuid);
  }
  if (diskless) {
    emit(s, {
      type: 'note',
      note: { kind: 'handshake', peer: p.id, rule: 'diskless', decision: 'no-sync' },
    });
    return settle(s, p, 'Established');
  }
  const peerView: UuidView = {
    nodeId: h.nodeId,
    nodeName: p.name,
    role: h.role,
    currentUuid: h.currentUuid,
    bitmapUuid: h.bitmapUuid,
    historyUuids: h.historyUuids,
    crashedPrimary: h.crashedPrimary,
    bitmapWeight: h.bitmapWeight,
    discardMyData: h.discardMyData,
  };
  const v = handshakeVerdict(s.cfg, myView(s, p), peerView);
  let result = v.result;
  // One side never finished a sync: the consistent side is the source whatever the UUIDs say
  // (DRBD's "sync source/target due to disk states"), full if they called for a full sync or
  // an unresolvable split brain. A SyncTarget that lost its last metadata write (a crash after
  // the source finished) leaves each side's current UUID in the other's history: by UUIDs
  // alone both would be SyncTarget, and both would stay Inconsistent.
  const iAmInconsistent = s.disk === 'Inconsistent';
  if (iAmInconsistent !== (h.disk === 'Inconsistent') && result !== -1000) {
    const full = result === 2 || result === -2 || result === -100;
    result = iAmInconsistent ? (full ? -2 : -1) : full ? 2 : 1;
  }
  const mine = bm(s, p.id).weight;
  // Equal generations, one disk Outdated: it missed writes of this generation (it was detached,
  // or attached after being away), so the UpToDate side is the source of whatever either side
  // marked, a crashed Primary's activity log included; with nothing marked the Outdated side
  // just adopts UpToDate (case 0). Found by the simulator (seed 13163): a Primary's disk failed,
  // the peer's new generation for it was lost in a crash, and the detached disk, still flagged
  // crashed-primary, became the SyncSource of its stale activity log.
  const disks = [s.disk, h.disk];
  if (
    (s.current & ~1n) === (h.currentUuid & ~1n) &&
    disks.includes('Outdated') &&
    disks.includes('UpToDate')
  )
    result = mine > 0 || h.bitmapWeight > 0 ? (s.disk === 'UpToDate' ? 1 : -1) : 0;
  // Equal generations with marked blocks: writes that were never barrier-acked (e.g. a demoted
  // Primary lost the link before its last epoch was acknowledged). Resync exactly those.
  if (
    result === 0 &&
    (mine > 0 || h.bitmapWeight > 0) &&
    s.disk !== 'Inconsistent' &&
    h.disk !== 'Inconsistent'
  ) {
    if (mine > 0 && h.bitmapWeight === 0) result = 1;
    else if (h.bitmapWeight > 0 && mine === 0) result = -1;
    // Both marked (e.g. both grew apart): a Primary stays the source, else the lower node id.
    else if (s.role === 'Primary' && h.role !== 'Primary') result = 1;
    else if (h.role === 'Primary' && s.role !== 'Primary') result = -1;
    else result = s.cfg.nodeId < h.nodeId ? 1 : -1;
  }
  const decision = describe(result);
  emit(s, { type: 'note', note: { kind: 'handshake', peer: p.id, rule: v.rule, decision } });
  if (v.splitBrain !== null)
    emit(s, {
      type: 'note',
      note: { kind: 'split-brain', peer: p.id, resolved: `${v.splitBrain}: ${decision}` },
    });
  p.discardMyData = false;
  if (
    s.role === 'Primary' &&
    h.role === 'Primary' &&
    !(s.cfg.allowTwoPrimaries && h.allowTwoPrimaries) &&
    !(v.splitBrain?.includes('violently') ?? false)
  ) {
    // Two Primaries (one promoted while the other was out of reach) whose UUIDs show no split
    // brain, e.g. a Primary that re-attached its disk Inconsistent: connecting would make two
    // Primaries (DRBD's SS_TWO_PRIMARIES). Refused until one is demoted (sim seed 2600003032).
    emit(s, {
      type: 'note',
      note: { kind: 'handshake', peer: p.id, rule: 'two-primaries', decision: 'disconnect' },
    });
    return goStandAlone(s, p);
  }
  switch (result) {
    case 0:
      if (s.disk === 'Outdated' && h.disk === 'UpToDate') setDisk(s, 'UpToDate');
      if (h.disk === 'Outdated' && s.disk === 'UpToDate') setPeerDisk(s, p, 'UpToDate');
      return settle(s, p, 'Established');
    case 1:
    case 2:
    case -1:
    case -2: {
      const target = result < 0;
      const violent = v.splitBrain?.includes('violently') ?? false;
      if (target && s.role === 'Primary' && s.disk === 'UpToDate' && !violent) {
        emit(s, {
          type: 'note',
          note: {
            kind: 'split-brain',
            peer: p.id,
            resolved: 'refused: a Primary would become SyncTarget',
          },
        });
        return goStandAlone(s, p);
      }
      if (!target && h.role === 'Primary' && h.disk === 'UpToDate' && !violent) {
        emit(s, {
          type: 'note',
          note: {
            kind: 'split-brain',
            peer: p.id,
            resolved: 'refused: a Primary would become SyncTarget',
          },
        });
        return goStandAlone(s, p);
      }
      // A SyncSource's disk is UpToDate (DRBD's sanitize_state forces it; only an Inconsistent
      // disk may not become SyncSource). A consistent disk the UUIDs found newer than the
      // peer's holds the newest data, Outdated or not (seed 13351: a Primary wrote alone, its
      // disk failed, and at re-attach its Outdated disk held the newer generation; it never
      // served a request and the resync never ended).
      if (!target && s.disk === 'Outdated') {
        s.wasUpToDate = true;
        setDisk(s, 'UpToDate');
      }
      if (target && h.disk === 'Outdated') setPeerDisk(s, p, 'UpToDate');
      p.settled = true;
      beginSync(s, p, target ? 'target' : 'source', Math.abs(result) === 2);
      pumpQueue(s);
      return;
    }
    default:
      return goStandAlone(s, p);
  }
}

function describe(r: number): string {
  switch (r) {
    case 0:
      return 'no-sync';
    case 1:
      return 'sync-source (bitmap)';
    case -1:
      return 'sync-target (bitmap)';
    case 2:
      return 'sync-source (full)';
    case -2:
      return 'sync-target (full)';
    case -1000:
      return 'unrelated-data: disconnect';
    default:
      return 'split-brain: disconnect';
  }
}

function settle(s: EngineState, p: Peer, r: ReplState): void {
  p.settled = true;
  setRepl(s, p, r);
  pumpQueue(s);
}

function goStandAlone(s: EngineState, p: Peer): void {
  p.wantConnect = false;
  emit(s, { type: 'disconnect', peer: p.id });
  onClosed(s, p.id, false);
  setConn(s, p, 'StandAlone');
}

/** Decided a resync: set up the sync UUID and exchange bitmaps; the resync starts after. */
function beginSync(s: EngineState, p: Peer, role: 'source' | 'target', full: boolean): void {
  p.sync = { role, bmSent: false, bmGotLast: false };
  p.verifyMarked = false;
  if (full) {
    bm(s, p.id).setAll();
    emit(s, { type: 'bitmapSet', peer: p.id, ranges: [{ start: 0, count: s.blocks }] });
  }
  if (role === 'target') {
    s.consistent = false;
    setDisk(s, 'Inconsistent');
    persist(s);
  } else {
    const b = s.bitmapUuids.get(p.id) ?? 0n;
    const syncUuid =
      b !== 0n && (b & ~1n) !== UUID_JUST_CREATED
        ? BigInt.asUintN(64, b + UUID_NEW_BM_OFFSET)
        : randomUuid(s);
    s.bitmapUuids.set(p.id, syncUuid);
    persist(s);
    send(s, p, 'data', { kind: 'SyncUuid', uuid: syncUuid });
    setPeerDisk(s, p, 'Inconsistent');
  }
  sendBitmap(s, p);
  p.sync.bmSent = true;
  maybeStartResync(s, p);
}

function sendBitmap(s: EngineState, p: Peer): void {
  const rs = bm(s, p.id).ranges();
  if (rs.length === 0) {
    send(s, p, 'data', { kind: 'Bitmap', ranges: [], last: true });
    return;
  }
  for (let i = 0; i < rs.length; i += WIRE_RANGES_MAX) {
    const chunk = rs.slice(i, i + WIRE_RANGES_MAX);
    send(s, p, 'data', { kind: 'Bitmap', ranges: chunk, last: i + WIRE_RANGES_MAX >= rs.length });
  }
}

function onBitmap(s: EngineState, p: Peer, ranges: readonly BlockRange[], last: boolean): void {
  if (p.sync === null) return;
  const rs = ranges.map((r) => clampRange(s, r)).filter((r) => r.count > 0);
  for (const r of rs) bm(s, p.id).set(r);
  if (rs.length > 0) emit(s, { type: 'bitmapSet', peer: p.id, ranges: rs });
  if (last) p.sync.bmGotLast = true;
  maybeStartResync(s, p);
}

function maybeStartResync(s: EngineState, p: Peer): void {
  const sy = p.sync;
  if (sy === null || !sy.bmSent || !sy.bmGotLast) return;
  emit(s, { type: 'bitmapFlush' });
  p.sync = null;
  const bits = bm(s, p.id).weight;
  emit(s, { type: 'note', note: { kind: 'resync-started', peer: p.id, role: sy.role, bits } });
  if (sy.role === 'source') {
    setRepl(s, p, 'SyncSource');
    return;
  }
  setRepl(s, p, 'SyncTarget');
  const timerId = s.nextTimer++;
  s.timers.set(timerId, { peer: p.id, kind: 'resync' });
  p.rs = {
    cursor: 0,
    inflight: new Map(),
    creditBytes: 0,
    requestedBytes: 0,
    cameInBytes: 0,
    lastTurnMs: null,
    turnSoon: false,
    plan: new Array<number>(Math.max(1, s.cfg.resync.cPlanAheadTenths)).fill(0),
    planTotal: 0,
    finishing: false,
    timerId,
  };
  resyncTick(s, p, null);
}

function onClosed(s: EngineState, peerId: number, byNetwork: boolean): void {
  const p = s.peers.get(peerId);
  if (p === undefined || p.conn !== 'Connected') return;
  p.inc++;
  setConn(s, p, p.wantConnect ? 'Connecting' : 'StandAlone');
  setRepl(s, p, 'Off');
  const wasInSync = p.settled && p.disk === 'UpToDate';
  // A Primary losing a peer with good data fences it before any write it alone holds
  // completes; under resource-and-stonith nothing completes until the handler answers.
  if (s.role === 'Primary' && fencingOn(s) && p.disk === 'UpToDate' && p.fence === 'none') {
    if (s.cfg.fencing === 'resource-and-stonith') s.fence.frozen = true;
    startFence(s, p);
  }
  p.settled = false;
  p.hsSent = false;
  p.sync = null;
  // Writes the peer may not have made durable (no BarrierAck yet) are out of sync now.
  clearTl(s, p);
  for (const w of [...s.writes.values()]) {
    if (w.peersPending.delete(p.id)) maybeCompleteWrite(s, w);
  }
  for (const f of [...s.flushes.values()]) {
    if (f.barriers.delete(p.id)) maybeCompleteFlush(s, f);
  }
  for (const reqId of p.readsViaPeer.values())
    emit(s, { type: 'complete', reqId, ok: false, errno: 'EIO' });
  p.readsViaPeer.clear();
  if (p.rs !== null) stopResync(s, p);
  p.rsSourceWaiting.length = 0;
  p.readsWaiting.length = 0;
  p.ov = null;
  p.rxQueue.length = 0;
  p.rxNotStarted.clear();
  p.rxClosing.length = 0;
  p.rxFlushing.length = 0;
  p.rxUnflushed.length = 0;
  p.rxFlushDue = false;
  cancelRxFlushTimer(s, p);
  p.rxOpen = { inflight: 0, count: 0 };
  setPeerRole(s, p, 'Unknown');
  if (s.pendingPromote?.waiting.has(p.id) === true) onPromoteReply(s, p, p.promoteId, true);
  resizePeerLost(s, p);
  // A Primary that loses a peer starts a new generation, so the peer's copy stays identifiable.
  if (
    s.role === 'Primary' &&
    hasDisk(s) &&
    s.disk === 'UpToDate' &&
    wasInSync &&
    (s.bitmapUuids.get(p.id) ?? 0n) === 0n
  ) {
    newCurrentUuid(s);
  }
  if (hasDisk(s)) emit(s, { type: 'bitmapFlush' });
  if (p.wantConnect && byNetwork) emit(s, { type: 'connect', peer: p.id });
  pumpQueue(s);
}

function stopResync(s: EngineState, p: Peer): void {
  const rs = p.rs;
  if (rs === null) return;
  s.timers.delete(rs.timerId);
  emit(s, { type: 'cancelTimer', timerId: rs.timerId });
  p.rs = null;
}

// --- packets --------------------------------------------------------------------------------

function onPacket(s: EngineState, peerId: number, pk: Packet): void {
  const p = s.peers.get(peerId);
  if (p === undefined || p.conn !== 'Connected') return;
  switch (pk.kind) {
    case 'Handshake':
      return onHandshake(s, p, pk);
    case 'Bitmap':
      return onBitmap(s, p, pk.ranges, pk.last);
    case 'SyncUuid':
      // I am the SyncTarget: my data becomes a partial copy of the source's sync generation.
      pushHistory(s, s.current);
      s.current = withRoleBit(s, pk.uuid);
      s.bitmapUuids.set(p.id, 0n);
      persist(s);
      return;
    case 'StartResync':
      if (p.sync !== null || p.rs !== null || !hasDisk(s)) return;
      if (!pk.senderIsSource && s.disk !== 'UpToDate') return goStandAlone(s, p);
      return beginSync(s, p, pk.senderIsSource ? 'target' : 'source', pk.full);
    case 'State':
      // A disk comes back only through attach, which re-handshakes: a State still claiming a
      // disk after the peer said its disk was gone is one the detach's State overtook (it was
      // held behind the metadata barrier whose failure caused the detach), and is stale
      // (simulator seed 61001464: the peer would count a Diskless node as an UpToDate copy).
      // ('Failed' is also our own guess after a NegAck: a pass_on peer keeps its disk and
      // says Inconsistent next, so only a Diskless peer is held to this.)
      if (p.disk === 'Diskless' && pk.disk !== 'Diskless' && pk.disk !== 'Failed') return;
      // A pass_on peer that failed one of our writes (its NegAck marked the blocks and made us
      // guess 'Failed') cannot be UpToDate again before a resync clears them: an UpToDate
      // State now is one it sent before the failure, overtaken by the NegAck on the other
      // stream (simulator seed 2544748736). Its next State says Inconsistent.
      if (
        p.disk === 'Failed' &&
        pk.disk === 'UpToDate' &&
        p.repl === 'Established' &&
        bm(s, p.id).weight > 0
      ) {
        setPeerRole(s, p, pk.role);
        return;
      }
      setPeerRole(s, p, pk.role);
      setPeerDisk(s, p, pk.disk);
      if (
        (pk.disk === 'Diskless' || pk.disk === 'Failed') &&
        (p.repl !== 'Off' || p.sync !== null)
      ) {
        // The peer lost its disk: what it had in flight is out of sync, and so is what follows.
        // During the bitmap exchange too (repl still Off): the resync it was to start has no
        // disk to go to, and writes replicated meanwhile would wait in the transfer log for a
        // BarrierAck a Diskless peer never sends (simulator seed 920002561).
        p.sync = null;
        clearTl(s, p);
        for (const f of [...s.flushes.values()])
          if (f.barriers.delete(p.id)) maybeCompleteFlush(s, f);
        if (p.rs !== null) stopResync(s, p);
        setRepl(s, p, 'Established');
        // DRBD: losing the peer's copy while either side is Primary starts a new generation.
        if (
          (s.role === 'Primary' || pk.role === 'Primary') &&
          s.disk === 'UpToDate' &&
          (s.bitmapUuids.get(p.id) ?? 0n) === 0n
        )
          newCurrentUuid(s);
      }
      return;
    case 'NewCurrentUuid':
      // Diskless: the generation this node exposes is the peer's (DRBD's ed_uuid).
      if (!hasDisk(s)) {
        s.current = withRoleBit(s, pk.uuid);
        return;
      }
      if (pk.clearBitmap) {
        bm(s, p.id).clearAll();
        emit(s, { type: 'bitmapClear', peer: p.id, ranges: [{ start: 0, count: s.blocks }] });
        s.bitmapUuids.set(p.id, 0n);
        s.consistent = true;
        s.wasUpToDate = true;
        setDisk(s, 'UpToDate');
        emit(s, { type: 'bitmapFlush' });
      }
      if (s.disk !== 'UpToDate') return;
      pushHistory(s, s.current);
      s.current = withRoleBit(s, pk.uuid);
      persist(s);
      return;
    case 'PromoteRequest': {
      const mine = s.pendingPromote !== null;
      const refuse =
        (s.role === 'Primary' && !s.cfg.allowTwoPrimaries) || (mine && s.cfg.nodeId < p.id);
      if (!refuse) setPeerRole(s, p, 'Primary');
      send(s, p, 'control', { kind: 'PromoteReply', id: pk.id, granted: !refuse });
      return;
    }
    case 'PromoteReply':
      return onPromoteReply(s, p, pk.id, pk.granted);
    case 'Data':
      if (pastEnd(s, pk.offsetBytes, pk.lengthBytes))
        return peerProtocolError(s, p, `Data past the device's end`, pk);
      p.rxQueue.push(pk);
      return pumpRx(s, p);
    case 'Barrier':
      p.rxQueue.push(pk);
      return pumpRx(s, p);
    case 'BarrierAck':
      return onBarrierAck(s, p, pk.epoch, pk.setSize);
    case 'RecvAck':
    case 'WriteAck':
    case 'NegAck': {
      const w = s.writes.get(pk.seq);
      if (pk.kind === 'NegAck') {
        // The peer's disk failed this write: its copy is no longer complete.
        const t = p.tl.get(pk.seq);
        if (t !== undefined) markOutOfSync(s, p.id, t.range);
        if (p.disk === 'UpToDate') setPeerDisk(s, p, 'Failed');
      }
      if (w === undefined || !w.peersPending.delete(p.id)) return;
      if (pk.kind !== 'NegAck') w.copies++;
      return maybeCompleteWrite(s, w);
    }
    case 'DataRequest':
      if (pastEnd(s, pk.offsetBytes, pk.lengthBytes))
        return peerProtocolError(s, p, `DataRequest past the device's end`, pk);
      return servePeerRead(s, p, pk);
    case 'DataReply': {
      const reqId = p.readsViaPeer.get(pk.id);
      if (reqId === undefined) return;
      p.readsViaPeer.delete(pk.id);
      return emit(
        s,
        pk.ok
          ? { type: 'complete', reqId, ok: true, data: pk.data }
          : { type: 'complete', reqId, ok: false, errno: 'EIO' },
      );
    }
    case 'RsRequest':
      return serveRsRequest(s, p, pk);
    case 'RsReply':
      return onRsReply(s, p, pk.id, pk.start, pk.count, pk.data);
    case 'RsInSync':
      return onRsInSync(s, p, pk.id, pk.start, pk.count);
    case 'RsNegAck': {
      const f = p.rs?.inflight.get(pk.id);
      if (f === undefined) return;
      p.rs?.inflight.delete(pk.id);
      return rsCameIn(s, p, f.count * BLOCK);
    }
    case 'RsWriteAck':
      return markInSync(s, p.id, clampRange(s, { start: pk.start, count: pk.count }));
    case 'ResyncDone':
      return onResyncDone(s, p);
    case 'ResyncDoneAck':
      return onResyncDoneAck(s, p, pk.currentUuid);
    case 'OvStart':
      if (p.repl === 'Established' && hasDisk(s)) setRepl(s, p, 'VerifyT');
      return;
    case 'OvRequest': {
      const ioId = io(s, {
        kind: 'ovPeerRead',
        peer: p.id,
        inc: p.inc,
        id: pk.id,
        start: pk.start,
        count: pk.count,
      });
      const r = clampRange(s, { start: pk.start, count: pk.count });
      return emit(s, {
        type: 'diskRead',
        ioId,
        offsetBytes: r.start * BLOCK,
        lengthBytes: r.count * BLOCK,
      });
    }
    case 'OvReply': {
      const q = p.ov?.inflight.get(pk.id);
      if (q === undefined) return;
      q.remote = pk.digest;
      return ovCompare(s, p, pk.id);
    }
    case 'OvResult':
      if (!pk.inSync) {
        markOutOfSync(s, p.id, clampRange(s, { start: pk.start, count: pk.count }));
        p.verifyMarked = true;
      }
      return;
    case 'ResizeQuery':
      return onResizeQuery(s, p, pk.id);
    case 'ResizeInfo':
      return onResizeInfo(s, p, pk.id, pk.capacityBytes, pk.refusal);
    case 'Resize':
      return onResizePacket(s, p, pk.id, pk.sizeBytes, pk.assumeClean);
    case 'ResizeDone':
      return onResizeDone(s, p, pk.id, pk.ok);
    case 'OvDone':
      if (p.repl === 'VerifyT') setRepl(s, p, 'Established');
      return;
    case 'OutOfSync':
      // After the sender's State: its disk is gone, so no invariant expects these clear.
      markOutOfSync(s, p.id, clampRange(s, { start: pk.start, count: pk.count }));
      if (hasDisk(s)) emit(s, { type: 'bitmapFlush' });
      return;
  }
}

// --- receiver: epochs and barriers ----------------------------------------------------------

/**
 * Received writes go to the disk as they arrive, whatever their epoch: a Barrier closes the
 * epoch (its BarrierAck waits until every write of it completed, and its flush), but the next
 * epoch's writes do not wait for that drain. What the drain ordered is ordered already where
 * it matters: overlapping writes by the write locks and rxNotStarted (the Primary's order); a
 * write a client issued after another completed, under protocol C, after that one was on this
 * disk (its WriteAck); and with a volatile cache (disk-flushes yes) a completed write is not
 * durable before a flush, which covers only drained epochs, so a power loss may keep the later
 * write without the earlier one with or without the drain, as on the Primary's own disk.
 * Without flushes (disk-flushes no: the cache is non-volatile, a completed write is durable)
 * the drain stays, so that a later write never becomes durable before an earlier one it may
 * depend on (protocols A and B complete before the peer wrote). DRBD's receiver stops at every
 * Barrier; with one epoch per completed write, that made each write wait for the one before.
 */
function pumpRx(s: EngineState, p: Peer): void {
  const drains = s.cfg.diskFlushes === false;
  while (p.rxQueue.length > 0) {
    if (drains && p.rxClosing.length > 0) return;
    const pk = p.rxQueue.shift();
    assert(pk !== undefined);
    if (pk.kind === 'Barrier') {
      p.rxClosing.push({ epoch: pk.epoch, flush: pk.flush, ep: p.rxOpen });
      p.rxOpen = { inflight: 0, count: 0 };
      maybeFinishRxEpoch(s, p);
    } else if (pk.kind === 'Data') {
      startPeerWrite(s, p, pk);
    }
  }
}

/**
 * A peer range that leaves the device: both nodes agreed on the size in the handshake (and on
 * every resize before either writes the new area), so only a broken or hostile peer sends
 * one. Served, it would fail our own disk and detach it.
 */
function pastEnd(s: EngineState, offsetBytes: number, lengthBytes: number): boolean {
  return offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > s.cfg.sizeBytes;
}

/** DRBD drops a connection that breaks the protocol and reconnects; so do we, saying why. */
function peerProtocolError(
  s: EngineState,
  p: Peer,
  what: string,
  pk: { readonly offsetBytes: number; readonly lengthBytes: number },
): void {
  emit(s, {
    type: 'note',
    note: {
      kind: 'protocol-error',
      peer: p.id,
      what: `${what}: ${pk.lengthBytes} bytes at ${pk.offsetBytes}, device ${s.cfg.sizeBytes} bytes`,
    },
  });
  if (p.conn !== 'Connected') return;
  p.wantConnect = true;
  emit(s, { type: 'disconnect', peer: p.id });
  onClosed(s, p.id, true);
}

function startPeerWrite(s: EngineState, p: Peer, pk: Extract<Packet, { kind: 'Data' }>): void {
  const epoch = p.rxOpen;
  epoch.count++;
  epoch.inflight++;
  if (!hasDisk(s)) {
    epoch.inflight--;
    send(s, p, 'control', { kind: 'NegAck', seq: pk.seq });
    return;
  }
  if (pk.ack === 'recv') send(s, p, 'control', { kind: 'RecvAck', seq: pk.seq });
  const range = blockRangeOf(pk.offsetBytes, pk.lengthBytes);
  touchForResync(s, range, pk.offsetBytes, pk.lengthBytes);
  // A Diskless Primary writes through us: its own disk, when it comes back, lacks this.
  // No activity log covers this bit on a Secondary: persist it before the data lands.
  if (p.disk === 'Diskless' || p.disk === 'Failed') {
    markOutOfSync(s, p.id, range);
    emit(s, { type: 'bitmapFlush' });
  }
  // Two Primaries: our writes the peer had not seen when it wrote this one are concurrent.
  // The lower node id wins the overlapping blocks: the winner drops them from the peer's
  // write, the loser applies the peer's write after its own, so both end with the winner's.
  p.rxLastSeq = Math.max(p.rxLastSeq, pk.seq);
  while (p.sentLog.length > 0 && (p.sentLog[0]?.seq ?? 0) <= pk.peerSeq) p.sentLog.shift();
  const conflicting = new Set<number>();
  if (s.role === 'Primary' && s.cfg.allowTwoPrimaries) {
    for (const w of p.sentLog) {
      if (w.seq <= pk.peerSeq) continue;
      for (
        let b = Math.max(w.range.start, range.start);
        b < Math.min(w.range.start + w.range.count, range.start + range.count);
        b++
      )
        conflicting.add(b);
    }
    for (const b of conflicting)
      emit(s, { type: 'note', note: { kind: 'conflict', peer: p.id, block: b } });
  }
  const iWin = s.cfg.nodeId < p.id;
  const incAtArrival = p.inc;
  p.rxNotStarted.set(pk.seq, range);
  const go = (): void => {
    if (p.inc !== incAtArrival) return;
    // Overlapping writes land in the order they were sent: after the earlier ones still on
    // the disk (write locks) and after earlier ones not issued yet. Two Primaries: the loser
    // also orders the peer's conflicting write after its own.
    const mustWait =
      blockedByResync(s, range) || blockedByWrites(s, range) || rxEarlierOverlaps(p, pk.seq, range);
    if (mustWait) {
      s.lockWaiters.push(go);
      return;
    }
    p.rxNotStarted.delete(pk.seq);
    const parts =
      conflicting.size > 0 && iWin
        ? byteRunsExcluding(pk.offsetBytes, pk.lengthBytes, conflicting)
        : [{ offsetBytes: pk.offsetBytes, lengthBytes: pk.lengthBytes }];
    const group = { remaining: parts.length, failed: false, epoch };
    if (parts.length === 0) {
      group.remaining = 1;
      peerWriteDone(
        s,
        { kind: 'peerWrite', peer: p.id, inc: p.inc, seq: pk.seq, ack: pk.ack, range, group },
        true,
      );
      return;
    }
    for (const part of parts) {
      const r = blockRangeOf(part.offsetBytes, part.lengthBytes);
      lockWrite(s, r, 1);
      const ioId = io(s, {
        kind: 'peerWrite',
        peer: p.id,
        inc: p.inc,
        seq: pk.seq,
        ack: pk.ack,
        range: r,
        group,
      });
      const off = part.offsetBytes - pk.offsetBytes;
      if (pk.op === 'write')
        emit(s, {
          type: 'diskWrite',
          ioId,
          offsetBytes: part.offsetBytes,
          data: sliceChunks(pk.data, off, part.lengthBytes),
          fua: pk.fua,
        });
      else if (pk.op === 'trim')
        emit(s, {
          type: 'diskTrim',
          ioId,
          offsetBytes: part.offsetBytes,
          lengthBytes: part.lengthBytes,
        });
      else
        emit(s, {
          type: 'diskZeroes',
          ioId,
          offsetBytes: part.offsetBytes,
          lengthBytes: part.lengthBytes,
          fua: pk.fua,
        });
    }
  };
  go();
}

function rxEarlierOverlaps(p: Peer, seq: number, r: BlockRange): boolean {
  for (const [other, range] of p.rxNotStarted) {
    if (other === seq) return false;
    if (overlaps(range, r)) return true;
  }
  return false;
}

/** The byte runs of [offset, offset+length) outside the given blocks. */
function byteRunsExcluding(
  offsetBytes: number,
  lengthBytes: number,
  blocks: ReadonlySet<number>,
): { offsetBytes: number; lengthBytes: number }[] {
  const out: { offsetBytes: number; lengthBytes: number }[] = [];
  const end = offsetBytes + lengthBytes;
  let o = offsetBytes;
  while (o < end) {
    const b = Math.floor(o / BLOCK);
    const next = Math.min(end, (b + 1) * BLOCK);
    if (!blocks.has(b)) {
      const last = out[out.length - 1];
      if (last !== undefined && last.offsetBytes + last.lengthBytes === o)
        last.lengthBytes += next - o;
      else out.push({ offsetBytes: o, lengthBytes: next - o });
    }
    o = next;
  }
  return out;
}

/**
 * Finishes the closed epochs that drained, oldest first (an epoch drained before an older one
 * waits for it). Its flush only gates the BarrierAck (what lets the peer forget the writes):
 * a client flush waits for that ack, and a block device orders nothing else.
 */
function maybeFinishRxEpoch(s: EngineState, p: Peer): void {
  for (let c = p.rxClosing[0]; c !== undefined && c.ep.inflight === 0; c = p.rxClosing[0]) {
    p.rxClosing.shift();
    if (p.rxNoAck) continue;
    const e: RxEpoch = { epoch: c.epoch, setSize: c.ep.count };
    const flushes = hasDisk(s) && flushesEpochs(s);
    // BarrierAcks leave in epoch order: one waiting for a flush holds back later ones.
    if (!flushes && p.rxFlushing.length === 0 && p.rxUnflushed.length === 0)
      send(s, p, 'control', { kind: 'BarrierAck', epoch: e.epoch, setSize: e.setSize });
    else {
      p.rxUnflushed.push(e);
      if (c.flush || unflushedWrites(p) >= RX_UNFLUSHED_WRITES_MAX) p.rxFlushDue = true;
      flushRxEpochs(s, p);
    }
  }
  // Draining (see pumpRx): the next epoch's writes may go now.
  if (p.rxClosing.length === 0) pumpRx(s, p);
}

function flushesEpochs(s: EngineState): boolean {
  return s.cfg.diskFlushes !== false && s.cfg.plantedBug !== 'barrier-ack-before-flush';
}

/**
 * Flushes the drained epochs once a flush is due, one flush for all of them (group commit),
 * never two at once; until then a timer bounds how long they wait (RX_EPOCH_FLUSH_DELAY_MS).
 * Flushing every epoch at once cost a flush per QD1 write, and the next write waited for it
 * in the kernel (the filesystem serializes a write behind a running fdatasync).
 */
function flushRxEpochs(s: EngineState, p: Peer): void {
  if (p.rxFlushing.length > 0 || p.rxUnflushed.length === 0) return;
  if (!hasDisk(s) || !flushesEpochs(s)) {
    // The disk went away or flushes were turned off with epochs waiting: nothing to flush.
    for (const e of p.rxUnflushed.splice(0))
      send(s, p, 'control', { kind: 'BarrierAck', epoch: e.epoch, setSize: e.setSize });
    p.rxFlushDue = false;
    return;
  }
  if (!p.rxFlushDue) {
    if (p.rxFlushTimer === null) {
      const timerId = s.nextTimer++;
      s.timers.set(timerId, { peer: p.id, kind: 'epochFlush' });
      p.rxFlushTimer = timerId;
      emit(s, { type: 'setTimer', timerId, afterMs: RX_EPOCH_FLUSH_DELAY_MS });
    }
    return;
  }
  cancelRxFlushTimer(s, p);
  p.rxFlushDue = false;
  p.rxFlushing.push(...p.rxUnflushed.splice(0));
  // Issued after those epochs drained, so it covers every write of theirs.
  emit(s, { type: 'diskFlush', ioId: io(s, { kind: 'epochFlush', peer: p.id, inc: p.inc }) });
}

function cancelRxFlushTimer(s: EngineState, p: Peer): void {
  if (p.rxFlushTimer === null) return;
  s.timers.delete(p.rxFlushTimer);
  emit(s, { type: 'cancelTimer', timerId: p.rxFlushTimer });
  p.rxFlushTimer = null;
}

function onBarrierAck(s: EngineState, p: Peer, epoch: number, setSize: number): void {
  const expected = p.epochSizes.get(epoch);
  if (expected !== undefined && expected !== setSize) {
    emit(s, {
      type: 'note',
      note: {
        kind: 'handshake',
        peer: p.id,
        rule: 'barrier-set-size-mismatch',
        decision: 'disconnect',
      },
    });
    p.wantConnect = true;
    emit(s, { type: 'disconnect', peer: p.id });
    onClosed(s, p.id, true);
    return;
  }
  for (const e of [...p.epochSizes.keys()]) if (e <= epoch) p.epochSizes.delete(e);
  for (const [seq, t] of p.tl) {
    if (t.epoch > epoch) continue;
    p.tl.delete(seq);
    releaseAl(s, seq);
  }
  pumpQueue(s);
  for (const f of [...s.flushes.values()]) {
    const e = f.barriers.get(p.id);
    if (e !== undefined && e <= epoch) {
      f.barriers.delete(p.id);
      f.copies++;
      maybeCompleteFlush(s, f);
    }
  }
}

// --- resync ---------------------------------------------------------------------------------

function onTimer(s: EngineState, timerId: number, nowMs: number): void {
  const t = s.timers.get(timerId);
  if (t === undefined) return;
  if (t.kind === 'epochFlush') {
    s.timers.delete(timerId);
    const q = s.peers.get(t.peer);
    if (q === undefined || q.rxFlushTimer !== timerId) return;
    q.rxFlushTimer = null;
    q.rxFlushDue = true;
    flushRxEpochs(s, q);
    return;
  }
  const p = s.peers.get(t.peer);
  if (p === undefined || p.rs === null || p.rs.timerId !== timerId) return;
  resyncTick(s, p, nowMs);
}

/** What the resync controller knows at one turn (DRBD's drbd_rs_controller inputs). */
export interface ResyncTurn {
  /** Requested bytes not answered yet. */
  readonly inFlightBytes: number;
  /** Bytes answered since the last turn. */
  readonly cameInBytes: number;
  /** Time since the last turn, in ms. */
  readonly durationMs: number;
  /** Application I/O ran within the last tick: c-min-rate applies. */
  readonly appBusy: boolean;
}

/**
 * Bytes of resync the target may request in this turn: a fixed rate, or DRBD's dynamic
 * controller. Turns are not a fixed 100 ms apart: the next one runs as soon as everything
 * requested has come in, so the controller is clocked by the round trip and the answers of
 * a short turn are scaled to a whole tick, as DRBD does; c-max-rate bounds each turn by its
 * real duration. That is what lets the default fill target (50 KiB) reach c-max-rate.
 */
export function resyncBudget(
  o: EngineConfig['resync'],
  st: { plan: number[]; planTotal: number },
  t: ResyncTurn,
): number {
  // A turn shorter than 1 ms is scaled as 1 ms; a long stall counts as at most 10 ticks.
  const durationMs = Math.min(Math.max(t.durationMs, 1), 10 * RESYNC_TICK_MS);
  const perTurn = (rate: number): number => (rate * durationMs) / 1000;
  let req: number;
  if (o.cPlanAheadTenths <= 0) req = perTurn(o.resyncRateBytesPerSec);
  else {
    const cameIn = (t.cameInBytes * RESYNC_TICK_MS) / durationMs;
    const steps = st.plan.length;
    let want: number;
    if (t.inFlightBytes + cameIn === 0)
      want = ((o.resyncRateBytesPerSec * RESYNC_TICK_MS) / 1000) * steps; // start of resync
    else if (o.cFillTargetBytes > 0) want = o.cFillTargetBytes;
    else want = (cameIn * o.cDelayTargetTenths * 100) / RESYNC_TICK_MS;
    const correction = want - t.inFlightBytes - st.planTotal;
    const cps = correction / steps;
    for (let i = 0; i < steps; i++) st.plan[i] = (st.plan[i] ?? 0) + cps;
    st.planTotal += cps * steps;
    const curr = st.plan.shift() ?? 0;
    st.plan.push(0);
    st.planTotal -= curr;
    req = Math.max(0, cameIn + curr);
    req = Math.min(req, perTurn(o.cMaxRateBytesPerSec));
  }
  if (t.appBusy && o.cMinRateBytesPerSec > 0) req = Math.min(req, perTurn(o.cMinRateBytesPerSec));
  return req;
}

/** One turn of the resync controller; `nowMs` is null for the turn that starts the resync. */
function resyncTick(s: EngineState, p: Peer, nowMs: number | null): void {
  const rs = p.rs;
  if (rs === null) return;
  rs.turnSoon = false;
  // Application I/O within the last tick makes the resync yield to c-min-rate; turns can be
  // a round trip apart, so "since the last turn" alone would almost never see it.
  let appBusy = s.appIoSinceTurn;
  s.appIoSinceTurn = false;
  if (nowMs !== null) {
    if (appBusy) s.lastAppIoMs = nowMs;
    else if (s.lastAppIoMs !== null) appBusy = nowMs - s.lastAppIoMs < RESYNC_TICK_MS;
  }
  const durationMs =
    nowMs === null || rs.lastTurnMs === null ? RESYNC_TICK_MS : nowMs - rs.lastTurnMs;
  const budget = resyncBudget(s.cfg.resync, rs, {
    inFlightBytes: rs.requestedBytes,
    cameInBytes: rs.cameInBytes,
    durationMs,
    appBusy,
  });
  rs.lastTurnMs = nowMs;
  rs.cameInBytes = 0;
  // Credit never exceeds one turn's worth plus a request, so an idle period cannot burst.
  rs.creditBytes = Math.min(rs.creditBytes + budget, budget + RESYNC_REQUEST_BYTES_MAX);
  issueResyncRequests(s, p);
  maybeFinishResync(s, p);
  if (p.rs === null || p.rs.finishing) return;
  // The tick is the fallback; the last answer of this turn's requests brings the next turn
  // forward (rsCameIn), so a turn that asked for nothing cannot spin.
  emit(s, { type: 'setTimer', timerId: rs.timerId, afterMs: RESYNC_TICK_MS });
}

/** Resync answers came in: the controller's input, and an early turn when none is left out. */
function rsCameIn(s: EngineState, p: Peer, bytes: number): void {
  const rs = p.rs;
  if (rs === null) return;
  const wasOut = rs.requestedBytes > 0;
  rs.requestedBytes = Math.max(0, rs.requestedBytes - bytes);
  rs.cameInBytes += bytes;
  if (wasOut && rs.requestedBytes === 0 && !rs.turnSoon && !rs.finishing) {
    rs.turnSoon = true;
    emit(s, { type: 'setTimer', timerId: rs.timerId, afterMs: 0 });
  }
}

function issueResyncRequests(s: EngineState, p: Peer): void {
  const rs = p.rs;
  if (rs === null) return;
  const b = bm(s, p.id);
  const busy = (blk: number): boolean => {
    for (const f of rs.inflight.values())
      if (blk >= f.start && blk < f.start + f.count) return true;
    return false;
  };
  let wrapped = false;
  while (rs.inflight.size < RESYNC_REQUESTS_IN_FLIGHT_MAX && rs.creditBytes >= BLOCK) {
    let start = b.nextSet(rs.cursor);
    while (start >= 0 && busy(start)) start = b.nextSet(start + 1);
    if (start < 0) {
      if (wrapped || rs.cursor === 0) return;
      wrapped = true;
      rs.cursor = 0;
      continue;
    }
    let count = 1;
    const maxCount = Math.min(RS_BLOCKS_MAX, Math.floor(rs.creditBytes / BLOCK));
    while (
      count < maxCount &&
      start + count < s.blocks &&
      b.test(start + count) &&
      !busy(start + count)
    )
      count++;
    rs.cursor = start + count;
    rs.creditBytes -= count * BLOCK;
    rs.requestedBytes += count * BLOCK;
    const id = s.nextId++;
    const f: RsInFlight = {
      start,
      count,
      touched: new Set(),
      partial: new Set(),
      writesPending: 0,
      sent: false,
    };
    rs.inflight.set(id, f);
    if (s.cfg.csums) {
      const ioId = io(s, { kind: 'rsCsumRead', peer: p.id, inc: p.inc, id });
      emit(s, { type: 'diskRead', ioId, offsetBytes: start * BLOCK, lengthBytes: count * BLOCK });
    } else {
      f.sent = true;
      send(s, p, 'data', { kind: 'RsRequest', id, start, count, digest: new Uint8Array(0) });
    }
  }
}

/** A read for a Diskless or syncing peer: it must see the writes that peer sent before it. */
function servePeerRead(
  s: EngineState,
  p: Peer,
  r: { id: number; offsetBytes: number; lengthBytes: number },
): void {
  if (p.conn !== 'Connected') return;
  if (s.disk !== 'UpToDate') {
    send(s, p, 'data', { kind: 'DataReply', id: r.id, ok: false, data: new Uint8Array(0) });
    return;
  }
  const range = blockRangeOf(r.offsetBytes, r.lengthBytes);
  if (blockedByWrites(s, range) || rxQueued(s, range)) {
    p.readsWaiting.push(r);
    return;
  }
  const ioId = io(s, { kind: 'peerRead', peer: p.id, inc: p.inc, id: r.id });
  emit(s, { type: 'diskRead', ioId, offsetBytes: r.offsetBytes, lengthBytes: r.lengthBytes });
}

function serveRsRequest(
  s: EngineState,
  p: Peer,
  r: { id: number; start: number; count: number; digest: Uint8Array },
): void {
  if (p.inc === undefined || p.conn !== 'Connected') return;
  const range = clampRange(s, { start: r.start, count: r.count });
  if (!hasDisk(s) || s.disk !== 'UpToDate' || range.count === 0) {
    send(s, p, 'control', { kind: 'RsNegAck', id: r.id, start: r.start, count: r.count });
    return;
  }
  // An application write in flight here would make the reply older than what the target gets
  // through replication: read after it lands.
  if (blockedByWrites(s, range) || rxQueued(s, range)) {
    p.rsSourceWaiting.push(r);
    return;
  }
  const ioId = io(s, {
    kind: 'rsRead',
    peer: p.id,
    inc: p.inc,
    id: r.id,
    start: range.start,
    count: range.count,
    digest: r.digest,
  });
  emit(s, {
    type: 'diskRead',
    ioId,
    offsetBytes: range.start * BLOCK,
    lengthBytes: range.count * BLOCK,
  });
}

function rsReadDone(s: EngineState, what: Extract<Io, { kind: 'rsRead' }>, data: Uint8Array): void {
  const p = s.peers.get(what.peer);
  if (p === undefined || p.inc !== what.inc) return;
  if (s.cfg.csums && what.digest.length > 0 && equalBytes(s.cfg.digest(data), what.digest)) {
    markInSync(s, p.id, { start: what.start, count: what.count });
    send(s, p, 'data', { kind: 'RsInSync', id: what.id, start: what.start, count: what.count });
    return;
  }
  send(s, p, 'data', { kind: 'RsReply', id: what.id, start: what.start, count: what.count, data });
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function onRsInSync(s: EngineState, p: Peer, id: number, start: number, count: number): void {
  const rs = p.rs;
  const f = rs?.inflight.get(id);
  if (rs === null || f === undefined) return;
  rs.inflight.delete(id);
  rsCameIn(s, p, f.count * BLOCK);
  for (let b = start; b < start + count; b++)
    if (!f.partial.has(b)) markInSync(s, p.id, { start: b, count: 1 });
  issueResyncRequests(s, p);
  maybeFinishResync(s, p);
}

function onRsReply(
  s: EngineState,
  p: Peer,
  id: number,
  start: number,
  count: number,
  data: Uint8Array,
): void {
  const rs = p.rs;
  const f = rs?.inflight.get(id);
  if (
    rs === null ||
    f === undefined ||
    f.start !== start ||
    f.count !== count ||
    data.length !== count * BLOCK
  )
    return;
  rsCameIn(s, p, count * BLOCK);
  // Never overwrite newer application data: skip blocks an application write touched.
  const runs: BlockRange[] = [];
  for (let b = start; b < start + count; b++) {
    // A write in flight here arrived before the request: keep the bit and fetch it again.
    if ((s.writeLocks.get(b) ?? 0) > 0 && s.cfg.plantedBug !== 'resync-overwrites-newer')
      f.partial.add(b);
    if (f.touched.has(b) || f.partial.has(b)) continue;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.start + last.count === b)
      runs[runs.length - 1] = { start: last.start, count: last.count + 1 };
    else runs.push({ start: b, count: 1 });
  }
  f.writesPending = runs.length;
  for (const r of runs) {
    lockRs(s, r, 1);
    const ioId = io(s, { kind: 'rsWrite', peer: p.id, inc: p.inc, id, range: r });
    const off = (r.start - start) * BLOCK;
    emit(s, {
      type: 'diskWrite',
      ioId,
      offsetBytes: r.start * BLOCK,
      data: [data.subarray(off, off + r.count * BLOCK)],
      fua: false,
    });
  }
  if (runs.length === 0) finishRsRequest(s, p, id);
}

function rsWriteDone(s: EngineState, what: Extract<Io, { kind: 'rsWrite' }>): void {
  lockRs(s, what.range, -1);
  const p = s.peers.get(what.peer);
  if (p === undefined || p.inc !== what.inc || p.rs === null) return;
  const f = p.rs.inflight.get(what.id);
  if (f === undefined) return;
  f.writesPending--;
  if (f.writesPending <= 0) finishRsRequest(s, p, what.id);
}

function finishRsRequest(s: EngineState, p: Peer, id: number): void {
  const rs = p.rs;
  const f = rs?.inflight.get(id);
  if (rs === null || f === undefined) return;
  rs.inflight.delete(id);
  // Data is on this disk (or a newer full-block application write is): clear those bits.
  const cleared: BlockRange[] = [];
  for (let b = f.start; b < f.start + f.count; b++) {
    if (f.partial.has(b)) continue;
    markInSync(s, p.id, { start: b, count: 1 });
    cleared.push({ start: b, count: 1 });
  }
  for (const r of mergeRanges(cleared))
    send(s, p, 'control', { kind: 'RsWriteAck', id, start: r.start, count: r.count });
  issueResyncRequests(s, p);
  maybeFinishResync(s, p);
}

function maybeFinishResync(s: EngineState, p: Peer): void {
  const rs = p.rs;
  if (rs === null || rs.finishing || rs.inflight.size > 0 || bm(s, p.id).weight > 0) return;
  rs.finishing = true;
  send(s, p, 'data', { kind: 'ResyncDone' }); // after our Bitmap on the same stream
}

function onResyncDone(s: EngineState, p: Peer): void {
  if (p.repl !== 'SyncSource') return;
  const left = bm(s, p.id).weight;
  if (left > 0) markInSync(s, p.id, { start: 0, count: s.blocks }); // the target holds it all now
  pushHistory(s, s.bitmapUuids.get(p.id) ?? 0n);
  s.bitmapUuids.set(p.id, 0n);
  s.crashedPrimary = s.role === 'Primary';
  emit(s, { type: 'bitmapFlush' });
  persist(s);
  setPeerDisk(s, p, 'UpToDate');
  setRepl(s, p, 'Established');
  send(s, p, 'control', { kind: 'ResyncDoneAck', currentUuid: s.current });
  emit(s, { type: 'note', note: { kind: 'resync-finished', peer: p.id, role: 'source' } });
}

function onResyncDoneAck(s: EngineState, p: Peer, uuid: bigint): void {
  if (p.rs === null || !p.rs.finishing) return;
  stopResync(s, p);
  pushHistory(s, s.current);
  s.current = withRoleBit(s, uuid);
  s.bitmapUuids.set(p.id, 0n);
  s.consistent = true;
  s.wasUpToDate = true;
  s.crashedPrimary = s.role === 'Primary';
  s.localStale.clearAll(); // its blocks were marked: the resync brought them
  const failed = bm(s, p.id);
  if (failed.weight > 0) {
    // Blocks marked after our ResyncDone left (a pass_on write that failed here meanwhile;
    // simulator seed 600005688): this disk holds the generation but not those blocks. As
    // DRBD's resync with failed blocks, it stays Inconsistent (the source stays UpToDate) and
    // the next connect resyncs them; reads of them go to the peer, as after any pass_on mark.
    s.consistent = false;
    for (const r of failed.ranges()) s.localStale.set(r);
    emit(s, { type: 'bitmapFlush' });
    persist(s);
    setRepl(s, p, 'Established');
    emit(s, { type: 'note', note: { kind: 'resync-finished', peer: p.id, role: 'target' } });
    broadcastState(s);
    return;
  }
  setDisk(s, 'UpToDate');
  emit(s, { type: 'bitmapFlush' });
  persist(s);
  setRepl(s, p, 'Established');
  emit(s, { type: 'note', note: { kind: 'resync-finished', peer: p.id, role: 'target' } });
  broadcastState(s);
}

// --- resize (drbdadm resize) ----------------------------------------------------------------
//
// The initiator asks every connected peer for its capacity (ResizeQuery/ResizeInfo), picks the
// smallest (or the requested size), has every peer grow first (Resize/ResizeDone), and grows
// itself last: until then no write can reach the new area anywhere. The new area is out of sync
// (unless assume-clean): the initiator resyncs it to its peers as SyncSource.

function startResize(
  s: EngineState,
  cmdId: number,
  c: Extract<AdminCommand, { cmd: 'resize' }>,
): void {
  if (s.resize !== null) return refuseAdmin(s, cmdId, { code: 'resize-in-progress' });
  if (!hasDisk(s)) return refuseAdmin(s, cmdId, { code: 'no-disk' });
  if (s.disk !== 'UpToDate')
    return refuseAdmin(s, cmdId, { code: 'resize-disk-not-up-to-date', disk: s.disk });
  if (c.refusal !== 'none')
    return refuseAdmin(s, cmdId, {
      code: 'resize-failed',
      failures: [{ who: 'this node', step: 'measure' }],
      targetBytes: c.sizeBytes ?? 0,
    });
  const all = [...s.peers.values()];
  const connected = all.filter((p) => p.conn === 'Connected');
  const apart = all.filter((p) => p.conn !== 'Connected');
  if (connected.length > 0 && apart.length > 0) {
    return refuseAdmin(s, cmdId, {
      code: 'resize-peers-apart',
      peers: apart.map((p) => p.name),
      alone: false,
    });
  }
  // Alone, nobody can tell this node which size its peers will take: it must be given, so the
  // peers can be grown to the very same size before they connect (the handshake needs it).
  if (connected.length === 0 && apart.length > 0 && c.sizeBytes === null) {
    return refuseAdmin(s, cmdId, {
      code: 'resize-peers-apart',
      peers: apart.map((p) => p.name),
      alone: true,
    });
  }
  for (const p of connected) {
    if (!p.settled) return refuseAdmin(s, cmdId, { code: 'handshaking' });
    if (p.repl !== 'Established' || p.sync !== null || p.rs !== null || p.ov !== null)
      return refuseAdmin(s, cmdId, { code: 'resize-peer-busy', peer: p.name });
    if (p.disk !== 'UpToDate')
      return refuseAdmin(s, cmdId, {
        code: 'resize-peer-not-up-to-date',
        peer: p.name,
        disk: p.disk,
      });
    if (p.role === 'Primary')
      return refuseAdmin(s, cmdId, { code: 'resize-peer-primary', peer: p.name });
  }
  const op: ResizeOp = {
    cmdId,
    id: s.nextId++,
    requestedBytes: c.sizeBytes,
    assumeClean: c.assumeClean,
    phase: 'query',
    capacityBytes: c.capacityBytes,
    smallest: 'this node',
    targetBytes: 0,
    peers: connected.map((p) => p.id),
    waiting: new Set(connected.map((p) => p.id)),
    grown: [],
    failed: [],
  };
  s.resize = op;
  if (op.waiting.size === 0) return decideResize(s, op);
  for (const p of connected) send(s, p, 'data', { kind: 'ResizeQuery', id: op.id });
}

function failResize(s: EngineState, op: ResizeOp, refusal: AdminRefusal): void {
  s.resize = null;
  // A peer that grew while we cannot must not stay connected at a size we do not share.
  for (const id of op.grown) {
    const p = s.peers.get(id);
    if (p !== undefined && p.conn === 'Connected') goStandAlone(s, p);
  }
  refuseAdmin(s, op.cmdId, refusal);
}

function decideResize(s: EngineState, op: ResizeOp): void {
  const current = s.cfg.sizeBytes;
  const fit = Math.floor(op.capacityBytes / BLOCK) * BLOCK;
  const req = op.requestedBytes === null ? null : Math.floor(op.requestedBytes / BLOCK) * BLOCK;
  if (req !== null && req > fit) {
    return failResize(s, op, {
      code: 'resize-does-not-fit',
      requestedBytes: req,
      smallest: op.smallest,
      fitBytes: fit,
    });
  }
  const target = req ?? fit;
  if (target < current) {
    return failResize(s, op, {
      code: 'resize-shrink',
      requestedBytes: req,
      currentBytes: current,
      smallest: op.smallest,
      fitBytes: fit,
    });
  }
  if (target === current) {
    s.resize = null;
    const why = op.smallest === 'this node' ? '' : ` (${op.smallest} has no room for more)`;
    return reply(s, op.cmdId, `already ${current} bytes; nothing to grow${why}`);
  }
  op.targetBytes = target;
  if (op.peers.length === 0) return growLocal(s, op);
  op.phase = 'peers';
  for (const id of op.peers) {
    op.waiting.add(id);
    const p = s.peers.get(id);
    if (p !== undefined)
      send(s, p, 'data', {
        kind: 'Resize',
        id: op.id,
        sizeBytes: target,
        assumeClean: op.assumeClean,
      });
  }
}

function growLocal(s: EngineState, op: ResizeOp): void {
  op.phase = 'local';
  const token = s.nextJob++;
  s.jobs.set(token, { kind: 'grow-local' });
  emit(s, { type: 'growDisk', token, sizeBytes: op.targetBytes });
}

function onResizeQuery(s: EngineState, p: Peer, id: number): void {
  if (!hasDisk(s)) {
    send(s, p, 'data', { kind: 'ResizeInfo', id, capacityBytes: 0, refusal: 'failed' });
    return;
  }
  const token = s.nextJob++;
  s.jobs.set(token, { kind: 'probe', peer: p.id, inc: p.inc, id });
  emit(s, { type: 'probeCapacity', token });
}

function onCapacity(
  s: EngineState,
  token: number,
  capacityBytes: number,
  refusal: ResizeRefusal,
): void {
  const job = s.jobs.get(token);
  if (job?.kind !== 'probe') return;
  s.jobs.delete(token);
  const p = s.peers.get(job.peer);
  if (p === undefined || p.inc !== job.inc || p.conn !== 'Connected') return;
  send(s, p, 'data', { kind: 'ResizeInfo', id: job.id, capacityBytes, refusal });
}

function onResizeInfo(
  s: EngineState,
  p: Peer,
  id: number,
  capacityBytes: number,
  refusal: ResizeRefusal,
): void {
  const op = s.resize;
  if (op?.phase !== 'query' || op.id !== id || !op.waiting.delete(p.id)) return;
  if (refusal !== 'none') op.failed.push({ who: `peer ${p.name}`, step: 'measure' });
  else if (capacityBytes < op.capacityBytes) {
    op.capacityBytes = capacityBytes;
    op.smallest = `peer ${p.name}`;
  }
  if (op.waiting.size > 0) return;
  if (op.failed.length > 0)
    return failResize(s, op, {
      code: 'resize-failed',
      failures: op.failed,
      targetBytes: op.targetBytes,
    });
  decideResize(s, op);
}

function onResizePacket(
  s: EngineState,
  p: Peer,
  id: number,
  sizeBytes: number,
  assumeClean: boolean,
): void {
  const refuse = (): void => send(s, p, 'data', { kind: 'ResizeDone', id, ok: false });
  if (!hasDisk(s) || s.resize !== null || sizeBytes % BLOCK !== 0 || sizeBytes < s.cfg.sizeBytes)
    return refuse();
  if (p.sync !== null || p.rs !== null || p.ov !== null) return refuse();
  if (sizeBytes === s.cfg.sizeBytes) {
    send(s, p, 'data', { kind: 'ResizeDone', id, ok: true });
    return;
  }
  const token = s.nextJob++;
  s.jobs.set(token, { kind: 'grow-peer', peer: p.id, inc: p.inc, id, sizeBytes, assumeClean });
  emit(s, { type: 'growDisk', token, sizeBytes });
}

function onResizeDone(s: EngineState, p: Peer, id: number, ok: boolean): void {
  const op = s.resize;
  if (op?.phase !== 'peers' || op.id !== id || !op.waiting.delete(p.id)) return;
  if (ok) op.grown.push(p.id);
  else op.failed.push({ who: `peer ${p.name}`, step: 'grow' });
  if (op.waiting.size > 0) return;
  if (op.failed.length > 0)
    return failResize(s, op, {
      code: 'resize-failed',
      failures: op.failed,
      targetBytes: op.targetBytes,
    });
  growLocal(s, op);
}

/** A peer taking part in our resize went away before it answered. */
function resizePeerLost(s: EngineState, p: Peer): void {
  const op = s.resize;
  if (op === null || !op.waiting.has(p.id)) return;
  failResize(s, op, {
    code: 'resize-peer-lost',
    peer: p.name,
    grew: op.phase !== 'query',
    targetBytes: op.targetBytes,
  });
}

/** The device grows to `sizeBytes`; returns the new blocks. */
function applyGrowth(s: EngineState, sizeBytes: number): BlockRange {
  const from = s.cfg.sizeBytes;
  const oldBlocks = s.blocks;
  s.cfg = { ...s.cfg, sizeBytes };
  s.blocks = sizeBytes / BLOCK;
  for (const [id, b] of s.bitmaps) s.bitmaps.set(id, b.grown(s.blocks));
  s.localStale = s.localStale.grown(s.blocks);
  emit(s, { type: 'note', note: { kind: 'resized', fromBytes: from, sizeBytes } });
  return { start: oldBlocks, count: s.blocks - oldBlocks };
}

function onDiskGrown(s: EngineState, token: number, ok: boolean): void {
  const job = s.jobs.get(token);
  if (job === undefined || job.kind === 'probe') return;
  s.jobs.delete(token);
  if (job.kind === 'grow-peer') {
    const p = s.peers.get(job.peer);
    const same = p !== undefined && p.inc === job.inc && p.conn === 'Connected';
    if (ok && hasDisk(s) && job.sizeBytes > s.cfg.sizeBytes) {
      const fresh = applyGrowth(s, job.sizeBytes);
      if (!job.assumeClean && p !== undefined) {
        markOutOfSync(s, p.id, fresh);
        // Known out of sync until the initiator starts the resync of the new area.
        p.verifyMarked = true;
        emit(s, { type: 'bitmapFlush' });
      }
    }
    if (same) send(s, p, 'data', { kind: 'ResizeDone', id: job.id, ok });
    return;
  }
  const op = s.resize;
  if (op === null) return;
  if (!ok || !hasDisk(s)) {
    return failResize(s, op, {
      code: 'resize-local-grow-failed',
      targetBytes: op.targetBytes,
      peersDisconnected: op.grown.length > 0,
    });
  }
  s.resize = null;
  const from = s.cfg.sizeBytes;
  const fresh = applyGrowth(s, op.targetBytes);
  if (!op.assumeClean) {
    for (const p of s.peers.values()) markOutOfSync(s, p.id, fresh);
    emit(s, { type: 'bitmapFlush' });
    for (const id of op.peers) {
      const p = s.peers.get(id);
      if (p === undefined || !isConnectedSettled(p) || p.repl !== 'Established') continue;
      send(s, p, 'data', { kind: 'StartResync', senderIsSource: true, full: false });
      beginSync(s, p, 'source', false);
    }
  }
  reply(
    s,
    op.cmdId,
    `grown from ${from} to ${op.targetBytes} bytes` +
      (op.assumeClean ? ' (assume-clean: no resync)' : ''),
  );
}

// --- reconfigure (adjust) ---------------------------------------------------------------------

function reconfigure(s: EngineState, cmdId: number, o: ReconfigurableOptions): void {
  const connected = [...s.peers.values()].filter((p) => p.conn === 'Connected');
  if (o.protocol !== undefined && o.protocol !== s.cfg.protocol && connected.length > 0)
    return refuseAdmin(s, cmdId, { code: 'protocol-change-connected' });
  if (o.maxEpochSize !== undefined && (!Number.isSafeInteger(o.maxEpochSize) || o.maxEpochSize < 1))
    return refuseAdmin(s, cmdId, {
      code: 'option-out-of-range',
      option: 'max-epoch-size',
      value: o.maxEpochSize,
    });
  // Two Primaries connected stay legal only while allowed (an invariant; DRBD refuses this too).
  if (
    o.allowTwoPrimaries === false &&
    s.role === 'Primary' &&
    connected.some((p) => p.role === 'Primary')
  )
    return refuseAdmin(s, cmdId, { code: 'peer-primary', voted: false });
  const defined = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  s.cfg = { ...s.cfg, ...defined };
  reply(s, cmdId, 'reconfigured');
}

// --- online verify --------------------------------------------------------------------------

function startVerify(s: EngineState, cmdId: number, peerId: number): void {
  const p = s.peers.get(peerId);
  if (p === undefined) return refuseAdmin(s, cmdId, { code: 'unknown-peer', peer: peerId });
  if (!s.cfg.verify) return refuseAdmin(s, cmdId, { code: 'no-verify-alg' });
  if (
    !isConnectedSettled(p) ||
    p.repl !== 'Established' ||
    s.disk !== 'UpToDate' ||
    p.disk !== 'UpToDate'
  )
    return refuseAdmin(s, cmdId, { code: 'verify-not-established' });
  setRepl(s, p, 'VerifyS');
  send(s, p, 'data', { kind: 'OvStart' });
  p.ov = { cursor: 0, inflight: new Map(), found: 0, nextId: 1 };
  issueVerify(s, p);
  reply(s, cmdId, 'verify started');
}

function issueVerify(s: EngineState, p: Peer): void {
  const ov = p.ov;
  if (ov === null) return;
  while (ov.inflight.size < VERIFY_REQUESTS_IN_FLIGHT_MAX && ov.cursor < s.blocks) {
    const start = ov.cursor;
    const count = Math.min(RS_BLOCKS_MAX, s.blocks - start);
    ov.cursor += count;
    const id = ov.nextId++;
    ov.inflight.set(id, { start, count, local: null, remote: null });
    const ioId = io(s, { kind: 'ovLocalRead', peer: p.id, inc: p.inc, id });
    emit(s, { type: 'diskRead', ioId, offsetBytes: start * BLOCK, lengthBytes: count * BLOCK });
    send(s, p, 'data', { kind: 'OvRequest', id, start, count });
  }
  if (ov.inflight.size === 0 && ov.cursor >= s.blocks) {
    p.ov = null;
    send(s, p, 'data', { kind: 'OvDone' });
    setRepl(s, p, 'Established');
    emit(s, {
      type: 'note',
      note: { kind: 'verify-finished', peer: p.id, outOfSyncBlocks: ov.found },
    });
  }
}

function blockDigests(s: EngineState, data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let o = 0; o < data.length; o += BLOCK)
    parts.push(s.cfg.digest(data.subarray(o, o + BLOCK)));
  const n = parts.reduce((a, b) => a + b.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const x of parts) {
    out.set(x, o);
    o += x.length;
  }
  return out;
}

function ovReadDone(
  s: EngineState,
  what: Extract<Io, { kind: 'ovLocalRead' | 'ovPeerRead' }>,
  data: Uint8Array,
): void {
  const p = s.peers.get(what.peer);
  if (p === undefined || p.inc !== what.inc) return;
  if (what.kind === 'ovPeerRead') {
    send(s, p, 'data', {
      kind: 'OvReply',
      id: what.id,
      start: what.start,
      count: what.count,
      digest: blockDigests(s, data),
    });
    return;
  }
  const q = p.ov?.inflight.get(what.id);
  if (q === undefined) return;
  q.local = blockDigests(s, data);
  ovCompare(s, p, what.id);
}

function ovCompare(s: EngineState, p: Peer, id: number): void {
  const ov = p.ov;
  const q = ov?.inflight.get(id);
  if (ov === null || q === undefined || q.local === null || q.remote === null) return;
  ov.inflight.delete(id);
  // A failed read gives an empty digest (pass_on): every block of it then differs.
  const dl = q.count > 0 ? Math.max(q.local.length, q.remote.length) / q.count : 0;
  for (let i = 0; i < q.count; i++) {
    const a = q.local.subarray(i * dl, (i + 1) * dl);
    const b = q.remote.subarray(i * dl, (i + 1) * dl);
    if (!equalBytes(a, b)) {
      ov.found++;
      p.verifyMarked = true;
      markOutOfSync(s, p.id, { start: q.start + i, count: 1 });
      send(s, p, 'data', { kind: 'OvResult', start: q.start + i, count: 1, inSync: false });
    }
  }
  issueVerify(s, p);
}

// --- invariants -----------------------------------------------------------------------------

/**
 * The first invariant `s` breaks, or null. Cheap enough for every step of a production daemon
 * (the driver runs it: a broken one fails the resource safe): a few comparisons per peer, of
 * counters the engine keeps (a bitmap's weight, a map's size), and no allocation.
 */
export function brokenInvariant(s: EngineState): BrokenInvariant | null {
  let syncTarget = false;
  for (const p of s.peers.values()) {
    if (p.repl === 'SyncTarget' || p.sync?.role === 'target') syncTarget = true;
    const b = bm(s, p.id);
    if (b.weight < 0 || b.weight > s.blocks)
      return { invariant: 'bitmap-weight', detail: 'bitmap weight in range' };
    if (p.repl === 'SyncTarget' && s.disk !== 'Inconsistent')
      return { invariant: 'sync-target-consistent', detail: 'a SyncTarget is Inconsistent' };
    if (p.repl === 'SyncTarget' && p.rs === null)
      return { invariant: 'sync-target-idle', detail: 'a SyncTarget has resync state' };
    if (p.conn !== 'Connected' && (p.repl !== 'Off' || p.rs !== null || p.tl.size !== 0))
      return {
        invariant: 'replication-unconnected',
        detail: 'no replication state without a connection',
      };
    if (
      p.repl === 'Established' &&
      s.disk === 'UpToDate' &&
      p.disk === 'UpToDate' &&
      !p.verifyMarked &&
      b.weight !== 0
    )
      return {
        invariant: 'up-to-date-out-of-sync',
        detail: `UpToDate and Established with ${b.weight} out-of-sync blocks (peer ${p.id})`,
      };
    if (
      p.conn === 'Connected' &&
      p.settled &&
      p.repl === 'Established' &&
      p.role === 'Primary' &&
      s.role === 'Primary' &&
      !s.cfg.allowTwoPrimaries
    )
      return { invariant: 'two-primaries', detail: 'two Primaries without allow-two-primaries' };
  }
  if (s.role === 'Primary' && s.disk !== 'UpToDate' && s.disk !== 'Diskless') {
    const catchingUp =
      (s.disk === 'Inconsistent' && syncTarget) ||
      ((s.disk === 'Outdated' || s.disk === 'Inconsistent') && s.attachedAsPrimary) ||
      // pass_on: a failed local write left it stale in places until a resync repairs them.
      (s.disk === 'Inconsistent' && s.localStale.weight > 0);
    if (!catchingUp) return { invariant: 'primary-disk', detail: `Primary with a ${s.disk} disk` };
  }
  if (s.al.size > s.cfg.alExtents)
    return { invariant: 'al-over-extents', detail: 'activity log within al-extents' };
  return null;
}

/** Asserts what must hold after every step (tests and the simulator: some checks scan). */
export function checkInvariants(s: EngineState): void {
  const broken = brokenInvariant(s);
  assert(broken === null, broken?.detail ?? '');
  for (const [e, n] of s.alWrites) assert(n > 0 && s.al.has(e), 'writes only into hot extents');
}
