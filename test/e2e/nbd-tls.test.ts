// A replicated resource exported over NBD with TLS: two real tandemd nodes whose `device` is
// `nbds://127.0.0.1:PORT/r0` and whose net { } names the PEM files. nbdcopy writes a pattern into
// the Primary over TLS (client certificate checked); after `down` of the Primary, the promoted
// peer reads it back over TLS. A plaintext client and a certificate from another CA get nothing;
// an nbds:// device without the files is refused naming what is missing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalCluster, freePort } from '../../src/cli/local-cluster.js';
import { loadConfig } from '../../src/config/index.js';
import { planResource } from '../../src/daemon/resource-config.js';
import { makeTestPki } from '../support/openssl-pki.js';
import { requirePeers } from '../support/peers.js';
import { run, runOk } from '../nbd/support/exec.js';
import {
  MIB,
  fileSha,
  skipInitialSync,
  status,
  waitDisconnected,
  waitRole,
  withPair,
} from './support.js';

const WRITE_BYTES = 16 * MIB;

test('nbds:// device: a pair serves its export only over TLS, end to end', async (t) => {
  if (
    !requirePeers(t, 'openssl', 'openssl') ||
    !requirePeers(t, 'libnbd-bin', 'nbdcopy', 'nbdinfo')
  )
    return;
  const root = await mkdtemp(join(tmpdir(), 'tandem-e2e-nbd-tls-'));
  try {
    const pki = await makeTestPki(root);
    const ports = new Map([
      ['alice', await freePort()],
      ['bob', await freePort()],
    ]);
    const net = [
      `    tls-certificate ${join(pki.dir, 'server-cert.pem')};`,
      `    tls-privkey ${join(pki.dir, 'server-key.pem')};`,
      `    tls-ca ${join(pki.dir, 'ca-cert.pem')};`,
    ].join('\n');
    const device = (n: string): string => `nbds://127.0.0.1:${ports.get(n)}/r0`;
    const uri = (n: string, dir = pki.dir): string => `${device(n)}?tls-certificates=${dir}`;
    await withPair({ diskBytes: WRITE_BYTES + 8 * MIB, net, device }, async (c) => {
      await skipInitialSync(c, 'alice');
      assert.equal((await status(c, 'alice')).device, device('alice'), 'status shows nbds://');

      const src = join(c.dir, 'src.img');
      await writeFile(src, randomBytes(WRITE_BYTES));
      const want = await fileSha(src, WRITE_BYTES);
      await runOk('nbdcopy', ['--flush', src, uri('alice')], 120_000);

      const plain = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${ports.get('alice')}/r0`]);
      assert.notEqual(plain.code, 0, 'a plaintext client is refused');
      const rogue = await run('nbdinfo', ['--size', uri('alice', pki.rogueDir)]);
      assert.notEqual(rogue.code, 0, 'a certificate from another CA is refused');
      assert.doesNotMatch(plain.stdout + rogue.stdout, /^\d+$/m, 'neither learnt the size');

      await c.tandem('alice', 'down', c.resource);
      await waitDisconnected(c, 'bob');
      await c.tandem('bob', 'primary', c.resource);
      await waitRole(c, 'bob', 'Primary');
      const back = join(c.dir, 'back.img');
      await runOk('nbdcopy', [uri('bob'), back], 120_000);
      assert.equal(await fileSha(back, WRITE_BYTES), want, "bob's export reads what alice wrote");
      assert.equal(await fileSha(c.node('bob').diskPath, WRITE_BYTES), want);
    });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('nbds:// with an unreadable tls-ca: `up` fails naming it, before the disk; then comes up', async (t) => {
  if (!requirePeers(t, 'openssl', 'openssl') || !requirePeers(t, 'libnbd-bin', 'nbdinfo')) return;
  const root = await mkdtemp(join(tmpdir(), 'tandem-e2e-nbd-tls-'));
  let c: LocalCluster | undefined;
  try {
    const pki = await makeTestPki(root);
    const ca = join(root, 'later-ca.pem');
    const port = await freePort();
    c = await LocalCluster.create({
      nodes: ['alice'],
      diskBytes: 8 * MIB,
      net: [
        `    tls-certificate ${join(pki.dir, 'server-cert.pem')};`,
        `    tls-privkey ${join(pki.dir, 'server-key.pem')};`,
        `    tls-ca ${ca};`,
      ].join('\n'),
      device: () => `nbds://127.0.0.1:${port}/r0`,
    });
    await c.tandem('alice', 'create-md', c.resource);
    await c.start('alice');
    await assert.rejects(
      c.tandem('alice', 'up', c.resource),
      /tls-ca .*later-ca\.pem: cannot read it/,
    );
    assert.equal((await status(c, 'alice')).disk, 'Diskless', 'the disk was not attached');
    await copyFile(join(pki.dir, 'ca-cert.pem'), ca);
    await c.tandem('alice', 'up', c.resource);
    await c.tandem('alice', 'primary', '--force', c.resource);
    const size = await runOk('nbdinfo', [
      '--size',
      `nbds://127.0.0.1:${port}/r0?tls-certificates=${pki.dir}`,
    ]);
    assert.ok(Number(size) > 0, size);
  } finally {
    await c?.destroy();
    await rm(root, { recursive: true, force: true });
  }
});

test('an nbds:// device without tls-ca is refused, naming what is missing', async () => {
  const root = await mkdtemp(join(tmpdir(), 'tandem-e2e-nbd-tls-'));
  try {
    const conf = join(root, 'tandem.conf');
    await writeFile(
      conf,
      [
        'resource r0 {',
        '  net { tls-certificate /etc/tandem/node.pem; tls-privkey /etc/tandem/node.key; }',
        '  on alice { node-id 0; address 127.0.0.1:7000; device "nbds://127.0.0.1:10900/r0";',
        '    disk /dev/loop0; meta-disk internal; }',
        '  on bob { node-id 1; address 127.0.0.1:7001; device "nbds://127.0.0.1:10901/r0";',
        '    disk /dev/loop1; meta-disk internal; }',
        '}',
        '',
      ].join('\n'),
    );
    // Refused when the file is read, located at the host, naming what is missing.
    await assert.rejects(
      loadConfig(conf),
      /on alice: device "nbds:\/\/127\.0\.0\.1:10900\/r0" is NBD over TLS and needs tls-ca in net/,
    );
    // planResource says the same for a model built some other way (tls-ca dropped).
    await writeFile(
      conf,
      (await readFile(conf, 'utf8')).replace('tls-privkey', 'tls-ca /ca.pem; tls-privkey'),
    );
    const { config } = await loadConfig(conf);
    const r0 = config.resources[0];
    assert.ok(r0 !== undefined);
    const net = { ...r0.sections.net };
    delete net['tls-ca'];
    assert.throws(
      () => planResource({ ...r0, sections: { ...r0.sections, net } }, 'alice'),
      /r0: device "nbds:\/\/127\.0\.0\.1:10900\/r0" is NBD over TLS and needs tls-ca in net/,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
