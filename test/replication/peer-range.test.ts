// A peer's range past the device's end is a protocol error: the connection drops (and retries,
// as DRBD's does), and nothing reaches the local disk, which a failing out-of-range I/O would
// otherwise detach. Both nodes agreed on the size, so only a broken or hostile peer sends one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Packet } from '../../src/replication/types.js';
import { BLOCK, Pair } from '../sim/harness.js';

function sendFromAlpha(p: Pair, pk: Packet): void {
  p.step(p.b, { type: 'packet', peer: 1, packet: pk });
}

for (const [what, pk] of [
  [
    'Data',
    (size: number): Packet => ({
      kind: 'Data',
      seq: 1,
      epoch: 1,
      op: 'write',
      offsetBytes: size - BLOCK,
      lengthBytes: 2 * BLOCK,
      data: [new Uint8Array(2 * BLOCK)],
      fua: false,
      ack: 'write',
      peerSeq: 0,
    }),
  ],
  [
    'DataRequest',
    (size: number): Packet => ({
      kind: 'DataRequest',
      id: 7,
      offsetBytes: size,
      lengthBytes: BLOCK,
    }),
  ],
] as const) {
  test(`a ${what} past the device's end drops the connection and touches no disk`, () => {
    const p = Pair.initialized();
    const size = p.b.engine.cfg.sizeBytes;
    const diskIo = p.b.pendingOf(['read', 'write']);
    sendFromAlpha(p, pk(size));
    assert.equal(p.b.pendingOf(['read', 'write']), diskIo, 'no disk I/O for it');
    assert.equal(p.b.engine.disk, 'UpToDate', 'the disk stays');
    const note = p.b.notes.find((n) => n.kind === 'protocol-error');
    assert.ok(note?.kind === 'protocol-error', 'a protocol-error note');
    assert.match(note.what, new RegExp(`${what} past the device's end`));
    assert.equal(p.peerOf(p.b).conn, 'Connecting', 'disconnected, and retrying');
  });
}

test('a range ending exactly at the device end is served', () => {
  const p = Pair.initialized();
  const size = p.b.engine.cfg.sizeBytes;
  sendFromAlpha(p, { kind: 'DataRequest', id: 8, offsetBytes: size - BLOCK, lengthBytes: BLOCK });
  assert.equal(
    p.b.notes.some((n) => n.kind === 'protocol-error'),
    false,
  );
  assert.equal(p.peerOf(p.b).conn, 'Connected');
});
