// A Primary whose disk fails inside an activity-log transaction must tell the peer its disk is
// gone before the peer gets the Data of the write that waited for it: that write never lands
// here and no AL covers it, so the peer has to mark it durably before writing it. The detach's
// State overtakes the DATA sends the failed barrier held (Action `overtake`). Pins simulator
// seed 1410 (the peer crashed before persisting the mark of a write it had received before
// the State) and its link-drop variant (the mark never sent).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { step } from '../../src/replication/engine.js';
import type { Action, Packet } from '../../src/replication/types.js';
import { decodePacket, encodePacket } from '../../src/replication/wire.js';
import { BLOCK, Pair, type HNode } from '../sim/harness.js';

const COLD_BLOCK = 40; // extent 2 (16-block extents): not in alpha's activity log yet

const blockOf = (n: HNode, b: number): number => n.disk.read(b * BLOCK, BLOCK)[0] ?? -1;

function onWire(pk: Packet): Packet {
  const d = decodePacket(Buffer.concat(encodePacket(pk)));
  if (!d.ok) throw new Error(d.error.message);
  return d.value;
}

type Send = Extract<Action, { type: 'send' }>;
const sends = (actions: readonly Action[]): Send[] =>
  actions.filter((a): a is Send => a.type === 'send');

/**
 * alpha writes into a cold extent; the AL transaction the write waits for fails (the driver
 * holds the write's Data behind it and answers the failure with a detach). Returns the packets
 * as the driver puts them on the DATA stream: overtaking sends first, then the held ones.
 */
function failInsideAlTransaction(p: Pair): { wire: Packet[]; reqId: number } {
  const reqId = 900;
  const w = step(p.a.engine, {
    type: 'request',
    req: {
      op: 'write',
      id: reqId,
      offsetBytes: COLD_BLOCK * BLOCK,
      data: [new Uint8Array(BLOCK).fill(0x77)],
      fua: true,
    },
  }).actions;
  const al = w.findIndex((a) => a.type === 'alCommit');
  const data = w.findIndex((a) => a.type === 'send' && a.packet.kind === 'Data');
  assert.ok(al >= 0 && data > al, 'the Data follows the AL transaction it needs');
  const held = sends(w).filter((a) => a.stream === 'data');
  // The barrier fails: nothing of it reaches alpha's disk; the detach is answered first.
  const d = step(p.a.engine, { type: 'admin', cmdId: 901, command: { cmd: 'detach' } }).actions;
  assert.equal(p.a.engine.disk, 'Diskless');
  const fromDetach = sends(d).filter((a) => a.stream === 'data');
  const overtaking = fromDetach.filter((a) => a.overtake === true);
  assert.deepEqual(
    overtaking.map((a) => a.packet),
    [{ kind: 'State', role: 'Primary', disk: 'Diskless' }],
    'only the State saying the disk is gone overtakes',
  );
  const rest = fromDetach.filter((a) => a.overtake !== true);
  return { wire: [...overtaking, ...held, ...rest].map((a) => onWire(a.packet)), reqId };
}

function deliverToBravo(p: Pair, pk: Packet): void {
  p.step(p.b, { type: 'packet', peer: 1, packet: pk });
}

/** alpha re-attaches its disk (its AL never got the cold extent) and syncs from bravo. */
function reattachAndCheck(p: Pair): void {
  assert.equal(p.a.pal.has(2), false, 'the failed AL transaction never reached alpha');
  if (!p.connected) {
    p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
    p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
    p.connect();
    p.settle();
  }
  if (p.a.engine.peers.get(2)?.conn === 'StandAlone') {
    // bravo's new generation (made when alpha's disk went) never reached Diskless alpha, or
    // bravo lost it: as DRBD, a Diskless Primary connects only to the generation it exposes.
    // The operator demotes it; as a Secondary it connects and attaches.
    assert.ok(p.a.notes.some((n) => n.kind === 'handshake' && n.rule === 'diskless-stale-data'));
    p.cut();
    assert.equal(p.adminCmd(p.a, { cmd: 'secondary' }).ok, true);
    p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
    p.connect();
    p.settle();
  }
  assert.equal(p.adminCmd(p.a, { cmd: 'attach', boot: p.boot(p.a) }).ok, true);
  p.settle();
  assert.equal(p.a.engine.disk, 'UpToDate');
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(p.oos(p.a) + p.oos(p.b), 0);
  assert.equal(blockOf(p.a, COLD_BLOCK), 0x77, 'the resync brought the write back');
  assert.ok(p.identical());
}

