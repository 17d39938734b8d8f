// A real filesystem on a Tandem export: nbdfuse exposes it as a file, losetup makes it a block
// device, ext4 is made, mounted, filled with a tree of files, checked with fsck -n and mounted
// again with every file identical. Needs root (loop devices, mount); cleans up even on failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatNbdUri } from '../../src/nbd/uri.js';
import { inCi, peerEnv, requirePeers } from '../support/peers.js';
import { startHarness } from './support/harness.js';
import { run, runOk } from './support/exec.js';

const MIB = 1024 * 1024;

test('ext4 through nbdfuse and a loop device survives umount, fsck -n and remount', async (t) => {
  if (!requirePeers(t, 'libnbd-bin', 'nbdfuse')) return;
  if (!requirePeers(t, 'fuse3', 'fusermount3')) return;
  if (!requirePeers(t, 'e2fsprogs', 'mkfs.ext4', 'fsck.ext4')) return;
  if (!requirePeers(t, 'util-linux', 'losetup', 'mount', 'umount')) return;
  if (process.getuid?.() !== 0) {
    if (inCi) throw new Error('the filesystem test needs root in CI');
    t.skip('needs root for losetup and mount');
    return;
  }
  // Storage's FileStore behind the export: the standalone data path as tandemd serves it.
  const h = await startHarness([{ name: 'fs', sizeBytes: 96 * MIB, file: true }]);
  const mnt = join(h.dir, 'mnt');
  await mkdir(mnt);
  const uri = formatNbdUri({ kind: 'unix', path: h.unix.address }, 'fs');
  const attached: Attachment[] = [];
  let mounted = false;
  try {
    let att = await attach(h.dir, 'a', uri);
    attached.push(att);
    await runOk('mkfs.ext4', ['-F', '-q', att.loop], 120_000);
    await runOk('mount', [att.loop, mnt]);
    mounted = true;

    // A tree of files of assorted sizes, some spanning many blocks.
    const files = new Map<string, Buffer>();
    for (let d = 0; d < 4; d++) {
      await mkdir(join(mnt, `dir${d}`, 'sub'), { recursive: true });
      for (let f = 0; f < 8; f++) {
        const rel = join(`dir${d}`, f % 2 === 0 ? 'sub' : '', `file${f}.bin`);
        const body = randomBytes(f === 0 ? 3 * MIB : 1 + f * 12345);
        files.set(rel, body);
        await writeFile(join(mnt, rel), body);
      }
    }
    await runOk('umount', [mnt]);
    mounted = false;
    const fsck = await run('fsck.ext4', ['-fn', att.loop], 120_000);
    assert.equal(fsck.code, 0, `fsck -n is clean:\n${fsck.stdout}${fsck.stderr}`);
    await detach(att);
    attached.pop();
    // The ext4 superblock magic is in the export itself, not only in a page cache.
    const image = await readFile(h.files.get('fs') ?? '');
    assert.equal(image.readUInt16LE(1024 + 56), 0xef53);

    // A fresh nbdfuse and loop device: everything now comes from the server.
    att = await attach(h.dir, 'b', uri);
    attached.push(att);
    await runOk('mount', [att.loop, mnt]);
    mounted = true;
    for (const [rel, body] of files) {
      assert.ok((await readFile(join(mnt, rel))).equals(body), `${rel} is identical after remount`);
    }
  } finally {
    if (mounted) await run('umount', [mnt]);
    for (const a of attached) await detach(a);
    await h.stop();
  }
});

interface Attachment {
  fuseDir: string;
  loop: string;
  fuse: ChildProcess;
  exited: Promise<void>;
}

/** nbdfuse DIR/disk URI, then a loop device over that file; undone by detach() even half-way. */
async function attach(base: string, tag: string, uri: string): Promise<Attachment> {
  const fuseDir = join(base, `fuse-${tag}`);
  const pidFile = join(base, `nbdfuse-${tag}.pid`);
  const disk = join(fuseDir, 'disk');
  await mkdir(fuseDir);
  const fuse = spawn('nbdfuse', ['-P', pidFile, disk, uri], { env: peerEnv(), stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => fuse.once('exit', () => resolve()));
  const att: Attachment = { fuseDir, loop: '', fuse, exited };
  try {
    await waitFor(
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

async function detach(a: Attachment): Promise<void> {
  if (a.loop !== '') await run('losetup', ['-d', a.loop]);
  a.loop = '';
  await run('fusermount3', ['-u', a.fuseDir]);
  const killer = setTimeout(() => a.fuse.kill('SIGKILL'), 10_000);
  await a.exited;
  clearTimeout(killer);
}

async function waitFor(
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
