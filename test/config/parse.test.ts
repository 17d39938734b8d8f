// The configuration layer's contract: located errors (all of them, with expected and
// did-you-mean), inheritance, units, Tandem's NBD device URIs, includes, and host selection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  ConfigFileError,
  hostForNode,
  requireHostForNode,
  loadConfig,
  parseAddress,
  parseConfigText,
  parseNbdUri,
  GLOBAL_OPTIONS,
  SECTION_OPTIONS,
  type ConfigDiagnostic,
} from '../../src/config/index.js';
import { dumpConfigText } from '../../src/config/dump.js';

const run = promisify(execFile);
const GOOD = resolve('test/fixtures/drbd-conf/good');

const HOSTS = `on alpha { node-id 0; address 127.0.0.1:7001; } on beta { node-id 1; address 127.0.0.2:7001; }`;
const BASE = `device /dev/drbd1; disk /dev/loop1; meta-disk internal;`;

function errorsOf(text: string): ConfigDiagnostic[] {
  try {
    parseConfigText(text, 'test.res');
  } catch (e) {
    assert.ok(e instanceof ConfigFileError, String(e));
    return e.diagnostics.filter((d) => d.severity === 'error');
  }
  assert.fail('expected the configuration to be rejected');
}

function stripLocations(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (k, x: unknown) => (k === 'location' ? undefined : x)));
}

test('an error names file, line, column, what was expected and a did-you-mean', () => {
  const errs = errorsOf(`resource r {\n  ${BASE}\n  net { ping-timout 10; }\n  ${HOSTS}\n}\n`);
  assert.equal(errs.length, 1);
  const e = errs[0];
  assert.ok(e);
  assert.deepEqual(e.location, { file: 'test.res', line: 3, column: 9 });
  assert.equal(e.suggestion, 'ping-timeout');
  assert.ok(e.expected);
  assert.throws(
    () =>
      parseConfigText(
        `resource r {\n  ${BASE}\n  net { ping-timout 10; }\n  ${HOSTS}\n}\n`,
        'test.res',
      ),
    /test\.res:3:9: error: unknown net option 'ping-timout'.*did you mean 'ping-timeout'\?/,
  );
});

test('every error of a file is reported, not only the first', () => {
  const errs = errorsOf(
    [
      'resource r {',
      `  ${BASE}`,
      '  net { protocol D; max-buffers 1; }',
      '  disk { resync-rate fast; }',
      '  on alpha { node-id 0; address 127.0.0.300:7001; }',
      '  on beta { node-id 1; address 127.0.0.2:99999; }',
      '}',
    ].join('\n'),
  );
  assert.deepEqual(
    errs.map((e) => `${e.location.line}:${e.location.column}`),
    ['3:18', '3:33', '4:22', '5:33', '6:32'],
  );
});

test('a missing semicolon, a section left open and a stray brace are located', () => {
  const missing = errorsOf(
    `resource r { device /dev/drbd1 disk /dev/loop1; meta-disk internal; ${HOSTS} }`,
  );
  assert.match(missing[0]?.message ?? '', /missing ';' after '\/dev\/drbd1'/);
  const open = errorsOf(`resource r { ${BASE}\n${HOSTS}\n`);
  assert.match(
    open[0]?.message ?? '',
    /section 'resource' opened at line 1, column 1 is not closed/,
  );
  assert.equal(open[0]?.location.line, 3);
  const stray = errorsOf(`resource r { ${BASE} ${HOSTS} }\n}\n`);
  assert.match(stray[0]?.message ?? '', /unexpected '}'/);
});

test('a misspelt top-level keyword suggests the right one', () => {
  const errs = errorsOf(`resouce r { ${BASE} ${HOSTS} }`);
  assert.equal(errs[0]?.suggestion, 'resource');
});

test('an option in the wrong section says where it belongs', () => {
  const errs = errorsOf(`resource r { ${BASE} disk { fencing resource-only; } ${HOSTS} }`);
  assert.match(errs[0]?.message ?? '', /belongs in the net section/);
});

test('a DRBD option Tandem does not implement is accepted with a warning naming it', () => {
  const { warnings, config } = parseConfigText(
    `resource r { ${BASE} net { tcp-cork no; } ${HOSTS} }`,
    't.res',
  );
  assert.equal(config.resources[0]?.sections.net['tcp-cork'], false);
  assert.ok(warnings.some((w) => w.message.includes("'tcp-cork'") && w.location.line === 1));
});

