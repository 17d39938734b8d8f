// Tandem under a real Pacemaker cluster: the per-node configuration, CLI wrappers the agent
// calls, the promotable clone, and a stamped write log that says which writes were
// acknowledged, so a failover can be checked block by block.
import assert from 'node:assert/strict';
import { chmod, mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient } from '../../src/nbd/client.js';
import type { ResourceStatus } from '../../src/daemon/status.js';
import {
  NODE_IP,
  NODES,
  REPO_ROOT,
  type NodeName,
  type PacemakerPair,
} from '../support/pacemaker.js';

export const RESOURCE = 'r0';
export const BLOCK = 4096;

export interface TandemCluster {
  readonly pair: PacemakerPair;
  readonly config: string;
  readonly bin: string;
  nbdSocket(n: NodeName): string;
}

/**
 * Writes tandem.conf (the same for both nodes), wrappers for tandem/tandemd and create-md on
 * both disks. `net` and `handlers` go into the resource's sections.
 */
export async function setupTandem(
  pair: PacemakerPair,
  o: { diskBytes: number; net?: string; handlers?: string },
): Promise<TandemCluster> {
  const bin = join(pair.dir, 'bin');
  await mkdir(bin, { recursive: true });
  for (const [name, main] of [
    ['tandem', 'dist/src/cli/main.js'],
    ['tandemd', 'dist/src/daemon/main.js'],
  ] as const) {
    await writeFile(
      join(bin, name),
      `#!/bin/sh\nexec ${process.execPath} ${join(REPO_ROOT, main)} "$@"\n`,
    );
    await chmod(join(bin, name), 0o755);
  }
  const nbdSocket = (n: NodeName): string => join(pair.nodeDir(n), 'nbd.sock');
  const hosts = NODES.map(
    (n, i) => `  on ${n} {
    node-id ${i};
    address ${NODE_IP[n]}:7790;
    device "nbd+unix:///${RESOURCE}?socket=${nbdSocket(n)}";
    disk ${join(pair.nodeDir(n), 'disk.img')};
    meta-disk internal;
  }`,
  ).join('\n');
  const config = join(pair.dir, 'tandem.conf');
  await writeFile(
    config,
    `resource ${RESOURCE} {
  net { protocol C; connect-int 1; ping-int 1; ping-timeout 5; ${o.net ?? ''} }
  disk { c-fill-target 16M; c-max-rate 4G; }
  handlers {
${o.handlers ?? ''}
  }
${hosts}
}
`,
  );
  for (const n of NODES) {
    const disk = join(pair.nodeDir(n), 'disk.img');
    await writeFile(disk, '');
    await truncate(disk, o.diskBytes);
    await pair.onOk(n, [
      join(bin, 'tandem'),
      '--config',
      config,
      '--node',
      n,
      'create-md',
      RESOURCE,
    ]);
  }
  return { pair, config, bin, nbdSocket };
}

/** `tandem ARGS` on node n, with the cluster's configuration. */
export function tandem(c: TandemCluster, n: NodeName, ...args: string[]): Promise<string> {
  return c.pair.onOk(n, [join(c.bin, 'tandem'), '--config', c.config, '--node', n, ...args]);
}

export async function tandemStatus(c: TandemCluster, n: NodeName): Promise<ResourceStatus> {
  const all = JSON.parse(await tandem(c, n, 'status', RESOURCE, '--json')) as ResourceStatus[];
  const r = all[0];
  assert.ok(r !== undefined, `${n}: status --json lists ${RESOURCE}`);
  return r;
}

/** The promotable clone of ocf:tandem:tandem, as `cibadmin --create -o resources` takes it. */
/** The agent runs on each node; its tandemd log lands in that node's private /var/log. */
export const TANDEMD_LOG = '/var/log/pacemaker/tandemd.log';

/**
 * The promotable clone of ocf:tandem:tandem, created with crmsh in the README's form (crm
 * configure primitive + clone with promotable=true), with this cluster's paths and short
 * monitor intervals. migration-threshold=1: a node whose instance failed is not picked again
 * until `crm_resource --cleanup`.
 */
