// The Linux kernel's own NBD client (nbd.ko + nbd-client) against a Tandem export. This host's
// kernel has no nbd module, so both run in a qemu guest booting Debian's kernel: the standalone
// export (NbdServer + storeBackend(FileStore), test/support/nbd-export.ts) serves a Unix socket,
// nbd-client attaches it as /dev/nbd0, ext4 is made, mounted, written, trimmed and checked with
// fsck -n; a second attach (ioctl mode this time) reads every file back from the server. Midway,
// this process reads the ext4 superblock from the same export through a qemu port forward.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NbdClient } from '../../src/nbd/client.js';
import { requirePeers } from '../support/peers.js';
import {
  describeGuest,
  guestVisiblePath,
  requireGuest,
  runGuest,
  type GuestResult,
} from '../support/guest.js';
import type { ExportStats } from '../support/nbd-export.js';

const MIB = 1024 * 1024;
const EXPORT_BYTES = 96 * MIB;
/** Boot (~30 s on TCG), node start-up and the filesystem work, with room for a loaded CI VM. */
const GUEST_RUN_MS = 300_000;
/** The export's TCP port inside the guest (its own network, reached through a qemu forward). */
const GUEST_NBD_PORT = 41809;
/** How long the guest script waits for the host's read over the forwarded port. */
const HOST_READ_WAIT_S = 120;

// Every step of the guest script, in order; each prints "@@step NAME RC".
const STEPS = [
  'server-ready',
  'attach',
  'size',
  'mkfs',
  'mount',
  'write',
  'sync',
  'fstrim',
  'umount',
  'host-read',
  'fsck',
  'detach',
  'reattach-ioctl',
  'remount-ro',
  'verify',
  'umount-again',
  'detach-again',
  'stop-server',
  'fsck-image',
] as const;

function guestScript(node: string, exportJs: string): string {
  return `set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
W=/tmp/w; mkdir -p $W/m
step() { local name=$1; shift; echo "--- $name: $*"; "$@"; local rc=$?; echo "@@step $name $rc at $(cut -d' ' -f1 /proc/uptime) s"; return 0; }
write_files() {
  for d in 0 1 2; do
    mkdir -p $W/m/dir$d/sub
    for f in 0 1 2 3; do head -c $(( (f + 1) * 150000 + d * 4099 )) /dev/urandom > $W/m/dir$d/sub/file$f; done
  done
  (cd $W/m && find . -type f -name 'file*' | sort | xargs md5sum) > $W/sums
  wc -l < $W/sums
}
size_ok() { [ "$(cat /sys/block/nbd0/size)" -eq ${EXPORT_BYTES / 512} ]; }
verify() { (cd $W/m && md5sum -c --quiet $W/sums) && [ "$(wc -l < $W/sums)" -eq 12 ]; }
stop_server() { kill -TERM $SERVER && wait $SERVER; }
host_read() {
  touch /tmp/out/fs-ready
  for i in $(seq ${HOST_READ_WAIT_S * 10}); do [ -e /tmp/out/host-done ] && break; sleep 0.1; done
  grep -qx ok /tmp/out/host-done
}

echo "guest kernel $(uname -r); nbd-client $(nbd-client -V 2>&1 | head -1)"
${node} ${exportJs} --file $W/export.img --size ${EXPORT_BYTES} --name kernel \\
  --socket $W/nbd.sock --tcp 10.0.2.15:${GUEST_NBD_PORT} --ready $W/ready --stats /tmp/out/stats.json > $W/server.log 2>&1 &
SERVER=$!
for i in $(seq 1200); do [ -e $W/ready ] && break; kill -0 $SERVER 2>/dev/null || break; sleep 0.1; done
step server-ready test -e $W/ready
step attach nbd-client -unix $W/nbd.sock /dev/nbd0 -N kernel -t 60
step size size_ok
# nodiscard: every TRIM the export sees then comes from fstrim.
step mkfs mkfs.ext4 -q -F -E nodiscard /dev/nbd0
step mount mount -t ext4 /dev/nbd0 $W/m
step write write_files
step sync sync -f $W/m
step fstrim fstrim -v $W/m
step umount umount $W/m
# The host reads the superblock this kernel wrote, through qemu's port forward.
step host-read host_read
step fsck e2fsck -fn /dev/nbd0
step detach nbd-client -d /dev/nbd0
echo 3 > /proc/sys/vm/drop_caches
# A second device and the ioctl interface: nothing can come from nbd0's page cache.
step reattach-ioctl nbd-client -nonetlink -unix $W/nbd.sock /dev/nbd1 -N kernel -t 60
step remount-ro mount -t ext4 -o ro /dev/nbd1 $W/m
step verify verify
step umount-again umount $W/m
step detach-again nbd-client -d /dev/nbd1
step stop-server stop_server
step fsck-image e2fsck -fn $W/export.img
echo "--- server log"; cat $W/server.log
`;
}

