// What an operator sees: refusals that say what to do next with meaningful exit codes,
// `events --now` in drbdsetup events2's shape, and SIGTERM as a graceful shutdown: requests in
// flight finish, the Primary steps down, and the restarted node needs no resync at all. Pins a
// shutdown that closes the disk under running writes or leaves the metadata claiming a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { CliError } from '../../src/cli/context.js';
import { CLI_JS, type LocalCluster } from '../../src/cli/local-cluster.js';
import { NbdClient } from '../../src/nbd/client.js';
import {
  MIB,
  fileSha,
  nbdWrite,
  peerStatus,
  readDisk,
  skipInitialSync,
  status,
  waitDisconnected,
  waitInSync,
  waitUntil,
  withPair,
  within,
} from './support.js';

interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `tandem` for a node; with `until`, stops it once stdout matches (for streams). */
function cli(
  c: LocalCluster,
  node: string,
  args: readonly string[],
  until?: RegExp,
): Promise<CliRun> {
  const n = c.node(node);
  const p = spawn(
    process.execPath,
    [CLI_JS, '-c', c.configPath, '-n', node, '--control', n.controlPath, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (b: Buffer) => {
    stdout += b.toString();
    if (until?.test(stdout) === true) p.kill('SIGTERM');
  });
  p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, stdout, stderr })));
}

test('refusals say what to do next, with exit codes; events --now speaks events2', async () => {
  await withPair({ diskBytes: 32 * MIB }, async (c) => {
    const r = c.resource;
    let run = await cli(c, 'alice', ['primary', r]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr,
      /^tandem: r0: cannot become Primary: disk is Inconsistent and peer bob is Inconsistent; use --force to start a new data generation/,
    );

    await c.tandem('bob', 'disconnect', r);
    await waitDisconnected(c, 'alice');
    run = await cli(c, 'alice', ['primary', r]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /disk is Inconsistent and peer bob is not connected; use --force/);

    // Scripts get the engine's refusal code beside the text (the text may change, the code not).
    await assert.rejects(c.request('alice', 'primary'), (e: unknown) => {
      assert.ok(e instanceof CliError);
      assert.equal(e.refusal, 'disk-not-up-to-date');
      assert.equal(e.exitCode, 1);
      return true;
    });

    run = await cli(c, 'alice', ['resize', r]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot resize: disk is Inconsistent.*tandem wait-sync r0/);
    run = await cli(c, 'alice', ['primary', 'nope']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /nope: no such resource on this node \(configured here: r0\)/);
    run = await cli(c, 'alice', ['frobnicate', r]);
    assert.equal(run.code, 2, 'an unknown command is a usage error');
    run = await cli(c, 'alice', ['--control', `${c.dir}/none.sock`, 'status']);
    assert.equal(run.code, 3, 'no daemon');
    assert.match(run.stderr, /no tandemd is listening on .*none\.sock; start it with/);

    await c.tandem('bob', 'connect', r);
    await c.tandem('alice', 'primary', '--force', r);
    await waitInSync(c, 'alice');
    const ev = await cli(c, 'alice', ['events', '--now'], /^exists -$/m);
    const lines = ev.stdout.split('\n');
    const end = lines.indexOf('exists -');
    assert.ok(end > 0, `events --now ends its snapshot with "exists -":\n${ev.stdout}`);
    assert.deepEqual(
      lines.slice(0, end).map((l) => l.split(' ').slice(0, 2).join(' ')),
      [
        'exists resource',
        'exists connection',
        'exists device',
        'exists peer-device',
        'exists path',
      ],
    );
    assert.match(lines[0] ?? '', /^exists resource name:r0 up:yes role:Primary$/);
    assert.match(
      lines[1] ?? '',
      /^exists connection name:r0 peer-node-id:1 conn-name:bob connection:Connected role:Secondary$/,
    );
    assert.match(lines[2] ?? '', /^exists device name:r0 volume:0 disk:UpToDate /);
    assert.match(
      lines[3] ?? '',
      /^exists peer-device name:r0 peer-node-id:1 conn-name:bob volume:0 replication:Established peer-disk:UpToDate out-of-sync:0$/,
    );
    assert.match(
      lines[4] ?? '',
      /^exists path name:r0 peer-node-id:1 conn-name:bob .*established:yes$/,
    );
  });
});

