// Tandem standalone: one node, the NBD server exporting a file through FileStore, in a child
// process of its own (bench/tandem-export.ts) so /proc accounts for it like for the peers.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Availability, RunningSystem, StartContext, System } from '../types.js';
import { preallocate } from '../util.js';

/** How long the export child may take to open its file and bind. */
const EXPORT_READY_TIMEOUT_MS = 15_000;

const exportScript = fileURLToPath(new URL('../tandem-export.js', import.meta.url));

export const tandemStandaloneSystem: System = {
  id: 'tandem-standalone',
  label: 'Tandem, one node: NBD server + FileStore in a Node child process (no replication)',
  kind: 'tandem',

  probe(): Promise<Availability> {
    return Promise.resolve(
      existsSync(exportScript)
        ? { available: true }
        : { available: false, reason: `${exportScript} is missing (run npm run build)` },
    );
  },

  async start(ctx: StartContext): Promise<RunningSystem> {
    const file = join(ctx.storageDir, 'tandem.img');
    await preallocate(file, ctx.fileSizeBytes, 'random');
    let announce: (line: string) => void = () => undefined;
    const announced = new Promise<string>((resolve) => (announce = resolve));
    const child = await ctx.children.start(
      'tandem-export',
      process.execPath,
      [...ctx.nodeArgs, exportScript, file, 'vol'],
      { onStdoutLine: (l) => announce(l) },
    );
    try {
      const line = await Promise.race([
        announced,
        child.exited.then(() => Promise.reject(new Error(child.describeExit()))),
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`tandem-export not ready after ${EXPORT_READY_TIMEOUT_MS} ms`)),
            EXPORT_READY_TIMEOUT_MS,
          ).unref(),
        ),
      ]);
      const port = (JSON.parse(line) as { port?: unknown }).port;
      if (typeof port !== 'number') throw new Error(`tandem-export announced no port: ${line}`);
      return {
        uri: `nbd://127.0.0.1:${port}/vol`,
        pids: () => [child.pid],
        notes: [`node ${exportScript} FILE vol (NbdServer + storeBackend(openFileStore(FILE)))`],
        stop: async () => {
          await child.stop();
        },
      };
    } catch (e) {
      await child.stop();
      throw e;
    }
  },
};
