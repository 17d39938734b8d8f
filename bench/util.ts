// Small helpers the systems share: free loopback ports, waiting for a server to be ready (with a
// deadline, and failing at once if its process died), and preallocated backing files.
import { createServer, connect } from 'node:net';
import { open, readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import type { ChildHandle } from './children.js';

/** PATH with Debian's tools first (pyenv shims shadow python-based peers otherwise). */
export function peerEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `/usr/sbin:/usr/bin:/sbin:/bin:${process.env['PATH'] ?? ''}`,
    ...extra,
  };
}

/** A port that was free on 127.0.0.1 a moment ago (the kernel picked it). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no TCP address from listen(0)');
  return addr.port;
}

const POLL_MS = 50;

/**
 * Polls `ready` until it returns true; rejects after timeoutMs, or at once when one of the
 * watched children has exited (with its output), so a crashed server fails fast and clearly.
 */
export async function waitFor(
  what: string,
  ready: () => Promise<boolean> | boolean,
  timeoutMs: number,
  watch: readonly ChildHandle[] = [],
): Promise<void> {
  const deadline = process.hrtime.bigint() + BigInt(timeoutMs) * 1_000_000n;
  for (;;) {
    for (const c of watch)
      if (c.exitInfo() !== null) throw new Error(`${what}: ${c.describeExit()}`);
    if (await ready()) return;
    if (process.hrtime.bigint() > deadline)
      throw new Error(`${what}: not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** True when the pidfile holds exactly `pid` (servers write it once their sockets are bound). */
export async function pidfileHolds(path: string, pid: number): Promise<boolean> {
  try {
    return (await readFile(path, 'utf8')).trim() === String(pid);
  } catch {
    return false;
  }
}

/** True when a TCP connection to 127.0.0.1:port succeeds. */
export function tcpAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const FILL_CHUNK_BYTES = 1 << 20;

/**
 * Creates `path` with `sizeBytes` of real blocks (not a sparse file, so writes do not allocate),
 * and fsyncs it. `random` fills it with non-zero data so copy tools cannot skip zero blocks.
 */
export async function preallocate(
  path: string,
  sizeBytes: number,
  fill: 'zero' | 'random',
): Promise<void> {
  const chunk = fill === 'zero' ? Buffer.alloc(FILL_CHUNK_BYTES) : randomBytes(FILL_CHUNK_BYTES);
  const fh = await open(path, 'w');
  try {
    for (let off = 0; off < sizeBytes; off += FILL_CHUNK_BYTES) {
      const len = Math.min(FILL_CHUNK_BYTES, sizeBytes - off);
      // Make every chunk distinct so nothing downstream can deduplicate them either.
      if (fill === 'random') chunk.writeUInt32LE(off / FILL_CHUNK_BYTES, 0);
      await fh.write(chunk, 0, len, off);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const VERIFY_CHUNK_BYTES = 64 * 1024;

/**
 * Compares `samples` random 64 KiB chunks (plus the first and the last) of two files: a cheap
 * proof that a sync really moved the bytes, so a copy that "finished" early cannot pass as fast.
 */
export async function filesMatchSampled(
  a: string,
  b: string,
  sizeBytes: number,
  samples: number,
): Promise<boolean> {
  const fa = await open(a, 'r');
  const fb = await open(b, 'r');
  try {
    const last = Math.max(0, sizeBytes - VERIFY_CHUNK_BYTES);
    const offsets = [0, last];
    for (let i = 0; i < samples; i++) offsets.push(Math.floor((Math.random() * last) / 512) * 512);
    const ba = Buffer.alloc(VERIFY_CHUNK_BYTES);
    const bb = Buffer.alloc(VERIFY_CHUNK_BYTES);
    for (const off of offsets) {
      const ra = await fa.read(ba, 0, VERIFY_CHUNK_BYTES, off);
      const rb = await fb.read(bb, 0, VERIFY_CHUNK_BYTES, off);
      if (
        ra.bytesRead !== rb.bytesRead ||
        !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))
      )
        return false;
    }
    return true;
  } finally {
    await fa.close();
    await fb.close();
  }
}
