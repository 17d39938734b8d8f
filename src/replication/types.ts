// The replication engine's contract: configuration, the events the daemon feeds it, the actions
// it asks the daemon to perform, and the peer packets. Imports nothing at runtime.
// Block numbers count BITMAP_BLOCK_BYTES (4 KiB) blocks; extents count AL_EXTENT_BYTES (4 MiB).
import type { Errno } from '../util/errno.js';

export type Role = 'Primary' | 'Secondary' | 'Unknown';
export type DiskState =
  'Diskless' | 'Attaching' | 'Inconsistent' | 'Outdated' | 'UpToDate' | 'Failed';
export type ConnState = 'StandAlone' | 'Connecting' | 'Connected';
export type ReplState =
  | 'Off'
  | 'Established'
  | 'SyncSource'
  | 'SyncTarget'
  | 'PausedSyncS'
  | 'PausedSyncT'
  | 'VerifyS'
  | 'VerifyT';
export type Protocol = 'A' | 'B' | 'C';
export type Stream = 'data' | 'control';

export type AfterSb0Pri =
  | 'disconnect'
  | 'discard-younger-primary'
  | 'discard-older-primary'
  | 'discard-zero-changes'
  | 'discard-least-changes'
  | `discard-node-${string}`;
export type AfterSb1Pri = 'disconnect' | 'consensus' | 'violently-as0p' | 'discard-secondary';
export type AfterSb2Pri = 'disconnect' | 'violently-as0p';
/**
 * DRBD's resource-level fencing: dont-care never fences; resource-only runs the fence-peer
 * handler when a Primary loses a peer with good data, or before promoting while a peer is
 * unknown; resource-and-stonith also freezes I/O (nothing completes) until the handler answers.
 */
export type FencingPolicy = 'dont-care' | 'resource-only' | 'resource-and-stonith';

/** Deliberately wrong variants the simulator must catch (test-only; never set in production). */
export type PlantedBug =
  | 'no-bit-while-disconnected'
  | 'resync-overwrites-newer'
  | 'early-ack'
  | 'barrier-ack-before-flush'
  | 'overlap-unordered'
  | 'pass-on-unmarked';

export interface ResyncRateOptions {
  /** Fixed resync rate used when cPlanAheadTenths is 0. @default 250 KiB/s (DRBD) */
  readonly resyncRateBytesPerSec: number;
  /** Controller planning horizon in 0.1 s steps; 0 = fixed rate. @default 20 */
  readonly cPlanAheadTenths: number;
  /** Resync bytes the controller keeps in flight. @default 50 KiB */
  readonly cFillTargetBytes: number;
  /** With no fill target: keep this much time's worth of resync in flight. @default 10 (1 s) */
  readonly cDelayTargetTenths: number;
  /** Upper bound for the controller. @default 100 MiB/s */
  readonly cMaxRateBytesPerSec: number;
  /** Resync is throttled to this rate only while application I/O is busy. @default 250 KiB/s */
  readonly cMinRateBytesPerSec: number;
}

export interface PeerConfig {
  readonly nodeId: number;
  readonly name: string;
}

export interface EngineConfig {
  readonly nodeId: number;
  readonly nodeName: string;
  /** Usable data size in bytes, a multiple of BITMAP_BLOCK_BYTES. */
  readonly sizeBytes: number;
  readonly peers: readonly PeerConfig[];
  /** @default 'C' */
  readonly protocol: Protocol;
  /** @default false */
  readonly allowTwoPrimaries: boolean;
  readonly afterSb0Pri: AfterSb0Pri;
  readonly afterSb1Pri: AfterSb1Pri;
  readonly afterSb2Pri: AfterSb2Pri;
  /** Writes per epoch before a barrier is forced. @default 2048 */
  readonly maxEpochSize: number;
  /** Activity-log extents kept hot. @default 1237 */
  readonly alExtents: number;
  /** Bytes one AL extent covers. @default AL_EXTENT_BYTES (4 MiB, DRBD's fixed size; the simulator shrinks it) */
  readonly alExtentBytes?: number;
  /** @default 'detach' */
  readonly onIoError: 'detach' | 'pass_on';
  /**
   * DRBD's disk-flushes: a Secondary flushes its disk after each drained epoch before it sends
   * the BarrierAck. `false` is for non-volatile write caches: the BarrierAck follows the drain.
   * @default true
   */
  readonly diskFlushes?: boolean;
  readonly resync: ResyncRateOptions;
  /** csums-alg is configured: checksum-based resync skips equal blocks. */
  readonly csums: boolean;
  /** verify-alg is configured: online verify may run. */
  readonly verify: boolean;
  /** The digest used by csums-alg and verify-alg (injected: the engine is pure). */
  readonly digest: (data: Uint8Array) => Uint8Array;
  /** Seed for generation UUIDs (the daemon passes secure random bits at each start). */
  readonly uuidSeed: number;
  /** Test-only planted bug (see PlantedBug). */
  readonly plantedBug?: PlantedBug;
  /** @default 'dont-care' */
  readonly fencing?: FencingPolicy;
}

