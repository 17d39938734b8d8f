// Multipath under a real write load, the harder cases (issue 8): the interconnect cut and
// restored with 5% packet loss on the Ethernet path that carries the load meanwhile (no error,
// failover and back, no resync, stalls printed), and both paths cut: the session ends after
// `timeout`, writes go on, and the resync after the reconnect moves the dirty blocks (bitmap).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requireRoot } from '../support/netns.js';
import { requirePeers } from '../support/peers.js';
import {
  MIB,
  fileSha,
  peerStatus,
  skipInitialSync,
  status,
  waitConnected,
  waitInSync,
  waitUntil,
  withPair,
} from '../e2e/support.js';
import { FIO_REGION, cutsUnderFio, pair, startFio, withNetns } from './daemon-fio-harness.js';

test('fio with verify through 4 interconnect cuts with 5% packet loss on the Ethernet path', async (t) => {
  if (!requireRoot(t) || !requirePeers(t, 'fio', 'fio')) return;
  await cutsUnderFio(t, { cycles: 4, lossPercent: 5 });
});

test('both paths cut: the session ends, writes go on, a bitmap resync follows', async (t) => {
  if (!requireRoot(t) || !requirePeers(t, 'fio', 'fio')) return;
  await withNetns((ns) =>
    withPair(pair(ns), async (c) => {
      await skipInitialSync(c, 'alice');
      const before = await peerStatus(c, 'alice');
      ns.setLink('interconnect', 'a', false);
      ns.setLink('ethernet', 'a', false);
      await waitUntil(
        async () => (await peerStatus(c, 'alice')).connection !== 'Connected',
        'alice: disconnected after both paths were cut',
        30_000,
      );
      const fio = startFio(c.dir, c.node('alice').nbdUri, ns.nsA);
      await waitUntil(
        async () => (await peerStatus(c, 'alice')).outOfSyncBytes >= MIB,
        'alice: writes while disconnected marked out of sync',
        30_000,
      );
      const r = await fio.stop();
      assert.equal(r.error, 0, `fio reported an error:\n${r.stderr}`);
      const dirty = (await peerStatus(c, 'alice')).outOfSyncBytes;
      ns.setLink('interconnect', 'a', true);
      ns.setLink('ethernet', 'a', true);
      await waitConnected(c, 'alice', 60_000);
      await waitInSync(c, 'alice', 60_000);
      await waitInSync(c, 'bob', 60_000);
      const after = await peerStatus(c, 'alice');
      const moved = after.resyncBytes - before.resyncBytes;
      assert.ok(moved >= dirty, `the resync moved the dirty blocks (${moved} >= ${dirty})`);
      assert.ok(moved <= FIO_REGION * 1.2, `and no more than fio's region (${moved})`);
      const size = (await status(c, 'alice')).sizeBytes;
      assert.equal(
        await fileSha(c.node('bob').diskPath, size),
        await fileSha(c.node('alice').diskPath, size),
        'both data regions are identical',
      );
    }),
  );
});
