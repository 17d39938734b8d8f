// Runs a bash script inside a qemu guest booting Debian's own kernel, for tests against kernel
// peers this host's kernel lacks (nbd.ko, rdma_rxe, drbd 8.4, netem). The guest sees this host's
// `/` read-only over 9p and chroots into it, so host binaries and this checkout run unchanged.
// Invariants: qemu (its whole process group) is dead once runGuest() settles; the share is removed.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { access, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { peerEnv, requirePeers } from './peers.js';
import { freePort } from '../../src/cli/local-cluster.js';

/** Kernel trees and initramfs images are kept here across runs (about 450 MB per kernel). */
/** The checkout (dist/test/support/guest.js lives three levels below it). */
const REPO_ROOT = resolve(fileURLToPath(new URL('../../../', import.meta.url)));
/** What the guest covers with its own tmpfs. */
const HIDDEN = /^\/(tmp|run)(\/|$)/;

export const GUEST_CACHE_DIR = process.env['TANDEM_GUEST_CACHE'] ?? '/var/tmp/tandem-guest';
/** From qemu's start until the guest's init reports it reached the script (TCG boots in ~30 s). */
export const GUEST_BOOT_TIMEOUT_MS = 180_000;
/** Default bound on a whole run: boot, script, power-off. */
export const GUEST_RUN_TIMEOUT_MS = 300_000;
/** Fetching and unpacking the kernel package the first time (~70 MB download). */
export const GUEST_PREPARE_TIMEOUT_MS = 600_000;
export const GUEST_MEMORY_MIB_DEFAULT = 1024;
export const GUEST_CPUS_DEFAULT = 2;
/** Modules every guest needs: the 9p root and share, and a NIC for port forwards. */
export const GUEST_BASE_MODULES: readonly string[] = [
  'virtio_pci',
  '9pnet_virtio',
  '9p',
  'virtio_net',
];
/** Printed on the serial console by the guest's init; the host waits on these. */
const BOOT_MARKER = 'TANDEM-GUEST-BOOTED';
const SCRIPT = 'guest.sh';
const OUTPUT = 'guest.log';
const STATUS = 'guest.rc';
const CONSOLE_BYTES_MAX = 4 * 1024 * 1024;
const POLL_INTERVAL_MS = 100;

export interface GuestOptions {
  /**
   * Bash script run as root inside the guest, chrooted into this host's `/` (read-only), with
   * fresh tmpfs on /tmp and /run, `lo` up and, when ports are forwarded, eth0 at 10.0.2.15/24.
   * /tmp/out is the read-write share: files left there come back in GuestResult.files.
   * Paths under the host's /tmp and /run are not visible in the guest.
   */
  readonly script: string;
  /** Extra kernel modules loaded (with their dependencies) before the script runs. */
  readonly modules?: readonly string[];
  /** Files placed in /tmp/out before boot (name -> content). */
  readonly files?: Readonly<Record<string, string | Buffer>>;
  /** @default GUEST_BOOT_TIMEOUT_MS */
  readonly bootTimeoutMs?: number;
  /** Bound on the whole run; the guest is killed when it is exceeded. @default GUEST_RUN_TIMEOUT_MS */
  readonly timeoutMs?: number;
  /** @default GUEST_MEMORY_MIB_DEFAULT */
  readonly memoryMiB?: number;
  /** @default GUEST_CPUS_DEFAULT */
  readonly cpus?: number;
  /** Guest TCP ports reachable from the host at 127.0.0.1:RunningGuest.hostPorts.get(port). */
  readonly forwardPorts?: readonly number[];
  /**
   * Host side of the run, started once the guest has booted and running alongside its script.
   * If it throws, the guest is killed and runGuest() rejects with that error.
   */
  readonly during?: (g: RunningGuest) => Promise<void>;
  /** Aborting kills the guest. */
  readonly signal?: AbortSignal;
}

export interface RunningGuest {
  /** The host directory the guest sees as /tmp/out. */
  readonly shareDir: string;
  /** Guest port -> host port on 127.0.0.1. */
  readonly hostPorts: ReadonlyMap<number, number>;
  /** Aborted when the guest stops. */
  readonly signal: AbortSignal;
  /** Waits until the guest wrote `name` into /tmp/out, then returns its content. */
  waitForFile(name: string, timeoutMs: number): Promise<Buffer>;
}

