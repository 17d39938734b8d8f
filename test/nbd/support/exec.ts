// Runs external peers (nbdinfo, qemu-io, ...) asynchronously: the NBD server under test runs
// in this same process, so a synchronous exec would deadlock it.
import { execFile } from 'node:child_process';
import { peerEnv } from '../../support/peers.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { env: peerEnv(), timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs and fails with the command's output when it exits non-zero. */
export async function runOk(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
