// The transport doctor against fake /sys and /proc trees: each miss is found and comes with a
// fix, and a healthy IPoIB node passes. The trees are real directories read by rootedFs, the
// same reader `tandem doctor --sysroot` uses.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { rootedFs } from '../../../src/cli/commands/doctor.js';
import {
  formatDoctor,
  runDoctor,
  type DoctorInput,
  type DoctorTarget,
} from '../../../src/transport/fabric/doctor.js';

function tree(files: Record<string, string>): { root: string; done: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'tandem-doctor-'));
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, p)), { recursive: true });
    writeFileSync(join(root, p), `${content}\n`);
  }
  return { root, done: () => rmSync(root, { recursive: true, force: true }) };
}

const sdp = (over: Partial<DoctorTarget> = {}): DoctorTarget => ({
  resource: 'r0',
  family: 'sdp',
  ip: '10.9.0.1',
  port: 7000,
  transport: 'rdma',
  sndbufBytes: 0,
  rcvbufBytes: 0,
  ...over,
});

const healthy = {
  'sys/class/net/ib0/type': '32',
  'sys/class/net/ib0/mode': 'connected',
  'sys/class/net/ib0/mtu': '65520',
  'sys/class/infiniband/mlx5_0/ports/1/state': '4: ACTIVE',
  'sys/class/infiniband/mlx5_0/ports/1/phys_state': '5: LinkUp',
  'sys/class/infiniband/mlx5_0/ports/1/link_layer': 'InfiniBand',
  'proc/sys/net/core/wmem_max': '4194304',
  'proc/sys/net/core/rmem_max': '4194304',
};

function input(root: string, over: Partial<DoctorInput> = {}): DoctorInput {
  return {
    targets: [sdp()],
    fs: rootedFs(root),
    interfaces: { lo: ['127.0.0.1'], ib0: ['10.9.0.1'] },
    providers: { ok: true, names: ['verbs', 'tcp', 'sockets'] },
    ...over,
  };
}

const byId = (r: ReturnType<typeof runDoctor>, id: string) => r.checks.filter((c) => c.id === id);

test('doctor: a healthy IPoIB node with an active port and verbs passes', () => {
  const t = tree(healthy);
  try {
    const r = runDoctor(input(t.root, { targets: [sdp({ sndbufBytes: 1 << 20 })] }));
    assert.equal(r.ok, true, formatDoctor(r));
    assert.ok(
      r.checks.every((c) => c.status === 'ok'),
      formatDoctor(r),
    );
    assert.deepEqual(
      r.checks.map((c) => c.id),
      [
        'ipoib-address',
        'ipoib-interface',
        'ipoib-mode',
        'ipoib-mtu',
        'rdma-port',
        'libfabric',
        'fabric-provider',
        'socket-buffers',
      ],
    );
  } finally {
    t.done();
  }
});

test('doctor: datagram mode, small MTU, port in INIT (no subnet manager), big sndbuf', () => {
  const t = tree({
    ...healthy,
    'sys/class/net/ib0/mode': 'datagram',
    'sys/class/net/ib0/mtu': '2044',
    'sys/class/infiniband/mlx5_0/ports/1/state': '2: INIT',
    'proc/sys/net/core/wmem_max': '212992',
  });
  try {
    const r = runDoctor(input(t.root, { targets: [sdp({ sndbufBytes: 8 << 20 })] }));
    assert.equal(r.ok, false);
    assert.equal(byId(r, 'ipoib-mode')[0]?.status, 'warn');
    assert.match(
      byId(r, 'ipoib-mode')[0]?.fix ?? '',
      /echo connected > \/sys\/class\/net\/ib0\/mode/,
    );
    // In datagram mode a small MTU is expected; the mode warning carries the fix.
    assert.equal(byId(r, 'ipoib-mtu')[0]?.status, 'ok');
    const sm = byId(r, 'subnet-manager')[0];
    assert.equal(sm?.status, 'fail');
    assert.match(sm?.fix ?? '', /opensm/);
    const buf = byId(r, 'socket-buffers')[0];
    assert.equal(buf?.status, 'warn');
    assert.match(buf?.fix ?? '', /sysctl -w net\.core\.wmem_max=8388608/);
    assert.match(formatDoctor(r), /FAIL mlx5_0 port 1/);
  } finally {
    t.done();
  }
});

test('doctor: connected mode below 65520 and above it', () => {
  for (const [mtu, status] of [
    ['9000', 'warn'],
    ['65536', 'fail'],
  ] as const) {
    const t = tree({ ...healthy, 'sys/class/net/ib0/mtu': mtu });
    try {
      const c = byId(runDoctor(input(t.root)), 'ipoib-mtu')[0];
      assert.equal(c?.status, status, mtu);
      assert.match(c?.fix ?? '', /ip link set ib0 mtu 65520/);
    } finally {
      t.done();
    }
  }
});