test('common is inherited by resources, resource-level volumes by every host, hosts override', () => {
  const { config } = parseConfigText(
    [
      'common { net { protocol A; timeout 50; } disk { resync-rate 10M; } }',
      'resource r {',
      '  device /dev/drbd1; disk /dev/loop1; meta-disk internal;',
      '  net { timeout 70; }',
      '  on alpha { node-id 0; address 127.0.0.1:7001; disk /dev/loop9; }',
      '  on beta { node-id 1; address 127.0.0.2:7001; }',
      '}',
    ].join('\n'),
    't.res',
  );
  const r = config.resources[0];
  assert.ok(r);
  assert.deepEqual(r.sections.net, { protocol: 'A', timeout: 70 });
  assert.deepEqual(r.ownSections.net, { timeout: 70 });
  assert.equal(r.sections.disk['resync-rate'], 10240, 'resync-rate is in KiB/s');
  assert.equal(hostForNode(config, 'r', 'alpha')?.volumes[0]?.disk, '/dev/loop9');
  assert.equal(hostForNode(config, 'r', 'beta')?.volumes[0]?.disk, '/dev/loop1');
  assert.deepEqual(hostForNode(config, 'r', 'beta')?.volumes[0]?.device, {
    kind: 'drbd',
    path: '/dev/drbd1',
    minor: 1,
  });
  assert.equal(hostForNode(config, 'r', 'gamma'), undefined);
  assert.equal(requireHostForNode(config, 'r', 'beta').name, 'beta');
  assert.throws(
    () => requireHostForNode(config, 'r', 'betta'),
    /no 'on betta' section.*did you mean 'beta'/,
  );
  assert.throws(() => requireHostForNode(config, 'q', 'beta'), /no resource 'q'.*did you mean 'r'/);
  assert.equal(hostForNode(config, 'nope', 'alpha'), undefined);
});

test('a resource written with a single volume 0 is the same as one without', async () => {
  const explicit = await loadConfig(join(GOOD, '15-volume0-explicit.res'));
  const implicit = await loadConfig(join(GOOD, '16-volume0-implicit.res'));
  assert.deepEqual(
    stripLocations(explicit.config.resources),
    stripLocations(implicit.config.resources),
  );
});

test('numbers take drbd.conf size suffixes in the unit of their option', () => {
  const { config } = parseConfigText(
    `resource r { ${BASE} net { sndbuf-size 512K; max-buffers 8k; timeout 60; } disk { c-fill-target 1M; c-max-rate 1G; al-extents 3389; } ${HOSTS} }`,
    't.res',
  );
  const s = config.resources[0]?.sections;
  assert.equal(s?.net['sndbuf-size'], 512 * 1024, 'bytes');
  assert.equal(s?.net['max-buffers'], 8192, 'pages');
  assert.equal(s?.net['timeout'], 60, '1/10 s');
  assert.equal(s?.disk['c-fill-target'], 2048, 'sectors');
  assert.equal(s?.disk['c-max-rate'], 1024 * 1024, 'KiB/s');
  assert.equal(s?.disk['al-extents'], 3389);
});

test('addresses: families, IPv6 in brackets, octets and ports checked', () => {
  assert.deepEqual(parseAddress('10.0.0.1:7789', null), {
    ok: true,
    address: { family: 'ipv4', ip: '10.0.0.1', port: 7789 },
  });
  assert.deepEqual(parseAddress('[fdaa::1]:7789', 'ipv6'), {
    ok: true,
    address: { family: 'ipv6', ip: 'fdaa::1', port: 7789 },
  });
  assert.deepEqual(parseAddress('10.0.0.1:7789', 'sdp'), {
    ok: true,
    address: { family: 'sdp', ip: '10.0.0.1', port: 7789 },
  });
  assert.equal(parseAddress('10.0.0.256:7789', null).ok, false);
  assert.equal(parseAddress('10.0.0.1:0', null).ok, false);
  assert.equal(parseAddress('10.0.0.1', null).ok, false);
  assert.equal(parseAddress('fdaa::1:7789', 'ipv6').ok, false);
  assert.equal(parseAddress('[fdaa::zz]:7789', 'ipv6').ok, false);
  assert.equal(parseAddress('[fdaa::1]:7789', 'ipv4').ok, false);
});

