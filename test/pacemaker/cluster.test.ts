// Tandem under a real two-node Pacemaker + Corosync cluster (each node its own network, mount
// and UTS namespaces): the promotable clone of ocf:tandem:tandem comes up with nothing promoted
// while the disks are Inconsistent, promotes one node once both are UpToDate, and when the
// Promoted node's tandemd is SIGKILLed under a stamped write load, Pacemaker (through the
// agent's monitor and promotion scores) promotes the other node, whose export holds every
// acknowledged write. Then the failed node rejoins as Unpromoted and resyncs.
// Pins: an agent that reports a dead daemon as running, scores that let an Inconsistent copy
// be promoted, and a failover that loses acknowledged writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { NbdClient } from '../../src/nbd/client.js';
import {
  PacemakerPair,
  REPO_ROOT,
  pollUntil,
  requireCluster,
  type NodeName,
} from '../support/pacemaker.js';
import {
  BLOCK,
  RESOURCE,
  WriteLog,
  crmCommands,
  setupTandem,
  tandem,
  tandemStatus,
} from './support.js';

const MIB = 1024 * 1024;

/** The fence-peer handler's location constraint: which node it lets be Promoted, or null. */
async function fenceConstraint(
  pair: PacemakerPair,
  on: NodeName,
): Promise<{ keeps: string } | null> {
  const r = await pair.on(on, [
    'cibadmin',
    '-Q',
    '--xpath',
    `//rsc_location[@id='tandem-fence-${RESOURCE}']//expression`,
  ]);
  if (r.code !== 0) return null;
  const hit = / value="([^"]*)"/.exec(r.stdout);
  return { keeps: hit?.[1] ?? '?' };
}
const DISK_BYTES = 64 * MIB;
/** The write load covers 16 MiB: four activity-log extents' worth of random 4 KiB blocks. */
const REGION_BLOCKS = (16 * MIB) / BLOCK;
const KILL_AFTER_ACKS = 1500;

