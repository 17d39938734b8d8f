// Parity with drbd-utils: for every valid file of the corpus, the real `drbdadm dump-xml`/`dump`
// and Tandem agree on resources, hosts, node-ids, volumes, addresses, connections, paths and
// options; `drbdadm` reads Tandem's `dump` as the same configuration as the original; and every
// broken file is rejected by Tandem, including those drbdadm lets through.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ConfigFileError, loadConfig, optionSchema } from '../../src/config/index.js';
import { dumpConfigText } from '../../src/config/dump.js';
import { parseNumericValue } from '../../src/config/options.js';
import type {
  OptionValue,
  ResourceConfig,
  SectionName,
  TandemConfig,
} from '../../src/config/types.js';
import { inCi, requirePeers } from '../support/peers.js';
import {
  canUnshare,
  child,
  drbdadmBatch,
  kids,
  parseXml,
  type DrbdadmResult,
  type XmlNode,
} from './drbdadm.js';

const CORPUS = resolve('test/fixtures/drbd-conf');
const good = readdirSync(join(CORPUS, 'good'))
  .filter((f) => f.endsWith('.res'))
  .sort();
const bad = readdirSync(join(CORPUS, 'bad'))
  .filter((f) => f.endsWith('.res'))
  .sort();

/** drbdadm, unshare and ip are installed and this process may create namespaces (root). */
function oracleReady(t: TestContext, skip = true): boolean {
  const ok =
    requirePeers(t, 'drbd-utils', 'drbdadm') &&
    requirePeers(t, 'util-linux', 'unshare') &&
    requirePeers(t, 'iproute2', 'ip');
  if (!ok) return false;
  if (canUnshare()) return true;
  if (inCi) throw new Error('the drbdadm oracle needs root (unshare -u -n); CI=true: failing');
  if (skip) t.skip('the drbdadm oracle needs root (unshare -u -n)');
  return false;
}

test('the corpus has at least 25 valid and 15 broken configurations', () => {
  assert.ok(good.length >= 25, `${good.length} good files`);
  assert.ok(bad.length >= 15, `${bad.length} bad files`);
});

/** The host drbdadm must run as: the first named host of the file (floating: by address). */
function oracleHost(config: TandemConfig): string {
  // `_this_host` is whichever machine reads the file: run as a host the file does not name.
  if (config.resources.some((r) => r.hosts.some((h) => h.name === '_this_host'))) return 'thishost';
  for (const r of config.resources) for (const h of r.hosts) if (!h.floating) return h.name;
  return 'alpha';
}

/** A drbd.conf option value as drbdadm printed it, in Tandem's typed unit. */
function oracleValue(section: SectionName, name: string, text: string): OptionValue {
  const kind = optionSchema(section, name)?.kind;
  assert.ok(kind, `drbdadm printed option ${section}.${name}, which Tandem does not know`);
  switch (kind.type) {
    case 'numeric': {
      const r = parseNumericValue(text, kind);
      assert.ok(r.ok, `drbdadm value ${name}=${text}`);
      return r.value;
    }
    case 'boolean':
    case 'flag':
      return text !== 'no';
    case 'numeric-or-symbol':
      return /^[0-9]+$/.test(text) ? Number(text) : text;
    case 'enum':
      // drbdadm prints a case-insensitive value (protocol) as written; Tandem stores it as listed.
      return kind.nocase
        ? (kind.values.find((v) => v.toLowerCase() === text.toLowerCase()) ?? text)
        : text;
    case 'string':
      return text;
  }
}

function sectionsOf(n: XmlNode | undefined): Record<string, Record<string, OptionValue>> {
  const out: Record<string, Record<string, OptionValue>> = {};
  for (const s of n ? kids(n, 'section') : []) {
    const name = s.attrs['name'] as SectionName;
    // DRBD Proxy's options: Tandem accepts the section and does not read it (no proxy).
    if ((name as string) === 'proxy') continue;
    const opts: Record<string, OptionValue> = {};
    for (const o of kids(s, 'option')) {
      const oname = o.attrs['name'] ?? '';
      opts[oname] = oracleValue(name, oname, o.attrs['value'] ?? '');
    }
    out[name] = opts;
  }
  return out;
}

function addr(n: XmlNode | undefined): string | null {
  if (!n || n.attrs['family'] === '(null)') return null;
  return `${n.attrs['family']}:${n.text.trim()}:${n.attrs['port']}`;
}

interface View {
  hosts: Record<string, { nodeId: number | null; address: string | null; volumes: string[] }>;
  connections: string[];
  options: Record<string, Record<string, OptionValue>>;
  connectionNet: Record<string, Record<string, OptionValue>>;
}

function nodeIdsFromDump(text: string): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  for (const block of text.split(/^resource /m).slice(1)) {
    const name = /^(\S+)/.exec(block)?.[1] ?? '';
    const ids = new Map<string, number>();
    for (const m of block.matchAll(
      /(?:\bon ([^{}\n]+?)|floating\s+\S+\s+(\S+)) \{\s*node-id (\d+);/g,
    )) {
      ids.set((m[1] ?? m[2]) as string, Number(m[3]));
    }
    out.set(name, ids);
  }
  return out;
}

