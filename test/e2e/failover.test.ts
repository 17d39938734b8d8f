// Two real nodes: create-md, up, a full initial sync, 256 MiB written through the Primary's NBD
// export with nbdcopy, the Primary taken `down`, the Secondary promoted and read back with
// nbdcopy: identical. Pins the whole replicated data path (NBD -> engine -> both disks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { requirePeers } from '../support/peers.js';
import { runOk } from '../nbd/support/exec.js';
import {
  MIB,
  fileSha,
  peerStatus,
  status,
  waitDisconnected,
  waitInSync,
  waitRole,
  withPair,
} from './support.js';

const WRITE_BYTES = 256 * MIB;

test('256 MiB through nbdcopy survive `down` of the Primary and read back from the peer', async (t) => {
  if (!requirePeers(t, 'libnbd-bin', 'nbdcopy')) return;
  await withPair({ diskBytes: WRITE_BYTES + 8 * MIB }, async (c) => {
    const before = await status(c, 'alice');
    assert.equal(before.disk, 'Inconsistent');
    assert.equal(before.peers[0]?.peerDisk, 'Inconsistent');

    // Initial sync: alice's data becomes the generation, every block goes to bob.
    await c.tandem('alice', 'primary', '--force', c.resource);
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    const synced = await peerStatus(c, 'alice');
    assert.ok(
      synced.resyncBytes >= before.sizeBytes,
      `the initial sync moved the whole device (${synced.resyncBytes} of ${before.sizeBytes})`,
    );

    const src = join(c.dir, 'src.img');
    const fh = await open(src, 'w');
    for (let off = 0; off < WRITE_BYTES; off += 4 * MIB) await fh.write(randomBytes(4 * MIB));
    await fh.close();
    const want = await fileSha(src, WRITE_BYTES);
    await runOk('nbdcopy', ['--flush', src, c.node('alice').nbdUri], 120_000);

    await c.tandem('alice', 'down', c.resource);
    await waitDisconnected(c, 'bob');
    await c.tandem('bob', 'primary', c.resource);
    await waitRole(c, 'bob', 'Primary');

    const back = join(c.dir, 'back.img');
    await runOk('nbdcopy', [c.node('bob').nbdUri, back], 120_000);
    assert.equal(await fileSha(back, WRITE_BYTES), want, "bob's export reads what alice wrote");
    // Both backing files hold it too (data regions start at offset 0 with internal metadata).
    assert.equal(await fileSha(c.node('alice').diskPath, WRITE_BYTES), want);
    assert.equal(await fileSha(c.node('bob').diskPath, WRITE_BYTES), want);
  });
});