export interface MetaFlags {
  /** The data is consistent (not mid-resync target). */
  readonly consistent: boolean;
  /** The disk was UpToDate when last written. */
  readonly wasUpToDate: boolean;
  /** The node was Primary when the metadata was last written: a crash leaves this set. */
  readonly crashedPrimary: boolean;
}

/** What the superblock persists (v09 fields the engine owns). UUIDs are 64-bit. */
export interface Metadata {
  readonly currentUuid: bigint;
  /** Per peer node id: the bitmap UUID of that peer's slot (0n = none). */
  readonly bitmapUuids: Readonly<Record<number, bigint>>;
  /** Newest first, at most UUID_HISTORY_MAX. */
  readonly historyUuids: readonly bigint[];
  readonly flags: MetaFlags;
}

/** A run of bitmap blocks. */
export interface BlockRange {
  readonly start: number;
  readonly count: number;
}

/** What the daemon loads from disk at start or attach. */
export interface BootState {
  readonly meta: Metadata;
  /** Per peer node id: set bits of that slot as ranges. */
  readonly bitmaps: Readonly<Record<number, readonly BlockRange[]>>;
  /** Extents listed in the on-disk activity log. */
  readonly alExtents: readonly number[];
}

// --- events ---------------------------------------------------------------------------------

export type ClientRequest =
  | {
      readonly op: 'read';
      readonly id: number;
      readonly offsetBytes: number;
      readonly lengthBytes: number;
      /**
       * The client's buffer for the data (exactly lengthBytes): a local read goes into it, so
       * the data comes back in it. Opaque to the engine, which only passes it on.
       */
      readonly into?: Uint8Array;
    }
  | {
      readonly op: 'write';
      readonly id: number;
      readonly offsetBytes: number;
      /** The payload as the slices the client connection received (never concatenated). */
      readonly data: readonly Uint8Array[];
      readonly fua: boolean;
    }
  | {
      readonly op: 'trim' | 'zeroes';
      readonly id: number;
      readonly offsetBytes: number;
      readonly lengthBytes: number;
      readonly fua: boolean;
    }
  | { readonly op: 'flush'; readonly id: number };

export type AdminCommand =
  | { readonly cmd: 'primary'; readonly force: boolean }
  | { readonly cmd: 'secondary' }
  | { readonly cmd: 'connect'; readonly peer: number; readonly discardMyData: boolean }
  | { readonly cmd: 'disconnect'; readonly peer: number }
  | { readonly cmd: 'new-current-uuid'; readonly clearBitmap: boolean }
  | { readonly cmd: 'invalidate'; readonly peer: number }
  | { readonly cmd: 'invalidate-remote'; readonly peer: number }
  | { readonly cmd: 'verify'; readonly peer: number }
  /**
   * `failed`: the disk failed (a metadata write did; the driver's on-io-error), so it goes
   * whatever the role, as DRBD detaches on a metadata I/O error even under pass_on. Without it
   * (the operator's `detach`) a Primary keeps its only good disk.
   */
  | { readonly cmd: 'detach'; readonly failed?: boolean }
  | { readonly cmd: 'attach'; readonly boot: BootState }
  /**
   * Grow the device (drbdadm resize): to `sizeBytes`, or to the smallest capacity of this node
   * and its connected peers when null. `capacityBytes` is what the local backing holds now (the
   * daemon measures it); `refusal` says why the local backing cannot grow at all.
   */
  | {
      readonly cmd: 'resize';
      readonly sizeBytes: number | null;
      readonly capacityBytes: number;
      readonly refusal: ResizeRefusal;
      readonly assumeClean: boolean;
    }
  /** Apply changed options live (adjust): protocol, after-sb policies, resync controller. */
  | { readonly cmd: 'reconfigure'; readonly options: ReconfigurableOptions };

