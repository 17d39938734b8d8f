// A real two-node Pacemaker + Corosync cluster on one host (root only). Each node is a network
// namespace (veth, 203.0.113.1 and .2) plus a private mount and UTS namespace held by a
// long-lived "holder" process: its own hostname, /etc/corosync, /var/lib/{corosync,pacemaker},
// /var/log/{corosync,pacemaker}, tmpfs /run and /dev/shm (libqb's IPC lives there, so every
// CLI tool of a node must share its daemons' mount namespace) and its own OCF provider
// directory holding only ocf:tandem:tandem (the host's /usr/lib/ocf is left untouched).
// Everything is run "on" a node with nsenter; cleanup() kills every process in a node's mount
// namespace by PID (all of them were started here), deletes the namespaces and the directory.
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestContext } from 'node:test';
import { inCi, peerEnv, requirePeers } from './peers.js';

export const NODES = ['n1', 'n2'] as const;
export type NodeName = (typeof NODES)[number];
export const NODE_IP: Readonly<Record<NodeName, string>> = { n1: '203.0.113.1', n2: '203.0.113.2' };

/** The repository root (this file is dist/test/support/pacemaker.js once built). */
export const REPO_ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const AGENT_PATH = join(REPO_ROOT, 'contrib', 'ocf', 'tandem');

/** True when a real cluster can run here; else skips (outside CI) or fails (in CI). */
export function requireCluster(t: TestContext): boolean {
  if (process.getuid?.() !== 0) {
    if (inCi) throw new Error('a Pacemaker cluster in namespaces needs root (CI=true: must run)');
    t.skip('a Pacemaker cluster in namespaces needs root');
    return false;
  }
  return (
    requirePeers(t, 'corosync', 'corosync', 'corosync-keygen', 'corosync-quorumtool') &&
    requirePeers(t, 'pacemaker', 'pacemakerd') &&
    requirePeers(
      t,
      'pacemaker-cli-utils',
      'crm_mon',
      'cibadmin',
      'crm_attribute',
      'crm_resource',
    ) &&
    requirePeers(t, 'crmsh', 'crm') &&
    requirePeers(t, 'iproute2', 'ip') &&
    requirePeers(t, 'util-linux', 'nsenter', 'unshare')
  );
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((done) => {
    execFile(
      cmd,
      args,
      { env: peerEnv(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        done({ code, stdout, stderr });
      },
    );
  });
}

async function runOk(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')}: exit ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 250 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function pollUntil(
  what: string,
  timeoutMs: number,
  cond: () => Promise<boolean>,
  detail: () => Promise<string> = () => Promise.resolve(''),
): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > end)
      throw new Error(`${what}: not within ${timeoutMs / 1000} s\n${await detail()}`);
    await sleep(250);
  }
}

// The namespace holder: bind-mounts the node's directories, then sleeps as the namespaces' anchor.
const HOLDER = `set -eu
NODE=$1 D=$2
mount --make-rprivate /
hostname "$NODE"
for p in etc/corosync var/lib/corosync var/lib/pacemaker var/log/corosync var/log/pacemaker; do
  mount --bind "$D/$p" "/$p"
done
mount --bind "$D/ocf" /usr/lib/ocf/resource.d
mount -t tmpfs -o mode=755,size=64m tmpfs-"$NODE"-run /run
install -d -m 1755 /run/resource-agents
install -d -m 755 /run/lock /run/crm /run/corosync
mount -t tmpfs -o mode=1777,size=256m tmpfs-"$NODE"-shm /dev/shm
echo $$ > "$D/holder.pid"
exec sleep infinity
`;

function corosyncConf(tokenMs: number): string {
  const nodes = NODES.map(
    (n, i) => `  node {\n    ring0_addr: ${NODE_IP[n]}\n    name: ${n}\n    nodeid: ${i + 1}\n  }`,
  ).join('\n');
  return `totem {
  version: 2
  cluster_name: tandemtest
  transport: knet
  crypto_cipher: aes256
  crypto_hash: sha256
  token: ${tokenMs}
}
nodelist {
${nodes}
}
quorum {
  provider: corosync_votequorum
  two_node: 1
}
logging {
  to_logfile: yes
  logfile: /var/log/corosync/corosync.log
  to_stderr: no
  to_syslog: no
  timestamp: hires
}
system {
  # a shared host: no realtime scheduling, never move into the root cgroup
  sched_rr: no
  move_to_root_cgroup: no
}
`;
}

export class PacemakerPair {
  private readonly holders = new Map<NodeName, number>();
  private readonly netns: Record<NodeName, string>;
  private cleaned = false;

  private constructor(readonly dir: string) {
    const tag = randomBytes(3).toString('hex');
    this.netns = { n1: `tdmpk${tag}1`, n2: `tdmpk${tag}2` };
  }

