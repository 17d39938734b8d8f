// `address ssocks` with real tandemd processes in two network namespaces joined by two
// networks: the nodes connect over "ethernet" (198.51.100.0/24, the configured address), find
// each other's "interconnect" address (203.0.113.0/24) through the connection manager and move
// the session there; cutting the interconnect fails over to Ethernet and restoring it fails
// back, with writes on both sides of each switch, no disconnect, no resync, identical disks.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { NetnsPair, requireRoot } from '../support/netns.js';
import {
  MIB,
  fileSha,
  nbdWrite,
  peerStatus,
  skipInitialSync,
  waitUntil,
  withPair,
} from '../e2e/support.js';

const DISK_BYTES = 16 * MIB;

async function onPath(c: LocalCluster, node: string, prefix: string): Promise<void> {
  await waitUntil(
    async () =>
      (await peerStatus(c, node)).paths.some((p) => p.active && p.remote.startsWith(`${prefix}.`)),
    `${node}: session on ${prefix}.0/24`,
    30_000,
  );
}

test('ssocks: upgrade to the interconnect, fail over to Ethernet and back, no resync', async (t) => {
  if (!requireRoot(t)) return;
  const ns = NetnsPair.create([
    { name: 'interconnect', prefix: '203.0.113' },
    { name: 'ethernet', prefix: '198.51.100' },
  ]);
  try {
    const eth = ns.net('ethernet');
    await withPair(
      {
        diskBytes: DISK_BYTES,
        addressFamily: 'ssocks',
        ips: { host: { alice: eth.addrA, bob: eth.addrB } },
        wrap: (n) => ['ip', 'netns', 'exec', n === 'alice' ? ns.nsA : ns.nsB],
        net: '    ping-timeout 5;\n    timeout 30;',
      },
      async (c) => {
        await skipInitialSync(c, 'alice');
        await onPath(c, 'alice', '203.0.113');
        const before = await peerStatus(c, 'alice');
        let off = 0;
        const write = async (): Promise<void> => {
          const w: [number, Buffer][] = [];
          for (let i = 0; i < 8; i++, off += 256 * 1024) w.push([off, randomBytes(64 * 1024)]);
          await nbdWrite(c, 'alice', w);
        };
        await write();
        for (let cycle = 0; cycle < 2; cycle++) {
          ns.setLink('interconnect', cycle === 0 ? 'a' : 'b', false);
          await onPath(c, 'alice', '198.51.100');
          await write();
          ns.setLink('interconnect', cycle === 0 ? 'a' : 'b', true);
          await onPath(c, 'alice', '203.0.113');
          await write();
        }
        const after = await peerStatus(c, 'alice');
        assert.equal(after.connection, 'Connected');
        assert.ok(after.failovers >= 2, `two failovers (${after.failovers})`);
        assert.ok(after.failbacks >= 2, `two failbacks (${after.failbacks})`);
        assert.equal(after.resyncBytes, before.resyncBytes, 'no resync');
        assert.equal(after.outOfSyncBytes, 0);
        assert.equal(
          await fileSha(c.node('bob').diskPath, DISK_BYTES - MIB),
          await fileSha(c.node('alice').diskPath, DISK_BYTES - MIB),
          'both data regions are identical',
        );
      },
    );
  } finally {
    ns.cleanup();
  }
});
