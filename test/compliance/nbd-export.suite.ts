// The NBD export compliance suite: every export backend (the standalone storeBackend, the
// replicated Resource in tandemd) runs these same tests through a real NBD client. It checks
// what a client may rely on: reads return what was written, FUA and FLUSH make writes stable,
// a FLUSH on one connection covers writes completed on every connection (CAN_MULTI_CONN),
// zeroes read as zeroes, bad requests get the spec's error, structured replies work, and
// libnbd's nbdinfo and qemu-io agree. With `tls` in the fixture all of it runs over TLS.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { NbdClient, type NbdClientTls } from '../../src/nbd/client.js';
import {
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from '../../src/nbd/protocol.js';
import { formatNbdUri } from '../../src/nbd/uri.js';
import type { NbdListenerSpec } from '../../src/nbd/types.js';
import { NbdCommandError } from '../../src/util/errors.js';
import { optionalPeer, peerEnv } from '../support/peers.js';

export interface NbdExportFixture {
  readonly listener: NbdListenerSpec;
  readonly exportName: string;
  readonly sizeBytes: number;
  /**
   * What would survive a failure now at [offset, offset + length): for a plain store, the
   * contents a power loss keeps (flushed and FUA writes only); for a replicated export, the
   * peer's copy (what the loss of this node keeps).
   */
  stable(offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  close(): Promise<void>;
  /** The export requires TLS: our client's credentials, and the dir libnbd and QEMU read. */
  readonly tls?: { readonly client: NbdClientTls; readonly dir: string };
}

/** nbdinfo's URI and qemu-io's arguments for the fixture's export (TLS or not). */
function realClients(f: NbdExportFixture): { uri: string; qemu: string[] } {
  const plain = formatNbdUri(f.listener, f.exportName, f.tls !== undefined);
  if (f.tls === undefined) return { uri: plain, qemu: ['-f', 'raw', plain] };
  const l = f.listener;
  const server =
    l.kind === 'tcp'
      ? `server.type=inet,server.host=${l.host},server.port=${l.port}`
      : `server.type=unix,server.path=${l.path},tls-hostname=localhost`;
  return {
    uri: `${plain}${l.kind === 'tcp' ? '?' : '&'}tls-certificates=${f.tls.dir}`,
    qemu: [
      '--object',
      `tls-creds-x509,id=tls0,dir=${f.tls.dir},endpoint=client`,
      '--image-opts',
      `driver=nbd,${server},export=${f.exportName},tls-creds=tls0`,
    ],
  };
}

const KIB = 1024;
const MIB = 1024 * KIB;

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 131 + seed * 17 + (i >> 10)) & 0xff;
  b.writeUInt32BE(seed >>> 0, 0);
  return b;
}

/** The NBD error value a request failed with, or 0. */
async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 0;
  } catch (e) {
    if (e instanceof NbdCommandError) return e.nbdErrno;
    throw e;
  }
}

function exec(cmd: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 60_000, env: peerEnv() }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

