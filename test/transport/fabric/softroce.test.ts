// Real RDMA verbs, tested: a qemu guest (test/support/guest.ts) boots Debian's kernel, creates a
// Soft-RoCE (rdma_rxe) device on a dummy netdev and runs the transport compliance suite over the
// fabric transport's verbs provider with rdma-cm connection management. Software emulation takes
// minutes, so it runs in CI or with TANDEM_QEMU_TESTS=1.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inCi, requirePeers } from '../../support/peers.js';
import { describeGuest, guestVisiblePath, requireGuest, runGuest } from '../../support/guest.js';

/** Boot (~30 s on TCG) and the suite over emulated verbs (~4 min), with room for a loaded VM. */
const GUEST_RUN_MS = 900_000;
/** The guest's Soft-RoCE interface address (a test range, inside the guest only). */
const RXE_ADDRESS = '198.51.100.1';
/** Kernel modules for Soft-RoCE and rdma-cm; dummy carries the address rxe binds to. */
export const SOFTROCE_MODULES: readonly string[] = [
  'dummy',
  'crc32_generic',
  'rdma_rxe',
  'ib_uverbs',
  'rdma_ucm',
];

/** Shell lines that give the guest an rxe0 device on d0 at RXE_ADDRESS; exit 2 if that fails. */
export function softRoceSetup(address = RXE_ADDRESS): string {
  return `ip link add d0 type dummy
ip addr add ${address}/24 dev d0
ip link set d0 up
rdma link add rxe0 type rxe netdev d0 || { echo "rdma link add failed"; exit 2; }
ibv_devices
fi_info -p verbs -t FI_EP_MSG -s ${address} | grep -E 'provider|domain' | head -4
`;
}

/** Skips (or fails in CI) unless this host can boot the Soft-RoCE guest. */
export function requireSoftRoceGuest(t: test.TestContext): boolean {
  if (!inCi && process.env['TANDEM_QEMU_TESTS'] !== '1') {
    t.skip('set TANDEM_QEMU_TESTS=1 to boot the Soft-RoCE guest (minutes of TCG emulation)');
    return false;
  }
  if (process.getuid?.() !== 0) {
    if (inCi) throw new Error('the Soft-RoCE guest needs root (qemu 9p export of /)');
    t.skip('needs root');
    return false;
  }
  return (
    requireGuest(t) &&
    requirePeers(t, 'rdma-core ibverbs-providers', 'rdma') &&
    requirePeers(t, 'ibverbs-utils', 'ibv_devices') &&
    requirePeers(t, 'libfabric-bin', 'fi_info')
  );
}

test(
  'Soft-RoCE in a qemu guest: compliance over the verbs provider',
  { timeout: GUEST_RUN_MS + 120_000 },
  async (t) => {
    if (!requireSoftRoceGuest(t)) return;
    const node = guestVisiblePath(process.execPath);
    const suite = guestVisiblePath(fileURLToPath(new URL('./compliance.test.js', import.meta.url)));
    const r = await runGuest({
      script: `set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
${softRoceSetup()}
cd ${guestVisiblePath(fileURLToPath(new URL('../../../../', import.meta.url)))}
FABRIC_TEST_PROVIDERS=verbs FABRIC_TEST_HOST=${RXE_ADDRESS} \\
  ${node} --test --test-reporter=spec ${suite}
`,
      modules: SOFTROCE_MODULES,
      memoryMiB: 2048,
      timeoutMs: GUEST_RUN_MS,
    });
    const log = r.output;
    t.diagnostic(`guest ran ${Math.round(r.elapsedMs / 1000)} s`);
    for (const line of log.match(/^\s*[✔✖ℹ] .*$/gm) ?? []) t.diagnostic(line.trim());
    const why = describeGuest(r, 6000);
    assert.equal(r.booted, true, `the guest booted\n${why}`);
    assert.equal(r.killed, undefined, `the guest finished in time\n${why}`);
    assert.match(log, /rxe0/, `no Soft-RoCE device in the guest\n${why}`);
    assert.match(log, /provider: verbs/, `libfabric sees no verbs provider in the guest\n${why}`);
    assert.match(log, /transport compliance: fabric\/verbs/, why);
    assert.match(log, /ℹ fail 0/, `compliance over verbs failed\n${why}`);
    const pass = Number(/ℹ pass (\d+)/.exec(log)?.[1] ?? 0);
    // The 13 compliance tests must pass; the provider-specific extras skip or pass depending on
    // which libfabric providers the guest has.
    assert.ok(pass >= 13, `only ${pass} tests passed over verbs\n${why}`);
    assert.equal(r.exitCode, 0, why);
  },
);
