// A real filesystem on a Tandem export: nbdfuse exposes it as a file, losetup makes it a block
// device, ext4 is made, mounted, filled with a tree of files, checked with fsck -n and mounted
// again with every file identical. Needs root (loop devices, mount); cleans up even on failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { formatNbdUri } from '../../src/nbd/uri.js';
import {
  FsSession,
  assertFileTree,
  requireFilesystemPeers,
  writeFileTree,
} from '../support/nbdfuse.js';
import { startHarness } from './support/harness.js';

const MIB = 1024 * 1024;

test('ext4 through nbdfuse and a loop device survives umount, fsck -n and remount', async (t) => {
  if (!requireFilesystemPeers(t)) return;
  // Storage's FileStore behind the export: the standalone data path as tandemd serves it.
  const h = await startHarness([{ name: 'fs', sizeBytes: 96 * MIB, file: true }]);
  const uri = formatNbdUri({ kind: 'unix', path: h.unix.address }, 'fs');
  const fs = new FsSession(h.dir);
  try {
    let loop = await fs.attach('a', uri);
    await fs.mkfs(loop);
    await fs.mount(loop);
    const files = await writeFileTree(fs.mnt, {
      dirs: 4,
      filesPerDir: 8,
      firstFileBytes: 3 * MIB,
      stepBytes: 12345,
    });
    await fs.umount();
    await fs.fsckClean(loop, 'the export');
    await fs.detach();
    // The ext4 superblock magic is in the export itself, not only in a page cache.
    const image = await readFile(h.files.get('fs') ?? '');
    assert.equal(image.readUInt16LE(1024 + 56), 0xef53);

    // A fresh nbdfuse and loop device: everything now comes from the server.
    loop = await fs.attach('b', uri);
    await fs.mount(loop);
    await assertFileTree(fs.mnt, files, 'after remount');
  } finally {
    await fs.cleanup();
    await h.stop();
  }
});
