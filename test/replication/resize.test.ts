// Online resize in the engine (drbdadm resize): the initiator asks its peers how much room they
// have, grows them first and itself last, and resyncs the new area unless assume-clean. Pins
// the refusals too: a shrink, a --size that does not fit, a Secondary next to a Primary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BLOCK, Pair, SIZE, type HNode } from '../sim/harness.js';
import type { AdminCommand } from '../../src/replication/types.js';

const resize = (
  sizeBytes: number | null,
  capacityBytes: number,
  assumeClean = false,
): AdminCommand => ({ cmd: 'resize', sizeBytes, capacityBytes, refusal: 'none', assumeClean });

/** Runs an admin command to its answer (resize needs packets and storage jobs to move). */
function run(p: Pair, n: HNode, c: AdminCommand): { ok: boolean; message: string } {
  const before = n.admin.length;
  p.adminCmd(n, c);
  p.settle();
  const r = n.admin[before];
  assert.ok(r !== undefined, 'the command was answered');
  return r;
}

const sizeOf = (n: HNode): number => n.engine.cfg.sizeBytes;

test('resize grows both nodes to the smaller capacity and resyncs the new area', () => {
  const p = Pair.initialized();
  p.a.capacityBytes = 3 * SIZE;
  p.b.capacityBytes = 2 * SIZE;
  // What the new area holds before the resize differs between the nodes: the resync fixes it.
  p.a.disk.write(SIZE, new Uint8Array(SIZE).fill(0x77), true);
  const r = run(p, p.a, resize(null, p.a.capacityBytes));
  assert.equal(r.ok, true, r.message);
  assert.match(r.message, /grown from \d+ to \d+ bytes/);
  assert.equal(sizeOf(p.a), 2 * SIZE);
  assert.equal(sizeOf(p.b), 2 * SIZE);
  assert.equal(p.oos(p.a), 0);
  assert.equal(p.oos(p.b), 0);
  assert.deepEqual(p.peerOf(p.a), {
    conn: 'Connected',
    repl: 'Established',
    disk: 'UpToDate',
    role: 'Secondary',
  });
  assert.equal(p.b.engine.disk, 'UpToDate');
  assert.equal(
    Buffer.compare(p.a.disk.read(0, 2 * SIZE), p.b.disk.read(0, 2 * SIZE)),
    0,
    'both disks hold the same bytes over the new size',
  );
  assert.ok(p.a.notes.some((n) => n.kind === 'resized'));
  // The new area takes writes and replicates them.
  const id = p.write(p.a, SIZE / BLOCK + 3, 0x42);
  p.settle();
  assert.equal(p.a.completions.get(id)?.ok, true);
  assert.equal(p.b.disk.read(SIZE + 3 * BLOCK, 1)[0], 0x42);
});

test('resize --size grows to the size asked; --assume-clean skips the resync', () => {
  const p = Pair.initialized();
  p.a.capacityBytes = p.b.capacityBytes = 4 * SIZE;
  const r = run(p, p.a, resize(2 * SIZE, 4 * SIZE, true));
  assert.equal(r.ok, true, r.message);
  assert.equal(sizeOf(p.a), 2 * SIZE);
  assert.equal(sizeOf(p.b), 2 * SIZE);
  assert.equal(p.oos(p.a), 0);
  assert.equal(
    p.a.notes.filter((n) => n.kind === 'resync-started').length,
    0,
    'no resync after the initial one',
  );
});

test('resize refuses a shrink, a size that does not fit, and a Secondary next to a Primary', () => {
  const p = Pair.initialized();
  p.a.capacityBytes = 2 * SIZE;
  p.b.capacityBytes = SIZE + 4 * BLOCK;
  let r = run(p, p.a, resize(2 * SIZE, 2 * SIZE));
  assert.equal(r.ok, false);
  assert.match(r.message, /does not fit: peer bravo has room for/);
  r = run(p, p.a, resize(SIZE / 2, 2 * SIZE));
  assert.equal(r.ok, false);
  assert.match(r.message, /smaller than the device.*shrinking is not supported/);
  p.b.capacityBytes = SIZE - 4 * BLOCK;
  r = run(p, p.a, resize(null, 2 * SIZE));
  assert.equal(r.ok, false);
  assert.match(r.message, /peer bravo has room for only/);
  r = run(p, p.b, resize(null, 2 * SIZE));
  assert.equal(r.ok, false);
  assert.match(r.message, /peer alpha is Primary; resize runs on the Primary/);
  assert.equal(sizeOf(p.a), SIZE, 'nothing changed');
  assert.equal(sizeOf(p.b), SIZE);
  p.b.capacityBytes = SIZE;
  r = run(p, p.a, resize(null, SIZE));
  assert.equal(r.ok, true);
  assert.match(r.message, /already/);
});

test('a node alone grows with the new area marked; the peer grows alone; connect resyncs it', () => {
  const p = Pair.initialized();
  p.adminCmd(p.a, { cmd: 'disconnect', peer: 2 });
  p.adminCmd(p.b, { cmd: 'disconnect', peer: 1 });
  p.cut();
  p.settle();
  p.a.capacityBytes = p.b.capacityBytes = 2 * SIZE;
  p.a.disk.write(SIZE, new Uint8Array(BLOCK).fill(0x99), true);
  const alone = run(p, p.a, resize(null, 2 * SIZE));
  assert.equal(alone.ok, false);
  assert.match(alone.message, /not connected; growing alone needs an explicit size/);
  assert.equal(run(p, p.a, resize(2 * SIZE, 2 * SIZE)).ok, true);
  assert.equal(p.oos(p.a), SIZE / BLOCK, 'the new area is out of sync for the absent peer');
  assert.equal(run(p, p.b, resize(2 * SIZE, 2 * SIZE)).ok, true);
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.equal(p.peerOf(p.a).repl, 'Established');
  assert.equal(p.oos(p.a), 0);
  assert.equal(p.b.disk.read(SIZE, 1)[0], 0x99, 'the Primary was the sync source');
});

test('a peer of a different size is refused at the handshake and named as such', () => {
  const p = Pair.initialized();
  p.adminCmd(p.a, { cmd: 'disconnect', peer: 2 });
  p.adminCmd(p.b, { cmd: 'disconnect', peer: 1 });
  p.cut();
  p.a.capacityBytes = 2 * SIZE;
  assert.equal(run(p, p.a, resize(2 * SIZE, 2 * SIZE)).ok, true);
  p.adminCmd(p.a, { cmd: 'connect', peer: 2, discardMyData: false });
  p.adminCmd(p.b, { cmd: 'connect', peer: 1, discardMyData: false });
  p.connect();
  p.settle();
  assert.ok(
    p.a.notes.some((n) => n.kind === 'handshake' && n.rule.startsWith('size-mismatch')),
    'the note names the size mismatch',
  );
  assert.equal(p.peerOf(p.a).conn, 'StandAlone');
});

test('reconfigure changes resync options live and the protocol only while disconnected', () => {
  const p = Pair.initialized();
  const resync = { ...p.a.engine.cfg.resync, resyncRateBytesPerSec: 12345 };
  let r = run(p, p.a, { cmd: 'reconfigure', options: { resync } });
  assert.equal(r.ok, true);
  assert.equal(p.a.engine.cfg.resync.resyncRateBytesPerSec, 12345);
  r = run(p, p.a, { cmd: 'reconfigure', options: { protocol: 'A' } });
  assert.equal(r.ok, false);
  assert.match(r.message, /only while disconnected/);
  assert.equal(p.a.engine.cfg.protocol, 'C');
});
