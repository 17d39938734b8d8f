// The action driver's rules, with scripted engine steps and recording ports: a step's local
// data I/O after its sends; metadata barriers hold later data I/O and DATA sends; a failed
// barrier fails what it held (it never runs: simulator seed 16490) and is answered before
// anything it held moves (the overtaking State: seed 1410); detach waits for I/O under way.
// The LocalDisk port on real files is checked at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Driver, type DriverBug, type IoDone } from '../../src/replication/driver.js';
import type { EngineState } from '../../src/replication/engine.js';
import type { Errno } from '../../src/util/errno.js';
import type { Action, EngineEvent, Packet } from '../../src/replication/types.js';
import { LocalDisk } from '../../src/daemon/disk.js';
import { pendingDiskPort } from '../support/pending-disk.js';
import { MetadataStore, openBackingDevices } from '../../src/storage/index.js';
import { silentLogger } from '../../src/platform/log.js';

const DATA: Packet = {
  kind: 'Data',
  seq: 1,
  epoch: 1,
  op: 'write',
  offsetBytes: 0,
  lengthBytes: 4096,
  fua: false,
  ack: 'write',
  peerSeq: 0,
  data: [new Uint8Array(4096)],
};
const STATE: Packet = { kind: 'State', role: 'Secondary', disk: 'Diskless' };

/** A world where nothing answers until the test says so. */
class World {
  readonly log: string[] = [];
  readonly pending: { what: string; done: IoDone }[] = [];
  readonly deferred: (() => void)[] = [];
  fed: EngineEvent[] = [];
  /** What the scripted engine answers to each event, by event type. */
  script: (ev: EngineEvent) => Action[] = () => [];
  conn: unknown = 'c1';
  driver: Driver;

  constructor(bug?: DriverBug) {
    const disk = pendingDiskPort(this.pending, (what) =>
      this.log.push(what.startsWith('bitmap') ? what : `issue ${what}`),
    );
    this.driver = new Driver(
      {} as EngineState,
      {
        disk,
        net: {
          connection: () => this.conn,
          send: (_p, stream, packet, conn) => {
            if (conn === undefined || conn === this.conn)
              this.log.push(`send ${stream} ${packet.kind}`);
            else this.log.push(`drop ${packet.kind}`);
          },
          connect: () => undefined,
          disconnect: () => undefined,
        },
        clock: {
          nowMs: () => 0,
          setTimeout: () => ({ cancel: () => undefined }),
          defer: (fn) => this.deferred.push(fn),
        },
        host: {
          complete: () => undefined,
          adminResult: () => undefined,
          stateChange: () => undefined,
          fencePeer: () => undefined,
          unfencePeer: () => undefined,
          note: () => undefined,
          diskFailed: (errno) => {
            this.log.push(`diskFailed ${errno}`);
            this.driver.feed({ type: 'admin', cmdId: 99, command: { cmd: 'detach' } });
          },
        },
      },
      {
        ...(bug !== undefined ? { plantedBug: bug } : {}),
        step: (s, ev) => {
          this.fed.push(ev);
          return { state: s, actions: this.script(ev) };
        },
      },
    );
  }

  /** Answers the oldest I/O the disk port holds. */
  answer(errno: Errno | null = null): string {
    const p = this.pending.shift();
    assert.ok(p !== undefined, 'an I/O is pending');
    p.done(errno);
    return p.what;
  }

  runDeferred(): void {
    for (let f = this.deferred.shift(); f !== undefined; f = this.deferred.shift()) f();
  }

  request(actions: Action[]): void {
    this.script = () => actions;
    this.driver.feed({ type: 'timer', timerId: 1, nowMs: 0 });
    this.script = () => [];
  }
}

const write = (ioId: number, offsetBytes = 0): Action => ({
  type: 'diskWrite',
  ioId,
  offsetBytes,
  data: [new Uint8Array(4096)],
  fua: false,
});
const sendData: Action = { type: 'send', peer: 2, stream: 'data', packet: DATA };

