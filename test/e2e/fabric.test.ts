// Two real nodes replicating over the fabric transport (`address sdp`, libfabric's tcp provider
// on loopback): connect, initial sync, writes through NBD, both backing files identical, and
// the status names the fabric transport on the established path.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { loadFabricAddon } from '../../src/transport/fabric/addon.js';
import { requirePeers } from '../support/peers.js';
import { MIB, fileSha, nbdWrite, peerStatus, status, waitInSync, withPair } from './support.js';

const DISK_BYTES = 32 * MIB;

test('a pair over address sdp (fabric, tcp provider) syncs and replicates', async (t) => {
  if (!requirePeers(t, 'libfabric-dev', 'fi_info')) return;
  const addon = loadFabricAddon();
  if (!addon.ok) {
    if (process.env['CI'] === 'true') assert.fail(`fabric addon not built: ${addon.error}`);
    t.skip(`fabric addon not built: ${addon.error}`);
    return;
  }
  await withPair(
    { diskBytes: DISK_BYTES, addressFamily: 'sdp', net: '    fabric-provider tcp;' },
    async (c) => {
      const st = await status(c, 'alice');
      const path = st.peers[0]?.paths.find((p) => p.established);
      assert.equal(path?.transport, 'fabric', 'the established path is a fabric one');
      assert.equal(st.peers[0]?.transport?.name, 'fabric', 'the channel in use is a fabric one');

      await c.tandem('alice', 'primary', '--force', c.resource);
      await waitInSync(c, 'alice');
      await waitInSync(c, 'bob');
      assert.ok((await peerStatus(c, 'alice')).resyncBytes >= st.sizeBytes);

      const writes: [number, Buffer][] = [];
      for (let i = 0; i < 16; i++) writes.push([i * 2 * MIB, randomBytes(256 * 1024)]);
      writes.push([7 * 4096, randomBytes(4096)]);
      await nbdWrite(c, 'alice', writes);
      await waitInSync(c, 'alice');
      const size = (await status(c, 'alice')).sizeBytes;
      assert.equal(
        await fileSha(c.node('bob').diskPath, size),
        await fileSha(c.node('alice').diskPath, size),
        'both data regions are identical',
      );
    },
  );
});
