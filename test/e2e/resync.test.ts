// Disconnect, write 64 MiB of scattered blocks on the Primary, reconnect: the resync moves only
// the blocks written while apart (the bitmap's job) and both backing files end byte-identical.
// Pins: a bitmap that misses a write (data differs) or a resync that falls back to a full sync
// (resyncBytes far above what was written).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NbdClient } from '../../src/nbd/client.js';
import { SeededRandom } from '../../src/util/prng.js';
import {
  MIB,
  fileSha,
  peerStatus,
  skipInitialSync,
  status,
  waitConnected,
  waitDisconnected,
  waitInSync,
  withPair,
} from './support.js';

const DISK_BYTES = 256 * MIB;
const WRITE_BYTES = 64 * MIB;
const BLOCK = 4096;

test('a reconnect resyncs only the blocks written while disconnected', async (t) => {
  await withPair({ diskBytes: DISK_BYTES }, async (c) => {
    await skipInitialSync(c, 'alice');
    const size = (await status(c, 'alice')).sizeBytes;
    const resyncBefore = (await peerStatus(c, 'alice')).resyncBytes;

    await c.tandem('alice', 'disconnect', c.resource);
    await waitDisconnected(c, 'alice');
    await waitDisconnected(c, 'bob');

    // Runs of 1-16 blocks at random non-overlapping places until WRITE_BYTES are dirty.
    const rng = new SeededRandom(0x7a4de1);
    const blocks = size / BLOCK;
    const dirty = new Uint8Array(blocks);
    const nbd = await NbdClient.connect({
      listener: { kind: 'unix', path: c.node('alice').nbdSocket },
      exportName: c.resource,
    });
    let written = 0;
    const inFlight: Promise<void>[] = [];
    while (written < WRITE_BYTES) {
      const count = Math.min(1 + rng.int(16), (WRITE_BYTES - written) / BLOCK);
      const start = rng.int(blocks - count);
      if (dirty.subarray(start, start + count).some((b) => b !== 0)) continue;
      dirty.fill(1, start, start + count);
      const data = randomBytes(count * BLOCK);
      inFlight.push(nbd.write(start * BLOCK, data));
      written += data.length;
      if (inFlight.length >= 64) await Promise.all(inFlight.splice(0));
    }
    await Promise.all(inFlight);
    await nbd.flush();
    await nbd.disconnect();

    const apart = await peerStatus(c, 'alice');
    assert.equal(apart.outOfSyncBytes, WRITE_BYTES, 'the bitmap holds exactly the written blocks');

    await c.tandem('alice', 'connect', c.resource);
    await waitConnected(c, 'alice');
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');

    const after = await peerStatus(c, 'alice');
    const moved = after.resyncBytes - resyncBefore;
    t.diagnostic(`${WRITE_BYTES} bytes written while apart; the resync moved ${moved}`);
    assert.ok(
      moved >= WRITE_BYTES && moved <= 1.2 * WRITE_BYTES,
      `resync moved ${moved} bytes for ${WRITE_BYTES} written`,
    );
    assert.equal(after.outOfSyncBytes, 0);
    const bob = await peerStatus(c, 'bob');
    assert.ok(
      bob.resyncBytes >= WRITE_BYTES && bob.resyncBytes <= 1.2 * WRITE_BYTES,
      `bob received ${bob.resyncBytes} resync bytes`,
    );

    // The daemons are still running: the data region is stable once both are in sync and no
    // client writes. Compare the backing files directly.
    assert.equal(
      await fileSha(c.node('bob').diskPath, size),
      await fileSha(c.node('alice').diskPath, size),
      'both data regions are byte-identical',
    );
  });
});