function connectionKey(hosts: string[], paths: string[][]): string {
  return `${[...hosts].sort().join('<->')} ${paths
    .map((p) => [...p].sort().join('='))
    .sort()
    .join(' | ')}`;
}

function oracleView(xmlText: string, dumpText: string): Map<string, View> {
  const xml = parseXml(xmlText);
  const config = child(xml, 'config');
  assert.ok(config, 'drbdadm dump-xml printed a <config>');
  const common = sectionsOf(child(config, 'common'));
  const ids = nodeIdsFromDump(dumpText);
  const out = new Map<string, View>();
  for (const r of kids(config, 'resource')) {
    const name = r.attrs['name'] ?? '';
    const hosts: View['hosts'] = {};
    for (const h of kids(r, 'host')) {
      const a = child(h, 'address');
      const hostName =
        h.attrs['floating'] === '1'
          ? `${a?.attrs['family'] === 'ipv6' ? `[${a.text.trim()}]` : a?.text.trim()}:${a?.attrs['port']}`
          : (h.attrs['name'] ?? '');
      hosts[hostName] = {
        nodeId: ids.get(name)?.get(hostName) ?? null,
        address: addr(a),
        volumes: kids(h, 'volume').map((v) => {
          const dev = child(v, 'device');
          const md = child(v, 'meta-disk');
          const disk = child(v, 'disk')?.text.trim() ?? '';
          return `${v.attrs['vnr']} minor=${dev?.attrs['minor']} disk=${disk} md=${md?.text.trim()}${md?.attrs['index'] === undefined ? '' : `[${md.attrs['index']}]`}`;
        }),
      };
    }
    const own = sectionsOf(r);
    const options: View['options'] = {};
    for (const s of new Set([...Object.keys(common), ...Object.keys(own)])) {
      options[s] = { ...common[s], ...own[s] };
    }
    const connections: string[] = [];
    const connectionNet: View['connectionNet'] = {};
    for (const c of kids(r, 'connection')) {
      const pathNodes = kids(c, 'path');
      const pathHosts =
        pathNodes.length > 0 ? pathNodes.map((p) => kids(p, 'host')) : [kids(c, 'host')];
      const hostNames = (pathHosts[0] ?? []).map((h) => h.attrs['name'] ?? '');
      const paths = pathHosts.map((hs) =>
        hs.map((h) => `${h.attrs['name']}@${addr(child(h, 'address'))}`),
      );
      const key = connectionKey(hostNames, paths);
      connections.push(key);
      connectionNet[key] = { ...options['net'], ...sectionsOf(c)['net'] };
    }
    out.set(name, { hosts, connections: connections.sort(), options, connectionNet });
  }
  return out;
}

function tandemView(r: ResourceConfig): View {
  const hosts: View['hosts'] = {};
  for (const h of r.hosts) {
    // drbdadm names an `on alpha beta { }` host by all its names.
    hosts[(h.names ?? [h.name]).join(' ')] = {
      nodeId: h.nodeId,
      address: h.address && `${h.address.family}:${h.address.ip}:${h.address.port}`,
      volumes: h.volumes.map((v) => {
        const minor = v.device.kind === 'drbd' ? v.device.minor : -1;
        const md = v.metaDisk;
        const mdText =
          md === null
            ? 'undefined'
            : md.kind === 'internal'
              ? 'internal'
              : md.kind === 'flexible'
                ? md.path
                : `${md.path}[${md.index}]`;
        return `${v.number} minor=${minor} disk=${v.disk ?? 'none'} md=${mdText}`;
      }),
    };
  }
  const options: View['options'] = {};
  for (const [s, opts] of Object.entries(r.sections)) {
    const o: Record<string, OptionValue> = { ...opts };
    // drbdadm 9 parses DRBD 8.4's become-primary-on and then drops it.
    delete o['become-primary-on'];
    if (Object.keys(o).length > 0) options[s] = o;
  }
  const connections: string[] = [];
  const connectionNet: View['connectionNet'] = {};
  for (const c of r.connections) {
    const key = connectionKey(
      [...c.hosts],
      c.paths.map((p) =>
        p.endpoints.map((e) => `${e.host}@${e.address.family}:${e.address.ip}:${e.address.port}`),
      ),
    );
    connections.push(key);
    connectionNet[key] = { ...c.net };
  }
  return { hosts, connections: connections.sort(), options, connectionNet };
}