test('a step puts its sends on the wire before its local data I/O', () => {
  const w = new World();
  w.request([write(1), sendData, { type: 'send', peer: 2, stream: 'control', packet: STATE }]);
  assert.deepEqual(w.log, ['send data Data', 'send control State', 'issue write@0']);
});

test('a barrier holds later data I/O and DATA sends, and releases them in order', () => {
  const w = new World();
  w.request([{ type: 'alCommit', add: [3], remove: [] }, write(1), sendData]);
  // An AL transaction that only adds extents does not flush the data first.
  assert.deepEqual(w.log, ['issue meta:alCommit']);
  w.request([write(2, 4096)]);
  assert.equal(w.log.length, 1, 'a later write waits behind the held ones');
  w.answer();
  assert.deepEqual(w.log.slice(1), ['send data Data', 'issue write@0', 'issue write@4096']);
});

test('a barrier that drops an extent flushes the data disk first', () => {
  const w = new World();
  w.request([{ type: 'alCommit', add: [3], remove: [1] }]);
  assert.deepEqual(w.log, ['issue flush']);
  w.answer();
  assert.deepEqual(w.log, ['issue flush', 'issue meta:alCommit']);
  const skipping = new World('meta-skips-flush');
  skipping.request([{ type: 'bitmapFlush' }]);
  assert.deepEqual(skipping.log, ['issue meta:bitmapFlush'], 'the planted bug skips the flush');
});

test('a failed barrier is answered first; what it held fails without running, DATA goes after the State', () => {
  const w = new World();
  w.request([{ type: 'alCommit', add: [3], remove: [] }, write(1), sendData]);
  // The engine answers the detach with an overtaking State (and, here, a barrier of its own).
  w.script = (ev) =>
    ev.type === 'admin'
      ? [
          { type: 'send', peer: 2, stream: 'data', packet: STATE, overtake: true },
          { type: 'persistMeta', meta: {} as never },
        ]
      : [];
  w.answer('EIO');
  assert.deepEqual(w.log, [
    'issue meta:alCommit',
    'diskFailed EIO',
    'send data State',
    'send data Data',
  ]);
  assert.equal(w.pending.length, 0, 'neither the held write nor the failed disk ran anything');
  w.runDeferred();
  const done = w.fed.filter((e) => e.type === 'diskDone');
  assert.deepEqual(done, [{ type: 'diskDone', ioId: 1, ok: false, errno: 'EIO' }]);
  assert.equal(w.driver.diskFailure, 'EIO');
  // Later I/O fails too, until a disk is attached again.
  w.request([write(2)]);
  w.runDeferred();
  assert.deepEqual(w.fed.at(-1), { type: 'diskDone', ioId: 2, ok: false, errno: 'EIO' });
  assert.equal(w.pending.length, 0);
});

test('planted: the old order releases the held DATA before the State', () => {
  const w = new World('state-behind-held-data');
  w.request([{ type: 'alCommit', add: [3], remove: [] }, write(1), sendData]);
  w.script = (ev) =>
    ev.type === 'admin'
      ? [{ type: 'send', peer: 2, stream: 'data', packet: STATE, overtake: true }]
      : [];
  w.answer('EIO');
  assert.deepEqual(w.log.slice(1), ['send data Data', 'diskFailed EIO', 'send data State']);
});

test('a DATA send held for a connection that was replaced is dropped', () => {
  const w = new World();
  w.request([{ type: 'bitmapFlush' }, sendData]);
  w.conn = 'c2';
  w.answer(); // the flush
  w.answer(); // the bitmap write
  assert.deepEqual(w.log.slice(-1), ['drop Data']);
});

