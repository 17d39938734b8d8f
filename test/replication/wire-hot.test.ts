// The hand-written codecs of the hot packets (Data, RecvAck, WriteAck, NegAck, Barrier,
// BarrierAck) against the table-driven one: byte-identical encodings of random valid packets,
// identical decodes, and for mutated or truncated bytes the same result (error code and
// message) as the generic decoder, never a throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  dataShapeError,
  decodeHotPacket,
  decodePacket,
  decodePacketGeneric,
  encodePacket,
  encodePacketGeneric,
  WIRE_HEADER_BYTES,
} from '../../src/replication/wire.js';
import type { Packet } from '../../src/replication/types.js';

/** Numbers as the engine sends them: safe non-negative integers, edges included. */
const num = fc.oneof(
  fc.nat(),
  fc.maxSafeNat(),
  fc.constantFrom(0, 1, 0xffff_ffff, 0x1_0000_0000, 2 ** 52, Number.MAX_SAFE_INTEGER),
);

const chunks = fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 4 });

const hotPacket: fc.Arbitrary<Packet> = fc.oneof(
  fc.record({
    kind: fc.constant('Data' as const),
    seq: num,
    epoch: num,
    op: fc.constantFrom('write' as const, 'trim' as const, 'zeroes' as const),
    offsetBytes: num,
    lengthBytes: num,
    data: chunks,
    fua: fc.boolean(),
    ack: fc.constantFrom('none' as const, 'recv' as const, 'write' as const),
    peerSeq: num,
  }),
  fc.record({
    kind: fc.constantFrom('RecvAck' as const, 'WriteAck' as const, 'NegAck' as const),
    seq: num,
  }),
  fc.record({ kind: fc.constant('Barrier' as const), epoch: num, flush: fc.boolean() }),
  fc.record({ kind: fc.constant('BarrierAck' as const), epoch: num, setSize: num }),
);

const wireOf = (p: Packet, enc = encodePacket): Buffer => Buffer.concat(enc(p));

/** Comparable form: payload slices as their bytes. */
function norm(x: unknown): unknown {
  if (x instanceof Uint8Array) return Array.from(x);
  if (Array.isArray(x)) {
    if (x.every((c) => c instanceof Uint8Array)) return Array.from(Buffer.concat(x));
    return x.map(norm);
  }
  if (typeof x === 'object' && x !== null)
    return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, norm(y)]));
  return x;
}

test('hot packets encode byte-identical to the generic encoder', () => {
  fc.assert(
    fc.property(hotPacket, (p) => {
      assert.deepEqual(wireOf(p), wireOf(p, encodePacketGeneric));
    }),
    { numRuns: 5000 },
  );
});

test('hot packets take the fast decoder and decode as the generic decoder does', () => {
  fc.assert(
    fc.property(hotPacket, (p) => {
      const w = wireOf(p);
      const fast = decodeHotPacket(w);
      assert.notEqual(fast, null, `${p.kind} fell off the fast path`);
      const slow = decodePacketGeneric(w);
      assert.ok(slow.ok);
      assert.deepEqual(norm(fast), norm(slow.value));
      assert.deepEqual(norm(fast), norm(p));
      assert.deepEqual(norm(decodePacket(w)), norm(slow));
    }),
    { numRuns: 5000 },
  );
});

test('a decoded Data payload is one slice of the received frame, not a copy', () => {
  const p: Packet = {
    kind: 'Data',
    seq: 1,
    epoch: 1,
    op: 'write',
    offsetBytes: 0,
    lengthBytes: 4096,
    data: [Buffer.alloc(1000, 1), Buffer.alloc(3096, 2)],
    fua: false,
    ack: 'write',
    peerSeq: 0,
  };
  const parts = encodePacket(p);
  // The payload chunks go to the transport as they are: the same memory, no copy.
  assert.equal(parts.length, 3);
  assert.equal(parts[1]?.buffer, p.data[0]?.buffer);
  assert.equal(parts[2]?.buffer, p.data[1]?.buffer);
  const w = Buffer.concat(parts);
  const d = decodePacket(w);
  assert.ok(d.ok && d.value.kind === 'Data');
  assert.equal(d.value.data.length, 1);
  const slice = d.value.data[0]!;
  assert.equal(slice.buffer, w.buffer);
  assert.equal(slice.byteOffset, w.byteOffset + w.length - 4096);
  const trim = decodePacket(wireOf({ ...p, op: 'trim', data: [] }));
  assert.ok(trim.ok && trim.value.kind === 'Data');
  assert.deepEqual(trim.value.data, []);
});

