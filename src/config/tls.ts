// TLS settings of a net { } section, typed: `tls yes|no` and the three PEM files. Replication
// (the tcp transport) and NBD exports both read a node's identity from here. Tandem takes file
// paths where DRBD 9.2 takes kernel keyring serials; the rules are checked by the interpreter
// (`tlsProblems`), so a loaded configuration with tls yes always names all three files.
import type { OptionMap } from './types.js';

/** The net { } options naming the PEM files, in the order errors name them. */
export const TLS_FILE_OPTIONS = ['tls-certificate', 'tls-privkey', 'tls-ca'] as const;
export type TlsFileOption = (typeof TLS_FILE_OPTIONS)[number];

/** PEM files of a node's TLS identity (absolute paths, as written in the configuration). */
export interface TlsFiles {
  /** `tls-certificate`: this node's certificate, optionally followed by intermediate CAs. */
  readonly certificate: string;
  /** `tls-privkey`: the private key of `certificate`. */
  readonly privkey: string;
  /** `tls-ca`: the CA certificate(s) a peer's certificate must chain to. */
  readonly ca: string;
}

/** Whether a net section turns TLS on (`tls yes;`; the default is no). */
export function tlsEnabled(net: OptionMap): boolean {
  return net['tls'] === true;
}

/** The PEM files of a net section with `tls yes`, else null. Expects a validated section. */
export function tlsFilesOf(net: OptionMap): TlsFiles | null {
  if (!tlsEnabled(net)) return null;
  const file = (o: TlsFileOption): string => {
    const v = net[o];
    return typeof v === 'string' ? v : '';
  };
  return { certificate: file('tls-certificate'), privkey: file('tls-privkey'), ca: file('tls-ca') };
}

/**
 * What is wrong with a net section's TLS options on their own: with `tls yes`, each file option
 * missing or not an absolute path (the daemon's working directory is not the file's).
 */
export function tlsProblems(net: OptionMap): string[] {
  const out: string[] = [];
  for (const o of TLS_FILE_OPTIONS) {
    const v = net[o];
    if (typeof v === 'string' && v !== '' && !v.startsWith('/'))
      out.push(`${o} "${v}" must be an absolute path`);
    else if (tlsEnabled(net) && (typeof v !== 'string' || v === ''))
      out.push(`tls yes needs ${o} (a PEM file)`);
  }
  return out;
}

/** One key for "same TLS settings": listeners shared by connections must agree on it. */
export function tlsKey(net: OptionMap): string {
  const f = tlsFilesOf(net);
  return f === null ? 'no' : `yes ${f.certificate}\u0000${f.privkey}\u0000${f.ca}`;
}