export function crmCommands(c: TandemCluster): string[][] {
  return [
    [
      'crm',
      'configure',
      'primitive',
      'tdm',
      'ocf:tandem:tandem',
      'params',
      `resource=${RESOURCE}`,
      `config=${c.config}`,
      `tandem=${join(c.bin, 'tandem')}`,
      `tandemd=${join(c.bin, 'tandemd')}`,
      `log=${TANDEMD_LOG}`,
      'meta',
      'migration-threshold=1',
      'op',
      'monitor',
      'interval=2s',
      'role=Promoted',
      'timeout=20s',
      'op',
      'monitor',
      'interval=3s',
      'role=Unpromoted',
      'timeout=20s',
      'op',
      'start',
      'timeout=60s',
      'op',
      'stop',
      'timeout=60s',
      'op',
      'promote',
      'timeout=60s',
      'op',
      'demote',
      'timeout=60s',
    ],
    [
      'crm',
      'configure',
      'clone',
      'tdm-clone',
      'tdm',
      'meta',
      'promotable=true',
      'promoted-max=1',
      'promoted-node-max=1',
      'clone-max=2',
      'clone-node-max=1',
      'notify=true',
    ],
  ];
}

// --- the stamped write log -----------------------------------------------------------------

const MAGIC = 0x54444d57; // "TDMW"

/** A block whose every 16 bytes say (magic, block, seq, ~seq): a torn or misplaced block shows. */
export function stamp(block: number, seq: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  for (let o = 0; o < BLOCK; o += 16) {
    b.writeUInt32LE(MAGIC, o);
    b.writeUInt32LE(block, o + 4);
    b.writeUInt32LE(seq, o + 8);
    b.writeUInt32LE(~seq >>> 0, o + 12);
  }
  return b;
}

/** The seq a block holds, 0 for a never-written (zero) block, or why it is neither. */
export function readStamp(b: Buffer, block: number): { seq: number } | { error: string } {
  if (b.every((x) => x === 0)) return { seq: 0 };
  const seq = b.readUInt32LE(8);
  if (!b.equals(stamp(block, seq)))
    return {
      error: `not a whole stamp of block ${block} (first words ${b.subarray(0, 16).toString('hex')})`,
    };
  return { seq };
}

/** Random 4 KiB writes from `depth` workers until the export fails; records issued and acked. */
export class WriteLog {
  /** block -> every seq issued to it, in order. */
  readonly issued = new Map<number, number[]>();
  /** block -> the highest acknowledged seq. */
  readonly acked = new Map<number, number>();
  ackedCount = 0;
  private seq = 0;
  error: unknown = null;

  constructor(private readonly blocks: number) {}

  async run(nbd: NbdClient, depth: number): Promise<void> {
    const worker = async (): Promise<void> => {
      while (this.error === null) {
        const block = Math.floor(Math.random() * this.blocks);
        const seq = ++this.seq;
        const list = this.issued.get(block) ?? [];
        list.push(seq);
        this.issued.set(block, list);
        try {
          await nbd.write(block * BLOCK, stamp(block, seq));
        } catch (e) {
          this.error ??= e;
          return;
        }
        this.ackedCount++;
        if ((this.acked.get(block) ?? 0) < seq) this.acked.set(block, seq);
      }
    };
    await Promise.all(Array.from({ length: depth }, worker));
  }

  /**
   * Reads every block through `nbd`: each holds its last acknowledged write or a write issued
   * after it (in flight at the crash); never an older one, a torn one or another block's.
   */
  async verify(nbd: NbdClient): Promise<string[]> {
    const failures: string[] = [];
    for (const [block, seqs] of this.issued) {
      const got = readStamp(await nbd.read(block * BLOCK, BLOCK), block);
      if ('error' in got) {
        failures.push(`block ${block}: ${got.error}`);
        continue;
      }
      const acked = this.acked.get(block) ?? 0;
      if (got.seq < acked)
        failures.push(`block ${block}: holds seq ${got.seq}, older than acknowledged ${acked}`);
      else if (got.seq !== 0 && !seqs.includes(got.seq))
        failures.push(`block ${block}: holds seq ${got.seq}, never written there`);
    }
    return failures;
  }
}
