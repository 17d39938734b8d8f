// One resource on this node: the replication engine wired to the world. The engine decides;
// this file only carries out its actions (disk I/O, metadata barriers, peer messages, timers,
// request completions) and feeds back what happened (completions, packets, connection changes).
// Events are processed one at a time, in arrival order, never re-entrantly.
import { secureBytes } from '../platform/random.js';
import type { Clock, Timer } from '../platform/clock.js';
import type { Logger } from '../platform/log.js';
import type { ConnectionManager } from '../cm/manager.js';
import type { CmEvent } from '../cm/types.js';
import { createEngine, type EngineState } from '../replication/engine.js';
import { Driver, type ClockPort, type DriverHost, type NetPort } from '../replication/driver.js';
import { refusalMessage } from '../replication/refusal.js';
import { dataShapeError, decodePacket, encodePacket } from '../replication/wire.js';
import { WriteStages } from '../replication/write-stages.js';
import type {
  Action,
  AdminCommand,
  AdminRefusal,
  ClientRequest,
  EngineEvent,
  Packet,
  ReconfigurableOptions,
} from '../replication/types.js';
import { channelTransportStats } from '../transport/channel-base.js';
import type {
  Channel,
  Message,
  PathEvent,
  PathSpec,
  StreamId,
  TlsCredentials,
} from '../transport/types.js';
import type { TlsFiles } from '../config/index.js';
import type { NbdExportBackend, NbdExtent } from '../nbd/types.js';
import { AdmissionGate } from '../nbd/admission.js';
import { NBD_EIO, NBD_ERROR_OF, NBD_ESHUTDOWN } from '../nbd/protocol.js';
import {
  BITMAP_BLOCK_BYTES,
  ENGINE_QUEUED_REQUESTS_MAX,
  NBD_ADMISSION_WAITING_MAX,
  NBD_PAYLOAD_BYTES_MAX,
  SECTOR_BYTES,
  SHUTDOWN_DRAIN_MS,
  STORE_INLINE_READ_BYTES_MAX,
  STORE_INLINE_WRITE_BYTES_MAX,
} from '../limits.js';
import { ConfigError, InvalidRequestError, NbdCommandError, StateError } from '../util/errors.js';
import type { ControlRequest, TandemEvent } from './control-protocol.js';
import { liveOptionsOf, type AdjustStep } from './adjust.js';
import type { EventSink, ResourceRuntime } from './daemon.js';
import { LocalDisk, type DiskIoCounters } from './disk.js';
import { faultsFor, type DiskFaultRule } from '../storage/faults.js';
import { handlerEnv, runHandler } from './handlers.js';
import type { NbdHub } from './nbd-hub.js';
import { engineConfig, type ResourcePlan } from './resource-config.js';
import {
  describeTransport,
  type ConnectionState,
  type DiskState,
  type ReplicationState,
  type ResourceStatus,
  type Role,
} from './status.js';

/** The transport message type that carries engine packets (the engine has its own header). */
export const ENGINE_MESSAGE_TYPE = 0x0100;
/** How often sync progress is published while a resync runs. */
const PROGRESS_INTERVAL_MS = 500;

export interface NodeServices {
  readonly node: string;
  readonly cm: ConnectionManager;
  readonly nbd: NbdHub;
  readonly clock: Clock;
  readonly log: Logger;
  readonly emit: EventSink;
  /** Test-only injected disk faults (NODE_ENV=test and TANDEM_TEST_DISK_FAULTS); never set else. */
  readonly diskFaults?: readonly DiskFaultRule[];
  /** Loads (once) and checks a TLS identity; throws a ConfigError naming the bad file. */
  readonly tls: (files: TlsFiles) => TlsCredentials;
}

interface PeerView {
  readonly name: string;
  conn: ConnectionState;
  repl: ReplicationState;
  /** The peer's role and disk as the engine last reported them; shown only while connected. */
  engineRole: Role;
  engineDisk: DiskState;
  channel: Channel | null;
  unsubscribe: (() => void)[];
  /** Messages waiting for the stream to drain (the transport said over-high-water). */
  readonly backlog: Record<StreamId, Buffer[][]>;
  readonly blocked: Record<StreamId, boolean>;
  sentBytes: number;
  receivedBytes: number;
  resyncBytes: number;
  /** Multipath sessions: times the session moved to another path, and back to a preferred one. */
  failovers: number;
  failbacks: number;
  /** Why the last connection attempt or handshake with this peer failed; cleared once connected. */
  lastError: string | null;
  /** This node's TLS identity toward this peer (loaded at up), or null for plain TCP. */
  tls: TlsCredentials | null;
  sync: {
    totalBlocks: number;
    startMs: number;
    lastBlocks: number;
    lastMs: number;
    rate: number;
  } | null;
}

/**
 * `tandem show --json`: one resource's configuration in effect, with every option adjust changes
 * live; csums-alg and verify-alg by the names drbd.conf gives (the engine keeps them only as
 * flags and a digest function).
 */
export interface ResourceShow extends Omit<
  Required<ReconfigurableOptions>,
  'csums' | 'verify' | 'digest'
> {
  readonly name: string;
  readonly up: boolean;
  readonly sizeBytes: number;
  readonly device: string;
  readonly disk: string;
  /** net { csums-alg }, null when unset. */
  readonly csumsAlg: string | null;
  /** net { verify-alg }, null when unset. */
  readonly verifyAlg: string | null;
  readonly peers: readonly {
    readonly name: string;
    readonly nodeId: number;
    readonly paths: readonly string[];
    readonly connectIntMs: number;
  }[];
}

