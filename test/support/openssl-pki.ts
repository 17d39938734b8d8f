// A throwaway x509 PKI made with the real `openssl` CLI, laid out as libnbd (tls-certificates=DIR)
// and QEMU (tls-creds-x509 dir=DIR) expect: ca-cert.pem, server-cert.pem, server-key.pem,
// client-cert.pem, client-key.pem. Besides the good client it makes the two that must be refused:
// one whose certificate another CA signed, and one with no certificate at all.
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { peerEnv } from './peers.js';

export interface TestPki {
  /** The CA, the server's and a good client's files (both endpoints' layout in one dir). */
  readonly dir: string;
  /** ca-cert.pem (our CA, so the server is trusted) and a client certificate from another CA. */
  readonly rogueDir: string;
  /** ca-cert.pem only: a client that trusts the server but has no certificate. */
  readonly noCertDir: string;
  /** PEM text of the server's credentials, as NbdServer takes them. */
  serverCredentials(): Promise<{ certificate: string; privateKey: string; ca: string }>;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, env: peerEnv() }, (err, _out, stderr) => {
      if (err === null) resolve();
      else reject(new Error(`openssl ${args.join(' ')} failed: ${stderr}`));
    });
  });
}

async function makeCa(dir: string, cn: string): Promise<void> {
  await writeFile(
    join(dir, 'ca.ext'),
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      '[dn]',
      `CN = ${cn}`,
      '[v3_ca]',
      'basicConstraints = critical, CA:TRUE',
      'keyUsage = critical, keyCertSign, cRLSign',
      '',
    ].join('\n'),
  );
  await openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca-cert.pem',
      '-days',
      '2',
      '-config',
      'ca.ext',
      '-extensions',
      'v3_ca',
    ],
    dir,
  );
}

/** A leaf signed by the CA in `caDir`, written to `outDir` as `<role>-cert.pem`/`<role>-key.pem`. */
async function makeLeaf(
  caDir: string,
  outDir: string,
  role: 'server' | 'client',
  cn: string,
): Promise<void> {
  const ext = join(outDir, `${role}.ext`);
  await writeFile(
    ext,
    [
      'basicConstraints = critical, CA:FALSE',
      // What QEMU's x509 checks want of a leaf: signing and key encipherment, and the role.
      'keyUsage = critical, digitalSignature, keyEncipherment',
      `extendedKeyUsage = ${role === 'server' ? 'serverAuth' : 'clientAuth'}`,
      'subjectAltName = IP:127.0.0.1, IP:::1, DNS:localhost',
      '',
    ].join('\n'),
  );
  const key = join(outDir, `${role}-key.pem`);
  const csr = join(outDir, `${role}.csr`);
  await openssl(
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`],
    outDir,
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      join(caDir, 'ca-cert.pem'),
      '-CAkey',
      join(caDir, 'ca-key.pem'),
      '-CAcreateserial',
      '-out',
      join(outDir, `${role}-cert.pem`),
      '-days',
      '2',
      '-extfile',
      ext,
    ],
    outDir,
  );
}

/** Makes the PKI under `root` (an existing, empty temp dir). Takes about a second. */
export async function makeTestPki(root: string): Promise<TestPki> {
  const dir = join(root, 'pki');
  const rogueCa = join(root, 'rogue-ca');
  const rogueDir = join(root, 'rogue');
  const noCertDir = join(root, 'nocert');
  for (const d of [dir, rogueCa, rogueDir, noCertDir]) await mkdir(d, { recursive: true });
  await Promise.all([makeCa(dir, 'Tandem test CA'), makeCa(rogueCa, 'Some other CA')]);
  await Promise.all([
    makeLeaf(dir, dir, 'server', 'tandem-server'),
    makeLeaf(dir, dir, 'client', 'tandem-client'),
    makeLeaf(rogueCa, rogueDir, 'client', 'rogue-client'),
  ]);
  await copyFile(join(dir, 'ca-cert.pem'), join(rogueDir, 'ca-cert.pem'));
  await copyFile(join(dir, 'ca-cert.pem'), join(noCertDir, 'ca-cert.pem'));
  return {
    dir,
    rogueDir,
    noCertDir,
    serverCredentials: async () => ({
      certificate: await readFile(join(dir, 'server-cert.pem'), 'utf8'),
      privateKey: await readFile(join(dir, 'server-key.pem'), 'utf8'),
      ca: await readFile(join(dir, 'ca-cert.pem'), 'utf8'),
    }),
  };
}
