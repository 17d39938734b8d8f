// The initiator's side of a session's paths: dials every configured path that is not joined,
// redials a failed one with a doubling delay, and holds down a path that fails more than
// flapsPerMinuteMax times in a minute (hysteresis), so a flapping link cannot bounce traffic.
import {
  MULTIPATH_FLAPS_PER_MINUTE_MAX,
  MULTIPATH_HOLD_DOWN_MS,
  MULTIPATH_JOIN_TIMEOUT_MS,
  MULTIPATH_PATHS_MAX,
  MULTIPATH_REDIAL_MAX_MS,
  MULTIPATH_REDIAL_MS,
} from '../../limits.js';
import type { Timer } from '../../platform/clock.js';
import { ConnectionError } from '../../util/errors.js';
import type { Channel, PathSpec } from '../types.js';
import { SessionRefused, initiatePath } from './handshake.js';
import { classRank, type MultipathSession, type PathLink, type PathOwner } from './session.js';
import type { MultipathDeps, MultipathOptions } from './types.js';

const MINUTE_MS = 60_000;

interface Slot {
  readonly spec: PathSpec;
  readonly rank: number;
  link: PathLink | null;
  dialing: AbortController | null;
  timer: Timer | null;
  /** Times this path failed after it was joined, within the last minute. */
  failuresMs: number[];
  /** Consecutive dial or join failures (the redial delay doubles with them). */
  dialFailures: number;
  heldUntilMs: number;
}

/** Rank of the path at `index` of a configuration: class first, then order. */
export function pathRank(spec: PathSpec, index: number): number {
  return classRank(spec.peer.transport) * MULTIPATH_PATHS_MAX + index;
}

export class Dialer implements PathOwner {
  private readonly slots: Slot[] = [];
  private stopped = false;
  private readonly flapsMax: number;
  private readonly holdDownMs: number;
  private readonly redialMs: number;
  private readonly joinTimeoutMs: number;

  constructor(
    private readonly session: MultipathSession,
    private readonly deps: MultipathDeps,
    opts: MultipathOptions,
  ) {
    this.flapsMax = opts.flapsPerMinuteMax ?? MULTIPATH_FLAPS_PER_MINUTE_MAX;
    this.holdDownMs = opts.holdDownMs ?? MULTIPATH_HOLD_DOWN_MS;
    this.redialMs = opts.redialMs ?? MULTIPATH_REDIAL_MS;
    this.joinTimeoutMs = opts.joinTimeoutMs ?? MULTIPATH_JOIN_TIMEOUT_MS;
    session.setOwner(this);
  }

  /** Adds a path to dial (at connect, or later: an ssocks upgrade). Returns false if known or full. */
  addPath(spec: PathSpec, rank: number, link: PathLink | null = null): boolean {
    if (this.stopped || this.slots.length >= MULTIPATH_PATHS_MAX) return false;
    if (this.slots.some((s) => s.rank === rank || samePeer(s.spec, spec))) return false;
    const slot: Slot = {
      spec,
      rank,
      link,
      dialing: null,
      timer: null,
      failuresMs: [],
      dialFailures: 0,
      heldUntilMs: 0,
    };
    this.slots.push(slot);
    if (link === null) this.dial(slot);
    return true;
  }

  onPathFailed(link: PathLink): void {
    const slot = this.slots.find((s) => s.link === link);
    if (slot === undefined || this.stopped) return;
    slot.link = null;
    const now = this.deps.clock.nowMs();
    slot.failuresMs = slot.failuresMs.filter((t) => now - t < MINUTE_MS);
    slot.failuresMs.push(now);
    if (slot.failuresMs.length > this.flapsMax) {
      slot.heldUntilMs = now + this.holdDownMs;
      slot.failuresMs = [];
      this.deps.log?.warn(
        { path: link.name, holdDownMs: this.holdDownMs },
        `multipath: path flapping (more than ${this.flapsMax} failures a minute): held down`,
      );
      this.session.reportPath({ path: slot.spec, state: 'failed', change: 'held-down' });
      this.schedule(slot, this.holdDownMs);
      return;
    }
    this.schedule(slot, this.redialMs);
  }

  onSessionEnd(): void {
    this.stopped = true;
    for (const s of this.slots) {
      s.timer?.cancel();
      s.timer = null;
      s.dialing?.abort(new ConnectionError('session ended'));
      s.dialing = null;
    }
  }

  /** Held-down state of each configured path (for status and tests). */
  heldDown(): readonly PathSpec[] {
    const now = this.deps.clock.nowMs();
    return this.slots.filter((s) => s.heldUntilMs > now).map((s) => s.spec);
  }

  private schedule(slot: Slot, delayMs: number): void {
    if (this.stopped || slot.timer !== null || slot.dialing !== null || slot.link !== null) return;
    const now = this.deps.clock.nowMs();
    const at = Math.max(now + delayMs, slot.heldUntilMs);
    slot.timer = this.deps.clock.setTimeout(() => {
      slot.timer = null;
      this.dial(slot);
    }, at - now);
  }

  private dial(slot: Slot): void {
    if (this.stopped || slot.link !== null || slot.dialing !== null) return;
    const transport = this.deps.transports[slot.spec.peer.transport];
    if (transport === undefined) return;
    const ac = new AbortController();
    slot.dialing = ac;
    void this.run(slot, ac, (signal) => transport.connect(slot.spec, { signal }));
  }

  private async run(
    slot: Slot,
    ac: AbortController,
    connect: (signal: AbortSignal) => Promise<Channel>,
  ): Promise<void> {
    let ch: Channel | null = null;
    try {
      ch = await connect(ac.signal);
      if (ac.signal.aborted) throw new ConnectionError('session ended');
      const joined = ch;
      await initiatePath(ch, {
        kind: 'join',
        sessionId: this.session.sessionId,
        loadBalance: this.session.loadBalance,
        rank: slot.rank,
        key: this.session.key,
        alg: this.session.alg,
        next: this.session.receivedNext(),
        randomBytes: this.deps.randomBytes,
        clock: this.deps.clock,
        timeoutMs: this.joinTimeoutMs,
        onReady: (r) => {
          if (!this.stopped)
            slot.link = this.session.attach(joined, slot.spec, slot.rank, r.peerNext);
        },
      });
      slot.dialing = null;
      if (this.stopped) {
        ch.destroy();
        return;
      }
      if (slot.link === null) throw new ConnectionError('path closed as it joined');
      slot.dialFailures = 0;
    } catch (e) {
      ch?.destroy();
      slot.dialing = null;
      if (this.stopped) return;
      if (e instanceof SessionRefused && e.refuseCode === 'unknown-session') {
        // The peer no longer knows this session (it restarted or gave up): nothing to resume.
        this.session.end('by-peer', new ConnectionError(`peer refused to resume: ${e.message}`));
        return;
      }
      slot.dialFailures++;
      const delay = Math.min(MULTIPATH_REDIAL_MAX_MS, this.redialMs * 2 ** (slot.dialFailures - 1));
      this.schedule(slot, Math.max(this.redialMs, delay));
    }
  }
}

function samePeer(a: PathSpec, b: PathSpec): boolean {
  return (
    a.peer.transport === b.peer.transport &&
    a.peer.address === b.peer.address &&
    a.peer.port === b.peer.port &&
    (a.local?.address ?? '') === (b.local?.address ?? '')
  );
}
