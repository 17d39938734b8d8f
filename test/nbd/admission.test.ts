// Backpressure from a backend with a bounded queue: AdmissionGate admits at most its bound,
// the rest wait in arrival order, and every NBD connection stops reading while any wait. Pins:
// a full backend failing requests (the engine's EAGAIN reached clients as EIO) and a waiting
// list that grows with what clients send rather than with what connections have read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdmissionGate } from '../../src/nbd/admission.js';
import { NbdClient } from '../../src/nbd/client.js';
import { NbdServer } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import { MemoryStore } from '../../src/storage/memory.js';

test('the gate admits up to its bound, then in arrival order', async () => {
  const gate = new AdmissionGate(2, 10);
  const order: number[] = [];
  const release: (() => void)[] = [];
  const runs = [0, 1, 2, 3, 4].map((i) =>
    gate.run(
      () =>
        new Promise<number>((resolve) => {
          order.push(i);
          release.push(() => resolve(i));
        }),
    ),
  );
  assert.deepEqual(order, [0, 1]);
  assert.equal(gate.saturated(), true);
  let room = 0;
  gate.onRoom(() => room++);
  while (release.length > 0) {
    release.shift()!();
    await new Promise((r) => setImmediate(r));
  }
  assert.deepEqual(await Promise.all(runs), [0, 1, 2, 3, 4]);
  assert.deepEqual(order, [0, 1, 2, 3, 4]);
  assert.equal(room, 1);
  assert.equal(gate.saturated(), false);
});

test('past its waiting bound the gate refuses with ENOMEM instead of growing', async () => {
  const gate = new AdmissionGate(1, 1);
  let done: () => void = () => undefined;
  const first = gate.run(() => new Promise<void>((r) => (done = r)));
  const second = gate.run(() => Promise.resolve());
  await assert.rejects(
    gate.run(() => Promise.resolve()),
    /already wait for room/,
  );
  done();
  await first;
  await second;
});

test('NBD connections stop reading while the backend is full; every request succeeds', async () => {
  const BOUND = 8;
  const CONNECTIONS = 6;
  const PER = 40;
  const store = new MemoryStore(16 * 1024 * 1024);
  const inner = storeBackend(store);
  const gate = new AdmissionGate(BOUND, CONNECTIONS * 128);
  let inBackend = 0;
  let most = 0;
  let mostWaiting = 0;
  const slow = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = gate.run(async () => {
      inBackend++;
      most = Math.max(most, inBackend);
      await new Promise((r) => setTimeout(r, 1));
      try {
        return await fn();
      } finally {
        inBackend--;
      }
    });
    mostWaiting = Math.max(mostWaiting, gate.waitingCount);
    return p;
  };
  const server = new NbdServer();
  server.addExport('g', {
    ...inner,
    admission: gate,
    write: (off, data, fua) => slow(() => inner.write(off, data, fua)),
    read: (off, len) => slow(() => inner.read(off, len)),
  });
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const clients = await Promise.all(
    Array.from({ length: CONNECTIONS }, () =>
      NbdClient.connect({
        listener: { kind: 'tcp', host: '127.0.0.1', port: l.port },
        exportName: 'g',
      }),
    ),
  );
  try {
    await Promise.all(
      clients.flatMap((c, ci) =>
        Array.from({ length: PER }, (_, i) =>
          c.write((ci * PER + i) * 4096, Buffer.alloc(4096, (ci * PER + i) & 0xff)),
        ),
      ),
    );
    assert.ok(most <= BOUND, `${most} requests in the backend at once, bound ${BOUND}`);
    // The connections stopped reading: at most one request each (read before the gate filled)
    // ever waited, not everything the clients had sent.
    assert.ok(mostWaiting <= CONNECTIONS, `${mostWaiting} requests waited at once`);
    for (let n = 0; n < CONNECTIONS * PER; n += 17)
      assert.ok((await clients[0]!.read(n * 4096, 4096)).equals(Buffer.alloc(4096, n & 0xff)));
  } finally {
    await Promise.all(clients.map((c) => c.disconnect()));
    await server.close();
  }
});
