// The metadata commands end to end through the `tandem` binary: create-md from a configuration
// (refusing existing metadata and filesystems without --force), dump-md text and --json,
// show-gi, apply-al after a crash, wipe-md; explicit --disk/--meta-disk options; and our dump-md
// text accepted by drbdmeta's own parser.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { requirePeers } from '../support/peers.js';
import { drbdmeta } from '../support/drbdmeta.js';
import { openFileStore } from '../../src/storage/file.js';
import { MetadataStore } from '../../src/storage/metadata/store.js';
import { MDF } from '../../src/storage/metadata/format.js';
import { withTempDir, sparseFile } from '../support/tmp.js';

const execP = promisify(execFile);
const cli = 'dist/src/cli/main.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function tandem(...args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await execP('node', [cli, ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: x.code ?? -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

function config(disk: string, metaDisk = 'internal'): string {
  return `resource r0 {
  device /dev/drbd1;
  disk ${disk};
  meta-disk ${metaDisk};
  disk { al-extents 509; }
  on alpha { node-id 1; address 127.0.0.1:7901; }
  on beta { node-id 2; address 127.0.0.2:7901; }
  on gamma { node-id 0; address 127.0.0.3:7901; }
  connection-mesh { hosts alpha beta gamma; }
}
`;
}

test('create-md and dump-md --json from the configuration', () =>
  withTempDir('md-cli', async (dir) => {
    const disk = join(dir, 'disk.img');
    await sparseFile(disk, 64 * 1024 * 1024 + 3000);
    const conf = join(dir, 'tandem.conf');
    await writeFile(conf, config(disk));
    const c = await tandem('-c', conf, '-n', 'alpha', 'create-md', 'r0');
    assert.equal(c.code, 0, c.stderr);
    assert.match(c.stdout, /new v09 metadata created: max-peers 2, node-id 1/);
    const d = await tandem('-c', conf, '-n', 'alpha', 'dump-md', 'r0', '--json');
    assert.equal(d.code, 0, d.stderr);
    const j = JSON.parse(d.stdout) as Record<string, unknown>;
    assert.equal(j['maxPeers'], 2);
    assert.equal(j['nodeId'], 1);
    assert.equal(j['alExtents'], 509);
    assert.equal(j['currentUuid'], '0x0000000000000004');
    assert.equal(j['effectiveSizeSectors'], 0);
    assert.equal(j['mdOffsetBytes'], 64 * 1024 * 1024 - 4096);
    assert.equal(typeof j['dataSizeBytes'], 'number');
    assert.deepEqual(j['flagNames'], ['al-clean']);
    const peers = j['peers'] as { bitmapUuid: string }[];
    assert.equal(peers.length, 32);
    assert.equal(peers[0]?.bitmapUuid, '0x0000000000000000');
    // A node the configuration does not know, and a resource it does not have.
    const bad = await tandem('-c', conf, '-n', 'delta', 'dump-md', 'r0');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /no `on delta` section/);
    const none = await tandem('-c', conf, '-n', 'alpha', 'dump-md', 'r9');
    assert.match(none.stderr, /no resource named r9/);
  }));

test('create-md refuses existing metadata and filesystems without --force, and says why', () =>
  withTempDir('md-cli', async (dir) => {
    const disk = join(dir, 'disk.img');
    await sparseFile(disk, 32 * 1024 * 1024);
    // An ext4 superblock signature at 1024 (magic 0xEF53 at +56, 8192 blocks of 4 KiB).
    const h = await open(disk, 'r+');
    const sb = Buffer.alloc(1024);
    sb.writeUInt32LE(8192, 4);
    sb.writeUInt32LE(2, 24);
    sb.writeUInt16LE(0xef53, 56);
    sb.writeUInt32LE(0x40, 96);
    await h.write(sb, 0, 1024, 1024);
    await h.close();
    const args = ['create-md', 'r0', '--disk', disk, '--max-peers', '1'];
    const fs = await tandem(...args);
    assert.notEqual(fs.code, 0);
    assert.match(
      fs.stderr,
      /holds an ext4 filesystem of 33554432 bytes; internal metadata would overwrite the end/,
    );
    assert.match(fs.stderr, /--force/);
    assert.equal((await tandem(...args, '--force')).code, 0);
    const again = await tandem(...args);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already holds v09 metadata \(current UUID 0x0000000000000004/);
    assert.equal((await tandem(...args, '--force')).code, 0);
  }));

