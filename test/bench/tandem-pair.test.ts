// The two-node configuration the harness writes must be one Tandem's own config loader accepts,
// with each node's device, disk, external metadata, address and the protocol where expected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../../src/config/load.js';
import {
  rampSeconds,
  renderPairConfig,
  tandemPairSystems,
} from '../../bench/systems/tandem-pair.js';
import { tlsFilesOf } from '../../src/config/index.js';

test('renderPairConfig: parsed by loadConfig as two nodes with the asked protocol', () => {
  for (const protocol of ['A', 'B', 'C'] as const) {
    const text = renderPairConfig(protocol, 'tcp', [
      {
        name: 'alpha',
        nodeId: 0,
        nbdPort: 40001,
        replicationPorts: [40002],
        disk: '/var/tmp/b/alpha.img',
        metaDisk: '/var/tmp/b/alpha.md',
      },
      {
        name: 'beta',
        nodeId: 1,
        nbdPort: 40003,
        replicationPorts: [40004],
        disk: '/var/tmp/b/beta.img',
        metaDisk: '/var/tmp/b/beta.md',
      },
    ]);
    const { config } = parseConfigText(text, 'bench.conf');
    const r = config.resources.find((x) => x.name === 'bench');
    assert.ok(r !== undefined);
    assert.equal(r.sections.net['protocol'], protocol);
    assert.equal(r.sections.net['transport'], 'tcp');
    assert.equal(r.sections.disk['c-plan-ahead'], 0);
    assert.equal(r.sections.disk['resync-rate'], 8388608);
    assert.deepEqual(
      r.hosts.map((h) => h.name),
      ['alpha', 'beta'],
    );
    const alpha = r.hosts[0];
    assert.ok(alpha !== undefined);
    assert.equal(alpha.nodeId, 0);
    assert.deepEqual(alpha.address, { family: 'ipv4', ip: '127.0.0.1', port: 40002 });
    const v = alpha.volumes[0];
    assert.ok(v !== undefined);
    assert.equal(v.disk, '/var/tmp/b/alpha.img');
    assert.deepEqual(v.metaDisk, { kind: 'flexible', path: '/var/tmp/b/alpha.md' });
    assert.equal(v.device.kind, 'nbd-tcp');
    if (v.device.kind === 'nbd-tcp') assert.equal(v.device.port, 40001);
  }
});

test('renderPairConfig: fabric names its transport; multipath gives one connection path per port', () => {
  const nodes = [
    {
      name: 'alpha',
      nodeId: 0,
      nbdPort: 41001,
      replicationPorts: [41002, 41003],
      disk: '/d/a.img',
      metaDisk: '/d/a.md',
    },
    {
      name: 'beta',
      nodeId: 1,
      nbdPort: 41004,
      replicationPorts: [41005, 41006],
      disk: '/d/b.img',
      metaDisk: '/d/b.md',
    },
  ];
  const fabric = parseConfigText(renderPairConfig('C', 'fabric', nodes), 'f.conf').config
    .resources[0];
  assert.equal(fabric?.sections.net['transport'], 'fabric');
  const mp = parseConfigText(renderPairConfig('C', 'multipath', nodes), 'm.conf').config
    .resources[0];
  assert.ok(mp !== undefined);
  assert.equal(mp.sections.net['transport'], 'multipath');
  assert.equal(mp.connections.length, 1);
  const paths = mp.connections[0]?.paths ?? [];
  assert.deepEqual(
    paths.map((p) => p.endpoints.map((e) => `${e.host}@${e.address.port}`)),
    [
      ['alpha@41002', 'beta@41005'],
      ['alpha@41003', 'beta@41006'],
    ],
  );
});

test('renderPairConfig: without disk flushes the loader sees disk-flushes and md-flushes off', () => {
  const nodes = [
    {
      name: 'alpha',
      nodeId: 0,
      nbdPort: 1,
      replicationPorts: [2],
      disk: '/d/a',
      metaDisk: '/d/a.md',
    },
    {
      name: 'beta',
      nodeId: 1,
      nbdPort: 3,
      replicationPorts: [4],
      disk: '/d/b',
      metaDisk: '/d/b.md',
    },
  ];
  const on = parseConfigText(renderPairConfig('C', 'tcp', nodes), 'a.conf').config.resources[0];
  assert.equal(
    on?.sections.disk['disk-flushes'],
    undefined,
    'the default (flushes on) is left to the daemon',
  );
  const off = parseConfigText(renderPairConfig('C', 'tcp', nodes, false), 'b.conf').config
    .resources[0];
  assert.equal(off?.sections.disk['disk-flushes'], false);
  assert.equal(off?.sections.disk['md-flushes'], false);
  assert.equal(off?.sections.disk['resync-rate'], 8388608);
});

test('renderPairConfig with TLS: one node file with tls yes and its own files; tandem-C-tls exists', () => {
  const nodes = ['alpha', 'beta'].map((name, i) => ({
    name,
    nodeId: i,
    nbdPort: 42001 + 2 * i,
    replicationPorts: [42002 + 2 * i],
    disk: `/d/${name}.img`,
    metaDisk: `/d/${name}.md`,
  }));
  const tls = { certificate: '/t/alpha.pem', privkey: '/t/alpha.key', ca: '/t/ca.pem' };
  const { config } = parseConfigText(
    renderPairConfig('C', 'tcp', nodes, true, false, tls),
    'b.conf',
  );
  const r = config.resources[0];
  assert.ok(r !== undefined);
  assert.deepEqual(tlsFilesOf(r.sections.net), tls);
  const plain = parseConfigText(renderPairConfig('C', 'tcp', nodes), 'b.conf').config.resources[0];
  assert.equal(tlsFilesOf(plain?.sections.net ?? {}), null);
  const system = tandemPairSystems.find((s) => s.id === 'tandem-C-tls');
  assert.ok(system !== undefined, 'the bench has tandem-C-tls');
  assert.match(system.label, /TLS/);
});

test('renderPairConfig with resync defaults writes no resync option', () => {
  const node = (name: string, nodeId: number) => ({
    name,
    nodeId,
    nbdPort: 42001 + nodeId,
    replicationPorts: [42011 + nodeId],
    disk: `/d/${name}.img`,
    metaDisk: `/d/${name}.md`,
  });
  const text = renderPairConfig('C', 'tcp', [node('alpha', 0), node('beta', 1)], true, true);
  const r = parseConfigText(text, 'bench.conf').config.resources[0];
  assert.ok(r !== undefined);
  for (const k of ['c-plan-ahead', 'resync-rate', 'c-max-rate', 'c-fill-target'])
    assert.equal(r.sections.disk[k], undefined, k);
});

test('rampSeconds: the first trailing window whose out-of-sync drop reaches the rate', () => {
  const MiB = 1024 * 1024;
  // 20 MiB/s for 2 s, then 100 MiB/s: sampled every 250 ms.
  const samples: { ms: number; outOfSyncBytes: number }[] = [];
  let oos = 1024 * MiB;
  for (let ms = 0; ms <= 6000; ms += 250) {
    samples.push({ ms, outOfSyncBytes: oos });
    oos -= (ms < 2000 ? 20 : 100) * MiB * 0.25;
  }
  assert.equal(rampSeconds(samples, 100 * MiB), 3);
  assert.equal(rampSeconds(samples.slice(0, 9), 100 * MiB), null, 'never at the rate');
  assert.equal(rampSeconds([], 100 * MiB), null);
});
