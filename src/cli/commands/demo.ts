// `tandem demo`: the README's first command. It grows with the project: each layer that lands
// adds its step, and the output says plainly which parts run for real.
import type { Command } from 'commander';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run a two-node replicated volume on loopback and show failover, step by step')
    .action(() => {
      process.stdout.write(
        'tandem demo: the two-node replicated demo needs the node daemon, which is not built yet.\n',
      );
    });
}