  /** Namespaces, per-node directories and holders; no daemon runs yet. */
  static async create(opts: { tokenMs?: number } = {}): Promise<PacemakerPair> {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-pcmk-'));
    await chmod(dir, 0o755);
    const p = new PacemakerPair(dir);
    try {
      await p.setup(opts.tokenMs ?? 1000);
    } catch (e) {
      await p.cleanup();
      throw e;
    }
    return p;
  }

  private async setup(tokenMs: number): Promise<void> {
    await writeFile(join(this.dir, 'holder.sh'), HOLDER);
    await runOk('corosync-keygen', ['-k', join(this.dir, 'authkey')]);
    const ids = (await runOk('id', ['-u', 'hacluster'])).trim();
    const gid = (await runOk('id', ['-g', 'hacluster'])).trim();
    for (const n of NODES) {
      const d = this.nodeDir(n);
      for (const sub of ['etc/corosync', 'var/lib/corosync', 'var/log/corosync', 'ocf/tandem'])
        await mkdir(join(d, sub), { recursive: true });
      for (const sub of ['cib', 'pengine', 'blackbox', 'cores']) {
        await mkdir(join(d, 'var/lib/pacemaker', sub), { recursive: true, mode: 0o750 });
        await runOk('chown', [`${ids}:${gid}`, join(d, 'var/lib/pacemaker', sub)]);
      }
      await mkdir(join(d, 'var/log/pacemaker'), { recursive: true, mode: 0o770 });
      await runOk('chown', [`${ids}:${gid}`, join(d, 'var/log/pacemaker')]);
      await writeFile(join(d, 'etc/corosync/corosync.conf'), corosyncConf(tokenMs));
      await copyFile(join(this.dir, 'authkey'), join(d, 'etc/corosync/authkey'));
      await chmod(join(d, 'etc/corosync/authkey'), 0o400);
      await copyFile(AGENT_PATH, join(d, 'ocf/tandem/tandem'));
      await chmod(join(d, 'ocf/tandem/tandem'), 0o755);
      await runOk('ip', ['netns', 'add', this.netns[n]]);
      await runOk('ip', ['-n', this.netns[n], 'link', 'set', 'lo', 'up']);
    }
    await runOk('ip', [
      '-n',
      this.netns.n1,
      'link',
      'add',
      'eth0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      this.netns.n2,
    ]);
    for (const n of NODES) {
      await runOk('ip', ['-n', this.netns[n], 'addr', 'add', `${NODE_IP[n]}/24`, 'dev', 'eth0']);
      await runOk('ip', ['-n', this.netns[n], 'link', 'set', 'eth0', 'up']);
      const out = openSync(join(this.nodeDir(n), 'holder.out'), 'a');
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          this.netns[n],
          'unshare',
          '-m',
          '-u',
          '--propagation',
          'private',
          '--',
          'bash',
          join(this.dir, 'holder.sh'),
          n,
          this.nodeDir(n),
        ],
        { stdio: ['ignore', out, out], detached: true, env: peerEnv() },
      );
      closeSync(out);
      child.unref();
    }
    for (const n of NODES) {
      const pidFile = join(this.nodeDir(n), 'holder.pid');
      await pollUntil(
        `${n}: namespace holder`,
        10_000,
        async () => {
          try {
            const pid = Number((await readFile(pidFile, 'utf8')).trim());
            if (!Number.isInteger(pid) || pid <= 0) return false;
            this.holders.set(n, pid);
            return true;
          } catch {
            return false;
          }
        },
        () => readFile(join(this.nodeDir(n), 'holder.out'), 'utf8').catch(() => ''),
      );
    }
  }

  nodeDir(n: NodeName): string {
    return join(this.dir, n);
  }

  private holder(n: NodeName): number {
    const h = this.holders.get(n);
    if (h === undefined) throw new Error(`${n}: no namespace holder`);
    return h;
  }

  /** Runs a command "on" node n (its network, mount and UTS namespaces). */
  on(n: NodeName, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
    return run(
      'nsenter',
      ['-t', String(this.holder(n)), '-n', '-m', '-u', '--', ...args],
      timeoutMs,
    );
  }

  async onOk(n: NodeName, args: readonly string[], timeoutMs = 30_000): Promise<string> {
    const r = await this.on(n, args, timeoutMs);
    if (r.code !== 0)
      throw new Error(`${n}: ${args.join(' ')}: exit ${r.code}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Starts a long-running daemon on node n, its output appended to DIR/n/NAME.out. */
  private daemon(n: NodeName, name: string, args: readonly string[]): void {
    const out = openSync(join(this.nodeDir(n), `${name}.out`), 'a');
    const child = spawn(
      'nsenter',
      ['-t', String(this.holder(n)), '-n', '-m', '-u', '--', ...args],
      {
        stdio: ['ignore', out, out],
        detached: true,
        env: {
          ...peerEnv(),
          PCMK_logfile: '/var/log/pacemaker/pacemaker.log',
          PCMK_logfacility: 'none',
        },
      },
    );
    closeSync(out);
    child.unref();
  }

  /**
   * corosync, then pacemakerd, on both nodes; returns once both are Online with a DC. Each
   * CIB is seeded with a short dc-deadtime (Pacemaker's default delays the first DC by 20 s).
   */
  async startCluster(): Promise<void> {
    for (const n of NODES) {
      await this.onOk(n, [
        'sh',
        '-c',
        'cibadmin --empty > /var/lib/pacemaker/cib/cib.xml && ' +
          'chown hacluster:haclient /var/lib/pacemaker/cib/cib.xml && ' +
          'CIB_file=/var/lib/pacemaker/cib/cib.xml crm_attribute -t crm_config -n dc-deadtime -v 2s && ' +
          'chown hacluster:haclient /var/lib/pacemaker/cib/*',
      ]);
    }
    for (const n of NODES) this.daemon(n, 'corosync', ['corosync', '-f']);
    await pollUntil(
      'corosync membership of both nodes',
      30_000,
      async () => /^Nodes:\s*2/m.test((await this.on('n1', ['corosync-quorumtool', '-s'])).stdout),
      async () => (await this.on('n1', ['corosync-quorumtool', '-s'])).stdout,
    );
    for (const n of NODES) this.daemon(n, 'pacemakerd', ['pacemakerd']);
    await pollUntil(
      'pacemaker: both nodes Online with a DC',
      90_000,
      async () => {
        const m = await this.crmMon('n1');
        return /Online: \[ n1 n2 \]/.test(m) && /Current DC: n[12] /.test(m);
      },
      () => this.crmMon('n1'),
    );
  }

  async crmMon(n: NodeName): Promise<string> {
    const r = await this.on(n, ['crm_mon', '-1'], 15_000);
    return r.stdout + r.stderr;
  }

  /** The nodes `crm_mon` on n lists as Promoted and Unpromoted for the clone. */
  async roles(n: NodeName): Promise<{ promoted: string[]; unpromoted: string[] }> {
    const m = await this.crmMon(n);
    const list = (label: string): string[] => {
      const hit = new RegExp(`^\\s*\\* ${label}: \\[ (.*) \\]$`, 'm').exec(m);
      return hit?.[1]?.split(' ').filter((x) => x !== '') ?? [];
    };
    return { promoted: list('Promoted'), unpromoted: list('Unpromoted') };
  }

  /** Every process in node n's mount namespace except its holder (all started by this pair). */
  pids(n: NodeName): number[] {
    const h = this.holders.get(n);
    if (h === undefined) return [];
    let ns: string;
    try {
      ns = readlinkSync(`/proc/${h}/ns/mnt`);
    } catch {
      return [];
    }
    const out: number[] = [];
    for (const e of readdirSync('/proc')) {
      if (!/^\d+$/.test(e) || Number(e) === h) continue;
      try {
        if (readlinkSync(`/proc/${e}/ns/mnt`) === ns) out.push(Number(e));
      } catch {
        // gone meanwhile
      }
    }
    return out;
  }

  /** The logs worth reading after a failure, last lines of each. */
  logs(): string {
    const parts: string[] = [];
    for (const n of NODES) {
      for (const f of ['var/log/pacemaker/pacemaker.log', 'var/log/pacemaker/tandemd.log']) {
        try {
          const lines = readFileSync(join(this.nodeDir(n), f), 'utf8').split('\n');
          const keep = f.endsWith('pacemaker.log')
            ? lines.filter((l) => /tandem|error|warning|Result of/i.test(l))
            : lines;
          parts.push(`--- ${n} ${f} ---\n${keep.slice(-25).join('\n')}`);
        } catch {
          // not written
        }
      }
    }
    return parts.join('\n');
  }

  /** Kills every process of both nodes by PID, then the holders, namespaces and directory. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    const all = NODES.flatMap((n) => this.pids(n));
    for (const p of all) kill(p);
    for (let i = 0; i < 50 && all.some(alive); i++) await sleep(100);
    for (const n of NODES) {
      const h = this.holders.get(n);
      if (h !== undefined) kill(h);
    }
    for (const n of NODES) await run('ip', ['netns', 'del', this.netns[n]]);
    if (process.env['TANDEM_KEEP_PCMK'] === undefined)
      await rm(this.dir, { recursive: true, force: true });
  }
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Alive and not a zombie waiting for its reaper. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
