// Raw sockets for tests that must send what a well-behaved client never would.
import { connect, type Socket } from 'node:net';
import type { NbdListenerSpec } from '../../../src/nbd/types.js';
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_OPT_EXPORT_NAME,
  encodeOption,
} from '../../../src/nbd/protocol.js';

export function rawSocket(spec: NbdListenerSpec): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s =
      spec.kind === 'tcp'
        ? connect({ host: spec.host, port: spec.port })
        : connect({ path: spec.path });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Collects everything the server sends until it closes; resolves with it. */
export function collectUntilClose(s: Socket, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('server did not close the connection in time'));
    }, timeoutMs);
    s.on('data', (b: Buffer) => parts.push(b));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(parts));
    });
  });
}

/** Waits until at least `n` bytes have arrived (or the socket closes). */
export function readBytes(s: Socket, n: number, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const done = (): void => {
      clearTimeout(t);
      s.off('data', onData);
      s.off('close', onClose);
      const all = Buffer.concat(parts);
      if (all.length > n) s.unshift(all.subarray(n));
      resolve(all.subarray(0, n));
    };
    const onData = (b: Buffer): void => {
      parts.push(b);
      got += b.length;
      if (got >= n) done();
    };
    const onClose = (): void => {
      clearTimeout(t);
      reject(new Error(`socket closed after ${got} of ${n} bytes`));
    };
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${n} bytes`)), timeoutMs);
    s.on('data', onData);
    s.once('close', onClose);
  });
}

/** Greeting, client flags, EXPORT_NAME: the socket is in transmission with simple replies. */
export async function rawTransmission(spec: NbdListenerSpec, name: string): Promise<Socket> {
  const s = await rawSocket(spec);
  await readBytes(s, 18);
  const f = Buffer.alloc(4);
  f.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, 0);
  s.write(f);
  s.write(encodeOption(NBD_OPT_EXPORT_NAME, Buffer.from(name)));
  await readBytes(s, 10);
  return s;
}
