// storeBackend over storage's MemoryStore: FUA and FLUSH reach the store's durability model,
// and a failing disk becomes EIO for that request only (the connection keeps serving).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NbdClient } from '../../src/nbd/client.js';
import { NbdServer } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import { NBD_EIO, NBD_ENOSPC } from '../../src/nbd/protocol.js';
import { MemoryStore } from '../../src/storage/memory.js';
import { NbdCommandError } from '../../src/util/errors.js';

const MIB = 1024 * 1024;

test('MemoryStore export: FUA is durable at once, FLUSH makes the rest durable, faults map to EIO/ENOSPC', async () => {
  const store = new MemoryStore(4 * MIB);
  const server = new NbdServer();
  server.addExport('m', storeBackend(store));
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const c = await NbdClient.connect({
    listener: { kind: 'tcp', host: '127.0.0.1', port: l.port },
    exportName: 'm',
  });
  try {
    const d = randomBytes(8192);
    await c.write(0, d);
    assert.equal(store.pendingWrites, 1, 'a plain write is not durable yet');
    await c.write(MIB, d, { fua: true });
    assert.equal(store.pendingWrites, 1, 'a FUA write is durable on completion');
    await c.flush();
    assert.equal(store.pendingWrites, 0, 'FLUSH made every completed write durable');

    store.setFault((op, off) =>
      op === 'read' && off === 2 * MIB
        ? 'EIO'
        : op === 'write' && off === 3 * MIB
          ? 'ENOSPC'
          : undefined,
    );
    await assert.rejects(
      c.read(2 * MIB, 4096),
      (e) => e instanceof NbdCommandError && e.nbdErrno === NBD_EIO,
    );
    await assert.rejects(
      c.write(3 * MIB, d),
      (e) => e instanceof NbdCommandError && e.nbdErrno === NBD_ENOSPC,
    );
    assert.deepEqual(await c.read(0, 8192), d, 'the connection still serves');
    store.setFault(undefined);
  } finally {
    await c.disconnect();
    await server.close();
  }
});
