// Parses NBD device URIs as libnbd and QEMU write them: `nbd://HOST[:PORT]/NAME` and
// `nbd+unix:///NAME?socket=PATH`. Returns a result; never throws on bad input.
import type { Result } from '../util/result.js';
import type { NbdUri } from './types.js';

/** The IANA NBD port, used when a URI names none (we never listen on it in tests). */
export const NBD_DEFAULT_PORT = 10809;

export function parseNbdUri(text: string): Result<NbdUri, string> {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return { ok: false, error: `"${text}" is not a URI (expected nbd://HOST:PORT/NAME)` };
  }
  let exportName: string;
  try {
    exportName = decodeURIComponent(u.pathname.replace(/^\//, ''));
  } catch {
    return { ok: false, error: `"${text}": the export name is not valid percent-encoding` };
  }
  if (u.protocol === 'nbd:') {
    if (u.search !== '' || u.hash !== '') {
      return { ok: false, error: `"${text}": nbd:// takes no query or fragment` };
    }
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
    const port = u.port === '' ? NBD_DEFAULT_PORT : Number(u.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      return { ok: false, error: `"${text}": port must be 0..65535` };
    }
    return { ok: true, value: { listener: { kind: 'tcp', host, port }, exportName } };
  }
  if (u.protocol === 'nbd+unix:') {
    if (u.host !== '')
      return { ok: false, error: `"${text}": nbd+unix:// takes no host (use ///NAME)` };
    const keys = [...u.searchParams.keys()];
    const path = u.searchParams.get('socket');
    if (path === null || path === '' || keys.some((k) => k !== 'socket')) {
      return { ok: false, error: `"${text}": nbd+unix needs exactly ?socket=PATH` };
    }
    return { ok: true, value: { listener: { kind: 'unix', path }, exportName } };
  }
  return { ok: false, error: `"${text}": scheme must be nbd:// or nbd+unix://` };
}

/** The URI a client uses to reach `exportName` on a bound listener. */
export function formatNbdUri(
  listener: { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string },
  exportName: string,
): string {
  const name = encodeURIComponent(exportName);
  if (listener.kind === 'unix') return `nbd+unix:///${name}?socket=${encodePath(listener.path)}`;
  const host = listener.host.includes(':') ? `[${listener.host}]` : listener.host;
  return `nbd://${host}:${listener.port}/${name}`;
}

/** Percent-encodes what a query value cannot hold, keeping "/" readable for libnbd and QEMU. */
function encodePath(p: string): string {
  return p.replace(/[^A-Za-z0-9/._~-]/g, (c) =>
    [...Buffer.from(c, 'utf8')]
      .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
      .join(''),
  );
}
