// Bounded resources: a connection holds at most NBD_CONN_REQUESTS_IN_FLIGHT_MAX requests (the
// server stops reading beyond that), a slow export does not block another connection, a
// stalled handshake is dropped after its timeout, and close() answers or finishes in-flight work.
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { NbdClient } from '../../src/nbd/client.js';
import { NbdServer } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import type { NbdExportBackend } from '../../src/nbd/types.js';
import { NBD_CONN_REQUESTS_IN_FLIGHT_MAX } from '../../src/limits.js';
import { BufferStore } from './support/buffer-store.js';
import { collectUntilClose, rawSocket } from './support/raw.js';

const MIB = 1024 * 1024;

/** A backend whose reads wait until released, counting how many are held at once. */
function gatedBackend(): {
  backend: NbdExportBackend;
  held: () => number;
  peak: () => number;
  release: () => void;
} {
  const inner = storeBackend(new BufferStore(4 * MIB));
  let waiting: (() => void)[] = [];
  let peak = 0;
  let open = false;
  const backend: NbdExportBackend = {
    ...inner,
    read: async (off, len) => {
      if (!open) {
        await new Promise<void>((r) => {
          waiting.push(r);
          peak = Math.max(peak, waiting.length);
        });
      }
      return inner.read(off, len);
    },
  };
  return {
    backend,
    held: () => waiting.length,
    peak: () => peak,
    release: () => {
      open = true;
      const w = waiting;
      waiting = [];
      for (const f of w) f();
    },
  };
}

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('in-flight requests per connection are bounded; other connections keep being served', async () => {
  const gate = gatedBackend();
  const server = new NbdServer();
  server.addExport('slow', gate.backend);
  server.addExport('fast', storeBackend(new BufferStore(MIB)));
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const spec = { kind: 'tcp' as const, host: '127.0.0.1', port: l.port };
  const slow = await NbdClient.connect({ listener: spec, exportName: 'slow' });
  const n = NBD_CONN_REQUESTS_IN_FLIGHT_MAX * 3;
  const reads = Array.from({ length: n }, (_, i) => slow.read((i % 1024) * 4096, 4096));
  await until(() => gate.held() === NBD_CONN_REQUESTS_IN_FLIGHT_MAX, 'the in-flight limit to fill');
  // Another client on another export is not blocked by the stalled one.
  const fast = await NbdClient.connect({ listener: spec, exportName: 'fast' });
  await fast.write(0, Buffer.alloc(4096, 1));
  assert.equal((await fast.read(0, 4096))[0], 1);
  assert.equal(
    gate.held(),
    NBD_CONN_REQUESTS_IN_FLIGHT_MAX,
    'no more requests were read meanwhile',
  );
  gate.release();
  const got = await Promise.all(reads);
  assert.equal(got.length, n);
  assert.equal(gate.peak(), NBD_CONN_REQUESTS_IN_FLIGHT_MAX);
  await Promise.all([slow.disconnect(), fast.disconnect()]);
  await server.close();
});

test('a handshake that stalls is dropped after the handshake timeout', async () => {
  const server = new NbdServer({ handshakeTimeoutMs: 100 });
  server.addExport('r0', storeBackend(new BufferStore(MIB)));
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const s = await rawSocket({ kind: 'tcp', host: '127.0.0.1', port: l.port });
  s.write(Buffer.from([0, 0, 0, 3])); // client flags, then nothing
  const out = await collectUntilClose(s);
  assert.equal(out.length, 18, 'only the greeting was sent before the drop');
  await server.whenIdle();
  await server.close();
});

test('close() lets in-flight requests finish and ends every connection', async () => {
  const gate = gatedBackend();
  const server = new NbdServer();
  server.addExport('slow', gate.backend);
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const c = await NbdClient.connect({
    listener: { kind: 'tcp', host: '127.0.0.1', port: l.port },
    exportName: 'slow',
  });
  const pending = Array.from({ length: 8 }, (_, i) => c.read(i * 4096, 4096));
  await until(() => gate.held() === 8, 'reads in flight');
  const closing = server.close();
  gate.release();
  const got = await Promise.all(pending);
  assert.equal(got.length, 8, 'every in-flight read was answered');
  await closing;
  await c.closed();
  assert.equal(server.connectionCount, 0);
  await assert.rejects(
    NbdClient.connect({
      listener: { kind: 'tcp', host: '127.0.0.1', port: l.port },
      exportName: 'slow',
    }),
  );
});

test('a stale Unix socket file is replaced; a live one is not stolen', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-nbd-'));
  try {
    const stale = join(dir, 'stale.sock');
    // A bound socket file with nobody listening behind it, as a killed daemon leaves it.
    const r = spawnSync(process.execPath, [
      '-e',
      `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    assert.equal(r.signal, 'SIGKILL', 'made a stale socket file');
    const a = new NbdServer();
    a.addExport('r0', storeBackend(new BufferStore(MIB)));
    await a.listen({ kind: 'unix', path: stale });
    const c = await NbdClient.connect({ listener: { kind: 'unix', path: stale } });
    assert.equal(c.sizeBytes, MIB, 'the empty name reaches the only export');
    await c.disconnect();
    const b = new NbdServer();
    await assert.rejects(b.listen({ kind: 'unix', path: stale }), /EADDRINUSE/);
    await a.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a client that keeps its side open after we end the connection is dropped', async () => {
  const server = new NbdServer({ closeTimeoutMs: 100 });
  server.addExport('r0', storeBackend(new BufferStore(MIB)));
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const s = await new Promise<import('node:net').Socket>((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port: l.port, allowHalfOpen: true }, () =>
      resolve(sock),
    );
    sock.once('error', reject);
  });
  const got: Buffer[] = [];
  s.on('data', (b: Buffer) => got.push(b));
  const serverEnded = new Promise((r) => s.once('end', r));
  // Bad client flags: the server ends its side; this client never ends its own.
  s.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  await serverEnded;
  await server.whenIdle();
  assert.equal(server.connectionCount, 0, 'the half-open connection was dropped');
  assert.equal(Buffer.concat(got).length, 18);
  s.destroy();
  await server.close();
});
