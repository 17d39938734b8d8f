// `tandem doctor [RES] [--json]`: checks what this node's configured transports need (IPoIB,
// RDMA ports, libfabric providers, ssocks fallback, socket buffers) and says how to fix it.
// Exit 0 when nothing failed, 1 otherwise. --sysroot reads /sys and /proc under another root.
import { readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ConfigFileError, findHost, loadConfig, resourcesForNode } from '../../config/index.js';
import type { ResourceConfig } from '../../config/index.js';
import { loadFabricAddon } from '../../transport/fabric/addon.js';
import {
  formatDoctor,
  runDoctor,
  type DoctorFs,
  type DoctorInput,
  type DoctorTarget,
} from '../../transport/fabric/doctor.js';
import { CliError, globalOptions } from '../context.js';

/** /sys and /proc read under `root` (tests point it at a fake tree). */
export function rootedFs(root: string): DoctorFs {
  return {
    readFile(p) {
      try {
        return readFileSync(join(root, p), 'utf8');
      } catch {
        return null;
      }
    },
    readDir(p) {
      try {
        return readdirSync(join(root, p));
      } catch {
        return null;
      }
    },
  };
}

/** This node's endpoints of each resource, with the net options the doctor looks at. */
export function targetsOf(resources: readonly ResourceConfig[], node: string): DoctorTarget[] {
  const out: DoctorTarget[] = [];
  for (const r of resources) {
    const net = r.sections.net;
    const transport = typeof net['transport'] === 'string' ? net['transport'] : 'tcp';
    const num = (k: string): number => (typeof net[k] === 'number' ? net[k] : 0);
    const provider =
      typeof net['fabric-provider'] === 'string' ? net['fabric-provider'] : undefined;
    const seen = new Set<string>();
    const add = (a: { family: DoctorTarget['family']; ip: string; port: number }): void => {
      const key = `${a.family} ${a.ip}:${a.port}`;
      if (seen.has(key)) return;
      seen.add(key);
      out.push({
        resource: r.name,
        family: a.family,
        ip: a.ip,
        port: a.port,
        transport,
        sndbufBytes: num('sndbuf-size'),
        rcvbufBytes: num('rcvbuf-size'),
        ...(provider !== undefined ? { provider } : {}),
      });
    };
    const host = findHost(r.hosts, node);
    if (host?.address) add(host.address);
    // Connections name this node's section by its first name (`on alpha alpha-spare`).
    const self = host?.name ?? node;
    for (const c of r.connections) {
      for (const p of c.paths) for (const e of p.endpoints) if (e.host === self) add(e.address);
    }
  }
  return out;
}

function fabricProviders(): DoctorInput['providers'] {
  const addon = loadFabricAddon();
  if (!addon.ok) return { ok: false, error: addon.error };
  return { ok: true, names: addon.value.getinfo({}).map((i) => i.provider) };
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description("check what this node's transports need (IPoIB, RDMA ports, libfabric, buffers)")
    .argument('[resource]', 'only this resource (default: all of this node)')
    .option('--json', 'print the checks as JSON')
    .option('--sysroot <dir>', 'read /sys and /proc under this directory', '/')
    .action(
      async (
        resource: string | undefined,
        opts: { json?: boolean; sysroot: string },
        cmd: Command,
      ) => {
        const g = globalOptions(cmd);
        let config;
        try {
          config = (await loadConfig(g.configPath)).config;
        } catch (e) {
          if (e instanceof ConfigFileError) throw new CliError(e.message, 10);
          throw e;
        }
        let resources = resourcesForNode(config, g.node);
        if (resource !== undefined) {
          resources = resources.filter((r) => r.name === resource);
          if (resources.length === 0) {
            throw new CliError(`no resource ${resource} for node ${g.node} in ${g.configPath}`, 10);
          }
        }
        const interfaces: Record<string, string[]> = {};
        for (const [name, list] of Object.entries(networkInterfaces())) {
          interfaces[name] = (list ?? []).map((a) => a.address);
        }
        const report = runDoctor({
          targets: targetsOf(resources, g.node),
          fs: rootedFs(opts.sysroot),
          interfaces,
          providers: fabricProviders(),
        });
        process.stdout.write(
          opts.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report),
        );
        if (!report.ok) process.exitCode = 1;
      },
    );
}
