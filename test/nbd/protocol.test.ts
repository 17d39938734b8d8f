// NBD protocol behaviour through our own client: negotiation, every command, pipelining,
// multi-conn flush, and the "Bad input" cases of the issue (each gets the spec's error and the
// connection keeps serving, or only that connection closes).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NbdClient } from '../../src/nbd/client.js';
import * as P from '../../src/nbd/protocol.js';
import { NBD_PAYLOAD_BYTES_MAX } from '../../src/limits.js';
import { NbdCommandError, ProtocolError } from '../../src/util/errors.js';
import { startHarness, type Harness } from './support/harness.js';
import { collectUntilClose, rawTransmission } from './support/raw.js';

const MIB = 1024 * 1024;
let h: Harness;

before(async () => {
  h = await startHarness([
    { name: 'r0', sizeBytes: 16 * MIB, opts: { description: 'resource r0' } },
    { name: 'ro', sizeBytes: 1 * MIB, opts: { readOnly: true } },
  ]);
});
after(async () => {
  await h.stop();
});

describe('negotiation', () => {
  test('NBD_OPT_LIST lists every export with its description, on TCP and Unix', async () => {
    for (const l of [h.tcp.spec, h.unix.spec]) {
      const spec = l.kind === 'tcp' ? { ...l, port: h.tcp.port } : l;
      const list = await NbdClient.list(spec);
      assert.deepEqual(
        list.map((e) => [e.name, e.description]),
        [
          ['r0', 'resource r0'],
          ['ro', ''],
        ],
      );
    }
  });

  test('GO reports size, honest flags and block sizes', async () => {
    const c = await NbdClient.connect({
      listener: { kind: 'tcp', host: '127.0.0.1', port: h.tcp.port },
      exportName: 'r0',
    });
    assert.equal(c.sizeBytes, 16 * MIB);
    assert.equal(c.structuredReplies, true);
    assert.equal(c.baseAllocation, true);
    const f = c.transmissionFlags;
    for (const flag of [
      P.NBD_FLAG_HAS_FLAGS,
      P.NBD_FLAG_SEND_FLUSH,
      P.NBD_FLAG_SEND_FUA,
      P.NBD_FLAG_SEND_TRIM,
      P.NBD_FLAG_SEND_WRITE_ZEROES,
      P.NBD_FLAG_SEND_FAST_ZERO,
      P.NBD_FLAG_CAN_MULTI_CONN,
      P.NBD_FLAG_SEND_CACHE,
      P.NBD_FLAG_SEND_DF,
    ]) {
      assert.ok((f & flag) !== 0, `flag ${flag} set`);
    }
    assert.equal(f & P.NBD_FLAG_READ_ONLY, 0);
    assert.deepEqual(c.blockSizes, {
      minimumBytes: 512,
      preferredBytes: 4096,
      maximumBytes: NBD_PAYLOAD_BYTES_MAX,
    });
    await c.disconnect();
  });

  test('a read-only export says so and advertises no write features', async () => {
    const c = await NbdClient.connect({ listener: h.unix.spec, exportName: 'ro' });
    const f = c.transmissionFlags;
    assert.ok((f & P.NBD_FLAG_READ_ONLY) !== 0);
    assert.equal(
      f & (P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_SEND_FUA),
      0,
    );
    assert.equal(await c.raw(P.NBD_CMD_WRITE, 0, 0, 512, Buffer.alloc(512)), P.NBD_EPERM);
    assert.equal(await c.raw(P.NBD_CMD_TRIM, 0, 0, 512), P.NBD_EPERM);
    assert.equal(await c.raw(P.NBD_CMD_WRITE_ZEROES, 0, 0, 512), P.NBD_EPERM);
    assert.equal((await c.read(0, 4096)).length, 4096);
    await c.disconnect();
  });

  test('an unknown export name is refused with an error, not a hang', async () => {
    await assert.rejects(
      NbdClient.connect({ listener: h.unix.spec, exportName: 'nope' }),
      ProtocolError,
    );
  });

  test('simple replies (no structured reply) still serve reads and writes', async () => {
    const c = await NbdClient.connect({
      listener: h.unix.spec,
      exportName: 'r0',
      structuredReplies: false,
    });
    assert.equal(c.structuredReplies, false);
    assert.equal(c.transmissionFlags & P.NBD_FLAG_SEND_DF, 0);
    const d = randomBytes(8192);
    await c.write(1 * MIB, d);
    assert.deepEqual(await c.read(1 * MIB, 8192), d);
    // BLOCK_STATUS needs a meta context, which needs structured replies.
    assert.equal(await c.raw(P.NBD_CMD_BLOCK_STATUS, 0, 0, 4096), P.NBD_EINVAL);
    assert.equal(await c.raw(P.NBD_CMD_READ, 0, 16 * MIB, 512), P.NBD_EINVAL);
    assert.deepEqual(await c.read(1 * MIB, 512), d.subarray(0, 512));
    await c.disconnect();
  });
});

