// An NBD export as a Linux block device without the nbd kernel module: nbdfuse exposes the
// export as a file, losetup makes that file a loop device. attach() and detach() undo each other
// even half-way, so a failing test leaves no mount, loop device or FUSE process behind.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { run, runOk } from '../nbd/support/exec.js';
import { inCi, peerEnv, requirePeers } from './peers.js';

export interface Attachment {
  readonly fuseDir: string;
  loop: string;
  readonly fuse: ChildProcess;
  readonly exited: Promise<void>;
}

/** Every program a filesystem-on-NBD test needs, and root; skips (or fails in CI) otherwise. */
export function requireFilesystemPeers(t: TestContext): boolean {
  if (!requirePeers(t, 'libnbd-bin', 'nbdfuse')) return false;
  if (!requirePeers(t, 'fuse3', 'fusermount3')) return false;
  if (!requirePeers(t, 'e2fsprogs', 'mkfs.ext4', 'fsck.ext4')) return false;
  if (!requirePeers(t, 'util-linux', 'losetup', 'mount', 'umount')) return false;
  if (process.getuid?.() !== 0) {
    if (inCi) throw new Error('the filesystem test needs root in CI');
    t.skip('needs root for losetup and mount');
    return false;
  }
  return true;
}

/** nbdfuse BASE/fuse-TAG/disk URI, then a loop device over that file. */
export async function attach(base: string, tag: string, uri: string): Promise<Attachment> {
  const fuseDir = join(base, `fuse-${tag}`);
  const pidFile = join(base, `nbdfuse-${tag}.pid`);
  const disk = join(fuseDir, 'disk');
  await mkdir(fuseDir);
  const fuse = spawn('nbdfuse', ['-P', pidFile, disk, uri], { env: peerEnv(), stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => fuse.once('exit', () => resolve()));
  const att: Attachment = { fuseDir, loop: '', fuse, exited };
  try {
    // nbdfuse writes its pid file once the FUSE mount serves requests; it has no event to wait on.
    await pollUntil(
      async () =>
        access(pidFile).then(
          () => true,
          () => false,
        ),
      'nbdfuse ready',
    );
    att.loop = (await runOk('losetup', ['-f', '--show', disk])).trim();
    assert.match(att.loop, /^\/dev\/loop\d+$/);
    return att;
  } catch (e) {
    await detach(att);
    throw e;
  }
}

export async function detach(a: Attachment): Promise<void> {
  if (a.loop !== '') await run('losetup', ['-d', a.loop]);
  a.loop = '';
  await run('fusermount3', ['-u', a.fuseDir]);
  const killer = setTimeout(() => a.fuse.kill('SIGKILL'), 10_000);
  await a.exited;
  clearTimeout(killer);
}

async function pollUntil(
  cond: () => Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const start = performance.now();
  while (!(await cond())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
