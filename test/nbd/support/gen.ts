// fast-check generators for NBD byte streams: handshakes and request streams that are mostly
// well-formed with random fields (so they reach deep states), plus garbage, cut at random points.
import fc from 'fast-check';
import * as P from '../../../src/nbd/protocol.js';

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

const interestingOption = fc.oneof(
  fc.constantFrom(
    P.NBD_OPT_EXPORT_NAME,
    P.NBD_OPT_ABORT,
    P.NBD_OPT_LIST,
    P.NBD_OPT_STARTTLS,
    P.NBD_OPT_INFO,
    P.NBD_OPT_GO,
    P.NBD_OPT_STRUCTURED_REPLY,
    P.NBD_OPT_LIST_META_CONTEXT,
    P.NBD_OPT_SET_META_CONTEXT,
  ),
  u32,
);

const name = fc.oneof(fc.constantFrom('r0', '', 'ro', 'nope'), fc.string({ maxLength: 20 }));

/** Option data: well-formed for INFO/GO/META, or random bytes, or a lying length prefix. */
const optionData = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
  fc.tuple(name, fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 })).map(([n, infos]) => {
    const b = Buffer.alloc(2 + 2 * infos.length);
    b.writeUInt16BE(infos.length, 0);
    infos.forEach((x, i) => b.writeUInt16BE(x, 2 + 2 * i));
    return Buffer.concat([P.encodeString32(n), b]);
  }),
  fc
    .tuple(
      name,
      fc.array(fc.constantFrom('base:allocation', 'base:', 'qemu:dirty', ''), { maxLength: 3 }),
    )
    .map(([n, qs]) => {
      const c = Buffer.alloc(4);
      c.writeUInt32BE(qs.length, 0);
      return Buffer.concat([P.encodeString32(n), c, ...qs.map((q) => P.encodeString32(q))]);
    }),
  fc.tuple(u32, fc.uint8Array({ maxLength: 16 })).map(([len, rest]) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(len, 0);
    return Buffer.concat([b, rest]);
  }),
);

const option = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.tuple(interestingOption, optionData).map(([o, d]) => P.encodeOption(o, d)),
  },
  // A header that promises more data than ever arrives, or far more than the option max.
  {
    weight: 1,
    arbitrary: fc.tuple(interestingOption, u32).map(([o, len]) => {
      const b = P.encodeOption(o);
      b.writeUInt32BE(len, 12);
      return b;
    }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)) },
);

const clientFlags = fc
  .oneof({ weight: 6, arbitrary: fc.constantFrom(0, 1, 2, 3) }, { weight: 1, arbitrary: u32 })
  .map((f) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(f, 0);
    return b;
  });

/** Options of a client that tries TLS: many well-formed STARTTLS (first, again, late). */
const tlsOption = fc.oneof(
  { weight: 3, arbitrary: fc.constant(P.encodeOption(P.NBD_OPT_STARTTLS)) },
  { weight: 7, arbitrary: option },
);

/** Like handshakeBytes, but STARTTLS is common enough to reach every TLS state. */
export const tlsHandshakeBytes = fc
  .tuple(clientFlags, fc.array(tlsOption, { maxLength: 10 }))
  .map(([f, os]) => Buffer.concat([f, ...os]));

/** What a client might send from the first byte: flags, then options. */
export const handshakeBytes = fc.oneof(
  {
    weight: 9,
    arbitrary: fc
      .tuple(clientFlags, fc.array(option, { maxLength: 8 }))
      .map(([f, os]) => Buffer.concat([f, ...os])),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
);

export interface GenRequest {
  readonly bytes: Buffer;
  readonly type: number;
  readonly handle: number;
  readonly lengthBytes: number;
  /** False when the frame was deliberately damaged (garbage, bad magic). */
  readonly wellFormed: boolean;
}

const SIZE = 1024 * 1024;

const offset = fc.oneof(
  fc.integer({ min: 0, max: SIZE / 512 }).map((s) => s * 512),
  fc.integer({ min: 0, max: SIZE + 8192 }),
  fc.constantFrom(SIZE - 512, SIZE, 2 ** 53, 2 ** 63),
);
const length = fc.oneof(
  fc.integer({ min: 1, max: 64 }).map((s) => s * 512),
  fc.integer({ min: 0, max: 70000 }),
  fc.constantFrom(0, 32 * 1024 * 1024 + 512, 0xffff_ffff),
);

/** Frames with random fields; WRITE carries its payload unless the length is absurd. */
export function requestStream(): fc.Arbitrary<GenRequest[]> {
  const req = fc
    .record({
      type: fc.oneof(
        { weight: 8, arbitrary: fc.integer({ min: 0, max: 7 }) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
      ),
      flags: fc.oneof(
        { weight: 4, arbitrary: fc.constant(0) },
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 31 }) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
      ),
      offsetBytes: offset,
      lengthBytes: length,
      damage: fc.oneof(
        { weight: 30, arbitrary: fc.constant('none' as const) },
        { weight: 1, arbitrary: fc.constant('magic' as const) },
        { weight: 1, arbitrary: fc.constant('garbage' as const) },
      ),
    })
    .filter((r) => r.type !== P.NBD_CMD_DISC)
    .map((r) => r);
  return fc.array(req, { maxLength: 24 }).map((rs) => {
    const out: GenRequest[] = [];
    for (const [i, r] of rs.entries()) {
      const isWrite = r.type === P.NBD_CMD_WRITE;
      const hdr = P.encodeRequest({
        flags: r.flags,
        type: r.type,
        handleHi: 0xabc,
        handleLo: i,
        offsetBytes: Math.min(r.offsetBytes, 2 ** 53 - 1),
        lengthBytes: r.lengthBytes,
      });
      if (r.damage === 'magic') hdr.writeUInt32BE(0xdeadbeef, 0);
      // A huge WRITE payload is cut short: the client "vanishes mid-payload" and the stream ends.
      const truncated = isWrite && r.lengthBytes > 70000;
      const payload = isWrite
        ? Buffer.alloc(truncated ? 1000 : r.lengthBytes, i & 0xff)
        : Buffer.alloc(0);
      const garbage = r.damage === 'garbage' ? Buffer.from([1, 2, 3]) : Buffer.alloc(0);
      out.push({
        bytes: Buffer.concat([hdr, payload, garbage]),
        type: r.type,
        handle: i,
        lengthBytes: r.lengthBytes,
        wellFormed: r.damage === 'none' && !truncated,
      });
      if (truncated) break;
    }
    return out;
  });
}

/** Cuts a buffer into pieces at random points (1-byte splits included). */
export function splitPoints(maxCuts = 12): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: 0, max: 0x7fff_ffff }), { maxLength: maxCuts });
}

export function split(b: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => (b.length === 0 ? 0 : c % b.length)))].sort(
    (x, y) => x - y,
  );
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of at) {
    if (c > prev) out.push(b.subarray(prev, c));
    prev = Math.max(prev, c);
  }
  if (prev < b.length) out.push(b.subarray(prev));
  return out;
}
