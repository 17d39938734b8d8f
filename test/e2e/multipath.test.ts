// Two real nodes whose connection has two paths (DRBD 9 `connection { path {} path {} }` on
// 127.0.0.1 and 127.0.0.2): the daemon runs it as one multipath session; sync and writes land
// identically on both disks. The `address ssocks` form on loopback has nothing faster to
// upgrade to and stays plain TCP inside a session. (Path cuts under load: test/multipath.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { PathStatus } from '../../src/daemon/status.js';
import {
  MIB,
  fileSha,
  nbdWrite,
  peerStatus,
  status,
  waitInSync,
  withPair,
  type PairOptions,
} from './support.js';

const DISK_BYTES = 16 * MIB;

async function replicate(
  o: Omit<PairOptions, 'diskBytes'>,
  check: (paths: readonly PathStatus[]) => void = () => {},
): Promise<void> {
  await withPair({ diskBytes: DISK_BYTES, ...o }, async (c) => {
    const st = await status(c, 'alice');
    assert.equal(st.peers[0]?.transport?.name, 'multipath', 'the connection is a session');
    await c.tandem('alice', 'primary', '--force', c.resource);
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    assert.ok((await peerStatus(c, 'alice')).resyncBytes >= st.sizeBytes);
    const writes: [number, Buffer][] = [];
    for (let i = 0; i < 24; i++) writes.push([i * 512 * 1024, randomBytes(64 * 1024)]);
    await nbdWrite(c, 'alice', writes);
    await waitInSync(c, 'alice');
    assert.equal(
      await fileSha(c.node('bob').diskPath, st.sizeBytes),
      await fileSha(c.node('alice').diskPath, st.sizeBytes),
      'both data regions are identical',
    );
    const after = await peerStatus(c, 'alice');
    assert.equal(after.outOfSyncBytes, 0);
    check(after.paths);
  });
}

const established = (paths: readonly PathStatus[]): readonly PathStatus[] =>
  paths.filter((p) => p.established);

test('two paths in a connection run as one multipath session', async () => {
  await replicate({ paths: 2 }, (paths) => {
    assert.equal(established(paths).length, 2, 'both paths joined the session');
    assert.equal(paths.filter((p) => p.active).length, 1, 'one carries the traffic');
  });
});

test('two paths with load-balance-paths yes: DATA goes over both', async () => {
  await replicate({ paths: 2, net: '    load-balance-paths yes;' }, (paths) => {
    const up = established(paths);
    assert.equal(up.length, 2, 'both paths joined the session');
    for (const p of up) assert.ok(p.bytesSent > 0, `${p.remote} carried data (${p.bytesSent})`);
  });
});

test('address ssocks on loopback: a session over TCP', async () => {
  await replicate({ addressFamily: 'ssocks' });
});
