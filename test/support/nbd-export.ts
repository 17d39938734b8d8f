// A standalone Tandem export as its own process (NbdServer + storeBackend over a FileStore), for
// peers that cannot share the test's process, such as the kernel client inside a qemu guest.
// It counts the commands it served and writes them as JSON to --stats when SIGTERM stops it.
// Usage: node nbd-export.js --file IMG --size BYTES --name NAME --socket PATH [--tcp HOST:PORT]
//          [--ready FILE] [--stats FILE]
import { truncate, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { NbdServer } from '../../src/nbd/server.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import type { NbdExportBackend, NbdServerEvent } from '../../src/nbd/types.js';
import { openFileStore } from '../../src/storage/file.js';

/** What the export saw, written to --stats. */
export interface ExportStats {
  reads: number;
  writes: number;
  fuaWrites: number;
  bytesWritten: number;
  flushes: number;
  trims: number;
  writeZeroes: number;
  caches: number;
  blockStatus: number;
  connections: number;
  exportsChosen: string[];
  protocolErrors: string[];
}

/** Wraps a backend so every command it serves is counted in `stats`. */
export function countingBackend(b: NbdExportBackend, stats: ExportStats): NbdExportBackend {
  return {
    ...b,
    read: (off, len) => (stats.reads++, b.read(off, len)),
    write: (off, data, fua) => {
      stats.writes++;
      if (fua) stats.fuaWrites++;
      for (const d of data) stats.bytesWritten += d.length;
      return b.write(off, data, fua);
    },
    flush: () => (stats.flushes++, b.flush()),
    trim: (off, len, fua) => (stats.trims++, b.trim(off, len, fua)),
    writeZeroes: (off, len, o) => (stats.writeZeroes++, b.writeZeroes(off, len, o)),
    cache: (off, len) => (stats.caches++, b.cache(off, len)),
    blockStatus: (off, len) => (stats.blockStatus++, b.blockStatus(off, len)),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      file: { type: 'string' },
      size: { type: 'string' },
      name: { type: 'string' },
      socket: { type: 'string' },
      tcp: { type: 'string' },
      ready: { type: 'string' },
      stats: { type: 'string' },
    },
    strict: true,
  });
  const { file, size, name, socket, tcp, ready, stats: statsPath } = values;
  if (file === undefined || size === undefined || name === undefined || socket === undefined) {
    throw new Error('usage: nbd-export --file IMG --size BYTES --name NAME --socket PATH');
  }
  const sizeBytes = Number(size);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % 512 !== 0) {
    throw new Error(`--size ${size}: want a positive multiple of 512 bytes`);
  }
  await writeFile(file, '', { flag: 'a' });
  await truncate(file, sizeBytes);
  const stats: ExportStats = {
    reads: 0,
    writes: 0,
    fuaWrites: 0,
    bytesWritten: 0,
    flushes: 0,
    trims: 0,
    writeZeroes: 0,
    caches: 0,
    blockStatus: 0,
    connections: 0,
    exportsChosen: [],
    protocolErrors: [],
  };
  const onEvent = (e: NbdServerEvent): void => {
    if (e.type === 'connect') stats.connections++;
    if (e.type === 'export') stats.exportsChosen.push(e.exportName);
    if (e.type === 'protocol-error') stats.protocolErrors.push(e.message);
  };
  const store = await openFileStore(file);
  const server = new NbdServer({ onEvent });
  server.addExport(name, countingBackend(storeBackend(store), stats));
  await server.listen({ kind: 'unix', path: socket });
  if (tcp !== undefined) {
    const m = /^(.+):(\d+)$/.exec(tcp);
    if (m?.[1] === undefined || m[2] === undefined) throw new Error(`--tcp ${tcp}: want HOST:PORT`);
    await server.listen({ kind: 'tcp', host: m[1], port: Number(m[2]) });
  }
  if (ready !== undefined) await writeFile(ready, `${process.pid}\n`);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await server.close();
    await store.close();
    if (statsPath !== undefined) await writeFile(statsPath, JSON.stringify(stats) + '\n');
    // A peer script waits for this process: end now rather than on whatever else is pending.
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

main().catch((e: unknown) => {
  process.stderr.write(`nbd-export: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
