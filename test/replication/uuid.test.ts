// Each generation-UUID rule and each after-split-brain policy, by name. Both sides must reach
// mirrored verdicts, or the two nodes would both become SyncSource (or both SyncTarget).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  UUID_JUST_CREATED,
  UUID_NEW_BM_OFFSET,
  handshakeVerdict,
  resolveSplitBrain,
  uuidCompare,
  type SplitBrainPolicies,
  type UuidView,
} from '../../src/replication/uuid.js';

const v = (o: Partial<UuidView> & { nodeId: number }): UuidView => ({
  nodeName: o.nodeId === 1 ? 'alpha' : 'bravo',
  role: 'Secondary',
  currentUuid: UUID_JUST_CREATED,
  bitmapUuid: 0n,
  historyUuids: [],
  crashedPrimary: false,
  bitmapWeight: 0,
  discardMyData: false,
  ...o,
});

function both(me: UuidView, peer: UuidView): { mine: number; theirs: number; rule: string } {
  const x = uuidCompare(me, peer);
  const y = uuidCompare(peer, me);
  return { mine: x.result, theirs: y.result, rule: x.rule };
}

const C0 = 0x1000_0000_0000_aaa0n;
const C1 = 0x2000_0000_0000_bbb0n;
const C2 = 0x3000_0000_0000_ccc0n;

test('rule both-just-created: no sync', () => {
  const r = both(v({ nodeId: 1 }), v({ nodeId: 2 }));
  assert.deepEqual([r.mine, r.theirs, r.rule], [0, 0, 'both-just-created']);
});

test('rule i-am-just-created: full sync, I am target (mirror: peer-just-created)', () => {
  const r = both(v({ nodeId: 1 }), v({ nodeId: 2, currentUuid: C0 }));
  assert.deepEqual([r.mine, r.theirs, r.rule], [-2, 2, 'i-am-just-created']);
});

test('rule equal-current: no sync; the Primary bit (bit 0) is ignored', () => {
  const r = both(v({ nodeId: 1, currentUuid: C0 | 1n }), v({ nodeId: 2, currentUuid: C0 }));
  assert.deepEqual([r.mine, r.theirs, r.rule], [0, 0, 'equal-current']);
});

test('rule i-am-crashed-primary / both-crashed-primary: the crashed Primary is source', () => {
  const r = both(
    v({ nodeId: 1, currentUuid: C0, crashedPrimary: true }),
    v({ nodeId: 2, currentUuid: C0 }),
  );
  assert.deepEqual([r.mine, r.theirs, r.rule], [1, -1, 'i-am-crashed-primary']);
  const t = both(
    v({ nodeId: 1, currentUuid: C0, crashedPrimary: true }),
    v({ nodeId: 2, currentUuid: C0, crashedPrimary: true }),
  );
  assert.equal(t.rule, 'both-crashed-primary');
  assert.equal(t.mine, -t.theirs);
});

test('rule my-current-is-peer-bitmap: bitmap resync, I am target', () => {
  // The peer was Primary when we split: its bitmap UUID is our current generation.
  const r = both(
    v({ nodeId: 1, currentUuid: C0 }),
    v({ nodeId: 2, currentUuid: C1 | 1n, bitmapUuid: C0 | 1n }),
  );
  assert.deepEqual([r.mine, r.theirs, r.rule], [-1, 1, 'my-current-is-peer-bitmap']);
  assert.equal(
    uuidCompare(
      v({ nodeId: 2, currentUuid: C1, bitmapUuid: C0 }),
      v({ nodeId: 1, currentUuid: C0 }),
    ).rule,
    'peer-current-is-my-bitmap',
  );
});

test('rule missed-sync-uuid: the source bumped its bitmap UUID but the target never heard', () => {
  const r = both(
    v({ nodeId: 1, currentUuid: C0 }),
    v({ nodeId: 2, currentUuid: C1, bitmapUuid: C0 + 2n * UUID_NEW_BM_OFFSET }),
  );
  assert.deepEqual([r.mine, r.theirs, r.rule], [-1, 1, 'missed-sync-uuid-peer-is-source']);
});

test('rule my-current-in-peer-history: full sync, I am target', () => {
  const r = both(
    v({ nodeId: 1, currentUuid: C0 }),
    v({ nodeId: 2, currentUuid: C2, historyUuids: [C1, C0] }),
  );
  assert.deepEqual([r.mine, r.theirs, r.rule], [-2, 2, 'my-current-in-peer-history']);
});

test('rule split-brain-bitmaps-equal: both advanced from the same generation', () => {
  const r = both(
    v({ nodeId: 1, currentUuid: C1, bitmapUuid: C0 }),
    v({ nodeId: 2, currentUuid: C2, bitmapUuid: C0 }),
  );
  assert.deepEqual([r.mine, r.theirs, r.rule], [100, 100, 'split-brain-bitmaps-equal']);
});

test('rule split-brain-shared-history: related but not auto-recoverable', () => {
  const r = both(
    v({ nodeId: 1, currentUuid: C1, historyUuids: [C0] }),
    v({ nodeId: 2, currentUuid: C2, historyUuids: [C0] }),
  );
  assert.deepEqual([r.mine, r.theirs, r.rule], [-100, -100, 'split-brain-shared-history']);
});

test('rule unrelated-data: nothing in common', () => {
  const r = both(v({ nodeId: 1, currentUuid: C1 }), v({ nodeId: 2, currentUuid: C2 }));
  assert.deepEqual([r.mine, r.theirs, r.rule], [-1000, -1000, 'unrelated-data']);
});

// --- after-sb policies ---

