// `tandem resize RES [--size SIZE] [--assume-clean]`: grows a running resource after its backing
// devices grew (drbdadm resize). Prints what happened; a refusal says why and what to do next.
import type { Command } from 'commander';
import { CliError, EXIT, globalOptions } from '../context.js';
import { request } from '../control-client.js';

const UNIT_BYTES: Readonly<Record<string, number>> = {
  s: 512,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
};

/**
 * Parses a size with a unit, as drbdadm writes them: `512s` (sectors), `64K`, `100M`, `10G`,
 * `1T` (powers of 1024; KiB/MiB/GiB spellings too). A bare number is refused: DRBD reads it
 * as sectors, most people as bytes, and a resize is no place to guess.
 */
export function parseSizeBytes(text: string): number {
  const m = /^\s*(\d+)\s*([sSkKmMgGtT])(?:i?[bB])?\s*$/.exec(text);
  const digits = m?.[1];
  const unit = m?.[2];
  if (digits === undefined || unit === undefined) {
    throw new CliError(
      `--size "${text}": expected a number with a unit, e.g. 1G, 512M, 65536K or 2097152s`,
      EXIT.usage,
    );
  }
  const bytes = Number(digits) * (UNIT_BYTES[unit.toLowerCase()] ?? 0);
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new CliError(`--size "${text}": out of range`, EXIT.usage);
  return bytes;
}

export function registerResize(program: Command): void {
  program
    .command('resize <resource>')
    .description(
      'grow the device after the backing devices grew on every node (run it on the Primary); ' +
        'new NBD clients see the new size, the new area is resynced',
    )
    .option('--size <size>', 'grow to this size (e.g. 10G) instead of the largest that fits')
    .option('--assume-clean', 'the new area is known identical on all nodes: skip its resync')
    .action(
      async (
        resource: string,
        opts: { size?: string; assumeClean?: boolean },
        self: Command,
      ): Promise<void> => {
        const flags: Record<string, number | boolean> = {};
        if (opts.size !== undefined) flags['sizeBytes'] = parseSizeBytes(opts.size);
        if (opts.assumeClean === true) flags['assumeClean'] = true;
        const result = await request(globalOptions(self).controlPath, 'resize', {
          resource,
          flags,
        });
        const lines = Array.isArray(result) ? result : [result];
        for (const l of lines)
          if (typeof l === 'string') process.stdout.write(`${resource}: ${l}\n`);
      },
    );
}
