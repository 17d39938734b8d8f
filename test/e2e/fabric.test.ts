// Two real nodes replicating over the fabric transport: connect, initial sync, writes through
// NBD, both backing files identical, and `status` names the fabric transport and its provider
// and proves the zero-copy path (zeroCopyBytes grows with large writes). On the host: libfabric's
// tcp and sockets providers on loopback, selected by `address sdp` and by `transport "rdma"`
// (FABRIC_E2E_PROVIDERS picks others). The Soft-RoCE guest test
// (test/transport/fabric/softroce.test.ts) reruns this file over `verbs` on its rxe address
// (FABRIC_E2E_PROVIDERS, FABRIC_E2E_HOSTS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import {
  FABRIC_BUFFER_BYTES,
  FABRIC_WIRE_HEADER_BYTES,
  FABRIC_ZCOPY_THRESHOLD_BYTES,
} from '../../src/limits.js';
import { loadFabricAddon } from '../../src/transport/fabric/addon.js';
import { inCi, requirePeers } from '../support/peers.js';
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

/** libfabric providers to replicate over: tcp and sockets here; verbs in the guest. */
const PROVIDERS = (process.env['FABRIC_E2E_PROVIDERS'] ?? 'tcp,sockets').split(',');
/** alice's and bob's addresses: loopback here; the guest's rxe address there. */
const [ALICE_IP = '127.0.0.1', BOB_IP = ALICE_IP] = (
  process.env['FABRIC_E2E_HOSTS'] ?? '127.0.0.1'
).split(',');
/** Smaller in the guest, where every byte goes through emulated RDMA. */
const DISK_BYTES = Number(process.env['FABRIC_E2E_DISK_MIB'] ?? 32) * MIB;
/** Sync and write waits: generous, since the guest emulates a CPU in software. */
const SYNC_TIMEOUT_MS = Number(process.env['FABRIC_E2E_SYNC_TIMEOUT_MS'] ?? 30_000);
/** At and above the zero-copy threshold (8 KiB): DATA payloads go from the caller's Buffer. */
const LARGE_WRITE_BYTES = 256 * 1024;

function fabricReady(t: test.TestContext): boolean {
  if (!requirePeers(t, 'libfabric-dev', 'fi_info')) return false;
  const addon = loadFabricAddon();
  if (addon.ok) return true;
  if (inCi) assert.fail(`fabric addon not built: ${addon.error}`);
  t.skip(`fabric addon not built: ${addon.error}`);
  return false;
}

async function replicateOverFabric(
  provider: string,
  o: Omit<PairOptions, 'diskBytes'>,
): Promise<void> {
  await withPair(
    {
      diskBytes: DISK_BYTES,
      ips: { host: { alice: ALICE_IP, bob: BOB_IP } },
      ...o,
      net: `    fabric-provider ${provider};\n${o.net ?? ''}`,
    },
    async (c) => {
      const st = await status(c, 'alice');
      const path = st.peers[0]?.paths.find((p) => p.established);
      assert.equal(path?.transport, 'fabric', 'the established path is a fabric one');
      assert.equal(path?.provider, provider);
      assert.equal(st.peers[0]?.transport?.name, 'fabric', 'the channel in use is a fabric one');
      assert.equal(st.peers[0]?.transport?.provider, provider);

      await c.tandem('alice', 'primary', '--force', c.resource);
      await waitInSync(c, 'alice', SYNC_TIMEOUT_MS);
      await waitInSync(c, 'bob', SYNC_TIMEOUT_MS);
      assert.ok((await peerStatus(c, 'alice')).resyncBytes >= st.sizeBytes);

      const before = await transportCounters(c);
      const writes: [number, Buffer][] = [];
      const stride = DISK_BYTES / 16;
      for (let i = 0; i < 16; i++) writes.push([i * stride, randomBytes(LARGE_WRITE_BYTES)]);
      writes.push([7 * 4096, randomBytes(4096)]);
      await nbdWrite(c, 'alice', writes);
      await waitInSync(c, 'alice', SYNC_TIMEOUT_MS);
      assert.equal(
        await fileSha(c.node('bob').diskPath, st.sizeBytes),
        await fileSha(c.node('alice').diskPath, st.sizeBytes),
        'both data regions are identical',
      );

      // The large writes left without a copy; status shows it per connection and per path.
      const after = await transportCounters(c);
      // Each write goes in fragments of one receive buffer less the header. Its payload is the
      // slices the NBD socket delivered (not concatenated), so a piece under zcopy-threshold
      // may be copied at each fragment's end and at slice boundaries: the bound allows two
      // such pieces per fragment (a copy of the whole write would leave it far below).
      const fragment = FABRIC_BUFFER_BYTES - FABRIC_WIRE_HEADER_BYTES;
      const fragments = Math.ceil(LARGE_WRITE_BYTES / fragment);
      const perWrite = LARGE_WRITE_BYTES - 2 * fragments * FABRIC_ZCOPY_THRESHOLD_BYTES;
      assert.ok(
        after.zeroCopyBytes - before.zeroCopyBytes >= 16 * perWrite,
        `zero-copy bytes grew by ${after.zeroCopyBytes - before.zeroCopyBytes}`,
      );
      assert.ok(after.copiedBytes > 0, 'small messages (pings, acks, headers) were copied');
      assert.ok(after.bytesSent >= before.bytesSent + 16 * LARGE_WRITE_BYTES);
      const human = await c.tandem('alice', 'status', c.resource);
      assert.match(
        human,
        new RegExp(
          `transport:fabric\\(${provider}\\) sent:\\S+ received:\\S+ zero-copy:\\S+ copied:\\S+`,
        ),
      );
    },
  );
}

/** alice's fabric counters from `status --json`, for the connection and its path. */
async function transportCounters(
  c: LocalCluster,
): Promise<{ zeroCopyBytes: number; copiedBytes: number; bytesSent: number }> {
  const p = await peerStatus(c, 'alice');
  const t = p.transport;
  assert.ok(t !== null && t.zeroCopyBytes !== undefined && t.copiedBytes !== undefined, 'counters');
  const path = p.paths.find((x) => x.established);
  assert.equal(path?.zeroCopyBytes, t.zeroCopyBytes, 'the one path carries it all');
  return { zeroCopyBytes: t.zeroCopyBytes, copiedBytes: t.copiedBytes, bytesSent: t.bytesSent };
}

for (const [i, provider] of PROVIDERS.entries()) {
  test(`a pair over address sdp (fabric, ${provider} provider) syncs and replicates`, async (t) => {
    if (!fabricReady(t)) return;
    await replicateOverFabric(provider, { addressFamily: 'sdp' });
  });

  // `transport "rdma"` selects the same transport another way: once is enough.
  if (i > 0) continue;
  test(`a pair with transport "rdma" (fabric, ${provider} provider) syncs and replicates`, async (t) => {
    if (!fabricReady(t)) return;
    await replicateOverFabric(provider, { net: '    transport "rdma";' });
  });
}