/** drbdadm's reading of each file (dump-xml and dump), all of them in one batch. */
/** Each function asserts that drbdadm accepted its file and returns its reading. */
async function oraclesOf(
  files: readonly { file: string; host: string }[],
): Promise<(() => Map<string, View>)[]> {
  const results = await drbdadmBatch(
    files.flatMap(({ file, host }) => [
      { file, hostname: host, args: ['dump-xml', 'all'] },
      { file, hostname: host, args: ['dump', 'all'] },
    ]),
  );
  return files.map(({ file }, i) => () => {
    const xml = results[2 * i] as DrbdadmResult;
    const text = results[2 * i + 1] as DrbdadmResult;
    assert.equal(xml.status, 0, `drbdadm dump-xml ${file} failed: ${xml.stderr}`);
    assert.equal(text.status, 0, `drbdadm dump ${file} failed: ${text.stderr}`);
    return oracleView(xml.stdout, text.stdout);
  });
}

/** Tandem's reading of every good file, loaded once. */
const loaded = new Map<string, TandemConfig>();
async function tandemOf(name: string): Promise<TandemConfig> {
  let c = loaded.get(name);
  if (!c) {
    c = (await loadConfig(join(CORPUS, 'good', name))).config;
    loaded.set(name, c);
  }
  return c;
}

/** drbdadm's reading of every good file, computed once on first use. */
let goodOracles: Map<string, () => Map<string, View>> | null = null;
async function oracleOfGood(name: string): Promise<Map<string, View>> {
  if (!goodOracles) {
    const files = [];
    for (const n of good) {
      let host = 'alpha';
      try {
        host = oracleHost(await tandemOf(n));
      } catch {
        // Tandem's failure is reported by the file's own test.
      }
      files.push({ file: join(CORPUS, 'good', n), host });
    }
    const views = await oraclesOf(files);
    goodOracles = new Map(good.map((n, i) => [n, views[i] as () => Map<string, View>]));
  }
  return (goodOracles.get(name) as () => Map<string, View>)();
}

for (const name of good) {
  test(`parity: drbdadm and Tandem read ${name} alike`, async (t) => {
    if (!oracleReady(t)) return;
    const config = await tandemOf(name);
    const oracle = await oracleOfGood(name);
    assert.deepEqual([...oracle.keys()].sort(), config.resources.map((r) => r.name).sort());
    for (const r of config.resources) {
      const expected = oracle.get(r.name);
      assert.ok(expected);
      // drbdadm leaves out options with no value given; an empty section equals a missing one.
      for (const s of Object.keys(expected.options)) {
        if (Object.keys(expected.options[s] ?? {}).length === 0) delete expected.options[s];
      }
      assert.deepEqual(tandemView(r), expected, `resource ${r.name}`);
    }
  });
}

test("parity: drbdadm reads Tandem's dump as the same configuration as the original", async (t) => {
  if (!oracleReady(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'tandem-dump-'));
  try {
    const files = [];
    for (const name of good) {
      const config = await tandemOf(name);
      const out = join(dir, name);
      writeFileSync(out, dumpConfigText(config));
      files.push({ file: out, host: oracleHost(config) });
      // And Tandem reads its own dump back to the same model.
      const again = await loadConfig(out);
      assert.deepEqual(
        stripLocations(again.config.resources),
        stripLocations(config.resources),
        `${name}: re-parse`,
      );
    }
    const fromDump = await oraclesOf(files);
    for (const [i, name] of good.entries()) {
      assert.deepEqual(
        (fromDump[i] as () => Map<string, View>)(),
        await oracleOfGood(name),
        `${name}: drbdadm reads the dump differently`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function stripLocations(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === 'location' ? undefined : x)));
}

test('parity: Tandem rejects every broken file, and more than drbdadm does', async (t) => {
  const peers = oracleReady(t, false);
  const missedByDrbdadm: string[] = [];
  for (const name of bad) {
    const file = join(CORPUS, 'bad', name);
    const expect = /^# expect: (.*)$/m.exec(readFileSync(file, 'utf8'))?.[1];
    assert.ok(expect, `${name} names the error it expects`);
    await assert.rejects(loadConfig(file), (e: unknown) => {
      assert.ok(e instanceof ConfigFileError, `${name}: ${String(e)}`);
      assert.ok(e.message.includes(expect), `${name}: expected "${expect}" in:\n${e.message}`);
      for (const d of e.diagnostics) {
        assert.ok(d.location.line >= 1 && d.location.column >= 1, `${name}: located error`);
      }
      return true;
    });
  }
  if (peers) {
    const results = await drbdadmBatch(
      bad.map((name) => ({
        file: join(CORPUS, 'bad', name),
        hostname: 'alpha',
        args: ['dump', 'all'],
      })),
    );
    for (const [i, name] of bad.entries()) {
      if (results[i]?.status === 0) missedByDrbdadm.push(name);
    }
    t.diagnostic(
      `drbdadm accepts ${missedByDrbdadm.length} of ${bad.length}: ${missedByDrbdadm.join(', ')}`,
    );
    assert.ok(missedByDrbdadm.length >= 3, 'the corpus holds errors drbdadm misses');
    assert.ok(bad.length - missedByDrbdadm.length >= 15, 'the corpus holds errors drbdadm catches');
  }
});
