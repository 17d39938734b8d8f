// The connection manager's handshake messages (hello, addresses, ready, refuse), ten thousand
// random and mutated inputs each. Properties: a decoder never throws; what it accepts is exactly
// what the encoder would have sent (decode then encode gives the same bytes), so two peers
// never disagree about a field; everything else is an error with a reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeAddresses,
  decodeHello,
  decodeReady,
  decodeRefuse,
  encodeAddresses,
  encodeHello,
  encodeReady,
  encodeRefuse,
  type AnnouncedAddress,
  type Hello,
  type RefuseCode,
} from '../../src/cm/wire.js';

const RUNS = 10_000;

const hello: fc.Arbitrary<Hello> = fc
  .record({
    a: fc.integer({ min: 0, max: 0xffff }),
    b: fc.integer({ min: 0, max: 0xffff }),
    features: fc.nat({ max: 0xffffffff }),
    fromNodeId: fc.integer({ min: 0, max: 0xffff }),
    toNodeId: fc.integer({ min: 0, max: 0xffff }),
    resource: fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }),
    challenge: fc.option(fc.uint8Array({ minLength: 1, maxLength: 64 })),
  })
  .map((h) => ({
    versionMin: Math.min(h.a, h.b),
    versionMax: Math.max(h.a, h.b),
    features: h.features,
    fromNodeId: h.fromNodeId,
    toNodeId: h.toNodeId,
    resource: h.resource,
    challenge: h.challenge === null ? null : Buffer.from(h.challenge),
  }));

const address: fc.Arbitrary<AnnouncedAddress> = fc.record({
  transport: fc.constantFrom('memory', 'tcp', 'fabric', 'multipath'),
  family: fc.constantFrom('ipv4', 'ipv6', 'memory', 'fabric'),
  port: fc.integer({ min: 0, max: 0xffff }),
  address: fc.string({ maxLength: 40, unit: 'grapheme' }),
});

const flips = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 });

/** A valid encoding, perhaps mutated and cut, or random bytes. */
function input(valid: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.tuple(valid, flips, fc.option(fc.nat())).map(([b, fs, cut]) => {
      const w = Buffer.from(b);
      for (const [pos, val] of fs) if (w.length > 0) w[pos % w.length] = val;
      return cut === null ? w : w.subarray(0, cut % (w.length + 1));
    }),
    fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
  );
}

test(`hello: ${RUNS} inputs decode to what re-encodes identically, or an error`, () => {
  fc.assert(
    fc.property(input(hello.map(encodeHello)), (b) => {
      const d = decodeHello(b);
      if (!d.ok) return assert.ok(d.error.length > 0);
      // Flag bits other than bit 0 are ignored (reserved for later versions): mask them.
      const sent = Buffer.from(b);
      sent[16] = sent[16]! & 1;
      assert.deepEqual(encodeHello(d.value), sent);
    }),
    { numRuns: RUNS },
  );
});

test(`addresses: ${RUNS} inputs decode to what re-encodes identically, or an error`, () => {
  fc.assert(
    fc.property(input(fc.array(address, { maxLength: 6 }).map(encodeAddresses)), (b) => {
      const d = decodeAddresses(b);
      if (d.ok) assert.deepEqual(encodeAddresses(d.value), b);
      else assert.ok(d.error.length > 0);
    }),
    { numRuns: RUNS },
  );
});

test(`ready and refuse: ${RUNS} inputs each decode or fail with a reason`, () => {
  fc.assert(
    fc.property(input(fc.integer({ min: 0, max: 0xffff }).map(encodeReady)), (b) => {
      const d = decodeReady(b);
      if (d.ok) assert.deepEqual(encodeReady(d.value), b);
    }),
    { numRuns: RUNS },
  );
  const refuse = fc
    .record({
      code: fc.constantFrom<RefuseCode>('incompatible-version', 'unknown-resource', 'crossed'),
      reason: fc.string({ maxLength: 600 }),
    })
    .map(encodeRefuse);
  fc.assert(
    fc.property(input(refuse), (b) => {
      const d = decodeRefuse(b);
      if (d.ok) assert.equal(encodeRefuse(d.value)[0], b[0]);
      else assert.ok(d.error.length > 0);
    }),
    { numRuns: RUNS },
  );
});

// Found by the fuzzer above: an address that is not UTF-8 was accepted with replacement
// characters, so the peer dialed an address nobody announced.
test('an announced address that is not UTF-8 is refused', () => {
  const b = encodeAddresses([{ transport: 'tcp', family: 'ipv4', port: 7789, address: 'ab' }]);
  b[b.length - 1] = 0xff;
  const d = decodeAddresses(b);
  assert.equal(d.ok, false);
});
