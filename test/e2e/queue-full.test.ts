// A full engine queue is backpressure, never an error. The engine queues client requests while
// an activity-log slot is pending and refuses more than ENGINE_QUEUED_REQUESTS_MAX of them
// (EAGAIN); 40 NBD connections with 128 writes each (5,120 > 4,096) against a Primary whose
// peer does not acknowledge (SIGSTOP: the activity log fills with extents held by unacked
// writes, so every later write queues) reach that bound. Pins: requests beyond it failing with
// EIO on a healthy device; the daemon must hold them (and stop reading the NBD connections)
// until the queue drains, and every write must succeed once the peer resumes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { NbdClient } from '../../src/nbd/client.js';
import { ENGINE_QUEUED_REQUESTS_MAX, NBD_CONN_REQUESTS_IN_FLIGHT_MAX } from '../../src/limits.js';
import { MIB, skipInitialSync, withPair } from './support.js';

const CONNECTIONS = 40;
const PER_CONNECTION = NBD_CONN_REQUESTS_IN_FLIGHT_MAX;
const BLOCK = 4096;
/** 100 extents of 4 MiB: more than al-extents (67), so the activity log fills. */
const EXTENTS = 100;
const EXTENT_BYTES = 4 * MIB;

test('more requests than the engine queue holds: every write succeeds (backpressure)', async () => {
  assert.ok(CONNECTIONS * PER_CONNECTION > ENGINE_QUEUED_REQUESTS_MAX);
  await withPair(
    {
      diskBytes: (EXTENTS + 4) * EXTENT_BYTES,
      disk: '    al-extents 67;',
      // bob stays connected while stopped: no ping timeout ends the connection under the test.
      net: '    ping-int 120;\n    ping-timeout 300;\n    timeout 600;',
    },
    async (c) => {
      await skipInitialSync(c, 'alice');
      const clients = await Promise.all(
        Array.from({ length: CONNECTIONS }, () =>
          NbdClient.connect({
            listener: { kind: 'unix', path: c.node('alice').nbdSocket },
            exportName: c.resource,
          }),
        ),
      );
      const bob = c.node('bob').process;
      assert.ok(bob !== null);
      bob.kill('SIGSTOP');
      let resumed = false;
      try {
        const failures: string[] = [];
        const writes: Promise<void>[] = [];
        const expected = new Map<number, number>();
        for (const [ci, nbd] of clients.entries()) {
          for (let i = 0; i < PER_CONNECTION; i++) {
            const n = ci * PER_CONNECTION + i;
            // Spread over every extent; each block written once, stamped with its number.
            const offset = (n % EXTENTS) * EXTENT_BYTES + Math.floor(n / EXTENTS) * BLOCK;
            expected.set(offset, n);
            const data = Buffer.alloc(BLOCK, 0);
            data.writeUInt32BE(n, 0);
            writes.push(
              nbd.write(offset, data).catch((e: unknown) => {
                failures.push(`write ${n} at ${offset}: ${String(e)}`);
              }),
            );
          }
        }
        // Nothing completes while bob is stopped (protocol C); a refusal, if the daemon passed
        // one on, comes within moments of the requests arriving. Give that time to show.
        const deadline = Date.now() + 3000;
        while (failures.length === 0 && Date.now() < deadline) await sleep(100);
        assert.deepEqual(failures.slice(0, 5), [], `${failures.length} writes failed`);
        bob.kill('SIGCONT');
        resumed = true;
        await Promise.all(writes);
        assert.deepEqual(failures.slice(0, 5), [], `${failures.length} writes failed`);
        // Read back, pipelined: every write landed where it was aimed.
        const wrong: string[] = [];
        await Promise.all(
          [...expected].map(async ([offset, n], i) => {
            const got = (await clients[i % CONNECTIONS]!.read(offset, BLOCK)).readUInt32BE(0);
            if (got !== n) wrong.push(`block at ${offset}: ${got}, not ${n}`);
          }),
        );
        assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} blocks wrong`);
      } finally {
        if (!resumed) bob.kill('SIGCONT');
        await Promise.all(clients.map((x) => x.disconnect().catch(() => undefined)));
      }
    },
  );
});