function nameOf(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** Omit that keeps a union a union. */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

interface Pending<T> {
  resolve(v: T): void;
  reject(e: Error): void;
}

/** What each admin command tries to do, for "r0: cannot <verb>: ..." messages. */
const VERBS: Record<AdminCommand['cmd'], string> = {
  primary: 'become Primary',
  secondary: 'become Secondary',
  connect: 'connect',
  disconnect: 'disconnect',
  'new-current-uuid': 'start a new data generation',
  invalidate: 'invalidate the local data',
  'invalidate-remote': "invalidate the peer's data",
  verify: 'start online verify',
  detach: 'detach',
  attach: 'attach',
  resize: 'resize',
  reconfigure: 'apply the new options',
};

export class Resource implements ResourceRuntime {
  readonly name: string;
  private up = false;
  private disk: LocalDisk | null = null;
  /** The engine and the driver that carries out its actions; null while the resource is down. */
  private driver: Driver | null = null;
  private role: Role = 'Secondary';
  private diskState: DiskState = 'Diskless';
  private readonly peers = new Map<number, PeerView>();
  private readonly requests = new Map<number, Pending<Uint8Array | undefined>>();
  private readonly admins = new Map<number, Pending<string> & { command: AdminCommand }>();
  private nextId = 1;
  private progressTimer: Timer | null = null;
  /** Set while a graceful shutdown waits for `requests` to empty. */
  private requestsDrained: (() => void) | null = null;
  /** An admin `detach` runs (it closes the disk itself). */
  private detaching = false;
  /** A disk the engine detached on its own (I/O error) being let go, or null. */
  private diskDropping: Promise<void> | null = null;
  /** Set by shutdown(): new client requests fail at once instead of entering the engine. */
  private closing = false;
  private exportAddress = '';
  private readonly diskCounters: DiskIoCounters = { readBytes: 0, writtenBytes: 0 };
  private readonly offCm: () => void;
  /** Where client writes spend their time (status `writeStages`); always on. */
  private readonly stages: WriteStages;

  constructor(
    private plan: ResourcePlan,
    private readonly svc: NodeServices,
  ) {
    this.name = plan.name;
    this.stages = new WriteStages(() => svc.clock.nowMs() * 1000);
    for (const p of plan.peers) {
      this.peers.set(p.nodeId, {
        name: p.name,
        conn: 'StandAlone',
        repl: 'Off',
        engineRole: 'Unknown',
        engineDisk: 'DUnknown',
        channel: null,
        unsubscribe: [],
        backlog: { data: [], control: [] },
        blocked: { data: false, control: false },
        sentBytes: 0,
        receivedBytes: 0,
        resyncBytes: 0,
        failovers: 0,
        failbacks: 0,
        lastError: null,
        tls: null,
        sync: null,
      });
    }
    this.offCm = svc.cm.on((e) => this.onCm(e));
  }

  private get engine(): EngineState | null {
    return this.driver?.engine ?? null;
  }

  // --- control operations ----------------------------------------------------------------

  async run(req: ControlRequest): Promise<unknown> {
    const f = req.flags ?? {};
    switch (req.op) {
      case 'up':
        return this.bringUp();
      case 'down':
        return this.takeDown();
      case 'attach':
        return this.attach();
      case 'detach':
        return this.detach();
      case 'connect':
        this.requireUp();
        return this.forEachPeer((peer) => ({
          cmd: 'connect',
          peer,
          discardMyData: f['discardMyData'] === true,
        }));
      case 'disconnect':
        this.requireUp();
        return this.forEachPeer((peer) => ({ cmd: 'disconnect', peer }));
      case 'primary':
        this.requireUp();
        return this.admin({ cmd: 'primary', force: f['force'] === true });
      case 'secondary': {
        this.requireUp();
        const open = this.svc.nbd.openCount(this.plan.nbd.listener, this.plan.nbd.exportName);
        if (open > 0) {
          throw new StateError(
            `${this.name}: cannot become Secondary: the NBD export is held open by ${open} client(s); disconnect them first`,
          );
        }
        return this.admin({ cmd: 'secondary' });
      }
      case 'new-current-uuid':
        this.requireUp();
        return this.admin({ cmd: 'new-current-uuid', clearBitmap: f['clearBitmap'] === true });
      case 'invalidate':
        this.requireUp();
        return this.forEachPeer((peer) => ({ cmd: 'invalidate', peer }), true);
      case 'invalidate-remote':
        this.requireUp();
        return this.forEachPeer((peer) => ({ cmd: 'invalidate-remote', peer }));
      case 'verify':
        this.requireUp();
        return this.forEachPeer((peer) => ({ cmd: 'verify', peer }));
      case 'resize':
        return this.resize(f);
      case 'adjust':
        throw new StateError(`${this.name}: adjust is the daemon's, not a resource's operation`);
      case 'status':
      case 'events':
      case 'show':
      case 'shutdown':
        throw new StateError(`${req.op} is not a resource operation`);
    }
  }

  /**
   * `tandem resize`: grows the device after the backing devices grew (drbdadm resize). The
   * engine agrees on the size with the connected peers and resyncs the new area; this measures
   * the local backing (internal metadata moves to the grown end) and adds what to do next to a
   * refusal.
   */
  private async resize(f: Readonly<Record<string, boolean | number | string>>): Promise<string> {
    this.requireUp();
    const disk = this.disk;
    if (disk === null)
      throw new StateError(
        `${this.name}: cannot resize: no disk attached; attach it first: \`tandem attach ${this.name}\``,
      );
    const size = f['sizeBytes'];
    if (
      size !== undefined &&
      (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0)
    )
      throw new InvalidRequestError(`${this.name}: --size must be a positive number of bytes`);
    const cap = await disk.capacity();
    return this.admin({
      cmd: 'resize',
      sizeBytes: typeof size === 'number' ? size : null,
      capacityBytes: cap.capacityBytes,
      refusal: cap.refusal,
      assumeClean: f['assumeClean'] === true,
    });
  }

  /**
   * The configuration in effect (`tandem show`): the engine's options while it runs (what adjust
   * changed live), else the plan's; and each peer's paths.
   */
  show(): ResourceShow {
    const cfg = this.engine?.cfg ?? engineConfig(this.plan, BITMAP_BLOCK_BYTES, 0);
    const { csums: _csums, verify: _verify, digest: _digest, ...live } = liveOptionsOf(cfg);
    return {
      name: this.name,
      up: this.up,
      sizeBytes: this.engine?.cfg.sizeBytes ?? 0,
      device: this.exportUri(),
      disk: this.plan.diskPath,
      ...live,
      csumsAlg: nameOf(this.plan.net['csums-alg']),
      verifyAlg: nameOf(this.plan.net['verify-alg']),
      resync: { ...cfg.resync },
      peers: this.plan.peers.map((p) => ({
        name: p.name,
        nodeId: p.nodeId,
        paths: p.paths.map((x) => `${x.peer.transport}:${x.peer.address}:${x.peer.port}`),
        connectIntMs: p.net.connectIntMs ?? 10_000,
      })),
    };
  }

  get isUp(): boolean {
    return this.up;
  }

  /** The plan this resource runs with (adjust compares the configuration file with it). */
  get currentPlan(): ResourcePlan {
    return this.plan;
  }

  /**
   * Runs with `plan` from now on (adjust): engine options are applied live, connections whose
   * paths or options changed are reconnected. Storage, export and peers stay as they are
   * (planAdjust keeps them). A resource that is down just takes the plan for its next `up`.
   */
  async applyAdjust(plan: ResourcePlan, steps: readonly AdjustStep[]): Promise<void> {
    this.plan = plan;
    if (!this.up || this.engine === null) return;
    const wanted = (id: number): boolean => this.engine?.peers.get(id)?.conn !== 'StandAlone';
    for (const s of steps) {
      if (s.kind === 'reconfigure') {
        const ids = [...this.peers.keys()].filter(
          (id) => s.protocolChanged && this.peers.get(id)?.conn === 'Connected',
        );
        for (const id of ids) await this.admin({ cmd: 'disconnect', peer: id });
        await this.admin({ cmd: 'reconfigure', options: s.options });
        for (const id of ids) await this.admin({ cmd: 'connect', peer: id, discardMyData: false });
      } else if (s.kind === 'reconnect' && wanted(s.peerNodeId)) {
        await this.admin({ cmd: 'disconnect', peer: s.peerNodeId });
        await this.admin({ cmd: 'connect', peer: s.peerNodeId, discardMyData: false });
      }
    }
  }

  private requireUp(): void {
    if (!this.up || this.engine === null)
      throw new StateError(`${this.name}: not up; run \`tandem up ${this.name}\` first`);
  }

  private async forEachPeer(
    make: (peer: number) => AdminCommand,
    firstOnly = false,
  ): Promise<unknown> {
    const ids = [...this.peers.keys()];
    if (ids.length === 0) throw new StateError(`${this.name}: has no peers on this node`);
    const results: string[] = [];
    for (const id of firstOnly ? ids.slice(0, 1) : ids) results.push(await this.admin(make(id)));
    return results.length === 1 ? results[0] : results;
  }

  private admin(command: AdminCommand): Promise<string> {
    const cmdId = this.nextId++;
    return new Promise<string>((resolve, reject) => {
      this.admins.set(cmdId, { resolve, reject, command });
      this.feed({ type: 'admin', cmdId, command });
    });
  }

  private async bringUp(): Promise<void> {
    if (this.up) return;
    // The PEM files are read now, so that a missing or broken one fails `up` naming it.
    for (const p of this.plan.peers) {
      const view = this.peers.get(p.nodeId);
      if (view !== undefined) view.tls = p.tls === null ? null : this.svc.tls(p.tls);
    }
    await this.attach();
    this.up = true;
    this.emitEvent('change', 'resource', undefined, { up: true, role: this.role });
    for (const id of this.peers.keys())
      await this.admin({ cmd: 'connect', peer: id, discardMyData: false });
  }

  private async attach(): Promise<void> {
    if (this.diskDropping !== null) await this.diskDropping;
    if (this.engine === null) {
      try {
        await this.svc.nbd.prepare(this.plan.nbd.listener, this.plan.nbd.tls);
      } catch (e) {
        throw new ConfigError(
          `${this.name}: device ${this.plan.nbd.uri}: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      }
    }
    if (this.disk !== null) return;
    const peerIds = [...this.peers.keys()];
    const alExtents =
      typeof this.plan.disk['al-extents'] === 'number' ? this.plan.disk['al-extents'] : 1237;
    this.setDisk('Attaching');
    let disk: LocalDisk;
    try {
      disk = await LocalDisk.open(
        this.plan.diskPath,
        this.plan.metaDisk,
        this.plan.nodeId,
        peerIds,
        alExtents,
        {
          inlineWriteMaxBytes: STORE_INLINE_WRITE_BYTES_MAX,
          inlineReadMaxBytes: STORE_INLINE_READ_BYTES_MAX,
          clock: this.svc.clock,
        },
        this.diskCounters,
        faultsFor(this.svc.diskFaults, this.name),
      );
    } catch (e) {
      this.setDisk('Diskless');
      throw new StateError(
        `${this.name}: cannot attach ${this.plan.diskPath}: ${(e as Error).message}`,
        undefined,
        { cause: e },
      );
    }
    this.disk = disk;
    this.driver?.attachDisk(disk.port(this.svc.log));
    if (disk.recoveredExtents.length > 0) {
      this.svc.log.warn(
        { extents: disk.recoveredExtents.length },
        'activity log applied after a crash',
      );
    }
    if (this.engine === null) {
      const seed = secureBytes(4).readUInt32BE(0);
      const r = createEngine(engineConfig(this.plan, disk.sizeBytes, seed), disk.bootState());
      this.driver = new Driver(
        r.state,
        {
          disk: disk.port(this.svc.log),
          net: this.netPort,
          clock: this.clockPort,
          host: this.host,
        },
        { stages: this.stages },
      );
      this.driver.start(r.actions);
      this.exportAddress = await this.svc.nbd.addExport(
        this.plan.nbd.listener,
        this.plan.nbd.exportName,
        this.backend(),
        this.plan.nbd.tls,
      );
    } else {
      await this.admin({ cmd: 'attach', boot: disk.bootState() });
    }
  }

  private async detach(): Promise<void> {
    this.requireUp();
    if (this.disk === null) return;
    this.detaching = true;
    try {
      await this.admin({ cmd: 'detach' });
    } finally {
      this.detaching = false;
    }
    const disk = this.disk;
    if (disk === null) return;
    this.disk = null;
    await this.letGo(disk);
  }

  /**
   * Closes a disk the driver no longer uses, once every I/O and barrier it had under way has
   * answered: cleanly (bitmap written, AL marked clean), or, when a metadata write failed it,
   * like a crash (nothing written: the AL must keep covering what the disk may lack).
   */
  private async letGo(disk: LocalDisk): Promise<void> {
    const d = this.driver;
    let failed = false;
    if (d !== null)
      failed = await new Promise<boolean>((resolve) =>
        d.engine === null
          ? d.whenDiskIdle(() => resolve(d.diskFailure !== null))
          : d.detachDisk(resolve),
      );
    await (failed ? disk.abandon() : disk.close());
  }

  private async takeDown(): Promise<void> {
    if (!this.up && this.engine === null) return;
    if (this.role === 'Primary') {
      const open = this.svc.nbd.openCount(this.plan.nbd.listener, this.plan.nbd.exportName);
      if (open > 0) {
        throw new StateError(
          `${this.name}: cannot go down: the NBD export is held open by ${open} client(s); disconnect them first`,
        );
      }
    }
    await this.quiesce();
    this.svc.nbd.removeExport(this.plan.nbd.listener, this.plan.nbd.exportName);
    await this.release();
    this.emitEvent('change', 'resource', undefined, { up: false });
  }

  /** Stops the engine and closes the disk cleanly (bitmap written, AL marked clean). */
  private async release(): Promise<void> {
    const driver = this.driver;
    for (const e of driver?.stop() ?? []) this.failEvent(e);
    this.progressTimer?.cancel();
    this.progressTimer = null;
    for (const [id, p] of this.peers) {
      this.svc.cm.removeConnection(this.name, id).catch(() => undefined);
      this.dropChannel(p);
    }
    for (const r of this.requests.values())
      r.reject(new NbdCommandError(`${this.name} is going down`, 108));
    this.requests.clear();
    this.stages.forgetInFlight(); // stage hook: the engine stops
    this.up = false;
    const disk = this.disk;
    this.disk = null;
    // Every disk I/O settles first, as in detach() and dropDisk().
    if (disk !== null) await this.letGo(disk);
    this.driver = null;
    if (this.diskDropping !== null) await this.diskDropping;
    this.setDisk('Diskless');
  }

  /**
   * SIGTERM: no new requests; requests in flight finish (or fail after SHUTDOWN_DRAIN_MS); a
   * Primary demotes so its restart needs no crash recovery; peers see a clean disconnect; the
   * disk closes with the bitmap written and the AL marked clean.
   */
  async shutdown(): Promise<void> {
    this.offCm();
    if (this.engine === null) return;
    this.closing = true;
    this.svc.nbd.removeExport(this.plan.nbd.listener, this.plan.nbd.exportName);
    await this.drainRequests(SHUTDOWN_DRAIN_MS);
    await this.quiesce();
    await this.release();
  }

  /**
   * Before a planned disconnect: a flush closes the last epoch and waits for the peers'
   * barrier acks (writes still in an unacked epoch count as out of sync at disconnect, and
   * would cost a resync); a Primary steps down; peers get a clean disconnect.
   */
  private async quiesce(): Promise<void> {
    const log = (what: string) => (e: unknown) =>
      this.svc.log.warn({ err: String(e) }, `${this.name}: ${what} before going down`);
    if (this.disk !== null && this.role === 'Primary') {
      let timer: Timer | undefined;
      const late = new Promise<void>((resolve) => {
        timer = this.svc.clock.setTimeout(resolve, SHUTDOWN_DRAIN_MS);
      });
      await Promise.race([this.request({ op: 'flush' }).catch(log('flush')), late]);
      timer?.cancel();
    }
    if (this.role === 'Primary') await this.admin({ cmd: 'secondary' }).catch(log('demote'));
    for (const id of this.peers.keys())
      await this.admin({ cmd: 'disconnect', peer: id }).catch(log('disconnect'));
  }

  /** Resolves once no client request is in flight, or after `timeoutMs`. */
  private async drainRequests(timeoutMs: number): Promise<void> {
    if (this.requests.size === 0) return;
    let timer: Timer | undefined;
    await new Promise<void>((resolve) => {
      this.requestsDrained = resolve;
      timer = this.svc.clock.setTimeout(resolve, timeoutMs);
    });
    this.requestsDrained = null;
    timer?.cancel();
    if (this.requests.size > 0)
      this.svc.log.warn(
        { requests: this.requests.size },
        'shutdown: requests still in flight fail',
      );
  }

  /**
   * Turns an engine refusal into one line that names what failed, why, and what to do next:
   * "r0: cannot become Primary: disk is Inconsistent and peer bob is not connected; use --force
   * to start a new data generation". One case per refusal code, checked exhaustive.
   */
  private explain(c: AdminCommand, refusal: AdminRefusal): string {
    const { reason, next } = this.explanation(refusal);
    return `${this.name}: cannot ${VERBS[c.cmd]}: ${reason}${next !== undefined ? `; ${next}` : ''}`;
  }

  private explanation(f: AdminRefusal): { reason: string; next?: string } {
    const r = this.name;
    const why = refusalMessage(f);
    const peers = [...this.peers.values()];
    const names = (ps: PeerView[]): string => ps.map((p) => p.name).join(', ');
    const waitSync = `wait for it: \`tandem wait-sync ${r}\``;
    const connectFirst = `connect first: \`tandem connect ${r}\` and \`tandem wait-connect ${r}\``;
    const attachFirst = `attach it first: \`tandem attach ${r}\``;
    const demoteFirst = `demote it first: \`tandem secondary ${r}\``;
    switch (f.code) {
      case 'disk-not-up-to-date': {
        // Not forceable: a disk neither UpToDate nor usable (e.g. Failed) cannot be promoted.
        if (!f.forceable) return { reason: why };
        const apart = peers.filter((p) => p.conn !== 'Connected');
        const syncing = peers.some((p) => p.repl === 'SyncTarget' || p.repl === 'PausedSyncT');
        let reason = `disk is ${f.disk}`;
        if (apart.length > 0)
          reason += ` and peer ${names(apart)} ${apart.length > 1 ? 'are' : 'is'} not connected`;
        else if (peers.length > 0)
          reason += ` and peer ${peers.map((p) => `${p.name} is ${shownDisk(p)}`).join(', ')}`;
        return {
          reason,
          next: syncing
            ? `wait for the resync: \`tandem wait-sync ${r}\``
            : 'use --force to start a new data generation from this disk',
        };
      }
      case 'peer-primary': {
        const prim = peers.filter((p) => shownRole(p) === 'Primary');
        return {
          reason: prim.length > 0 ? `peer ${names(prim)} is Primary` : why,
          next: `run \`tandem secondary ${r}\` there first (two Primaries need allow-two-primaries)`,
        };
      }
      case 'resync-running':
        return { reason: why, next: waitSync };
      case 'handshaking':
        return {
          reason: 'a handshake with a peer is in progress',
          next: `retry once \`tandem wait-connect ${r}\` returns`,
        };
      case 'io-in-flight':
        return { reason: why, next: 'stop the NBD clients of this export and retry' };
      case 'not-established':
      case 'verify-not-established':
        return { reason: why, next: connectFirst };
      case 'no-verify-alg':
        return {
          reason: why,
          next: 'set verify-alg in the net section (e.g. `verify-alg sha256;`), then down and up',
        };
      case 'primary-invalidate':
        return { reason: why, next: demoteFirst };
      case 'primary-needs-up-to-date-peer':
        return f.action === 'detach'
          ? { reason: why, next: demoteFirst }
          : { reason: why, next: `${connectFirst}, or ${demoteFirst}` };
      case 'no-disk':
      case 'no-up-to-date-data':
        return { reason: why, next: attachFirst };
      case 'unknown-peer':
        return { reason: why, next: `the peers of ${r} are: ${names(peers) || 'none'}` };
      case 'disk-attached':
        return { reason: why, next: `detach it first: \`tandem detach ${r}\`` };
      case 'sync-source-not-up-to-date':
        return {
          reason: why,
          next: `wait until the source is UpToDate: \`tandem wait-sync ${r}\``,
        };
      case 'promotion-in-progress':
        return { reason: why, next: 'wait for it to finish' };
      case 'fence-failed':
        return {
          reason: why,
          next: `check the fence-peer handler's log, or promote with --force if the peer is known to be down with older data: \`tandem primary --force ${r}\``,
        };
      case 'fence-pending':
        return {
          reason: why,
          next: `wait for the handler, or connect the peer first: \`tandem wait-connect ${r}\``,
        };
      case 'protocol-change-connected':
        return {
          reason: why,
          next: `disconnect first (\`tandem disconnect ${r}\`), adjust, then connect`,
        };
      case 'option-out-of-range':
        return { reason: why, next: `fix ${f.option} in the configuration file` };
      case 'resize-in-progress':
        return { reason: why, next: 'wait for it to finish' };
      case 'resize-disk-not-up-to-date':
      case 'resize-peer-not-up-to-date':
        return {
          reason: why,
          next: `wait until every node is UpToDate: \`tandem wait-sync ${r}\``,
        };
      case 'resize-peers-apart':
        return {
          reason: why,
          next: f.alone
            ? `connect first (\`tandem connect ${r}\`, \`tandem wait-sync ${r}\`), or grow each node alone to the same --size before they connect`
            : `connect first (\`tandem connect ${r}\`, \`tandem wait-sync ${r}\`), or disconnect every peer to grow each node alone with --size`,
        };
      case 'resize-peer-busy':
        return { reason: why, next: waitSync };
      case 'resize-peer-primary':
        return { reason: why, next: 'run it on the Primary' };
      case 'resize-does-not-fit':
        return { reason: why, next: 'grow that backing device first, or ask for less' };
      case 'resize-shrink':
        return f.requestedBytes === null
          ? {
              reason: why,
              next: 'grow that backing device (e.g. `truncate -s +64M FILE` or lvextend) and retry',
            }
          : {
              reason: why,
              next: 'Tandem only grows a device (shrinking needs the filesystem shrunk first, as in DRBD); to shrink, copy the data to a smaller resource',
            };
      case 'resize-failed':
        return { reason: why, next: 'check the backing devices named, then retry' };
      case 'resize-peer-lost':
        return { reason: why };
      case 'resize-local-grow-failed':
        return { reason: why, next: 'check the backing device, then retry' };
    }
  }

  // --- the engine loop -------------------------------------------------------------------

  private feed(ev: EngineEvent): void {
    if (this.driver === null) this.failEvent(ev);
    else this.driver.feed(ev);
  }

  /** An event for a resource that went down: whoever waits on it gets an answer. */
  private failEvent(e: EngineEvent): void {
    if (e.type === 'admin') {
      this.admins.get(e.cmdId)?.reject(new StateError(`${this.name}: not up`));
      this.admins.delete(e.cmdId);
    } else if (e.type === 'request') {
      this.requests.get(e.req.id)?.reject(new NbdCommandError(`${this.name} is down`, 108));
      this.stages.complete(e.req.id, false); // stage hook: failed without the engine
      this.requests.delete(e.req.id);
    }
  }

  /** The driver's ports into this daemon: the peers' channels, the clock, and the rest. */
  private readonly netPort: NetPort = {
    connection: (peer) => this.peers.get(peer)?.channel ?? null,
    send: (peer, stream, packet, conn) =>
      this.send(peer, stream, packet, conn === undefined ? undefined : (conn as Channel | null)),
    connect: (peer) => this.connectPeer(peer),
    disconnect: (peer) => this.disconnectPeer(peer),
  };

  private readonly clockPort: ClockPort = {
    nowMs: () => this.svc.clock.nowMs(),
    setTimeout: (fn, ms) => this.svc.clock.setTimeout(fn, ms),
    defer: (fn) => queueMicrotask(fn),
  };

  private readonly host: DriverHost = {
    complete: (a) => {
      this.stages.complete(a.reqId, a.ok); // stage hook: the reply
      const p = this.requests.get(a.reqId);
      this.requests.delete(a.reqId);
      if (this.requests.size === 0) this.requestsDrained?.();
      if (p === undefined) return;
      if (a.ok) p.resolve(a.data);
      else p.reject(new NbdCommandError(`${this.name}: ${a.errno}`, NBD_ERROR_OF[a.errno]));
    },
    adminResult: (a) => {
      const p = this.admins.get(a.cmdId);
      this.admins.delete(a.cmdId);
      if (p === undefined) return;
      if (a.ok) p.resolve(a.message);
      else p.reject(new StateError(this.explain(p.command, a.refusal), a.refusal.code));
    },
    stateChange: (c) => this.onStateChange(c),
    fencePeer: (peer, token) => this.fencePeer(peer, token),
    unfencePeer: (peer) => this.unfencePeer(peer),
    note: (n) => {
      if (n.kind === 'resized')
        this.emitEvent('change', 'device', undefined, { size: n.sizeBytes, volume: 0 });
      this.svc.log.info({ ...noteFields(n) }, `engine: ${n.kind}`);
      this.emitEvent('call', 'resource', this.peerName(noteFields(n)['peer']), {
        note: n.kind,
        ...stringify(noteFields(n)),
      });
      if (n.kind === 'resync-started') this.startProgress(n.peer, n.bits);
      if (n.kind === 'resync-finished') this.finishProgress(n.peer);
    },
    // Our bug: the driver fails the resource safe (Diskless, StandAlone); say which invariant.
    invariantBroken: (b) => {
      this.svc.log.error(
        { invariant: b.invariant, detail: b.detail },
        'engine invariant broken: detaching the disk and disconnecting every peer',
      );
      this.emitEvent('call', 'resource', undefined, {
        note: 'invariant-broken',
        invariant: b.invariant,
      });
    },
    // A metadata write that failed leaves the on-disk state unknown: stop using this disk.
    diskFailed: (errno) => {
      this.svc.log.error({ errno }, 'metadata write failed; detaching');
      // `failed`: a lone Primary goes Diskless too (under pass_on no data error would detach it).
      this.feed({
        type: 'admin',
        cmdId: this.nextId++,
        command: { cmd: 'detach', failed: true },
      });
    },
  };

  /**
   * Resource-level fencing: the fence-peer handler's exit code goes back to the engine, which
   * holds frozen I/O or a promotion until it arrives. No handler configured is a failure
   * (DRBD: "fence-peer helper not defined"), so fencing without one never promotes blindly.
   */
  private fencePeer(peer: number, token: number): void {
    const command = this.plan.handlers['fence-peer'];
    const log = this.svc.log;
    if (typeof command !== 'string') {
      log.error({ peer: this.peerName(peer) }, 'fencing is on but no fence-peer handler is set');
      queueMicrotask(() => this.feed({ type: 'fencePeerDone', peer, token, exitCode: null }));
      return;
    }
    log.info({ peer: this.peerName(peer), command }, 'running the fence-peer handler');
    void runHandler(command, this.handlerEnv(peer)).then((exitCode) => {
      log.info({ peer: this.peerName(peer), exitCode }, 'fence-peer handler finished');
      this.feed({ type: 'fencePeerDone', peer, token, exitCode });
    });
  }

  /** The peer fenced earlier is UpToDate again: unfence-peer lifts what fence-peer placed. */
  private unfencePeer(peer: number): void {
    const command = this.plan.handlers['unfence-peer'];
    if (typeof command !== 'string') return;
    const log = this.svc.log;
    log.info({ peer: this.peerName(peer), command }, 'running the unfence-peer handler');
    void runHandler(command, this.handlerEnv(peer)).then((exitCode) => {
      if (exitCode === 0) log.info({ peer: this.peerName(peer) }, 'unfence-peer handler finished');
      else log.error({ peer: this.peerName(peer), exitCode }, 'unfence-peer handler failed');
    });
  }

  private handlerEnv(peer: number): Record<string, string> {
    const e = this.engine;
    const upToDate: number[] = [];
    if (e?.disk === 'UpToDate') upToDate.push(this.plan.nodeId);
    for (const [id, p] of this.peers)
      if (p.conn === 'Connected' && p.engineDisk === 'UpToDate') upToDate.push(id);
    return handlerEnv(this.plan, peer, upToDate);
  }

  // --- peers -----------------------------------------------------------------------------

  private connectPeer(peer: number): void {
    const plan = this.plan.peers.find((p) => p.nodeId === peer);
    if (plan === undefined || this.svc.cm.state(this.name, peer) !== 'StandAlone') return;
    const tls = this.peers.get(peer)?.tls ?? null;
    this.svc.cm.addConnection({
      resource: this.name,
      peerNodeId: peer,
      paths: plan.paths,
      net: plan.net,
      ...(tls !== null ? { tls: { credentials: tls, peerName: plan.tlsPeerName } } : {}),
      ...(plan.multipath ? { multipath: plan.multipath } : {}),
    });
  }

  private disconnectPeer(peer: number): void {
    const p = this.peers.get(peer);
    if (p !== undefined) this.dropChannel(p);
    this.svc.cm.removeConnection(this.name, peer).catch((e: unknown) => {
      this.svc.log.warn({ peer, err: String(e) }, 'disconnect');
    });
  }

  private onCm(e: CmEvent): void {
    if (e.kind === 'refused') {
      if (e.resource !== this.name) return;
      const p = e.peerNodeId === null ? undefined : this.peers.get(e.peerNodeId);
      const why = `${e.byPeer ? 'refused by peer' : 'refused'}: ${e.reason}`;
      if (p !== undefined && e.peerNodeId !== null) this.noteError(e.peerNodeId, p, why);
      else this.svc.log.warn({ remote: e.remote, code: e.code }, e.reason);
      return;
    }
    if (e.kind === 'listening' || e.resource !== this.name) return;
    const p = this.peers.get(e.peerNodeId);
    if (p === undefined) return;
    if (e.kind === 'path' && e.state === 'failed' && e.reason !== undefined) {
      this.noteError(e.peerNodeId, p, e.reason);
    }
    if (e.kind === 'state' && e.state === 'Connected') p.lastError = null;
    if (e.kind === 'path') {
      this.emitEvent('change', 'path', p.name, {
        local: e.path.local?.address ?? '',
        peer: `${e.path.peer.address}:${e.path.peer.port}`,
        transport: e.path.peer.transport,
        established: e.state === 'established',
        ...(e.state === 'failed' && e.reason !== undefined ? { reason: e.reason } : {}),
      });
      return;
    }
    if (e.state === 'Connected' && e.established !== undefined) {
      this.adoptChannel(e.peerNodeId, p, e.established.channel);
    } else if (p.channel !== null) {
      this.dropChannel(p);
      this.feed({ type: 'connClosed', peer: e.peerNodeId });
    }
  }

  /**
   * A failed connection attempt (dial, TLS, handshake) with this peer: kept for status and told
   * to the events stream once per distinct reason, not once per retry.
   */
  private noteError(peer: number, p: PeerView, reason: string): void {
    if (p.lastError === reason) return;
    p.lastError = reason;
    this.svc.log.warn({ peer: p.name, peerNodeId: peer }, `connection: ${reason}`);
    this.emitEvent('change', 'connection', p.name, { 'last-error': reason });
  }

  private adoptChannel(peer: number, p: PeerView, ch: Channel): void {
    if (p.channel !== null) {
      this.dropChannel(p);
      this.feed({ type: 'connClosed', peer });
    }
    p.channel = ch;
    p.blocked.data = p.blocked.control = false;
    p.unsubscribe.push(
      ch.on('drain', (stream) => this.drain(p, stream)),
      ch.on('path', (ev) => this.onSessionPath(p, ev)),
      ch.on('closed', () => {
        if (p.channel !== ch) return;
        this.dropChannel(p);
        this.feed({ type: 'connClosed', peer });
      }),
    );
    this.feed({ type: 'connEstablished', peer });
    ch.setReceiver((m) => this.onMessage(peer, p, m));
    ch.resumeData();
  }

  /** A multipath session's path changed: count failovers/failbacks and tell the events stream. */
  private onSessionPath(p: PeerView, ev: PathEvent): void {
    const name = (x: PathSpec): string => `${x.peer.transport}:${x.peer.address}:${x.peer.port}`;
    if (ev.change === 'failover') p.failovers++;
    if (ev.change === 'failback') p.failbacks++;
    this.emitEvent('change', 'path', p.name, {
      local: ev.path.local?.address ?? '',
      peer: `${ev.path.peer.address}:${ev.path.peer.port}`,
      transport: ev.path.peer.transport,
      state: ev.state,
      established: ev.state === 'established',
      ...(ev.change !== undefined ? { change: ev.change } : {}),
      ...(ev.from !== undefined ? { from: name(ev.from) } : {}),
      ...(ev.error !== undefined ? { reason: ev.error.message } : {}),
    });
  }

  private dropChannel(p: PeerView): void {
    for (const u of p.unsubscribe) u();
    p.unsubscribe = [];
    p.backlog.data.length = 0;
    p.backlog.control.length = 0;
    const ch = p.channel;
    p.channel = null;
    ch?.setReceiver(null);
  }

  private onMessage(peer: number, p: PeerView, m: Message): void {
    if (m.type !== ENGINE_MESSAGE_TYPE) return;
    p.receivedBytes += m.payload.length;
    const d = decodePacket(m.payload);
    if (!d.ok) {
      // A peer that sends garbage is broken or hostile: drop the connection, keep running.
      this.svc.log.warn(
        { peer: p.name, err: d.error.message },
        'bad packet from peer; disconnecting',
      );
      p.channel?.destroy(new Error(d.error.message));
      return;
    }
    const shape = d.value.kind === 'Data' ? dataShapeError(d.value) : null;
    if (shape !== null) {
      this.svc.log.warn({ peer: p.name, err: shape }, 'bad packet from peer; disconnecting');
      p.channel?.destroy(new Error(shape));
      return;
    }
    if (d.value.kind === 'RsReply') p.resyncBytes += d.value.data.length;
    if (d.value.kind === 'WriteAck' || d.value.kind === 'RecvAck') this.stages.peerAck(d.value.seq); // stage hook
    this.svc.log.debug({ peer: p.name, packet: d.value.kind, stream: m.stream }, 'received');
    this.feed({ type: 'packet', peer, packet: d.value });
  }

  /** Sends on the peer's channel; with `onChannel`, only if that channel is still the one. */
  private send(peer: number, stream: StreamId, packet: Packet, onChannel?: Channel | null): void {
    const p = this.peers.get(peer);
    this.svc.log.debug(
      { peer: p?.name, packet: packet.kind, stream, open: p?.channel?.isOpen ?? false },
      'send',
    );
    if (p?.channel == null || !p.channel.isOpen) return;
    // A packet queued for a connection that has since been replaced belongs to no one.
    if (onChannel !== undefined && onChannel !== p.channel) return;
    const parts = encodePacket(packet);
    for (const b of parts) p.sentBytes += b.length;
    if (packet.kind === 'RsReply') p.resyncBytes += packet.data.length;
    if (p.blocked[stream]) {
      p.backlog[stream].push(parts);
      return;
    }
    if (p.channel.send(stream, ENGINE_MESSAGE_TYPE, parts) === 'over-high-water')
      p.blocked[stream] = true;
  }

  private drain(p: PeerView, stream: StreamId): void {
    p.blocked[stream] = false;
    const q = p.backlog[stream];
    while (q.length > 0 && !p.blocked[stream] && p.channel?.isOpen === true) {
      const parts = q.shift()!;
      if (p.channel.send(stream, ENGINE_MESSAGE_TYPE, parts) === 'over-high-water')
        p.blocked[stream] = true;
    }
  }

  // --- state and events ------------------------------------------------------------------

  private onStateChange(c: Extract<Action, { type: 'stateChange' }>['change']): void {
    switch (c.what) {
      case 'role':
        this.role = c.role;
        this.emitEvent('change', 'resource', undefined, { role: c.role });
        return;
      case 'disk':
        return this.setDisk(c.disk);
      case 'connection': {
        const p = this.peers.get(c.peer);
        if (p === undefined) return;
        p.conn = c.conn;
        if (c.conn !== 'Connected') p.repl = 'Off';
        this.emitEvent('change', 'connection', p.name, {
          connection: c.conn,
          role: shownRole(p),
        });
        this.emitPeerDevice(c.peer, p);
        return;
      }
      case 'replication': {
        const p = this.peers.get(c.peer);
        if (p === undefined) return;
        p.repl = c.repl;
        this.emitPeerDevice(c.peer, p);
        return;
      }
      case 'peerDisk': {
        const p = this.peers.get(c.peer);
        if (p === undefined) return;
        p.engineDisk = c.disk;
        this.emitPeerDevice(c.peer, p);
        return;
      }
      case 'peerRole': {
        const p = this.peers.get(c.peer);
        if (p === undefined) return;
        p.engineRole = c.role;
        this.emitEvent('change', 'connection', p.name, {
          connection: p.conn,
          role: shownRole(p),
        });
        return;
      }
    }
  }

  private emitPeerDevice(id: number, p: PeerView): void {
    this.emitEvent('change', 'peer-device', p.name, {
      replication: p.repl,
      'peer-disk': shownDisk(p),
      'out-of-sync': this.outOfSyncBytes(id),
    });
  }

  private setDisk(d: DiskState): void {
    if (d === 'Diskless' && this.disk !== null && this.engine !== null && !this.detaching)
      this.dropDisk(this.disk);
    this.diskState = d;
    this.emitEvent('change', 'device', undefined, { disk: d, volume: 0 });
  }

  /**
   * The engine detached on its own (on-io-error): let the disk go like a crash (write nothing:
   * it failed), once its I/O settled, so a later `attach` opens it afresh and recovers its AL.
   */
  private dropDisk(disk: LocalDisk): void {
    this.disk = null;
    const dropping = this.letGo(disk).finally(() => {
      if (this.diskDropping === dropping) this.diskDropping = null;
    });
    this.diskDropping = dropping;
  }

  private outOfSyncBytes(peer: number): number {
    return (this.engine?.bitmaps.get(peer)?.weight ?? 0) * BITMAP_BLOCK_BYTES;
  }

  private startProgress(peer: number, bits: number): void {
    const p = this.peers.get(peer);
    if (p === undefined) return;
    const now = this.svc.clock.nowMs();
    p.sync = {
      totalBlocks: Math.max(bits, 1),
      startMs: now,
      lastBlocks: bits,
      lastMs: now,
      rate: 0,
    };
    this.publishProgress();
  }

  private finishProgress(peer: number): void {
    const p = this.peers.get(peer);
    if (p !== undefined) p.sync = null;
    this.emitEvent('change', 'peer-device', p?.name, {
      replication: p?.repl ?? 'Off',
      'peer-disk': p === undefined ? 'DUnknown' : shownDisk(p),
      'out-of-sync': this.outOfSyncBytes(peer),
      done: 100,
    });
  }

  private publishProgress(): void {
    this.progressTimer = null;
    let running = false;
    const now = this.svc.clock.nowMs();
    for (const [id, p] of this.peers) {
      if (p.sync === null) continue;
      running = true;
      const left = this.engine?.bitmaps.get(id)?.weight ?? 0;
      const dt = (now - p.sync.lastMs) / 1000;
      if (dt > 0) {
        const inst = (Math.max(0, p.sync.lastBlocks - left) * BITMAP_BLOCK_BYTES) / dt;
        p.sync.rate = p.sync.rate === 0 ? inst : 0.7 * p.sync.rate + 0.3 * inst;
      }
      p.sync.lastBlocks = left;
      p.sync.lastMs = now;
      const s = this.syncProgress(id, p);
      this.emitEvent('change', 'peer-device', p.name, {
        replication: p.repl,
        'peer-disk': shownDisk(p),
        'out-of-sync': left * BITMAP_BLOCK_BYTES,
        done: Number(s.percent.toFixed(2)),
        rate: Math.round(s.rateBytesPerSec),
        ...(s.etaSec !== null ? { eta: Math.round(s.etaSec) } : {}),
      });
    }
    if (running)
      this.progressTimer = this.svc.clock.setTimeout(
        () => this.publishProgress(),
        PROGRESS_INTERVAL_MS,
      );
  }

  private syncProgress(
    id: number,
    p: PeerView,
  ): { percent: number; rateBytesPerSec: number; etaSec: number | null } {
    const sync = p.sync!;
    const left = this.engine?.bitmaps.get(id)?.weight ?? 0;
    const percent = Math.min(100, Math.max(0, 100 * (1 - left / sync.totalBlocks)));
    const rate = sync.rate;
    return {
      percent,
      rateBytesPerSec: rate,
      etaSec: rate > 0 ? (left * BITMAP_BLOCK_BYTES) / rate : null,
    };
  }

  private peerName(id: unknown): string | undefined {
    return typeof id === 'number' ? this.peers.get(id)?.name : undefined;
  }

  private emitEvent(
    kind: TandemEvent['kind'],
    object: TandemEvent['object'],
    peer: string | undefined,
    props: Record<string, string | number | boolean>,
  ): void {
    this.svc.emit(this.event(kind, object, peer, props));
  }

  private event(
    kind: TandemEvent['kind'],
    object: TandemEvent['object'],
    peer: string | undefined,
    props: Record<string, string | number | boolean>,
  ): TandemEvent {
    const peerNodeId = this.plan.peers.find((p) => p.name === peer)?.nodeId;
    return {
      kind,
      object,
      resource: this.name,
      ...(peer !== undefined ? { peer } : {}),
      ...(peerNodeId !== undefined ? { peerNodeId } : {}),
      ...(object === 'device' || object === 'peer-device' ? { volume: 0 } : {}),
      props,
      timeMs: Math.round(this.svc.clock.nowMs()),
    };
  }

  /** The current state as `exists` events, in drbdsetup events2's order. */
  snapshot(): TandemEvent[] {
    const e = (
      object: TandemEvent['object'],
      peer: string | undefined,
      props: Record<string, string | number | boolean>,
    ): TandemEvent => this.event('exists', object, peer, props);
    const st = this.status();
    return [
      e('resource', undefined, { up: this.up, role: this.role }),
      ...st.peers.map((p) => e('connection', p.name, { connection: p.connection, role: p.role })),
      e('device', undefined, { disk: this.diskState, size: st.sizeBytes, device: st.device }),
      ...st.peers.map((p) =>
        e('peer-device', p.name, {
          replication: p.replication,
          'peer-disk': p.peerDisk,
          'out-of-sync': p.outOfSyncBytes,
          ...(p.sync !== null ? { done: Number(p.sync.percent.toFixed(2)) } : {}),
        }),
      ),
      ...st.peers.flatMap((p) =>
        p.paths.map((path) =>
          e('path', p.name, {
            local: path.local,
            peer: path.remote,
            transport: path.transport,
            established: path.established,
          }),
        ),
      ),
    ];
  }

  status(): ResourceStatus {
    return {
      name: this.name,
      up: this.up,
      role: this.role,
      disk: this.diskState,
      sizeBytes: this.disk === null ? 0 : (this.engine?.cfg.sizeBytes ?? this.disk.sizeBytes),
      device: this.exportUri(),
      writable: this.up && this.role === 'Primary',
      writeStages: this.stages.status(),
      io: { ...this.diskCounters, requestsInFlight: this.requests.size },
      peers: [...this.peers].map(([id, p]) => {
        const configured = this.plan.peers.find((x) => x.nodeId === id)?.paths ?? [];
        const shown = describeTransport(
          configured,
          p.channel === null ? null : channelTransportStats(p.channel),
          p.channel?.stats().rttMs ?? null,
        );
        return {
          name: p.name,
          nodeId: id,
          connection: p.conn,
          role: shownRole(p),
          replication: p.repl,
          peerDisk: shownDisk(p),
          outOfSyncBytes: this.outOfSyncBytes(id),
          sync: p.sync === null ? null : this.syncProgress(id, p),
          sentBytes: p.sentBytes,
          receivedBytes: p.receivedBytes,
          resyncBytes: p.resyncBytes,
          failovers: p.failovers,
          failbacks: p.failbacks,
          paths: shown.paths,
          transport: shown.transport,
          ...(p.lastError !== null ? { lastError: p.lastError } : {}),
          ...(p.channel?.tls !== undefined
            ? { tls: `${p.channel.tls.protocol} ${p.channel.tls.cipher}` }
            : {}),
        };
      }),
    };
  }

  private exportUri(): string {
    const n = this.plan.nbd;
    if (n.listener.kind === 'unix') return n.uri;
    const port =
      this.exportAddress === '' ? n.listener.port : Number(this.exportAddress.split(':').at(-1));
    const host = n.listener.host.includes(':') ? `[${n.listener.host}]` : n.listener.host;
    return `${n.tls === null ? 'nbd' : 'nbds'}://${host}:${port}/${n.exportName}`;
  }

  /** Feeds one client request to the engine; resolves or rejects when it completes it. */
  private request(req: WithoutId<ClientRequest>): Promise<Uint8Array | undefined> {
    const id = this.nextId++;
    if (req.op === 'write') this.stages.received(id); // stage hook: NBD handed it over
    const p = new Promise<Uint8Array | undefined>((resolve, reject) => {
      this.requests.set(id, { resolve, reject });
      this.feed({ type: 'request', req: { ...req, id } as ClientRequest });
    });
    return p;
  }

  // --- the NBD export --------------------------------------------------------------------

  private backend(): NbdExportBackend {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the getter below needs it
    const self = this;
    // The engine refuses requests beyond its queue bound (EAGAIN); the gate keeps the rest
    // waiting in order and the NBD connections stop reading meanwhile. One slot stays free for
    // the flush of a graceful shutdown (quiesce), the only request that bypasses the gate.
    const gate = new AdmissionGate(ENGINE_QUEUED_REQUESTS_MAX - 1, NBD_ADMISSION_WAITING_MAX);
    const submit = (req: WithoutId<ClientRequest>): Promise<Uint8Array | undefined> =>
      gate.run(() => {
        if (this.closing)
          return Promise.reject(
            new NbdCommandError(`${this.name} is shutting down`, NBD_ESHUTDOWN),
          );
        return this.request(req);
      });
    return {
      // Read at each client's handshake: after a resize, new clients see the new size (an
      // NBD client already connected cannot be told; it must reconnect).
      get sizeBytes(): number {
        return self.engine?.cfg.sizeBytes ?? 0;
      },
      readOnly: false,
      blockSizes: {
        minimumBytes: SECTOR_BYTES,
        preferredBytes: BITMAP_BLOCK_BYTES,
        maximumBytes: NBD_PAYLOAD_BYTES_MAX,
      },
      capabilities: {
        flush: true,
        fua: true,
        trim: true,
        writeZeroes: true,
        fastZero: false,
        cache: true,
        multiConn: true,
        blockStatus: false,
      },
      description: `Tandem resource ${this.name} on ${this.svc.node}`,
      unavailable: () => {
        if (!this.up)
          return `${this.name} is down on ${this.svc.node}; run \`tandem up ${this.name}\``;
        if (this.role !== 'Primary') {
          return `${this.name} is Secondary on ${this.svc.node}: only the Primary exports the volume (run \`tandem primary ${this.name}\`)`;
        }
        return undefined;
      },
      admission: gate,
      read: async (offsetBytes, lengthBytes, into) => {
        const data = await submit({
          op: 'read',
          offsetBytes,
          lengthBytes,
          ...(into === undefined ? {} : { into }),
        });
        if (data === undefined) throw new NbdCommandError('read returned no data', NBD_EIO);
        return Buffer.isBuffer(data)
          ? data
          : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      },
      write: async (offsetBytes, chunks, fua) => {
        // The slices the NBD socket delivered go to the disk and the wire as they are.
        await submit({ op: 'write', offsetBytes, data: chunks, fua });
      },
      flush: async () => {
        await submit({ op: 'flush' });
      },
      trim: async (offsetBytes, lengthBytes, fua) => {
        await submit({ op: 'trim', offsetBytes, lengthBytes, fua });
      },
      writeZeroes: async (offsetBytes, lengthBytes, opts) => {
        await submit({ op: 'zeroes', offsetBytes, lengthBytes, fua: opts.fua });
      },
      cache: () => Promise.resolve(),
      blockStatus: (_offsetBytes, lengthBytes): Promise<readonly NbdExtent[]> =>
        Promise.resolve([{ lengthBytes, hole: false, zero: false }]),
    };
  }
}

/** DRBD shows a peer's role and disk only while the handshake has settled the connection. */
function shownRole(p: PeerView): Role {
  return p.conn === 'Connected' ? p.engineRole : 'Unknown';
}

function shownDisk(p: PeerView): DiskState {
  return p.conn === 'Connected' && p.repl !== 'Off' ? p.engineDisk : 'DUnknown';
}

function noteFields(n: Extract<Action, { type: 'note' }>['note']): Record<string, unknown> {
  const { kind: _kind, ...rest } = n;
  return rest;
}

function stringify(o: Record<string, unknown>): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(o)) {
    if (k === 'peer') continue;
    out[k] = typeof v === 'number' || typeof v === 'boolean' ? v : String(v);
  }
  return out;
}