test('Tandem device URIs parse into typed NBD endpoints', () => {
  assert.deepEqual(parseNbdUri('nbd://127.0.0.1:10999/r0'), {
    ok: true,
    device: {
      kind: 'nbd-tcp',
      uri: 'nbd://127.0.0.1:10999/r0',
      host: '127.0.0.1',
      port: 10999,
      exportName: 'r0',
      tls: false,
    },
  });
  assert.deepEqual(parseNbdUri('nbds://127.0.0.1:10999/r0'), {
    ok: true,
    device: {
      kind: 'nbd-tcp',
      uri: 'nbds://127.0.0.1:10999/r0',
      host: '127.0.0.1',
      port: 10999,
      exportName: 'r0',
      tls: true,
    },
  });
  assert.deepEqual(parseNbdUri('nbd://[::1]:10999/a%20b'), {
    ok: true,
    device: {
      kind: 'nbd-tcp',
      uri: 'nbd://[::1]:10999/a%20b',
      host: '::1',
      port: 10999,
      exportName: 'a b',
      tls: false,
    },
  });
  assert.deepEqual(parseNbdUri('nbd+unix:///r0?socket=/run/tandem/r0.sock'), {
    ok: true,
    device: {
      kind: 'nbd-unix',
      uri: 'nbd+unix:///r0?socket=/run/tandem/r0.sock',
      socketPath: '/run/tandem/r0.sock',
      exportName: 'r0',
      tls: false,
    },
  });
  for (const bad of [
    'nbd://h:0/x',
    'nbd://h:70000/x',
    'nbd+unix:///x',
    'nbd+unix:///x?socket=rel',
    'nbd+unix:///x?sock=/a',
    'nbd://[zz]:1/x',
    'nbd:/x',
  ]) {
    assert.equal(parseNbdUri(bad).ok, false, bad);
  }
  const { config } = parseConfigText(
    [
      'resource r { disk /dev/loop1; meta-disk internal;',
      '  on alpha { node-id 0; address 127.0.0.1:7001; device "nbd+unix:///r?socket=/tmp/a.sock"; }',
      '  on beta { node-id 1; address 127.0.0.2:7001; device "nbd://127.0.0.1:10999/r"; } }',
    ].join('\n'),
    't.res',
  );
  assert.equal(hostForNode(config, 'r', 'alpha')?.volumes[0]?.device.kind, 'nbd-unix');
  assert.equal(hostForNode(config, 'r', 'beta')?.volumes[0]?.device.kind, 'nbd-tcp');
});

test('connections: paths, the short form with a port, per-connection net overrides, meshes', async () => {
  const { config } = await loadConfig(join(GOOD, '21-connection-net-override.res'));
  const r = config.resources[0];
  assert.ok(r);
  assert.equal(r.connections.length, 3);
  const ab = r.connections.find((c) => c.hosts.includes('alpha') && c.hosts.includes('beta'));
  assert.deepEqual(
    ab?.paths[0]?.endpoints.map((e) => e.address.port),
    [7823, 7823],
  );
  assert.equal(ab?.net['protocol'], 'A');
  assert.deepEqual(ab?.netOverrides, { protocol: 'A' });
  const mesh = await loadConfig(join(GOOD, '05-v9-three-node-mesh.res'));
  const m = mesh.config.resources[0];
  assert.deepEqual(
    m?.connections.map((c) => [c.origin, ...c.hosts]),
    [
      ['mesh', 'alpha', 'beta'],
      ['mesh', 'alpha', 'gamma'],
      ['mesh', 'beta', 'gamma'],
    ],
  );
  const mp = await loadConfig(join(GOOD, '07-v9-multipath.res'));
  assert.equal(mp.config.resources[0]?.connections[0]?.paths.length, 2);
});

test('cross-resource checks: duplicate minor, duplicate address:port, duplicate node-id', () => {
  const two = (minor2: number, port2: number): string =>
    `resource r { ${BASE} ${HOSTS} }\nresource s { device /dev/drbd${minor2}; disk /dev/loop2; meta-disk internal; on alpha { node-id 0; address 127.0.0.1:${port2}; } on beta { node-id 1; address 127.0.0.2:${port2}; } }`;
  assert.ok(errorsOf(two(1, 7002)).some((e) => /minor 1 on host 'alpha'/.test(e.message)));
  assert.ok(
    errorsOf(two(2, 7001)).some((e) =>
      /address ipv4 127.0.0.1:7001 of host 'alpha'/.test(e.message),
    ),
  );
  parseConfigText(two(2, 7002), 't.res');
});

