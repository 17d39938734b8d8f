// The real-process fault harness (`npm run chaos`): two tandemd in their own network namespaces
// joined by a veth link, each with its backing file on its own size-limited tmpfs; a writer of
// stamped blocks on the Primary's NBD export; one fault per cycle drawn from the seed; then the
// heal an operator would do, and the checks:
//   - lost: a block holding an acknowledged write reads (through the Primary, after the heal; or
//     by the writer's own reads, during the fault) as something other than that write or a
//     later issued one;
//   - divergent: once both disks are UpToDate and connected, a 4 KiB block of the data regions
//     of the two backing files (read directly) differs;
//   - stuck: the pair is not Connected and UpToDate on both sides within STUCK_MS of the heal,
//     or a write is never answered.
// Promotion never uses --force: a node is only promoted when the pair is in sync, or (failover)
// when it was in sync with the Primary at the moment the Primary was stopped, so it holds every
// acknowledged write under protocol C. The seed fixes the faults and the writer's choices, not
// the timing of real processes, so a seed replays the same fault sequence, not the same run.
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  mkdirSync,
  openSync,
  rmSync,
  symlinkSync,
  writeSync,
  type PathLike,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { allInSync } from '../../src/cli/event-state.js';
import type { ResourceStatus } from '../../src/daemon/status.js';
import { NbdClient } from '../../src/nbd/client.js';
import { SeededRandom } from '../../src/util/prng.js';
import { NetnsPair } from '../support/netns.js';
import { BLOCK_BYTES, Ledger, readStamp } from './ledger.js';
import { Writer } from './writer.js';

const MIB = 1024 * 1024;
const DISK_BYTES = 64 * MIB;
/** The random writes cover the first 8 MiB (two activity-log extents). */
const MAIN_BLOCKS = (8 * MIB) / BLOCK_BYTES;
/** A node's tmpfs holds its whole backing file and a little more; a filler takes the rest. */
const TMPFS_BYTES = DISK_BYTES + 4 * MIB;
/** Fresh blocks one full-filesystem fault may write (then the writer goes back to the main region). */
const FRESH_PER_FAULT = 64;
/** Fresh blocks made holes again on the victim, so its next writes there must allocate. */
const PUNCH_BLOCKS = 256;
/** ping-timeout 0.5 s: a stopped daemon or a cut link is noticed within a second or two. */
const PING_TIMEOUT_MS = 500;
/** How long a fault lasts (stopped process, cut link, disconnected, dead). */
const FAULT_MS = 4 * PING_TIMEOUT_MS;
/** How long the writer runs on a healthy pair before the fault. */
const BEFORE_MS = 300;
/** How long the heal lets the resync run under the writer's load before stopping it. */
const RESYNC_UNDER_LOAD_MS = 3_000;
/** The bound on a heal: longer, and the pair counts as stuck. */
export const STUCK_MS = 30_000;

export const FAULTS = [
  'kill-primary',
  'kill-secondary',
  'stop-primary',
  'stop-secondary',
  'link-cut',
  'admin-disconnect',
  'failover',
  'enospc',
  'restart-mid-resync',
] as const;
export type Fault = (typeof FAULTS)[number];

export interface ChaosOptions {
  readonly cycles: number;
  readonly seed: number;
  /** One line per cycle, and the setup and summary lines. */
  readonly print: (line: string) => void;
  /** Faults to draw from (default all). */
  readonly faults?: readonly Fault[];
  /**
   * Plants a violation in cycle 1, to show the checks catch one: `lost` zeroes a block holding
   * an acknowledged write in both backing files; `divergent` zeroes it in the Secondary's only.
   */
  readonly plant?: 'lost' | 'divergent';
  /** What a failed local write does (`enospc`): detach (default) or pass_on (stale blocks). */
  readonly onIoError?: 'detach' | 'pass_on';
}