export interface GuestResult {
  readonly kernelVersion: string;
  /** The guest's init reached the script. */
  readonly booted: boolean;
  /** The script's exit status; undefined when it did not finish (no boot, timeout, abort). */
  readonly exitCode: number | undefined;
  /** Why the guest was killed, when it was. */
  readonly killed: 'boot-timeout' | 'timeout' | 'aborted' | undefined;
  /** The script's stdout and stderr. */
  readonly output: string;
  /** The serial console: kernel messages and init's, for diagnosing a failed boot. */
  readonly console: string;
  /** Every regular file the script left at the top of /tmp/out. */
  readonly files: ReadonlyMap<string, Buffer>;
  readonly elapsedMs: number;
}

export interface GuestKernel {
  readonly version: string;
  readonly vmlinuz: string;
  readonly initrd: string;
}

/** Skips (or fails in CI) unless the host tools the guest harness needs are installed. */
export function requireGuest(t: TestContext): boolean {
  return (
    requirePeers(t, 'qemu-system-x86', 'qemu-system-x86_64') &&
    requirePeers(t, 'busybox-static', 'busybox') &&
    requirePeers(t, 'cpio', 'cpio') &&
    requirePeers(t, 'kmod', 'depmod', 'modprobe') &&
    requirePeers(t, 'dpkg', 'dpkg-deb') &&
    requirePeers(t, 'apt', 'apt-get', 'apt-cache')
  );
}

/** A one-line summary of a result for assertion messages, with the tails of output and console. */
export function describeGuest(r: GuestResult, tailChars = 4000): string {
  return [
    `guest kernel ${r.kernelVersion}: booted=${r.booted} exit=${r.exitCode ?? '-'} killed=${r.killed ?? '-'} after ${Math.round(r.elapsedMs / 1000)} s`,
    `--- script output (tail) ---\n${r.output.slice(-tailChars)}`,
    `--- console (tail) ---\n${r.console.slice(-tailChars)}`,
  ].join('\n');
}

/** Boots the guest, runs opts.script in it and returns what it left behind. */
export async function runGuest(opts: GuestOptions): Promise<GuestResult> {
  const kernel = await prepareGuestKernel(opts.modules ?? []);
  const shareDir = await mkdtemp(join(GUEST_CACHE_DIR, 'share-'));
  try {
    await writeFile(join(shareDir, SCRIPT), opts.script, { mode: 0o755 });
    // A checkout under /tmp or /run (a CI clone, say) stays visible through the guest's tmpfs.
    if (HIDDEN.test(REPO_ROOT)) await writeFile(join(shareDir, '.keep'), `${REPO_ROOT}\n`);
    for (const [name, body] of Object.entries(opts.files ?? {})) {
      await writeFile(join(shareDir, checkShareName(name)), body);
    }
    return await boot(kernel, shareDir, opts);
  } finally {
    await rm(shareDir, { recursive: true, force: true });
  }
}