test('includes expand globs relative to the including file; a file already read is skipped', async () => {
  const { config } = await loadConfig(join(GOOD, '22-include.res'));
  assert.deepEqual(
    config.resources.map((r) => r.name),
    ['inc_a', 'inc_b'],
  );
  assert.equal(config.files.length, 4);
  assert.equal(config.common.net['protocol'], 'C');
  const dir = mkdtempSync(join(tmpdir(), 'tandem-inc-'));
  try {
    writeFileSync(join(dir, 'a.conf'), 'include "b.conf";\n');
    writeFileSync(join(dir, 'b.conf'), 'include "a.conf";\n');
    // As drbdadm: a.conf is not read again through b.conf.
    const mutual = await loadConfig(join(dir, 'a.conf'));
    assert.deepEqual(mutual.config.files, [join(dir, 'a.conf'), join(dir, 'b.conf')]);
    assert.match(mutual.warnings.map((w) => w.message).join('\n'), /includes itself/);
    writeFileSync(join(dir, 'empty.conf'), 'include "none.d/*.res";\n');
    const empty = await loadConfig(join(dir, 'empty.conf'));
    assert.equal(
      empty.config.resources.length,
      0,
      'a glob matching nothing is not an error (as drbdadm)',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => parseConfigText('include "x.conf";', 't.res'), /given as text/);
});

test('an unreadable configuration file is a ConfigError, not a crash', async () => {
  await assert.rejects(loadConfig('/nonexistent/tandem.conf'), (e: unknown) => {
    assert.ok(e instanceof ConfigFileError);
    assert.match(e.message, /cannot read the configuration/);
    return true;
  });
});

test('dump re-parses to the same model', async () => {
  for (const name of ['20-all-sections.res', '23-ipv6-multipath-3node.res', '18-minor-forms.res']) {
    const { config } = await loadConfig(join(GOOD, name));
    const again = parseConfigText(dumpConfigText(config), 'dump.res');
    assert.deepEqual(
      stripLocations(again.config.resources),
      stripLocations(config.resources),
      name,
    );
  }
});

test('tandem dump prints drbd.conf text or JSON; a bad file exits 10 with located errors', async () => {
  const cli = 'dist/src/cli/main.js';
  const file = join(GOOD, '23-ipv6-multipath-3node.res');
  const text = await run('node', [cli, '--config', file, 'dump']);
  assert.match(text.stdout, /host alpha address ipv6 \[fdaa::1\]:7828;/);
  const json = await run('node', [cli, '--config', file, 'dump', '--json', 'r_mixed']);
  const parsed = JSON.parse(json.stdout) as {
    resources: {
      name: string;
      hosts: { name: string; nodeId: number }[];
      connections: {
        paths: { host: string; address: { family: string; ip: string; port: number } }[][];
      }[];
    }[];
  };
  const r = parsed.resources[0];
  assert.equal(r?.name, 'r_mixed');
  assert.deepEqual(
    r?.hosts.map((h) => [h.name, h.nodeId]),
    [
      ['alpha', 0],
      ['beta', 1],
      ['gamma', 2],
    ],
  );
  assert.deepEqual(r?.connections[0]?.paths[0]?.[0], {
    host: 'alpha',
    address: { family: 'ipv6', ip: 'fdaa::1', port: 7828 },
  });
  await assert.rejects(
    run('node', [
      cli,
      '--config',
      resolve('test/fixtures/drbd-conf/bad/04-misspelt-option.res'),
      'dump',
    ]),
    (e: { code?: number; stderr?: string }) => {
      assert.equal(e.code, 10);
      assert.match(
        e.stderr ?? '',
        /04-misspelt-option\.res:2:\d+: error: .*did you mean 'ping-timeout'/,
      );
      return true;
    },
  );
  await assert.rejects(
    run('node', [cli, '--config', file, 'dump', 'no-such-res']),
    /no resource named no-such-res/,
  );
  const help = await run('node', [cli, 'dump', '--help']);
  assert.match(help.stdout, /--json/);
});

test('docs/CONFIG.md documents every option Tandem knows', () => {
  const doc = readFileSync('docs/CONFIG.md', 'utf8');
  for (const o of [...GLOBAL_OPTIONS, ...Object.values(SECTION_OPTIONS).flat()]) {
    assert.ok(doc.includes(`| \`${o.name}\` |`), `docs/CONFIG.md lacks ${o.name}`);
  }
});

test("Tandem's own configuration: NBD device URIs per host, multipath transport, per-volume devices", async () => {
  const { config, warnings } = await loadConfig(
    resolve('test/fixtures/tandem-conf/nbd-devices.conf'),
  );
  const alpha = requireHostForNode(config, 'r0', 'alpha');
  assert.deepEqual(alpha.volumes[0]?.device, {
    kind: 'nbd-unix',
    uri: 'nbd+unix:///r0?socket=/run/tandem/alpha-r0.sock',
    socketPath: '/run/tandem/alpha-r0.sock',
    exportName: 'r0',
    tls: false,
  });
  assert.equal(requireHostForNode(config, 'r0', 'beta').volumes[0]?.device.kind, 'nbd-tcp');
  const r0 = config.resources[0];
  assert.equal(r0?.sections.net['transport'], 'multipath');
  assert.equal(r0?.sections.net['load-balance-paths'], true);
  assert.equal(r0?.connections[0]?.paths.length, 2);
  assert.deepEqual(
    requireHostForNode(config, 'r1', 'beta').volumes.map(
      (v) => v.device.kind === 'nbd-unix' && v.device.exportName,
    ),
    ['r1-0', 'r1-1'],
  );
  assert.deepEqual(
    warnings.map((w) => w.message),
    ["DRBD option 'usage-count' is accepted but not implemented by Tandem: it has no effect"],
  );
  const again = parseConfigText(dumpConfigText(config), 'dump.conf');
  assert.deepEqual(stripLocations(again.config.resources), stripLocations(config.resources));
});

test('three hosts without connections: a warning (drbdadm warns too) and a full mesh', () => {
  const { config, warnings } = parseConfigText(
    `resource r { ${BASE} ${HOSTS} on gamma { node-id 2; address 127.0.0.3:7001; } }`,
    't.res',
  );
  assert.ok(
    warnings.some((w) => /3 hosts but no 'connection' or 'connection-mesh'/.test(w.message)),
  );
  assert.deepEqual(
    config.resources[0]?.connections.map((c) => c.hosts.join('-')),
    ['alpha-beta', 'alpha-gamma', 'beta-gamma'],
  );
});

test('the host section of a node: any name of `on A B`, an FQDN by its short name, else _this_host', () => {
  const { config } = parseConfigText(
    `resource r {
       device /dev/drbd1; disk /dev/loop1; meta-disk internal;
       on alpha alpha-spare { node-id 0; address 127.0.0.1:7001; }
       on beta.example.com { node-id 1; address 127.0.0.2:7001; }
       _this_host { node-id 2; address 127.0.0.3:7001; }
       connection-mesh { hosts alpha beta.example.com _this_host; }
     }`,
    't.res',
  );
  assert.equal(hostForNode(config, 'r', 'alpha')?.name, 'alpha');
  assert.equal(hostForNode(config, 'r', 'alpha-spare')?.name, 'alpha');
  assert.deepEqual(hostForNode(config, 'r', 'alpha-spare')?.names, ['alpha', 'alpha-spare']);
  assert.equal(hostForNode(config, 'r', 'BETA')?.name, 'beta.example.com');
  assert.equal(hostForNode(config, 'r', 'beta.other.org')?.name, '_this_host');
  assert.equal(hostForNode(config, 'r', 'gamma')?.name, '_this_host');
  assert.equal(requireHostForNode(config, 'r', 'alpha-spare').address?.ip, '127.0.0.1');
});

test('older spellings read into the sections drbdadm 9 puts them in', () => {
  const { config, warnings } = parseConfigText(
    `common { protocol a; syncer { verify-alg sha1; } }
     resource r {
       syncer { al-extents 257; after r2; cpu-mask 3; no-use-rle; }
       disk { no-disk-flushes; no-md-flushes yes; }
       startup { become-primary-on alpha beta; wait-after-sb no; }
       device /dev/drbd1; disk /dev/loop1; meta-disk internal;
       on alpha { address sci 127.0.0.1 : 7001; } on beta { address sci 127.0.0.2:7001; }
     }
     resource r2 { device /dev/drbd2; disk /dev/loop2; meta-disk internal;
       on alpha { address 127.0.0.1:7002; } on beta { address 127.0.0.2:7002; } }`,
    't.res',
  );
  const r = config.resources[0]!;
  assert.equal(r.sections.net['protocol'], 'A');
  assert.equal(r.sections.net['verify-alg'], 'sha1');
  assert.equal(r.sections.net['use-rle'], false);
  assert.equal(r.sections.disk['al-extents'], 257);
  assert.equal(r.sections.disk['resync-after'], 'r2');
  assert.equal(r.sections.disk['disk-flushes'], false);
  assert.equal(r.sections.disk['md-flushes'], true);
  assert.equal(r.sections.options['cpu-mask'], '3');
  assert.equal(r.sections.startup['become-primary-on'], 'alpha beta');
  assert.equal(r.sections.startup['wait-after-sb'], false);
  assert.deepEqual(r.hosts[0]?.address, { family: 'ssocks', ip: '127.0.0.1', port: 7001 });
  assert.match(warnings.map((w) => w.message).join('\n'), /'no-md-flushes yes' sets 'md-flushes'/);
});
