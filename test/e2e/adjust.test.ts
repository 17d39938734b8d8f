// `tandem adjust` with real daemons: the configuration file changes under two running nodes and
// adjust applies it like drbdadm adjust: new resync and net options in effect (seen by `tandem
// show`), new ports on both nodes reconnect over them (the old ones closed), and a resource
// added to the file comes up. Fails if adjust only reports what it would do, or reconnects on
// the old addresses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, type LocalCluster } from '../../src/cli/local-cluster.js';
import type { ResourceShow } from '../../src/daemon/resource.js';
import { allConnected } from '../../src/cli/event-state.js';
import { MIB, skipInitialSync, status, waitConnected, withPair } from './support.js';

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function show(c: LocalCluster, node: string, resource = c.resource): Promise<ResourceShow> {
  const all = JSON.parse(await c.tandem(node, 'show', resource, '--json')) as ResourceShow[];
  const r = all[0];
  assert.ok(r !== undefined);
  return r;
}

async function edit(c: LocalCluster, change: (text: string) => string): Promise<void> {
  const before = await readFile(c.configPath, 'utf8');
  const after = change(before);
  assert.notEqual(after, before, 'the edit changed the configuration');
  await writeFile(c.configPath, after);
}

function portOf(text: string, node: string): number {
  const m = new RegExp(`on ${node} \\{[^}]*?address (?:ipv4 )?127\\.0\\.0\\.1:(\\d+);`).exec(text);
  assert.ok(m?.[1] !== undefined, `${node}'s address in the configuration`);
  return Number(m[1]);
}

test('adjust applies options live, moves both nodes to new ports, and brings up a new resource', async () => {
  await withPair({ diskBytes: 16 * MIB }, async (c) => {
    await skipInitialSync(c, 'alice');

    // 1. Options: the resync controller and a net option.
    await edit(c, (t) =>
      t
        .replace('  disk {\n', '  disk {\n    resync-rate 12M;\n')
        .replace(
          'protocol C;\n',
          'protocol C;\n    max-epoch-size 1000;\n    verify-alg sha256;\n',
        ),
    );
    const dry = await c.tandem('alice', 'adjust', '--dry-run');
    assert.match(dry, /r0: would apply .*resync-rate \(default\) -> 12288/);
    assert.equal((await show(c, 'alice')).resync.resyncRateBytesPerSec, 250 * 1024, 'dry run');
    for (const n of ['alice', 'bob']) {
      const out = await c.tandem(n, 'adjust', c.resource);
      assert.match(out, /r0: applied .*net max-epoch-size \(default\) -> 1000/);
      const s = await show(c, n);
      assert.equal(s.resync.resyncRateBytesPerSec, 12 * MIB);
      assert.equal(s.maxEpochSize, 1000);
      assert.equal(s.verifyAlg, 'sha256');
      assert.equal(s.csumsAlg, null);
      assert.match(await c.tandem(n, 'show', c.resource), /\n {4}verify-alg sha256;\n/);
    }
    assert.match(await c.tandem('alice', 'adjust'), /all resources: no changes/);

    // 2. New ports on both nodes: each adjust listens on its new port, closes the old one and
    // reconnects the peer on its new port.
    const text = await readFile(c.configPath, 'utf8');
    const old = { alice: portOf(text, 'alice'), bob: portOf(text, 'bob') };
    const port = { alice: await freePort(), bob: await freePort() };
    await edit(c, (t) =>
      t
        .replace(`127.0.0.1:${old.alice};`, `127.0.0.1:${port.alice};`)
        .replace(`127.0.0.1:${old.bob};`, `127.0.0.1:${port.bob};`),
    );
    const a = await c.tandem('alice', 'adjust');
    assert.match(a, new RegExp(`listening on tcp:127\\.0\\.0\\.1:${port.alice}`));
    assert.match(
      a,
      new RegExp(
        `reconnected bob \\(paths tcp:127\\.0\\.0\\.1:${old.bob} -> tcp:127\\.0\\.0\\.1:${port.bob}\\)`,
      ),
    );
    assert.equal(await accepts(old.alice), false, "alice's old port is closed");
    await c.tandem('bob', 'adjust');
    assert.equal(await accepts(old.bob), false, "bob's old port is closed");
    await waitConnected(c, 'alice');
    await waitConnected(c, 'bob');
    const peer = (await status(c, 'alice')).peers[0];
    assert.ok(peer !== undefined);
    assert.deepEqual(
      peer.paths.map((p) => [p.remote, p.established]),
      [[`127.0.0.1:${port.bob}`, true]],
    );

    // 3. A second resource in the file: create-md on both nodes, adjust brings it up.
    const r1 = {
      alice: join(c.dir, 'alice-r1.img'),
      bob: join(c.dir, 'bob-r1.img'),
    };
    const r1Ports = { alice: await freePort(), bob: await freePort() };
    const nbd = { alice: join(c.dir, 'alice-r1.nbd'), bob: join(c.dir, 'bob-r1.nbd') };
    for (const n of ['alice', 'bob'] as const) {
      await writeFile(r1[n], '');
      await truncate(r1[n], 8 * MIB);
    }
    const host = (n: 'alice' | 'bob', id: number): string =>
      [
        `  on ${n} {`,
        `    node-id ${id};`,
        `    address 127.0.0.1:${r1Ports[n]};`,
        `    device "nbd+unix:///r1?socket=${nbd[n]}";`,
        `    disk ${r1[n]};`,
        '    meta-disk internal;',
        '  }',
      ].join('\n');
    await edit(c, (t) => `${t}\nresource r1 {\n${host('alice', 0)}\n${host('bob', 1)}\n}\n`);
    for (const n of ['alice', 'bob']) await c.tandem(n, 'create-md', 'r1');
    const dryUp = await c.tandem('alice', 'adjust', '--dry-run');
    assert.match(dryUp, /r1: would bring up/);
    for (const n of ['alice', 'bob'])
      assert.match(await c.tandem(n, 'adjust'), /r1: brought up \(configured, not up here\)/);
    for (const n of ['alice', 'bob'])
      await c.waitFor(n, 'r1 connected', (s) => allConnected(s, 'r1'), 30_000);
    assert.equal((await show(c, 'alice', 'r1')).up, true);
    // r0 is still connected and untouched.
    assert.equal((await status(c, 'alice')).peers[0]?.connection, 'Connected');

    // 4. A resource removed from the file keeps running, with a warning.
    await edit(c, (t) => t.slice(0, t.indexOf('\nresource r1 {')));
    const kept = await c.tandem('alice', 'adjust');
    assert.match(kept, /r1: warning: no longer in the configuration; left running/);
    assert.equal((await show(c, 'alice', 'r1')).up, true);
  });
});
