// Network namespaces for tests (root only): two namespaces joined by veth pairs, one per
// network, plus link cuts, nft packet loss and processes run inside a namespace. Used by the
// multipath netns test and meant for daemon-level tests (fio over the daemon) later.
// Everything created here is removed by cleanup(), which is idempotent; call it in finally.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { inCi } from './peers.js';

/** True when this process may create namespaces; else skips (outside CI) or fails (in CI). */
export function requireRoot(t: TestContext): boolean {
  const root = process.getuid?.() === 0;
  if (root && hasIp()) return true;
  const why = root ? 'the ip command (iproute2) is missing' : 'network namespaces need root';
  if (inCi) throw new Error(`${why} (CI=true: this test must run)`);
  t.skip(`${why}; run as root to include this test`);
  return false;
}

function hasIp(): boolean {
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface NetSpec {
  /** A short label ("interconnect", "ethernet"). */
  readonly name: string;
  /** The /24 prefix without the last octet, e.g. "203.0.113". Node A gets .1, node B .2. */
  readonly prefix: string;
}

export interface Net extends NetSpec {
  readonly ifA: string;
  readonly ifB: string;
  readonly addrA: string;
  readonly addrB: string;
}

const run = (args: readonly string[]): void => {
  execFileSync(args[0] ?? 'true', args.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
};

/** Blocks until the link reports carrier (state UP), or throws after 5 s. */
function waitCarrier(ns: string, dev: string): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < 500; i++) {
    const out = execFileSync('ip', ['-n', ns, '-o', 'link', 'show', 'dev', dev], {
      encoding: 'utf8',
    });
    if (/\bstate UP\b/.test(out)) return;
    Atomics.wait(pause, 0, 0, 10);
  }
  throw new Error(`${ns}/${dev}: no carrier after 5 s`);
}

export class NetnsPair {
  readonly nsA: string;
  readonly nsB: string;
  readonly nets: Net[] = [];
  private readonly children = new Set<ChildProcess>();
  private cleaned = false;

  private constructor(tag: string) {
    this.nsA = `tdm${tag}a`;
    this.nsB = `tdm${tag}b`;
  }

  /** Creates both namespaces and one veth pair per network, addressed and up. */
  static create(specs: readonly NetSpec[]): NetnsPair {
    const p = new NetnsPair(randomBytes(3).toString('hex'));
    try {
      run(['ip', 'netns', 'add', p.nsA]);
      run(['ip', 'netns', 'add', p.nsB]);
      for (const ns of [p.nsA, p.nsB]) run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      specs.forEach((spec, i) => {
        const ifA = `${p.nsA}${i}`;
        const ifB = `${p.nsB}${i}`;
        run([
          'ip',
          'link',
          'add',
          ifA,
          'netns',
          p.nsA,
          'type',
          'veth',
          'peer',
          'name',
          ifB,
          'netns',
          p.nsB,
        ]);
        const net: Net = {
          ...spec,
          ifA,
          ifB,
          addrA: `${spec.prefix}.1`,
          addrB: `${spec.prefix}.2`,
        };
        run(['ip', '-n', p.nsA, 'addr', 'add', `${net.addrA}/24`, 'dev', ifA]);
        run(['ip', '-n', p.nsB, 'addr', 'add', `${net.addrB}/24`, 'dev', ifB]);
        run(['ip', '-n', p.nsA, 'link', 'set', ifA, 'up']);
        run(['ip', '-n', p.nsB, 'link', 'set', ifB, 'up']);
        p.nets.push(net);
      });
      // A veth pair has carrier only a moment after both ends are up; until then libuv's
      // interface list (os.networkInterfaces, which a daemon reads at start) leaves it out.
      for (const n of p.nets) {
        waitCarrier(p.nsA, n.ifA);
        waitCarrier(p.nsB, n.ifB);
      }
    } catch (e) {
      p.cleanup();
      throw e;
    }
    return p;
  }

  net(name: string): Net {
    const n = this.nets.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no network ${name}`);
    return n;
  }

  /** Takes a network's link down (or up) on one side; the other side sees no error at once. */
  setLink(name: string, side: 'a' | 'b', up: boolean): void {
    const n = this.net(name);
    const [ns, dev] = side === 'a' ? [this.nsA, n.ifA] : [this.nsB, n.ifB];
    run(['ip', '-n', ns, 'link', 'set', dev, up ? 'up' : 'down']);
  }

  /** Drops `percent`% of the packets leaving each side on this network (nft numgen). */
  setLoss(name: string, percent: number): void {
    const n = this.net(name);
    for (const [ns, dev] of [
      [this.nsA, n.ifA],
      [this.nsB, n.ifB],
    ] as const) {
      const script = [
        'table inet tandemloss {',
        '  chain out {',
        '    type filter hook output priority 0; policy accept;',
        `    oifname "${dev}" numgen random mod 100 < ${percent} drop`,
        '  }',
        '}',
      ].join('\n');
      execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], { input: script });
    }
  }

  /** Starts `node script args` inside a namespace; killed by cleanup(). */
  spawnNode(side: 'a' | 'b', script: string, args: readonly string[]): ChildProcess {
    const ns = side === 'a' ? this.nsA : this.nsB;
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of [this.nsA, this.nsB]) {
      try {
        run(['ip', 'netns', 'del', ns]);
      } catch {
        // not created, or already gone
      }
    }
  }
}
