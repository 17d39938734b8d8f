// The NBD export compliance suite against the standalone backend: storeBackend over a
// MemoryStore, served on loopback TCP, in plaintext and over TLS (the transmission phase on a
// TLSSocket, our client and the real ones with certificates). "Stable" is what the store's crash
// model keeps with no unflushed write surviving, so FUA and FLUSH are checked against real durability.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdServer } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import { MemoryStore } from '../../src/storage/memory.js';
import { nbdExportSuite } from '../compliance/nbd-export.suite.js';
import { makeTestPki } from '../support/openssl-pki.js';
import { havePeer, inCi } from '../support/peers.js';

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

// Outside CI a machine without openssl skips the TLS run (in CI the PKI step fails instead).
if (havePeer('openssl') || inCi) {
  nbdExportSuite('storeBackend over a MemoryStore, over TLS', async () => {
    const root = await mkdtemp(join(tmpdir(), 'tandem-nbd-tls-compliance-'));
    const pki = await makeTestPki(root);
    const store = new MemoryStore(SIZE);
    const server = new NbdServer({ tls: await pki.serverCredentials() });
    server.addExport('m', storeBackend(store), { tlsRequired: true });
    const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    const pem = (f: string): Promise<string> => readFile(join(pki.dir, f), 'utf8');
    return {
      listener: { kind: 'tcp', host: '127.0.0.1', port: l.port },
      exportName: 'm',
      sizeBytes: SIZE,
      stable: (off, len) =>
        Promise.resolve(store.crashImage(() => false, { fromBytes: off, toBytes: off + len })),
      close: async () => {
        await server.close();
        await rm(root, { recursive: true, force: true });
      },
      tls: {
        client: {
          ca: await pem('ca-cert.pem'),
          certificate: await pem('client-cert.pem'),
          privateKey: await pem('client-key.pem'),
        },
        dir: pki.dir,
      },
    };
  });
}
