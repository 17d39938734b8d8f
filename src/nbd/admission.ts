// Admission control between NBD connections and a backend with a bounded queue (the replication
// engine refuses requests beyond ENGINE_QUEUED_REQUESTS_MAX). Requests beyond the bound wait
// here in arrival order; while any wait, every connection of the export stops reading (the
// server asks `saturated()` before each request header), so the waiting list stays bounded by
// the requests already read, and no request ever fails for lack of room.
import { assert } from '../util/assert.js';
import { NbdCommandError } from '../util/errors.js';
import { NBD_ENOMEM } from './protocol.js';
import type { NbdAdmission } from './types.js';

export class AdmissionGate implements NbdAdmission {
  private admitted = 0;
  /** FIFO of requests waiting for room: index-based, compacted when drained. */
  private waiting: (() => void)[] = [];
  private head = 0;
  private roomWaiters: (() => void)[] = [];

  /**
   * @param bound requests admitted at once (the backend's own bound)
   * @param waitingMax requests that may wait; more is a bug of the caller's backpressure, and
   *   the request fails with NBD_ENOMEM rather than grow the list without bound
   */
  constructor(
    private readonly bound: number,
    private readonly waitingMax: number,
  ) {
    assert(Number.isInteger(bound) && bound >= 1, 'admission bound at least 1');
  }

  get admittedCount(): number {
    return this.admitted;
  }

  get waitingCount(): number {
    return this.waiting.length - this.head;
  }

  saturated(): boolean {
    return this.admitted + this.waitingCount >= this.bound;
  }

  onRoom(fn: () => void): void {
    this.roomWaiters.push(fn);
  }

  /** Runs `fn` once there is room, in arrival order; its result is passed on. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.admitted < this.bound && this.waitingCount === 0) return this.start(fn);
    if (this.waitingCount >= this.waitingMax)
      return Promise.reject(
        new NbdCommandError(
          `request refused: ${this.waitingCount} requests already wait for room`,
          NBD_ENOMEM,
        ),
      );
    return new Promise<T>((resolve, reject) => {
      this.waiting.push(() => {
        this.start(fn).then(resolve, reject);
      });
    });
  }

  private start<T>(fn: () => Promise<T>): Promise<T> {
    this.admitted++;
    let p: Promise<T>;
    try {
      p = fn();
    } catch (e) {
      p = Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    return p.finally(() => this.release());
  }

  private release(): void {
    this.admitted--;
    while (this.admitted < this.bound && this.waitingCount > 0) {
      const next = this.waiting[this.head];
      this.waiting[this.head] = noop;
      this.head++;
      if (this.head === this.waiting.length) {
        this.waiting = [];
        this.head = 0;
      } else if (this.head >= 1024 && this.head * 2 >= this.waiting.length) {
        this.waiting = this.waiting.slice(this.head);
        this.head = 0;
      }
      next?.();
    }
    if (!this.saturated() && this.roomWaiters.length > 0) {
      const ws = this.roomWaiters;
      this.roomWaiters = [];
      for (const w of ws) w();
    }
  }
}

function noop(): void {}
