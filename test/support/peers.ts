// External test peers (nbdinfo, drbdadm, fio, ...). Outside CI a missing peer skips its test
// with a message naming the package; in CI (CI=true) a missing peer fails the test, because
// a conformance suite that silently did not run is worse than none.
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

export const inCi = process.env['CI'] === 'true';

const found = new Map<string, boolean>();

export function havePeer(command: string): boolean {
  let ok = found.get(command);
  if (ok === undefined) {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore', env: peerEnv() });
      ok = true;
    } catch {
      ok = false;
    }
    found.set(command, ok);
  }
  return ok;
}

/**
 * Returns true when every command is available. Otherwise skips the test (outside CI) or
 * throws (in CI) naming the Debian package to install.
 */
export function requirePeers(t: TestContext, pkg: string, ...commands: string[]): boolean {
  const missing = commands.filter((c) => !havePeer(c));
  if (missing.length === 0) return true;
  const message = `missing ${missing.join(', ')}: apt-get install ${pkg}`;
  if (inCi) throw new Error(`${message} (CI=true: a missing peer is a failure)`);
  t.skip(message);
  return false;
}

/**
 * For a check that adds to a test rather than gates it: true when the command is there. Outside
 * CI a missing one just drops the check; in CI it fails (the check must run there).
 */
export function optionalPeer(pkg: string, command: string): boolean {
  if (havePeer(command)) return true;
  if (inCi)
    throw new Error(
      `missing ${command}: apt-get install ${pkg} (CI=true: a missing peer is a failure)`,
    );
  return false;
}

/** Debian's python tools (nbdsh) need Debian's python first on PATH, not pyenv's. */
export function peerEnv(): NodeJS.ProcessEnv {
  return { ...process.env, PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${process.env['PATH'] ?? ''}` };
}
