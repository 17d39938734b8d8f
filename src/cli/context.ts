// Global options shared by every `tandem` command, resolved once: --config, --node, --control.
import { hostname } from 'node:os';
import type { Command } from 'commander';

export const DEFAULT_CONFIG_PATH = '/etc/tandem/tandem.conf';

export interface GlobalOptions {
  /** The configuration file (--config, $TANDEM_CONFIG, /etc/tandem/tandem.conf). */
  readonly configPath: string;
  /** Which `on HOST` section is this node (--node, $TANDEM_NODE, the hostname). */
  readonly node: string;
  /** The daemon's control socket (--control, $TANDEM_CONTROL, /run/tandem/NODE.sock). */
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
    controlPath: o.control ?? process.env['TANDEM_CONTROL'] ?? defaultControlPath(node),
  };
}

/**
 * Exit codes of `tandem`: 0 done; otherwise one line on stderr says why and what to do next.
 * 10 for configuration errors is drbdadm's.
 */
export const EXIT = {
  ok: 0,
  /** The resource's state does not allow it (e.g. promoting an Inconsistent disk). */
  refused: 1,
  /** Bad command line (unknown command, option or value). */
  usage: 2,
  /** No tandemd answers on the control socket. */
  noDaemon: 3,
  /** The daemon tried and failed: disk or metadata I/O. */
  failed: 4,
  /** wait-connect / wait-sync gave up after --timeout. */
  timeout: 5,
  config: 10,
  /** A bug in Tandem. */
  internal: 70,
} as const;

/** The exit code for an error the daemon answered with (its stable error code). */
export function exitCodeOf(errorCode: string): number {
  switch (errorCode) {
    case 'TANDEM_ERR_STATE':
      return EXIT.refused;
    case 'TANDEM_ERR_CONTROL':
    case 'TANDEM_ERR_INVALID_REQUEST':
      return EXIT.usage;
    case 'TANDEM_ERR_CONFIG':
      return EXIT.config;
    case 'TANDEM_ERR_METADATA':
    case 'TANDEM_ERR_DISK_IO':
      return EXIT.failed;
    case 'TANDEM_ERR_INTERNAL':
      return EXIT.internal;
    default:
      return EXIT.refused;
  }
}

/** A failure the user can act on: printed as one line on stderr, with this exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
    /** The daemon's refusal code, when the engine refused the operation. */
    readonly refusal?: string,
  ) {
    super(message);
  }
}