describe('transmission', () => {
  test('pipelined random writes and reads match a model, replies out of order', async () => {
    const c = await NbdClient.connect({ listener: h.unix.spec, exportName: 'r0' });
    const size = 4 * MIB;
    const model = Buffer.alloc(size);
    const base = 8 * MIB;
    await c.writeZeroes(base, size);
    const ops: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      const len = 512 * (1 + (i % 64));
      const off = 512 * ((i * 7919) % ((size - len) / 512));
      const d = randomBytes(len);
      d.copy(model, off);
      // Sequential issue order keeps the model exact; completion order is the server's.
      ops.push(c.write(base + off, d, { fua: i % 10 === 0 }));
    }
    assert.ok(c.inFlight > 1, 'requests are in flight together');
    await Promise.all(ops);
    await c.flush();
    const reads = await Promise.all(
      Array.from({ length: 16 }, (_, i) => c.read(base + i * (size / 16), size / 16)),
    );
    assert.deepEqual(Buffer.concat(reads), model);
    assert.deepEqual(h.stores.get('r0')?.data.subarray(base, base + size), model);
    await c.disconnect();
  });

  test('trim, write zeroes, cache and block status', async () => {
    const c = await NbdClient.connect({ listener: h.unix.spec, exportName: 'r0' });
    await c.write(0, Buffer.alloc(65536, 0xab));
    await c.trim(0, 16384);
    await c.writeZeroes(16384, 16384, { noHole: true });
    await c.cache(0, 65536);
    const got = await c.read(0, 65536);
    assert.ok(got.subarray(0, 32768).every((b) => b === 0));
    assert.ok(got.subarray(32768).every((b) => b === 0xab));
    const ext = await c.blockStatus(0, 65536);
    assert.deepEqual(ext, [
      { lengthBytes: 16384, hole: true, zero: true },
      { lengthBytes: 49152, hole: false, zero: false },
    ]);
    assert.equal((await c.blockStatus(0, 65536, { reqOne: true })).length, 1);
    // FAST_ZERO with NO_HOLE cannot be fast on this backend: ENOTSUP, as the spec requires.
    await assert.rejects(
      c.writeZeroes(0, 4096, { noHole: true, fastZero: true }),
      (e) => e instanceof NbdCommandError && e.nbdErrno === P.NBD_ENOTSUP,
    );
    await c.writeZeroes(0, 4096, { fastZero: true });
    await c.disconnect();
  });

  test('multi-conn: FLUSH on one connection covers writes completed on another', async () => {
    const a = await NbdClient.connect({ listener: h.unix.spec, exportName: 'r0' });
    const b = await NbdClient.connect({
      listener: { kind: 'tcp', host: '127.0.0.1', port: h.tcp.port },
      exportName: 'r0',
    });
    const store = h.stores.get('r0');
    assert.ok(store);
    const d = randomBytes(4096);
    await a.write(12 * MIB, d);
    const before = store.flushes;
    await b.flush();
    assert.equal(store.flushes, before + 1);
    assert.deepEqual(await b.read(12 * MIB, 4096), d);
    await Promise.all([a.disconnect(), b.disconnect()]);
  });
});

