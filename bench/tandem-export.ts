#!/usr/bin/env node
// Child process for the "tandem-standalone" system: Tandem's NBD server exporting one file
// through FileStore and storeBackend, exactly the standalone data path, in a process of its own
// so that its CPU and RSS are read from /proc like the peers'. Prints one JSON line once bound.
// Usage: node dist/bench/tandem-export.js FILE [EXPORT_NAME]
import { NbdServer } from '../src/nbd/server.js';
import { storeBackend } from '../src/nbd/store-backend.js';
import { openFileStore } from '../src/storage/file.js';
import { STORE_INLINE_READ_BYTES_MAX, STORE_INLINE_WRITE_BYTES_MAX } from '../src/limits.js';
import { systemClock } from '../src/platform/clock.js';
import { tuneHeapForIo } from '../src/platform/heap.js';

async function main(): Promise<void> {
  const [file, name = 'vol'] = process.argv.slice(2);
  if (file === undefined) throw new Error('usage: tandem-export FILE [EXPORT_NAME]');
  // As tandemd: the standalone data path measured with the same heap tuning.
  tuneHeapForIo();
  // As tandemd opens its disks: small writes inline while they stay fast (FileStore).
  const store = await openFileStore(file, {
    inlineWriteMaxBytes: STORE_INLINE_WRITE_BYTES_MAX,
    // Page-cached reads inline too (FileStore inlineReadMaxBytes); tandemd should do the same.
    inlineReadMaxBytes: STORE_INLINE_READ_BYTES_MAX,
    clock: systemClock,
  });
  const server = new NbdServer({
    onEvent: (e) => {
      if (e.type === 'protocol-error') process.stderr.write(`${JSON.stringify(e)}\n`);
    },
  });
  server.addExport(name, storeBackend(store, { description: 'tandem bench export' }));
  // Port 0: the kernel picks a free port, so nothing can race us for it.
  const l = await server.listen({ kind: 'tcp', host: '127.0.0.1', port: 0 });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    // How the writes went (inline or threadpool): explains a QD1 result when reading the logs.
    process.stderr.write(
      `${JSON.stringify({ inlineWrites: store.inlineWrites?.ops, inlineStalls: store.inlineWrites?.stalls, peakInFlight: store.peakInFlight, inlineReads: store.inlineReads?.ops, inlineReadStalls: store.inlineReads?.stalls })}\n`,
    );
    void server
      .close()
      .then(() => store.close())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({ listening: l.address, port: l.port, export: name })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`tandem-export: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