/** Why a backing device cannot grow: none, its metadata is internal, or it could not be measured. */
export type ResizeRefusal = 'none' | 'failed';

/** A node or peer that took part in a resize and failed a step of it. */
export interface ResizeFailure {
  /** 'this node' or 'peer NAME'. */
  readonly who: string;
  /** measure: could not measure its backing device; grow: could not grow it. */
  readonly step: 'measure' | 'grow';
}

/**
 * Why the engine refused an admin command: a stable code plus the details an explanation needs
 * (DRBD's state changes return SS_* codes the same way; the nearest is named where one exists).
 * The daemon's explanation is an exhaustive switch over `code`; `refusalMessage` gives the
 * engine's own one-line text.
 */
export type AdminRefusal =
  /** SS_IN_TRANSIENT_STATE: a peer handshake is settling roles, UUIDs and disks. */
  | { readonly code: 'handshaking' }
  | { readonly code: 'unknown-peer'; readonly peer: number }
  /** SS_NO_LOCAL_DISK: the command needs a disk to act on. */
  | { readonly code: 'no-disk' }
  /** attach with a disk already attached. */
  | { readonly code: 'disk-attached' }
  /** SS_NEED_CONNECTION: invalidate needs an established connection to the peer. */
  | { readonly code: 'not-established' }
  /** The side that would be the sync source is not UpToDate. */
  | { readonly code: 'sync-source-not-up-to-date' }
  /** invalidate on a Primary (its data is what the clients see). */
  | { readonly code: 'primary-invalidate' }
  /** A Primary detaching or attaching would be left without good data. */
  | { readonly code: 'primary-needs-up-to-date-peer'; readonly action: 'detach' | 'attach' }
  | { readonly code: 'promotion-in-progress' }
  /** A promotion waits for the fence-peer handler (fencing on, a peer's disk unknown). */
  | { readonly code: 'fence-pending' }
  /** The fence-peer handler did not fence the peer, which may hold newer data. */
  | { readonly code: 'fence-failed'; readonly result: string }
  /** SS_TWO_PRIMARIES: a connected peer is Primary (`voted`: it answered our promote request). */
  | { readonly code: 'peer-primary'; readonly voted: boolean }
  /** SS_NO_UP_TO_DATE_DISK, diskless: no local disk and no UpToDate peer to serve from. */
  | { readonly code: 'no-up-to-date-data' }
  /** SS_NO_UP_TO_DATE_DISK: the local disk is not UpToDate (`forceable`: --force would do). */
  | { readonly code: 'disk-not-up-to-date'; readonly disk: DiskState; readonly forceable: boolean }
  /** SS_RESYNC_RUNNING: `intoThisNode` for a promotion of a SyncTarget. */
  | { readonly code: 'resync-running'; readonly intoThisNode: boolean }
  /** SS_DEVICE_IN_USE: demotion with client I/O in flight. */
  | { readonly code: 'io-in-flight' }
  | { readonly code: 'resize-in-progress' }
  /** Resize needs UpToDate data on this node. */
  | { readonly code: 'resize-disk-not-up-to-date'; readonly disk: DiskState }
  /** Some peers connected, others not; or none connected and no --size given. */
  | {
      readonly code: 'resize-peers-apart';
      readonly peers: readonly string[];
      readonly alone: boolean;
    }
  | { readonly code: 'resize-peer-busy'; readonly peer: string }
  | { readonly code: 'resize-peer-not-up-to-date'; readonly peer: string; readonly disk: DiskState }
  | { readonly code: 'resize-peer-primary'; readonly peer: string }
  | {
      readonly code: 'resize-does-not-fit';
      readonly requestedBytes: number;
      readonly smallest: string;
      readonly fitBytes: number;
    }
  | {
      readonly code: 'resize-shrink';
      readonly requestedBytes: number | null;
      readonly currentBytes: number;
      readonly smallest: string;
      readonly fitBytes: number;
    }
  | {
      readonly code: 'resize-failed';
      readonly failures: readonly ResizeFailure[];
      readonly targetBytes: number;
    }
  | {
      readonly code: 'resize-peer-lost';
      readonly peer: string;
      /** Before any peer was asked to grow (nothing changed), or after. */
      readonly grew: boolean;
      readonly targetBytes: number;
    }
  | {
      readonly code: 'resize-local-grow-failed';
      readonly targetBytes: number;
      readonly peersDisconnected: boolean;
    }
  | { readonly code: 'protocol-change-connected' }
  | { readonly code: 'option-out-of-range'; readonly option: string; readonly value: number }
  | { readonly code: 'no-verify-alg' }
  /** Verify needs an established connection between UpToDate disks. */
  | { readonly code: 'verify-not-established' };