test('the peer marks the held write before it lands: a crash of the peer keeps the mark', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 1, 0x11);
  p.settle();
  const { wire } = failInsideAlTransaction(p);
  assert.equal(wire[0]?.kind, 'State');
  const data = wire.findIndex((pk) => pk.kind === 'Data');
  for (const pk of wire.slice(0, data + 1)) deliverToBravo(p, pk);
  // bravo's bitmap on disk holds the block before the write is even issued: the write waits
  // behind the bitmap's metadata barrier, which completes first here.
  assert.ok(p.b.pendingOf(['meta-flush', 'meta']) > 0, 'the mark is being written');
  assert.equal(p.b.pendingOf(['write']), 0, 'the write is held behind the mark');
  p.completeMeta(p.b);
  assert.ok(p.b.pbitmap.test(COLD_BLOCK), 'the mark is durable before the write lands');
  assert.equal(p.b.pendingOf(['write']), 1, 'the write itself has not completed yet');
  // bravo writes the block to its cache, then loses power; it restarts from its metadata.
  while (p.completeIo(p.b));
  p.crash(p.b, 5);
  assert.ok(p.b.pbitmap.test(COLD_BLOCK));
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  reattachAndCheck(p);
});

test('the link drops after the held Data, before the OutOfSync: the block is still marked', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 1, 0x11);
  p.settle();
  const { wire } = failInsideAlTransaction(p);
  const data = wire.findIndex((pk) => pk.kind === 'Data');
  assert.ok(wire.slice(data + 1).some((pk) => pk.kind === 'OutOfSync'));
  for (const pk of wire.slice(0, data + 1)) deliverToBravo(p, pk);
  while (p.completeIo(p.b));
  p.cut();
  assert.ok(p.oos(p.b) >= 1, 'bravo marked the block on the Data alone');
  reattachAndCheck(p);
});

test('the old order (Data before State) leaves the block unmarked: why State overtakes', () => {
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 1, 0x11);
  p.settle();
  const { wire } = failInsideAlTransaction(p);
  const data = wire.find((pk) => pk.kind === 'Data');
  assert.ok(data !== undefined);
  deliverToBravo(p, data);
  while (p.completeIo(p.b));
  assert.equal(p.oos(p.b), 0, 'a Data from a Primary with a disk is not marked');
  assert.equal(blockOf(p.b, COLD_BLOCK), 0x77);
});

test('a State overtaken by the detach (held behind the failed barrier) is ignored when it lands', () => {
  // Simulator seed 61001464: bravo's "UpToDate" (sent as its resync finished) waited behind a
  // metadata barrier; the barrier failed, the detach's State (Diskless) overtook it, and the
  // stale one arrived last: alpha counted a Diskless node as an UpToDate copy.
  const p = Pair.initialized({ protocol: 'C' });
  assert.equal(p.adminCmd(p.b, { cmd: 'detach' }).ok, true);
  p.settle();
  assert.equal(p.peerOf(p.a).disk, 'Diskless');
  p.step(p.a, {
    type: 'packet',
    peer: 2,
    packet: onWire({ kind: 'State', role: 'Secondary', disk: 'UpToDate' }),
  });
  assert.equal(p.peerOf(p.a).disk, 'Diskless', 'a disk comes back only through attach');
  p.write(p.a, 3, 0x33);
  p.settle();
  assert.ok(p.oos(p.a) >= 1, 'writes are still marked for the Diskless peer');
  assert.equal(p.adminCmd(p.b, { cmd: 'attach', boot: p.boot(p.b) }).ok, true);
  p.settle();
  assert.equal(p.peerOf(p.a).disk, 'UpToDate');
  assert.ok(p.identical());
});

