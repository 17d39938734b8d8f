// Split brain: both nodes promoted while disconnected, both written, then reconnected. Both
// sides must report it on their events stream; with the default after-sb policies they stay
// StandAlone until the operator resolves it with `connect --discard-my-data` on the victim,
// and with `after-sb-1pri discard-secondary` the Secondary's changes are discarded on their
// own. Either way the survivor's data ends on both disks and only the changed blocks move.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { EventState } from '../../src/cli/event-state.js';
import type { EventWatch, LocalCluster } from '../../src/cli/local-cluster.js';
import type { TandemEvent } from '../../src/daemon/control-protocol.js';
import {
  MIB,
  fileSha,
  nbdWrite,
  peerStatus,
  readDisk,
  skipInitialSync,
  status,
  waitDisconnected,
  waitInSync,
  waitRole,
  withPair,
} from './support.js';

const DISK_BYTES = 64 * MIB;

/**
 * `connect` on both while watching both events streams (subscribed first, so nothing is
 * missed): resolves with how each side says it resolved the split brain, once both said so.
 */
async function reconnectSeeingSplitBrain(
  c: LocalCluster,
  then: (w: EventWatch) => Promise<void> = () => Promise.resolve(),
): Promise<string[]> {
  const watches = [c.watch('alice'), c.watch('bob')];
  try {
    await Promise.all(watches.map((w) => w.ready));
    await c.tandem('alice', 'connect', c.resource);
    await c.tandem('bob', 'connect', c.resource);
    const how: string[] = [];
    for (const w of watches) {
      await w.until('reporting split brain', (s) => splitBrainNote(s) !== undefined);
      how.push(String(splitBrainNote(w.state)?.props['resolved']));
      await then(w);
    }
    return how;
  } finally {
    for (const w of watches) w.close();
  }
}

function splitBrainNote(s: EventState): TandemEvent | undefined {
  return s.calls.find((e) => e.props['note'] === 'split-brain');
}

/** Both Primary while apart; alice writes 4 MiB, bob 1 MiB of which half overlaps alice's. */
async function diverge(c: LocalCluster): Promise<{ alice: Buffer; bob: Buffer }> {
  await skipInitialSync(c, 'alice');
  await c.tandem('alice', 'disconnect', c.resource);
  await c.tandem('bob', 'disconnect', c.resource);
  await waitDisconnected(c, 'alice');
  await waitDisconnected(c, 'bob');
  await c.tandem('bob', 'primary', c.resource);
  await waitRole(c, 'bob', 'Primary');
  const alice = randomBytes(4 * MIB);
  const bob = randomBytes(1 * MIB);
  await nbdWrite(c, 'alice', [[0, alice]]);
  await nbdWrite(c, 'bob', [
    [3.5 * MIB, bob.subarray(0, MIB / 2)],
    [16 * MIB, bob.subarray(MIB / 2)],
  ]);
  return { alice, bob };
}

/** alice's data everywhere: her 4 MiB, and zeros where only bob had written. */
async function assertAliceWon(c: LocalCluster, alice: Buffer): Promise<void> {
  for (const n of ['alice', 'bob']) {
    assert.ok((await readDisk(c, n, 0, 4 * MIB)).equals(alice), `${n} holds alice's 4 MiB`);
    assert.ok(
      (await readDisk(c, n, 16 * MIB, MIB / 2)).equals(Buffer.alloc(MIB / 2)),
      `${n}: bob's discarded write is gone`,
    );
  }
  const size = (await status(c, 'alice')).sizeBytes;
  assert.equal(
    await fileSha(c.node('alice').diskPath, size),
    await fileSha(c.node('bob').diskPath, size),
    'both data regions are byte-identical',
  );
  // Only the blocks either side changed move: alice's 4 MiB plus bob's 0.5 MiB elsewhere.
  const moved = (await peerStatus(c, 'bob')).resyncBytes;
  assert.ok(moved >= 4.5 * MIB && moved <= 1.2 * 4.5 * MIB, `resync moved ${moved} bytes`);
}

test('split brain with after-sb disconnect: both report it; connect --discard-my-data resolves it', async () => {
  await withPair({ diskBytes: DISK_BYTES }, async (c) => {
    const { alice } = await diverge(c);
    const how = await reconnectSeeingSplitBrain(c, async (w) => {
      // The policy leaves both StandAlone, each still Primary with its own data.
      await w.until('StandAlone', (s) =>
        s.all('connection', c.resource).every((x) => x['connection'] === 'StandAlone'),
      );
    });
    for (const h of how) assert.match(h, /disconnect/);
    assert.equal((await status(c, 'bob')).role, 'Primary');

    // The operator picks the victim: bob steps down and discards his changes.
    await c.tandem('bob', 'secondary', c.resource);
    await c.tandem('bob', 'connect', '--discard-my-data', c.resource);
    await c.tandem('alice', 'connect', c.resource);
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    await assertAliceWon(c, alice);
  });
});

test('split brain with after-sb-1pri discard-secondary resolves itself', async () => {
  const net = [
    '    after-sb-0pri discard-least-changes;',
    '    after-sb-1pri discard-secondary;',
    '    after-sb-2pri disconnect;',
  ].join('\n');
  await withPair({ diskBytes: DISK_BYTES, net }, async (c) => {
    const { alice } = await diverge(c);
    await c.tandem('bob', 'secondary', c.resource);
    const how = await reconnectSeeingSplitBrain(c);
    for (const h of how) assert.match(h, /after-sb-1pri discard-secondary/);
    await waitInSync(c, 'alice');
    await waitInSync(c, 'bob');
    assert.equal((await status(c, 'alice')).role, 'Primary');
    await assertAliceWon(c, alice);
  });
});
