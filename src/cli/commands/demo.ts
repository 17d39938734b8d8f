// `tandem demo`: the README's first command. Two real tandemd processes on loopback, an initial
// sync, writes through NBD on the Primary, the Primary killed, the Secondary promoted, and the
// data proved to be there by checksum. Needs nothing but Node: NBD traffic uses Tandem's client.
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { NbdClient } from '../../nbd/client.js';
import { MIB } from '../../limits.js';
import { CLI_JS, LocalCluster } from '../local-cluster.js';
import { allConnected, allInSync } from '../event-state.js';

const DISK_BYTES = 256 * MIB;
const WRITE_BYTES = 64 * MIB;
const CHUNK_BYTES = 1 * MIB;

function say(step: string): void {
  process.stdout.write(`\n==> ${step}\n`);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('run a two-node replicated volume on loopback and show failover, step by step')
    .option('--keep', 'keep the temporary directory (config, backing files, logs)')
    .action(async (o: { keep?: boolean }) => {
      const started = performance.now();
      const c = await LocalCluster.create({
        diskBytes: DISK_BYTES,
        // The demo's disks are local files: let the initial sync run as fast as they go.
        disk: '    c-fill-target 16M;\n    c-max-rate 4G;',
      });
      try {
        await runDemo(c);
        const s = ((performance.now() - started) / 1000).toFixed(1);
        say(`done in ${s} s: every acknowledged write survived the loss of the Primary`);
      } finally {
        if (o.keep === true) process.stdout.write(`(kept ${c.dir})\n`);
        else {
          for (const n of c.nodes.values()) await c.stop(n.name, 'SIGKILL');
          await c.destroy();
        }
      }
    });
}

async function runDemo(c: LocalCluster): Promise<void> {
  say(`two nodes, alice and bob, each with a ${DISK_BYTES / MIB} MiB backing file in ${c.dir}`);
  process.stdout.write(`configuration (drbd.conf syntax): ${c.configPath}\n`);
  for (const n of ['alice', 'bob']) {
    process.stdout.write(await c.tandem(n, 'create-md', c.resource));
  }

  say('start tandemd on both nodes and bring r0 up');
  await Promise.all([c.start('alice'), c.start('bob')]);
  await c.request('alice', 'up');
  await c.request('bob', 'up');
  await c.waitFor('alice', 'connected', (s) => allConnected(s, c.resource), 30_000);
  process.stdout.write(await c.tandem('alice', 'status', c.resource));

  say('make alice Primary; her data becomes the new generation and syncs to bob');
  await c.request('alice', 'primary', { flags: { force: true } });
  await showWaitSync(c);
  process.stdout.write(await c.tandem('alice', 'status', c.resource));

  say(
    `write ${WRITE_BYTES / MIB} MiB of random data through alice's NBD export (${c.node('alice').nbdUri})`,
  );
  const data = randomBytes(WRITE_BYTES);
  const alice = await NbdClient.connect({
    listener: { kind: 'unix', path: c.node('alice').nbdSocket },
    exportName: c.resource,
  });
  const writes: Promise<void>[] = [];
  for (let off = 0; off < WRITE_BYTES; off += CHUNK_BYTES) {
    writes.push(alice.write(off, data.subarray(off, off + CHUNK_BYTES)));
  }
  await Promise.all(writes);
  await alice.flush();
  process.stdout.write(
    `every write acknowledged (protocol C: on both disks); sha256 ${sha256(data)}\n`,
  );

  say('kill alice (SIGKILL): the Primary is gone without a goodbye');
  alice.destroy();
  await c.stop('alice', 'SIGKILL');
  await c.waitFor('bob', 'disconnected from alice', (s) => !allConnected(s, c.resource), 30_000);
  process.stdout.write(await c.tandem('bob', 'status', c.resource));

  say('promote bob and read the data back through his NBD export');
  await c.request('bob', 'primary');
  const bob = await NbdClient.connect({
    listener: { kind: 'unix', path: c.node('bob').nbdSocket },
    exportName: c.resource,
  });
  const parts: Buffer[] = [];
  for (let off = 0; off < WRITE_BYTES; off += CHUNK_BYTES)
    parts.push(await bob.read(off, CHUNK_BYTES));
  await bob.disconnect();
  const got = sha256(Buffer.concat(parts));
  process.stdout.write(`read back sha256 ${got}\n`);
  if (got !== sha256(data))
    throw new Error('the data read from bob differs from what was written to alice');
  process.stdout.write('identical.\n');

  say('restart alice: she rejoins as Secondary and catches up from bob');
  await c.start('alice');
  await c.request('alice', 'up');
  await c.waitFor('bob', 'in sync with alice', (s) => allInSync(s, c.resource), 60_000);
  process.stdout.write(await c.tandem('bob', 'status', c.resource));
}

/** Runs `tandem wait-sync` with this terminal, so its progress bar is what the user sees. */
function showWaitSync(c: LocalCluster): Promise<void> {
  const n = c.node('alice');
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [
        CLI_JS,
        '-c',
        c.configPath,
        '-n',
        'alice',
        '--control',
        n.controlPath,
        'wait-sync',
        c.resource,
        '--timeout',
        '120',
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    );
    p.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`wait-sync exited ${code}`)),
    );
  });
}