async function boot(
  kernel: GuestKernel,
  shareDir: string,
  opts: GuestOptions,
): Promise<GuestResult> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? GUEST_RUN_TIMEOUT_MS;
  const hostPorts = new Map<number, number>();
  for (const p of opts.forwardPorts ?? []) hostPorts.set(p, await freePort());
  const nic =
    hostPorts.size === 0
      ? ['-nic', 'none']
      : [
          '-nic',
          // restrict=on: the guest reaches nothing outside; only the forwards reach it.
          `user,model=virtio-net-pci,restrict=on,${[...hostPorts]
            .map(([g, h]) => `hostfwd=tcp:127.0.0.1:${h}-:${g}`)
            .join(',')}`,
        ];
  const args = [
    // A backstop that outlives us: if this process dies, qemu still ends.
    '--kill-after=5',
    `${Math.ceil(timeoutMs / 1000) + 30}`,
    'qemu-system-x86_64',
    // Nested KVM does not work on the CI VM (FINDINGS.md §7): software emulation.
    '-accel',
    'tcg',
    '-m',
    `${opts.memoryMiB ?? GUEST_MEMORY_MIB_DEFAULT}`,
    '-smp',
    `${opts.cpus ?? GUEST_CPUS_DEFAULT}`,
    '-display',
    'none',
    '-monitor',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
    '-kernel',
    kernel.vmlinuz,
    '-initrd',
    kernel.initrd,
    '-append',
    'console=ttyS0 panic=-1 edd=off quiet',
    '-virtfs',
    'local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap',
    '-virtfs',
    `local,path=${shareDir},mount_tag=out,security_model=none`,
    ...nic,
  ];
  // Its own process group, so a kill reaches qemu behind `timeout` too.
  const qemu = spawn('timeout', args, {
    env: peerEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const exited = once(qemu, 'close').then(() => undefined);
  let consoleText = '';
  let booted = false;
  let killed: GuestResult['killed'];
  const stopped = new AbortController();
  let markBooted: () => void = () => undefined;
  const bootSeen = new Promise<void>((r) => (markBooted = r));
  const onData = (chunk: Buffer): void => {
    if (consoleText.length < CONSOLE_BYTES_MAX) consoleText += chunk.toString('utf8');
    if (!booted && consoleText.includes(BOOT_MARKER)) {
      booted = true;
      markBooted();
    }
  };
  qemu.stdout.on('data', onData);
  qemu.stderr.on('data', onData);
  const killGroup = (): void => {
    try {
      if (qemu.pid !== undefined) process.kill(-qemu.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };
  const kill = (why: NonNullable<GuestResult['killed']>): void => {
    if (stopped.signal.aborted) return;
    killed ??= why;
    killGroup();
  };
  const bootTimer = setTimeout(() => {
    if (!booted) kill('boot-timeout');
  }, opts.bootTimeoutMs ?? GUEST_BOOT_TIMEOUT_MS);
  const runTimer = setTimeout(() => kill('timeout'), timeoutMs);
  const onAbort = (): void => kill('aborted');
  opts.signal?.addEventListener('abort', onAbort);
  if (opts.signal?.aborted === true) onAbort();
  let duringError: Error | undefined;
  let duringDone = Promise.resolve();
  if (opts.during !== undefined) {
    const during = opts.during;
    const g: RunningGuest = {
      shareDir,
      hostPorts,
      signal: stopped.signal,
      waitForFile: (name, ms) =>
        waitForShareFile(shareDir, checkShareName(name), ms, stopped.signal),
    };
    duringDone = Promise.race([bootSeen, exited])
      .then(() => (booted ? during(g) : undefined))
      .catch((e: unknown) => {
        duringError = e instanceof Error ? e : new Error(String(e));
        kill('aborted');
      });
  }
  try {
    await exited;
  } finally {
    clearTimeout(bootTimer);
    clearTimeout(runTimer);
    opts.signal?.removeEventListener('abort', onAbort);
    stopped.abort();
    killGroup();
  }
  await duringDone;
  if (duringError !== undefined) throw duringError;
  const files = await readShare(shareDir);
  const status = files.get(STATUS)?.toString('utf8').trim();
  const exitCode = status !== undefined && /^\d+$/.test(status) ? Number(status) : undefined;
  return {
    kernelVersion: kernel.version,
    booted,
    exitCode: killed === undefined ? exitCode : undefined,
    killed,
    output: files.get(OUTPUT)?.toString('utf8') ?? '',
    console: consoleText,
    files,
    elapsedMs: performance.now() - started,
  };
}

/**
 * The kernel (downloaded once with `apt-get download`, unpacked, depmod'ed) and an initramfs
 * holding busybox, the base and extra modules and our init; both cached in GUEST_CACHE_DIR,
 * keyed by kernel version and by the module list. Safe when several tests prepare at once.
 */
export async function prepareGuestKernel(extraModules: readonly string[]): Promise<GuestKernel> {
  await mkdir(GUEST_CACHE_DIR, { recursive: true });
  const version = await kernelVersion();
  const kdir = join(GUEST_CACHE_DIR, version);
  const tree = join(kdir, 'tree');
  const vmlinuz = join(tree, 'boot', `vmlinuz-${version}`);
  if (!(await exists(vmlinuz))) await unpackKernel(version, kdir, tree);
  const modules = [...new Set([...GUEST_BASE_MODULES, ...extraModules])];
  for (const m of modules) {
    if (!/^[A-Za-z0-9_-]+$/.test(m)) throw new Error(`guest: bad kernel module name "${m}"`);
  }
  const key = createHash('sha256')
    .update(INIT_SCRIPT)
    .update(modules.join(','))
    .digest('hex')
    .slice(0, 16);
  const initrd = join(kdir, `initrd-${key}.cpio.gz`);
  if (!(await exists(initrd))) await buildInitrd(version, tree, modules, kdir, initrd);
  return { version, vmlinuz, initrd };
}

/** The version apt would install for linux-image-amd64, or the newest cached one offline. */
async function kernelVersion(): Promise<string> {
  const forced = process.env['TANDEM_GUEST_KERNEL'];
  if (forced !== undefined && forced !== '') return forced;
  const r = await exec('apt-cache', ['depends', 'linux-image-amd64'], {}, 60_000);
  const m = /Depends: linux-image-(\d[^\s]*)/.exec(r.stdout);
  if (r.code === 0 && m?.[1] !== undefined) return m[1];
  const cached = (await readdir(GUEST_CACHE_DIR)).filter((d) => /^\d/.test(d)).sort();
  const last = cached.at(-1);
  if (last !== undefined && (await exists(join(GUEST_CACHE_DIR, last, 'tree')))) return last;
  throw new Error(
    `guest: cannot tell which kernel to use (apt-cache depends linux-image-amd64: ${r.stderr.trim() || 'no linux-image dependency'}); run apt-get update`,
  );
}

async function unpackKernel(version: string, kdir: string, tree: string): Promise<void> {
  await mkdir(kdir, { recursive: true });
  const work = await mkdtemp(join(kdir, 'unpack-'));
  try {
    const pkg = `linux-image-${version}`;
    await execOk('apt-get', ['download', '-q', pkg], { cwd: work }, GUEST_PREPARE_TIMEOUT_MS);
    const deb = (await readdir(work)).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    if (deb === undefined) throw new Error(`guest: apt-get download ${pkg} left no .deb`);
    const out = join(work, 'tree');
    await execOk('dpkg-deb', ['-x', join(work, deb), out], {}, GUEST_PREPARE_TIMEOUT_MS);
    await execOk('depmod', ['-b', out, version], {}, GUEST_PREPARE_TIMEOUT_MS);
    try {
      await rename(out, tree);
    } catch (e) {
      // Another run unpacked it first: theirs is as good as ours.
      if (!(await exists(join(tree, 'boot', `vmlinuz-${version}`)))) throw e;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// PID 1 of the guest (busybox sh). Loads modules, mounts the host root read-only and the share,
// gives the chroot fresh /tmp and /run, runs the script, records its status and powers off.
const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod /lib/modules/$m || echo "init: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host || echo "init: 9p root mount failed"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out || echo "init: 9p share mount failed"
for d in proc sys dev; do mount --bind /$d /host/$d; done
mount -t devpts devpts /host/dev/pts 2>/dev/null
mkdir -p /orig/tmp /orig/run && mount --bind /host/tmp /orig/tmp && mount --bind /host/run /orig/run
for d in tmp run; do mount -t tmpfs tmpfs /host/$d; done
mkdir -p /host/tmp/out /host/run/lock && mount --bind /out /host/tmp/out
if [ -f /out/.keep ]; then while read -r p; do mkdir -p "/host$p" && mount --bind "/orig$p" "/host$p"; done < /out/.keep; fi
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2; fi
echo "${BOOT_MARKER} $(uname -r)"
if [ -f /out/${SCRIPT} ]; then
  chroot /host /bin/bash /tmp/out/${SCRIPT} > /out/${OUTPUT} 2>&1 < /dev/null
  echo $? > /out/${STATUS}
fi
sync
echo o > /proc/sysrq-trigger
poweroff -f
`;

async function buildInitrd(
  version: string,
  tree: string,
  modules: readonly string[],
  kdir: string,
  initrd: string,
): Promise<void> {
  const busybox = '/bin/busybox';
  const file = await exec('file', ['-L', busybox], {}, 10_000);
  if (file.code === 0 && file.stdout.includes('dynamically linked')) {
    throw new Error(`guest: ${busybox} is dynamically linked; apt-get install busybox-static`);
  }
  const work = await mkdtemp(join(kdir, 'initrd-'));
  try {
    for (const d of ['bin', 'proc', 'sys', 'dev', 'host', 'out', 'lib/modules']) {
      await mkdir(join(work, d), { recursive: true });
    }
    await writeFile(join(work, 'bin', 'busybox'), await readFile(busybox), { mode: 0o755 });
    await writeFile(join(work, 'init'), INIT_SCRIPT, { mode: 0o755 });
    // Each module after its dependencies, once; built-in ones need no file.
    const order: string[] = [];
    for (const m of modules) {
      const r = await execOk(
        'modprobe',
        ['-d', tree, '-S', version, '--show-depends', m],
        {},
        60_000,
      );
      for (const line of r.split('\n')) {
        const path = /^insmod (\S+)/.exec(line)?.[1];
        if (path !== undefined && !order.includes(path)) order.push(path);
      }
    }
    const names: string[] = [];
    for (const path of order) {
      // Debian ships modules uncompressed in 6.1 and compressed (.ko.xz) later; insmod needs
      // whatever busybox can read, so keep the name as is.
      const name = path.slice(path.lastIndexOf('/') + 1);
      names.push(name);
      await writeFile(join(work, 'lib', 'modules', name), await readFile(path));
    }
    await writeFile(join(work, 'modules.order'), names.join('\n') + '\n');
    const tmp = `${initrd}.${process.pid}.tmp`;
    await execOk(
      'sh',
      ['-c', `cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2"`, 'sh', work, tmp],
      {},
      120_000,
    );
    await rename(tmp, initrd);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function readShare(dir: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isFile() && e.name !== SCRIPT) files.set(e.name, await readFile(join(dir, e.name)));
  }
  return files;
}

async function waitForShareFile(
  dir: string,
  name: string,
  timeoutMs: number,
  stopped: AbortSignal,
): Promise<Buffer> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await readFile(join(dir, name));
    } catch {
      // Not there yet.
    }
    if (stopped.aborted) throw new Error(`guest stopped before writing ${name}`);
    if (performance.now() > deadline) throw new Error(`timed out waiting for guest file ${name}`);
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
}

function checkShareName(name: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name === SCRIPT || name.startsWith('.')) {
    throw new Error(`guest: "${name}" is not a plain file name for the share`);
  }
  return name;
}