export type AdminRefusalCode = AdminRefusal['code'];

/**
 * The engine's invariants cheap enough to check after every step in production (the driver
 * does, `brokenInvariant` in engine.ts): each names a state the engine must never reach.
 */
export type InvariantCode =
  /** A Primary's disk is neither UpToDate, Diskless nor catching up (resync, pass_on stale). */
  | 'primary-disk'
  /** A bitmap's count of set bits is outside [0, blocks]. */
  | 'bitmap-weight'
  /** A SyncTarget whose disk is not Inconsistent. */
  | 'sync-target-consistent'
  /** A SyncTarget without resync state. */
  | 'sync-target-idle'
  /** Replication state, resync state or a transfer log on a peer that is not connected. */
  | 'replication-unconnected'
  /** An UpToDate disk, Established with an UpToDate peer, marks blocks out of sync with it. */
  | 'up-to-date-out-of-sync'
  /** Two Primaries connected without allow-two-primaries. */
  | 'two-primaries'
  /** The activity log holds more extents than al-extents. */
  | 'al-over-extents';

/** A broken invariant: which, and the numbers that broke it. */
export interface BrokenInvariant {
  readonly invariant: InvariantCode;
  readonly detail: string;
}

/** The part of EngineConfig that `adjust` may change on a running engine. */
export type ReconfigurableOptions = Partial<
  Pick<
    EngineConfig,
    | 'protocol'
    | 'allowTwoPrimaries'
    | 'afterSb0Pri'
    | 'afterSb1Pri'
    | 'afterSb2Pri'
    | 'maxEpochSize'
    | 'resync'
    | 'csums'
    | 'verify'
    | 'digest'
  >
>;

export type EngineEvent =
  | { readonly type: 'request'; readonly req: ClientRequest }
  | { readonly type: 'packet'; readonly peer: number; readonly packet: Packet }
  | {
      readonly type: 'diskDone';
      readonly ioId: number;
      readonly ok: true;
      readonly data?: Uint8Array;
    }
  | { readonly type: 'diskDone'; readonly ioId: number; readonly ok: false; readonly errno: Errno }
  | { readonly type: 'timer'; readonly timerId: number; readonly nowMs: number }
  | { readonly type: 'admin'; readonly cmdId: number; readonly command: AdminCommand }
  | { readonly type: 'connEstablished'; readonly peer: number }
  | { readonly type: 'connClosed'; readonly peer: number }
  /** Answer to a probeCapacity action: how many data bytes the local backing could hold now. */
  | {
      readonly type: 'capacity';
      readonly token: number;
      readonly capacityBytes: number;
      readonly refusal: ResizeRefusal;
    }
  /** Answer to a growDisk action. */
  | { readonly type: 'diskGrown'; readonly token: number; readonly ok: boolean }
  /**
   * Answer to a fencePeer action: the fence-peer handler's exit code with DRBD's meaning (3
   * peer Inconsistent, 4 peer Outdated, 5 peer unreachable, 6 peer is Primary, 7 peer
   * STONITHed; anything else a failure), or null when it could not run or died by a signal.
   */
  | {
      readonly type: 'fencePeerDone';
      readonly peer: number;
      readonly token: number;
      readonly exitCode: number | null;
    };

