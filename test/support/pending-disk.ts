// A DiskPort for driver tests: every operation waits, named, until the test answers it.
import type { DiskPort, IoDone } from '../../src/replication/driver.js';

export interface PendingOp {
  readonly what: string;
  readonly done: IoDone;
}

/**
 * Each data or metadata operation is pushed to `pending` (oldest first) as `read`,
 * `write@OFFSET`, `trim`, `zeroes`, `flush`, `meta:TYPE` or `grow`; `onIssue` sees each name and
 * the in-memory bitmap changes. Capacity probes answer at once.
 */
export function pendingDiskPort(pending: PendingOp[], onIssue: (what: string) => void): DiskPort {
  const wait = (what: string, done: IoDone): void => {
    onIssue(what);
    pending.push({ what, done });
  };
  return {
    read: (_o, _l, done) => wait('read', done),
    write: (o, _d, _f, done) => wait(`write@${o}`, done),
    trim: (_o, _l, done) => wait('trim', done),
    zeroes: (_o, _l, _f, done) => wait('zeroes', done),
    flush: (done) => wait('flush', done),
    writeMeta: (a, done) => wait(`meta:${a.type}`, done),
    bitmapSet: () => onIssue('bitmapSet'),
    bitmapClear: () => onIssue('bitmapClear'),
    capacity: (done) => done(0, 'none'),
    grow: (_s, done) => wait('grow', done),
  };
}
