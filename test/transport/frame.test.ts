// Property tests of the byte decoders: frames and handshake messages round-trip through any
// chunking, and random bytes never make a decoder throw.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  decodeAddresses,
  decodeHello,
  decodeReady,
  decodeRefuse,
  encodeAddresses,
  encodeHello,
  encodeRefuse,
} from '../../src/cm/wire.js';
import { FrameDecoder, encodeFrameHeader } from '../../src/transport/frame.js';

const frameArb = fc.record({
  type: fc.integer({ min: 0, max: 0xffff }),
  payload: fc.uint8Array({ maxLength: 3000 }),
});

test('frames survive any chunking of the byte stream', () => {
  fc.assert(
    fc.property(
      fc.array(frameArb, { maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 5000 })),
      fc.array(fc.boolean()),
      (frames, cuts, copied) => {
        const stream = Buffer.concat(
          frames.flatMap((f) => [
            encodeFrameHeader(f.type, f.payload.length),
            Buffer.from(f.payload),
          ]),
        );
        const dec = new FrameDecoder();
        const out: { type: number; payload: Buffer }[] = [];
        let off = 0;
        for (const [i, c] of [...cuts, stream.length].entries()) {
          // Slices of one buffer (reads into a slab) or separate buffers (one per read).
          const piece = stream.subarray(off, Math.min(stream.length, off + c));
          dec.push(copied[i] === true ? Buffer.from(piece) : piece);
          off = Math.min(stream.length, off + c);
          for (;;) {
            const r = dec.next();
            assert.ok(r.ok);
            if (r.frame === null) break;
            out.push(r.frame);
          }
          if (off >= stream.length) break;
        }
        assert.equal(out.length, frames.length);
        out.forEach((f, i) => {
          assert.equal(f.type, frames[i]?.type);
          assert.deepEqual(new Uint8Array(f.payload), frames[i]?.payload);
        });
        assert.equal(dec.midFrame, false);
      },
    ),
    { numRuns: 300 },
  );
});

test('a payload inside one chunk is a slice of it, not a copy', () => {
  const chunk = Buffer.concat([encodeFrameHeader(1, 4), Buffer.from('abcd')]);
  const dec = new FrameDecoder();
  dec.push(chunk);
  const r = dec.next();
  assert.ok(r.ok && r.frame);
  assert.equal(r.frame.payload.buffer, chunk.buffer);
});

test('a payload across chunks adjacent in one buffer is a view of it, not a copy', () => {
  // Own ArrayBuffers (Buffer.alloc never takes from the shared pool), so identity is telling.
  const own = (b: Buffer): Buffer => {
    const c = Buffer.alloc(b.length);
    b.copy(c);
    return c;
  };
  const slab = own(
    Buffer.concat([
      encodeFrameHeader(1, 10),
      Buffer.from('0123456789'),
      encodeFrameHeader(2, 3),
      Buffer.from('abc'),
    ]),
  );
  const dec = new FrameDecoder();
  // Three reads into one slab: the payload spans all of them, the last holds the next frame's
  // first byte, which must stay queued.
  dec.push(slab.subarray(0, 11));
  dec.push(slab.subarray(11, 14));
  dec.push(slab.subarray(14, 19));
  const r = dec.next();
  assert.ok(r.ok && r.frame);
  assert.equal(r.frame.payload.buffer, slab.buffer);
  assert.equal(r.frame.payload.toString(), '0123456789');
  assert.equal(dec.bufferedBytes, 1);
  dec.push(slab.subarray(19));
  const r1 = dec.next();
  assert.ok(r1.ok && r1.frame);
  assert.equal(r1.frame.type, 2);
  assert.equal(r1.frame.payload.toString(), 'abc');
  // Separate buffers: copied, same bytes.
  const dec2 = new FrameDecoder();
  dec2.push(own(slab.subarray(0, 11)));
  dec2.push(own(slab.subarray(11, 18)));
  const r2 = dec2.next();
  assert.ok(r2.ok && r2.frame);
  assert.notEqual(r2.frame.payload.buffer, slab.buffer);
  assert.equal(r2.frame.payload.toString(), '0123456789');
  assert.equal(dec2.bufferedBytes, 0);
});

test('random bytes never make the frame decoder throw; bad magic and oversize are errors', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), (chunks) => {
      const dec = new FrameDecoder(1024);
      for (const c of chunks) {
        dec.push(Buffer.from(c));
        for (let i = 0; i < 100; i++) {
          const r = dec.next();
          if (!r.ok || r.frame === null) break;
        }
      }
    }),
    { numRuns: 2000 },
  );
  const bad = new FrameDecoder();
  bad.push(Buffer.from('GET / HTTP/1.1\r\n'));
  const r = bad.next();
  assert.ok(!r.ok && r.error.kind === 'bad-magic');
  const big = new FrameDecoder(10);
  big.push(encodeFrameHeader(1, 11));
  const r2 = big.next();
  assert.ok(!r2.ok && r2.error.kind === 'too-large');
});

test('handshake decoders never throw on random bytes and round-trip what encoders make', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const b = Buffer.from(bytes);
      decodeHello(b);
      decodeAddresses(b);
      decodeReady(b);
      decodeRefuse(b);
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(
      fc.record({
        versionMin: fc.integer({ min: 0, max: 100 }),
        span: fc.integer({ min: 0, max: 100 }),
        features: fc.integer({ min: 0, max: 0xffffffff }),
        fromNodeId: fc.integer({ min: 0, max: 0xffff }),
        toNodeId: fc.integer({ min: 0, max: 0xffff }),
        resource: fc.string({ minLength: 1, maxLength: 40 }),
        challenge: fc.option(fc.uint8Array({ minLength: 64, maxLength: 64 }), { nil: null }),
      }),
      (h) => {
        const hello = {
          versionMin: h.versionMin,
          versionMax: h.versionMin + h.span,
          features: h.features,
          fromNodeId: h.fromNodeId,
          toNodeId: h.toNodeId,
          resource: h.resource,
          challenge: h.challenge ? Buffer.from(h.challenge) : null,
        };
        const r = decodeHello(encodeHello(hello));
        assert.ok(r.ok);
        assert.deepEqual(r.value, hello);
      },
    ),
  );
  const addrs = [
    { transport: 'tcp', family: 'ipv6', address: 'fdaa::1', port: 7790 },
    { transport: 'fabric', family: 'fabric', address: 'mlx5_0', port: 0 },
  ] as const;
  const ra = decodeAddresses(encodeAddresses(addrs));
  assert.ok(ra.ok);
  assert.deepEqual(ra.value, addrs);
  const rr = decodeRefuse(encodeRefuse({ code: 'crossed', reason: 'x'.repeat(600) }));
  assert.ok(rr.ok && rr.value.code === 'crossed' && rr.value.reason.length === 512);
});
