// `tandem dump [RES...]`: the normalized configuration (includes expanded, inheritance applied),
// in drbd.conf syntax or, with --json, as JSON. Exits 10 on a configuration error, like drbdadm.
import type { Command } from 'commander';
import { ConfigFileError, formatDiagnostic, loadConfig } from '../../config/index.js';
import { dumpConfigJson, dumpConfigText } from '../../config/dump.js';
import { CliError, globalOptions } from '../context.js';

/** drbdadm's exit code for a configuration it cannot parse. */
const EXIT_CONFIG = 10;

export function registerDump(program: Command): void {
  program
    .command('dump')
    .description(
      'print the normalized configuration (includes expanded, inheritance applied) in drbd.conf syntax',
    )
    .argument('[resources...]', 'only these resources (default: all)')
    .option(
      '--json',
      'print JSON: resources, hosts with node-id, addresses {family, ip, port}, connections, paths, options with units resolved',
    )
    .action(async (resources: string[], opts: { json?: boolean }, cmd: Command) => {
      const g = globalOptions(cmd);
      let loaded;
      try {
        loaded = await loadConfig(g.configPath);
      } catch (e) {
        if (e instanceof ConfigFileError) throw new CliError(e.message, EXIT_CONFIG);
        throw e;
      }
      for (const w of loaded.warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
      const names = loaded.config.resources.map((r) => r.name);
      const unknown = resources.filter((r) => !names.includes(r));
      if (unknown.length > 0) {
        throw new CliError(
          `no resource named ${unknown.join(', ')} in ${g.configPath} (it has: ${names.join(', ') || 'none'})`,
          EXIT_CONFIG,
        );
      }
      const only = resources.length > 0 ? resources : undefined;
      process.stdout.write(
        opts.json === true
          ? `${JSON.stringify(dumpConfigJson(loaded.config, only), null, 2)}\n`
          : dumpConfigText(loaded.config, only),
      );
    });
}