test('SIGTERM under load: in-flight writes finish, the Primary steps down, no resync after', async () => {
  await withPair({ diskBytes: 64 * MIB }, async (c) => {
    await skipInitialSync(c, 'alice');
    const nbd = await NbdClient.connect({
      listener: { kind: 'unix', path: c.node('alice').nbdSocket },
      exportName: c.resource,
    });
    const acked = new Map<number, Buffer>();
    let failed = 0;
    const writer = async (lane: number): Promise<void> => {
      // Each lane owns its own blocks, so the last acked content of a block is well defined.
      for (let i = 0; failed === 0; i++) {
        const off = ((i * 8 + lane) % 4096) * 4096;
        const data = randomBytes(4096);
        try {
          await nbd.write(off, data);
          acked.set(off, data);
        } catch {
          failed++;
        }
      }
    };
    const load = Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(writer));
    const sentBefore = (await peerStatus(c, 'alice')).sentBytes;
    await waitUntil(
      async () => (await peerStatus(c, 'alice')).sentBytes - sentBefore >= 4 * MIB,
      'alice under load',
    );
    const proc = c.node('alice').process;
    assert.ok(proc !== null);
    const exited = new Promise<number | null>((resolve) =>
      proc.once('exit', (code) => resolve(code)),
    );
    proc.kill('SIGTERM');
    assert.equal(
      await within(30_000, 'alice exited after SIGTERM', exited),
      0,
      `tandemd exits 0 after SIGTERM:\n${c.node('alice').log}`,
    );
    await load;
    nbd.destroy();
    assert.match(c.node('alice').log, /"stopped"/);
    await waitDisconnected(c, 'bob');

    // Every acknowledged write is on bob's disk.
    for (const [off, data] of acked)
      assert.ok(
        (await readDisk(c, 'bob', off, 4096)).equals(data),
        `acked write at ${off} is on bob`,
      );

    // The restart finds clean metadata: no crash recovery, no resync, identical disks.
    await c.start('alice');
    await c.tandem('alice', 'up', c.resource);
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    // The disk opened at `up`, so a crash recovery would have been logged by now; the
    // resource's own lines (the peer handshake) show this is the restarted node's log.
    assert.match(c.node('alice').log, /"resource":"r0"/, 'the resource came up and logged');
    assert.doesNotMatch(c.node('alice').log, /activity log applied after a crash/);
    assert.equal((await peerStatus(c, 'alice')).resyncBytes, 0, 'nothing to resync');
    const size = (await status(c, 'alice')).sizeBytes;
    assert.equal(
      await fileSha(c.node('alice').diskPath, size),
      await fileSha(c.node('bob').diskPath, size),
    );
  });
});

test('down/up and detach/attach on either node resync exactly what it missed', async () => {
  await withPair({ diskBytes: 32 * MIB }, async (c) => {
    const r = c.resource;
    await skipInitialSync(c, 'alice');
    const one = randomBytes(MIB);
    await c.tandem('bob', 'down', r);
    await nbdWrite(c, 'alice', [[0, one]]);
    await c.tandem('bob', 'up', r);
    await waitInSync(c, 'bob');
    assert.equal((await peerStatus(c, 'bob')).resyncBytes, MIB);
    assert.ok((await readDisk(c, 'bob', 0, MIB)).equals(one));

    await c.tandem('bob', 'detach', r);
    assert.equal((await status(c, 'bob')).disk, 'Diskless');
    await nbdWrite(c, 'alice', [[2 * MIB, one]]);
    await c.tandem('bob', 'attach', r);
    await waitInSync(c, 'bob');
    assert.equal((await peerStatus(c, 'bob')).resyncBytes, 2 * MIB, 'counters only grow');
    assert.ok((await readDisk(c, 'bob', 2 * MIB, MIB)).equals(one));

    // A Diskless Primary writes through its peer, then catches up when its disk returns.
    await c.tandem('alice', 'detach', r);
    const two = randomBytes(MIB);
    await nbdWrite(c, 'alice', [[4 * MIB, two]]);
    await c.tandem('alice', 'attach', r);
    await waitInSync(c, 'alice');
    assert.ok((await readDisk(c, 'alice', 4 * MIB, MIB)).equals(two));
  });
});
