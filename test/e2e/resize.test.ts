// `tandem resize` with real daemons: both backing files grow, resize on the Primary grows the
// device on both nodes, new NBD clients see the new size, the new area is resynced and both
// data regions end byte-identical. Pins the refusals too (a peer that is not connected, a
// shrink, a size the peer cannot hold), each with exit code 1 and a hint. Internal metadata
// moves to the new end of the backing file (drbdmeta, DRBD's own tool, finds it there).
// Fails if the new area is not resynced (alice's garbage there would stay on alice only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, truncate } from 'node:fs/promises';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { drbdmeta, parseDump } from '../support/drbdmeta.js';
import { optionalPeer } from '../support/peers.js';
import { runOk } from '../nbd/support/exec.js';
import {
  MIB,
  fileSha,
  nbdWrite,
  peerStatus,
  readDisk,
  skipInitialSync,
  status,
  waitConnected,
  waitDisconnected,
  waitInSync,
  withPair,
} from './support.js';

const DISK_BYTES = 32 * MIB;

/** `tandem` expected to fail: resolves with its error message (exit code included). */
async function refused(c: LocalCluster, node: string, ...args: string[]): Promise<string> {
  try {
    await c.tandem(node, ...args);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`tandem ${args.join(' ')} succeeded on ${node}; a refusal was expected`);
}

async function grow(path: string, bytes: number): Promise<void> {
  await truncate(path, bytes);
}

async function writeFileAt(path: string, offsetBytes: number, data: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(data, 0, data.length, offsetBytes);
  } finally {
    await fh.close();
  }
}

test('resize grows both nodes, resyncs the new area, and new NBD clients see the size', async (t) => {
  const probe = optionalPeer('libnbd-bin', 'nbdinfo');
  await withPair({ diskBytes: DISK_BYTES, metaDisk: 'external' }, async (c) => {
    await skipInitialSync(c, 'alice');
    const before = (await status(c, 'alice')).sizeBytes;
    assert.equal(before, DISK_BYTES);
    const alice = c.node('alice');
    const bob = c.node('bob');

    // Nothing grew yet: resize says so and succeeds.
    const noop = await c.tandem('alice', 'resize', c.resource);
    assert.match(noop, /already \d+ bytes; nothing to grow/);

    // Only alice grew: asking for more than bob holds is refused, naming bob.
    await grow(alice.diskPath, 2 * DISK_BYTES);
    let msg = await refused(c, 'alice', 'resize', '--size', '64M', c.resource);
    assert.match(msg, /exited 1: .*cannot resize: --size 67108864 bytes does not fit: peer bob/);
    assert.match(msg, /grow that backing device first/);

    // A shrink is refused.
    msg = await refused(c, 'alice', 'resize', '--size', '16M', c.resource);
    assert.match(msg, /exited 1: .*shrinking is not supported; Tandem only grows/);

    // Bob grows too. Alice's new area holds garbage bob does not have: only a resync of the
    // new area makes the two files equal.
    await grow(bob.diskPath, 2 * DISK_BYTES);
    await writeFileAt(alice.diskPath, DISK_BYTES + 5 * MIB, randomBytes(MIB));
    const resyncBefore = (await peerStatus(c, 'alice')).resyncBytes;
    const out = await c.tandem('alice', 'resize', c.resource);
    assert.match(out, new RegExp(`grown from ${DISK_BYTES} to ${2 * DISK_BYTES} bytes`));
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    assert.equal((await status(c, 'alice')).sizeBytes, 2 * DISK_BYTES);
    assert.equal((await status(c, 'bob')).sizeBytes, 2 * DISK_BYTES);
    const moved = (await peerStatus(c, 'alice')).resyncBytes - resyncBefore;
    t.diagnostic(`the resync after the resize moved ${moved} bytes`);
    assert.ok(moved >= DISK_BYTES, `the new area (${DISK_BYTES} bytes) was resynced: ${moved}`);

    if (probe) {
      const size = await runOk('nbdinfo', ['--size', alice.nbdUri]);
      assert.equal(size.trim(), String(2 * DISK_BYTES), 'a new NBD client sees the new size');
    }
    // The new area takes writes through NBD and replicates them.
    const tail = randomBytes(64 * 1024);
    await nbdWrite(c, 'alice', [[2 * DISK_BYTES - tail.length, tail]]);
    await waitInSync(c, 'alice');
    assert.deepEqual(await readDisk(c, 'bob', 2 * DISK_BYTES - tail.length, tail.length), tail);
    assert.equal(
      await fileSha(bob.diskPath, 2 * DISK_BYTES),
      await fileSha(alice.diskPath, 2 * DISK_BYTES),
      'both data regions are byte-identical over the new size',
    );

    // A restart keeps the agreed size (la-size), even though the backing is larger still.
    await grow(alice.diskPath, 3 * DISK_BYTES);
    await c.tandem('alice', 'secondary', c.resource);
    await c.tandem('alice', 'down', c.resource);
    await c.tandem('alice', 'up', c.resource);
    await waitConnected(c, 'alice');
    assert.equal((await status(c, 'alice')).sizeBytes, 2 * DISK_BYTES);

    // Disconnected: growing alone needs an explicit size.
    await c.tandem('alice', 'disconnect', c.resource);
    await waitDisconnected(c, 'bob');
    msg = await refused(c, 'alice', 'resize', c.resource);
    assert.match(
      msg,
      /exited 1: .*not connected; growing alone needs an explicit size; connect first/,
    );
  });
});

