// on-io-error pass_on with real daemons: the Primary's disk fails one write (a test-only fault,
// src/storage/faults.ts: NODE_ENV=test and TANDEM_TEST_DISK_FAULTS). The write completes
// through the peer; the block is stale here, marked and Inconsistent on disk, so a restart keeps
// it; a read of it is served by the peer, never from the stale disk; and the resync after the
// reconnect puts the new data on the local disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NbdClient } from '../../src/nbd/client.js';
import { TEST_DISK_FAULTS_ENV } from '../../src/storage/faults.js';
import {
  MIB,
  peerStatus,
  readDisk,
  skipInitialSync,
  status,
  waitConnected,
  waitInSync,
  withPair,
} from './support.js';

const BLOCK = 4096;
const STALE = 3 * MIB; // the block whose local write fails
const GOOD = 5 * MIB; // written and read locally as usual

test('pass_on: a failed local write completes through the peer, is marked, read from the peer and resynced', async () => {
  const faults = JSON.stringify([
    { resource: 'r0', op: 'write', offsetBytes: STALE, lengthBytes: BLOCK, count: 1 },
  ]);
  let inject = true;
  await withPair(
    {
      diskBytes: 16 * MIB,
      disk: '    on-io-error pass_on;',
      wrap: (node) =>
        node === 'alice' && inject
          ? ['env', 'NODE_ENV=test', `${TEST_DISK_FAULTS_ENV}=${faults}`]
          : [],
    },
    async (c) => {
      assert.match(c.node('alice').log, /TEST ONLY: injecting disk faults/);
      assert.doesNotMatch(c.node('bob').log, /injecting disk faults/);
      await skipInitialSync(c, 'alice');

      const fresh = randomBytes(BLOCK);
      const good = randomBytes(BLOCK);
      const nbd = await NbdClient.connect({
        listener: { kind: 'unix', path: c.node('alice').nbdSocket },
        exportName: c.resource,
      });
      try {
        await nbd.write(GOOD, good);
        await nbd.write(STALE, fresh); // alice's part fails; bob took it
        await nbd.flush();
        assert.match(c.node('alice').log, /injected test fault \(write\)/);

        const marked = await status(c, 'alice');
        assert.equal(marked.role, 'Primary');
        assert.equal(marked.disk, 'Inconsistent', 'the disk holds a stale block');
        assert.equal((await peerStatus(c, 'alice')).outOfSyncBytes, BLOCK, 'exactly it');
        assert.deepEqual(
          await readDisk(c, 'alice', STALE, BLOCK),
          Buffer.alloc(BLOCK),
          "alice's disk still has the old block",
        );
        assert.deepEqual(await readDisk(c, 'bob', STALE, BLOCK), fresh);

        assert.deepEqual(await nbd.read(STALE, BLOCK), fresh, 'served by bob, not the stale disk');
        assert.deepEqual(await nbd.read(GOOD, BLOCK), good);
      } finally {
        await nbd.disconnect();
      }

      // A restart (without the fault) finds the mark: Inconsistent, the block out of sync.
      inject = false;
      await c.stop('alice');
      await c.start('alice');
      await c.tandem('alice', 'attach', c.resource);
      const restarted = await status(c, 'alice');
      assert.equal(restarted.disk, 'Inconsistent', 'persisted');
      assert.ok(
        (await peerStatus(c, 'alice')).outOfSyncBytes >= BLOCK,
        'the stale block is still marked after the restart',
      );
      assert.deepEqual(await readDisk(c, 'alice', STALE, BLOCK), Buffer.alloc(BLOCK));

      await c.tandem('alice', 'up', c.resource); // attached already: this connects
      await waitConnected(c, 'alice');
      await waitInSync(c, 'alice');
      await waitInSync(c, 'bob');
      assert.equal((await status(c, 'alice')).disk, 'UpToDate');
      assert.equal((await peerStatus(c, 'alice')).outOfSyncBytes, 0);
      assert.deepEqual(await readDisk(c, 'alice', STALE, BLOCK), fresh, 'the resync brought it');
      assert.deepEqual(await readDisk(c, 'alice', GOOD, BLOCK), good);
    },
  );
});