test('show-gi, apply-al after a crash, wipe-md', () =>
  withTempDir('md-cli', async (dir) => {
    const disk = join(dir, 'disk.img');
    await sparseFile(disk, 64 * 1024 * 1024);
    const store = await openFileStore(disk);
    const md = await MetadataStore.create(store, { kind: 'internal', maxPeers: 1, nodeId: 0 });
    await md.writeSuperblock({
      ...md.superblock,
      currentUuid: 0xabcdef0123456789n,
      flags: MDF.CONSISTENT | MDF.PRIMARY_IND,
      effectiveSizeSectors: md.layout.dataBytes / 512,
      peers: md.superblock.peers.map((p, i) =>
        i === 1 ? { ...p, bitmapIndex: 0, bitmapUuid: 0x42n } : p,
      ),
    });
    await md.beginWrite(5 * 4 * 1024 * 1024, 4096);
    md.endWrite(5 * 4 * 1024 * 1024, 4096);
    await store.close(); // crash: AL not clean
    const gi = await tandem('show-gi', 'r0', '--disk', disk);
    assert.equal(gi.code, 0, gi.stderr);
    assert.match(
      gi.stdout,
      /^ABCDEF0123456789:0000000000000042:0000000000000000:0000000000000000:1:0:1:0:0:0:0:0:0:0:0:0$/m,
    );
    assert.match(gi.stdout, /Data consistency flag/);
    const dirty = await tandem('dump-md', 'r0', '--disk', disk, '--json');
    assert.match(dirty.stderr, /unclean/);
    assert.equal((JSON.parse(dirty.stdout) as { alClean: boolean }).alClean, false);
    const al = await tandem('apply-al', 'r0', '--disk', disk);
    assert.equal(al.code, 0, al.stderr);
    assert.match(al.stdout, /marked 1 activity-log extents \(4096 KiB more\) out of sync/);
    const clean = JSON.parse((await tandem('dump-md', 'r0', '--disk', disk, '--json')).stdout) as {
      alClean: boolean;
      bitmaps: { outOfSyncBytes: number }[];
    };
    assert.equal(clean.alClean, true);
    assert.equal(clean.bitmaps[0]?.outOfSyncBytes, 4 * 1024 * 1024);
    assert.match((await tandem('apply-al', 'r0', '--disk', disk)).stdout, /nothing to do/);
    const w = await tandem('wipe-md', 'r0', '--disk', disk);
    assert.equal(w.code, 0, w.stderr);
    const gone = await tandem('dump-md', 'r0', '--disk', disk);
    assert.notEqual(gone.code, 0);
    assert.match(gone.stderr, /no valid v09 metadata/);
  }));

test('external metadata by explicit options, and our dump-md text passes drbdmeta verify-dump', (t: TestContext) =>
  withTempDir('md-cli', async (dir) => {
    const disk = join(dir, 'disk.img');
    const meta = join(dir, 'meta.img');
    await sparseFile(disk, 100 * 1024 * 1024);
    await sparseFile(meta, 129 * 1024 * 1024);
    const c = await tandem(
      'create-md',
      'r0',
      '--disk',
      disk,
      '--meta-disk',
      `${meta}[0]`,
      '--max-peers',
      '2',
      '--node-id',
      '3',
    );
    assert.equal(c.code, 0, c.stderr);
    const d = await tandem('dump-md', 'r0', '--disk', disk, '--meta-disk', `${meta}[0]`);
    assert.equal(d.code, 0, d.stderr);
    assert.match(d.stdout, /^node-id 3;$/m);
    assert.match(d.stdout, /^# md_offset 0$/m);
    assert.match(d.stdout, /^# al_offset 4096$/m);
    if (!requirePeers(t, 'drbd-utils', 'drbdmeta')) return;
    const file = join(dir, 'ours.dump');
    await writeFile(file, d.stdout);
    const out = await drbdmeta(meta, '0', 'verify-dump', file);
    assert.match(out, /input file parsed ok/);
  }));
