// A hand-driven two-node harness for scenario tests: engines, FIFO links carrying wire-encoded
// packets, in-memory disks with a cache. Nothing moves until the test says so (deliver one
// packet, complete disk I/O, settle everything), so a test can pin an exact interleaving.
import { BITMAP_BLOCK_BYTES } from '../../src/limits.js';
import { Bitmap } from '../../src/replication/bitmap.js';
import {
  checkInvariants,
  createEngine,
  step,
  type EngineState,
} from '../../src/replication/engine.js';
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
import { fnvDigest } from './cluster.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export const BLOCK = BITMAP_BLOCK_BYTES;
export const SIZE = 64 * BLOCK;

export interface HNode {
  readonly id: number;
  readonly name: string;
  readonly peer: number;
  engine: EngineState;
  readonly disk: SimDisk;
  meta: Metadata;
  pbitmap: Bitmap;
  pal: Set<number>;
  readonly pendingIo: { ioId: number; run: () => EngineEvent }[];
  readonly completions: Map<number, { ok: boolean; errno?: string; data?: Uint8Array }>;
  readonly admin: { ok: boolean; message: string }[];
  readonly notes: EngineNote[];
  readonly sent: Packet[];
  failNextIo: boolean;
  /** diskFlush actions the engine emitted (epoch and client flushes). */
  flushIos: number;
  /** What a capacity probe reports (the backing device's room for data). @default SIZE */
  capacityBytes: number;
  /** fencePeer actions not answered yet (the test answers with fencePeerDone). */
  readonly fences: { peer: number; token: number }[];
  /** unfencePeer actions, by peer. */
  readonly unfences: number[];
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
  private cmd = 1;
  private req = 1;
  readonly log: string[] = [];

  constructor(over: Partial<EngineConfig> = {}, overB: Partial<EngineConfig> = {}) {
    this.a = this.makeNode(1, 'alpha', 2, over);
    this.b = this.makeNode(2, 'bravo', 1, { ...over, ...overB });
  }

  private makeNode(id: number, name: string, peer: number, over: Partial<EngineConfig>): HNode {
    const meta: Metadata = {
      currentUuid: UUID_JUST_CREATED,
      bitmapUuids: { [peer]: 0n },
      historyUuids: [],
      flags: { consistent: false, wasUpToDate: false, crashedPrimary: false },
    };
    const n: HNode = {
      id,
      name,
      peer,
      engine: undefined as unknown as EngineState,
      disk: new SimDisk(SIZE),
      meta,
      pbitmap: new Bitmap(SIZE / BLOCK),
      pal: new Set(),
      pendingIo: [],
      completions: new Map(),
      admin: [],
      notes: [],
      sent: [],
      failNextIo: false,
      flushIos: 0,
      capacityBytes: SIZE,
      fences: [],
      unfences: [],
    };
    const r = createEngine(baseConfig(id, over), this.boot(n));
    n.engine = r.state;
    this.apply(n, r.actions);
    return n;
  }

  boot(n: HNode): BootState {
    return { meta: n.meta, bitmaps: { [n.peer]: n.pbitmap.ranges() }, alExtents: [...n.pal] };
  }

  node(id: number): HNode {
    return id === 1 ? this.a : this.b;
  }

  /** Restarts a node from what its disk and metadata hold (after crash() or cleanly). */
  restart(n: HNode, over: Partial<EngineConfig> = {}): void {
    n.pendingIo.length = 0;
    const r = createEngine(baseConfig(n.id, over), this.boot(n));
    n.engine = r.state;
    this.apply(n, r.actions);
  }

