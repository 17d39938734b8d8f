// Availability probes: a system is only benchmarked when the programs it needs actually run.
import { execFile } from 'node:child_process';
import type { Availability } from '../types.js';
import { peerEnv } from '../util.js';

/** Runs `command args` briefly; available when it exits 0. */
export function commandWorks(command: string, args: readonly string[]): Promise<Availability> {
  return new Promise((resolve) => {
    execFile(command, args, { env: peerEnv(), timeout: 10_000 }, (e) => {
      resolve(
        e === null
          ? { available: true }
          : {
              available: false,
              reason: `${command} does not run here (${e.message.split('\n')[0]})`,
            },
      );
    });
  });
}

/** First line of `command args` output (versions for the report), or "unknown". */
export function commandOutput(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(command, args, { env: peerEnv(), timeout: 10_000 }, (e, stdout, stderr) => {
      const text = `${stdout}${stderr}`.trim().split('\n')[0] ?? '';
      resolve(e === null && text ? text : 'unknown');
    });
  });
}
