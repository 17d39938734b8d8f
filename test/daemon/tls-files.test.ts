// Loading a node's TLS identity from drbd.conf's PEM files: a good set loads; an unreadable file,
// a file without PEM, a broken certificate, a key of another certificate, and an empty CA file
// each fail with a ConfigError naming the option and the file; an expired certificate loads
// with a warning (its peers refuse it, which the transport tests show).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadTlsCredentials } from '../../src/daemon/tls-files.js';
import { ConfigError } from '../../src/util/errors.js';
import { havePeer } from '../support/peers.js';
import { CertDir } from '../support/tls-certs.js';

test('tls-files: good files load; each bad one is named with what is wrong', async () => {
  if (!havePeer('openssl')) throw new Error('missing openssl: apt-get install openssl');
  const dir = await CertDir.create();
  try {
    const ca = await dir.ca('ca');
    const alice = await dir.leaf(ca, 'alice');
    const bob = await dir.leaf(ca, 'bob');
    const old = await dir.leaf(ca, 'alice', { expired: true });
    const good = { certificate: alice.certificate, privkey: alice.privkey, ca: ca.certificate };
    const loaded = loadTlsCredentials(good);
    assert.deepEqual(loaded.warnings, []);
    assert.equal(loaded.credentials.label, alice.certificate);
    assert.ok(loaded.credentials.context);

    const fails = (files: typeof good, re: RegExp): void => {
      assert.throws(
        () => loadTlsCredentials(files),
        (e: unknown) => e instanceof ConfigError && re.test(e.message),
      );
    };
    const nothing = join(dir.dir, 'nothing.pem');
    fails({ ...good, privkey: nothing }, new RegExp(`^tls-privkey ${nothing}: cannot read it`));
    fails({ ...good, ca: nothing }, new RegExp(`^tls-ca ${nothing}: cannot read it`));
    const text = join(dir.dir, 'text.pem');
    writeFileSync(text, 'not a certificate\n');
    fails({ ...good, certificate: text }, /^tls-certificate .*text\.pem: no PEM certificate in it/);
    fails({ ...good, ca: text }, /^tls-ca .*text\.pem: no PEM certificate in it/);
    fails({ ...good, privkey: text }, /^tls-privkey .*text\.pem: not a PEM private key/);
    const broken = join(dir.dir, 'broken.pem');
    const pem = readFileSync(alice.certificate, 'utf8').split('\n');
    pem.splice(2, 1, 'AAAA' + (pem[2] ?? '').slice(4).split('').reverse().join(''));
    writeFileSync(broken, pem.join('\n'));
    fails(
      { ...good, certificate: broken },
      /^tls-certificate .*broken\.pem: certificate 1 is not valid/,
    );
    fails(
      { ...good, privkey: bob.privkey },
      new RegExp(
        `^tls-privkey ${bob.privkey} is not the key of tls-certificate ${alice.certificate}`,
      ),
    );
    const expired = loadTlsCredentials({
      ...good,
      certificate: old.certificate,
      privkey: old.privkey,
    });
    assert.equal(expired.warnings.length, 1);
    assert.match(expired.warnings[0] ?? '', /expired on .*: peers will refuse it/);
  } finally {
    await dir.destroy();
  }
});
