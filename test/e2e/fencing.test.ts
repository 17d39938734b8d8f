// Resource-level fencing with real daemons: under `fencing resource-and-stonith` the Primary
// that loses its peer (SIGKILL) runs the fence-peer handler with DRBD's environment and
// completes no write until the handler answers; its exit 4 (peer outdated) resumes I/O.
// Pins: a write acknowledged on the Primary alone while the peer's fate is still unknown, and
// a handler that never runs or never gets DRBD_RESOURCE/DRBD_PEER.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdClient } from '../../src/nbd/client.js';
import { withTempDir } from '../support/tmp.js';
import { MIB, skipInitialSync, waitUntil, withPair } from './support.js';

test('resource-and-stonith: writes freeze while fence-peer runs and resume on its exit 4', async () => {
  await withTempDir('fence', async (dir) => {
    const seen = join(dir, 'fenced');
    const go = join(dir, 'go');
    // The handler records what it was told, then waits for the test before answering (at most
    // 20 s: a handler outlives the daemon that ran it, and holds its output pipe open).
    const handler = `echo $DRBD_RESOURCE $DRBD_PEER $DRBD_PEER_NODE_ID > ${seen}; i=0; while [ ! -e ${go} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; exit 4`;
    await withPair(
      {
        diskBytes: 16 * MIB,
        net: '    fencing resource-and-stonith;',
        handlers: `    fence-peer "${handler}";`,
      },
      async (c) => {
        await skipInitialSync(c, 'alice');
        const nbd = await NbdClient.connect({
          listener: { kind: 'unix', path: c.node('alice').nbdSocket },
          exportName: c.resource,
        });
        try {
          await nbd.write(0, Buffer.alloc(4096, 1));
          await c.stop('bob', 'SIGKILL');
          await waitUntil(
            () =>
              readFile(seen, 'utf8').then(
                () => new Promise<boolean>((r) => setTimeout(() => r(true), 0)),
                () => new Promise<boolean>((r) => setTimeout(() => r(false), 20)),
              ),
            'the fence-peer handler started',
          );
          assert.equal((await readFile(seen, 'utf8')).trim(), `${c.resource} bob 1`);

          let finished = false;
          const w = nbd.write(4096, Buffer.alloc(4096, 2)).then(() => (finished = true));
          await new Promise((r) => setTimeout(r, 1000));
          assert.equal(finished, false, 'no write completes while the handler runs');
          await writeFile(go, '');
          await w;
          assert.equal(finished, true);
          assert.deepEqual(await nbd.read(4096, 4096), Buffer.alloc(4096, 2));
        } finally {
          nbd.destroy();
        }
      },
    );
  });
});
