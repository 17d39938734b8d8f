// Global options shared by every `tandem` command, resolved once: --config, --node, --control.
import { hostname } from 'node:os';
import type { Command } from 'commander';

export const DEFAULT_CONFIG_PATH = '/etc/tandem/tandem.conf';

export interface GlobalOptions {
  /** The configuration file (--config, $TANDEM_CONFIG, /etc/tandem/tandem.conf). */
  readonly configPath: string;
  /** Which `on HOST` section is this node (--node, $TANDEM_NODE, the hostname). */
  readonly node: string;
  /** The daemon's control socket (--control, default /run/tandem/NODE.sock). */
  readonly controlPath: string;
}

export function defaultControlPath(node: string): string {
  return `/run/tandem/${node}.sock`;
}

export function globalOptions(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ config?: string; node?: string; control?: string }>();
  const node = o.node ?? process.env['TANDEM_NODE'] ?? hostname();
  return {
    configPath: o.config ?? process.env['TANDEM_CONFIG'] ?? DEFAULT_CONFIG_PATH,
    node,
    controlPath: o.control ?? defaultControlPath(node),
  };
}

/** A failure the user can act on: printed as one line on stderr, with this exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
