// DRBD's generation-UUID rules and after-split-brain policies as pure functions. Both nodes
// evaluate them on the same pair of views, so the decisions mirror each other exactly
// (a result r on one node is -r on the other). UUID bit 0 marks "created while Primary" and is
// ignored in comparisons.
import type { AfterSb0Pri, AfterSb1Pri, AfterSb2Pri, Role } from './types.js';

export const UUID_JUST_CREATED = 4n;

/** One side's generation identifiers as seen in a handshake. */
export interface UuidView {
  readonly nodeId: number;
  readonly nodeName: string;
  readonly role: Role;
  readonly currentUuid: bigint;
  /** This side's bitmap UUID for the other side's slot. */
  readonly bitmapUuid: bigint;
  readonly historyUuids: readonly bigint[];
  readonly crashedPrimary: boolean;
  /** Bits this side has set for the other (its changes since they split). */
  readonly bitmapWeight: number;
  readonly discardMyData: boolean;
}

/**
 * Result codes (DRBD's drbd_uuid_compare convention, from "my" side):
 *   0 no sync; 1 I am SyncSource (bitmap); -1 I am SyncTarget (bitmap);
 *   2 I am source, full sync; -2 I am target, full sync;
 *   100 split brain, auto-recoverable by after-sb policies; -100 split brain, disconnect;
 *   -1000 unrelated data.
 */
export type UuidResult = 0 | 1 | -1 | 2 | -2 | 100 | -100 | -1000;

export interface UuidDecision {
  readonly result: UuidResult;
  readonly rule: string;
}

const mask = (u: bigint): bigint => u & ~1n;

/** DRBD's UUID_NEW_BM_OFFSET: a sync UUID is the bitmap UUID plus this. */
export const UUID_NEW_BM_OFFSET = 1n << 48n;
/** How many missed sync-UUID bumps the handshake still recognises. */
const MISSED_SYNC_UUIDS_MAX = 64n;

function bumpedFrom(base: bigint, bumped: bigint): boolean {
  const d = BigInt.asUintN(64, bumped - base);
  return (
    d !== 0n && d % UUID_NEW_BM_OFFSET === 0n && d / UUID_NEW_BM_OFFSET <= MISSED_SYNC_UUIDS_MAX
  );
}

/** The node that breaks ties: both sides agree the lower node id wins (stays source). */
export const iWinTies = (me: UuidView, peer: UuidView): boolean => me.nodeId < peer.nodeId;

export function uuidCompare(me: UuidView, peer: UuidView): UuidDecision {
  const myC = mask(me.currentUuid);
  const peerC = mask(peer.currentUuid);
  if (myC === UUID_JUST_CREATED && peerC === UUID_JUST_CREATED)
    return { result: 0, rule: 'both-just-created' };
  if (myC === UUID_JUST_CREATED) return { result: -2, rule: 'i-am-just-created' };
  if (peerC === UUID_JUST_CREATED) return { result: 2, rule: 'peer-just-created' };
  if (myC === peerC) {
    // Equal generations: only a crashed Primary may hold writes its peer never saw, bounded by
    // its activity log, which it marked out of sync when it came back.
    const rct = (me.crashedPrimary ? 1 : 0) + (peer.crashedPrimary ? 2 : 0);
    if (rct === 0) return { result: 0, rule: 'equal-current' };
    if (rct === 1) return { result: 1, rule: 'i-am-crashed-primary' };
    if (rct === 2) return { result: -1, rule: 'peer-is-crashed-primary' };
    return { result: iWinTies(me, peer) ? 1 : -1, rule: 'both-crashed-primary' };
  }
  const peerB = mask(peer.bitmapUuid);
  const myB = mask(me.bitmapUuid);
  if (peerB !== 0n && myC === peerB) return { result: -1, rule: 'my-current-is-peer-bitmap' };
  if (myB !== 0n && myB === peerC) return { result: 1, rule: 'peer-current-is-my-bitmap' };
  // A sync source bumps its bitmap UUID by UUID_NEW_BM_OFFSET each time it starts a resync;
  // if the SyncUuid packet(s) never arrived, the target's current trails by a few offsets.
  if (peerB !== 0n && bumpedFrom(myC, peerB))
    return { result: -1, rule: 'missed-sync-uuid-peer-is-source' };
  if (myB !== 0n && bumpedFrom(peerC, myB))
    return { result: 1, rule: 'missed-sync-uuid-i-am-source' };
  if (peer.historyUuids.some((h) => mask(h) === myC))
    return { result: -2, rule: 'my-current-in-peer-history' };
  if (me.historyUuids.some((h) => mask(h) === peerC))
    return { result: 2, rule: 'peer-current-in-my-history' };
  if (myB !== 0n && myB === peerB) return { result: 100, rule: 'split-brain-bitmaps-equal' };
  const mine = new Set(me.historyUuids.map(mask));
  if (peer.historyUuids.some((h) => mine.has(mask(h)) && mask(h) !== 0n))
    return { result: -100, rule: 'split-brain-shared-history' };
  return { result: -1000, rule: 'unrelated-data' };
}

