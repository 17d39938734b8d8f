// tandem-solo, the bench's single-host Tandem: its one-node configuration loads, the system
// starts (create-md, up, primary --force), takes writes on its export, reports them in its
// write-stage breakdown the way the runner reads it, and leaves no process behind when stopped.
// No fio and no timing: the harness's contract only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Children } from '../../bench/children.js';
import { stagesBetween } from '../../bench/runner.js';
import { renderPairConfig, tandemSoloSystem } from '../../bench/systems/tandem-pair.js';
import { parseConfigText } from '../../src/config/load.js';
import { NbdClient } from '../../src/nbd/client.js';

const MIB = 2 ** 20;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('renderPairConfig with one node: a resource with a single `on` host', () => {
  const text = renderPairConfig('C', 'tcp', [
    {
      name: 'alpha',
      nodeId: 0,
      nbdPort: 40001,
      replicationPorts: [40002],
      disk: '/var/tmp/b/alpha.img',
      metaDisk: '/var/tmp/b/alpha.md',
    },
  ]);
  const r = parseConfigText(text, 'solo.conf').config.resources[0];
  assert.ok(r !== undefined);
  assert.deepEqual(
    r.hosts.map((h) => h.name),
    ['alpha'],
  );
  assert.equal(r.connections.length, 0);
});

test('tandem-solo starts Primary, takes writes, reports their stages, stops cleanly', async () => {
  assert.deepEqual(await tandemSoloSystem.probe(), { available: true });
  const storageDir = await mkdtemp(join(tmpdir(), 'tb-solo-data-'));
  const runDir = await mkdtemp(join(tmpdir(), 'tb-solo-'));
  const children = new Children();
  const log: string[] = [];
  try {
    const sys = await tandemSoloSystem.start({
      storageDir,
      runDir,
      fileSizeBytes: 32 * MIB,
      children,
      log: (l) => log.push(l),
      nodeArgs: [],
    });
    const pids = sys.pids();
    try {
      assert.equal(pids.length, 1, 'one daemon');
      const u = /^nbd:\/\/127\.0\.0\.1:(\d+)\/bench$/.exec(sys.uri);
      assert.ok(u !== null, sys.uri);
      assert.ok(sys.writeStages !== undefined);
      const before = await sys.writeStages();
      const nbd = await NbdClient.connect({
        listener: { kind: 'tcp', host: '127.0.0.1', port: Number(u[1]) },
        exportName: 'bench',
      });
      const writes = 24;
      for (let i = 0; i < writes; i++) await nbd.write(i * MIB, Buffer.alloc(4096, i + 1));
      await nbd.disconnect();
      const d = stagesBetween(before, await sys.writeStages());
      assert.ok(d !== null);
      assert.equal(d.total.count, writes);
      assert.equal(d.engine.count, writes);
      assert.equal(d.disk.count, writes);
      assert.equal(d.peer.count, 0, 'no peer to ack');
      assert.ok(d.barrier.count >= 1, 'the first write into an extent waits for its AL commit');
      assert.ok(d.total.p50Us > 0 && d.disk.p50Us > 0);
    } finally {
      await sys.stop();
    }
    for (const pid of pids) assert.equal(alive(pid), false, `daemon ${pid} stopped`);
    await sys.stop(); // idempotent
  } finally {
    await children.stopAll();
    await rm(storageDir, { recursive: true, force: true });
    await rm(runDir, { recursive: true, force: true });
  }
});