describe('bad input', () => {
  test('each bad request gets the spec error and the connection keeps working', async () => {
    const c = await NbdClient.connect({ listener: h.unix.spec, exportName: 'r0' });
    const size = 16 * MIB;
    assert.equal(await c.raw(P.NBD_CMD_READ, 0, size, 512), P.NBD_EINVAL, 'read past the end');
    assert.equal(
      await c.raw(P.NBD_CMD_WRITE, 0, size - 512, 1024, Buffer.alloc(1024)),
      P.NBD_ENOSPC,
      'write past the end',
    );
    assert.equal(
      await c.raw(P.NBD_CMD_WRITE_ZEROES, 0, size, 512),
      P.NBD_ENOSPC,
      'zeroes past the end',
    );
    assert.equal(await c.raw(P.NBD_CMD_READ, 0, 100, 512), P.NBD_EINVAL, 'misaligned offset');
    assert.equal(
      await c.raw(P.NBD_CMD_WRITE, 0, 0, 100, Buffer.alloc(100)),
      P.NBD_EINVAL,
      'misaligned length',
    );
    assert.equal(await c.raw(P.NBD_CMD_READ, 0, 0, 0), P.NBD_EINVAL, 'zero length');
    assert.equal(await c.raw(42, 0, 0, 512), P.NBD_EINVAL, 'unknown command');
    assert.equal(await c.raw(P.NBD_CMD_READ, 1 << 9, 0, 512), P.NBD_EINVAL, 'unknown flag');
    assert.equal(
      await c.raw(P.NBD_CMD_READ, P.NBD_CMD_FLAG_NO_HOLE, 0, 512),
      P.NBD_EINVAL,
      'flag of another command',
    );
    assert.equal(await c.raw(P.NBD_CMD_FLUSH, 0, 512, 0), P.NBD_EINVAL, 'flush with an offset');
    assert.equal(
      await c.raw(P.NBD_CMD_READ, 0, 0, NBD_PAYLOAD_BYTES_MAX + 512),
      P.NBD_EOVERFLOW,
      'read over the payload max',
    );
    assert.equal(await c.raw(P.NBD_CMD_READ, 0, 2 ** 60, 512), P.NBD_EINVAL, 'offset past 2^53');
    const big = Buffer.alloc(NBD_PAYLOAD_BYTES_MAX + 512);
    assert.equal(
      await c.raw(P.NBD_CMD_WRITE, 0, 0, big.length, big),
      P.NBD_EOVERFLOW,
      'write over the payload max',
    );
    const d = randomBytes(4096);
    await c.write(4096, d);
    assert.deepEqual(await c.read(4096, 4096), d);
    await c.disconnect();
  });

  test('bad request magic closes that connection only', async () => {
    const other = await NbdClient.connect({ listener: h.unix.spec, exportName: 'r0' });
    const s = await rawTransmission(h.unix.spec, 'r0');
    const closed = collectUntilClose(s);
    s.write(Buffer.alloc(28, 0x55));
    await closed;
    assert.equal((await other.read(0, 512)).length, 512);
    await other.disconnect();
    assert.ok(h.events.some((e) => e.type === 'protocol-error' && e.message.includes('magic')));
  });

  test('a client that vanishes mid-payload leaves nothing behind', async () => {
    const before = h.server.connectionCount;
    const s = await rawTransmission(h.unix.spec, 'r0');
    const hdr = P.encodeRequest({
      flags: 0,
      type: P.NBD_CMD_WRITE,
      handleHi: 0,
      handleLo: 1,
      offsetBytes: 0,
      lengthBytes: 1 * MIB,
    });
    s.write(hdr);
    s.write(Buffer.alloc(1000));
    await new Promise((r) => setImmediate(r));
    s.destroy();
    await waitFor(() => h.server.connectionCount === before);
    const c = await NbdClient.connect({ listener: h.unix.spec, exportName: 'r0' });
    assert.equal((await c.read(0, 512)).length, 512);
    await c.disconnect();
  });

  test('DISC after pipelined writes: every write is answered before the close', async () => {
    const s = await rawTransmission(h.unix.spec, 'r0');
    const all = collectUntilClose(s);
    const frames: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      frames.push(
        P.encodeRequest({
          flags: 0,
          type: P.NBD_CMD_WRITE,
          handleHi: 7,
          handleLo: i,
          offsetBytes: i * 4096,
          lengthBytes: 4096,
        }),
      );
      frames.push(Buffer.alloc(4096, i));
    }
    frames.push(
      P.encodeRequest({
        flags: 0,
        type: P.NBD_CMD_DISC,
        handleHi: 0,
        handleLo: 0,
        offsetBytes: 0,
        lengthBytes: 0,
      }),
    );
    s.end(Buffer.concat(frames));
    const out = await all;
    assert.equal(out.length, 20 * 16);
    const handles = new Set<number>();
    for (let i = 0; i < 20; i++) {
      assert.equal(out.readUInt32BE(i * 16), P.NBD_MAGIC_SIMPLE_REPLY);
      assert.equal(out.readUInt32BE(i * 16 + 4), 0);
      assert.equal(out.readUInt32BE(i * 16 + 8), 7);
      handles.add(out.readUInt32BE(i * 16 + 12));
    }
    assert.equal(handles.size, 20);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
