// `tandem create-md | dump-md | show-gi | apply-al | wipe-md RES`: DRBD v09 metadata on a
// resource's backing disk, as drbdmeta does it. The disk, meta-disk and node-id come from the
// configuration (this node's `on` section), or from explicit options like drbdmeta's arguments.
import type { Command } from 'commander';
import {
  ConfigFileError,
  findResource,
  formatDiagnostic,
  hostForNode,
  loadConfig,
} from '../../config/index.js';
import type { VolumeConfig } from '../../config/index.js';
import {
  formatMetaDisk,
  openBackingDevices,
  parseMetaDisk,
  type MetaDiskSpec,
} from '../../storage/device.js';
import { MetadataStore, superblockOffset } from '../../storage/metadata/store.js';
import { dumpJson, formatDumpText, formatShowGi } from '../../storage/metadata/dump.js';
import { uuidHex } from '../../storage/metadata/superblock.js';
import { detectSignature, SIGNATURE_PROBE_BYTES } from '../../storage/signatures.js';
import { MAX_PEERS_MAX, NODE_ID_MAX, SUPERBLOCK_BYTES } from '../../storage/metadata/format.js';
import { InvalidRequestError, MetadataError, TandemError } from '../../util/errors.js';
import { CliError, globalOptions } from '../context.js';

const EXIT_CONFIG = 10;

interface TargetOptions {
  disk?: string;
  metaDisk?: string;
  nodeId?: string;
  maxPeers?: string;
  volume?: string;
  alExtents?: string;
}

interface Target {
  readonly resource: string;
  readonly disk: string;
  readonly metaDisk: MetaDiskSpec;
  readonly nodeId: number | undefined;
  readonly maxPeers: number;
  readonly alExtents: number | undefined;
}

function intOption(
  name: string,
  text: string | undefined,
  min: number,
  max: number,
): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new CliError(`--${name} ${text}: expected an integer ${min}..${max}`);
  }
  return n;
}

