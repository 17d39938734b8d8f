// Shared steps of the end-to-end tests: two real tandemd processes on loopback (LocalCluster),
// brought up and in sync, driven through the `tandem` CLI and the control socket, and observed
// only through the events stream and `status --json` (never by sleeping).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { LocalCluster, type LocalClusterOptions } from '../../src/cli/local-cluster.js';
import { NbdClient } from '../../src/nbd/client.js';
import { allConnected, allInSync, type EventState } from '../../src/cli/event-state.js';
import type { PeerStatus, ResourceStatus } from '../../src/daemon/status.js';

export const MIB = 1024 * 1024;

/** Local files: let resync run as fast as the disks go (the defaults throttle to 250 KiB/s). */
export const FAST_SYNC = '    c-fill-target 16M;\n    c-max-rate 4G;';

/** LocalCluster's options; FAST_SYNC is always in disk { }. */
export type PairOptions = LocalClusterOptions;

/** create-md on both nodes, both daemons started, `up` on both, connected. */
export async function startPair(o: PairOptions): Promise<LocalCluster> {
  const c = await LocalCluster.create({ ...o, disk: `${FAST_SYNC}\n${o.disk ?? ''}` });
  try {
    for (const n of ['alice', 'bob']) await c.tandem(n, 'create-md', c.resource);
    await Promise.all([c.start('alice'), c.start('bob')]);
    await c.tandem('alice', 'up', c.resource);
    await c.tandem('bob', 'up', c.resource);
    await waitConnected(c, 'alice');
    await waitConnected(c, 'bob');
  } catch (e) {
    await c.destroy();
    throw e;
  }
  return c;
}

/**
 * Both backing files are freshly zeroed, hence identical: skip the initial sync the way an
 * operator would (`new-current-uuid --clear-bitmap`), then make `primary` Primary.
 */
export async function skipInitialSync(c: LocalCluster, primary: string): Promise<void> {
  await c.tandem(primary, 'new-current-uuid', '--clear-bitmap', c.resource);
  for (const n of c.nodes.keys()) await waitInSync(c, n);
  await c.tandem(primary, 'primary', c.resource);
}

export function waitConnected(c: LocalCluster, node: string, timeoutMs = 30_000): Promise<void> {
  return c.waitFor(node, 'connected', (s) => allConnected(s, c.resource), timeoutMs);
}

export function waitInSync(c: LocalCluster, node: string, timeoutMs = 30_000): Promise<void> {
  return c.waitFor(node, 'in sync', (s) => allInSync(s, c.resource), timeoutMs);
}

export function waitDisconnected(c: LocalCluster, node: string, timeoutMs = 30_000): Promise<void> {
  return c.waitFor(
    node,
    'disconnected',
    (s) => s.all('connection', c.resource).every((x) => x['connection'] !== 'Connected'),
    timeoutMs,
  );
}

export function waitRole(
  c: LocalCluster,
  node: string,
  role: string,
  timeoutMs = 30_000,
): Promise<void> {
  return c.waitFor(
    node,
    `role ${role}`,
    (s: EventState) => s.get('resource', c.resource)?.['role'] === role,
    timeoutMs,
  );
}

/** `tandem status --json` of the cluster's resource on a node. */
export async function status(c: LocalCluster, node: string): Promise<ResourceStatus> {
  const all = JSON.parse(await c.tandem(node, 'status', c.resource, '--json')) as ResourceStatus[];
  const r = all[0];
  assert.ok(r !== undefined, `${node}: status --json lists ${c.resource}`);
  return r;
}

export async function peerStatus(c: LocalCluster, node: string): Promise<PeerStatus> {
  const p = (await status(c, node)).peers[0];
  assert.ok(p !== undefined, `${node}: status --json lists a peer`);
  return p;
}

/** sha256 of the first `lengthBytes` of a file, read in chunks. */
export async function fileSha(path: string, lengthBytes: number): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4 * MIB);
    for (let off = 0; off < lengthBytes;) {
      const want = Math.min(buf.length, lengthBytes - off);
      const { bytesRead } = await fh.read(buf, 0, want, off);
      if (bytesRead === 0) throw new Error(`${path}: short file at ${off}`);
      h.update(buf.subarray(0, bytesRead));
      off += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/** The daemons' last log lines, for a failure message. */
export function logs(c: LocalCluster): string {
  return [...c.nodes.values()]
    .map((n) => `--- ${n.name} ---\n${n.log.split('\n').slice(-30).join('\n')}`)
    .join('\n');
}

/** Runs `body` against a started pair and destroys it whatever happens; failures carry logs. */
export async function withPair(
  o: PairOptions,
  body: (c: LocalCluster) => Promise<void>,
): Promise<void> {
  const c = await startPair(o);
  try {
    await body(c);
  } catch (e) {
    // A new error: the reporter prints an assertion's original message, not an amended one.
    const message = e instanceof Error ? e.message : String(e);
    throw new Error(`${message}\n${logs(c)}`, { cause: e });
  } finally {
    await c.destroy();
  }
}

/**
 * Polls `cond` (each poll is a control-socket round trip, so this paces itself) until it holds;
 * for conditions no event announces, such as a byte counter passing a mark.
 */
export async function waitUntil(
  cond: () => Promise<boolean>,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const start = performance.now();
  while (!(await cond())) {
    if (performance.now() - start > timeoutMs) throw new Error(`not ${what} after ${timeoutMs} ms`);
    await new Promise((r) => setImmediate(r));
  }
}

/** Writes through a node's NBD export (it must be Primary), then flushes and disconnects. */
export async function nbdWrite(
  c: LocalCluster,
  node: string,
  writes: readonly (readonly [offsetBytes: number, data: Buffer])[],
): Promise<void> {
  const nbd = await NbdClient.connect({
    listener: { kind: 'unix', path: c.node(node).nbdSocket },
    exportName: c.resource,
  });
  try {
    await Promise.all(writes.map(([off, data]) => nbd.write(off, data)));
    await nbd.flush();
  } finally {
    await nbd.disconnect();
  }
}

/** Reads a range of a node's backing file (the data region starts at 0). */
export async function readDisk(
  c: LocalCluster,
  node: string,
  offsetBytes: number,
  lengthBytes: number,
): Promise<Buffer> {
  const fh = await open(c.node(node).diskPath, 'r');
  try {
    const b = Buffer.alloc(lengthBytes);
    await fh.read(b, 0, lengthBytes, offsetBytes);
    return b;
  } finally {
    await fh.close();
  }
}

/** `p`, or a rejection naming `what` after `timeoutMs` (for waits no event stream covers). */
export async function within<T>(timeoutMs: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not ${what} after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
