// The normalized configuration written back: drbd.conf syntax (what `tandem dump` prints) and
// JSON. The text form re-parses to the same model, and for DRBD-only options `drbdadm dump` of it
// reads as the same configuration as `drbdadm dump` of the original.
import { formatAddress } from './interpret.js';
import { optionSchema, SECTION_NAMES } from './options.js';
import type {
  Address,
  ConnectionConfig,
  DeviceSpec,
  HostConfig,
  MetaDiskSpec,
  OptionMap,
  OptionValue,
  ResourceConfig,
  SectionName,
  Sections,
  TandemConfig,
} from './types.js';

const INDENT = '    ';

/** The whole configuration, or only the named resources (global and common are always printed). */
export function dumpConfigText(config: TandemConfig, resources?: readonly string[]): string {
  const out: string[] = [];
  out.push(`# tandem dump: ${config.files.join(', ')}`);
  const g = optionLines('global', config.global.options, 1);
  if (g.length > 0) out.push('global {', ...g, '}', '');
  const c = sectionLines(config.common, 1);
  if (c.length > 0) out.push('common {', ...c, '}', '');
  for (const r of config.resources) {
    if (resources && !resources.includes(r.name)) continue;
    out.push(...resourceLines(r), '');
  }
  return `${out.join('\n')}\n`;
}

function resourceLines(r: ResourceConfig): string[] {
  const out = [`# defined at ${r.location.file}:${r.location.line}`, `resource ${r.name} {`];
  for (const [n, opts] of Object.entries(r.volumeDiskOverrides)) {
    out.push(
      `${INDENT}volume ${n} {`,
      `${INDENT.repeat(2)}disk {`,
      ...optionLines('disk', opts, 3),
      `${INDENT.repeat(2)}}`,
      `${INDENT}}`,
    );
  }
  for (const h of r.hosts) out.push(...hostLines(h, r));
  for (const c of r.connections) if (c.origin === 'connection') out.push(...connectionLines(c));
  if (r.mesh) {
    out.push(`${INDENT}connection-mesh {`, `${INDENT}${INDENT}hosts ${r.mesh.hosts.join(' ')};`);
    const net = optionLines('net', r.mesh.net, 3);
    if (net.length > 0) out.push(`${INDENT}${INDENT}net {`, ...net, `${INDENT}${INDENT}}`);
    out.push(`${INDENT}}`);
  }
  out.push(...sectionLines(r.ownSections, 1));
  out.push('}');
  return out;
}

function hostLines(h: HostConfig, r: ResourceConfig): string[] {
  const i1 = INDENT;
  const i2 = INDENT.repeat(2);
  const i3 = INDENT.repeat(3);
  const out = [
    h.floating && h.address
      ? `${i1}floating ${formatAddress(h.address)} {`
      : h.name === '_this_host'
        ? `${i1}_this_host {`
        : `${i1}on ${(h.names ?? [h.name]).join(' ')} {`,
  ];
  if (h.nodeId !== null) out.push(`${i2}node-id ${h.nodeId};`);
  if (h.address && !h.floating) out.push(`${i2}address ${formatAddress(h.address)};`);
  if (h.options) out.push(`${i2}options {`, ...optionLines('options', h.options, 3), `${i2}}`);
  for (const v of h.volumes) {
    out.push(`${i2}volume ${v.number} {`);
    out.push(`${i3}device ${deviceText(v.device)};`);
    out.push(`${i3}disk ${v.disk === null ? 'none' : quote(v.disk)};`);
    if (v.metaDisk) out.push(`${i3}meta-disk ${metaDiskText(v.metaDisk)};`);
    // Disk options this host sets for the volume (beyond what the resource gives every host).
    const inherited = { ...r.sections.disk, ...r.volumeDiskOverrides[v.number] };
    const own = Object.fromEntries(
      Object.entries(v.diskOptions).filter(([k, x]) => inherited[k] !== x),
    );
    const disk = optionLines('disk', own, 4);
    if (disk.length > 0) out.push(`${i3}disk {`, ...disk, `${i3}}`);
    out.push(`${i2}}`);
  }
  out.push(`${i1}}`);
  return out;
}

