// An NBD export as a Linux block device without the nbd kernel module: nbdfuse exposes the
// export as a file, losetup makes that file a loop device. attach() and detach() undo each other
// even half-way, so a failing test leaves no mount, loop device or FUSE process behind.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
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
  // A loop device lets go of its file asynchronously after `losetup -d`; until it has, the FUSE
  // mount is busy. Retry, then fall back to a lazy unmount so the directory can be removed.
  let unmounted = false;
  for (let i = 0; i < 50 && !unmounted; i++) {
    const r = await run('fusermount3', ['-u', a.fuseDir]);
    unmounted = r.code === 0 || /not found|not mounted|Invalid argument/.test(r.stderr);
    if (!unmounted) await new Promise((r) => setTimeout(r, 200));
  }
  if (!unmounted) await run('fusermount3', ['-u', '-z', a.fuseDir]);
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

/** A tree of files of assorted sizes, the first of each directory spanning many blocks. */
export async function writeFileTree(
  root: string,
  o: { dirs: number; filesPerDir: number; firstFileBytes: number; stepBytes: number },
): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (let d = 0; d < o.dirs; d++) {
    await mkdir(join(root, `dir${d}`, 'sub'), { recursive: true });
    for (let f = 0; f < o.filesPerDir; f++) {
      const rel = join(`dir${d}`, f % 2 === 0 ? 'sub' : '', `file${f}.bin`);
      const body = randomBytes(f === 0 ? o.firstFileBytes : 1 + f * o.stepBytes);
      files.set(rel, body);
      await writeFile(join(root, rel), body);
    }
  }
  return files;
}

/** Every file of the tree reads back identical under `root`. */
export async function assertFileTree(
  root: string,
  files: ReadonlyMap<string, Buffer>,
  when: string,
): Promise<void> {
  for (const [rel, body] of files) {
    assert.ok((await readFile(join(root, rel))).equals(body), `${rel} is identical ${when}`);
  }
}

/**
 * One test's attachments and mount point, so the test reads as its steps and cleanup() undoes
 * whatever was done (unmount, loop devices, nbdfuse) even after a failure half-way.
 */
export class FsSession {
  readonly mnt: string;
  private readonly attached: Attachment[] = [];
  private mounted = false;

  constructor(private readonly base: string) {
    this.mnt = join(base, 'mnt');
  }

  /** Attaches the export at `uri` as a loop device; returns its path. */
  async attach(tag: string, uri: string): Promise<string> {
    if (this.attached.length === 0) await mkdir(this.mnt, { recursive: true });
    const a = await attach(this.base, tag, uri);
    this.attached.push(a);
    return a.loop;
  }

  /** Unmounts if needed and detaches the newest attachment. */
  async detach(): Promise<void> {
    await this.umount();
    const a = this.attached.pop();
    if (a !== undefined) await detach(a);
  }

  async mkfs(loop: string): Promise<void> {
    await runOk('mkfs.ext4', ['-F', '-q', loop], 120_000);
  }

  async mount(loop: string): Promise<void> {
    await runOk('mount', [loop, this.mnt]);
    this.mounted = true;
  }

  /** umount writes every dirty page back and flushes the device. */
  async umount(): Promise<void> {
    if (!this.mounted) return;
    await runOk('umount', [this.mnt]);
    this.mounted = false;
  }

  /** fsck -fn: fails the test with fsck's report unless the filesystem is clean. */
  async fsckClean(loop: string, what: string): Promise<void> {
    const fsck = await run('fsck.ext4', ['-fn', loop], 120_000);
    assert.equal(fsck.code, 0, `fsck -n is clean on ${what}:\n${fsck.stdout}${fsck.stderr}`);
  }

  async cleanup(): Promise<void> {
    if (this.mounted) await run('umount', [this.mnt]);
    this.mounted = false;
    for (const a of this.attached.splice(0).reverse()) await detach(a);
  }
}