test('internal metadata moves to the new end; drbdmeta finds it there', async () => {
  const oracle = optionalPeer('drbd-utils', 'drbdmeta');
  await withPair({ diskBytes: DISK_BYTES }, async (c) => {
    await skipInitialSync(c, 'alice');
    const before = (await status(c, 'alice')).sizeBytes;
    const alice = c.node('alice');
    const bob = c.node('bob');
    // A growth smaller than the metadata cannot be used: the new place would overlap the old.
    await grow(alice.diskPath, DISK_BYTES + 4096);
    await grow(bob.diskPath, DISK_BYTES + 4096);
    assert.match(await c.tandem('alice', 'resize', c.resource), /nothing to grow/);
    await grow(alice.diskPath, 2 * DISK_BYTES);
    await grow(bob.diskPath, 2 * DISK_BYTES);
    const out = await c.tandem('alice', 'resize', c.resource);
    assert.match(out, new RegExp(`grown from ${before} to \\d+ bytes`));
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    const size = (await status(c, 'alice')).sizeBytes;
    assert.ok(size > 2 * DISK_BYTES - MIB && size < 2 * DISK_BYTES, `new size ${size}`);
    assert.equal((await status(c, 'bob')).sizeBytes, size);
    assert.equal(
      await fileSha(bob.diskPath, size),
      await fileSha(alice.diskPath, size),
      'both data regions are byte-identical over the new size',
    );
    // Down and up: the metadata is found at the new end of the file, with the new size.
    await c.tandem('alice', 'secondary', c.resource);
    await c.tandem('alice', 'down', c.resource);
    if (oracle) {
      const d = parseDump(await drbdmeta(alice.diskPath, 'internal', 'dump-md'));
      assert.equal(d.laSizeSect * 512, size, "drbdmeta reads la-size at the file's new end");
    }
    await c.tandem('alice', 'up', c.resource);
    await waitConnected(c, 'alice');
    assert.equal((await status(c, 'alice')).sizeBytes, size);
    await waitInSync(c, 'alice');

    // Grown while down, without resize: the end holds no metadata; the message says what to do.
    await c.tandem('alice', 'down', c.resource);
    await grow(alice.diskPath, 3 * DISK_BYTES);
    const msg = await refused(c, 'alice', 'up', c.resource);
    assert.match(msg, /no v09 metadata magic.*shrink it back to its former size/);
    await truncate(alice.diskPath, 2 * DISK_BYTES);
    await c.tandem('alice', 'up', c.resource);
    await waitConnected(c, 'alice');
  });
});
