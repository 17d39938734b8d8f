// NBD device URIs (`nbd[s]://HOST[:PORT]/NAME`, `nbd[s]+unix:///NAME?socket=PATH`): parsing is the
// config layer's (one grammar for drbd.conf and the CLI); this maps its DeviceSpec onto a
// listener, and formats URIs back for clients (nbdinfo, qemu, nbdfuse).
import { parseNbdUri as parseDeviceUri } from '../config/interpret.js';
import type { DeviceSpec } from '../config/types.js';
import type { Result } from '../util/result.js';
import type { NbdListenerSpec, NbdUri } from './types.js';

/** The listener and export name a `device` entry asks for; undefined for /dev/drbdN forms. */
export function nbdUriFromDevice(d: DeviceSpec): NbdUri | undefined {
  switch (d.kind) {
    case 'nbd-tcp':
      return {
        listener: { kind: 'tcp', host: d.host, port: d.port },
        exportName: d.exportName,
        tls: d.tls,
      };
    case 'nbd-unix':
      return {
        listener: { kind: 'unix', path: d.socketPath },
        exportName: d.exportName,
        tls: d.tls,
      };
    case 'drbd':
      return undefined;
    default: {
      const never: never = d;
      return never;
    }
  }
}

/** Parses a device URI into a listener spec and export name; never throws. */
export function parseNbdUri(text: string): Result<NbdUri, string> {
  const r = parseDeviceUri(text);
  if (!r.ok) return { ok: false, error: `${r.error} (expected ${r.expected})` };
  const u = nbdUriFromDevice(r.device);
  return u === undefined
    ? { ok: false, error: `"${text}" is not an NBD URI` }
    : { ok: true, value: u };
}

/** The URI a client uses to reach `exportName` on a bound listener (`nbds` when TLS is required). */
export function formatNbdUri(listener: NbdListenerSpec, exportName: string, tls = false): string {
  const name = encodeURIComponent(exportName);
  const scheme = tls ? 'nbds' : 'nbd';
  if (listener.kind === 'unix')
    return `${scheme}+unix:///${name}?socket=${encodePath(listener.path)}`;
  const host = listener.host.includes(':') ? `[${listener.host}]` : listener.host;
  return `${scheme}://${host}:${listener.port}/${name}`;
}

/** Percent-encodes what a query value cannot hold, keeping "/" readable for libnbd and QEMU. */
function encodePath(p: string): string {
  return p.replace(/[^A-Za-z0-9/._~-]/g, (c) =>
    [...Buffer.from(c, 'utf8')]
      .map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`)
      .join(''),
  );
}
