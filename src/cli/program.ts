// `tandem`: the admin CLI, in the role drbdadm plays for DRBD. Parses global options, dispatches
// to a subcommand, and turns every failure into one line on stderr and a non-zero exit code.
import { Command, CommanderError } from 'commander';
import { CliError, DEFAULT_CONFIG_PATH, EXIT } from './context.js';
import { registerCommands } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('tandem')
    .description('Tandem: a replicated block device in user space, exported over NBD')
    .option(
      '-c, --config <file>',
      `configuration file (env TANDEM_CONFIG; default ${DEFAULT_CONFIG_PATH})`,
    )
    .option(
      '-n, --node <name>',
      'which `on HOST` section is this node (env TANDEM_NODE; default the hostname)',
    )
    .option(
      '--control <path>',
      "the daemon's control socket (env TANDEM_CONTROL; default /run/tandem/NODE.sock)",
    )
    .showHelpAfterError()
    .exitOverride();
  registerCommands(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit with code 0; commander already printed what it had to say.
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (e instanceof CliError) {
      process.stderr.write(`tandem: ${e.message}\n`);
      return e.exitCode;
    }
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`tandem: ${message}\n`);
    return 1;
  }
}