async function resolveTarget(resource: string, o: TargetOptions, cmd: Command): Promise<Target> {
  const nodeIdOpt = intOption('node-id', o.nodeId, 0, NODE_ID_MAX);
  const maxPeersOpt = intOption('max-peers', o.maxPeers, 1, MAX_PEERS_MAX);
  const alExtentsOpt = intOption('al-extents', o.alExtents, 7, 65534);
  if (o.disk !== undefined) {
    return {
      resource,
      disk: o.disk,
      metaDisk: parseMeta(o.metaDisk ?? 'internal'),
      nodeId: nodeIdOpt,
      maxPeers: maxPeersOpt ?? 1,
      alExtents: alExtentsOpt,
    };
  }
  const g = globalOptions(cmd);
  let loaded;
  try {
    loaded = await loadConfig(g.configPath);
  } catch (e) {
    if (e instanceof ConfigFileError) throw new CliError(e.message, EXIT_CONFIG);
    throw e;
  }
  for (const w of loaded.warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
  const res = findResource(loaded.config, resource);
  if (!res) {
    const names = loaded.config.resources.map((r) => r.name).join(', ') || 'none';
    throw new CliError(
      `no resource named ${resource} in ${g.configPath} (it has: ${names}); or give --disk`,
      EXIT_CONFIG,
    );
  }
  const host = hostForNode(loaded.config, resource, g.node);
  if (!host) {
    const hosts = res.hosts.map((h) => h.name).join(', ');
    throw new CliError(
      `resource ${resource} has no \`on ${g.node}\` section (hosts: ${hosts}); pass --node NAME`,
      EXIT_CONFIG,
    );
  }
  const volumeNr = intOption('volume', o.volume, 0, 65535);
  let volume: VolumeConfig | undefined;
  if (volumeNr !== undefined) volume = host.volumes.find((v) => v.number === volumeNr);
  else
    volume = host.volumes.length === 1 ? host.volumes[0] : host.volumes.find((v) => v.number === 0);
  if (!volume) {
    throw new CliError(
      `resource ${resource} on ${host.name}: no volume ${volumeNr ?? 0} (pass --volume N)`,
      EXIT_CONFIG,
    );
  }
  if (volume.disk === null || volume.metaDisk === null) {
    throw new CliError(
      `resource ${resource} volume ${volume.number} on ${host.name} is diskless: it has no metadata`,
    );
  }
  const md = volume.metaDisk;
  const metaDisk: MetaDiskSpec =
    md.kind === 'flexible' ? { kind: 'flex-external', path: md.path } : md;
  const configured = volume.diskOptions['al-extents'] ?? res.sections.disk['al-extents'];
  return {
    resource,
    disk: volume.disk,
    metaDisk,
    nodeId: nodeIdOpt ?? host.nodeId ?? undefined,
    maxPeers: maxPeersOpt ?? Math.max(1, res.hosts.length - 1),
    alExtents: alExtentsOpt ?? (typeof configured === 'number' ? configured : undefined),
  };
}

function parseMeta(text: string): MetaDiskSpec {
  try {
    return parseMetaDisk(text);
  } catch (e) {
    throw new CliError(e instanceof Error ? e.message : String(e));
  }
}

function withTargetOptions(c: Command): Command {
  return c
    .option('--disk <path>', 'the backing disk (instead of the configuration)')
    .option(
      '--meta-disk <where>',
      'internal | PATH (flex-external) | PATH[INDEX] (default internal)',
    )
    .option('--node-id <n>', "this node's id (default from the configuration)")
    .option('--max-peers <n>', 'bitmap slots for peers (default: number of hosts - 1, at least 1)')
    .option('--volume <n>', 'which volume of the resource (default its only one, or 0)');
}

/** Opens the target's devices and metadata; turns storage errors into one-line CLI errors. */
async function withMetadata<T>(
  t: Target,
  readOnly: boolean,
  fn: (md: MetadataStore, where: string) => Promise<T>,
): Promise<T> {
  const where = `${t.resource} (disk ${t.disk}, meta-disk ${formatMetaDisk(t.metaDisk)})`;
  const dev = await openBackingDevices(t.disk, t.metaDisk, { readOnly }).catch(rethrow(where));
  try {
    const md = await MetadataStore.open(dev.meta, {
      ...dev.placement,
      ...(t.alExtents !== undefined ? { alExtents: t.alExtents } : {}),
    }).catch(rethrow(where));
    return await fn(md, where);
  } finally {
    await dev.close();
  }
}

function rethrow(where: string): (e: unknown) => never {
  return (e: unknown) => {
    if (e instanceof MetadataError)
      throw new CliError(`${where}: no valid v09 metadata: ${e.message}`);
    if (e instanceof TandemError || e instanceof InvalidRequestError)
      throw new CliError(`${where}: ${e.message}`);
    throw e;
  };
}

async function createMd(t: Target, force: boolean): Promise<void> {
  const where = `${t.resource} (disk ${t.disk}, meta-disk ${formatMetaDisk(t.metaDisk)})`;
  const dev = await openBackingDevices(t.disk, t.metaDisk).catch(rethrow(where));
  try {
    const existing = await MetadataStore.probe(dev.meta, dev.placement);
    if (existing && !force) {
      throw new CliError(
        `${where}: ${dev.meta.name} already holds v09 metadata (current UUID ${uuidHex(existing.currentUuid)}, node-id ${existing.nodeId}); ` +
          'create-md would destroy it and its generation history. Use --force to overwrite it.',
      );
    }
    // Internal metadata overwrites the end of the data disk; external overwrites the meta disk.
    const probeStore = t.metaDisk.kind === 'internal' ? dev.disk : dev.meta;
    const head = await probeStore.read(0, Math.min(SIGNATURE_PROBE_BYTES, probeStore.sizeBytes));
    const sig = detectSignature(head);
    if (sig && !existing && !force) {
      const detail =
        t.metaDisk.kind === 'internal'
          ? 'internal metadata would overwrite the end of the disk'
          : 'the metadata would overwrite it';
      throw new CliError(
        `${where}: ${probeStore.name} holds ${/^[aeiou]/i.test(sig.what) ? 'an' : 'a'} ${sig.what}${sig.sizeBytes !== undefined ? ` of ${sig.sizeBytes} bytes` : ''}; ${detail}. Use --force to write metadata anyway.`,
      );
    }
    const md = await MetadataStore.create(dev.meta, {
      ...dev.placement,
      maxPeers: t.maxPeers,
      ...(t.nodeId !== undefined ? { nodeId: t.nodeId } : {}),
      ...(t.alExtents !== undefined ? { alExtents: t.alExtents } : {}),
    }).catch(rethrow(where));
    process.stdout.write(
      `${where}: new v09 metadata created: max-peers ${t.maxPeers}, node-id ${md.superblock.nodeId}, ` +
        `${md.layout.dataBytes} bytes of data, metadata at ${md.layout.mdOffsetBytes} (${md.layout.mdSizeSectors} sectors)\n`,
    );
  } finally {
    await dev.close();
  }
}

export function registerMetadata(program: Command): void {
  withTargetOptions(
    program.command('create-md').description('write fresh DRBD v09 metadata for a resource'),
  )
    .argument('<resource>')
    .option('--al-extents <n>', 'activity log extents (default from the configuration, else 1237)')
    .option('--force', 'overwrite existing metadata or a filesystem signature')
    .action(async (res: string, o: TargetOptions & { force?: boolean }, cmd: Command) => {
      await createMd(await resolveTarget(res, o, cmd), o.force === true);
    });

  withTargetOptions(
    program
      .command('dump-md')
      .description('print the metadata (drbdmeta dump-md format, or --json)'),
  )
    .argument('<resource>')
    .option('--json', 'print JSON: UUIDs as "0x..." strings, sizes with their unit in the key')
    .action(async (res: string, o: TargetOptions & { json?: boolean }, cmd: Command) => {
      await withMetadata(await resolveTarget(res, o, cmd), true, (md, where) => {
        const input = {
          superblock: md.superblock,
          layout: md.layout,
          bitmap: md.bitmap,
          alClean: md.alClean,
        };
        if (!md.alClean)
          process.stderr.write(
            `${where}: metadata is unclean (run apply-al first); the bitmap is not final\n`,
          );
        process.stdout.write(
          o.json === true
            ? `${JSON.stringify(dumpJson(input), null, 2)}\n`
            : formatDumpText(input, `tandem dump-md ${res}`),
        );
        return Promise.resolve();
      });
    });

  withTargetOptions(
    program.command('show-gi').description('show the generation identifiers and flags, explained'),
  )
    .argument('<resource>')
    .option(
      '--peer-node-id <n>',
      'whose bitmap UUID to show (default: the first peer with a bitmap slot)',
    )
    .action(async (res: string, o: TargetOptions & { peerNodeId?: string }, cmd: Command) => {
      await withMetadata(await resolveTarget(res, o, cmd), true, (md) => {
        const sb = md.superblock;
        const peer =
          intOption('peer-node-id', o.peerNodeId, 0, NODE_ID_MAX) ??
          Math.max(
            0,
            sb.peers.findIndex((p, i) => p.bitmapIndex >= 0 && i !== sb.nodeId),
          );
        process.stdout.write(formatShowGi(sb, peer));
        return Promise.resolve();
      });
    });

  withTargetOptions(
    program
      .command('apply-al')
      .description('after a crash: mark the activity log extents out of sync'),
  )
    .argument('<resource>')
    .action(async (res: string, o: TargetOptions, cmd: Command) => {
      await withMetadata(await resolveTarget(res, o, cmd), false, async (md, where) => {
        if (md.alClean) {
          process.stdout.write(`${where}: the activity log is clean; nothing to do\n`);
          return;
        }
        const r = await md.applyActivityLog();
        process.stdout.write(
          r.fullSync
            ? `${where}: the activity log was unreadable; marked the whole device out of sync\n`
            : `${where}: marked ${r.extents.length} activity-log extents (${(r.bitsSet * md.superblock.bmBytesPerBit) / 1024} KiB more) out of sync\n`,
        );
      });
    });

  withTargetOptions(
    program.command('wipe-md').description('destroy the metadata (zero its superblock)'),
  )
    .argument('<resource>')
    .action(async (res: string, o: TargetOptions, cmd: Command) => {
      const t = await resolveTarget(res, o, cmd);
      const where = `${t.resource} (disk ${t.disk}, meta-disk ${formatMetaDisk(t.metaDisk)})`;
      const dev = await openBackingDevices(t.disk, t.metaDisk).catch(rethrow(where));
      try {
        if (!(await MetadataStore.probe(dev.meta, dev.placement))) {
          throw new CliError(`${where}: no v09 metadata found; nothing to wipe`);
        }
        // Zero the superblock directly: even metadata that no longer validates can be wiped.
        const at = superblockOffset(
          dev.placement.kind,
          dev.placement.index ?? 0,
          dev.meta.sizeBytes,
        );
        await dev.meta.write(at, Buffer.alloc(SUPERBLOCK_BYTES), { fua: true });
        process.stdout.write(`${where}: metadata wiped (superblock at ${at} zeroed)\n`);
      } finally {
        await dev.close();
      }
    });
}
