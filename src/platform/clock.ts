// The one door through which time enters Tandem. Everything else takes a Clock, so the
// simulator can run on virtual time.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Monotonic milliseconds (not wall time). */
  nowMs(): number;
  setTimeout(fn: () => void, delayMs: number): Timer;
}

export const systemClock: Clock = {
  nowMs: () => performance.now(),
  setTimeout(fn, delayMs) {
    const handle = setTimeout(fn, delayMs);
    handle.unref?.();
    return { cancel: () => clearTimeout(handle) };
  },
};
