// The NBD export compliance suite against the standalone backend: storeBackend over a
// MemoryStore, served on loopback TCP. "Stable" is what the store's crash model keeps with no
// unflushed write surviving, so FUA and FLUSH are checked against real durability.
import { NbdServer } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import { MemoryStore } from '../../src/storage/memory.js';
import { nbdExportSuite } from '../compliance/nbd-export.suite.js';

const SIZE = 64 * 1024 * 1024;

nbdExportSuite('storeBackend over a MemoryStore', async () => {
  const store = new MemoryStore(SIZE);
  const server = new NbdServer();
  server.addExport('m', storeBackend(store));
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  return {
    listener: { kind: 'tcp', host: '127.0.0.1', port: l.port },
    exportName: 'm',
    sizeBytes: SIZE,
    stable: (off, len) =>
      Promise.resolve(store.crashImage(() => false, { fromBytes: off, toBytes: off + len })),
    close: () => server.close(),
  };
});