test('Pacemaker fails Tandem over after SIGKILL of the Promoted tandemd: no acknowledged write lost', async (t) => {
  if (!requireCluster(t)) return;
  const pair = await PacemakerPair.create({ tokenMs: 1000 });
  try {
    const fencer = join(REPO_ROOT, 'contrib', 'ocf', 'crm-fence-peer.sh');
    const c = await setupTandem(pair, {
      diskBytes: DISK_BYTES,
      net: 'fencing resource-only;',
      handlers: `fence-peer "${fencer}"; unfence-peer "${fencer} --unfence";`,
    });
    await pair.startCluster();
    await pair.onOk('n1', [
      'crm_attribute',
      '-t',
      'crm_config',
      '-n',
      'stonith-enabled',
      '-v',
      'false',
    ]);
    await pair.onOk('n1', [
      'crm_attribute',
      '-t',
      'crm_config',
      '-n',
      'no-quorum-policy',
      '-v',
      'ignore',
    ]);
    for (const cmd of crmCommands(c)) await pair.onOk('n1', cmd, 60_000);

    // Both started, neither promoted: Inconsistent disks have no promotion score.
    await pollUntil(
      'both instances Unpromoted',
      60_000,
      async () => {
        const r = await pair.roles('n1');
        return r.unpromoted.length === 2;
      },
      () => pair.crmMon('n1'),
    );
    for (const n of ['n1', 'n2'] as const) {
      const s = await tandemStatus(c, n);
      assert.equal(s.disk, 'Inconsistent');
      assert.equal(s.role, 'Secondary');
    }
    assert.deepEqual((await pair.roles('n2')).promoted, [], 'nothing promoted while Inconsistent');

    // The initial "sync" of two zeroed disks, done by hand as with DRBD before Pacemaker takes
    // over; the next monitors score both UpToDate nodes and Pacemaker promotes one.
    await pollUntil('the nodes connected', 30_000, async () => {
      const s = await tandemStatus(c, 'n1');
      return s.peers[0]?.connection === 'Connected';
    });
    await tandem(c, 'n1', 'new-current-uuid', '--clear-bitmap', RESOURCE);
    let promoted: NodeName | null = null;
    await pollUntil(
      'one node Promoted',
      60_000,
      async () => {
        const r = await pair.roles('n1');
        if (r.promoted.length !== 1 || r.unpromoted.length !== 1) return false;
        promoted = r.promoted[0] as NodeName;
        return true;
      },
      () => pair.crmMon('n1'),
    );
    const P: NodeName = promoted ?? 'n1';
    const S: NodeName = P === 'n1' ? 'n2' : 'n1';
    assert.equal((await tandemStatus(c, P)).role, 'Primary');
    assert.equal((await tandemStatus(c, S)).disk, 'UpToDate');

    // A stamped write load through P's export; P's tandemd dies by SIGKILL in the middle of it.
    const nbd = await NbdClient.connect({
      listener: { kind: 'unix', path: c.nbdSocket(P) },
      exportName: RESOURCE,
    });
    const log = new WriteLog(REGION_BLOCKS);
    const load = log.run(nbd, 8);
    await pollUntil('writes acknowledged before the kill', 60_000, () =>
      Promise.resolve(log.ackedCount >= KILL_AFTER_ACKS || log.error !== null),
    );
    assert.equal(log.error, null, 'the load ran until the kill');
    const pid = Number(
      (await pair.onOk(P, ['cat', `/run/resource-agents/tandemd-${P}.pid`])).trim(),
    );
    assert.ok(Number.isInteger(pid) && pid > 0, `tandemd pid file on ${P}: ${pid}`);
    const killedAt = performance.now();
    process.kill(pid, 'SIGKILL');
    await load;
    nbd.destroy();
    assert.notEqual(log.error, null, 'the writes stopped with an error');

    await pollUntil(
      `${S} Promoted by Pacemaker`,
      60_000,
      async () => {
        const r = await pair.roles(S);
        return r.promoted.length === 1 && r.promoted[0] === S;
      },
      async () => `${await pair.crmMon(S)}\n${pair.logs()}`,
    );
    const failoverSec = (performance.now() - killedAt) / 1000;
    assert.equal((await tandemStatus(c, S)).role, 'Primary');
    // S promoted over an unknown peer: its fence-peer handler keeps P from promotion.
    assert.deepEqual(
      await fenceConstraint(pair, S),
      { keeps: S },
      'the fence constraint is in place',
    );

    const back = await NbdClient.connect({
      listener: { kind: 'unix', path: c.nbdSocket(S) },
      exportName: RESOURCE,
    });
    const failures = await log.verify(back);
    await back.disconnect();
    t.diagnostic(
      `${log.ackedCount} writes acknowledged on ${P} before SIGKILL; ${S} Promoted ${failoverSec.toFixed(1)} s after it`,
    );
    assert.deepEqual(failures.slice(0, 10), [], `${failures.length} blocks wrong on ${S}`);

    // Clearing the failure lets P's instance start again: it rejoins Unpromoted and resyncs.
    await pair.onOk(S, ['crm_resource', '--cleanup', '--resource', 'tdm-clone']);
    await pollUntil(
      `${P} back Unpromoted and in sync`,
      60_000,
      async () => {
        const r = await pair.roles(S);
        if (r.promoted[0] !== S || r.unpromoted[0] !== P) return false;
        const s = await tandemStatus(c, P).catch(() => null);
        return (
          s !== null &&
          s.disk === 'UpToDate' &&
          s.role === 'Secondary' &&
          s.peers[0]?.connection === 'Connected' &&
          s.peers[0].replication === 'Established'
        );
      },
      async () => `${await pair.crmMon(S)}\n${pair.logs()}`,
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    throw new Error(`${message}\n${pair.logs()}`, { cause: e });
  } finally {
    await pair.cleanup();
  }
});