export function nbdExportSuite(name: string, make: () => Promise<NbdExportFixture>): void {
  describe(`NBD export compliance: ${name}`, () => {
    let f: NbdExportFixture;
    const clients: NbdClient[] = [];
    /** Each test writes in its own MiB, so tests need no fresh export. */
    let nextRegion = 1;
    const region = (): number => nextRegion++ * MIB;

    async function connect(structuredReplies = true): Promise<NbdClient> {
      const c = await NbdClient.connect({
        listener: f.listener,
        exportName: f.exportName,
        structuredReplies,
        ...(f.tls !== undefined ? { tls: f.tls.client } : {}),
      });
      clients.push(c);
      return c;
    }

    before(async () => {
      f = await make();
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.disconnect().catch(() => undefined)));
      await f.close();
    });

    test('the handshake reports the size, FLUSH, FUA, WRITE_ZEROES, CAN_MULTI_CONN, block sizes', async () => {
      const c = await connect();
      assert.equal(c.sizeBytes, f.sizeBytes);
      const tf = c.transmissionFlags;
      for (const [flag, what] of [
        [NBD_FLAG_SEND_FLUSH, 'SEND_FLUSH'],
        [NBD_FLAG_SEND_FUA, 'SEND_FUA'],
        [NBD_FLAG_SEND_WRITE_ZEROES, 'SEND_WRITE_ZEROES'],
        [NBD_FLAG_CAN_MULTI_CONN, 'CAN_MULTI_CONN'],
      ] as const)
        assert.ok((tf & flag) !== 0, `${what} advertised`);
      const bs = c.blockSizes;
      assert.ok(bs !== undefined, 'NBD_INFO_BLOCK_SIZE sent');
      assert.ok(bs.minimumBytes >= 1 && bs.minimumBytes <= 4096);
      assert.ok(bs.preferredBytes >= bs.minimumBytes);
      assert.ok(bs.maximumBytes >= 1 * MIB);
    });

    test('reads return what was written: sizes, offsets, pipelined, last block', async () => {
      const c = await connect();
      const base = region();
      const writes: [number, Buffer][] = [
        [base, pattern(512, 1)],
        [base + 4 * KIB, pattern(4 * KIB, 2)],
        [base + 8 * KIB + 512, pattern(3 * 512, 3)],
        [base + 64 * KIB, pattern(256 * KIB, 4)],
        [f.sizeBytes - 4 * KIB, pattern(4 * KIB, 5)],
      ];
      await Promise.all(writes.map(([off, d]) => c.write(off, d)));
      const back = await Promise.all(writes.map(([off, d]) => c.read(off, d.length)));
      writes.forEach(([off, d], i) => assert.ok(back[i]!.equals(d), `read at ${off}`));
      // A later write over part of an earlier one wins where they overlap.
      await c.write(base + 4 * KIB + 1024, pattern(1024, 6));
      const mixed = Buffer.from(writes[1]![1]);
      pattern(1024, 6).copy(mixed, 1024);
      assert.ok((await c.read(base + 4 * KIB, 4 * KIB)).equals(mixed));
    });

    test('a FUA write is stable when it completes', async () => {
      const c = await connect();
      const at = region();
      const d = pattern(64 * KIB, 7);
      await c.write(at, d, { fua: true });
      assert.ok((await f.stable(at, d.length)).equals(d));
    });

    test('FLUSH makes every write completed before it stable', async () => {
      const c = await connect();
      const at = region();
      const ds = [0, 1, 2, 3].map((i) => pattern(16 * KIB, 10 + i));
      await Promise.all(ds.map((d, i) => c.write(at + i * 16 * KIB, d)));
      await c.flush();
      for (const [i, d] of ds.entries())
        assert.ok((await f.stable(at + i * 16 * KIB, d.length)).equals(d), `write ${i}`);
    });

    test('CAN_MULTI_CONN: a FLUSH on one connection covers writes completed on every connection', async () => {
      const writers = await Promise.all([connect(), connect(), connect()]);
      const flusher = await connect();
      const at = region();
      const ds = writers.map((_, i) => pattern(32 * KIB, 20 + i));
      await Promise.all(writers.map((w, i) => w.write(at + i * 32 * KIB, ds[i]!)));
      await flusher.flush();
      for (const [i, d] of ds.entries()) {
        assert.ok((await f.stable(at + i * 32 * KIB, d.length)).equals(d), `connection ${i}`);
        // Every connection sees one state: the flusher reads what the writers wrote.
        assert.ok((await flusher.read(at + i * 32 * KIB, d.length)).equals(d));
      }
    });

    test('WRITE_ZEROES (plain, NO_HOLE, FUA) and TRIM: zeroes read as zeroes', async () => {
      const c = await connect();
      const at = region();
      await c.write(at, pattern(192 * KIB, 30));
      await c.writeZeroes(at, 64 * KIB);
      await c.writeZeroes(at + 64 * KIB, 64 * KIB, { noHole: true });
      await c.writeZeroes(at + 128 * KIB, 32 * KIB, { fua: true });
      const z = await c.read(at, 160 * KIB);
      assert.ok(z.equals(Buffer.alloc(160 * KIB)), 'zeroed ranges read as zeroes');
      assert.ok((await f.stable(at + 128 * KIB, 32 * KIB)).equals(Buffer.alloc(32 * KIB)));
      // The untouched tail keeps its data.
      assert.ok(
        (await c.read(at + 160 * KIB, 32 * KIB)).equals(pattern(192 * KIB, 30).subarray(160 * KIB)),
      );
      // TRIM: the spec leaves the contents undefined, but it must succeed and leave the rest.
      await c.trim(at, 64 * KIB);
      await c.write(at, pattern(4 * KIB, 31));
      assert.ok((await c.read(at, 4 * KIB)).equals(pattern(4 * KIB, 31)));
    });

    test('out-of-range, misaligned and malformed requests get the spec error; the connection goes on', async () => {
      const c = await connect();
      const size = f.sizeBytes;
      assert.equal(await errnoOf(c.read(size - 512, 1024)), NBD_EINVAL, 'read past the end');
      assert.equal(await errnoOf(c.read(size, 512)), NBD_EINVAL, 'read at the end');
      assert.equal(
        await errnoOf(c.write(size - 512, Buffer.alloc(1024))),
        NBD_ENOSPC,
        'write past the end',
      );
      assert.equal(await errnoOf(c.writeZeroes(size, 512)), NBD_ENOSPC, 'zeroes past the end');
      assert.equal(await errnoOf(c.trim(size - 512, 4096)), NBD_ENOSPC, 'trim past the end');
      assert.equal(await c.raw(NBD_CMD_READ, 0, 0, 0), NBD_EINVAL, 'zero-length read');
      assert.equal(await c.raw(NBD_CMD_FLUSH, 0, 512, 0), NBD_EINVAL, 'FLUSH with an offset');
      assert.equal(await c.raw(0x7f, 0, 0, 512), NBD_EINVAL, 'unknown command');
      assert.equal(await c.raw(NBD_CMD_READ, 1 << 9, 0, 512), NBD_EINVAL, 'unknown flag');
      const min = c.blockSizes?.minimumBytes ?? 1;
      if (min > 1) {
        assert.equal(await errnoOf(c.read(1, min)), NBD_EINVAL, 'misaligned offset');
        assert.equal(await errnoOf(c.read(0, min + 1)), NBD_EINVAL, 'misaligned length');
        assert.equal(
          await c.raw(NBD_CMD_WRITE, 0, min / 2, min, Buffer.alloc(min)),
          NBD_EINVAL,
          'misaligned write (its payload is consumed, the stream stays in step)',
        );
      }
      // Still in step: a good request after all that works.
      const at = region();
      await c.write(at, pattern(4 * KIB, 40));
      assert.ok((await c.read(at, 4 * KIB)).equals(pattern(4 * KIB, 40)));
    });

    test('simple and structured replies both carry data and errors', async () => {
      const simple = await connect(false);
      const structured = await connect(true);
      assert.equal(simple.structuredReplies, false);
      assert.equal(structured.structuredReplies, true);
      const at = region();
      const d = pattern(96 * KIB, 50);
      await simple.write(at, d);
      assert.ok((await structured.read(at, d.length)).equals(d));
      assert.ok((await simple.read(at, d.length)).equals(d));
      // A structured error chunk carries a message the client can show.
      await assert.rejects(
        structured.read(f.sizeBytes, 512),
        (e: unknown) =>
          e instanceof NbdCommandError &&
          e.nbdErrno === NBD_EINVAL &&
          /beyond|size/.test(e.message),
      );
      assert.equal(await errnoOf(simple.read(f.sizeBytes, 512)), NBD_EINVAL);
    });

    test('libnbd and qemu agree: nbdinfo flags, qemu-io patterns', async () => {
      const { uri, qemu } = realClients(f);
      if (optionalPeer('libnbd-bin', 'nbdinfo')) {
        const info = JSON.parse(await exec('nbdinfo', ['--json', uri])) as {
          exports: Record<string, unknown>[];
        };
        const e = info.exports[0];
        assert.ok(e !== undefined);
        assert.equal(e['export-size'], f.sizeBytes);
        for (const k of ['can_flush', 'can_fua', 'can_multi_conn', 'can_zero'])
          assert.equal(e[k], true, `nbdinfo ${k}`);
      }
      if (optionalPeer('qemu-utils', 'qemu-io')) {
        const at = region();
        const out = await exec('qemu-io', [
          ...qemu,
          '-c',
          `write -P 0x5a ${at} 128k`,
          '-c',
          `write -z ${at + 128 * KIB} 64k`,
          '-c',
          'flush',
          '-c',
          `read -P 0x5a ${at} 128k`,
          '-c',
          `read -P 0 ${at + 128 * KIB} 64k`,
        ]);
        assert.doesNotMatch(out, /Pattern verification failed|error/i, out);
        const c = await connect();
        assert.ok((await c.read(at, 128 * KIB)).equals(Buffer.alloc(128 * KIB, 0x5a)));
        assert.ok((await f.stable(at, 128 * KIB)).equals(Buffer.alloc(128 * KIB, 0x5a)));
      }
    });
  });
}