function connectionLines(c: ConnectionConfig): string[] {
  const i2 = INDENT.repeat(2);
  const i3 = INDENT.repeat(3);
  const out = [`${INDENT}connection${c.name === null ? '' : ` ${quote(c.name)}`} {`];
  for (const p of c.paths) {
    out.push(`${i2}path {`);
    for (const e of p.endpoints)
      out.push(`${i3}host ${e.host} address ${formatAddress(e.address)};`);
    out.push(`${i2}}`);
  }
  const net = optionLines('net', c.netOverrides, 3);
  if (net.length > 0) out.push(`${i2}net {`, ...net, `${i2}}`);
  const disk = optionLines('disk', c.diskOverrides, 3);
  if (disk.length > 0) out.push(`${i2}disk {`, ...disk, `${i2}}`);
  out.push(`${INDENT}}`);
  return out;
}

function sectionLines(sections: Sections, depth: number): string[] {
  const out: string[] = [];
  const pad = INDENT.repeat(depth);
  for (const s of SECTION_NAMES) {
    const lines = optionLines(s, sections[s], depth + 1);
    if (lines.length > 0) out.push(`${pad}${s} {`, ...lines, `${pad}}`);
  }
  return out;
}

function optionLines(section: SectionName | 'global', options: OptionMap, depth: number): string[] {
  const pad = INDENT.repeat(depth);
  return Object.entries(options).map(([name, value]) => {
    const kind = optionSchema(section, name)?.kind.type;
    if (kind === 'flag') return `${pad}${name};`;
    return `${pad}${name} ${valueText(value)};`;
  });
}

function valueText(v: OptionValue): string {
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') return String(v);
  return quote(v);
}

/** A word as is when drbd.conf reads it back as one token, else a quoted string. */
function quote(s: string): string {
  if (/^[A-Za-z0-9_./:+@=,-]+$/.test(s)) return s;
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function deviceText(d: DeviceSpec): string {
  switch (d.kind) {
    case 'drbd':
      return d.path === null ? `minor ${d.minor}` : `${d.path} minor ${d.minor}`;
    case 'nbd-tcp':
    case 'nbd-unix':
      return `"${d.uri}"`;
  }
}

function metaDiskText(m: MetaDiskSpec): string {
  switch (m.kind) {
    case 'internal':
      return 'internal';
    case 'flexible':
      return quote(m.path);
    case 'external':
      return `${quote(m.path)} [${m.index}]`;
  }
}

/** The configuration as JSON: the model without source locations, addresses as {family, ip, port}. */
export function dumpConfigJson(config: TandemConfig, resources?: readonly string[]): unknown {
  return {
    files: config.files,
    global: config.global.options,
    common: config.common,
    resources: config.resources
      .filter((r) => !resources || resources.includes(r.name))
      .map((r) => ({
        name: r.name,
        hosts: r.hosts.map((h) => ({
          name: h.name,
          ...(h.names ? { names: h.names } : {}),
          ...(h.options ? { options: h.options } : {}),
          nodeId: h.nodeId,
          floating: h.floating,
          address: h.address && addressJson(h.address),
          volumes: h.volumes,
        })),
        connections: r.connections.map((c) => ({
          name: c.name,
          hosts: c.hosts,
          origin: c.origin,
          paths: c.paths.map((p) =>
            p.endpoints.map((e) => ({ host: e.host, address: addressJson(e.address) })),
          ),
          net: c.net,
          disk: c.diskOverrides,
        })),
        mesh: r.mesh,
        ...r.sections,
      })),
  };
}

function addressJson(a: Address): Address {
  return { family: a.family, ip: a.ip, port: a.port };
}