// --- actions --------------------------------------------------------------------------------

/**
 * Ordering contract: the daemon performs actions in order, except that it may issue a step's
 * local data I/O (diskWrite/Trim/Zeroes/Flush) after the step's other actions (never before).
 * persistMeta, alCommit and bitmapFlush are metadata barriers: each first flushes the data disk
 * (covering every disk write that already completed; an alCommit that only adds extents needs
 * no flush: nothing it forgets), then writes its metadata durably, and the daemon issues no
 * later disk write until it is durable. Nor does it put a later `send` on the DATA stream on
 * the wire before then: a peer must not write a block the local activity log does not cover
 * yet (a crash in between would leave the two disks different with nothing to resync it).
 * A barrier that fails fails the disk: the daemon answers the failure (on-io-error, a detach)
 * before anything the barrier held back runs or goes out; the data I/O it held fails with EIO,
 * and the DATA sends it held go out after the `overtake` sends of the step that handled the
 * failure. A `send` with `overtake` (DATA stream only) waits for no barrier and goes out ahead
 * of every DATA send still held: the `State` saying this node lost its disk, which the peer
 * must see before any write held behind the failed barrier (whose activity-log transaction may
 * never have happened), so that it marks such a write before it lands.
 */
export type Action =
  | {
      readonly type: 'diskRead';
      readonly ioId: number;
      readonly offsetBytes: number;
      readonly lengthBytes: number;
      /** Read into this buffer (a client read's `into`). */
      readonly into?: Uint8Array;
    }
  | {
      readonly type: 'diskWrite';
      readonly ioId: number;
      readonly offsetBytes: number;
      /** Written as their concatenation; slices of received buffers, not to be modified. */
      readonly data: readonly Uint8Array[];
      readonly fua: boolean;
      /** The client request this write carries out (none for peer and resync writes). */
      readonly reqId?: number;
    }
  | {
      readonly type: 'diskTrim';
      readonly ioId: number;
      readonly offsetBytes: number;
      readonly lengthBytes: number;
    }
  | {
      readonly type: 'diskZeroes';
      readonly ioId: number;
      readonly offsetBytes: number;
      readonly lengthBytes: number;
      readonly fua: boolean;
    }
  | { readonly type: 'diskFlush'; readonly ioId: number }
  | { readonly type: 'persistMeta'; readonly meta: Metadata }
  /** Activity-log transaction: these extents become hot / cold (before writes into `add`). */
  | {
      readonly type: 'alCommit';
      readonly add: readonly number[];
      readonly remove: readonly number[];
    }
  /** In-memory bitmap change of one peer slot (made durable by the next bitmapFlush). */
  | { readonly type: 'bitmapSet'; readonly peer: number; readonly ranges: readonly BlockRange[] }
  | { readonly type: 'bitmapClear'; readonly peer: number; readonly ranges: readonly BlockRange[] }
  | { readonly type: 'bitmapFlush' }
  | {
      readonly type: 'send';
      readonly peer: number;
      readonly stream: Stream;
      readonly packet: Packet;
      /** DATA stream: goes out at once, ahead of DATA sends held by barriers (see above). */
      readonly overtake?: true;
      /** A `Data` that replicates a client write: that request's id (not on the wire). */
      readonly reqId?: number;
    }
  /** Start (or keep) trying to connect to the peer. */
  | { readonly type: 'connect'; readonly peer: number }
  /** Close the connection to the peer and stop trying. */
  | { readonly type: 'disconnect'; readonly peer: number }
  | {
      readonly type: 'complete';
      readonly reqId: number;
      readonly ok: true;
      readonly data?: Uint8Array;
    }
  | {
      readonly type: 'complete';
      readonly reqId: number;
      readonly ok: false;
      readonly errno: Errno;
    }
  | { readonly type: 'setTimer'; readonly timerId: number; readonly afterMs: number }
  | { readonly type: 'cancelTimer'; readonly timerId: number }
  | {
      readonly type: 'adminResult';
      readonly cmdId: number;
      readonly ok: true;
      readonly message: string;
    }
  | {
      readonly type: 'adminResult';
      readonly cmdId: number;
      readonly ok: false;
      readonly refusal: AdminRefusal;
      /** refusalMessage(refusal): for logs and tests. */
      readonly message: string;
    }
  | { readonly type: 'stateChange'; readonly change: StateChange }
  | { readonly type: 'note'; readonly note: EngineNote }
  /** Measure how many data bytes the local backing could hold now; answer with `capacity`. */
  | { readonly type: 'probeCapacity'; readonly token: number }
  /**
   * Make the local storage cover `sizeBytes` (metadata and bitmap grown, the agreed size
   * persisted); answer with `diskGrown`. Until then the engine keeps its old size.
   */
  | { readonly type: 'growDisk'; readonly token: number; readonly sizeBytes: number }
  /** Run the fence-peer handler against `peer`; answer with fencePeerDone and this token. */
  | { readonly type: 'fencePeer'; readonly peer: number; readonly token: number }
  /** A peer fenced earlier is UpToDate again: run the unfence-peer handler (no answer). */
  | { readonly type: 'unfencePeer'; readonly peer: number };

