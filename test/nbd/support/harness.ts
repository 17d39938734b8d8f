// Starts an NBD server with BufferStore exports on a random loopback port and a Unix socket
// in a fresh temp dir; stop() closes everything and removes the dir.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdServer, type NbdListener } from '../../../src/nbd/server.js';
import { storeBackend, type StoreBackendOptions } from '../../../src/nbd/store-backend.js';
import type { NbdServerEvent } from '../../../src/nbd/types.js';
import { openFileStore, type FileStore } from '../../../src/storage/file.js';
import { BufferStore } from './buffer-store.js';

export interface Harness {
  server: NbdServer;
  tcp: NbdListener;
  unix: NbdListener;
  dir: string;
  stores: Map<string, BufferStore>;
  /** Exports backed by storage's FileStore (a sparse file in `dir`): name -> file path. */
  files: Map<string, string>;
  events: NbdServerEvent[];
  stop(): Promise<void>;
}

export async function startHarness(
  exports: { name: string; sizeBytes: number; opts?: StoreBackendOptions; file?: boolean }[],
): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-nbd-'));
  const events: NbdServerEvent[] = [];
  const server = new NbdServer({ onEvent: (e) => events.push(e) });
  const stores = new Map<string, BufferStore>();
  const files = new Map<string, string>();
  const fileStores: FileStore[] = [];
  for (const e of exports) {
    if (e.file === true) {
      const path = join(dir, `${e.name}.img`);
      await writeFile(path, '');
      await truncate(path, e.sizeBytes);
      const fs = await openFileStore(path);
      fileStores.push(fs);
      files.set(e.name, path);
      server.addExport(e.name, storeBackend(fs, e.opts ?? {}));
      continue;
    }
    const s = new BufferStore(e.sizeBytes);
    stores.set(e.name, s);
    server.addExport(e.name, storeBackend(s, e.opts ?? {}));
  }
  const tcp = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  const unix = await server.listen({ kind: 'unix', path: join(dir, 'nbd.sock') });
  return {
    server,
    tcp,
    unix,
    dir,
    stores,
    files,
    events,
    async stop() {
      await server.close();
      for (const f of fileStores) await f.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
