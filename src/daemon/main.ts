#!/usr/bin/env node
// `tandemd`: the node daemon. Until the daemon issue lands it validates its arguments and says
// honestly that it cannot run resources yet, instead of pretending to.
import { Command } from 'commander';

const program = new Command('tandemd')
  .description('Tandem node daemon: runs every resource configured for this node')
  .option('-c, --config <file>', 'configuration file', '/etc/tandem/tandem.conf')
  .option('-n, --node <name>', 'which `on HOST` section is this node')
  .option('--control <path>', 'control socket path')
  .action(() => {
    process.stderr.write('tandemd: the node daemon is not implemented yet\n');
    process.exitCode = 2;
  });

program.parse();
