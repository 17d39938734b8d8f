// Fabric wire format: headers and the connection hello round-trip, and the decoders return
// errors (never throw) on arbitrary bytes. Also the options' validation and the message that
// says what to install when the addon is missing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FABRIC_BINDING_VERSION, loadFabricAddon } from '../../../src/transport/fabric/addon.js';
import { resolveFabricOptions } from '../../../src/transport/fabric/options.js';
import {
  decodeConnHello,
  decodeFragmentHeader,
  encodeConnHello,
  encodeFragmentHeader,
  FLAG_FIRST,
  FLAG_LAST,
  type FragmentHeader,
} from '../../../src/transport/fabric/wire.js';

const bounds = {
  bufferBytesMin: 4096,
  bufferBytesMax: 4 << 20,
  controlCreditsMin: 4,
  creditsMax: 4096,
};

test('fragment headers round-trip', () => {
  fc.assert(
    fc.property(
      fc.constantFrom<FragmentHeader['kind']>('data', 'control'),
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      (kind, flags, type, grantData, grantControl, total) => {
        const h = {
          kind,
          flags,
          type,
          grantData,
          grantControl,
          totalBytes: flags & FLAG_FIRST ? total : 0,
        };
        const d = decodeFragmentHeader(encodeFragmentHeader(h));
        assert.ok(d.ok);
        assert.deepEqual(d.value, h);
      },
    ),
  );
  const credit = decodeFragmentHeader(
    encodeFragmentHeader({
      kind: 'credit',
      flags: 0,
      type: 0,
      grantData: 5,
      grantControl: 2,
      totalBytes: 0,
    }),
  );
  assert.ok(credit.ok && credit.value.kind === 'credit' && credit.value.grantData === 5);
});

test('fragment and hello decoders never throw on arbitrary bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      const h = decodeFragmentHeader(b);
      if (h.ok) assert.equal(b.length >= 16, true);
      const c = decodeConnHello(b, bounds);
      if (c.ok) assert.ok(c.value.controlCredits >= 4 && c.value.bufferBytes >= 4096);
    }),
    { numRuns: 2000 },
  );
});

test('specific bad headers are named', () => {
  const good = encodeFragmentHeader({
    kind: 'data',
    flags: FLAG_LAST,
    type: 1,
    grantData: 0,
    grantControl: 0,
    totalBytes: 0,
  });
  const bad = (mutate: (b: Buffer) => void): string => {
    const b = Buffer.from(good);
    mutate(b);
    const d = decodeFragmentHeader(b);
    assert.ok(!d.ok);
    return d.error.kind;
  };
  assert.equal(
    bad((b) => b.writeUInt16BE(0x1234, 0)),
    'bad-magic',
  );
  assert.equal(
    bad((b) => b.writeUInt8(9, 2)),
    'bad-kind',
  );
  assert.equal(
    bad((b) => b.writeUInt8(0x80, 3)),
    'bad-flags',
  );
  assert.equal(
    bad((b) => b.writeUInt32BE(5, 12)),
    'bad-field',
  ); // totalBytes outside a FIRST fragment
  assert.equal(decodeFragmentHeader(good.subarray(0, 15)).ok, false);
});

test('the connection hello round-trips and bounds every field', () => {
  const h = { bufferBytes: 65536, dataCredits: 64, controlCredits: 16 };
  const d = decodeConnHello(encodeConnHello(h), bounds);
  assert.ok(d.ok);
  assert.deepEqual(d.value, h);
  for (const lie of [
    { ...h, bufferBytes: 100 },
    { ...h, bufferBytes: 64 << 20 },
    { ...h, dataCredits: 0 },
    { ...h, controlCredits: 3 },
    { ...h, dataCredits: 5000 },
  ]) {
    assert.equal(decodeConnHello(encodeConnHello(lie), bounds).ok, false, JSON.stringify(lie));
  }
  // Version 1 closed without a close-ack; a peer speaking it (or a later one) is refused.
  for (const version of [1, 3]) {
    const other = encodeConnHello(h);
    other.writeUInt16BE(version, 4);
    const r = decodeConnHello(other, bounds);
    assert.ok(!r.ok && r.error.kind === 'bad-version', `version ${version}`);
  }
});

test('fabric options: defaults, and bad values name the option', () => {
  const o = resolveFabricOptions();
  assert.deepEqual(
    {
      z: o.zcopyThresholdBytes,
      p: o.recvPollUs,
      b: o.bufferBytes,
      d: o.dataCredits,
      c: o.controlCredits,
    },
    { z: 8192, p: 0, b: 65536, d: 64, c: 16 },
  );
  assert.throws(() => resolveFabricOptions({ zcopyThresholdBytes: 1 << 20 }), /zcopy-threshold/);
  assert.throws(() => resolveFabricOptions({ recvPollUs: -1 }), /recv-poll/);
  assert.throws(() => resolveFabricOptions({ controlCredits: 2 }), /fabric-control-buffers/);
  assert.throws(() => resolveFabricOptions({ bufferBytes: 100 }), /fabric-buffer-size/);
  assert.throws(() => resolveFabricOptions({ provider: 'tcp; rm -rf /' }), /fabric-provider/);
  assert.equal(o.progress, undefined, 'the addon picks by provider');
  assert.throws(
    () => resolveFabricOptions({ progress: 'sometimes' as 'auto' }),
    /fabric-progress must be auto or manual/,
  );
});

test('a missing addon says exactly what to install', () => {
  const r = loadFabricAddon('/nonexistent/tandem_fabric.node');
  assert.ok(!r.ok);
  assert.match(r.error, /apt-get install libfabric-dev/);
  assert.match(r.error, /npm (install|rebuild)/);
});

test('an addon built before this code (an older binding version) is refused with "rebuild"', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-addon-'));
  try {
    const stale = join(dir, 'stale.cjs');
    await writeFile(stale, 'module.exports = { version: () => "1.17" };\n');
    const r = loadFabricAddon(stale);
    assert.ok(!r.ok);
    assert.match(r.error, /binding version 1, this code needs \d+: rebuild it with npm rebuild/);
    const current = join(dir, 'current.cjs');
    await writeFile(
      current,
      `module.exports = { bindingVersion: ${FABRIC_BINDING_VERSION}, version: () => "1.17" };\n`,
    );
    assert.ok(loadFabricAddon(current).ok);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
