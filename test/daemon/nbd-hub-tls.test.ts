// The daemon's NBD hub with nbds:// exports: the PEM files are read per listener, exports sharing
// a listener share them (other files there are refused while a TLS export uses it), a plain
// export may join (SELECTIVETLS), an unreadable file is refused naming the option, and the files
// are read again once no TLS export is left (certificate renewal by down/up).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdClient } from '../../src/nbd/client.js';
import { NbdHub } from '../../src/daemon/nbd-hub.js';
import type { TlsFiles } from '../../src/config/index.js';
import { storeBackend } from '../../src/nbd/store-backend.js';
import type { NbdListenerSpec } from '../../src/nbd/types.js';
import { silentLogger } from '../../src/platform/log.js';
import { ConfigError } from '../../src/util/errors.js';
import { BufferStore } from '../nbd/support/buffer-store.js';
import { makeTestPki } from '../support/openssl-pki.js';
import { requirePeers } from '../support/peers.js';
import { readFile } from 'node:fs/promises';

const MIB = 1024 * 1024;

test('NBD hub: TLS files per listener, shared, refused when they differ, reloaded when unused', async (t) => {
  if (!requirePeers(t, 'openssl', 'openssl')) return;
  const root = await mkdtemp(join(tmpdir(), 'tandem-hub-tls-'));
  const hub = new NbdHub(silentLogger);
  try {
    const pki = await makeTestPki(root);
    const files: TlsFiles = {
      certificate: join(pki.dir, 'server-cert.pem'),
      privkey: join(pki.dir, 'server-key.pem'),
      ca: join(pki.dir, 'ca-cert.pem'),
    };
    const spec: NbdListenerSpec = { kind: 'unix', path: join(root, 'nbd.sock') };
    const backend = (): ReturnType<typeof storeBackend> => storeBackend(new BufferStore(MIB));
    await hub.addExport(spec, 'a', backend(), files);
    await hub.addExport(spec, 'b', backend(), files);
    await hub.addExport(spec, 'plain', backend(), null);

    // A copy of the same certificate under another name is "other files": refused.
    const other = { ...files, certificate: join(root, 'copy-cert.pem') };
    await copyFile(files.certificate, other.certificate);
    await assert.rejects(
      hub.addExport(spec, 'c', backend(), other),
      (e: unknown) => e instanceof ConfigError && /share its TLS files/.test(e.message),
    );
    await assert.rejects(
      hub.addExport({ kind: 'unix', path: join(root, 'x.sock') }, 'd', backend(), {
        ...files,
        ca: join(root, 'missing.pem'),
      }),
      (e: unknown) =>
        e instanceof ConfigError && /tls-ca .*missing\.pem: cannot read it/.test(e.message),
    );

    // SELECTIVETLS: "plain" answers in plaintext, "a" only over TLS with a client certificate.
    const plain = await NbdClient.connect({ listener: spec, exportName: 'plain' });
    await plain.disconnect();
    await assert.rejects(NbdClient.connect({ listener: spec, exportName: 'a' }), /0x80000005/);
    const pem = (f: string): Promise<string> => readFile(join(pki.dir, f), 'utf8');
    const tls = {
      ca: await pem('ca-cert.pem'),
      certificate: await pem('client-cert.pem'),
      privateKey: await pem('client-key.pem'),
    };
    const c = await NbdClient.connect({ listener: spec, exportName: 'a', tls });
    await c.write(0, Buffer.alloc(4096, 7));
    assert.ok((await c.read(0, 4096)).equals(Buffer.alloc(4096, 7)));
    await c.disconnect();

    // No TLS export left on the listener: other files are taken (read again), as after down/up.
    hub.removeExport(spec, 'a');
    hub.removeExport(spec, 'b');
    await hub.addExport(spec, 'c', backend(), other);
    const again = await NbdClient.connect({ listener: spec, exportName: 'c', tls });
    await again.disconnect();
  } finally {
    await hub.close();
    await rm(root, { recursive: true, force: true });
  }
});