/** The packets waiting on a link, decoded, without delivering them. */
function onLink(p: Pair, key: string): Packet[] {
  return (p.links.get(key) ?? []).map(onWireBytes);
}

function onWireBytes(bytes: Uint8Array): Packet {
  const d = decodePacket(bytes);
  if (!d.ok) throw new Error(d.error.message);
  return d.value;
}

test("through the harness's driver: the failed AL transaction is answered first, its State goes before the held Data", () => {
  // The first test's scenario with the order the driver really produces: the write's Data
  // waits behind the AL transaction, the transaction fails, the detach answers it.
  const p = Pair.initialized({ protocol: 'C' });
  p.write(p.a, 1, 0x11);
  p.settle();
  p.write(p.a, COLD_BLOCK, 0x77, 1, true);
  assert.deepEqual(
    p.a.pendingIo.map((io) => io.kind),
    ['meta'],
    'the AL transaction runs; the write waits for it',
  );
  assert.deepEqual(onLink(p, '1:data'), [], 'and so does its Data');
  p.a.failNextMeta = true;
  assert.equal(p.completeMeta(p.a), 1);
  assert.equal(p.a.engine.disk, 'Diskless');
  const wire = onLink(p, '1:data');
  assert.deepEqual(wire[0], { kind: 'State', role: 'Primary', disk: 'Diskless' });
  assert.equal(wire[1]?.kind, 'Data');
  assert.equal(p.a.pendingOf(['write']), 0, 'the held write never reached the failed disk');
  // bravo hears the State, then the Data: the mark is durable before the write is issued.
  p.deliver(1, 'data');
  p.deliver(1, 'data');
  assert.equal(p.b.pendingOf(['write']), 0, 'the write is held behind the mark');
  p.completeMeta(p.b);
  assert.ok(p.b.pbitmap.test(COLD_BLOCK), 'the mark is durable');
  while (p.completeIo(p.b));
  p.crash(p.b, 5);
  assert.ok(p.b.pbitmap.test(COLD_BLOCK));
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  reattachAndCheck(p);
});

test('a peer whose disk goes during the bitmap exchange gets no resync, and no write waits for it', () => {
  // Simulator seed 920002561: bravo's metadata write failed right after the handshake; its
  // State (Diskless) overtook its Bitmap, alpha took the State while no resync had started
  // (repl still Off) and kept the sync pending; the Bitmap then made alpha SyncSource of a
  // Diskless peer, and a write replicated meanwhile waited forever in the transfer log for a
  // BarrierAck a Diskless node never sends.
  const p = Pair.initialized({ protocol: 'B', onIoError: 'pass_on' }, { onIoError: 'pass_on' });
  p.cut();
  p.write(p.a, 5, 0x55);
  p.settle();
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  while (p.deliver(1) || p.deliver(2)); // handshakes; bravo's Bitmap waits behind its barrier
  assert.ok(p.b.pendingOf(['meta', 'meta-flush']) > 0, "bravo's metadata write is pending");
  assert.equal(p.peerOf(p.a).repl, 'Off', 'no resync yet');
  p.b.failNextMeta = true;
  p.completeMeta(p.b, 1);
  assert.equal(p.b.engine.disk, 'Diskless');
  const w = p.write(p.a, 9, 0x99); // replicated to bravo while alpha still waits for its Bitmap
  p.settle();
  assert.equal(p.a.completions.get(w)?.ok, true);
  assert.equal(p.peerOf(p.a).disk, 'Diskless');
  assert.equal(p.peerOf(p.a).repl, 'Established', 'no resync to a Diskless peer');
  assert.equal(p.a.engine.peers.get(2)?.tl.size, 0, 'nothing waits for a BarrierAck');
  assert.ok(p.a.engine.bitmaps.get(2)?.test(9), 'the write is marked for bravo instead');
  const f = p.request(p.a, { op: 'flush' });
  p.settle();
  assert.deepEqual(p.a.completions.get(f), { ok: true });
});
