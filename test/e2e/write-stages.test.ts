// Where a write's time goes, seen as an operator sees it: writes through alice's NBD export
// (protocol C, bob connected) show up in `tandem status --json` as a per-stage breakdown whose
// counts match the writes, and in `tandem status` as one p50 line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NbdClient } from '../../src/nbd/client.js';
import { MIB, skipInitialSync, status, withPair } from './support.js';

test('status shows the write-stage breakdown of writes through NBD', async () => {
  await withPair({ diskBytes: 64 * MIB }, async (c) => {
    await skipInitialSync(c, 'alice');
    const before = (await status(c, 'alice')).writeStages.stages.total.count;
    const nbd = await NbdClient.connect({
      listener: { kind: 'unix', path: c.node('alice').nbdSocket },
      exportName: c.resource,
    });
    // 8 writers in flight over 16 activity-log extents (4 MiB each): the first writes into an
    // extent wait for its AL transaction, later ones do not; some overlap one another.
    const lanes = 8;
    const perLane = 40;
    const writer = async (lane: number): Promise<void> => {
      for (let i = 0; i < perLane; i++) {
        const extent = (i * lanes + lane) % 16;
        const off = extent * 4 * MIB + (i % 4) * 4096;
        await nbd.write(off, randomBytes(i % 3 === 0 ? 65536 : 4096));
      }
    };
    await Promise.all(Array.from({ length: lanes }, (_, l) => writer(l)));
    await nbd.flush();
    await nbd.disconnect();
    const writes = lanes * perLane;

    const ws = (await status(c, 'alice')).writeStages;
    const s = ws.stages;
    assert.equal(ws.dropped, 0);
    assert.equal(s.total.count - before, writes, 'every write completed once');
    assert.equal(s.engine.count - before, writes);
    assert.equal(s.disk.count - before, writes, 'every local write done');
    assert.equal(s.peer.count - before, writes, 'protocol C: one WriteAck per write from bob');
    assert.ok(s.barrier.count >= 1 && s.barrier.count <= writes, `barrier ${s.barrier.count}`);
    for (const k of ['disk', 'peer', 'total'] as const) {
      assert.ok(s[k].p50Us > 0 && s[k].p99Us >= s[k].p50Us, `${k}: ${JSON.stringify(s[k])}`);
      assert.ok(s[k].maxUs >= s[k].p99Us && s[k].maxUs < 60e6, `${k}: ${JSON.stringify(s[k])}`);
    }
    // Each write's total covers its disk and its peer ack, so the means keep that order.
    assert.ok(s.total.meanUs >= s.disk.meanUs && s.total.meanUs >= s.peer.meanUs);

    // bob wrote the same data as a Secondary: no client writes of his own.
    assert.equal((await status(c, 'bob')).writeStages.stages.total.count, 0);

    const text = await c.tandem('alice', 'status', c.resource);
    assert.match(
      text,
      /\n {2}write latency p50: engine \S+, (barrier \S+, )?disk \S+, peer \S+, total \S+\n/,
    );
  });
});