function steps(r: GuestResult): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of r.output.matchAll(/^@@step (\S+) (\d+)\b/gm)) {
    if (m[1] !== undefined && m[2] !== undefined) out.set(m[1], Number(m[2]));
  }
  return out;
}

test(
  'the kernel nbd client in a qemu guest: ext4 on a Tandem export, written, trimmed, fsck clean',
  { timeout: GUEST_RUN_MS + 120_000 },
  async (t) => {
    if (!requireGuest(t)) return;
    if (!requirePeers(t, 'nbd-client', 'nbd-client')) return;
    if (!requirePeers(t, 'e2fsprogs', 'mkfs.ext4', 'e2fsck')) return;
    if (!requirePeers(t, 'util-linux', 'fstrim', 'mount', 'umount')) return;
    // The guest runs this very checkout and node binary over its 9p view of our root.
    const node = guestVisiblePath(process.execPath);
    const exportJs = guestVisiblePath(
      fileURLToPath(new URL('../support/nbd-export.js', import.meta.url)),
    );
    let superblockMagic: number | undefined;
    const r = await runGuest({
      script: guestScript(node, exportJs),
      modules: ['nbd', 'ext4'],
      timeoutMs: GUEST_RUN_MS,
      forwardPorts: [GUEST_NBD_PORT],
      during: async (g) => {
        await g.waitForFile('fs-ready', GUEST_RUN_MS);
        const port = g.hostPorts.get(GUEST_NBD_PORT) ?? 0;
        const c = await NbdClient.connect({
          listener: { kind: 'tcp', host: '127.0.0.1', port },
          exportName: 'kernel',
          signal: g.signal,
        });
        try {
          assert.equal(c.sizeBytes, EXPORT_BYTES);
          superblockMagic = (await c.read(1024, 1024)).readUInt16LE(56);
        } finally {
          await c.disconnect();
        }
        await writeFile(join(g.shareDir, 'host-done'), 'ok\n');
      },
    });
    const why = describeGuest(r);
    t.diagnostic(`guest ran ${Math.round(r.elapsedMs / 1000)} s; steps at guest uptime:`);
    for (const line of r.output.match(/^@@step .*$/gm) ?? []) t.diagnostic(line);
    assert.equal(r.booted, true, `the guest booted\n${why}`);
    assert.equal(r.killed, undefined, `the guest finished in time\n${why}`);
    const seen = steps(r);
    for (const s of STEPS) assert.equal(seen.get(s), 0, `step ${s} succeeded\n${why}`);
    assert.equal(r.exitCode, 0, why);

    const raw = r.files.get('stats.json');
    assert.ok(raw !== undefined, `the export wrote its stats\n${why}`);
    const stats = JSON.parse(raw.toString('utf8')) as ExportStats;
    const all = JSON.stringify(stats);
    // The ext4 magic, read by this process through the forward while the guest waited.
    assert.equal(superblockMagic, 0xef53);
    assert.deepEqual(stats.exportsChosen, ['kernel', 'kernel', 'kernel'], all);
    assert.deepEqual(stats.protocolErrors, [], all);
    // ext4 and the file data went through WRITE; sync and the journal through FLUSH and FUA.
    assert.ok(stats.bytesWritten >= 12 * 150_000, `the files reached the export: ${all}`);
    assert.ok(stats.flushes > 0, `the kernel sent FLUSH: ${all}`);
    assert.ok(stats.fuaWrites > 0, `the kernel sent FUA writes: ${all}`);
    assert.ok(stats.trims > 0, `fstrim reached the export as TRIM: ${all}`);
    assert.ok(stats.reads > 0, `the remount read from the export: ${all}`);
  },
);

test('a guest that does not boot in time is killed and reported, not waited for', async (t) => {
  if (!requireGuest(t)) return;
  const r = await runGuest({ script: 'exit 0', bootTimeoutMs: 1, timeoutMs: 60_000 });
  assert.equal(r.booted, false, describeGuest(r));
  assert.equal(r.killed, 'boot-timeout', describeGuest(r));
  assert.equal(r.exitCode, undefined);
});