test('doctor: address missing, no RDMA device, addon missing', () => {
  const t = tree({ 'proc/sys/net/core/wmem_max': '212992' });
  try {
    const r = runDoctor(
      input(t.root, {
        interfaces: { lo: ['127.0.0.1'] },
        providers: { ok: false, error: 'native addon is not built: install libfabric-dev' },
      }),
    );
    assert.equal(r.ok, false);
    assert.equal(byId(r, 'ipoib-address')[0]?.status, 'fail');
    assert.match(byId(r, 'ipoib-address')[0]?.fix ?? '', /ip addr add 10\.9\.0\.1/);
    assert.equal(byId(r, 'rdma-device')[0]?.status, 'fail');
    assert.match(byId(r, 'rdma-device')[0]?.fix ?? '', /rdma link add rxe0 type rxe/);
    assert.match(byId(r, 'libfabric')[0]?.message ?? '', /libfabric-dev/);
  } finally {
    t.done();
  }
});

test('doctor: ssocks wants an Ethernet fallback; verbs missing is a warning, a named provider a failure', () => {
  const t = tree(healthy);
  try {
    const alone = runDoctor(
      input(t.root, {
        targets: [sdp({ family: 'ssocks' })],
        providers: { ok: true, names: ['tcp'] },
      }),
    );
    assert.equal(byId(alone, 'ssocks-fallback')[0]?.status, 'warn');
    assert.equal(byId(alone, 'fabric-provider')[0]?.status, 'warn');
    const withFallback = runDoctor(
      input(t.root, {
        targets: [
          sdp({ family: 'ssocks' }),
          sdp({ family: 'ipv4', ip: '192.0.2.2', transport: 'tcp' }),
        ],
      }),
    );
    assert.equal(byId(withFallback, 'ssocks-fallback')[0]?.status, 'ok');
    const named = runDoctor(input(t.root, { targets: [sdp({ provider: 'psm3' })] }));
    assert.equal(byId(named, 'fabric-provider')[0]?.status, 'fail');
  } finally {
    t.done();
  }
});

test('doctor: a plain tcp resource has nothing fabric to check', () => {
  const t = tree({});
  try {
    const r = runDoctor(input(t.root, { targets: [sdp({ family: 'ipv4', transport: 'tcp' })] }));
    assert.deepEqual(r.checks, []);
    assert.equal(r.ok, true);
    assert.match(formatDoctor(r), /nothing to check/);
  } finally {
    t.done();
  }
});

test('tandem doctor RES --json reads the configuration and a --sysroot tree', async () => {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  const run = promisify(execFile);
  // lo carries 127.0.0.1 on every machine; the fake tree makes it look like IPoIB.
  const t = tree({
    ...healthy,
    'sys/class/net/lo/type': '32',
    'sys/class/net/lo/mode': 'datagram',
    'sys/class/net/lo/mtu': '65520',
    'etc/tandem.conf': [
      'resource r_ib {',
      '  device /dev/drbd9; disk /dev/loop29; meta-disk internal;',
      '  net { sndbuf-size 8M; }',
      '  on alpha { node-id 0; address sdp 127.0.0.1:7811; }',
      '  on beta  { node-id 1; address sdp 127.0.0.2:7811; }',
      '}',
    ].join('\n'),
  });
  try {
    const args = [
      'dist/src/cli/main.js',
      '--config',
      join(t.root, 'etc/tandem.conf'),
      '--node',
      'alpha',
    ];
    const r = await run('node', [...args, 'doctor', 'r_ib', '--json', '--sysroot', t.root]).catch(
      (e: { stdout: string; code: number }) => e,
    );
    const report = JSON.parse(r.stdout) as ReturnType<typeof runDoctor>;
    const status = (id: string) => report.checks.find((c) => c.id === id)?.status;
    assert.equal(status('ipoib-address'), 'ok');
    assert.equal(status('ipoib-interface'), 'ok');
    assert.equal(status('ipoib-mode'), 'warn');
    assert.equal(status('rdma-port'), 'ok');
    const buf = report.checks.find((c) => c.id === 'socket-buffers');
    assert.equal(buf?.status, 'warn', JSON.stringify(report.checks));
    assert.match(buf?.fix ?? '', /wmem_max=8388608/);
    await assert.rejects(
      run('node', [...args, 'doctor', 'nope', '--sysroot', t.root]),
      /no resource nope/,
    );
  } finally {
    t.done();
  }
});
