// Real RDMA verbs, tested: a qemu guest boots Debian's kernel, creates a Soft-RoCE (rdma_rxe)
// device on a dummy netdev and runs the transport compliance suite over the fabric transport's
// verbs provider with rdma-cm connection management (test/guest/softroce-fabric.sh). Software
// emulation takes minutes, so it runs in CI or with TANDEM_QEMU_TESTS=1.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { inCi, peerEnv, requirePeers } from '../../support/peers.js';

const run = promisify(execFile);

test(
  'Soft-RoCE in a qemu guest: compliance over the verbs provider',
  { timeout: 20 * 60_000 },
  async (t) => {
    if (!inCi && process.env['TANDEM_QEMU_TESTS'] !== '1') {
      return t.skip(
        'set TANDEM_QEMU_TESTS=1 to boot the Soft-RoCE guest (minutes of TCG emulation)',
      );
    }
    if (process.getuid?.() !== 0) {
      if (inCi)
        throw new Error(
          'the Soft-RoCE guest test needs root (qemu 9p export of /, apt-get download)',
        );
      return t.skip('needs root');
    }
    const pkgs =
      'qemu-system-x86 busybox-static cpio kmod rdma-core ibverbs-providers libfabric-bin';
    if (
      !requirePeers(t, pkgs, 'qemu-system-x86_64', 'busybox', 'cpio', 'depmod', 'rdma', 'fi_info')
    )
      return;
    const dir = mkdtempSync(join(tmpdir(), 'tandem-softroce-'));
    try {
      const guest = readFileSync('test/guest/softroce-fabric.sh', 'utf8').replaceAll(
        'REPO',
        process.cwd(),
      );
      writeFileSync(join(dir, 'guest.sh'), guest);
      await run('bash', ['scripts/qemu-guest.sh', join(dir, 'guest.sh'), join(dir, 'out')], {
        env: peerEnv(),
        maxBuffer: 16 << 20,
      });
      const log = readFileSync(join(dir, 'out', 'guest.log'), 'utf8');
      assert.match(log, /rxe0/, `no Soft-RoCE device in the guest:\n${log.slice(0, 4000)}`);
      assert.match(log, /provider: verbs/, 'libfabric sees no verbs provider in the guest');
      assert.match(log, /ℹ fail 0/, `compliance over verbs failed:\n${log.slice(-6000)}`);
      const pass = Number(/ℹ pass (\d+)/.exec(log)?.[1] ?? 0);
      // The 13 compliance tests must pass; the provider-specific extras skip or pass depending on
      // which libfabric providers the guest has.
      assert.ok(pass >= 13, `only ${pass} tests passed over verbs`);
      assert.match(log, /transport compliance: fabric\/verbs/);
      assert.match(log, /guest\.sh rc=0/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
