// Loads a node's TLS identity from the PEM files drbd.conf names (`tls-certificate`,
// `tls-privkey`, `tls-ca`) and checks it before any peer sees it: each file readable and valid,
// the key matching the certificate. Every failure is a ConfigError naming the option and file,
// so `tandemd`, `up` and `adjust` fail with a line the operator can act on.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { TlsFiles } from '../config/index.js';
import type { TlsCredentials } from '../transport/types.js';
import { ConfigError } from '../util/errors.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

export interface LoadedTls {
  readonly credentials: TlsCredentials;
  /** Worth a log line, not a failure: e.g. this node's certificate has expired (peers will refuse it). */
  readonly warnings: readonly string[];
}

function readPem(option: string, path: string, read: (p: string) => Buffer): Buffer {
  try {
    return read(path);
  } catch (e) {
    throw new ConfigError(`${option} ${path}: cannot read it: ${(e as Error).message}`);
  }
}

function certificates(option: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERT) ?? [];
  if (blocks.length === 0)
    throw new ConfigError(`${option} ${path}: no PEM certificate in it (BEGIN CERTIFICATE)`);
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new ConfigError(
        `${option} ${path}: certificate ${i + 1} is not valid: ${(e as Error).message}`,
      );
    }
  });
}

/** Reads and checks the three files; `read` is for tests (default: the file system). */
export function loadTlsCredentials(
  files: TlsFiles,
  read: (path: string) => Buffer = (p) => readFileSync(p),
  nowMs: number = new Date().getTime(),
): LoadedTls {
  const certPem = readPem('tls-certificate', files.certificate, read);
  const keyPem = readPem('tls-privkey', files.privkey, read);
  const caPem = readPem('tls-ca', files.ca, read);
  const [leaf] = certificates('tls-certificate', files.certificate, certPem);
  certificates('tls-ca', files.ca, caPem);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new ConfigError(
      `tls-privkey ${files.privkey}: not a PEM private key (unencrypted): ${(e as Error).message}`,
    );
  }
  if (leaf === undefined || !leaf.checkPrivateKey(key)) {
    throw new ConfigError(
      `tls-privkey ${files.privkey} is not the key of tls-certificate ${files.certificate}`,
    );
  }
  let context;
  try {
    context = createSecureContext({ cert: certPem, key: keyPem, ca: caPem });
  } catch (e) {
    throw new ConfigError(
      `tls-certificate ${files.certificate}, tls-privkey ${files.privkey}, tls-ca ${files.ca}: ${(e as Error).message}`,
    );
  }
  const warnings: string[] = [];
  if (Date.parse(leaf.validTo) < nowMs)
    warnings.push(
      `tls-certificate ${files.certificate} expired on ${leaf.validTo}: peers will refuse it`,
    );
  if (Date.parse(leaf.validFrom) > nowMs)
    warnings.push(
      `tls-certificate ${files.certificate} is valid only from ${leaf.validFrom}: peers will refuse it`,
    );
  return {
    credentials: { certPem, keyPem, caPem, context, label: files.certificate },
    warnings,
  };
}

/** The key a loaded identity is cached under: the three paths. */
export function tlsFilesKey(f: TlsFiles): string {
  return `${f.certificate}\u0000${f.privkey}\u0000${f.ca}`;
}
