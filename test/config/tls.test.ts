// net { tls yes; } in the configuration: the three PEM files are required and absolute, the
// typed view (tlsFilesOf, the daemon's plans) carries them, TLS is refused with multipath and
// fabric (rather than run in clear), and one listening address never mixes TLS and plain TCP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigFileError,
  parseConfigText,
  tlsFilesOf,
  type ConfigDiagnostic,
} from '../../src/config/index.js';
import { planResource } from '../../src/daemon/resource-config.js';

const BASE = `device "nbd+unix:///r?socket=/tmp/r.sock"; disk /tmp/r.img; meta-disk internal;`;
const HOSTS = `on alpha { node-id 0; address 127.0.0.1:7001; } on beta { node-id 1; address 127.0.0.2:7001; }`;
const FILES = `tls-certificate /etc/tandem/alpha.pem; tls-privkey /etc/tandem/alpha.key; tls-ca /etc/tandem/ca.pem;`;

function errorsOf(text: string): ConfigDiagnostic[] {
  try {
    parseConfigText(text, 'test.res');
  } catch (e) {
    assert.ok(e instanceof ConfigFileError, String(e));
    return e.diagnostics.filter((d) => d.severity === 'error');
  }
  assert.fail('expected the configuration to be rejected');
}

test('tls yes with its three files: typed on the resource, each connection and the plan', () => {
  const { config, warnings } = parseConfigText(
    `resource r { ${BASE} net { tls yes; ${FILES} } ${HOSTS} }`,
    'test.res',
  );
  assert.deepEqual(warnings, []);
  const r = config.resources[0];
  assert.ok(r);
  const files = {
    certificate: '/etc/tandem/alpha.pem',
    privkey: '/etc/tandem/alpha.key',
    ca: '/etc/tandem/ca.pem',
  };
  assert.deepEqual(tlsFilesOf(r.sections.net), files);
  assert.equal(r.sections.net['tls'], true);
  assert.deepEqual(tlsFilesOf(r.connections[0]?.net ?? {}), files);
  const plan = planResource(r, 'alpha');
  assert.deepEqual(plan.tls, files);
  assert.deepEqual(plan.peers[0]?.tls, files);
});

test('tls defaults to no; tls no keeps the files for other users (NBD) but plain replication', () => {
  const { config } = parseConfigText(`resource r { ${BASE} net { ${FILES} } ${HOSTS} }`, 't.res');
  const r = config.resources[0];
  assert.ok(r);
  assert.equal(tlsFilesOf(r.sections.net), null);
  assert.equal(planResource(r, 'alpha').peers[0]?.tls, null);
  assert.equal(planResource(r, 'alpha').tls, null);
});

test('common { net { tls yes; } } is inherited; a connection may override it', () => {
  const { config } = parseConfigText(
    `common { net { tls yes; ${FILES} } } resource r { ${BASE} ${HOSTS} }`,
    't.res',
  );
  assert.equal(config.resources[0]?.sections.net['tls'], true);
});

test('tls yes without a file names each missing option', () => {
  const errs = errorsOf(
    `resource r { ${BASE} net { tls yes; tls-certificate /etc/a.pem; } ${HOSTS} }`,
  );
  const text = errs.map((e) => e.message).join('\n');
  assert.match(text, /tls yes needs tls-privkey \(a PEM file\)/);
  assert.match(text, /tls yes needs tls-ca \(a PEM file\)/);
  assert.doesNotMatch(text, /needs tls-certificate/);
  assert.equal(errs.length, 2, text);
});

test('a per-connection tls yes is checked there, located at the connection', () => {
  const errs = errorsOf(
    `resource r { ${BASE} on alpha { node-id 0; } on beta { node-id 1; }
     connection { host alpha address 127.0.0.1:7001; host beta address 127.0.0.2:7001;
       net { tls yes; tls-ca /etc/ca.pem; } } }`,
  );
  assert.ok(errs.length >= 2);
  for (const e of errs) assert.equal(e.location.line, 2, e.message);
  assert.match(errs[0]?.message ?? '', /connection alpha-beta: net: tls yes needs tls-certificate/);
});

test('relative PEM paths are refused (tandemd runs from another directory)', () => {
  const errs = errorsOf(
    `resource r { ${BASE} net { tls yes; tls-certificate a.pem; tls-privkey /k; tls-ca /c; } ${HOSTS} }`,
  );
  assert.equal(errs.length, 1);
  assert.match(errs[0]?.message ?? '', /tls-certificate "a.pem" must be an absolute path/);
});

test('tls is a boolean: tls maybe is an error', () => {
  const errs = errorsOf(`resource r { ${BASE} net { tls maybe; ${FILES} } ${HOSTS} }`);
  assert.equal(errs.length, 1);
  assert.match(errs[0]?.message ?? '', /tls/);
});

test('tls with multipath, fabric, several paths or ssocks is refused, not run in clear', () => {
  for (const [net, hosts, why] of [
    ['transport multipath;', HOSTS, /not with transport multipath/],
    ['transport rdma;', HOSTS, /not with transport rdma/],
    ['load-balance-paths yes;', HOSTS, /not with load-balance-paths/],
    [
      '',
      'on alpha { node-id 0; address sdp 10.0.0.1:7001; } on beta { node-id 1; address sdp 10.0.0.2:7001; }',
      /not over address sdp/,
    ],
    [
      '',
      'on alpha { node-id 0; address ssocks 10.0.0.1:7001; } on beta { node-id 1; address ssocks 10.0.0.2:7001; }',
      /not over address ssocks/,
    ],
    [
      '',
      `on alpha { node-id 0; } on beta { node-id 1; } connection {
         path { host alpha address 127.0.0.1:7001; host beta address 127.0.0.2:7001; }
         path { host alpha address 127.0.0.3:7001; host beta address 127.0.0.4:7001; } }`,
      /not over 2 paths \(a multipath session\)/,
    ],
  ] as const) {
    const errs = errorsOf(`resource r { ${BASE} net { tls yes; ${FILES} ${net} } ${hosts} }`);
    assert.ok(
      errs.some(
        (e) =>
          why.test(e.message) && /tls yes is supported on the tcp transport only/.test(e.message),
      ),
      `${String(why)}: ${errs.map((e) => e.message).join('; ')}`,
    );
  }
});

test('one listening address serving a TLS and a plain connection is an error', () => {
  const errs = errorsOf(
    `resource r { ${BASE}
       on alpha { node-id 0; address 127.0.0.1:7001; }
       on beta { node-id 1; address 127.0.0.2:7001; }
       on gamma { node-id 2; address 127.0.0.3:7001; }
       connection { host alpha; host beta; net { tls yes; ${FILES} } }
       connection { host alpha; host gamma; }
       connection { host beta; host gamma; } }`,
  );
  assert.ok(
    errs.some((e) =>
      /host 'alpha' listens on ipv4 127.0.0.1:7001 for 'beta' and 'gamma' with different tls settings/.test(
        e.message,
      ),
    ),
    errs.map((e) => e.message).join('\n'),
  );
});
