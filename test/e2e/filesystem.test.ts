// A filesystem across a failover: ext4 made and filled on the Primary's export (nbdfuse + loop
// device), the Primary killed, the Secondary promoted, and its export checked with fsck -n and
// mounted with every file intact. Pins replication of what a real filesystem sends (mkfs's
// discards and zeroes, flushes, metadata scattered over the device), not only plain writes.
import { test } from 'node:test';
import {
  FsSession,
  assertFileTree,
  requireFilesystemPeers,
  writeFileTree,
} from '../support/nbdfuse.js';
import { MIB, skipInitialSync, waitDisconnected, waitRole, withPair } from './support.js';

test('ext4 written on the Primary mounts intact on the promoted Secondary after fsck -n', async (t) => {
  if (!requireFilesystemPeers(t)) return;
  await withPair({ diskBytes: 96 * MIB }, async (c) => {
    await skipInitialSync(c, 'alice');
    const fs = new FsSession(c.dir);
    try {
      const onAlice = await fs.attach('alice', c.node('alice').nbdUri);
      await fs.mkfs(onAlice);
      await fs.mount(onAlice);
      const files = await writeFileTree(fs.mnt, {
        dirs: 3,
        filesPerDir: 6,
        firstFileBytes: 4 * MIB,
        stepBytes: 23456,
      });
      // From here on alice's export holds a clean filesystem, and with protocol C so does
      // bob's disk.
      await fs.detach();

      await c.stop('alice', 'SIGKILL');
      await waitDisconnected(c, 'bob');
      await c.tandem('bob', 'primary', c.resource);
      await waitRole(c, 'bob', 'Primary');

      const onBob = await fs.attach('bob', c.node('bob').nbdUri);
      await fs.fsckClean(onBob, "bob's export");
      await fs.mount(onBob);
      await assertFileTree(fs.mnt, files, 'on bob');
    } finally {
      await fs.cleanup();
    }
  });
});