test('a bit cleared while a barrier runs reaches the port after it, in order with sets', () => {
  // Simulator seed 500000946: a SyncTarget's resync write completed after the bitmap barrier's
  // data flush was issued; its cleared bit rode along in the bitmap write, the power loss kept
  // the bit and lost the data, and no bitmap marked the block any more.
  const w = new World();
  const clear: Action = { type: 'bitmapClear', peer: 2, ranges: [{ start: 7, count: 1 }] };
  const set: Action = { type: 'bitmapSet', peer: 2, ranges: [{ start: 7, count: 1 }] };
  w.request([clear]);
  assert.deepEqual(w.log, ['bitmapClear'], 'with no barrier running it applies at once');
  w.request([{ type: 'bitmapFlush' }]);
  w.request([clear, set]);
  assert.deepEqual(w.log.slice(1), ['issue flush'], 'they wait while the flush runs');
  w.answer(); // the data flush
  w.request([clear]);
  assert.deepEqual(w.log.slice(1), ['issue flush', 'issue meta:bitmapFlush'], 'and the write');
  w.answer(); // the bitmap write
  assert.deepEqual(w.log.slice(3), ['bitmapClear', 'bitmapSet', 'bitmapClear']);
});

test('a bitmap change a barrier holds reaches its disk when the driver stops or detaches first', () => {
  // A clean close (down, detach) writes the whole bitmap after the barriers under way answered;
  // a change dropped with the stop would be missing from it, with the AL marked clean.
  for (const leave of ['stop', 'detach'] as const) {
    const w = new World();
    w.request([{ type: 'bitmapFlush' }]);
    w.request([{ type: 'bitmapSet', peer: 2, ranges: [{ start: 9, count: 1 }] }]);
    if (leave === 'stop') w.driver.stop();
    else w.driver.detachDisk(() => undefined);
    assert.deepEqual(w.log, ['issue flush'], leave);
    w.answer(); // the flush: a stopped driver writes no more metadata
    if (leave === 'detach') w.answer(); // a detached one finishes the barrier it had begun
    assert.equal(w.log.at(-1), 'bitmapSet', `${leave}: the change reached the disk`);
  }
});

test('detachDisk waits for the I/O under way; new I/O gets ENODEV', () => {
  const w = new World();
  w.request([write(1)]);
  let detached: boolean | null = null;
  w.driver.detachDisk((failed) => (detached = failed));
  w.runDeferred();
  assert.equal(detached, null, 'a write is still running');
  w.request([write(2)]);
  w.runDeferred();
  assert.deepEqual(w.fed.at(-1), { type: 'diskDone', ioId: 2, ok: false, errno: 'ENODEV' });
  w.answer();
  assert.equal(detached, false);
});

async function freshDisk(t: { after: (f: () => Promise<void>) => void }): Promise<LocalDisk> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-localdisk-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'disk.img');
  await writeFile(path, '');
  await truncate(path, 16 * 1024 * 1024);
  const dev = await openBackingDevices(path, { kind: 'internal' });
  try {
    await MetadataStore.create(dev.meta, { ...dev.placement, maxPeers: 1, nodeId: 0 });
  } finally {
    await dev.close();
  }
  return LocalDisk.open(path, null, 0, [1], 61);
}

test('the LocalDisk port answers asynchronously, with errnos, on real files', async (t) => {
  const disk = await freshDisk(t);
  const port = disk.port(silentLogger);
  const call = (f: (done: IoDone) => void): Promise<[string | null, Uint8Array | undefined]> =>
    new Promise((resolve) => {
      let sync = true;
      f((errno, data) => {
        assert.equal(sync, false, 'never answered synchronously');
        resolve([errno, data]);
      });
      sync = false;
    });
  const payload = new Uint8Array(4096).fill(7);
  // Scatter-gather, as the NBD socket delivers it: the disk gets the concatenation.
  const parts = [payload.subarray(0, 1000), payload.subarray(1000)];
  assert.deepEqual(await call((d) => port.write(4096, parts, true, d)), [null, undefined]);
  const [err, got] = await call((d) => port.read(4096, 4096, d));
  assert.equal(err, null);
  assert.deepEqual(got, Buffer.from(payload));
  assert.deepEqual(await call((d) => port.writeMeta({ type: 'bitmapFlush' }, d)), [
    null,
    undefined,
  ]);
  const [rangeErr] = await call((d) => port.read(disk.sizeBytes, 4096, d));
  assert.ok(rangeErr !== null, 'a read past the end fails with an errno');
  await disk.close();
});
