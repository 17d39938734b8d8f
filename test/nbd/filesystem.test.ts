// A real filesystem on a Tandem export: nbdfuse exposes it as a file, losetup makes it a block
// device, ext4 is made, mounted, filled with a tree of files, checked with fsck -n and mounted
// again with every file identical. Needs root (loop devices, mount); cleans up even on failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatNbdUri } from '../../src/nbd/uri.js';
import { attach, detach, requireFilesystemPeers, type Attachment } from '../support/nbdfuse.js';
import { startHarness } from './support/harness.js';
import { run, runOk } from './support/exec.js';

const MIB = 1024 * 1024;

test('ext4 through nbdfuse and a loop device survives umount, fsck -n and remount', async (t) => {
  if (!requireFilesystemPeers(t)) return;
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
