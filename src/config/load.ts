// Entry points: read a configuration (with includes) from disk, or parse a text for tests.
// Both return the model and its warnings, or throw one ConfigFileError listing every error.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { CONFIG_FILE_BYTES_MAX } from '../limits.js';
import { ConfigError } from '../util/errors.js';
import { ConfigFileError, didYouMean, sortDiagnostics } from './diagnostics.js';
import { interpret, type ConfigFs } from './interpret.js';
import type {
  ConfigDiagnostic,
  HostConfig,
  LoadedConfig,
  ResourceConfig,
  TandemConfig,
} from './types.js';

/** Reads and checks a configuration file; throws ConfigFileError (a ConfigError) listing every error. */
export async function loadConfig(path: string): Promise<LoadedConfig> {
  const file = isAbsolute(path) ? path : resolve(path);
  let text: string;
  try {
    const st = statSync(file);
    if (st.size > CONFIG_FILE_BYTES_MAX)
      throw new Error(`larger than ${CONFIG_FILE_BYTES_MAX} bytes`);
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigFileError([
      {
        severity: 'error',
        location: { file, line: 0, column: 0 },
        message: `cannot read the configuration: ${(e as Error).message}`,
      },
    ]);
  }
  return check(text, file, nodeConfigFs);
}

/** Parses a configuration given as text (no includes); same result and errors as loadConfig. */
export function parseConfigText(
  text: string,
  fileName: string,
  fs: ConfigFs | null = null,
): LoadedConfig {
  return check(text, fileName, fs);
}

function check(text: string, file: string, fs: ConfigFs | null): LoadedConfig {
  const diagnostics: ConfigDiagnostic[] = [];
  const config = interpret(text, file, fs, diagnostics);
  if (diagnostics.some((d) => d.severity === 'error')) throw new ConfigFileError(diagnostics);
  return { config, warnings: sortDiagnostics(diagnostics.filter((d) => d.severity === 'warning')) };
}

/** The `on` section that is `node` in a resource (what --node picks), or undefined. */
export function hostForNode(
  config: TandemConfig,
  resourceName: string,
  node: string,
): HostConfig | undefined {
  return findHost(findResource(config, resourceName)?.hosts ?? [], node);
}

/**
 * The host section for `node`: the `on` section naming it (any of `on alpha beta`'s names), else
 * a `_this_host` section (drbdadm's section for whichever machine reads the file).
 */
export function findHost(hosts: readonly HostConfig[], node: string): HostConfig | undefined {
  const named = (same: (a: string, b: string) => boolean): HostConfig | undefined =>
    hosts.find((h) => !h.floating && (h.names ?? [h.name]).some((n) => same(n, node)));
  return (
    named((a, b) => a === b) ??
    hosts.find((h) => h.name === node) ??
    named(hostnamesEqual) ??
    hosts.find((h) => h.name === '_this_host' && !h.floating)
  );
}

/**
 * drbdadm's host name match: without case, and a short name matches a fully qualified one
 * (`on alpha.example.com` is node `alpha`); two fully qualified names must be equal.
 */
function hostnamesEqual(a: string, b: string): boolean {
  const da = a.indexOf('.');
  const db = b.indexOf('.');
  if (da >= 0 && db >= 0) return a.toLowerCase() === b.toLowerCase();
  const sa = da >= 0 ? a.slice(0, da) : a;
  const sb = db >= 0 ? b.slice(0, db) : b;
  return sa.toLowerCase() === sb.toLowerCase();
}

/**
 * The `on` section that is `node` in a resource, or a ConfigError saying which resources and
 * hosts exist (with a did-you-mean): what the daemon and CLI use for `--node`.
 */
export function requireHostForNode(
  config: TandemConfig,
  resourceName: string,
  node: string,
): HostConfig {
  const r = findResource(config, resourceName);
  if (!r) {
    const names = config.resources.map((x) => x.name);
    const hint = didYouMean(resourceName, names);
    throw new ConfigError(
      `no resource '${resourceName}' in ${config.files[0] ?? 'the configuration'} (it has: ${names.join(', ') || 'none'})${hint ? `; did you mean '${hint}'?` : ''}`,
    );
  }
  const h = findHost(r.hosts, node);
  if (!h) {
    const names = r.hosts.map((x) => x.name);
    const hint = didYouMean(node, names);
    throw new ConfigError(
      `resource '${resourceName}' has no 'on ${node}' section (hosts: ${names.join(', ')}); set --node or TANDEM_NODE${hint ? `; did you mean '${hint}'?` : ''}`,
    );
  }
  return h;
}

export function findResource(config: TandemConfig, name: string): ResourceConfig | undefined {
  return config.resources.find((r) => r.name === name);
}

/** Resources that have an `on` section for `node`. */
export function resourcesForNode(config: TandemConfig, node: string): ResourceConfig[] {
  return config.resources.filter((r) => findHost(r.hosts, node) !== undefined);
}

/** The real file system, with drbdadm's glob(3) for `include`: `*`, `?` and `[...]` per path segment. */
export const nodeConfigFs: ConfigFs = {
  readFile: (p) => {
    if (statSync(p).size > CONFIG_FILE_BYTES_MAX) return '\u0000'.repeat(CONFIG_FILE_BYTES_MAX + 1);
    return readFileSync(p, 'utf8');
  },
  glob: (pattern) => globSync(pattern),
};

export function globSync(pattern: string): string[] {
  const parts = pattern.split(sep).filter((p) => p !== '');
  let current: string[] = [sep];
  for (const part of parts) {
    const next: string[] = [];
    if (!/[*?[]/.test(part)) {
      for (const dir of current) next.push(join(dir, part));
    } else {
      const re = globSegment(part);
      for (const dir of current) {
        let names: string[];
        try {
          names = readdirSync(dir);
        } catch {
          continue;
        }
        for (const n of names.sort())
          if (re.test(n) && !(n.startsWith('.') && !part.startsWith('.'))) next.push(join(dir, n));
      }
    }
    current = next;
  }
  return current.filter((p) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

function globSegment(part: string): RegExp {
  let re = '';
  for (let i = 0; i < part.length; i++) {
    const c = part[i] ?? '';
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = part.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let body = part.slice(i + 1, close);
        if (body.startsWith('!')) body = `^${body.slice(1)}`;
        re += `[${body.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}
