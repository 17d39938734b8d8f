// Real NBD clients against a Tandem export on loopback: nbdinfo, qemu-io, qemu-img, nbdcopy
// and fio. Each checks data or flags end to end, so a server that merely handshakes fails.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatNbdUri } from '../../src/nbd/uri.js';
import { requirePeers } from '../support/peers.js';
import { startHarness, type Harness } from './support/harness.js';
import { run, runOk } from './support/exec.js';
import { fioRandWriteArgs } from '../support/fio.js';

const MIB = 1024 * 1024;
let h: Harness;
let tcpUri: (name: string) => string;
let unixUri: (name: string) => string;

before(async () => {
  h = await startHarness([
    { name: 'r0', sizeBytes: 64 * MIB, opts: { description: 'interop export' } },
    { name: 'ro', sizeBytes: 1 * MIB, opts: { readOnly: true } },
    { name: 'big', sizeBytes: 256 * MIB, file: true },
    { name: 'fio', sizeBytes: 64 * MIB },
  ]);
  tcpUri = (n) => formatNbdUri({ kind: 'tcp', host: '127.0.0.1', port: h.tcp.port }, n);
  unixUri = (n) => formatNbdUri({ kind: 'unix', path: h.unix.address }, n);
});
after(async () => {
  await h.stop();
});

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('nbdinfo', () => {
  test('--list shows every export', async (t) => {
    if (!requirePeers(t, 'libnbd-bin', 'nbdinfo')) return;
    const out = await runOk('nbdinfo', ['--list', '--json', tcpUri('')]);
    const j = JSON.parse(out) as {
      exports: { 'export-name': string; 'export-size': number; description?: string }[];
    };
    const byName = new Map(j.exports.map((e) => [e['export-name'], e]));
    assert.deepEqual([...byName.keys()].sort(), ['big', 'fio', 'r0', 'ro']);
    assert.equal(byName.get('r0')?.['export-size'], 64 * MIB);
    assert.equal(byName.get('r0')?.description, 'interop export');
  });

  test('size and --can for every flag', async (t) => {
    if (!requirePeers(t, 'libnbd-bin', 'nbdinfo')) return;
    assert.equal((await runOk('nbdinfo', ['--size', unixUri('r0')])).trim(), String(64 * MIB));
    for (const can of [
      'connect',
      'read',
      'write',
      'flush',
      'fua',
      'trim',
      'zero',
      'fast-zero',
      'multi-conn',
      'cache',
      'df',
      'structured-reply',
    ]) {
      const r = await run('nbdinfo', ['--can', can, unixUri('r0')]);
      assert.equal(r.code, 0, `r0 can ${can}: ${r.stderr}`);
    }
    assert.equal((await run('nbdinfo', ['--is', 'read-only', unixUri('r0')])).code, 2);
    assert.equal((await run('nbdinfo', ['--is', 'read-only', unixUri('ro')])).code, 0);
    for (const cannot of ['write', 'trim', 'zero', 'fua']) {
      assert.equal(
        (await run('nbdinfo', ['--can', cannot, unixUri('ro')])).code,
        2,
        `ro cannot ${cannot}`,
      );
    }
    const full = await runOk('nbdinfo', ['--json', unixUri('r0')]);
    const j = JSON.parse(full) as {
      exports: { block_size_minimum: number; block_size_maximum: number; contexts: string[] }[];
      protocol: string;
    };
    assert.equal(j.exports[0]?.block_size_minimum, 512);
    assert.equal(j.exports[0]?.block_size_maximum, 32 * MIB);
    assert.deepEqual(j.exports[0]?.contexts, ['base:allocation']);
    assert.equal(j.protocol, 'newstyle-fixed');
  });

  test('--map shows written data and holes', async (t) => {
    if (!requirePeers(t, 'libnbd-bin', 'nbdinfo')) return;
    await h.stores.get('r0')?.write(1 * MIB, Buffer.alloc(MIB, 1));
    const out = await runOk('nbdinfo', ['--map', '--json', unixUri('r0')]);
    const m = JSON.parse(out) as { offset: number; length: number; type: number }[];
    const at = (off: number): number | undefined =>
      m.find((e) => e.offset <= off && off < e.offset + e.length)?.type;
    assert.equal(at(1 * MIB), 0, 'written range is data');
    assert.equal(at(0), 3, 'untouched range is a zero hole');
    assert.equal(
      m.reduce((n, e) => n + e.length, 0),
      64 * MIB,
    );
  });
});