/** Ways to break a valid encoding, aimed at what each field check guards. */
const mutation = fc.oneof(
  // Any byte anywhere (header included).
  fc.record({ k: fc.constant('flip' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
  // Truncated, or the header's length no longer matching.
  fc.record({ k: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ k: fc.constant('append' as const), n: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ k: fc.constant('bodyLen' as const), v: fc.nat({ max: 200 }) }),
  // A number above 2^53-1, an enum or boolean out of range, a payload length that lies.
  fc.record({
    k: fc.constant('bigNum' as const),
    field: fc.nat(4),
    hi: fc.integer({ min: 0x20_0000, max: 0xffff_ffff }),
  }),
  fc.record({
    k: fc.constant('byteField' as const),
    field: fc.nat(2),
    v: fc.integer({ min: 2, max: 255 }),
  }),
  fc.record({ k: fc.constant('dataLen' as const), v: fc.nat({ max: 1000 }) }),
);

type MutationT = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

// Field offsets (from the frame's start) the mutations aim at, per kind.
const NUM_AT: Partial<Record<Packet['kind'], readonly number[]>> = {
  Data: [12, 20, 29, 37, 47],
  RecvAck: [12],
  WriteAck: [12],
  NegAck: [12],
  Barrier: [12],
  BarrierAck: [12, 20],
};
const BYTE_AT: Partial<Record<Packet['kind'], readonly number[]>> = {
  Data: [28, 45, 46],
  Barrier: [20],
};

function mutate(p: Packet, w: Buffer, m: MutationT): Buffer {
  const b = Buffer.from(w);
  switch (m.k) {
    case 'flip':
      b[m.at % b.length] = m.v;
      return b;
    case 'cut':
      return b.subarray(0, m.at % b.length);
    case 'append':
      return Buffer.concat([b, Buffer.alloc(m.n, 0xee)]);
    case 'bodyLen':
      if (b.length >= WIRE_HEADER_BYTES) b.writeUInt32BE(m.v, 8);
      return b;
    case 'bigNum': {
      const at = NUM_AT[p.kind] ?? [];
      const o = at[m.field % at.length];
      if (o !== undefined && o + 4 <= b.length) b.writeUInt32BE(m.hi, o);
      return b;
    }
    case 'byteField': {
      const at = BYTE_AT[p.kind] ?? [];
      const o = at[m.field % Math.max(1, at.length)];
      if (o !== undefined && o < b.length) b[o] = m.v;
      return b;
    }
    case 'dataLen':
      if (p.kind === 'Data' && b.length >= 59) b.writeUInt32BE(m.v, 55);
      return b;
  }
}

test('malformed hot packets: the same result as the generic decoder, never a throw', () => {
  fc.assert(
    fc.property(hotPacket, fc.array(mutation, { minLength: 1, maxLength: 3 }), (p, ms) => {
      let b = wireOf(p);
      for (const m of ms) b = mutate(p, b, m);
      const slow = decodePacketGeneric(b);
      const fast = decodeHotPacket(b);
      // The fast path never accepts what the reference refuses, nor reads it differently.
      if (!slow.ok) assert.equal(fast, null);
      else if (fast !== null) assert.deepEqual(norm(fast), norm(slow.value));
      assert.deepEqual(norm(decodePacket(b)), norm(slow));
    }),
    { numRuns: 20000 },
  );
});

test('each kind of malformation is refused with the generic error', () => {
  const data: Packet = {
    kind: 'Data',
    seq: 7,
    epoch: 3,
    op: 'write',
    offsetBytes: 8192,
    lengthBytes: 512,
    data: [Buffer.alloc(512, 9)],
    fua: true,
    ack: 'recv',
    peerSeq: 2,
  };
  const w = wireOf(data);
  const refused = (b: Buffer): string => {
    const r = decodePacket(b);
    assert.ok(!r.ok);
    assert.equal(decodeHotPacket(b), null);
    assert.deepEqual(r, decodePacketGeneric(b));
    return `${r.error.code}: ${r.error.message}`;
  };
  const at = (o: number, v: number): Buffer => {
    const b = Buffer.from(w);
    b[o] = v;
    return b;
  };
  assert.match(refused(at(28, 3)), /^field: Data\.op: value 3 out of range/);
  assert.match(refused(at(45, 2)), /^field: Data\.fua: boolean 2/);
  assert.match(refused(at(46, 9)), /^field: Data\.ack: value 9 out of range/);
  const big = Buffer.from(w);
  big.writeUInt32BE(0x20_0000, 12);
  assert.match(refused(big), /^field: Data\.seq: integer 9007199254740999 too large/);
  const longer = Buffer.from(w);
  longer.writeUInt32BE(513, 55);
  assert.match(refused(longer), /^field: Data\.data: payload runs past the packet/);
  const shorter = Buffer.from(w);
  shorter.writeUInt32BE(511, 55);
  assert.match(refused(shorter), /^length: Data: 1 trailing bytes/);
  assert.match(refused(w.subarray(0, w.length - 1)), /^length: packet is/);
  const cut = Buffer.from(w.subarray(0, WIRE_HEADER_BYTES + 10));
  cut.writeUInt32BE(10, 8);
  assert.match(refused(cut), /^field: Data\.epoch: truncated/);
  const ack = wireOf({ kind: 'WriteAck', seq: 5 });
  assert.match(refused(Buffer.concat([ack, Buffer.of(0)])), /^length: packet is/);
  const ackLong = Buffer.concat([ack, Buffer.of(0)]);
  ackLong.writeUInt32BE(9, 8);
  assert.match(refused(ackLong), /^length: WriteAck: 1 trailing bytes/);
  const barrier = Buffer.from(wireOf({ kind: 'Barrier', epoch: 1, flush: true }));
  barrier[20] = 7;
  assert.match(refused(barrier), /^field: Barrier\.flush: boolean 7/);
});

test('values no u64 holds are refused by both encoders alike', () => {
  const bad: Packet[] = [
    { kind: 'WriteAck', seq: -1 },
    { kind: 'WriteAck', seq: 1.5 },
    { kind: 'Barrier', epoch: Number.NaN, flush: false },
    { kind: 'BarrierAck', epoch: 1, setSize: 2 ** 64 },
    {
      kind: 'Data',
      seq: 1,
      epoch: 1,
      op: 'bogus' as 'write',
      offsetBytes: 0,
      lengthBytes: 0,
      data: [],
      fua: false,
      ack: 'none',
      peerSeq: 0,
    },
  ];
  for (const p of bad) {
    assert.throws(() => encodePacketGeneric(p), RangeError, `generic ${JSON.stringify(p)}`);
    assert.throws(() => encodePacket(p), RangeError, `fast ${JSON.stringify(p)}`);
  }
});

test('dataShapeError: a Data whose payload disagrees with its range is refused', () => {
  const base = {
    kind: 'Data' as const,
    seq: 7,
    epoch: 1,
    offsetBytes: 4096,
    lengthBytes: 4096,
    fua: false,
    ack: 'write' as const,
    peerSeq: 0,
  };
  const four = new Uint8Array(4096);
  assert.equal(dataShapeError({ ...base, op: 'write', data: [four] }), null);
  assert.equal(
    dataShapeError({ ...base, op: 'write', data: [four.subarray(0, 1000), four.subarray(1000)] }),
    null,
  );
  assert.equal(dataShapeError({ ...base, op: 'trim', data: [] }), null);
  assert.match(
    dataShapeError({ ...base, op: 'write', data: [four, four] }) ?? '',
    /payload of 8192 bytes for a write of 4096/,
  );
  assert.match(dataShapeError({ ...base, op: 'zeroes', data: [four] }) ?? '', /carries 4096/);
  assert.match(
    dataShapeError({ ...base, op: 'trim', lengthBytes: 100, data: [] }) ?? '',
    /not whole sectors/,
  );
  assert.match(
    dataShapeError({ ...base, op: 'write', lengthBytes: 0, data: [] }) ?? '',
    /not whole sectors/,
  );
});
