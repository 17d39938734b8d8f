// Clocks for tests: realClock keeps the event loop alive while a timer is pending (systemClock
// unrefs its timers, which would let a test's process exit mid-wait); ManualClock is virtual.
import type { Clock, Timer } from '../../src/platform/clock.js';

export const realClock: Clock = {
  nowMs: () => performance.now(),
  setTimeout(fn, delayMs) {
    const h = setTimeout(fn, delayMs);
    return { cancel: () => clearTimeout(h) };
  },
};

/** A virtual clock: time moves only when the test calls advance(). */
export class ManualClock implements Clock {
  private now = 0;
  private timers: { at: number; seq: number; fn: () => void; live: boolean }[] = [];
  private seq = 0;
  nowMs(): number {
    return this.now;
  }
  setTimeout(fn: () => void, delayMs: number): Timer {
    const t = { at: this.now + delayMs, seq: this.seq++, fn, live: true };
    this.timers.push(t);
    return { cancel: () => (t.live = false) };
  }
  advance(ms: number): void {
    this.run(this.now + ms, false);
  }
  /** The same as advance(ms), named for tests that step time. */
  step(ms: number): void {
    this.advance(ms);
  }
  /** The process was stalled for `ms`: timers due meanwhile all run late, at the end. */
  stall(ms: number): void {
    this.run(this.now + ms, true);
  }
  private run(end: number, late: boolean): void {
    for (;;) {
      this.timers = this.timers.filter((t) => t.live);
      this.timers.sort((x, y) => x.at - y.at || x.seq - y.seq);
      const t = this.timers[0];
      if (t === undefined || t.at > end) break;
      this.timers.shift();
      this.now = late ? end : t.at;
      t.fn();
    }
    this.now = end;
  }
}
