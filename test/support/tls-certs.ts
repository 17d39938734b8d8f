// Test certificates made by the real `openssl` CLI (as an operator would): a CA, leaf
// certificates for node names signed by it (serverAuth + clientAuth, the name as DNS SAN and
// CN), an expired one, and a second, unrelated CA. EC P-256 keys keep generation fast.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PemFiles {
  readonly certificate: string;
  readonly privkey: string;
}

export interface TestCa extends PemFiles {
  readonly name: string;
}

async function openssl(args: readonly string[]): Promise<void> {
  await run('openssl', [...args], { timeout: 30_000 });
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export class CertDir {
  private serial = 1;
  private constructor(readonly dir: string) {}

  static async create(): Promise<CertDir> {
    return new CertDir(await mkdtemp(join(tmpdir(), 'tandem-tls-')));
  }

  /** A self-signed CA certificate valid for `days`. */
  async ca(name: string, days = 30): Promise<TestCa> {
    const certificate = join(this.dir, `${name}.ca.pem`);
    const privkey = join(this.dir, `${name}.ca.key`);
    await openssl([
      'req',
      '-x509',
      ...KEY,
      '-keyout',
      privkey,
      '-out',
      certificate,
      '-days',
      String(days),
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    return { name, certificate, privkey };
  }

  /**
   * A leaf certificate for `name` (CN and DNS SAN) signed by `ca`. `expired`: its validity ended
   * before it was issued (notAfter in the past), which every verifier calls expired.
   */
  async leaf(
    ca: TestCa,
    name: string,
    o: { readonly expired?: boolean; readonly file?: string } = {},
  ): Promise<PemFiles> {
    const base = join(this.dir, o.file ?? `${name}.${ca.name}${o.expired ? '.expired' : ''}`);
    const privkey = `${base}.key`;
    const certificate = `${base}.pem`;
    const csr = `${base}.csr`;
    const ext = `${base}.ext`;
    await openssl(['req', ...KEY, '-keyout', privkey, '-out', csr, '-subj', `/CN=${name}`]);
    await writeFile(
      ext,
      [
        `subjectAltName=DNS:${name}`,
        'basicConstraints=CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth,clientAuth',
        '',
      ].join('\n'),
    );
    const sign = [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.certificate,
      '-CAkey',
      ca.privkey,
      '-set_serial',
      String(this.serial++),
      '-out',
      certificate,
      '-extfile',
      ext,
    ];
    if (!o.expired) {
      await openssl([...sign, '-days', '30']);
    } else {
      // OpenSSL 3.0..3.3 take a negative -days (notAfter before notBefore); 3.4+ has
      // -not_before/-not_after for dates in the past.
      await openssl([...sign, '-days', '-1']).catch(() =>
        openssl([...sign, '-not_before', '20200101000000Z', '-not_after', '20200102000000Z']),
      );
      // Proof it is expired, by openssl's own reading: -checkend 0 fails for an expired one.
      const stillValid = await openssl(['x509', '-in', certificate, '-noout', '-checkend', '0'])
        .then(() => true)
        .catch(() => false);
      if (stillValid) throw new Error(`openssl made ${certificate} but it is not expired`);
    }
    return { certificate, privkey };
  }

  async destroy(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