export type StateChange =
  | { readonly what: 'role'; readonly role: Role }
  | { readonly what: 'disk'; readonly disk: DiskState }
  | { readonly what: 'connection'; readonly peer: number; readonly conn: ConnState }
  | { readonly what: 'replication'; readonly peer: number; readonly repl: ReplState }
  | { readonly what: 'peerDisk'; readonly peer: number; readonly disk: DiskState }
  | { readonly what: 'peerRole'; readonly peer: number; readonly role: Role };

/** Notable happenings for the event stream (drbdsetup events2 style). */
export type EngineNote =
  | {
      readonly kind: 'handshake';
      readonly peer: number;
      readonly rule: string;
      readonly decision: string;
    }
  | { readonly kind: 'split-brain'; readonly peer: number; readonly resolved: string }
  /** The peer sent what the protocol rules out (e.g. a range past the device's end). */
  | { readonly kind: 'protocol-error'; readonly peer: number; readonly what: string }
  | {
      readonly kind: 'resync-started';
      readonly peer: number;
      readonly role: 'source' | 'target';
      readonly bits: number;
    }
  | { readonly kind: 'resync-finished'; readonly peer: number; readonly role: 'source' | 'target' }
  | { readonly kind: 'verify-finished'; readonly peer: number; readonly outOfSyncBlocks: number }
  | { readonly kind: 'io-error'; readonly errno: Errno }
  | { readonly kind: 'conflict'; readonly peer: number; readonly block: number }
  | { readonly kind: 'resized'; readonly fromBytes: number; readonly sizeBytes: number }
  | {
      readonly kind: 'fence-peer';
      readonly peer: number;
      readonly exitCode: number | null;
      /** What the engine made of it, e.g. "peer was outdated". */
      readonly result: string;
      readonly fenced: boolean;
    };

// --- packets --------------------------------------------------------------------------------

export interface HandshakePacket {
  readonly kind: 'Handshake';
  readonly nodeId: number;
  readonly protocol: Protocol;
  readonly sizeBytes: number;
  readonly role: Role;
  readonly disk: DiskState;
  readonly currentUuid: bigint;
  /** The sender's bitmap UUID for the receiver's slot. */
  readonly bitmapUuid: bigint;
  readonly historyUuids: readonly bigint[];
  readonly crashedPrimary: boolean;
  readonly discardMyData: boolean;
  /** Bits set in the sender's slot for the receiver (changes since the split). */
  readonly bitmapWeight: number;
  readonly allowTwoPrimaries: boolean;
}

