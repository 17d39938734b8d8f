// `tandem adjust [RES] [--dry-run]` (drbdadm adjust): the daemon reads the configuration again
// and applies what changed to the running resources; this prints one line per change.
// `tandem show [RES]` (drbdsetup show): the configuration in effect, to see that it did.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { globalOptions } from '../context.js';
import { request } from '../control-client.js';
import type { ResourceShow } from '../../daemon/resource.js';

export function registerAdjust(program: Command): void {
  program
    .command('adjust [resource]')
    .description(
      'apply configuration changes to the running resources (default: all); ' +
        'the daemon reads its own configuration file, or the one --config names',
    )
    .option('--dry-run', 'print what would change, change nothing')
    .action(
      async (
        resource: string | undefined,
        opts: { dryRun?: boolean },
        self: Command,
      ): Promise<void> => {
        const g = globalOptions(self);
        // The daemon's own file unless the user named one (its cwd may differ from ours).
        const named =
          self.optsWithGlobals<{ config?: string }>().config ?? process.env['TANDEM_CONFIG'];
        const flags: Record<string, string | boolean> = {};
        if (named !== undefined) flags['config'] = resolve(named);
        if (opts.dryRun === true) flags['dryRun'] = true;
        const result = (await request(g.controlPath, 'adjust', {
          resource: resource ?? 'all',
          flags,
        })) as { lines?: unknown };
        const lines = Array.isArray(result.lines) ? result.lines : [];
        for (const l of lines) if (typeof l === 'string') process.stdout.write(`${l}\n`);
      },
    );
}

export function registerShow(program: Command): void {
  program
    .command('show [resource]')
    .description('show the configuration in effect in the daemon (like drbdsetup show)')
    .option('--json', 'print JSON')
    .action(async (resource: string | undefined, opts: { json?: boolean }, self: Command) => {
      const result = (await request(globalOptions(self).controlPath, 'show', {
        resource: resource ?? 'all',
      })) as ResourceShow[];
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      for (const r of result) process.stdout.write(formatShow(r));
    });
}

/** drbd.conf-like text with the values in effect (rates in KiB/s, as drbd.conf writes them). */
function formatShow(r: ResourceShow): string {
  const kib = (b: number): string => `${Math.round(b / 1024)}k`;
  const lines = [
    `resource ${r.name} {`,
    `  # ${r.up ? 'up' : 'down'}, ${r.sizeBytes} bytes, exported at ${r.device}`,
    '  net {',
    `    protocol ${r.protocol};`,
    `    allow-two-primaries ${r.allowTwoPrimaries ? 'yes' : 'no'};`,
    `    after-sb-0pri ${r.afterSb0Pri};`,
    `    after-sb-1pri ${r.afterSb1Pri};`,
    `    after-sb-2pri ${r.afterSb2Pri};`,
    `    max-epoch-size ${r.maxEpochSize};`,
    ...(r.csumsAlg !== null ? [`    csums-alg ${r.csumsAlg};`] : []),
    ...(r.verifyAlg !== null ? [`    verify-alg ${r.verifyAlg};`] : []),
    '  }',
    '  disk {',
    `    resync-rate ${kib(r.resync.resyncRateBytesPerSec)};`,
    `    c-plan-ahead ${r.resync.cPlanAheadTenths};`,
    `    c-fill-target ${r.resync.cFillTargetBytes / 512}s;`,
    `    c-delay-target ${r.resync.cDelayTargetTenths};`,
    `    c-max-rate ${kib(r.resync.cMaxRateBytesPerSec)};`,
    `    c-min-rate ${kib(r.resync.cMinRateBytesPerSec)};`,
    '  }',
    ...r.peers.map(
      (p) => `  # peer ${p.name} (node-id ${p.nodeId}): ${p.paths.join(', ') || 'no path'}`,
    ),
    '}',
    '',
  ];
  return lines.join('\n');
}