const pol = (o: Partial<SplitBrainPolicies>): SplitBrainPolicies => ({
  afterSb0Pri: 'disconnect',
  afterSb1Pri: 'disconnect',
  afterSb2Pri: 'disconnect',
  ...o,
});

function sb(
  p: SplitBrainPolicies,
  me: Partial<UuidView>,
  peer: Partial<UuidView>,
): [number, number] {
  const a = v({ nodeId: 1, currentUuid: C1, bitmapUuid: C0, ...me });
  const b = v({ nodeId: 2, currentUuid: C2, bitmapUuid: C0, ...peer });
  return [resolveSplitBrain(p, a, b).result, resolveSplitBrain(p, b, a).result];
}

test('after-sb-0pri disconnect', () => {
  assert.deepEqual(sb(pol({}), {}, {}), [-100, -100]);
});

test('after-sb-0pri discard-zero-changes: the side without changes is target', () => {
  const p = pol({ afterSb0Pri: 'discard-zero-changes' });
  assert.deepEqual(sb(p, { bitmapWeight: 0 }, { bitmapWeight: 5 }), [-1, 1]);
  assert.deepEqual(sb(p, { bitmapWeight: 3 }, { bitmapWeight: 5 }), [-100, -100]);
  const tie = sb(p, { bitmapWeight: 0 }, { bitmapWeight: 0 });
  assert.equal(tie[0], -tie[1]);
});

test('after-sb-0pri discard-least-changes: fewer changes is target, ties by node id', () => {
  const p = pol({ afterSb0Pri: 'discard-least-changes' });
  assert.deepEqual(sb(p, { bitmapWeight: 2 }, { bitmapWeight: 5 }), [-1, 1]);
  assert.deepEqual(sb(p, { bitmapWeight: 9 }, { bitmapWeight: 5 }), [1, -1]);
  assert.deepEqual(sb(p, { bitmapWeight: 5 }, { bitmapWeight: 5 }), [1, -1]);
});

test('after-sb-0pri discard-younger-primary / discard-older-primary use the bitmap UUID Primary bit', () => {
  // alpha was Primary at the split (bit 0 set in its bitmap UUID); bravo was promoted later.
  const me = { bitmapUuid: C0 | 1n, bitmapWeight: 1 };
  const peer = { bitmapUuid: C0, bitmapWeight: 9 };
  assert.deepEqual(sb(pol({ afterSb0Pri: 'discard-younger-primary' }), me, peer), [1, -1]);
  assert.deepEqual(sb(pol({ afterSb0Pri: 'discard-older-primary' }), me, peer), [-1, 1]);
});

test('after-sb-0pri discard-node-NAME', () => {
  assert.deepEqual(sb(pol({ afterSb0Pri: 'discard-node-bravo' }), {}, {}), [1, -1]);
  assert.deepEqual(sb(pol({ afterSb0Pri: 'discard-node-alpha' }), {}, {}), [-1, 1]);
  assert.deepEqual(sb(pol({ afterSb0Pri: 'discard-node-charlie' }), {}, {}), [-100, -100]);
});

test('after-sb-1pri discard-secondary: the Secondary is target', () => {
  assert.deepEqual(sb(pol({ afterSb1Pri: 'discard-secondary' }), { role: 'Primary' }, {}), [1, -1]);
});

test('after-sb-1pri consensus: accept the 0pri verdict only if it discards the Secondary', () => {
  const p = pol({ afterSb0Pri: 'discard-least-changes', afterSb1Pri: 'consensus' });
  assert.deepEqual(sb(p, { role: 'Primary', bitmapWeight: 9 }, { bitmapWeight: 1 }), [1, -1]);
  assert.deepEqual(sb(p, { role: 'Primary', bitmapWeight: 1 }, { bitmapWeight: 9 }), [-100, -100]);
});

test('after-sb-1pri disconnect and violently-as0p', () => {
  assert.deepEqual(sb(pol({ afterSb1Pri: 'disconnect' }), { role: 'Primary' }, {}), [-100, -100]);
  const p = pol({ afterSb0Pri: 'discard-least-changes', afterSb1Pri: 'violently-as0p' });
  assert.deepEqual(sb(p, { role: 'Primary', bitmapWeight: 1 }, { bitmapWeight: 9 }), [-1, 1]);
});

test('after-sb-2pri disconnect and violently-as0p', () => {
  assert.deepEqual(sb(pol({}), { role: 'Primary' }, { role: 'Primary' }), [-100, -100]);
  const p = pol({ afterSb0Pri: 'discard-least-changes', afterSb2Pri: 'violently-as0p' });
  assert.deepEqual(
    sb(p, { role: 'Primary', bitmapWeight: 1 }, { role: 'Primary', bitmapWeight: 9 }),
    [-1, 1],
  );
});

test('connect --discard-my-data overrides an unresolved split brain (either kind)', () => {
  const a = v({ nodeId: 1, currentUuid: C1, bitmapUuid: C0, discardMyData: true });
  const b = v({ nodeId: 2, currentUuid: C2, bitmapUuid: C0 });
  assert.equal(handshakeVerdict(pol({}), a, b).result, -1);
  assert.equal(handshakeVerdict(pol({}), b, a).result, 1);
  const c = v({ nodeId: 1, currentUuid: C1, historyUuids: [C0], discardMyData: true });
  const d = v({ nodeId: 2, currentUuid: C2, historyUuids: [C0] });
  assert.equal(handshakeVerdict(pol({}), c, d).result, -1);
  // Both asking to discard: nobody wins, stay disconnected.
  assert.equal(handshakeVerdict(pol({}), { ...a }, { ...b, discardMyData: true }).result, -100);
});
