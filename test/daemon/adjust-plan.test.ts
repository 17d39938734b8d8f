// planAdjust: how `tandem adjust` turns the difference between the running plans and the
// configuration file into steps. Pins drbdadm adjust's rules: options the engine takes live,
// a reconnect for changed paths or connection options, new resources up, removed ones kept.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfigText, resourcesForNode } from '../../src/config/index.js';
import { planResource, type ResourcePlan } from '../../src/daemon/resource-config.js';
import { describeStep, planAdjust, type AdjustStep } from '../../src/daemon/adjust.js';

function plans(text: string, node = 'alice'): ResourcePlan[] {
  const { config } = parseConfigText(text, 'test.res');
  return resourcesForNode(config, node).map((r) => planResource(r, node));
}

const res = (
  name: string,
  o: { net?: string; disk?: string; bobPort?: number; alicePort?: number } = {},
): string => `
resource ${name} {
  net { protocol C; ${o.net ?? ''} }
  disk { ${o.disk ?? ''} }
  on alice { node-id 0; device "nbd://127.0.0.1:20001/${name}"; disk /tmp/${name}-a; meta-disk internal; address 127.0.0.1:${o.alicePort ?? 7100}; }
  on bob { node-id 1; device "nbd://127.0.0.1:20002/${name}"; disk /tmp/${name}-b; meta-disk internal; address 127.0.0.1:${o.bobPort ?? 7101}; }
}`;

function run(before: string, after: string, only = 'all'): AdjustStep[] {
  const running = new Map(plans(before).map((p) => [p.name, p]));
  return [...planAdjust(running, plans(after), only).steps];
}

test('no difference, no steps', () => {
  assert.deepEqual(run(res('r0'), res('r0')), []);
});

test('resync controller and net policies are reconfigured live', () => {
  const steps = run(
    res('r0'),
    res('r0', {
      disk: 'resync-rate 10M; c-plan-ahead 0;',
      net: 'after-sb-0pri discard-zero-changes;',
    }),
  );
  assert.equal(steps.length, 1);
  const s = steps[0]!;
  assert.equal(s.kind, 'reconfigure');
  if (s.kind !== 'reconfigure') return;
  assert.equal(s.options.resync?.resyncRateBytesPerSec, 10 * 1024 * 1024);
  assert.equal(s.options.resync?.cPlanAheadTenths, 0);
  assert.equal(s.options.afterSb0Pri, 'discard-zero-changes');
  assert.equal(s.protocolChanged, false);
  assert.deepEqual(s.changes.map((c) => c.option).sort(), [
    'after-sb-0pri',
    'c-plan-ahead',
    'resync-rate',
  ]);
  assert.match(describeStep(s, false), /^r0: applied .*disk resync-rate \(default\) -> 10240/);
  assert.match(describeStep(s, true), /^r0: would apply /);
});

test('a protocol change is flagged: it applies only over a reconnect', () => {
  const [s] = run(res('r0'), res('r0').replace('protocol C', 'protocol A'));
  assert.ok(s?.kind === 'reconfigure' && s.protocolChanged);
  assert.equal(s.options.protocol, 'A');
});

test("a peer's new port reconnects it and the new plan dials it", () => {
  const running = new Map(plans(res('r0')).map((p) => [p.name, p]));
  const plan = planAdjust(running, plans(res('r0', { bobPort: 7201 })), 'all');
  assert.deepEqual(
    plan.steps.map((s) => s.kind),
    ['reconnect'],
  );
  const s = plan.steps[0]!;
  assert.ok(s.kind === 'reconnect');
  assert.equal(s.peer, 'bob');
  assert.match(s.why, /paths tcp:127\.0\.0\.1:7101 -> tcp:127\.0\.0\.1:7201/);
  assert.equal(plan.plans.get('r0')?.peers[0]?.paths[0]?.peer.port, 7201);
});

test('our own new address means listening on it and no longer on the old one', () => {
  const before = res('r0');
  const after = before.replace('address 127.0.0.1:7100', 'address 127.0.0.1:7300');
  const steps = run(before, after);
  assert.deepEqual(
    steps.map((s) => s.kind),
    ['listen', 'unlisten'],
  );
  assert.match(describeStep(steps[0]!, false), /listening on tcp:127\.0\.0\.1:7300/);
  assert.match(describeStep(steps[1]!, false), /stopped listening on tcp:127\.0\.0\.1:7100/);
});

test('connection options reconnect; transport liveness options wait for a restart', () => {
  const steps = run(res('r0'), res('r0', { net: 'connect-int 3; ping-int 3;' }));
  assert.deepEqual(steps.map((s) => s.kind).sort(), ['later', 'reconnect']);
  const later = steps.find((s) => s.kind === 'later');
  assert.ok(later?.kind === 'later');
  assert.match(later.what, /ping-int/);
  assert.match(later.how, /restart tandemd/);
});

test('a new resource comes up; a removed one keeps running with a warning', () => {
  const steps = run(res('r0'), res('r1'));
  assert.deepEqual(
    steps.map((s) => [s.kind, s.resource]),
    [
      ['up', 'r1'],
      ['keep', 'r0'],
    ],
  );
  assert.match(
    describeStep(steps[1]!, false),
    /warning: no longer in the configuration; left running/,
  );
});

test('a configured resource that is down is brought up', () => {
  const running = new Map(plans(res('r0')).map((p) => [p.name, p]));
  const steps = planAdjust(running, plans(res('r0')), 'all', new Set(['r0'])).steps;
  assert.deepEqual(
    steps.map((s) => [s.kind, s.resource]),
    [['up', 'r0']],
  );
});

test('storage, export and peers do not change under a running resource', () => {
  const before = res('r0');
  const after = before.replace('disk /tmp/r0-a', 'disk /tmp/other').replace('20001', '20009');
  const steps = run(before, after);
  assert.deepEqual(
    steps.map((s) => s.kind),
    ['later', 'later'],
  );
  for (const s of steps) assert.match(describeStep(s, false), /tandem down r0/);
});

test('one resource named: the others are not touched or warned about', () => {
  const other = { alicePort: 7400, bobPort: 7401 };
  const steps = run(
    res('r0') + res('r2', other),
    res('r0', { disk: 'resync-rate 1M;' }) + res('r1', other),
    'r0',
  );
  assert.deepEqual(
    steps.map((s) => [s.kind, s.resource]),
    [['reconfigure', 'r0']],
  );
});

test('the same address:port over another transport (ipv4 -> sdp) is a new listener', () => {
  const tcp = res('r0');
  const sdp = tcp.replace(/address 127/g, 'address sdp 127');
  const steps = run(tcp, sdp);
  const listen = steps.find((s) => s.kind === 'listen');
  const unlisten = steps.find((s) => s.kind === 'unlisten');
  assert.deepEqual(listen?.kind === 'listen' && listen.endpoints, ['fabric:127.0.0.1:7100']);
  assert.deepEqual(unlisten?.kind === 'unlisten' && unlisten.endpoints, ['tcp:127.0.0.1:7100']);
  assert.ok(
    steps.some((s) => s.kind === 'reconnect'),
    'the peer is reached over fabric now',
  );
});