  step(n: HNode, ev: EngineEvent): void {
    const r = step(n.engine, ev);
    checkInvariants(n.engine);
    this.apply(n, r.actions);
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
      data: new Uint8Array(blocks * BLOCK).fill(fill),
      fua,
    });
  }

  private apply(n: HNode, actions: readonly Action[]): void {
    for (const a of actions) this.applyOne(n, a);
  }

  private applyOne(n: HNode, a: Action): void {
    switch (a.type) {
      case 'diskRead':
        n.pendingIo.push({
          ioId: a.ioId,
          run: () => ({
            type: 'diskDone',
            ioId: a.ioId,
            ok: true,
            data: n.disk.read(a.offsetBytes, a.lengthBytes),
          }),
        });
        return;
      case 'diskWrite':
      case 'diskZeroes':
      case 'diskTrim': {
        const data =
          a.type === 'diskWrite' ? new Uint8Array(a.data) : new Uint8Array(a.lengthBytes);
        const fua = a.type === 'diskTrim' ? false : a.fua;
        n.pendingIo.push({
          ioId: a.ioId,
          run: () => {
            n.disk.write(a.offsetBytes, data, fua);
            return { type: 'diskDone', ioId: a.ioId, ok: true };
          },
        });
        return;
      }
      case 'diskFlush':
        n.flushIos++;
        n.pendingIo.push({
          ioId: a.ioId,
          run: () => {
            n.disk.flush();
            return { type: 'diskDone', ioId: a.ioId, ok: true };
          },
        });
        return;
      case 'persistMeta':
        n.disk.flush();
        n.meta = a.meta;
        return;
      case 'alCommit':
        n.disk.flush();
        for (const e of a.remove) n.pal.delete(e);
        for (const e of a.add) n.pal.add(e);
        return;
      case 'bitmapSet':
      case 'bitmapClear':
        return;
      case 'bitmapFlush': {
        n.disk.flush();
        const bm = new Bitmap(n.engine.blocks);
        for (const r of n.engine.bitmaps.get(n.peer)?.ranges() ?? []) bm.set(r);
        n.pbitmap = bm;
        return;
      }
      case 'send':
        n.sent.push(a.packet);
        if (this.connected) this.queue(n.id, a.stream).push(Buffer.concat(encodePacket(a.packet)));
        return;
      case 'connect':
      case 'disconnect':
      case 'setTimer':
      case 'cancelTimer':
      case 'stateChange':
        return;
      case 'complete':
        n.completions.set(
          a.reqId,
          a.ok
            ? { ok: true, ...(a.data !== undefined ? { data: a.data } : {}) }
            : { ok: false, errno: a.errno },
        );
        return;
      case 'adminResult':
        n.admin.push({ ok: a.ok, message: a.message });
        return;
      // Storage jobs complete like disk I/O: when the test lets them.
      case 'probeCapacity':
        n.pendingIo.push({
          ioId: -1,
          run: () => ({
            type: 'capacity',
            token: a.token,
            capacityBytes: n.capacityBytes,
            refusal: 'none',
          }),
        });
        return;
      case 'growDisk':
        n.pendingIo.push({
          ioId: -1,
          run: () => ({ type: 'diskGrown', token: a.token, ok: a.sizeBytes <= n.capacityBytes }),
        });
        return;
      case 'fencePeer':
        n.fences.push({ peer: a.peer, token: a.token });
        return;
      case 'unfencePeer':
        n.unfences.push(a.peer);
        return;
      case 'note':
        n.notes.push(a.note);
        this.log.push(`${n.name}: ${JSON.stringify(a.note)}`);
        return;
    }
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

  /** Power loss of one node: in-flight packets vanish, the peer sees the link drop, the
   *  node's disk keeps a seeded part of its cache, and it restarts from its metadata. */
  crash(n: HNode, seed = 1): void {
    this.connected = false;
    this.links.clear();
    const other = n === this.a ? this.b : this.a;
    this.step(other, { type: 'connClosed', peer: n.id });
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

  /** Completes the newest pending disk I/O of a node (a disk may reorder); false if none. */
  completeNewestIo(n: HNode): boolean {
    const io = n.pendingIo.pop();
    if (io === undefined) return false;
    this.step(n, io.run());
    return true;
  }

  /** Completes the oldest pending disk I/O of a node; false if none. */
  completeIo(n: HNode): boolean {
    const io = n.pendingIo.shift();
    if (io === undefined) return false;
    if (n.failNextIo) {
      n.failNextIo = false;
      this.step(n, { type: 'diskDone', ioId: io.ioId, ok: false, errno: 'EIO' });
      return true;
    }
    this.step(n, io.run());
    return true;
  }

  /** Fires every resync timer (one controller tick). */
  tick(): void {
    for (const n of [this.a, this.b])
      for (const id of [...n.engine.timers.keys()]) this.step(n, { type: 'timer', timerId: id });
  }

  /** Runs until nothing moves: packets, disk I/O and (if `ticks`) resync timer ticks. */
  settle(ticks = 200): void {
    for (let round = 0; round < 100_000; round++) {
      let moved = false;
      for (const from of [1, 2])
        for (const st of ['control', 'data'] as const) while (this.deliver(from, st)) moved = true;
      for (const n of [this.a, this.b]) while (this.completeIo(n)) moved = true;
      if (!moved) {
        if (ticks <= 0 || (this.a.engine.timers.size === 0 && this.b.engine.timers.size === 0))
          return;
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
