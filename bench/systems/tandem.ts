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

export const tandemStandaloneSystem: System = standaloneSystem(
  'tandem-standalone',
  'Tandem, one node: NBD server + FileStore in a Node child process (no replication)',
  exportScript,
  {},
);

/**
 * Opt-in variants for A/B runs in one invocation (only ratios within a run count):
 * `tandem-standalone-uring` runs the same child with libuv's io_uring backend for file I/O;
 * `tandem-standalone-base` runs the export script of another build, named by
 * TANDEM_BENCH_BASE_EXPORT (e.g. a copy of dist/ from the commit before a change).
 */
export const tandemStandaloneVariants: readonly System[] = [
  {
    ...standaloneSystem(
      'tandem-standalone-uring',
      'Tandem, one node, with UV_USE_IO_URING=1 (libuv file I/O on io_uring)',
      exportScript,
      { UV_USE_IO_URING: '1' },
    ),
    optIn: true,
  },
  {
    ...standaloneSystem(
      'tandem-standalone-base',
      'Tandem, one node, from the build named by TANDEM_BENCH_BASE_EXPORT (A/B baseline)',
      process.env['TANDEM_BENCH_BASE_EXPORT'] ?? '(TANDEM_BENCH_BASE_EXPORT unset)',
      {},
    ),
    optIn: true,
  },
];

function standaloneSystem(
  id: string,
  label: string,
  script: string,
  env: Readonly<Record<string, string>>,
): System {
  return {
    id,
    label,
    kind: 'tandem',

    probe(): Promise<Availability> {
      return Promise.resolve(
        existsSync(script)
          ? { available: true }
          : { available: false, reason: `${script} is missing (run npm run build)` },
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
        [...ctx.nodeArgs, script, file, 'vol'],
        { onStdoutLine: (l) => announce(l), env: { ...process.env, ...env } },
      );
      try {
        const line = await Promise.race([
          announced,
          child.exited.then(() => Promise.reject(new Error(child.describeExit()))),
          new Promise<never>((_, reject) =>
            setTimeout(
              () =>
                reject(new Error(`tandem-export not ready after ${EXPORT_READY_TIMEOUT_MS} ms`)),
              EXPORT_READY_TIMEOUT_MS,
            ).unref(),
          ),
        ]);
        const port = (JSON.parse(line) as { port?: unknown }).port;
        if (typeof port !== 'number') throw new Error(`tandem-export announced no port: ${line}`);
        return {
          uri: `nbd://127.0.0.1:${port}/vol`,
          pids: () => [child.pid],
          notes: [
            `${Object.entries(env)
              .map(([k, v]) => `${k}=${v} `)
              .join('')}node ${script} FILE vol (NbdServer + storeBackend(openFileStore(FILE)))`,
          ],
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
}
