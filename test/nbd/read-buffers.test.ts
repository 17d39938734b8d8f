// A connection's read replies go out in its own reused buffers, never in one that something may
// still write into: reads answered in the connection's buffer reuse it once written; a backend
// that answers in another buffer, or fails, leaves the offered buffer out of the pool; and under
// many concurrent reads with varied delays every client gets its own bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NbdClient } from '../../src/nbd/client.js';
import { NbdServer } from '../../src/nbd/server.js';
import { ReadBuffers } from '../../src/nbd/read-buffers.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import type { NbdExportBackend } from '../../src/nbd/types.js';
import { NbdCommandError } from '../../src/util/errors.js';
import { NBD_EIO } from '../../src/nbd/protocol.js';
import { NBD_READ_BUFFERS_MAX } from '../../src/limits.js';
import { BufferStore } from './support/buffer-store.js';

const MIB = 1024 * 1024;

test('ReadBuffers: lends up to its bound, takes back only its own buffers, whole', () => {
  const p = new ReadBuffers(4096, 2);
  const a = p.take(512);
  const b = p.take(4096);
  assert.ok(a !== undefined && b !== undefined);
  assert.equal(a.length, 512);
  assert.equal(p.take(100), undefined, 'all lent out');
  assert.equal(p.take(4097), undefined, 'too large');
  assert.equal(p.take(0), undefined);
  p.give(Buffer.allocUnsafeSlow(4096)); // not ours: ignored
  p.give(b.subarray(1)); // not the start of ours: ignored
  assert.equal(p.idle, 0);
  p.give(a);
  assert.equal(p.idle, 1);
  const again = p.take(4096);
  assert.equal(again?.buffer, a.buffer, 'the same memory, whole again');
  assert.equal(again?.length, 4096);
  assert.equal(p.count, 2);
});

/** The byte a block at `off` holds: distinct per 4 KiB block. */
const pattern = (off: number): number => (off / 4096) % 251;

/**
 * A backend filling reads with the pattern after a varied delay, into the offered buffer or
 * (every seventh read) into one of its own; every 13th read fails. Records the buffers offered.
 */
function recordingBackend(): { backend: NbdExportBackend; offered: Set<ArrayBufferLike> } {
  const inner = storeBackend(new BufferStore(8 * MIB));
  const offered = new Set<ArrayBufferLike>();
  let n = 0;
  const backend: NbdExportBackend = {
    ...inner,
    read: async (off, len, into) => {
      const i = n++;
      if (into !== undefined) offered.add(into.buffer);
      await new Promise((r) => setTimeout(r, i % 5));
      if (i % 13 === 12) {
        // Writes into the offered buffer *after* failing: the pool must not lend it again.
        if (into !== undefined)
          for (let ms = 0; ms <= 6; ms++) setTimeout(() => into.fill(0xee), ms);
        throw new NbdCommandError('injected read failure', NBD_EIO);
      }
      const out = i % 7 === 6 || into === undefined ? Buffer.allocUnsafe(len) : into;
      for (let at = 0; at < len; at += 4096) out.fill(pattern(off + at), at, at + 4096);
      return out;
    },
  };
  return { backend, offered };
}

test('concurrent reads: each reply has its own bytes; buffers are reused, failed ones dropped', async () => {
  const { backend, offered } = recordingBackend();
  const server = new NbdServer();
  server.addExport('r', backend);
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const c = await NbdClient.connect({
    listener: { kind: 'tcp', host: '127.0.0.1', port: l.port },
    exportName: 'r',
  });
  try {
    let failed = 0;
    let checked = 0;
    for (let round = 0; round < 20; round++) {
      const reads = Array.from({ length: 64 }, (_, k) => {
        const off = ((round * 64 + k) % 2000) * 4096;
        const len = 4096 * (1 + (k % 32));
        return c.read(off, len).then(
          (data) => {
            for (let at = 0; at < len; at += 4096)
              assert.equal(data[at], pattern(off + at), `read at ${off} block ${at / 4096}`);
            checked++;
          },
          () => failed++,
        );
      });
      await Promise.all(reads);
    }
    assert.ok(failed > 0, 'some reads failed as injected');
    assert.ok(checked > 1000);
    // 1280 reads, at most NBD_READ_BUFFERS_MAX lent at once, failed ones never back: far
    // fewer distinct buffers than reads means they were reused.
    assert.ok(offered.size >= 1);
    assert.ok(
      offered.size <= NBD_READ_BUFFERS_MAX + failed,
      `${offered.size} distinct buffers for 1280 reads (${failed} failed)`,
    );
  } finally {
    await c.disconnect();
    await server.close();
  }
});
