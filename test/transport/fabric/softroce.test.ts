// Real RDMA verbs, tested: a qemu guest (test/support/guest.ts) boots Debian's kernel, creates a
// Soft-RoCE (rdma_rxe) device on a dummy netdev and runs, over the fabric transport's verbs
// provider with rdma-cm, the transport compliance suite and then two tandemd replicating to each
// other (test/e2e/fabric.test.ts on the rxe addresses). Software emulation takes minutes, so it
// runs in CI or with TANDEM_QEMU_TESTS=1.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inCi, requirePeers } from '../../support/peers.js';
import {
  describeGuest,
  guestVisiblePath,
  requireGuest,
  runGuest,
  type GuestResult,
} from '../../support/guest.js';

/** Boot (~30 s on TCG), the suite and the replication over emulated verbs, with room to spare. */
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

/** The second node's address on the same rxe device, for the two-node replication. */
const RXE_ADDRESS_2 = '198.51.100.2';

/** One guest boot serves both tests: the compliance suite, then two tandemd replicating. */
let guestRun: Promise<GuestResult> | null = null;

function bootOnce(): Promise<GuestResult> {
  const here = (rel: string): string =>
    guestVisiblePath(fileURLToPath(new URL(rel, import.meta.url)));
  const node = guestVisiblePath(process.execPath);
  guestRun ??= runGuest({
    script: `set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
${softRoceSetup()}
ip addr add ${RXE_ADDRESS_2}/24 dev d0
cd ${here('../../../../')}
rc=0
echo "@@section compliance"
FABRIC_TEST_PROVIDERS=verbs FABRIC_TEST_HOST=${RXE_ADDRESS} \\
  ${node} --test --test-reporter=spec ${here('./compliance.test.js')} || rc=1
echo "@@section e2e"
FABRIC_E2E_PROVIDERS=verbs FABRIC_E2E_HOSTS=${RXE_ADDRESS},${RXE_ADDRESS_2} FABRIC_E2E_DISK_MIB=8 \\
  FABRIC_E2E_SYNC_TIMEOUT_MS=180000 ${node} --test --test-reporter=spec \\
  --test-name-pattern='address sdp' ${here('../../e2e/fabric.test.js')} || rc=1
echo "@@section end"
exit $rc
`,
    modules: SOFTROCE_MODULES,
    memoryMiB: 2048,
    timeoutMs: GUEST_RUN_MS,
  });
  return guestRun;
}

/** The guest's output between `@@section name` and the next section. */
function section(r: GuestResult, name: string): string {
  const from = r.output.indexOf(`@@section ${name}\n`);
  if (from < 0) return '';
  const to = r.output.indexOf('@@section ', from + 1);
  return r.output.slice(from, to < 0 ? undefined : to);
}

/** Checks the guest ran and a node --test run in it passed `passMin` tests, none failed or skipped. */
function assertPassed(t: test.TestContext, r: GuestResult, name: string, passMin: number): string {
  const log = section(r, name);
  const why = describeGuest(r, 6000);
  t.diagnostic(`guest ran ${Math.round(r.elapsedMs / 1000)} s`);
  for (const line of log.match(/^\s*[✔✖ℹ] .*$/gm) ?? []) t.diagnostic(line.trim());
  assert.equal(r.booted, true, `the guest booted\n${why}`);
  assert.equal(r.killed, undefined, `the guest finished in time\n${why}`);
  assert.match(r.output, /rxe0/, `no Soft-RoCE device in the guest\n${why}`);
  assert.match(
    r.output,
    /provider: verbs/,
    `libfabric sees no verbs provider in the guest\n${why}`,
  );
  assert.match(log, /ℹ fail 0/, `${name} over verbs failed\n${why}`);
  const pass = Number(/ℹ pass (\d+)/.exec(log)?.[1] ?? 0);
  assert.ok(pass >= passMin, `only ${pass} ${name} tests passed over verbs\n${why}`);
  return log;
}

test(
  'Soft-RoCE in a qemu guest: compliance over the verbs provider',
  { timeout: GUEST_RUN_MS + 120_000 },
  async (t) => {
    if (!requireSoftRoceGuest(t)) return;
    const r = await bootOnce();
    const log = assertPassed(t, r, 'compliance', 13);
    // The 13 compliance tests must pass; the provider-specific extras skip or pass depending on
    // which libfabric providers the guest has.
    assert.match(log, /transport compliance: fabric\/verbs/);
    assert.equal(r.exitCode, 0, describeGuest(r));
  },
);

test(
  'Soft-RoCE in a qemu guest: two tandemd replicate over verbs (initial sync, writes, identical)',
  { timeout: GUEST_RUN_MS + 120_000 },
  async (t) => {
    if (!requireSoftRoceGuest(t)) return;
    const r = await bootOnce();
    // `transport "rdma"` selects the same path: the host covers it; here only `address sdp`.
    const log = assertPassed(t, r, 'e2e', 1);
    // Passed, not skipped (a skip would show another mark).
    assert.match(
      log,
      /✔ a pair over address sdp \(fabric, verbs provider\) syncs and replicates/,
      describeGuest(r),
    );
    assert.equal(r.exitCode, 0, describeGuest(r));
  },
);