describe('qemu', () => {
  test('qemu-io writes patterns, reads them back verified, discards and zeroes', async (t) => {
    if (!requirePeers(t, 'qemu-utils', 'qemu-io')) return;
    const out = await runOk('qemu-io', [
      '-f',
      'raw',
      '-t',
      'writeback',
      tcpUri('r0'),
      '-c',
      'write -P 0xab 0 1M',
      '-c',
      'write -f -P 0xcd 1M 64k',
      '-c',
      'read -P 0xab 0 1M',
      '-c',
      'read -P 0xcd 1M 64k',
      '-c',
      'discard 0 64k',
      '-c',
      'write -z 64k 64k',
      '-c',
      'read -P 0 64k 64k',
      '-c',
      'flush',
    ]);
    assert.doesNotMatch(out, /fail|error/i);
    const d = h.stores.get('r0')?.data;
    assert.ok(d);
    assert.ok(d.subarray(65536, 131072).every((b) => b === 0));
    assert.ok(d.subarray(131072, MIB).every((b) => b === 0xab));
    assert.ok(d.subarray(MIB, MIB + 65536).every((b) => b === 0xcd));
    const bad = await run('qemu-io', ['-f', 'raw', tcpUri('r0'), '-c', 'read -P 0x11 0 64k']);
    assert.match(bad.stdout + bad.stderr, /Pattern verification failed/);
  });

  test('qemu-img compare between an export and a local image', async (t) => {
    if (!requirePeers(t, 'qemu-utils', 'qemu-img')) return;
    const img = join(h.dir, 'local.img');
    await writeFile(img, randomBytes(4 * MIB));
    await runOk('qemu-img', ['resize', '-f', 'raw', img, `${64 * MIB}`]);
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', img, unixUri('r0')]);
    await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img, unixUri('r0')]);
    h.stores.get('r0')?.data.writeUInt8(0x5a ^ (h.stores.get('r0')?.data[3 * MIB] ?? 0), 3 * MIB);
    const r = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', img, unixUri('r0')]);
    assert.equal(r.code, 1, `compare notices the difference: ${r.stdout}`);
  });
});

describe('nbdcopy and fio', () => {
  test('nbdcopy copies 256 MiB in with multi-conn and out again, checksums equal', async (t) => {
    if (!requirePeers(t, 'libnbd-bin', 'nbdcopy')) return;
    const src = join(h.dir, 'src.bin');
    const dst = join(h.dir, 'dst.bin');
    const data = randomBytes(256 * MIB);
    await writeFile(src, data);
    const connectsBefore = h.events.filter(
      (e) => e.type === 'export' && e.exportName === 'big',
    ).length;
    await runOk(
      'nbdcopy',
      ['--connections=4', '--threads=4', '--flush', src, unixUri('big')],
      120_000,
    );
    const conns =
      h.events.filter((e) => e.type === 'export' && e.exportName === 'big').length - connectsBefore;
    assert.ok(conns >= 2, `nbdcopy used ${conns} connections (multi-conn)`);
    assert.equal(sha(await readFile(h.files.get('big') ?? '')), sha(data));
    await runOk('nbdcopy', ['--connections=4', '--threads=4', tcpUri('big'), dst], 120_000);
    assert.equal(sha(await readFile(dst)), sha(data));
  });

  test('fio --ioengine=nbd random writes and reads verified with crc32c', async (t) => {
    if (!requirePeers(t, 'fio', 'fio')) return;
    const out = await runOk(
      'fio',
      [
        ...fioRandWriteArgs({
          name: 'randwrite-verify',
          uri: unixUri('fio'),
          size: '32m',
          iodepth: 16,
        }),
        '--do_verify=1',
        '--verify_fatal=1',
        '--randrepeat=0',
        '--output-format=json',
      ],
      120_000,
    );
    const j = JSON.parse(out.slice(out.indexOf('{'))) as {
      jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[];
    };
    const job = j.jobs[0];
    assert.ok(job);
    assert.equal(job.error, 0);
    assert.equal(job.write.io_bytes, 32 * MIB);
    assert.equal(job.read.io_bytes, 32 * MIB, 'every block read back and verified');
  });
});