export interface SplitBrainPolicies {
  readonly afterSb0Pri: AfterSb0Pri;
  readonly afterSb1Pri: AfterSb1Pri;
  readonly afterSb2Pri: AfterSb2Pri;
}

/** -1: I discard my data (SyncTarget); 1: the peer discards; -100: disconnect. */
export type SbResult = 1 | -1 | -100;

export interface SbDecision {
  readonly result: SbResult;
  readonly policy: string;
}

/** Applies after-sb-0pri/1pri/2pri to an auto-recoverable split brain (uuidCompare = 100). */
export function resolveSplitBrain(p: SplitBrainPolicies, me: UuidView, peer: UuidView): SbDecision {
  const primaries = (me.role === 'Primary' ? 1 : 0) + (peer.role === 'Primary' ? 1 : 0);
  if (primaries === 0)
    return {
      result: recover0Pri(p.afterSb0Pri, me, peer),
      policy: `after-sb-0pri ${p.afterSb0Pri}`,
    };
  if (primaries === 1) {
    const name = `after-sb-1pri ${p.afterSb1Pri}`;
    const secondaryLoses: SbResult = me.role === 'Primary' ? 1 : -1;
    switch (p.afterSb1Pri) {
      case 'disconnect':
        return { result: -100, policy: name };
      case 'discard-secondary':
        return { result: secondaryLoses, policy: name };
      case 'consensus': {
        // Accept the 0pri verdict only when it discards the Secondary anyway.
        const r = recover0Pri(p.afterSb0Pri, me, peer);
        return { result: r === secondaryLoses ? r : -100, policy: name };
      }
      case 'violently-as0p':
        return { result: recover0Pri(p.afterSb0Pri, me, peer), policy: name };
    }
  }
  const name = `after-sb-2pri ${p.afterSb2Pri}`;
  switch (p.afterSb2Pri) {
    case 'disconnect':
      return { result: -100, policy: name };
    case 'violently-as0p':
      return { result: recover0Pri(p.afterSb0Pri, me, peer), policy: name };
  }
}

function recover0Pri(policy: AfterSb0Pri, me: UuidView, peer: UuidView): SbResult {
  const tie: SbResult = iWinTies(me, peer) ? 1 : -1;
  // Bit 0 of the bitmap UUID: this node was Primary when the two split.
  const meWasPrimary = (me.bitmapUuid & 1n) === 1n;
  const peerWasPrimary = (peer.bitmapUuid & 1n) === 1n;
  switch (policy) {
    case 'disconnect':
      return -100;
    case 'discard-younger-primary':
      // The one that became Primary after the split (was not Primary at it) is younger.
      if (!meWasPrimary && peerWasPrimary) return -1;
      if (meWasPrimary && !peerWasPrimary) return 1;
      return leastChanges(me, peer, tie);
    case 'discard-older-primary':
      if (meWasPrimary && !peerWasPrimary) return -1;
      if (!meWasPrimary && peerWasPrimary) return 1;
      return leastChanges(me, peer, tie);
    case 'discard-zero-changes':
      if (me.bitmapWeight === 0 && peer.bitmapWeight === 0) return tie;
      if (me.bitmapWeight === 0) return -1;
      if (peer.bitmapWeight === 0) return 1;
      return -100;
    case 'discard-least-changes':
      return leastChanges(me, peer, tie);
    default: {
      const victim = policy.slice('discard-node-'.length);
      if (victim === me.nodeName) return -1;
      if (victim === peer.nodeName) return 1;
      return -100;
    }
  }
}

function leastChanges(me: UuidView, peer: UuidView, tie: SbResult): SbResult {
  if (me.bitmapWeight < peer.bitmapWeight) return -1;
  if (me.bitmapWeight > peer.bitmapWeight) return 1;
  return tie;
}

/** The full handshake verdict including split-brain policies and --discard-my-data. */
export function handshakeVerdict(
  p: SplitBrainPolicies,
  me: UuidView,
  peer: UuidView,
): { readonly result: UuidResult; readonly rule: string; readonly splitBrain: string | null } {
  const d = uuidCompare(me, peer);
  if (d.result !== 100 && d.result !== -100) return { ...d, splitBrain: null };
  let result: UuidResult = -100;
  let how = 'disconnect';
  if (d.result === 100) {
    const sb = resolveSplitBrain(p, me, peer);
    result = sb.result;
    how = sb.policy;
  }
  if (result === -100) {
    if (me.discardMyData && !peer.discardMyData) {
      result = -1;
      how = 'discard-my-data (local)';
    } else if (peer.discardMyData && !me.discardMyData) {
      result = 1;
      how = 'discard-my-data (peer)';
    }
  }
  return { result, rule: d.rule, splitBrain: how };
}
