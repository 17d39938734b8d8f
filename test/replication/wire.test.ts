// The peer packet codec: every packet kind round-trips, and no byte string makes the decoder
// throw (property tests over random and mutated inputs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeHeader,
  decodePacket,
  encodePacket,
  WIRE_HEADER_BYTES,
} from '../../src/replication/wire.js';
import type { Packet } from '../../src/replication/types.js';

const bytes = (n: number, f = 7): Uint8Array => new Uint8Array(n).fill(f);

export const samples: Packet[] = [
  {
    kind: 'Handshake',
    nodeId: 3,
    protocol: 'B',
    sizeBytes: 1 << 40,
    role: 'Primary',
    disk: 'UpToDate',
    currentUuid: 0xffff_ffff_ffff_fff1n,
    bitmapUuid: 0n,
    historyUuids: [1n, 2n, 0x8000_0000_0000_0000n],
    crashedPrimary: true,
    discardMyData: false,
    bitmapWeight: 12345,
    allowTwoPrimaries: false,
  },
  {
    kind: 'Bitmap',
    ranges: [
      { start: 0, count: 3 },
      { start: 100, count: 1 },
    ],
    last: true,
  },
  { kind: 'SyncUuid', uuid: 42n },
  { kind: 'StartResync', senderIsSource: true, full: false },
  { kind: 'State', role: 'Secondary', disk: 'Diskless' },
  { kind: 'NewCurrentUuid', uuid: 7n, clearBitmap: true },
  { kind: 'PromoteRequest', id: 9 },
  { kind: 'PromoteReply', id: 9, granted: false },
  {
    kind: 'Data',
    seq: 1,
    epoch: 2,
    op: 'write',
    offsetBytes: 4096,
    lengthBytes: 4096,
    data: bytes(4096),
    fua: true,
    ack: 'write',
    peerSeq: 3,
  },
  {
    kind: 'Data',
    seq: 1,
    epoch: 2,
    op: 'trim',
    offsetBytes: 0,
    lengthBytes: 8192,
    data: new Uint8Array(0),
    fua: false,
    ack: 'none',
    peerSeq: 0,
  },
  { kind: 'Barrier', epoch: 5, flush: true },
  { kind: 'Barrier', epoch: 6, flush: false },
  { kind: 'BarrierAck', epoch: 5, setSize: 3 },
  { kind: 'RecvAck', seq: 1 },
  { kind: 'WriteAck', seq: 1 },
  { kind: 'NegAck', seq: 1 },
  { kind: 'DataRequest', id: 1, offsetBytes: 0, lengthBytes: 512 },
  { kind: 'DataReply', id: 1, ok: true, data: bytes(512) },
  { kind: 'RsRequest', id: 1, start: 2, count: 3, digest: bytes(8) },
  { kind: 'RsReply', id: 1, start: 2, count: 1, data: bytes(4096) },
  { kind: 'RsInSync', id: 1, start: 2, count: 3 },
  { kind: 'RsNegAck', id: 1, start: 2, count: 3 },
  { kind: 'RsWriteAck', id: 1, start: 2, count: 3 },
  { kind: 'ResyncDone' },
  { kind: 'ResyncDoneAck', currentUuid: 99n },
  { kind: 'OvStart' },
  { kind: 'OvRequest', id: 1, start: 0, count: 4 },
  { kind: 'OvReply', id: 1, start: 0, count: 4, digest: bytes(32) },
  { kind: 'OvResult', start: 0, count: 1, inSync: false },
  { kind: 'OvDone' },
  { kind: 'ResizeQuery', id: 3 },
  { kind: 'ResizeInfo', id: 3, capacityBytes: 1 << 30, refusal: 'failed' },
  { kind: 'Resize', id: 3, sizeBytes: 1 << 30, assumeClean: true },
  { kind: 'ResizeDone', id: 3, ok: false },
  { kind: 'OutOfSync', start: 5, count: 3 },
];

function norm(x: unknown): unknown {
  if (typeof x === 'bigint') return `n${x}`;
  if (x instanceof Uint8Array) return Array.from(x);
  if (Array.isArray(x)) return x.map(norm);
  if (typeof x === 'object' && x !== null)
    return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, norm(y)]));
  return x;
}

test('every packet kind round-trips through the codec', () => {
  for (const p of samples) {
    const wire = Buffer.concat(encodePacket(p));
    const h = decodeHeader(wire);
    assert.ok(h.ok);
    assert.equal(h.value.bodyBytes, wire.length - WIRE_HEADER_BYTES);
    const d = decodePacket(wire);
    assert.ok(d.ok, d.ok ? '' : d.error.message);
    assert.deepEqual(norm(d.value), norm(p), p.kind);
  }
});

test('bad magic, version, command and length are named errors', () => {
  const wire = Buffer.concat(encodePacket({ kind: 'Barrier', epoch: 1, flush: false }));
  const bad = (mut: (b: Buffer) => void): string => {
    const c = Buffer.from(wire);
    mut(c);
    const r = decodePacket(c);
    assert.ok(!r.ok);
    return r.error.code;
  };
  assert.equal(
    bad((b) => b.writeUInt32BE(0, 0)),
    'magic',
  );
  assert.equal(
    bad((b) => b.writeUInt16BE(9, 4)),
    'version',
  );
  assert.equal(
    bad((b) => b.writeUInt16BE(999, 6)),
    'command',
  );
  assert.equal(
    bad((b) => b.writeUInt32BE(3, 8)),
    'length',
  );
  assert.equal(decodePacket(wire.subarray(0, 5)).ok, false);
});

test('fuzz: random bytes never make the decoder throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
      const r = decodePacket(b);
      assert.equal(typeof r.ok, 'boolean');
    }),
    { numRuns: 10_000 },
  );
});

test('fuzz: mutated valid packets decode to a result, never a throw', () => {
  const wires = samples.map((p) => Buffer.concat(encodePacket(p)));
  fc.assert(
    fc.property(
      fc.nat(wires.length - 1),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      fc.option(fc.nat()),
      (i, flips, cut) => {
        const w = Buffer.from(wires[i]!);
        for (const [pos, val] of flips) w[pos % w.length] = val;
        const b = cut === null ? w : w.subarray(0, cut % (w.length + 1));
        const r = decodePacket(b);
        if (r.ok) assert.ok(typeof r.value.kind === 'string');
      },
    ),
    { numRuns: 10_000 },
  );
});
