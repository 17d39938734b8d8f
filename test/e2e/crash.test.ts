// SIGKILL of the Primary in the middle of a fio write load: every write fio saw acknowledged is
// on the promoted Secondary, checked with fio's own verify format (magic, offset, header and
// data CRC-32C of each block), and the old Primary restarts, resyncs only what its activity log
// could not vouch for, and rejoins as Secondary. Pins: an acknowledgement before the peer has the
// data, and a crashed Primary that comes back with stale blocks or a full resync.
//
// Why not `fio --verify_state_load`: with the nbd engine, the writes in flight when the server
// dies fail, yet fio's saved state still counts some of them, so its replay expects blocks no
// client was ever told were written (seen here: zero blocks absent from fio's own completion
// log). The completion log (--write_lat_log --log_offset) is exactly the acknowledged set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient } from '../../src/nbd/client.js';
import { crc32c } from '../../src/storage/metadata/crc32c.js';
import { peerEnv, requirePeers } from '../support/peers.js';
import {
  MIB,
  fileSha,
  peerStatus,
  skipInitialSync,
  status,
  waitDisconnected,
  waitInSync,
  waitRole,
  waitUntil,
  withPair,
} from './support.js';
import { fioRandWriteArgs } from '../support/fio.js';

/** The device is larger than fio's region so the AL-bounded resync is visibly partial. */
const DISK_BYTES = 1024 * MIB;
const FIO_REGION = 512 * MIB;
const BLOCK = 4096;
/** DRBD's minimum: the AL covers 67 x 4 MiB, about half of fio's region, so it visibly bounds
 * the crashed Primary's resync (and fio's random writes keep evicting extents). */
const AL_EXTENTS = 67;
/** Kill the Primary once this much has been replicated: mid-load, whatever the machine speed. */
const KILL_AFTER_BYTES = 16 * MIB;

interface FioRun {
  readonly code: number | null;
  readonly output: string;
}

/** fio's random-write job with crc32c verify headers, write phase only. */
function fioWrite(cwd: string, uri: string): Promise<FioRun> {
  const args = [
    ...fioRandWriteArgs({ uri, size: FIO_REGION, iodepth: 16 }),
    '--do_verify=0',
    // One line per completed write, with its offset: the acknowledged set.
    '--write_lat_log=acked',
    '--log_offset=1',
  ];
  const p = spawn('fio', args, { cwd, env: peerEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  p.stdout.on('data', (c: Buffer) => (output += c.toString()));
  p.stderr.on('data', (c: Buffer) => (output += c.toString()));
  return new Promise((resolve) => p.on('close', (code) => resolve({ code, output })));
}

/** Offsets of the writes fio completed successfully, from its completion-latency log. */
async function ackedOffsets(dir: string): Promise<number[]> {
  const text = await readFile(join(dir, 'acked_clat.1.log'), 'utf8');
  const out: number[] = [];
  for (const line of text.split('\n')) {
    // time, latency, direction (1 = write), block size, offset[, priority]
    const f = line.split(',').map((x) => x.trim());
    if (f.length < 5 || f[2] !== '1') continue;
    out.push(Number(f[4]));
  }
  return out;
}

/** fio's crc32c verify of one block: why it fails, or null when it passes. */
function fioVerify(b: Buffer, offset: number): string | null {
  if (b.readUInt16LE(0) !== 0xacca) return `bad magic ${b.readUInt16LE(0).toString(16)}`;
  if (b.readUInt32LE(4) !== BLOCK) return `bad length ${b.readUInt32LE(4)}`;
  if (Number(b.readBigUInt64LE(16)) !== offset) return `written for ${b.readBigUInt64LE(16)}`;
  if (crc32c(0xffffffff, b.subarray(0, 36)) !== b.readUInt32LE(36)) return 'bad header crc';
  if (crc32c(0xffffffff, b.subarray(44)) !== b.readUInt32LE(40)) return 'bad data crc';
  return null;
}

test('SIGKILL of the Primary under fio loses no acknowledged write; it rejoins via the AL', async (t) => {
  if (!requirePeers(t, 'fio', 'fio')) return;
  await withPair({ diskBytes: DISK_BYTES, disk: `    al-extents ${AL_EXTENTS};` }, async (c) => {
    await skipInitialSync(c, 'alice');
    const sentBefore = (await peerStatus(c, 'alice')).sentBytes;

    const load = fioWrite(c.dir, c.node('alice').nbdUri);
    await waitUntil(
      async () => (await peerStatus(c, 'alice')).sentBytes - sentBefore >= KILL_AFTER_BYTES,
      `alice replicated ${KILL_AFTER_BYTES} bytes`,
    );
    await c.stop('alice', 'SIGKILL');
    const w = await load;
    assert.notEqual(w.code, 0, `fio was cut off mid-load:\n${w.output}`);
    const acked = await ackedOffsets(c.dir);
    assert.ok(acked.length * BLOCK >= KILL_AFTER_BYTES / 2, `fio saw ${acked.length} writes acked`);

    await waitDisconnected(c, 'bob');
    await c.tandem('bob', 'primary', c.resource);
    await waitRole(c, 'bob', 'Primary');

    // Every acknowledged block, read through the new Primary's export, passes fio's verify.
    const nbd = await NbdClient.connect({
      listener: { kind: 'unix', path: c.node('bob').nbdSocket },
      exportName: c.resource,
    });
    const failures: string[] = [];
    for (const off of acked) {
      const why = fioVerify(await nbd.read(off, BLOCK), off);
      if (why !== null) failures.push(`${off}: ${why}`);
    }
    await nbd.disconnect();
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} acknowledged writes lost`);

    // The old Primary comes back: its activity log marks the extents it may have written
    // without the peer; it resyncs those from bob and becomes a Secondary in sync.
    await c.start('alice');
    await c.tandem('alice', 'up', c.resource);
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    const a = await status(c, 'alice');
    assert.equal(a.role, 'Secondary');
    const moved = (await peerStatus(c, 'alice')).resyncBytes;
    t.diagnostic(
      `${acked.length} writes acked before the kill; the rejoin resynced ${moved} bytes of ${a.sizeBytes}`,
    );
    assert.ok(moved > 0, 'the crashed Primary resynced something');
    assert.ok(
      moved <= AL_EXTENTS * 4 * MIB,
      `the resync is bounded by the activity log (${moved} bytes; fio wrote across ${FIO_REGION})`,
    );
    assert.equal(
      await fileSha(c.node('alice').diskPath, a.sizeBytes),
      await fileSha(c.node('bob').diskPath, a.sizeBytes),
      'both data regions are byte-identical after the rejoin',
    );
  });
});