/** Throws unless the guest can see `path` (the host's /tmp and /run are hidden by tmpfs). */
export function guestVisiblePath(path: string): string {
  const abs = resolve(path);
  const kept = abs === REPO_ROOT || abs.startsWith(`${REPO_ROOT}/`);
  if (HIDDEN.test(abs) && !kept) {
    throw new Error(`guest: ${abs} is under /tmp or /run, which the guest does not see`);
  }
  return abs;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(
  cmd: string,
  args: readonly string[],
  o: { cwd?: string },
  timeoutMs: number,
): Promise<ExecResult> {
  return new Promise((res) => {
    const p = spawn(cmd, args, { env: peerEnv(), stdio: ['ignore', 'pipe', 'pipe'], ...o });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('error', (e) => {
      clearTimeout(timer);
      res({ code: -1, stdout, stderr: `${stderr}${e.message}` });
    });
    p.once('close', (code) => {
      clearTimeout(timer);
      res({ code: code ?? -1, stdout, stderr });
    });
  });
}

async function execOk(
  cmd: string,
  args: readonly string[],
  o: { cwd?: string },
  timeoutMs: number,
): Promise<string> {
  const r = await exec(cmd, args, o, timeoutMs);
  if (r.code !== 0) {
    throw new Error(`guest: ${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}
