// A queue one consumer awaits item by item, which can be failed once: what a handshake reads
// its messages through. Items pushed before anyone waits are kept; after fail(), waiting
// rejects once the queue is empty (items already queued are still handed out first).
export class AsyncQueue<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (v: T) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  push(item: T): void {
    const w = this.waiter;
    if (w) {
      this.waiter = null;
      w.resolve(item);
    } else this.items.push(item);
  }

  next(): Promise<T> {
    if (this.items.length > 0) return Promise.resolve(this.items.shift() as T);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The first failure sticks; a pending next() rejects with it. */
  fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(e);
  }
}
