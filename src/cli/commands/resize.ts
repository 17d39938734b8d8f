// `tandem resize RES [--size SIZE] [--assume-clean]`: grows a running resource after its backing
// devices grew (drbdadm resize). Prints what happened; a refusal says why and what to do next.
import type { Command } from 'commander';
import { CliError, EXIT, globalOptions } from '../context.js';
import { request } from '../control-client.js';
import { parseNumericValue, type OptionKind } from '../../config/index.js';

/** `--size` in bytes: drbd.conf's numeric syntax (and suffixes), whole bytes from 1 up. */
const SIZE_KIND = {
  type: 'numeric',
  min: 1,
  max: Number.MAX_SAFE_INTEGER,
  prefix: '1',
  unit: 'bytes',
} as const satisfies OptionKind;

const EXAMPLES = 'e.g. 1G, 512M, 65536K or 2097152s';

/**
 * Parses a size as drbdadm takes it, with the configuration's number parser: `512s` (sectors),
 * `64K`, `100M`, `10G` (powers of 1024). A bare number is refused: DRBD reads it as sectors,
 * most people as bytes, and a resize is no place to guess.
 */
export function parseSizeBytes(text: string): number {
  const word = text.trim();
  if (!/[a-zA-Z]$/.test(word))
    throw new CliError(`--size "${text}": expected a number with a unit, ${EXAMPLES}`, EXIT.usage);
  const r = parseNumericValue(word, SIZE_KIND);
  if (!r.ok) throw new CliError(`--size "${text}": ${r.error}; ${EXAMPLES}`, EXIT.usage);
  return r.value;
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