export type Packet =
  | HandshakePacket
  | { readonly kind: 'Bitmap'; readonly ranges: readonly BlockRange[]; readonly last: boolean }
  | { readonly kind: 'SyncUuid'; readonly uuid: bigint }
  | { readonly kind: 'StartResync'; readonly senderIsSource: boolean; readonly full: boolean }
  | { readonly kind: 'State'; readonly role: Role; readonly disk: DiskState }
  | { readonly kind: 'NewCurrentUuid'; readonly uuid: bigint; readonly clearBitmap: boolean }
  | { readonly kind: 'PromoteRequest'; readonly id: number }
  | { readonly kind: 'PromoteReply'; readonly id: number; readonly granted: boolean }
  | {
      readonly kind: 'Data';
      readonly seq: number;
      readonly epoch: number;
      readonly op: 'write' | 'trim' | 'zeroes';
      readonly offsetBytes: number;
      readonly lengthBytes: number;
      /** op 'write': the payload, scatter-gather (empty for trim and zeroes). */
      readonly data: readonly Uint8Array[];
      readonly fua: boolean;
      readonly ack: 'none' | 'recv' | 'write';
      /** Highest Data seq the sender had received from us when it wrote this (two Primaries). */
      readonly peerSeq: number;
    }
  | {
      readonly kind: 'Barrier';
      readonly epoch: number;
      /** Someone waits for this epoch's BarrierAck (a client FLUSH, the AL): flush at once. */
      readonly flush: boolean;
    }
  | { readonly kind: 'BarrierAck'; readonly epoch: number; readonly setSize: number }
  | { readonly kind: 'RecvAck'; readonly seq: number }
  | { readonly kind: 'WriteAck'; readonly seq: number }
  | { readonly kind: 'NegAck'; readonly seq: number }
  | {
      readonly kind: 'DataRequest';
      readonly id: number;
      readonly offsetBytes: number;
      readonly lengthBytes: number;
    }
  | {
      readonly kind: 'DataReply';
      readonly id: number;
      readonly ok: boolean;
      readonly data: Uint8Array;
    }
  | {
      readonly kind: 'RsRequest';
      readonly id: number;
      readonly start: number;
      readonly count: number;
      readonly digest: Uint8Array;
    }
  | {
      readonly kind: 'RsReply';
      readonly id: number;
      readonly start: number;
      readonly count: number;
      readonly data: Uint8Array;
    }
  | {
      readonly kind: 'RsInSync';
      readonly id: number;
      readonly start: number;
      readonly count: number;
    }
  | {
      readonly kind: 'RsNegAck';
      readonly id: number;
      readonly start: number;
      readonly count: number;
    }
  | {
      readonly kind: 'RsWriteAck';
      readonly id: number;
      readonly start: number;
      readonly count: number;
    }
  | { readonly kind: 'ResyncDone' }
  | { readonly kind: 'ResyncDoneAck'; readonly currentUuid: bigint }
  | { readonly kind: 'OvStart' }
  | {
      readonly kind: 'OvRequest';
      readonly id: number;
      readonly start: number;
      readonly count: number;
    }
  | {
      readonly kind: 'OvReply';
      readonly id: number;
      readonly start: number;
      readonly count: number;
      readonly digest: Uint8Array;
    }
  | {
      readonly kind: 'OvResult';
      readonly start: number;
      readonly count: number;
      readonly inSync: boolean;
    }
  | { readonly kind: 'OvDone' }
  /** Resize, phase 1: how large could your backing be? */
  | { readonly kind: 'ResizeQuery'; readonly id: number }
  | {
      readonly kind: 'ResizeInfo';
      readonly id: number;
      readonly capacityBytes: number;
      readonly refusal: ResizeRefusal;
    }
  /** Resize, phase 2: grow to sizeBytes (the sender grows after every peer answered ok). */
  | {
      readonly kind: 'Resize';
      readonly id: number;
      readonly sizeBytes: number;
      readonly assumeClean: boolean;
    }
  | { readonly kind: 'ResizeDone'; readonly id: number; readonly ok: boolean }
  /**
   * DATA stream: these blocks of writes the sender replicated did not (or may not) reach its own
   * disk, which failed (DRBD's P_OUT_OF_SYNC): the receiver marks them for the sender.
   */
  | { readonly kind: 'OutOfSync'; readonly start: number; readonly count: number };

export type PacketKind = Packet['kind'];
