// A filesystem across a failover: ext4 made and filled on the Primary's export (nbdfuse + loop
// device), the Primary killed, the Secondary promoted, and its export checked with fsck -n and
// mounted with every file intact. Pins replication of what a real filesystem sends (mkfs's
// discards and zeroes, flushes, metadata scattered over the device), not only plain writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { attach, detach, requireFilesystemPeers, type Attachment } from '../support/nbdfuse.js';
import { run, runOk } from '../nbd/support/exec.js';
import { MIB, skipInitialSync, waitDisconnected, waitRole, withPair } from './support.js';

test('ext4 written on the Primary mounts intact on the promoted Secondary after fsck -n', async (t) => {
  if (!requireFilesystemPeers(t)) return;
  await withPair({ diskBytes: 96 * MIB }, async (c) => {
    await skipInitialSync(c, 'alice');
    const mnt = join(c.dir, 'mnt');
    await mkdir(mnt);
    const attached: Attachment[] = [];
    let mounted = false;
    try {
      let att = await attach(c.dir, 'alice', c.node('alice').nbdUri);
      attached.push(att);
      await runOk('mkfs.ext4', ['-F', '-q', att.loop], 120_000);
      await runOk('mount', [att.loop, mnt]);
      mounted = true;
      const files = new Map<string, Buffer>();
      for (let d = 0; d < 3; d++) {
        await mkdir(join(mnt, `dir${d}`, 'sub'), { recursive: true });
        for (let f = 0; f < 6; f++) {
          const rel = join(`dir${d}`, f % 2 === 0 ? 'sub' : '', `file${f}.bin`);
          const body = randomBytes(f === 0 ? 4 * MIB : 1 + f * 23456);
          files.set(rel, body);
          await writeFile(join(mnt, rel), body);
        }
      }
      // umount writes everything back and flushes: from here on alice's export holds a clean
      // filesystem, and with protocol C so does bob's disk.
      await runOk('umount', [mnt]);
      mounted = false;
      await detach(att);
      attached.pop();

      await c.stop('alice', 'SIGKILL');
      await waitDisconnected(c, 'bob');
      await c.tandem('bob', 'primary', c.resource);
      await waitRole(c, 'bob', 'Primary');

      att = await attach(c.dir, 'bob', c.node('bob').nbdUri);
      attached.push(att);
      const fsck = await run('fsck.ext4', ['-fn', att.loop], 120_000);
      assert.equal(fsck.code, 0, `fsck -n on bob's export is clean:\n${fsck.stdout}${fsck.stderr}`);
      await runOk('mount', [att.loop, mnt]);
      mounted = true;
      for (const [rel, body] of files) {
        assert.ok((await readFile(join(mnt, rel))).equals(body), `${rel} is intact on bob`);
      }
    } finally {
      if (mounted) await run('umount', [mnt]);
      for (const a of attached) await detach(a);
    }
  });
});