export interface ChaosSummary {
  cycles: number;
  /** Writes the client saw acknowledged. */
  ackedWrites: number;
  /** Block reads checked against the ledger, over all cycles. */
  checked: number;
  lost: number;
  divergent: number;
  stuck: number;
  failedWrites: number;
  durationMs: number;
  /** The first violations, for the report. */
  details: string[];
}

class Stuck extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
type Node = 'alice' | 'bob';
const other = (n: Node): Node => (n === 'alice' ? 'bob' : 'alice');

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Stuck(`not ${what} after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Everything the harness created (namespaces, mounts, daemons, files) and the synchronous
 * teardown, safe to call from a signal handler or an exit hook, and more than once.
 */
export class ChaosWorld {
  ns: NetnsPair | null = null;
  cluster: LocalCluster | null = null;
  readonly mounts: string[] = [];
  private cleaned = false;

  /** The daemons' last log lines, for a failure report. */
  logs(lines = 30): string {
    const c = this.cluster;
    if (c === null) return '';
    return [...c.nodes.values()]
      .map((n) => `--- ${n.name} ---\n${n.log.split('\n').slice(-lines).join('\n')}`)
      .join('\n');
  }

  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    const c = this.cluster;
    if (c !== null) {
      for (const n of c.nodes.values()) {
        const pid = n.process?.pid;
        if (pid === undefined) continue;
        // A stopped daemon gets SIGKILL all the same; SIGCONT first so nothing lingers stopped.
        for (const sig of ['SIGCONT', 'SIGKILL'] as const) {
          try {
            process.kill(pid, sig);
          } catch {
            // already gone
          }
        }
      }
    }
    for (const m of this.mounts.splice(0)) {
      try {
        // Lazy: a daemon that is still exiting may hold a file open on it.
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        // not mounted
      }
    }
    if (c !== null) rmSync(c.dir, { recursive: true, force: true });
    this.ns?.cleanup();
  }
}

interface CycleResult {
  note: string;
  checked: number;
  lost: string[];
  /** Differing blocks, and the first few described. */
  divergent: number;
  divergentDetails: string[];
}

export class Chaos {
  private readonly faultRng: SeededRandom;
  private readonly ledger: Ledger;
  private readonly writer: Writer;
  private primary: Node = 'alice';
  private ns!: NetnsPair;
  private c!: LocalCluster;
  private sizeBytes = 0;
  private fillers = new Map<Node, string>();
  private planted = false;

  constructor(
    private readonly o: ChaosOptions,
    private readonly world: ChaosWorld,
  ) {
    this.faultRng = new SeededRandom(o.seed);
    this.ledger = new Ledger((o.seed ^ 0x5eed) >>> 0);
    const freshStart = MAIN_BLOCKS;
    // The metadata sits at the end of the file; stay clear of it by a megabyte.
    const freshEnd = (DISK_BYTES - MIB) / BLOCK_BYTES;
    this.writer = new Writer(this.ledger, new SeededRandom(o.seed + 1), {
      mainBlocks: MAIN_BLOCKS,
      freshStart,
      freshEnd,
    });
  }

  async run(): Promise<ChaosSummary> {
    const t0 = performance.now();
    const s: ChaosSummary = {
      cycles: 0,
      ackedWrites: 0,
      checked: 0,
      lost: 0,
      divergent: 0,
      stuck: 0,
      failedWrites: 0,
      durationMs: 0,
      details: [],
    };
    await this.setup();
    const faults = this.o.faults ?? FAULTS;
    for (let i = 1; i <= this.o.cycles; i++) {
      const fault = faults[this.faultRng.int(faults.length)]!;
      const c0 = performance.now();
      let r: CycleResult;
      try {
        r = await this.cycle(fault);
        r.lost.push(...this.writer.stats.staleReads);
      } catch (e) {
        if (!(e instanceof Stuck)) throw e;
        s.stuck++;
        s.cycles = i;
        s.details.push(`cycle ${i} ${fault}: stuck: ${e.message}`);
        this.o.print(`cycle ${i}/${this.o.cycles} ${fault}: STUCK ${e.message}`);
        this.o.print(this.world.logs());
        break;
      } finally {
        s.ackedWrites = this.ledger.ackedWrites;
      }
      s.cycles = i;
      s.checked += r.checked;
      s.lost += r.lost.length;
      s.divergent += r.divergent;
      s.failedWrites += this.writer.stats.failed;
      const bad = [...r.lost, ...r.divergentDetails].slice(0, 10);
      for (const d of bad) s.details.push(`cycle ${i} ${fault}: ${d}`);
      const w = this.writer.stats;
      this.o.print(
        `cycle ${i}/${this.o.cycles} ${fault.padEnd(18)} ${r.note.padEnd(34)} ` +
          `writes ${w.acked} acked ${w.failed} failed; reads ${w.reads}; checked ${r.checked}; ` +
          `lost ${r.lost.length}; divergent ${r.divergent}; ` +
          `${((performance.now() - c0) / 1000).toFixed(1)} s; primary ${this.primary}`,
      );
      if (w.failed > 0 && w.lastError !== '') this.o.print(`  writer stopped: ${w.lastError}`);
      for (const d of bad) this.o.print(`  ${d}`);
      if (r.lost.length > 0 || r.divergent > 0) break;
    }
    s.durationMs = performance.now() - t0;
    return s;
  }

  private async setup(): Promise<void> {
    this.ns = NetnsPair.create([{ name: 'link', prefix: '203.0.113' }]);
    this.world.ns = this.ns;
    const link = this.ns.net('link');
    this.c = await LocalCluster.create({
      diskBytes: DISK_BYTES,
      ips: { host: { alice: link.addrA, bob: link.addrB } },
      wrap: (n) => ['ip', 'netns', 'exec', n === 'alice' ? this.ns.nsA : this.ns.nsB],
      net: [
        `    ping-int 1;`,
        `    ping-timeout ${PING_TIMEOUT_MS / 100};`,
        `    connect-int 1;`,
      ].join('\n'),
      // Resync fast, but not so fast that a restart cannot land in the middle of one.
      // c-min-rate: the rate resync keeps while the writer is busy (DRBD's default, 250k, would
      // make every heal under load take minutes).
      disk: [
        '    c-max-rate 32M;',
        '    c-min-rate 8M;',
        '    c-fill-target 1M;',
        `    on-io-error ${this.o.onIoError ?? 'detach'};`,
      ].join('\n'),
    });
    this.world.cluster = this.c;
    for (const n of ['alice', 'bob'] as const) {
      // The backing file lives on a tmpfs of its own; the configured path is a symlink to it.
      const mnt = join(this.c.dir, `${n}-fs`);
      mkdirSync(mnt);
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES}`, 'tandem-chaos', mnt]);
      this.world.mounts.push(mnt);
      const file = join(mnt, `${n}.img`);
      closeSync(openSync(file, 'w'));
      execFileSync('truncate', ['-s', String(DISK_BYTES), file]);
      rmSync(this.c.node(n).diskPath);
      symlinkSync(file, this.c.node(n).diskPath);
    }
    for (const n of ['alice', 'bob'] as const) await this.c.tandem(n, 'create-md', this.c.resource);
    await Promise.all([this.c.start('alice'), this.c.start('bob')]);
    for (const n of ['alice', 'bob'] as const) await this.c.tandem(n, 'up', this.c.resource);
    // Both disks are fresh zeroes: skip the initial sync as an operator would.
    await this.waitInSync('alice', 'connected');
    await this.c.tandem('alice', 'new-current-uuid', '--clear-bitmap', this.c.resource);
    await this.waitInSync('alice', 'in sync');
    await this.waitInSync('bob', 'in sync');
    await this.c.tandem('alice', 'primary', this.c.resource);
    this.primary = 'alice';
    this.sizeBytes = (await this.status('alice')).sizeBytes;
    this.o.print(
      `chaos: seed ${this.o.seed}, ${this.o.cycles} cycles, on-io-error ` +
        `${this.o.onIoError ?? 'detach'}; namespaces ${this.ns.nsA} ` +
        `${this.ns.nsB}; device ${this.sizeBytes} bytes; dir ${this.c.dir}`,
    );
  }

  private async status(n: Node): Promise<ResourceStatus> {
    const all = (await this.c.request(n, 'status')) as ResourceStatus[];
    const r = all.find((x) => x.name === this.c.resource);
    if (r === undefined) throw new Error(`${n}: status lists no ${this.c.resource}`);
    return r;
  }

  private async tandem(n: Node, ...args: string[]): Promise<void> {
    await within(STUCK_MS, `${n}: tandem ${args.join(' ')} answered`, this.c.tandem(n, ...args));
  }

  private waitInSync(n: Node, what: string): Promise<void> {
    const done =
      what === 'connected'
        ? (s: Parameters<typeof allInSync>[0]) =>
            s.all('connection', this.c.resource).every((x) => x['connection'] === 'Connected')
        : (s: Parameters<typeof allInSync>[0]) => allInSync(s, this.c.resource);
    return this.c.waitFor(n, what, done, STUCK_MS).catch((e: unknown) => {
      throw new Stuck(e instanceof Error ? e.message : String(e));
    });
  }

  private async startWriter(): Promise<void> {
    await this.writer.start(this.c.node(this.primary).nbdSocket, this.c.resource);
  }

  private async stopWriter(): Promise<void> {
    if (!(await this.writer.stop(STUCK_MS)))
      throw new Stuck(`writes on ${this.primary} unanswered after ${STUCK_MS} ms`);
  }

  private pid(n: Node): number {
    const pid = this.c.node(n).process?.pid;
    if (pid === undefined) throw new Error(`${n}: no daemon`);
    return pid;
  }

  private async kill(n: Node): Promise<void> {
    await this.c.stop(n, 'SIGKILL');
  }

  /** SIGSTOP for `ms`, then SIGCONT; resolves with the peer's connection state just before. */
  private async pause(n: Node, ms: number): Promise<string> {
    const pid = this.pid(n);
    process.kill(pid, 'SIGSTOP');
    try {
      await sleep(ms);
      return (await this.status(other(n))).peers[0]?.connection ?? 'no peer';
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  }

  /** What `n` sees of its peer's connection (a fault past ping-timeout must show here). */
  private async seenBy(n: Node): Promise<string> {
    return (await this.status(n)).peers[0]?.connection ?? 'no peer';
  }

  /** Restarts a node's daemon if it is dead and brings the resource up, attached and connecting. */
  private async revive(n: Node): Promise<void> {
    if (this.c.node(n).process === null) await this.c.start(n);
    const st = await this.status(n);
    if (!st.up) {
      await this.tandem(n, 'up', this.c.resource);
      return;
    }
    if (st.disk === 'Diskless') await this.tandem(n, 'attach', this.c.resource);
    if (st.peers.some((p) => p.connection === 'StandAlone'))
      await this.tandem(n, 'connect', this.c.resource);
  }

  /**
   * The operator's heal: every daemon running, every resource up, attached and connected, the
   * pair in sync (writes may still run), the writer drained, then `want` made the Primary.
   */
  private async heal(want: Node): Promise<void> {
    await this.revive('alice');
    await this.revive('bob');
    // The resync starts under the writer's load for a while (writes racing resync requests),
    // then the writer stops so the bound on the heal is the pair's, not the load's.
    await this.c
      .waitFor(this.primary, 'in sync', (s) => allInSync(s, this.c.resource), RESYNC_UNDER_LOAD_MS)
      .catch(() => undefined);
    await this.stopWriter();
    // pass_on leaves an Inconsistent disk attached and connected: nothing starts its resync
    // until the next handshake, which the operator makes with disconnect + connect (with the
    // writer drained: an Inconsistent Primary without its peer fails every request, as DRBD's).
    for (const n of ['alice', 'bob'] as const) {
      const st = await this.status(n);
      const idle = st.peers.every(
        (p) => p.connection === 'Connected' && p.replication === 'Established',
      );
      if (st.disk === 'Inconsistent' && idle) {
        await this.tandem(n, 'disconnect', this.c.resource);
        await this.tandem(n, 'connect', this.c.resource);
      }
    }
    await this.waitInSync('alice', 'in sync');
    await this.waitInSync('bob', 'in sync');
    const roles = {
      alice: (await this.status('alice')).role,
      bob: (await this.status('bob')).role,
    };
    if (roles[other(want)] === 'Primary')
      await this.tandem(other(want), 'secondary', this.c.resource);
    if (roles[want] !== 'Primary') await this.tandem(want, 'primary', this.c.resource);
    this.primary = want;
  }

  private async cycle(fault: Fault): Promise<CycleResult> {
    const rng = this.faultRng;
    const P = this.primary;
    const S = other(P);
    this.writer.resetStats();
    await this.startWriter();
    await sleep(BEFORE_MS);
    let want: Node = P;
    let note = '';
    switch (fault) {
      case 'kill-primary': {
        await this.kill(P);
        await this.writer.stop(STUCK_MS);
        await sleep(FAULT_MS / 2);
        want = rng.int(2) === 0 ? P : S;
        note = `${P} killed, then ${want} Primary`;
        break;
      }
      case 'kill-secondary': {
        await this.kill(S);
        await sleep(FAULT_MS);
        note = `${S} killed`;
        break;
      }
      case 'stop-primary':
      case 'stop-secondary': {
        const n = fault === 'stop-primary' ? P : S;
        const seen = await this.pause(n, FAULT_MS);
        note = `${n} stopped ${FAULT_MS} ms (${other(n)}: ${seen})`;
        break;
      }
      case 'link-cut': {
        const side = rng.int(2) === 0 ? 'a' : 'b';
        this.ns.setLink('link', side, false);
        let seen: string;
        try {
          await sleep(FAULT_MS);
          seen = `${P}: ${await this.seenBy(P)}`;
        } finally {
          this.ns.setLink('link', side, true);
        }
        note = `link down on ${side === 'a' ? 'alice' : 'bob'} (${seen})`;
        break;
      }
      case 'admin-disconnect': {
        const n = rng.int(2) === 0 ? P : S;
        await this.tandem(n, 'disconnect', this.c.resource);
        await sleep(FAULT_MS / 2);
        await this.tandem(n, 'connect', this.c.resource);
        note = `disconnect/connect on ${n}`;
        break;
      }
      case 'failover': {
        if (rng.int(2) === 0) {
          await this.stopWriter();
          await this.tandem(P, 'secondary', this.c.resource);
          await this.tandem(S, 'primary', this.c.resource);
          note = `${P} secondary, ${S} primary`;
        } else {
          // Promoting S is safe only if it held every acknowledged write when P died: the pair
          // was in sync (the previous cycle ended so) and nothing but this kill happened since.
          const seen = (await this.status(P)).peers[0];
          const inSync =
            seen?.connection === 'Connected' &&
            seen.replication === 'Established' &&
            seen.peerDisk === 'UpToDate';
          await this.kill(P);
          await this.writer.stop(STUCK_MS);
          if (!inSync) {
            note = `${P} killed, ${S} was not in sync: not promoted`;
            break;
          }
          await this.c
            .waitFor(
              S,
              'disconnected',
              (s) =>
                s.all('connection', this.c.resource).every((x) => x['connection'] !== 'Connected'),
              STUCK_MS,
            )
            .catch((e: unknown) => {
              throw new Stuck(e instanceof Error ? e.message : String(e));
            });
          await this.tandem(S, 'primary', this.c.resource);
          note = `${P} killed, ${S} primary`;
        }
        this.primary = S;
        want = S;
        await this.startWriter();
        await sleep(FAULT_MS / 2);
        break;
      }
      case 'enospc': {
        const victim = rng.int(2) === 0 ? P : S;
        note = await this.fillUp(victim);
        break;
      }
      case 'restart-mid-resync': {
        const victim = rng.int(2) === 0 ? P : S;
        note = await this.restartMidResync(P, S, victim, rng.int(40));
        break;
      }
    }
    await this.heal(want);
    if (this.o.plant !== undefined && !this.planted) {
      this.planted = true;
      const b = this.ledger.written().find((x) => this.ledger.hasAck(x));
      if (b === undefined) throw new Error('nothing acknowledged to plant a violation on');
      const nodes =
        this.o.plant === 'lost' ? [this.primary, other(this.primary)] : [other(this.primary)];
      for (const n of nodes) {
        const fh = await open(this.c.node(n).diskPath, 'r+');
        await fh.write(Buffer.alloc(BLOCK_BYTES), 0, BLOCK_BYTES, b * BLOCK_BYTES);
        await fh.close();
      }
      note += ` [planted: block ${b} zeroed on ${nodes.join(', ')}]`;
    }
    const checked = await this.checkAcked();
    const d = await this.compareDisks();
    return {
      note,
      checked: checked.checked,
      lost: checked.lost,
      divergent: d.count,
      divergentDetails: d.details,
    };
  }

  /**
   * ENOSPC on `victim`: some never-written blocks are made holes again (they read as zeroes
   * before and after), a filler takes every free page of its tmpfs, and the writer turns to those
   * blocks; the victim's next write there fails, and with on-io-error detach it goes Diskless.
   * Then the filler goes and the operator attaches the disk again.
   */
  private async fillUp(victim: Node): Promise<string> {
    const left = this.writer.freshLeft;
    if (left < FRESH_PER_FAULT) return `${victim}: no fresh blocks left, nothing full`;
    const mnt = join(this.c.dir, `${victim}-fs`);
    const first = this.writer.freshFirst;
    const count = Math.min(PUNCH_BLOCKS, left);
    execFileSync('fallocate', [
      '--punch-hole',
      '--offset',
      String(first * BLOCK_BYTES),
      '--length',
      String(count * BLOCK_BYTES),
      join(mnt, `${victim}.img`),
    ]);
    const filler = join(mnt, 'filler');
    this.fillers.set(victim, filler);
    fill(filler);
    this.writer.freshBudget(FRESH_PER_FAULT);
    let failed = false;
    const until = performance.now() + 5_000;
    while (performance.now() < until) {
      if ((await this.status(victim)).disk !== 'UpToDate') {
        failed = true;
        break;
      }
      await sleep(20);
    }
    await sleep(FAULT_MS / 4);
    rmSync(filler, { force: true });
    this.fillers.delete(victim);
    return failed ? `${victim} full: disk failed` : `${victim} full: disk did not fail`;
  }

  private async restartMidResync(P: Node, S: Node, victim: Node, delayMs: number): Promise<string> {
    await this.tandem(S, 'disconnect', this.c.resource);
    await sleep(FAULT_MS / 2);
    const w = this.c.watch(S);
    let resyncing = false;
    try {
      await w.ready;
      await this.tandem(S, 'connect', this.c.resource);
      await w
        .until(
          'resyncing',
          (s) =>
            s
              .all('peer-device', this.c.resource)
              .some((p) => p['replication'] === 'SyncTarget' || p['replication'] === 'SyncSource'),
          10_000,
        )
        .then(() => (resyncing = true))
        .catch(() => undefined);
      await sleep(delayMs);
      const still = w.state
        .all('peer-device', this.c.resource)
        .some((p) => p['replication'] === 'SyncTarget' || p['replication'] === 'SyncSource');
      resyncing &&= still;
    } finally {
      w.close();
    }
    await this.kill(victim);
    if (victim === P) await this.writer.stop(STUCK_MS);
    await sleep(FAULT_MS / 4);
    return `${victim} killed ${resyncing ? 'mid-resync' : 'after the resync'} (+${delayMs} ms)`;
  }

  /** Every block with an acknowledged write, read through the Primary's export. */
  private async checkAcked(): Promise<{ checked: number; lost: string[] }> {
    const nbd = await within(
      STUCK_MS,
      `${this.primary}: NBD export open`,
      NbdClient.connect({
        listener: { kind: 'unix', path: this.c.node(this.primary).nbdSocket },
        exportName: this.c.resource,
      }),
    );
    const lost: string[] = [];
    let checked = 0;
    try {
      const blocks = this.ledger.written();
      for (let i = 0; i < blocks.length;) {
        // One read per run of consecutive blocks, up to 64 of them.
        let j = i + 1;
        while (j < blocks.length && j - i < 64 && blocks[j] === blocks[j - 1]! + 1) j++;
        const first = blocks[i]!;
        const data = await within(
          STUCK_MS,
          `${this.primary}: read answered`,
          nbd.read(first * BLOCK_BYTES, (j - i) * BLOCK_BYTES),
        );
        for (let k = i; k < j; k++) {
          const b = blocks[k]!;
          const off = (b - first) * BLOCK_BYTES;
          const why = this.ledger.verdict(
            b,
            readStamp(data.subarray(off, off + BLOCK_BYTES), this.ledger.runTag, b),
          );
          if (this.ledger.hasAck(b)) checked++;
          if (why !== null) lost.push(why);
        }
        i = j;
      }
    } finally {
      await nbd.disconnect().catch(() => nbd.destroy());
    }
    return { checked, lost };
  }

  /** The data regions of both backing files, 4 KiB block by block. */
  private async compareDisks(): Promise<{ count: number; details: string[] }> {
    const a = await open(this.c.node('alice').diskPath, 'r');
    const b = await open(this.c.node('bob').diskPath, 'r');
    const out: string[] = [];
    let differ = 0;
    try {
      const chunk = 4 * MIB;
      const ba = Buffer.alloc(chunk);
      const bb = Buffer.alloc(chunk);
      for (let off = 0; off < this.sizeBytes; off += chunk) {
        const n = Math.min(chunk, this.sizeBytes - off);
        await Promise.all([a.read(ba, 0, n, off), b.read(bb, 0, n, off)]);
        if (ba.compare(bb, 0, n, 0, n) === 0) continue;
        for (let x = 0; x < n; x += BLOCK_BYTES) {
          if (ba.compare(bb, x, x + BLOCK_BYTES, x, x + BLOCK_BYTES) === 0) continue;
          differ++;
          const blk = (off + x) / BLOCK_BYTES;
          const sa = readStamp(ba.subarray(x, x + BLOCK_BYTES), this.ledger.runTag, blk);
          const sb = readStamp(bb.subarray(x, x + BLOCK_BYTES), this.ledger.runTag, blk);
          if (out.length < 10) out.push(`block ${blk} differs: alice ${show(sa)}, bob ${show(sb)}`);
        }
      }
    } finally {
      await a.close();
      await b.close();
    }
    return { count: differ, details: out };
  }
}

function show(s: ReturnType<typeof readStamp>): string {
  switch (s.kind) {
    case 'zero':
      return 'zeroes';
    case 'stamp':
      return `write ${s.seq}`;
    case 'garbage':
      return s.why;
  }
}

/** Writes zeroes to `path` until its filesystem is full. */
function fill(path: PathLike): void {
  const fd = openSync(path, 'w');
  try {
    for (const size of [MIB, BLOCK_BYTES]) {
      const buf = Buffer.alloc(size);
      for (;;) {
        try {
          writeSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}
